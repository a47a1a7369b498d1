"""TFF's own multi-worker runtime: one mergeable context over remote workers.

Each round's clients are split into subrounds across several TFF workers
(`worker_binary`, see `tff_movierec.worker`), each reached through
`tff.framework.RemoteExecutor` in a `tff.framework.AsyncExecutionContext`.
`tff.backends.native.create_mergeable_comp_execution_context`'s context runs
the part of a computation up to its aggregation on every worker, merges the
partial aggregates and runs the rest once. Nothing here is a runtime of its
own: it only wires TFF's pieces together and adds two things TFF lacks.

1. Faults. TFF retries a call to an unreachable worker forever. Here every
   retry first waits for the worker's gRPC channel to be ready again, for at
   most `timeout_s`; then the call raises `WorkerUnreachableError`, naming
   the worker. A worker host that vanishes without closing its TCP
   connection is noticed by gRPC keepalive pings during a call (see
   CHANNEL_OPTIONS), then treated the same way.
2. Traffic. Every request and response is counted (`Traffic`), so a run can
   report the bytes it sent to and received from its workers per round.

A computation whose aggregation depends on another aggregation cannot be
split: TFF refuses it when it is compiled for this context.

Secure aggregation (`tff.federated_secure_sum*`) is compiled to plain sums
first (`tff.backends.test.replace_secure_intrinsics_with_bodies`), as for the
local worker: simulated in the clear, for research.

Workers listen on every interface, without TLS or authentication: run them
on a private network, or reach them through SSH tunnels (README, "Running on
several machines").
"""

import asyncio
import dataclasses
import threading
import time
from typing import Any, List, Optional, Sequence, Tuple

import grpc
import tensorflow_federated as tff

from tff_movierec.errors import ConfigError

# TFF values (model weights, client datasets) can exceed gRPC's 4 MB default.
MAX_MESSAGE_BYTES = 2 * 1000 * 1000 * 1000
CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Reconnect quickly: a worker that comes back (or starts late) is used at
    # once, and a dead one is re-tried every second until the timeout.
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # A worker whose host vanishes without closing the connection leaves a call
    # waiting for an answer that never comes. gRPC keepalive: ping while a
    # call is in flight, every 6 minutes (a gRPC server, TFF's worker
    # included, answers pings less than 5 minutes apart with GOAWAY
    # "too_many_pings"), and drop the connection when a ping is not answered
    # within 20 s. Measured (bench/frozen_worker.py): a worker
    # frozen by SIGSTOP ends the run, naming it, 60-68 s after the freeze;
    # without these two options the run still waited 6 minutes later.
    ("grpc.keepalive_time_ms", 360_000),
    ("grpc.keepalive_timeout_ms", 20_000),
)


class WorkerUnreachableError(RuntimeError):
  """A remote worker could not be reached within the timeout.

  Attributes:
    address: the worker's host:port.
  """

  def __init__(self, message: str, address: str):
    super().__init__(message)
    self.address = address


@dataclasses.dataclass(frozen=True)
class WorkerSettings:
  """Where the remote workers are and how long to wait for them.

  Attributes:
    addresses: "host:port" of each worker (distinct).
    num_subrounds: subrounds each round's clients are split into (None: one
      per worker). More subrounds than workers run in turn; fewer leave
      workers idle.
    timeout_s: how long a call waits for an unreachable worker before it
      fails with `WorkerUnreachableError`.
  """

  addresses: Tuple[str, ...]
  num_subrounds: Optional[int] = None
  timeout_s: float = 60.0

  def __post_init__(self):
    object.__setattr__(self, "addresses", tuple(self.addresses))
    if not self.addresses:
      raise ConfigError("workers=(): give at least one host:port.", ("workers",))
    for address in self.addresses:
      host, _, port = address.rpartition(":")
      if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"workers={','.join(self.addresses)}: {address!r} is not "
                          "host:port (e.g. 127.0.0.1:8000).", ("workers",))
    if len(set(self.addresses)) != len(self.addresses):
      raise ConfigError(f"workers={','.join(self.addresses)}: a worker is listed twice.",
                        ("workers",))
    if self.num_subrounds is not None and self.num_subrounds < 1:
      raise ConfigError(f"num_subrounds={self.num_subrounds}: must be >= 1.",
                        ("num_subrounds",))
    if not self.timeout_s > 0:
      raise ConfigError(f"worker_timeout_s={self.timeout_s}: must be > 0.",
                        ("worker_timeout_s",))


class Traffic:
  """Bytes of the gRPC requests sent and responses received (thread-safe)."""

  def __init__(self):
    self._lock = threading.Lock()
    self.sent = 0
    self.received = 0

  def add(self, sent: int, received: int) -> None:
    with self._lock:
      self.sent += sent
      self.received += received

  def totals(self) -> Tuple[int, int]:
    with self._lock:
      return self.sent, self.received


class _CountingInterceptor(grpc.UnaryUnaryClientInterceptor):
  """Adds the serialized size of each request and response to a `Traffic`.
  (TFF's executor service has unary calls only.)"""

  def __init__(self, traffic: Traffic):
    self._traffic = traffic

  def intercept_unary_unary(self, continuation, client_call_details, request):
    outcome = continuation(client_call_details, request)
    received = 0
    if outcome.exception() is None:
      received = outcome.result().ByteSize()
    self._traffic.add(request.ByteSize(), received)
    return outcome


@dataclasses.dataclass
class Connection:
  """One worker: its address, channel and TFF stub."""

  address: str
  channel: grpc.Channel
  stub: tff.framework.RemoteExecutorGrpcStub

  def wait_until_ready(self, timeout_s: float, doing: str,
                       deadline: Optional[float] = None) -> None:
    """Returns once the channel is ready, waiting up to `timeout_s` (or until
    the `time.monotonic()` `deadline`); else WorkerUnreachableError."""
    wait_s = timeout_s if deadline is None else max(deadline - time.monotonic(), 0.001)
    try:
      grpc.channel_ready_future(self.channel).result(timeout=wait_s)
    except grpc.FutureTimeoutError:
      raise WorkerUnreachableError(
          f"TFF worker {self.address} could not be reached for {timeout_s:g} s "
          f"({doing}). Is `python -m tff_movierec.worker --port=PORT` running there, "
          "and is the port reachable from here?", self.address) from None


def counted_channel(address: str, traffic: Traffic) -> grpc.Channel:
  """An insecure channel to `address` whose calls are counted in `traffic`."""
  return grpc.intercept_channel(grpc.insecure_channel(address, options=list(CHANNEL_OPTIONS)),
                                _CountingInterceptor(traffic))


def connect(address: str, traffic: Traffic) -> Connection:
  channel = counted_channel(address, traffic)
  return Connection(address, channel, tff.framework.RemoteExecutorGrpcStub(channel))


def _async_context(connection: Connection, timeout_s: float
                   ) -> tff.framework.AsyncExecutionContext:
  def stack_fn(cardinalities):
    # TFF calls this for every attempt, also after a retryable gRPC error;
    # waiting here turns its endless retries into a bounded wait.
    connection.wait_until_ready(timeout_s, "during a computation")
    if cardinalities.get(tff.CLIENTS) is None:
      cardinalities[tff.CLIENTS] = 0
    executor = tff.framework.RemoteExecutor(connection.stub)
    executor.set_cardinalities(cardinalities)
    return executor

  return tff.framework.AsyncExecutionContext(
      executor_fn=tff.framework.ResourceManagingExecutorFactory(stack_fn),
      compiler_fn=tff.backends.native.desugar_and_transform_to_native,
      transform_args=tff.tensorflow.transform_args,
      transform_result=tff.tensorflow.transform_result)


def _compile_with_secure_sums_in_clear(comp):
  """The mergeable compilation of `comp` with its secure sums made plain sums."""
  replaced = tff.backends.test.replace_secure_intrinsics_with_bodies(comp)
  replaced = tff.framework.ConcreteComputation.with_type(replaced, comp.type_signature)
  return tff.backends.native.compile_to_mergeable_comp_form(replaced)


def make_context(connections: Sequence[Connection], settings: WorkerSettings,
                 secure_intrinsics: bool) -> tff.framework.MergeableCompExecutionContext:
  """The mergeable context over `connections` (each checked reachable first)."""
  deadline = time.monotonic() + settings.timeout_s
  for connection in connections:
    connection.wait_until_ready(settings.timeout_s, "when connecting", deadline)
  return tff.framework.MergeableCompExecutionContext(
      async_contexts=[_async_context(c, settings.timeout_s) for c in connections],
      compiler_fn=(_compile_with_secure_sums_in_clear if secure_intrinsics
                   else tff.backends.native.compile_to_mergeable_comp_form),
      num_subrounds=settings.num_subrounds)


def invoke_on_each(connections: Sequence[Connection], timeout_s: float,
                   comp: tff.Computation) -> List[Tuple[str, Any]]:
  """Runs the argument-less `comp` on every worker by itself: [(address,
  its result, or the exception it raised)], e.g. to ask each worker what
  it can read."""
  outcomes = []
  for connection in connections:
    try:
      outcomes.append((connection.address,
                       asyncio.run(_async_context(connection, timeout_s).invoke(comp, None))))
    except WorkerUnreachableError:
      raise
    except Exception as error:  # pylint: disable=broad-except
      outcomes.append((connection.address, error))
  return outcomes
