"""The worker: holds a work item stream open to the task hub and runs orchestrators and activities.

One background thread reads the `GetWorkItems` stream and hands each item to a bounded thread
pool (one for orchestrations, one for activities); the pool thread runs the item and reports the
result with the item's completion token. When the stream drops for any reason, the reader
reconnects with capped, jittered exponential back-off until `stop()` is called.

`stop(grace_period=...)` drains: new work items are handed straight back, running ones may finish
within the grace period, and whatever is left is handed back (abandoned) so that another worker
takes it at once. `is_connected` says whether a work item stream is open and taking work.
"""

import logging
import os
import queue
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import grpc

from durabletask import task
from durabletask.internal import json_payloads as payloads
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as stubs
from durabletask.internal import replay
from durabletask.internal.failures import failure_details
from durabletask.internal.grpc_channel import DEFAULT_HOST_ADDRESS, open_channel
from durabletask.internal.versions import compare_versions
from durabletask.security import TlsOptions

# Reconnect back-off: base * 2**attempt seconds, capped, then scaled by a random factor in
# [1 - JITTER, 1] so that many workers losing the same hub do not reconnect in lockstep.
RECONNECT_BASE_SECONDS = 0.1
RECONNECT_CAP_SECONDS = 5.0
RECONNECT_JITTER = 0.5
# A stream that stayed open this long was a working connection, so its loss starts back-off afresh.
HEALTHY_STREAM_SECONDS = 5.0
# How long items already received may keep arriving after gRPC reports the call ended.
STUCK_STREAM_GRACE_SECONDS = 1.0
# A hub that vanishes without closing the connection (a lost node, a cut network) leaves the stream
# silent for good, and gRPC would open the next stream on the same dead connection. Our hub sends a
# health ping every 30 s, so a stream silent this long is given up, with its channel (Microsoft's
# SDK waits as long by default).
SILENT_STREAM_SECONDS = 120.0
_CALL_ENDED = object()
# How many unfinished orchestrations keep their replay checkpoint between episodes (least recently
# run dropped first); a dropped one is replayed from its full history, which is always correct.
REPLAY_CHECKPOINTS = 1000
# The kinds of work item, as WorkItemInfo.kind names them.
ORCHESTRATION = "orchestration"
ACTIVITY = "activity"


class ConcurrencyOptions:
    """How many work items of each kind a worker takes at once, and how many threads run them."""

    def __init__(self,
                 maximum_concurrent_activity_work_items: int | None = None,
                 maximum_concurrent_orchestration_work_items: int | None = None,
                 maximum_concurrent_entity_work_items: int | None = None,
                 maximum_thread_pool_workers: int | None = None):
        processors = os.cpu_count() or 1

        def given_or(value: int | None, default: int) -> int:
            return default if value is None else value

        self.maximum_concurrent_activity_work_items = given_or(maximum_concurrent_activity_work_items, 100 * processors)
        self.maximum_concurrent_orchestration_work_items = given_or(maximum_concurrent_orchestration_work_items,
                                                                    100 * processors)
        self.maximum_concurrent_entity_work_items = given_or(maximum_concurrent_entity_work_items, 100 * processors)
        self.maximum_thread_pool_workers = given_or(maximum_thread_pool_workers, processors + 4)


class VersionMatchStrategy(Enum):
    NONE = 1
    STRICT = 2
    CURRENT_OR_OLDER = 3


class VersionFailureStrategy(Enum):
    REJECT = 1
    FAIL = 2


class VersioningOptions:
    """Which orchestration versions this worker runs, and what it does with the others.

    `version` is the worker's own version, compared with each orchestration's version under
    `match_strategy`; `default_version` is given to sub-orchestrations started without `version=`.
    On a mismatch, REJECT (the default) hands the work item back for another worker; FAIL fails
    the orchestration.
    """

    def __init__(self, version: str | None = None,
                 default_version: str | None = None,
                 match_strategy: VersionMatchStrategy | None = None,
                 failure_strategy: VersionFailureStrategy | None = None):
        self.version = version
        self.default_version = default_version
        self.match_strategy = match_strategy
        self.failure_strategy = failure_strategy


def version_mismatch(options: VersioningOptions, orchestration_version: str | None) -> pb.TaskFailureDetails | None:
    """Why this worker must not run an orchestration of `orchestration_version`, or None if it may."""
    strategy = options.match_strategy
    if strategy in (None, VersionMatchStrategy.NONE):
        return None
    comparison = compare_versions(orchestration_version, options.version)
    if strategy == VersionMatchStrategy.STRICT and comparison != 0:
        message = (f"The orchestration version '{orchestration_version}' does not match "
                   f"the worker version '{options.version}'.")
    elif strategy == VersionMatchStrategy.CURRENT_OR_OLDER and comparison > 0:
        message = (f"The orchestration version '{orchestration_version}' is greater than "
                   f"the worker version '{options.version}'.")
    else:
        return None
    return pb.TaskFailureDetails(errorType="VersionMismatch", errorMessage=message, isNonRetriable=True)


@dataclass(frozen=True)
class OrchestrationWorkItemFilter:
    """Orchestrations named `name`: of any version, of `versions`, or (our hub's extension) of
    `max_version` or older. Hubs that do not know `max_version` ignore it."""
    name: str
    versions: list[str] = field(default_factory=list)
    max_version: str | None = None


@dataclass(frozen=True)
class ActivityWorkItemFilter:
    """Activities named `name`, with the same version rules as OrchestrationWorkItemFilter."""
    name: str
    versions: list[str] = field(default_factory=list)
    max_version: str | None = None


@dataclass(frozen=True)
class EntityWorkItemFilter:
    name: str

    def __post_init__(self):
        object.__setattr__(self, "name", self.name.lower())


@dataclass(frozen=True)
class WorkItemFilters:
    """Tells the hub which work this worker can run; the hub offers it nothing else."""

    orchestrations: list[OrchestrationWorkItemFilter] = field(default_factory=list)
    activities: list[ActivityWorkItemFilter] = field(default_factory=list)
    entities: list[EntityWorkItemFilter] = field(default_factory=list)

    def to_proto(self) -> pb.WorkItemFilters:
        return pb.WorkItemFilters(
            orchestrations=[pb.OrchestrationFilter(name=f.name, versions=f.versions, maxVersion=f.max_version or "")
                            for f in self.orchestrations],
            activities=[pb.ActivityFilter(name=f.name, versions=f.versions, maxVersion=f.max_version or "")
                        for f in self.activities],
            entities=[pb.EntityFilter(name=f.name) for f in self.entities],
        )


def _pump(stream: Any, inbox: "queue.SimpleQueue") -> None:
    """Move a work item stream's items into `inbox`, then a sentence saying why it ended."""
    try:
        for work_item in stream:
            inbox.put(work_item)
        inbox.put("the hub ended the stream")
    except grpc.RpcError as error:
        inbox.put(f"{error.code().name}: {error.details()}")


@dataclass(frozen=True)
class WorkItemInfo:
    """What a work item runs: kind ("orchestration" or "activity"), name and version ("" if none)."""
    kind: str
    name: str
    version: str


class WorkItemOutcome(Enum):
    COMPLETED = "completed"  # reported to the hub as done
    FAILED = "failed"  # reported to the hub as failed (the activity raised, the orchestration failed)
    ABANDONED = "abandoned"  # handed back to the hub for another worker
    NOT_REPORTED = "not_reported"  # the hub could not be told; it will redeliver the item


class WorkItemListener:
    """Observes the work items a worker runs, e.g. for metrics. Override what you need; both are
    called on the thread that runs the item, so keep them quick."""

    def work_item_started(self, item: WorkItemInfo) -> None:
        pass

    def work_item_finished(self, item: WorkItemInfo, outcome: WorkItemOutcome, seconds: float) -> None:
        pass


class OrchestratorNotRegisteredError(ValueError):
    """A work item named an orchestrator this worker does not have."""


class ActivityNotRegisteredError(ValueError):
    """A work item named an activity this worker does not have."""


# Marks "filters derived from the registrations at start()", distinct from None ("no filters").
_FILTERS_FROM_REGISTRATIONS = object()


class _Checkpoints:
    """The replay checkpoints of recently run orchestrations, by instance id (bounded, LRU).

    `take` removes the checkpoint, so two episodes of one instance never share a run."""

    def __init__(self, capacity: int):
        self._capacity = capacity
        self._by_instance: OrderedDict[str, replay.Checkpoint] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, instance_id: str) -> replay.Checkpoint | None:
        with self._lock:
            return self._by_instance.pop(instance_id, None)

    def keep(self, instance_id: str, checkpoint: replay.Checkpoint | None) -> None:
        if checkpoint is None:
            return
        with self._lock:
            self._by_instance[instance_id] = checkpoint
            if len(self._by_instance) > self._capacity:
                self._by_instance.popitem(last=False)


class TaskHubGrpcWorker:
    def __init__(self, *,
                 host_address: str | None = None,
                 metadata: list[tuple[str, str]] | None = None,
                 log_handler: logging.Handler | None = None,
                 log_formatter: logging.Formatter | None = None,
                 logger: logging.Logger | None = None,
                 channel: grpc.Channel | None = None,
                 secure_channel: bool = False,
                 interceptors: list | None = None,
                 concurrency_options: ConcurrencyOptions | None = None,
                 tls_options: TlsOptions | None = None):
        """`channel`: a channel of your own, used as it is (host_address, secure_channel, interceptors
        and tls_options are then ignored) and left open by stop(). `tls_options`: TLS with a private CA
        or a client certificate (durabletask.security)."""
        self._host_address = host_address
        self._metadata = metadata
        self._given_channel = channel
        self._secure_channel = secure_channel
        self._interceptors = interceptors
        self._tls_options = tls_options
        self._concurrency = concurrency_options or ConcurrencyOptions()
        self._logger = logger or logging.getLogger("durabletask.worker")
        if log_handler is not None:
            if log_formatter is not None:
                log_handler.setFormatter(log_formatter)
            self._logger.addHandler(log_handler)
        self._orchestrators: dict[str, task.Orchestrator[Any, Any]] = {}
        self._activities: dict[str, task.Activity[Any, Any]] = {}
        self._versioning: VersioningOptions | None = None
        # By default the hub routes by name and version before it hands out work, instead of this
        # worker rejecting (or failing) what it cannot run; use_work_item_filters(None) opts out.
        self._filters: WorkItemFilters | None | object = _FILTERS_FROM_REGISTRATIONS
        self._stopping = threading.Event()
        self._stream_lock = threading.Lock()
        self._stream: Any = None
        self._reader: threading.Thread | None = None
        self._channel: grpc.Channel | None = None
        self._stub: Any = None
        self._orchestration_pool: ThreadPoolExecutor | None = None
        self._activity_pool: ThreadPoolExecutor | None = None
        self._orchestration_slots: threading.BoundedSemaphore | None = None
        self._activity_slots: threading.BoundedSemaphore | None = None
        self._listener = WorkItemListener()
        self._channel_ready = False
        # Work items received and not yet settled: token -> (kind, future). The lock makes "stop
        # taking work" and "take this item" exclusive, so stop() sees every item it must drain.
        self._in_flight: dict[str, tuple[str, Future]] = {}
        self._in_flight_lock = threading.Lock()
        self._handed_back: set[str] = set()
        self._checkpoints = _Checkpoints(REPLAY_CHECKPOINTS)

    @property
    def concurrency_options(self) -> ConcurrencyOptions:
        return self._concurrency

    @property
    def is_running(self) -> bool:
        return self._reader is not None

    @property
    def is_connected(self) -> bool:
        """True while a work item stream to the hub is open and the worker takes work from it.

        The hub sends nothing on a new stream until it has work, so "open" means the call is live
        on a channel that is connected."""
        stream = self._stream
        return (self._channel_ready and stream is not None and not stream.done()
                and not self._stopping.is_set())

    def __enter__(self) -> "TaskHubGrpcWorker":
        return self

    def __exit__(self, *args: object) -> None:
        self.stop()

    # ---- configuration ------------------------------------------------------------------

    def add_orchestrator(self, fn: task.Orchestrator[Any, Any]) -> str:
        return self._register(self._orchestrators, "orchestrator", fn)

    def add_activity(self, fn: task.Activity[Any, Any]) -> str:
        return self._register(self._activities, "activity", fn)

    def use_versioning(self, version: VersioningOptions) -> None:
        self._refuse_while_running("change versioning")
        if not isinstance(version, VersioningOptions):
            raise TypeError(f"use_versioning expects VersioningOptions, but got a {type(version).__name__}.")
        self._versioning = version

    def use_work_item_filters(self, filters: WorkItemFilters | None | object = _FILTERS_FROM_REGISTRATIONS) -> None:
        """Ask the hub for matching work only: the given filters, or (no argument, and the default)
        the registered names.

        Filters derived from registrations carry the worker's version: as the only version under
        STRICT matching, as the newest accepted one under CURRENT_OR_OLDER. None removes filters:
        the hub then offers every work item, and this worker rejects or fails what it cannot run.
        """
        self._refuse_while_running("change work item filters")
        if not (filters is None or filters is _FILTERS_FROM_REGISTRATIONS or isinstance(filters, WorkItemFilters)):
            raise TypeError(f"use_work_item_filters expects WorkItemFilters or None, but got a {type(filters).__name__}.")
        self._filters = filters

    def use_work_item_listener(self, listener: WorkItemListener) -> None:
        """Tell `listener` when each work item starts running and how it ends."""
        self._refuse_while_running("change the work item listener")
        self._listener = listener

    def _register(self, registry: dict[str, Any], kind: str, fn: Callable[..., Any]) -> str:
        self._refuse_while_running(f"add an {kind}")
        if not callable(fn):
            raise TypeError(f"add_{kind} expects a function, but got a {type(fn).__name__}.")
        name = task.get_name(fn)
        if name in registry:
            raise ValueError(f"A '{name}' {kind} already exists.")
        registry[name] = fn
        return name

    def _refuse_while_running(self, action: str) -> None:
        if self.is_running:
            raise RuntimeError(f"Cannot {action} while the worker is running; call stop() first.")

    def _work_item_filters(self) -> WorkItemFilters | None:
        if self._filters is not _FILTERS_FROM_REGISTRATIONS:
            return self._filters  # type: ignore[return-value]
        versioning = self._versioning
        strategy = versioning.match_strategy if versioning and versioning.version else None
        versions = [versioning.version] if strategy == VersionMatchStrategy.STRICT else []
        max_version = versioning.version if strategy == VersionMatchStrategy.CURRENT_OR_OLDER else None
        return WorkItemFilters(
            orchestrations=[OrchestrationWorkItemFilter(name, list(versions), max_version) for name in self._orchestrators],
            activities=[ActivityWorkItemFilter(name, list(versions), max_version) for name in self._activities],
        )

    # ---- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Connect to the hub and process work items on background threads until stop()."""
        if self.is_running:
            raise RuntimeError("The worker is already running.")
        self._stopping.clear()
        self._handed_back.clear()
        self._open_channel()
        threads = self._concurrency.maximum_thread_pool_workers
        self._orchestration_pool = ThreadPoolExecutor(threads, thread_name_prefix="durabletask-orchestration")
        self._activity_pool = ThreadPoolExecutor(threads, thread_name_prefix="durabletask-activity")
        self._orchestration_slots = threading.BoundedSemaphore(
            self._concurrency.maximum_concurrent_orchestration_work_items)
        self._activity_slots = threading.BoundedSemaphore(self._concurrency.maximum_concurrent_activity_work_items)
        self._reader = threading.Thread(target=self._read_work_items, args=(self._work_items_request(),),
                                        name="durabletask-work-items", daemon=True)
        self._reader.start()
        self._logger.info("Worker started; receiving work items from %s", self._address)

    def stop(self, grace_period: float | None = None) -> None:
        """Stop taking work items and disconnect, handing back to the hub whatever is not done.

        Items received but not started are handed back at once, as are items that arrive from now
        on. Running items may finish: for up to `grace_period` seconds, or for as long as they take
        if it is None; the ones still running then are handed back too (their threads cannot be
        interrupted: their results will not be reported, and the hub gives the items to another
        worker). The stream stays open until then, because the hub releases all the work a closed
        stream held, and results reported after that would be refused.
        """
        if not self.is_running:
            return
        with self._in_flight_lock:
            self._stopping.set()
            in_flight = dict(self._in_flight)
        running = {}
        for token, (kind, future) in in_flight.items():
            if future.cancel():
                self._hand_back(kind, token)
                self._slots(kind).release()
            else:
                running[future] = (kind, token)
        if running:
            self._logger.info("Stopping: waiting for %d running work item(s)", len(running))
        _, unfinished = wait_for_futures(running, timeout=grace_period)
        for future in unfinished:
            kind, token = running[future]
            self._handed_back.add(token)
            self._hand_back(kind, token)
        if unfinished:
            self._logger.warning("Handed %d work item(s) still running after %.1fs back to the hub",
                                 len(unfinished), grace_period)
        with self._stream_lock:
            if self._stream is not None:
                self._stream.cancel()
        self._reader.join()
        self._orchestration_pool.shutdown(wait=not unfinished)
        self._activity_pool.shutdown(wait=not unfinished)
        self._channel.unsubscribe(self._on_channel_state)
        if self._given_channel is None:
            self._channel.close()
        self._channel = None
        self._channel_ready = False
        self._reader = None
        self._logger.info("Worker stopped")

    def _open_channel(self) -> None:
        """A new channel for all calls from now on (the user's own, when one was given). A channel given
        up on is left to the garbage collector rather than closed: calls still running on it end by
        themselves."""
        if self._channel is not None:
            self._channel.unsubscribe(self._on_channel_state)
        self._channel = self._given_channel or open_channel(self._host_address, self._secure_channel,
                                                          self._interceptors, self._tls_options)
        self._stub = stubs.TaskHubSidecarServiceStub(self._channel)
        self._channel.subscribe(self._on_channel_state, try_to_connect=True)

    def _on_channel_state(self, state: grpc.ChannelConnectivity) -> None:
        self._channel_ready = state == grpc.ChannelConnectivity.READY

    @property
    def _address(self) -> str:
        if self._given_channel is not None and self._host_address is None:
            return "the given channel"
        return self._host_address or DEFAULT_HOST_ADDRESS

    def _work_items_request(self) -> pb.GetWorkItemsRequest:
        request = pb.GetWorkItemsRequest(
            maxConcurrentOrchestrationWorkItems=self._concurrency.maximum_concurrent_orchestration_work_items,
            maxConcurrentActivityWorkItems=self._concurrency.maximum_concurrent_activity_work_items,
        )
        filters = self._work_item_filters()
        if filters is not None:
            request.workItemFilters.CopyFrom(filters.to_proto())
        return request

    # ---- the work item stream -----------------------------------------------------------

    def _read_work_items(self, request: pb.GetWorkItemsRequest) -> None:
        """Keep a work item stream open until stop(), reconnecting with back-off whenever it ends."""
        failed_attempts = 0
        while not self._stopping.is_set():
            opened_at = time.monotonic()
            try:
                received_any, reason = self._consume_stream(request, announce_restore=failed_attempts > 0)
            except Exception as error:  # a bug here must not kill the worker for good
                self._logger.exception("Unexpected error while reading work items")
                received_any, reason = False, repr(error)
            if self._stopping.is_set():
                break
            if received_any or time.monotonic() - opened_at >= HEALTHY_STREAM_SECONDS:
                failed_attempts = 0
            delay = min(RECONNECT_CAP_SECONDS, RECONNECT_BASE_SECONDS * 2 ** failed_attempts)
            delay *= random.uniform(1 - RECONNECT_JITTER, 1)
            failed_attempts += 1
            self._logger.warning("Work item stream to %s lost (%s); reconnecting in %.2fs (attempt %d)",
                                 self._address, reason, delay, failed_attempts)
            self._stopping.wait(delay)

    def _consume_stream(self, request: pb.GetWorkItemsRequest, announce_restore: bool) -> tuple[bool, str]:
        """Dispatch the items of one GetWorkItems call; returns (whether any came, why it ended).

        A separate pump thread iterates the call, because gRPC can leave an iterator blocked for
        good when the hub vanishes while the call is being set up, even though the call itself has
        ended. The call's done-callback tells us it ended; a pump silent after that is abandoned.
        """
        stream = self._stub.GetWorkItems(request, metadata=self._metadata)
        with self._stream_lock:
            self._stream = stream
        if self._stopping.is_set():
            stream.cancel()
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=_pump, args=(stream, inbox), name="durabletask-stream-pump", daemon=True).start()
        stream.add_done_callback(lambda _: inbox.put(_CALL_ENDED))
        received_any = False
        give_up_at: float | None = None
        try:
            while True:
                try:
                    item = inbox.get(timeout=SILENT_STREAM_SECONDS if give_up_at is None
                                     else max(0.0, give_up_at - time.monotonic()))
                except queue.Empty:
                    if give_up_at is None:
                        stream.cancel()
                        self._open_channel()
                        return received_any, f"nothing heard from the hub for {SILENT_STREAM_SECONDS:g}s"
                    return received_any, f"{stream.code().name}: {stream.details()}"
                if item is _CALL_ENDED:
                    give_up_at = time.monotonic() + STUCK_STREAM_GRACE_SECONDS
                elif isinstance(item, pb.WorkItem):
                    if not received_any and announce_restore:
                        self._logger.info("Work item stream to %s restored", self._address)
                    received_any = True
                    self._dispatch(item)
                else:
                    return received_any, item
        finally:
            with self._stream_lock:
                self._stream = None

    def _dispatch(self, work_item: pb.WorkItem) -> None:
        kind = work_item.WhichOneof("request")
        token = work_item.completionToken
        if kind == "orchestratorRequest":
            self._start(ORCHESTRATION, self._run_orchestration, work_item.orchestratorRequest, token)
        elif kind == "activityRequest":
            self._start(ACTIVITY, self._run_activity, work_item.activityRequest, token)
        elif kind != "healthPing":
            self._logger.warning("Ignoring a '%s' work item: this worker does not run entities", kind)

    def _start(self, kind: str, run: Callable[[Any, str], None], request: Any, token: str) -> None:
        slots = self._slots(kind)
        slots.acquire()
        with self._in_flight_lock:
            future = None if self._stopping.is_set() else self._pool(kind).submit(run, request, token)
            if future is not None:
                self._in_flight[token] = (kind, future)
        if future is None:
            slots.release()
            self._hand_back(kind, token)
        else:
            # Outside the lock: a future already done runs the callback here and now.
            future.add_done_callback(lambda _: self._settled(token))

    def _settled(self, token: str) -> None:
        with self._in_flight_lock:
            self._in_flight.pop(token, None)

    def _slots(self, kind: str) -> threading.BoundedSemaphore:
        return self._orchestration_slots if kind == ORCHESTRATION else self._activity_slots

    def _pool(self, kind: str) -> ThreadPoolExecutor:
        return self._orchestration_pool if kind == ORCHESTRATION else self._activity_pool

    def _hand_back(self, kind: str, token: str) -> None:
        """Abandon a work item so that the hub offers it to another worker."""
        try:
            if kind == ORCHESTRATION:
                self._stub.AbandonTaskOrchestratorWorkItem(
                    pb.AbandonOrchestrationTaskRequest(completionToken=token), metadata=self._metadata)
            else:
                self._stub.AbandonTaskActivityWorkItem(
                    pb.AbandonActivityTaskRequest(completionToken=token), metadata=self._metadata)
        except grpc.RpcError as error:
            self._logger.warning("Could not hand an %s work item back to the hub (%s: %s); it returns "
                                 "to the queue when its lease ends", kind, error.code().name, error.details())

    # ---- running work items -------------------------------------------------------------

    def _run_orchestration(self, request: pb.OrchestratorRequest, token: str) -> None:
        started = replay.execution_started(request.pastEvents, request.newEvents)
        item = WorkItemInfo(ORCHESTRATION, started.name if started else "",
                            started.version.value if started else "")
        self._run(item, lambda: self._report_orchestration(request, started, token),
                  f"orchestration '{request.instanceId}'")

    def _report_orchestration(self, request: pb.OrchestratorRequest,
                              started: pb.ExecutionStartedEvent | None, token: str) -> WorkItemOutcome:
        try:
            result = self._execute_orchestration(request, started)
        except Exception as error:  # a bug outside the orchestrator's code: fail loudly, not hang
            self._logger.exception("Unexpected error while running orchestration '%s'", request.instanceId)
            result = replay.failed_result(failure_details(error))
        if token in self._handed_back:
            return WorkItemOutcome.ABANDONED
        if result is None:
            self._hand_back(ORCHESTRATION, token)
            return WorkItemOutcome.ABANDONED
        self._stub.CompleteOrchestratorTask(pb.OrchestratorResponse(
            instanceId=request.instanceId, actions=result.actions,
            customStatus=payloads.wrap(result.custom_status), completionToken=token,
        ), metadata=self._metadata)
        self._checkpoints.keep(request.instanceId, result.checkpoint)
        failed = any(action.completeOrchestration.orchestrationStatus == pb.ORCHESTRATION_STATUS_FAILED
                     for action in result.actions if action.HasField("completeOrchestration"))
        return WorkItemOutcome.FAILED if failed else WorkItemOutcome.COMPLETED

    def _execute_orchestration(self, request: pb.OrchestratorRequest,
                               started: pb.ExecutionStartedEvent | None) -> replay.ReplayResult | None:
        """The orchestration's next actions, or None when this worker must hand the item back."""
        if started is None:
            return replay.failed_result(failure_details(task.OrchestrationStateError(
                f"The history of orchestration '{request.instanceId}' has no ExecutionStarted event.")))
        versioning = self._versioning
        if versioning is not None:
            mismatch = version_mismatch(versioning, started.version.value if started.HasField("version") else None)
            if mismatch is not None:
                if versioning.failure_strategy == VersionFailureStrategy.FAIL:
                    self._logger.warning("Failing orchestration '%s': %s", request.instanceId, mismatch.errorMessage)
                    return replay.failed_result(mismatch)
                self._logger.info("Handing orchestration '%s' back to the hub: %s",
                                  request.instanceId, mismatch.errorMessage)
                return None
        orchestrator = self._orchestrators.get(started.name)
        if orchestrator is None:
            return replay.failed_result(failure_details(OrchestratorNotRegisteredError(
                f"A '{started.name}' orchestrator was not registered.")))
        return replay.replay(orchestrator, request.instanceId, request.pastEvents, request.newEvents,
                             default_sub_orchestration_version=versioning.default_version if versioning else None,
                             resume_from=self._checkpoints.take(request.instanceId))

    def _run_activity(self, request: pb.ActivityRequest, token: str) -> None:
        item = WorkItemInfo(ACTIVITY, request.name, request.version.value)
        self._run(item, lambda: self._report_activity(request, token),
                  f"activity '{request.name}#{request.taskId}' of '{request.orchestrationInstance.instanceId}'")

    def _report_activity(self, request: pb.ActivityRequest, token: str) -> WorkItemOutcome:
        response = pb.ActivityResponse(instanceId=request.orchestrationInstance.instanceId, taskId=request.taskId,
                                       completionToken=token)
        try:
            output = self._execute_activity(request)
            if output is not None:
                response.result.value = output
        except Exception as error:
            response.failureDetails.CopyFrom(failure_details(error))
        if token in self._handed_back:
            return WorkItemOutcome.ABANDONED
        self._stub.CompleteActivityTask(response, metadata=self._metadata)
        return WorkItemOutcome.FAILED if response.HasField("failureDetails") else WorkItemOutcome.COMPLETED

    def _run(self, item: WorkItemInfo, run_and_report: Callable[[], WorkItemOutcome], description: str) -> None:
        """Run one work item on a pool thread, tell the listener, and free its slot."""
        self._listener.work_item_started(item)
        began = time.monotonic()
        try:
            outcome = run_and_report()
        except grpc.RpcError as error:
            self._logger.warning("Could not report %s to the hub (%s: %s); the hub will redeliver it",
                                 description, error.code().name, error.details())
            outcome = WorkItemOutcome.NOT_REPORTED
        finally:
            self._slots(item.kind).release()
        self._listener.work_item_finished(item, outcome, time.monotonic() - began)

    def _execute_activity(self, request: pb.ActivityRequest) -> str | None:
        """Run the activity; its JSON-encoded output, or an exception describing its failure."""
        activity = self._activities.get(request.name)
        if activity is None:
            raise ActivityNotRegisteredError(f"Activity function named '{request.name}' was not registered!")
        context = task.ActivityContext(request.orchestrationInstance.instanceId, request.taskId)
        activity_input = payloads.from_json(payloads.unwrap(request.input), payloads.annotated_input_type(activity))
        return payloads.to_json(activity(context, activity_input))
