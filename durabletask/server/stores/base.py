"""The store interface: everything the task hub server persists, as one small contract that the
SQLite and PostgreSQL stores both implement (and both pass `tests/test_store_conformance.py`).

Every method is a coroutine and atomic: it either commits all of its effects or none (except
`instance_counts` and `pending_counts`, which are synchronous so that a metrics scrape thread can
call them). Work items
are leased: a claim returns a completion token, and only the holder of the current token may
complete or abandon the item (fencing), so work is never applied twice.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from durabletask.internal import orchestrator_service_pb2 as pb

TERMINAL_STATUSES = frozenset({
    pb.ORCHESTRATION_STATUS_COMPLETED,
    pb.ORCHESTRATION_STATUS_FAILED,
    pb.ORCHESTRATION_STATUS_TERMINATED,
})


# While some of an orchestration's activities have not reported, its pending events wait this long
# before it is ready, so that one episode takes in a burst of fan-out results: replaying the history
# once per result would make a fan-out quadratic. A lone result (a chain) is delivered at once.
RESULT_BATCH_SECONDS = 0.1


def status_name(status: int) -> str:
    """RUNNING, PENDING, ... (the enum name without its ORCHESTRATION_STATUS_ prefix), or the number
    of a value the protocol does not define."""
    if status not in pb.OrchestrationStatus.values():
        return str(status)
    return pb.OrchestrationStatus.Name(status).removeprefix("ORCHESTRATION_STATUS_")


LARGEST_ROW_ID = 2**63 - 1  # SQLite INTEGER, PostgreSQL BIGINT


def activity_row_id(token: str) -> int:
    """The activity row an activity token (`a<id>.<nonce>`) names; -1, which names no row, for any
    other text: a token a worker made up must be a stale token, never a crash."""
    digits = token[1:].partition(".")[0] if token.startswith("a") else ""
    if digits.isascii() and digits.isdigit() and len(digits) <= 19 and int(digits) <= LARGEST_ROW_ID:
        return int(digits)
    return -1


def prefix_end(prefix: str) -> str | None:
    """The least string above every string that starts with `prefix` (code point order), the end of
    its key range; None when nothing is above (a prefix of U+10FFFF only)."""
    kept = prefix.rstrip("\U0010ffff")
    if not kept:
        return None
    following = ord(kept[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:
        following = 0xE000  # surrogates are not characters: the next one is U+E000
    return kept[:-1] + chr(following)


def list_key(completed_at: float, instance_id: str) -> str:
    """The continuation key of ListInstanceIds: where the previous page ended."""
    return f"{completed_at!r}|{instance_id}"


def parse_list_key(key: str) -> tuple[float, str]:
    at, separator, instance_id = key.partition("|")
    try:
        if separator:
            return float(at), instance_id
    except ValueError:
        pass
    raise StoreError("The lastInstanceKey is not one this server returned; pass the previous page's key, or none.")


class StoreUrlError(ValueError):
    """A store URL (or the store it names) that the server cannot use; the message says why."""


class StoreError(Exception):
    """A request the store refuses; the message is one sentence meant for the caller."""


class InstanceNotFound(StoreError):
    pass


class InstanceExists(StoreError):
    pass


class StaleToken(StoreError):
    """The completion token is unknown or no longer holds the lease (someone else owns the work)."""


class WrongState(StoreError):
    """The instance is in a status that does not allow the operation."""


class StoreUnavailable(StoreError):
    """The store's database cannot be reached right now; the same request may succeed later."""


class Unstorable(StoreError):
    """The request holds a value this store's database cannot keep (a NUL character in PostgreSQL text)."""


@dataclass(frozen=True)
class NameFilter:
    """Accept work items named `name`: of any version when neither `versions` nor `max_version` is
    given; else of the listed `versions` ('' = unversioned) and, with `max_version`, of every version
    up to and including it in `compare_versions` order (a CURRENT_OR_OLDER worker)."""
    name: str
    versions: tuple[str, ...] = ()
    max_version: str | None = None


@dataclass(frozen=True)
class WorkFilters:
    """What a worker stream accepts. `None` for a kind means "everything of that kind";
    an empty tuple means "nothing of that kind"."""
    orchestrations: tuple[NameFilter, ...] | None = None
    activities: tuple[NameFilter, ...] | None = None
    # Orchestration instances not to offer: the ones this stream handed back moments ago, so that
    # a worker rejecting a version it cannot run is not offered the same instance again at once.
    excluded_instances: frozenset[str] = frozenset()


ACCEPT_ALL = WorkFilters()


@dataclass
class NewInstance:
    instance_id: str
    name: str
    version: str = ""
    input: str | None = None
    scheduled_start: float | None = None  # epoch seconds; None = now
    tags: dict[str, str] = field(default_factory=dict)
    parent: pb.ParentInstanceInfo | None = None
    execution_id: str | None = None  # generated when None


@dataclass
class InstanceState:
    instance_id: str
    execution_id: str
    name: str
    version: str
    status: int
    created_at: float
    updated_at: float
    completed_at: float | None
    scheduled_start: float | None
    input: str | None
    output: str | None
    custom_status: str | None
    failure_details: pb.TaskFailureDetails | None
    parent_instance_id: str | None
    tags: dict[str, str]


@dataclass
class InstanceQuery:
    statuses: tuple[int, ...] = ()
    created_from: float | None = None
    created_to: float | None = None  # exclusive
    id_prefix: str = ""
    page_size: int = 100
    after_id: str | None = None  # continuation: the last instance id of the previous page
    include_payloads: bool = False


@dataclass
class PurgeFilter:
    created_from: float | None = None
    created_to: float | None = None  # exclusive
    statuses: tuple[int, ...] = ()  # only terminal statuses are ever purged


@dataclass
class WorkItem:
    token: str
    request: pb.OrchestratorRequest | pb.ActivityRequest
    ready_at: float | None = None  # when it became claimable (epoch seconds), for the dispatch latency
    lease_expired: bool = False  # a previous holder's lease ran out (the server lost track of it)


@dataclass(frozen=True)
class ClaimRequest:
    """Up to these numbers of ready orchestration and activity work items matching `filters`, leased
    for `lease_seconds`: what `Store.claim` takes, and what a completion may claim along with it."""
    max_orchestrations: int
    max_activities: int
    filters: WorkFilters
    lease_seconds: float


@dataclass
class ClaimResult:
    orchestrations: list[WorkItem]
    activities: list[WorkItem]
    next_ready_at: float | None  # earliest future time more work becomes claimable (timers, leases, back-off)


@dataclass
class CommitNotice:
    """What a committed write changed, for whoever waits on it (dispatcher, status waiters)."""
    work_ready: bool = False  # some work may be claimable now
    status_changed: set[str] = field(default_factory=set)
    wake_at: float | None = None  # else, when work next becomes claimable, if the commit knows
    finished: list[tuple[str, float]] = field(default_factory=list)  # (name, seconds since creation)

    def says_anything(self) -> bool:
        return bool(self.work_ready or self.wake_at or self.status_changed or self.finished)

    def merge(self, other: "CommitNotice") -> None:
        """Add what `other` says (of another write in the same commit)."""
        self.work_ready |= other.work_ready
        self.status_changed |= other.status_changed
        self.wake_at = min((t for t in (self.wake_at, other.wake_at) if t is not None), default=None)
        self.finished += other.finished


class Store(abc.ABC):
    """Persists instances, their history and inbox, and the activity queue."""

    def add_commit_listener(self, listener: Callable[[CommitNotice], None]) -> None:
        """`listener` is called after each commit: on the event loop's thread for SQLite, and for
        PostgreSQL's optimistic batches and other replicas' commits; on a writer thread for
        PostgreSQL's careful batches."""

    def hold_exclusively(self) -> None:
        """Make this process the only server of the store, for a store that can have only one
        (SQLite); raises StoreUrlError if another server has it. A store that many servers share
        (PostgreSQL) has nothing to do."""

    # -- instances ----------------------------------------------------------------------------
    @abc.abstractmethod
    async def create_instance(self, new: NewInstance, replaceable: tuple[int, ...] = ()) -> str:
        """Create an instance (PENDING, ExecutionStarted in its inbox). If the id exists, replace it
        when its status is in `replaceable`, else raise InstanceExists. Returns the execution id."""

    @abc.abstractmethod
    async def get_instance(self, instance_id: str, include_payloads: bool = True) -> InstanceState | None: ...

    @abc.abstractmethod
    async def get_history(self, instance_id: str) -> list[pb.HistoryEvent]:
        """The committed history of the current execution; raises InstanceNotFound."""

    @abc.abstractmethod
    async def raise_event(self, instance_id: str, name: str, data: str | None) -> None:
        """Queue an EventRaised (held while suspended, dropped once finished); InstanceNotFound."""

    @abc.abstractmethod
    async def terminate(self, instance_id: str, output: str | None, recursive: bool) -> None:
        """Finish the instance as TERMINATED now (children too when `recursive`); no-op if finished."""

    @abc.abstractmethod
    async def suspend(self, instance_id: str, reason: str | None) -> None: ...

    @abc.abstractmethod
    async def resume(self, instance_id: str, reason: str | None) -> None: ...

    @abc.abstractmethod
    async def query_instances(self, query: InstanceQuery) -> tuple[list[InstanceState], str | None]:
        """A page of instances ordered by id, and the continuation (last id) when more may follow."""

    @abc.abstractmethod
    async def list_instance_ids(self, statuses: tuple[int, ...], completed_from: float | None,
                          completed_to: float | None, page_size: int,
                          after: str | None) -> tuple[list[str], str | None]:
        """Finished instance ids ordered by completion time; continuation key when more may follow."""

    @abc.abstractmethod
    async def purge(self, instance_ids: list[str] | None = None, where: PurgeFilter | None = None,
              recursive: bool = False) -> int:
        """Delete finished instances (by id or by filter; with `recursive`, their sub-orchestrations
        too). Returns how many were deleted. Purging an unfinished instance by id raises WrongState."""

    @abc.abstractmethod
    def instance_counts(self) -> list[tuple[str, str, int, int]]:
        """(name, version, status, count) for every combination seen so far (zeros included, so a
        gauge drops to 0 rather than vanishing); cheap at any size."""

    @abc.abstractmethod
    def pending_counts(self) -> list[tuple[str, str, str, int]]:
        """(kind, name, version, count) of the work items claimable now and not leased: the backlog
        waiting for a worker; kind is "orchestration" or "activity". Synchronous like
        `instance_counts`, and as cheap: its cost follows the backlog, never the finished instances."""

    # -- work items ---------------------------------------------------------------------------
    @abc.abstractmethod
    async def claim(self, max_orchestrations: int, max_activities: int, filters: WorkFilters,
              lease_seconds: float) -> ClaimResult:
        """Lease up to the given numbers of ready orchestration and activity work items that match
        `filters` (matching happens in the query, before anything is leased)."""

    # A completion may carry a `refill` claim, for the worker that frees a slot by completing: it runs
    # in the completion's own transaction, after it (so the work the completion made ready can be
    # claimed at once), and is undone with a completion that fails. Its result is returned.
    # A completion returns an awaitable, a coroutine or a future: the server runs a coroutine as a
    # task (it must finish even if the worker hangs up), while a future needs none.
    @abc.abstractmethod
    def complete_orchestration(self, token: str, response: pb.OrchestratorResponse,
                               refill: ClaimRequest | None = None) -> Awaitable[ClaimResult | None]:
        """Apply one episode's actions atomically; StaleToken if the lease was lost."""

    @abc.abstractmethod
    def complete_activity(self, token: str, response: pb.ActivityResponse,
                          refill: ClaimRequest | None = None) -> Awaitable[ClaimResult | None]:
        """Deliver the activity's result to its orchestration's inbox; StaleToken if the lease was lost."""

    @abc.abstractmethod
    async def renew(self, tokens: list[str], lease_seconds: float) -> None:
        """Extend the leases these tokens still hold to `lease_seconds` from now; others are skipped."""

    @abc.abstractmethod
    async def abandon(self, token: str, retry_after: float = 0.0) -> None:
        """Return a leased work item (either kind) to the queue, claimable after `retry_after` seconds."""

    @abc.abstractmethod
    def close(self) -> None: ...
