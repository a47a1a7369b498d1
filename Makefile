# Two entry points on a fresh machine:
#   make run   - create .venv, install, run the default federated experiment
#   make test  - create .venv, install, run the test suite
# Installation is idempotent: it is redone only when requirements.txt or
# setup.py change (a stamp file in .venv records what was installed).

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
TFF_VERSION := 0.87.0
STAMP := $(VENV)/.installed-$(shell cat requirements.txt setup.py Makefile 2>/dev/null | cksum | cut -d' ' -f1)
# Optional: where MovieLens-1M lives (else the loader downloads it to its cache).
DATA_DIR ?=
OUT ?= output/default
ARGS ?=
DATA_FLAG := $(if $(DATA_DIR),--data_dir=$(DATA_DIR),)
# pip's errors only (-qq): no progress, notices or warnings.
PIP_QUIET := -qq --disable-pip-version-check

.PHONY: run test install eda centralized clean

install: $(STAMP)

$(STAMP): requirements.txt setup.py Makefile
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; ok = (3, 9) <= v <= (3, 11); \
	  print("Python %d.%d found; tff_movierec needs Python 3.9, 3.10 or 3.11 (tensorflow-federated 0.87). Set PYTHON=python3.11." % v, file=sys.stderr) if not ok else None; \
	  sys.exit(0 if ok else 1)'
	@echo "Installing the pinned stack into $(VENV) (once; a few minutes)..."
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	@$(VPY) -m pip install $(PIP_QUIET) -r requirements.txt
	@$(VPY) -m pip install $(PIP_QUIET) --no-deps tensorflow-federated==$(TFF_VERSION)
	@$(VPY) -m pip install $(PIP_QUIET) --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

run: $(STAMP)
	@echo "$(VPY) run_experiment.py $(DATA_FLAG) --root_output_dir=$(OUT) $(ARGS)"
	@$(VPY) run_experiment.py $(DATA_FLAG) --root_output_dir=$(OUT) $(ARGS)

# The tests run in a private network namespace (loopback only) where possible,
# one pytest-xdist process per core (at most 4: about 1 GB each), a test
# module per process at a time.
test: $(STAMP)
	tests/private_network.sh $(VPY) -m pytest -q -n auto --maxprocesses=4 --dist loadfile tests

clean:
	rm -rf $(VENV) output
