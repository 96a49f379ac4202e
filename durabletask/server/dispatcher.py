"""The dispatcher matches open worker streams with claimable work.

It sleeps until something may have become claimable: a commit that added work (the store tells
it), a stream that opened or freed capacity, or the alarm for the earliest future `ready_at` in
the store (durable timers, abandon back-offs, lease expiries; the store's ready_at index is the
timer heap, so timers survive restarts and nothing is polled). Each round asks the store, once
per stream with free capacity, for work matching that stream's filters, and queues it on the
stream. A worker whose completion leaves it holding nothing need not wait for a round: the
completion carries a claim for its stream (a refill), which the store runs in the completion's own
transaction, so the work the completion made ready (the orchestration an activity result wakes,
the activities an episode scheduled) is on its way back in the same commit. Each stream has at
most one claim in flight. The dispatcher remembers which stream holds which lease: work held by a
stream that goes away is released at once, and the leases of live streams are renewed, so a lease
only runs out when the server itself lost track (a crash or restart).

Version routing happens in the store's query, through each stream's filters. Workers that send no
filters are offered anything and reject what they cannot run; each stream remembers the instances
it rejected for a while, so the store offers those to other streams instead of back to it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import random
import time

from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal.versions import compare_versions
from durabletask.server.metrics import ACTIVITY, ORCHESTRATION, HubMetrics
from durabletask.server.stores.base import ClaimRequest, ClaimResult, CommitNotice, StaleToken, Store, WorkFilters

log = logging.getLogger(__name__)

# How long a stream is not offered an orchestration instance it handed back. Long enough for the
# other streams to take it (the abandon back-off is shorter), short enough that a worker which only
# failed for a moment gets it back if nobody else can run it.
REJECTED_INSTANCE_MEMORY_SECONDS = 10.0


def advertised_version(filters: WorkFilters) -> str:
    """The newest orchestration version a stream's filters ask for ('' when they name none)."""
    versions = [v for f in filters.orchestrations or () for v in (*f.versions, f.max_version) if v]
    return max(versions, key=functools.cmp_to_key(compare_versions), default="")


# Queued on a stream's outbox when the server stops: the stream ends there.
END_OF_STREAM = None


class WorkerStream:
    """One GetWorkItems call: what it accepts, how much it may hold, and the items to send."""

    def __init__(self, filters: WorkFilters, max_orchestrations: int, max_activities: int):
        self.filters = filters
        self.version = advertised_version(filters)
        self.max_orchestrations = max_orchestrations
        self.max_activities = max_activities
        self.outbox: asyncio.Queue[pb.WorkItem | None] = asyncio.Queue()
        self.orchestration_tokens: dict[str, str] = {}  # token -> instance id
        self.activity_tokens: set[str] = set()
        self.claiming = False  # a claim for this stream is in flight
        self.missed_round = False  # a round passed it by while it was claiming
        self._rejected: dict[str, float] = {}  # instance id -> when it may be offered again

    def wanted_orchestrations(self) -> int:
        return self.max_orchestrations - len(self.orchestration_tokens)

    def wanted_activities(self) -> int:
        return self.max_activities - len(self.activity_tokens)

    def holding(self) -> bool:
        return bool(self.orchestration_tokens or self.activity_tokens)

    def hungry(self) -> bool:
        return self.wanted_orchestrations() > 0 or self.wanted_activities() > 0

    def reject(self, instance_id: str) -> None:
        self._rejected[instance_id] = time.time() + REJECTED_INSTANCE_MEMORY_SECONDS

    def claim_filters(self) -> WorkFilters:
        """This stream's filters, minus the instances it rejected recently."""
        if not self._rejected:
            return self.filters
        now = time.time()
        self._rejected = {iid: until for iid, until in self._rejected.items() if until > now}
        return dataclasses.replace(self.filters, excluded_instances=frozenset(self._rejected))

    def next_unexcluded_at(self) -> float | None:
        """When the earliest remembered rejection ends (the instance may then be offered here again)."""
        return min(self._rejected.values(), default=None)


@dataclasses.dataclass
class Refill:
    """The claim a completion carries for the stream it leaves holding nothing."""
    stream: WorkerStream
    request: ClaimRequest


class Dispatcher:
    def __init__(self, store: Store, lease_seconds: float, metrics: HubMetrics):
        self._store = store
        self._lease_seconds = lease_seconds
        self._metrics = metrics
        self._streams: set[WorkerStream] = set()
        self._holder: dict[str, WorkerStream] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._alarm: asyncio.TimerHandle | None = None
        self._alarm_at: float | None = None
        self._loop = asyncio.get_running_loop()
        self._tasks = [self._loop.create_task(self._run()), self._loop.create_task(self._renew_leases())]

    # -- signals ------------------------------------------------------------------------------
    def on_commit(self, notice: CommitNotice) -> None:
        """Called on the event loop after a store commit."""
        if notice.work_ready:
            self._wake.set()
        else:
            self._wake_at(notice.wake_at)

    def open_stream(self, filters: WorkFilters, max_orchestrations: int, max_activities: int) -> WorkerStream:
        stream = WorkerStream(filters, max_orchestrations, max_activities)
        self._streams.add(stream)
        self._metrics.workers_connected.labels(stream.version).inc()
        self._wake.set()
        return stream

    def close_stream(self, stream: WorkerStream) -> None:
        """Forget the stream and give back, at once, the work it held but had not finished (unless
        the server is stopping: see `stop`)."""
        self._streams.discard(stream)
        self._metrics.workers_connected.labels(stream.version).dec()
        held = _by_token(stream.orchestration_tokens, stream.activity_tokens)
        for token in held:
            self._holder.pop(token, None)
        if held and not self._stopping:
            self._loop.create_task(self._release(held))

    def settled(self, token: str, handed_back: bool = False) -> None:
        """A work item was abandoned (`handed_back`) or otherwise let go: its stream has room for
        another, and is not offered an orchestration it handed back again for a while."""
        stream = self._holder.get(token)
        if stream is not None:
            instance_id = stream.orchestration_tokens.get(token)
            self._let_go(token)
            if handed_back and instance_id is not None:
                stream.reject(instance_id)
            self._wake.set()

    def completing(self, token: str) -> Refill | None:
        """A worker is completing a work item: the refill for its stream, to claim in the completion's
        transaction. Only a stream left holding nothing gets one (its worker waits on this very
        completion's outcome, as in a chain of steps); a stream that still holds work, or is already
        claiming, is refilled by the next round, which claims for many completions at once."""
        stream = self._let_go(token)
        if stream is None:
            return None
        if stream.claiming or self._stopping or stream not in self._streams or stream.holding():
            self._wake.set()
            return None
        stream.claiming = True
        return Refill(stream, self._claim_request(stream))

    def refilled(self, refill: Refill | None, completion: asyncio.Future) -> None:
        """The completion that carried `refill` is over: hand out what its claim got."""
        if refill is None:
            return
        if completion.cancelled() or completion.exception() is not None:
            refill.stream.claiming = False
            self._wake.set()  # nothing was claimed, and the stream has room
            return
        self._hand_out(refill.stream, refill.request, completion.result())

    def _let_go(self, token: str) -> WorkerStream | None:
        """Forget the lease `token` held; the stream that held it, if still known."""
        stream = self._holder.pop(token, None)
        if stream is not None:
            stream.orchestration_tokens.pop(token, None)
            stream.activity_tokens.discard(token)
        return stream

    async def stop(self) -> None:
        """Hand out nothing more and end every work item stream, so that workers reconnect (to another
        replica, or to this server restarted). The work they hold keeps its lease: a result reported
        wherever the worker reconnects still applies, instead of being refused after the work was
        handed out again; work nobody reports returns to the queue when its lease runs out."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        if self._alarm is not None:
            self._alarm.cancel()
        for stream in self._streams:
            stream.outbox.put_nowait(END_OF_STREAM)

    # -- the loop -----------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            hungry = [s for s in self._streams if s.hungry()]
            for stream in hungry:
                stream.missed_round |= stream.claiming
            hungry = [s for s in hungry if not s.claiming]
            if not hungry:
                continue
            # Claims reach the store in this order; shuffling spreads work (and the retries of work
            # one worker abandoned) across streams instead of always favouring the same one.
            random.shuffle(hungry)
            try:
                await asyncio.gather(*(self._fill(stream) for stream in hungry))
            except Exception:
                log.exception("claiming work failed; retrying in a second")
                self._wake_at(time.time() + 1.0)

    def _claim_request(self, stream: WorkerStream) -> ClaimRequest:
        return ClaimRequest(stream.wanted_orchestrations(), stream.wanted_activities(), stream.claim_filters(),
                            self._lease_seconds)

    async def _fill(self, stream: WorkerStream) -> None:
        request = self._claim_request(stream)
        stream.claiming = True
        try:
            claim = await self._store.claim(request.max_orchestrations, request.max_activities, request.filters,
                                            request.lease_seconds)
        except BaseException:
            stream.claiming = False
            raise
        self._hand_out(stream, request, claim)

    def _hand_out(self, stream: WorkerStream, request: ClaimRequest, claim: ClaimResult) -> None:
        """Queue what a claim for `stream` got on it (or give it back, if the stream closed meanwhile)."""
        stream.claiming = False
        if stream not in self._streams:
            held = _by_token([item.token for item in claim.orchestrations], [item.token for item in claim.activities])
            if held:
                self._loop.create_task(self._release(held))
            return
        self._count_dispatched(claim)
        for item in claim.orchestrations:
            stream.orchestration_tokens[item.token] = item.request.instanceId
            self._holder[item.token] = stream
            stream.outbox.put_nowait(pb.WorkItem(orchestratorRequest=item.request, completionToken=item.token))
        for item in claim.activities:
            stream.activity_tokens.add(item.token)
            self._holder[item.token] = stream
            stream.outbox.put_nowait(pb.WorkItem(activityRequest=item.request, completionToken=item.token))
        took_all_it_asked = (0 < request.max_orchestrations == len(claim.orchestrations)) or \
            (0 < request.max_activities == len(claim.activities))
        if took_all_it_asked or stream.missed_round:
            self._wake.set()  # there may be more for it
            stream.missed_round = False
        for at in (claim.next_ready_at, stream.next_unexcluded_at()):
            self._wake_at(at)

    def _count_dispatched(self, claim: ClaimResult) -> None:
        now = time.time()
        for kind, items in ((ORCHESTRATION, claim.orchestrations), (ACTIVITY, claim.activities)):
            for item in items:
                self._metrics.dispatched.labels(kind).inc()
                if item.ready_at is not None:
                    self._metrics.work_item_latency.labels(kind).observe(max(0.0, now - item.ready_at))
                if item.lease_expired:
                    self._metrics.abandoned.labels(kind, "lease_expired").inc()

    async def _renew_leases(self) -> None:
        """Keep the leases of work held by live streams from running out: the SDKs cannot renew
        them, and a long activity must not be handed to a second worker while the first still runs.
        Leases therefore only lapse when the server loses track of a stream (a crash or restart)."""
        while True:
            await asyncio.sleep(self._lease_seconds / 3)
            if self._holder:
                try:
                    await self._store.renew(list(self._holder), self._lease_seconds)
                except Exception:
                    log.exception("renewing leases failed; will retry")

    def _wake_at(self, at: float | None) -> None:
        """Run a round at `at` (if no round is due earlier). A round that finds nothing costs one
        claim, so an alarm set for work that went away meanwhile does no harm."""
        if at is None or (self._alarm_at is not None and self._alarm_at <= at):
            return
        if self._alarm is not None:
            self._alarm.cancel()
        self._alarm_at = at
        self._alarm = self._loop.call_later(max(0.0, at - time.time()), self._ring)

    def _ring(self) -> None:
        self._alarm = self._alarm_at = None
        self._wake.set()

    async def _release(self, held: dict[str, str]) -> None:
        """Give back work items (token -> kind) held by a stream that closed."""
        for token, kind in held.items():
            try:
                await self._store.abandon(token, 0.0)
                self._metrics.abandoned.labels(kind, "stream_closed").inc()
            except StaleToken:
                pass  # completed or re-leased meanwhile
            except Exception:
                log.exception("releasing work item %s failed; its lease will expire instead", token)


def _by_token(orchestration_tokens, activity_tokens) -> dict[str, str]:
    return {**dict.fromkeys(orchestration_tokens, ORCHESTRATION), **dict.fromkeys(activity_tokens, ACTIVITY)}
