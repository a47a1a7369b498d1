"""Tests of the config error helpers."""

import pytest

from tff_movierec.errors import ConfigError, require


def test_config_error_is_a_value_error_with_fields():
  error = ConfigError("batch_size=0: must be >= 1.", ["batch_size"])
  assert isinstance(error, ValueError)
  assert str(error) == "batch_size=0: must be >= 1."
  assert error.fields == ("batch_size",)
  assert ConfigError("no fields").fields == ()


def test_require_passes_when_the_condition_holds():
  assert require(True, "batch_size", 0, "must be >= 1.") is None


@pytest.mark.parametrize("value, shown", [(0, "0"), ("adamw", "'adamw'"),
                                          (None, "None"), ((1, 0), "(1, 0)")])
def test_require_names_the_field_and_the_value(value, shown):
  with pytest.raises(ConfigError) as error:
    require(False, "client_optimizer", value, "not allowed.")
  assert str(error.value) == f"client_optimizer={shown}: not allowed."
  assert error.value.fields == ("client_optimizer",)


def test_require_error_is_caught_as_value_error():
  with pytest.raises(ValueError, match=r"^dropout=1\.5: must be in \[0, 1\)\.$"):
    require(False, "dropout", 1.5, "must be in [0, 1).")
