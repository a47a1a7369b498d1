"""The server side of the project's own federated computations.

`stateful_local` and `reconstruction.exact` build their rounds directly from
federated intrinsics; both end the same way: the clients' updates go through
an aggregation process, and the aggregate is applied to the global weights
by a `tff.learning` optimizer. This module builds that once:

  state   <model=ModelWeights, optimizer=optimizer state,
           aggregator=aggregation process state>@SERVER
  apply   (state, update@CLIENTS, weight@CLIENTS) -> new state@SERVER,
          called inside a `tff.federated_computation`.
"""

import collections
from typing import Optional

import tensorflow_federated as tff


class ServerUpdate:
  """Aggregation of client updates and the server optimizer's step.

  The update is treated as a gradient (or pseudo-gradient): the optimizer
  steps against it.
  """

  def __init__(self, initial_weights: tff.Computation, update_type, weight_type,
               server_optimizer: tff.learning.optimizers.Optimizer,
               model_aggregator: tff.aggregators.AggregationFactory, unweighted: bool):
    """
    Args:
      initial_weights: a no-argument TF computation returning the global
        `ModelWeights` (their type is the model's type in the state).
      update_type, weight_type: types of a client's update and weight.
      server_optimizer: applies the aggregate to the trainable weights.
      model_aggregator: weighted, or unweighted if `unweighted` (the weight
        is then ignored).
      unweighted: whether `model_aggregator` is an unweighted factory.
    """
    self._unweighted = unweighted
    self._aggregation = (model_aggregator.create(update_type) if unweighted
                         else model_aggregator.create(update_type, weight_type))
    self._finalizer = tff.learning.templates.build_apply_optimizer_finalizer(
        server_optimizer, initial_weights.type_signature.result)
    aggregation, finalizer = self._aggregation, self._finalizer

    @tff.federated_computation
    def initialize():
      return tff.federated_zip(collections.OrderedDict(
          model=tff.federated_eval(initial_weights, tff.SERVER),
          optimizer=finalizer.initialize(), aggregator=aggregation.initialize()))

    self.initialize = initialize
    self.state_type = initialize.type_signature.result

  def apply(self, state, update, weight: Optional[object] = None):
    """The new server state after aggregating `update` (and `weight`) at CLIENTS."""
    aggregated = (self._aggregation.next(state.aggregator, update) if self._unweighted
                  else self._aggregation.next(state.aggregator, update, weight))
    finalized = self._finalizer.next(state.optimizer, state.model, aggregated.result)
    return tff.federated_zip(collections.OrderedDict(
        model=finalized.result, optimizer=finalized.state, aggregator=aggregated.state))
