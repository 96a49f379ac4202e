"""The SQLite store: durable task hub state in one file.

WAL journal with synchronous=NORMAL (a commit survives a killed process; no fsync per commit).
Writes run on the event loop's own thread: the requests made while the loop takes in what is ready
are applied together, in one transaction at the end of that round (each in its own savepoint, so
one failing request does not undo the others). A statement takes microseconds; handing every request
to a writer thread and its result back cost more than that, in GIL hand-offs between the two threads.
The price: a long write holds up the event loop while it runs, where it held up only the other
writes before (a purge of 100,000 instances took 1.2 s). Reads run on per-thread connections and
never wait for writes.

Layout: `instances` (one row per orchestration, with its lease and `ready_at`, the time it next
becomes claimable), `history` (one row per committed episode: the events, protobuf-encoded),
`inbox` (events not yet given to the orchestrator, timers included, each with a `visible_at`),
`activities` (the activity queue) and `instance_counts` (instances per name, version and status,
changed, once per batch, in the same transaction as the status changes). The transaction steps it
shares with the PostgreSQL store are in `sql.SqlStore`; here are its plumbing, claims and completions.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import logging
import secrets
import sqlite3
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal.versions import compare_versions
from durabletask.server import episodes
from durabletask.server.episodes import Deliver, event
from durabletask.server.stores.base import (
    RESULT_BATCH_SECONDS, ClaimRequest, ClaimResult, CommitNotice, InstanceState, NameFilter, StoreUrlError,
    WorkFilters, WorkItem, activity_row_id)
from durabletask.server.stores.sql import (
    NEXT_READY_AT, UNCLAIMABLE, UNCLAIMABLE_SQL, SqlStore, earliest, history_bytes, instance_of, instance_state,
    placeholders)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE instances (
    instance_id TEXT PRIMARY KEY,
    execution_id TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,              -- '' when unversioned
    status INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    completed_at REAL,
    scheduled_start REAL,
    input TEXT,
    output TEXT,
    custom_status TEXT,
    failure_details BLOB,               -- TaskFailureDetails
    tags TEXT NOT NULL,                 -- JSON object
    parent BLOB,                        -- ParentInstanceInfo, for sub-orchestrations
    parent_instance_id TEXT,
    episodes INTEGER NOT NULL DEFAULT 0,
    ready_at REAL,                      -- NULL: nothing to do (or suspended, or finished)
    lease_token TEXT,
    blocked_until REAL,                 -- end of the current lease or abandon back-off
    claim_seq INTEGER,                  -- the lease holder was given inbox rows up to this seq ...
    claim_time REAL                     -- ... that were visible at this time
);
CREATE INDEX instances_ready ON instances (ready_at);
CREATE INDEX instances_created ON instances (created_at);
CREATE INDEX instances_completed ON instances (completed_at, instance_id);
CREATE INDEX instances_parent ON instances (parent_instance_id);
CREATE TABLE history (
    instance_id TEXT NOT NULL,
    episode INTEGER NOT NULL,
    events BLOB NOT NULL,               -- OrchestratorRequest encoding holding only pastEvents
    PRIMARY KEY (instance_id, episode)
) WITHOUT ROWID;
CREATE TABLE inbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id TEXT,                  -- set for events that belong to one execution (timers, results)
    visible_at REAL NOT NULL,
    event BLOB NOT NULL                 -- HistoryEvent
);
CREATE INDEX inbox_instance ON inbox (instance_id, seq);
CREATE TABLE activities (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    task_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    request BLOB NOT NULL,              -- ActivityRequest
    ready_at REAL NOT NULL,
    lease_token TEXT
);
CREATE INDEX activities_ready ON activities (ready_at);
CREATE INDEX activities_instance ON activities (instance_id);
CREATE TABLE instance_counts (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    status INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (name, version, status)
) WITHOUT ROWID;
"""

MAX_BATCH = 500
READ_THREADS = 8
# At most this often the WAL is copied back into the database file (a checkpoint), on a thread of
# its own: SQLite's automatic checkpoint would run inside a commit, and so on the event loop.
CHECKPOINT_SECONDS = 1.0


@functools.lru_cache(maxsize=4096)
def _compare_versions(left: str, right: str) -> int:
    return compare_versions(left, right)


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA cache_size=-65536")
    # Version order is not SQL's string order ("10.0" > "9.0", "1.0" = "1.0.0"), so claims ask Python.
    conn.create_function("compare_versions", 2, _compare_versions, deterministic=True)
    return conn


def _filter_sql(filters: tuple[NameFilter, ...]) -> tuple[str, list]:
    """A WHERE fragment matching any of the name (and version) filters. Versions match as the
    workers compare them: a listed version also matches its equals ("1.0" takes "1.0.0")."""
    clauses, params = [], []
    for f in filters:
        params.append(f.name)
        versions = []
        if f.versions:
            # The exact match first: it spares the Python call for most rows.
            versions.append(f"version IN ({placeholders(f.versions)})")
            versions += ["compare_versions(version, %s) = 0"] * len(f.versions)
            params += [*f.versions, *f.versions]
        if f.max_version is not None:
            versions.append("compare_versions(version, %s) <= 0")
            params.append(f.max_version)
        clauses.append(f"(name = %s AND ({' OR '.join(versions)}))" if versions else "name = %s")
    return " AND (" + " OR ".join(clauses) + ")", params


@functools.lru_cache(maxsize=1024)
def _in_sqlite(query: str) -> str:
    """A query in the shared notation (see sql.py) as SQLite takes it."""
    return query.replace("%s", "?").replace(" FOR UPDATE", "")


@dataclass
class _Sql:
    conn: sqlite3.Connection

    def one(self, query: str, *params) -> Any:
        return self.conn.execute(_in_sqlite(query), params).fetchone()

    def run(self, query: str, *params) -> sqlite3.Cursor:
        return self.conn.execute(_in_sqlite(query), params)


@dataclass
class _Tx(_Sql):
    """One writer transaction: the connection, the batch's clock and what it changed."""
    now: float
    notice: CommitNotice = field(default_factory=CommitNotice)
    counts: Counter = field(default_factory=Counter)  # (name, version, status) -> change, added at the end
    claimed: bool = False


def _settle_work_ready(tx: _Tx) -> None:
    """Before the commit of a batch that made work ready and also claimed some: whether work is still
    claimable now (the claims may have taken all of it), and if not, when it next is. Without this,
    every completion that refilled its stream would wake the dispatcher for a claim that finds nothing."""
    if not (tx.claimed and tx.notice.work_ready):
        return
    first = earliest(tx.one("SELECT (SELECT MIN(ready_at) FROM instances), (SELECT MIN(ready_at) FROM activities)"))
    tx.notice.work_ready = first is not None and first <= tx.now
    if not tx.notice.work_ready:
        tx.notice.wake_at = first


class SqliteStore(SqlStore):
    def __init__(self, path: str):
        self.path = path
        self._lock = None  # see hold_exclusively
        self._listeners: list[Callable[[CommitNotice], None]] = []
        self._readers = threading.local()
        self._read_pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="sqlite-reader")
        self._writer = _connect(path)
        self._migrate(self._writer)
        self._writer.execute("PRAGMA wal_autocheckpoint=0")
        self._waiting: list[tuple[Callable, tuple, asyncio.Future]] = []  # write requests for the next batch
        self._written = threading.Event()  # set by the first commit after a checkpoint
        self._closed = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="sqlite-checkpoint", daemon=True)
        self._checkpointer.start()

    # -- plumbing -----------------------------------------------------------------------------
    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone()
        if has_meta is None:
            conn.executescript("BEGIN;" + SCHEMA +
                               f"INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}'); COMMIT;")
            return
        version = int(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
        if version != SCHEMA_VERSION:
            raise StoreUrlError(f"The store has schema version {version}, but this server only knows "
                                f"version {SCHEMA_VERSION}.")

    def add_commit_listener(self, listener: Callable[[CommitNotice], None]) -> None:
        self._listeners.append(listener)

    def hold_exclusively(self) -> None:
        """Lock a file beside the database until close (the OS lets go when the process dies): two
        servers on one file would each hand out work the other never hears of."""
        try:
            lock = open(f"{self.path}.lock", "w")
        except OSError as error:
            raise StoreUrlError(f"Cannot lock the SQLite store at '{self.path}': {error.strerror}.") from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise StoreUrlError(f"Another task hub server is using the SQLite store at '{self.path}': stop it first "
                                "(to run several servers on one task hub, use a PostgreSQL store).") from None
        self._lock = lock

    def _write(self, fn: Callable, *args, lock_key: str = "") -> asyncio.Future:
        """Queue `fn(tx, *args)` for the next batch, which the event loop runs as soon as it has taken
        in what is ready now. (`lock_key` routes requests to writers; there is only one here.)"""
        loop = asyncio.get_running_loop()
        if not self._waiting:
            loop.call_soon(self._write_waiting)
        done = loop.create_future()
        self._waiting.append((fn, args, done))
        return done

    def _read(self, fn: Callable, *args) -> asyncio.Future:
        return asyncio.get_running_loop().run_in_executor(self._read_pool, lambda: fn(_Sql(self._reader()), *args))

    async def get_instance(self, instance_id: str, include_payloads: bool = True) -> InstanceState | None:
        """On the spot, on the event loop's own read connection: the read takes microseconds, less than
        the hand-off to a read thread and back (every WaitForInstance* call reads one)."""
        return self._get_instance(_Sql(self._reader()), instance_id, include_payloads)

    def _checkpoint_loop(self) -> None:
        conn = _connect(self.path)
        while not self._closed.is_set():
            self._written.wait()
            if self._closed.wait(CHECKPOINT_SECONDS):
                break
            self._written.clear()
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # never waits for the writer, nor it for us
            except sqlite3.Error as error:  # the WAL keeps every commit meanwhile; try again later
                log.warning("SQLite checkpoint of %s failed: %s", self.path, error)
        conn.close()

    def _write_waiting(self) -> None:
        """Run the waiting requests, up to MAX_BATCH per transaction. A request whose caller gave up
        (its gRPC call was cancelled) before it ran is dropped, as if never sent."""
        waiting, self._waiting = self._waiting, []
        waiting = [request for request in waiting if not request[2].cancelled()]
        for start in range(0, len(waiting), MAX_BATCH):
            self._run_batch(waiting[start:start + MAX_BATCH])

    def _run_batch(self, batch: list[tuple]) -> None:
        """One transaction for the whole batch, each request in its own savepoint, so that a failing
        request fails alone; the count changes of those that succeed are added once, at the end."""
        conn = self._writer
        tx = _Tx(conn, time.time())
        outcomes, counts = [], Counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, args, _ in batch:
                tx.counts = Counter()
                conn.execute("SAVEPOINT request")
                finished_before = len(tx.notice.finished)
                try:
                    outcomes.append((fn(tx, *args), None))
                    conn.execute("RELEASE request")
                    counts.update(tx.counts)
                except Exception as error:  # the request fails alone; the batch goes on
                    conn.execute("ROLLBACK TO request")
                    conn.execute("RELEASE request")
                    del tx.notice.finished[finished_before:]  # they did not happen
                    outcomes.append((None, error))
            conn.executemany("INSERT INTO instance_counts VALUES (?, ?, ?, ?) ON CONFLICT (name, version, status) "
                             "DO UPDATE SET count = count + excluded.count",
                             [(*key, delta) for key, delta in sorted(counts.items()) if delta])
            _settle_work_ready(tx)
            conn.execute("COMMIT")
            if not self._written.is_set():
                self._written.set()
        except Exception as error:
            log.exception("store transaction failed")
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            outcomes = [(None, error)] * len(batch)
        for (_, _, done), (result, error) in zip(batch, outcomes):
            if error is None:
                done.set_result(result)
            else:
                done.set_exception(error)
        if tx.notice.says_anything():
            for listener in self._listeners:
                listener(tx.notice)

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._readers, "conn", None)
        if conn is None:
            conn = self._readers.conn = _connect(self.path)
            conn.execute("PRAGMA query_only=ON")
        return conn

    def close(self) -> None:
        self._write_waiting()
        self._closed.set()
        self._written.set()
        self._checkpointer.join()
        self._writer.close()
        self._read_pool.shutdown()
        if self._lock is not None:
            self._lock.close()

    # -- shared transaction steps -------------------------------------------------------------
    @staticmethod
    def _refresh_ready(tx: _Tx, instance_id: str) -> None:
        """Recompute when the instance can next be claimed."""
        status, token, blocked_until = tx.one(
            "SELECT status, lease_token, blocked_until FROM instances WHERE instance_id = %s", instance_id)
        if status in UNCLAIMABLE:
            ready_at = None
        elif token is not None and blocked_until > tx.now:
            ready_at = blocked_until
        else:
            (ready_at,) = tx.one("SELECT MIN(visible_at) FROM inbox WHERE instance_id = %s", instance_id)
            if ready_at is not None and SqliteStore._results_due(tx, instance_id):
                ready_at += RESULT_BATCH_SECONDS
            if ready_at is not None and blocked_until is not None:
                ready_at = max(ready_at, blocked_until)
            tx.notice.work_ready |= ready_at is not None
        tx.run("UPDATE instances SET ready_at = %s WHERE instance_id = %s", ready_at, instance_id)

    @staticmethod
    def _enqueue(tx: _Tx, instance_id: str, ev: pb.HistoryEvent, execution_id: str | None,
                 visible_at: float | None = None) -> None:
        """Add an event to the inbox. A new event can only make its instance ready sooner: ready_at
        becomes the earlier of itself and the event's time (but no earlier than an abandon back-off),
        unless a live lease, a suspension or the end of the instance keeps it unclaimable."""
        visible_at = tx.now if visible_at is None else visible_at
        tx.run("INSERT INTO inbox (instance_id, execution_id, visible_at, event) VALUES (%s, %s, %s, %s)",
               instance_id, execution_id, visible_at, ev.SerializeToString())
        sooner = tx.run(
            "UPDATE instances SET ready_at = MIN(COALESCE(ready_at, MAX(%s, COALESCE(blocked_until, 0))), "
            "MAX(%s, COALESCE(blocked_until, 0))) "
            f"WHERE instance_id = %s AND status NOT IN ({UNCLAIMABLE_SQL}) "
            "AND (lease_token IS NULL OR blocked_until <= %s)", visible_at, visible_at, instance_id, tx.now)
        tx.notice.work_ready |= sooner.rowcount > 0

    def _append_history(self, tx: _Tx, instance_id: str, events: list[pb.HistoryEvent]) -> None:
        tx.run("INSERT INTO history (instance_id, episode, events) "
               "SELECT instance_id, episodes, %s FROM instances WHERE instance_id = %s",
               history_bytes(events), instance_id)
        tx.run("UPDATE instances SET episodes = episodes + 1 WHERE instance_id = %s", instance_id)

    # -- instances ----------------------------------------------------------------------------
    def instance_counts(self) -> list[tuple[str, str, int, int]]:
        return self._reader().execute("SELECT name, version, status, count FROM instance_counts").fetchall()

    def pending_counts(self) -> list[tuple[str, str, str, int]]:
        # A lease moves ready_at to the lease's end, so "ready_at <= now" is exactly "claimable now";
        # the ready_at indexes keep this a range scan over the backlog alone.
        conn, now = self._reader(), time.time()
        return [(kind, name, version, count) for kind, table in (("orchestration", "instances"),
                                                                 ("activity", "activities"))
                for name, version, count in _Sql(conn).run(
                    f"SELECT name, version, COUNT(*) FROM {table} WHERE ready_at <= %s GROUP BY name, version", now)]

    # -- work items ---------------------------------------------------------------------------
    async def claim(self, max_orchestrations: int, max_activities: int, filters: WorkFilters,
              lease_seconds: float) -> ClaimResult:
        return await self._write(self._claim, max_orchestrations, max_activities, filters, lease_seconds)

    def _claim(self, tx: _Tx, max_orchestrations: int, max_activities: int, filters: WorkFilters,
               lease_seconds: float) -> ClaimResult:
        tx.claimed = True
        lease_end = tx.now + lease_seconds
        result = ClaimResult([], [], None)
        if max_orchestrations > 0 and filters.orchestrations != ():
            where, params = _filter_sql(filters.orchestrations) if filters.orchestrations else ("", [])
            if filters.excluded_instances:
                where += f" AND instance_id NOT IN ({placeholders(filters.excluded_instances)})"
                params += filters.excluded_instances
            for iid, execution_id, ready_at, old_token in tx.run(
                    f"SELECT instance_id, execution_id, ready_at, lease_token FROM instances WHERE ready_at <= %s{where} "
                    "ORDER BY ready_at LIMIT %s", tx.now, *params, max_orchestrations).fetchall():
                item = self._lease_orchestration(tx, iid, execution_id, lease_end)
                if item is not None:
                    # A lease token still set on a claimable instance is one that ran out.
                    item.ready_at, item.lease_expired = ready_at, old_token is not None
                    result.orchestrations.append(item)
        if max_activities > 0 and filters.activities != ():
            where, params = _filter_sql(filters.activities) if filters.activities else ("", [])
            rows = tx.run(f"SELECT id, request, ready_at, lease_token FROM activities WHERE ready_at <= %s{where} "
                          "ORDER BY ready_at LIMIT %s", tx.now, *params, max_activities).fetchall()
            if rows:
                nonce = secrets.token_hex(8)  # one per claim; the id in front keeps every token distinct
                tx.run(f"UPDATE activities SET lease_token = 'a' || id || '.' || %s, ready_at = %s "
                       f"WHERE id IN ({placeholders(rows)})", nonce, lease_end, *(row[0] for row in rows))
                result.activities = [WorkItem(f"a{activity_id}.{nonce}", pb.ActivityRequest.FromString(request),
                                              ready_at, old_token is not None)
                                     for activity_id, request, ready_at, old_token in rows]
        result.next_ready_at = earliest(tx.one(NEXT_READY_AT, tx.now, tx.now))
        return result

    def _lease_orchestration(self, tx: _Tx, instance_id: str, execution_id: str,
                             lease_end: float) -> WorkItem | None:
        token = f"o{secrets.token_hex(8)}.{instance_id}"
        inbox = tx.run("SELECT seq, event FROM inbox WHERE instance_id = %s AND visible_at <= %s "
                       "ORDER BY visible_at, seq", instance_id, tx.now).fetchall()
        if not inbox:  # defensive: a ready_at that outlived its events
            self._refresh_ready(tx, instance_id)
            return None
        tx.run("UPDATE instances SET lease_token = %s, blocked_until = %s, ready_at = %s, claim_seq = %s, "
               "claim_time = %s WHERE instance_id = %s", token, lease_end, lease_end,
               max(seq for seq, _ in inbox), tx.now, instance_id)
        history = b"".join(blob for (blob,) in tx.run(
            "SELECT events FROM history WHERE instance_id = %s ORDER BY episode", instance_id))
        request = pb.OrchestratorRequest.FromString(history)
        request.instanceId = instance_id
        request.executionId.value = execution_id
        request.newEvents.append(event(tx.now, orchestratorStarted=pb.OrchestratorStartedEvent()))
        request.newEvents.extend(pb.HistoryEvent.FromString(blob) for _, blob in inbox)
        return WorkItem(token, request)

    async def complete_orchestration(self, token: str, response: pb.OrchestratorResponse,
                                     refill: ClaimRequest | None = None) -> ClaimResult | None:
        return await self._write(self._complete_and_refill, self._complete_orchestration, token, response, refill)

    def _complete_orchestration(self, tx: _Tx, token: str, response: pb.OrchestratorResponse) -> None:
        row = self._leased_instance(tx, token)
        state = instance_state(row[:15], include_payloads=True)
        parent, claim_seq, claim_time = row[15:18]
        iid = state.instance_id
        delivered = [event(claim_time, orchestratorStarted=pb.OrchestratorStartedEvent())]
        delivered += [pb.HistoryEvent.FromString(blob) for (blob,) in tx.run(
            "SELECT event FROM inbox WHERE instance_id = %s AND seq <= %s AND visible_at <= %s ORDER BY visible_at, seq",
            iid, claim_seq, claim_time)]
        tx.run("DELETE FROM inbox WHERE instance_id = %s AND seq <= %s AND visible_at <= %s", iid, claim_seq, claim_time)
        self._apply_episode(tx, state, parent, delivered, response)

    @staticmethod
    def _add_work(tx: _Tx, state: InstanceState, episode: episodes.Episode) -> None:
        for request in episode.activities:
            tx.run("INSERT INTO activities (instance_id, execution_id, task_id, name, version, request, ready_at) "
                   "VALUES (%s, %s, %s, %s, %s, %s, %s)", state.instance_id, state.execution_id, request.taskId,
                   request.name, request.version.value, request.SerializeToString(), tx.now)
            tx.notice.work_ready = True
        for fire_at, fired in episode.timers:
            tx.run("INSERT INTO inbox (instance_id, execution_id, visible_at, event) VALUES (%s, %s, %s, %s)",
                   state.instance_id, state.execution_id, fire_at, fired.SerializeToString())

    async def complete_activity(self, token: str, response: pb.ActivityResponse,
                                refill: ClaimRequest | None = None) -> ClaimResult | None:
        return await self._write(self._complete_and_refill, self._complete_activity, token, response, refill)

    def _complete_activity(self, tx: _Tx, token: str, response: pb.ActivityResponse) -> None:
        activity_id, iid, execution_id, task_id = self._leased_activity(tx, token)
        tx.run("DELETE FROM activities WHERE id = %s", activity_id)
        if response.HasField("failureDetails"):
            outcome = event(tx.now, taskFailed=pb.TaskFailedEvent(
                taskScheduledId=task_id, failureDetails=response.failureDetails))
        else:
            outcome = event(tx.now, taskCompleted=pb.TaskCompletedEvent(
                taskScheduledId=task_id, result=response.result if response.HasField("result") else None))
        if self._deliver(tx, Deliver(iid, outcome, execution_id)) and self._results_due(tx, iid):
            self._refresh_ready(tx, iid)  # hold the result back a little: more are coming

    @staticmethod
    def _results_due(tx: _Tx, instance_id: str) -> bool:
        """Whether some activity of the instance has not reported yet (see RESULT_BATCH_SECONDS)."""
        return tx.one("SELECT 1 FROM activities WHERE instance_id = %s LIMIT 1", instance_id) is not None

    async def renew(self, tokens: list[str], lease_seconds: float) -> None:
        return await self._write(self._renew, tokens, lease_seconds)

    @staticmethod
    def _renew(tx: _Tx, tokens: list[str], lease_seconds: float) -> None:
        lease_end = tx.now + lease_seconds
        for token in tokens:
            if token.startswith("a"):
                tx.run("UPDATE activities SET ready_at = %s WHERE lease_token = %s AND id = %s", lease_end, token,
                       activity_row_id(token))
            else:
                tx.run("UPDATE instances SET ready_at = %s, blocked_until = %s WHERE lease_token = %s "
                       "AND instance_id = %s", lease_end, lease_end, token, instance_of(token))


def open_sqlite(url: str) -> SqliteStore:
    """`sqlite:///relative/path.db` or `sqlite:////absolute/path.db`."""
    path = url.removeprefix("sqlite:///")
    if not path or path == url:
        raise StoreUrlError(f"Invalid SQLite store URL '{url}': expected sqlite:///PATH/TO/FILE.db.")
    try:
        return SqliteStore(path)
    except sqlite3.Error as error:
        raise StoreUrlError(f"Cannot open the SQLite store at '{path}': {error}.") from None
