"""User-level privacy: aggregator choice (DP, secure, compression) and ε accounting."""

from tff_movierec.privacy.accounting import (
    EpsilonTracker, default_delta, epsilon, epsilon_series, noise_for_epsilon)
from tff_movierec.privacy.aggregators import (
    KINDS, AggregatorSpec, build_aggregator, check_weighting, set_simulation_context)
