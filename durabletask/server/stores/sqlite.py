"""The SQLite store: durable task hub state in one file.

WAL journal with synchronous=NORMAL (a commit survives a killed process; no fsync per commit).
All writes run on one dedicated writer thread, which takes every request waiting in its queue
and applies them in a single transaction (each in its own savepoint, so one failing request
does not undo the others). Reads run on per-thread connections and never wait for the writer.

Layout: `instances` (one row per orchestration, with its lease and `ready_at`, the time it next
becomes claimable), `history` (one row per committed episode: the events, protobuf-encoded),
`inbox` (events not yet given to the orchestrator, timers included, each with a `visible_at`),
`activities` (the activity queue) and `instance_counts` (instances per name, version and status,
changed in the same transaction as every status change).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import queue
import secrets
import sqlite3
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal.versions import compare_versions
from durabletask.server import episodes
from durabletask.server.episodes import Deliver, StartChild, TerminateOther, event
from durabletask.server.stores.base import (
    RESULT_BATCH_SECONDS, TERMINAL_STATUSES, ClaimResult, CommitNotice, InstanceExists, InstanceNotFound, InstanceQuery,
    InstanceState, NameFilter, NewInstance, PurgeFilter, StaleToken, Store, WorkFilters, WorkItem,
    WrongState, status_name)

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

TERMINAL = tuple(sorted(TERMINAL_STATUSES))
UNCLAIMABLE = (*TERMINAL, pb.ORCHESTRATION_STATUS_SUSPENDED)
UNCLAIMABLE_SQL = ", ".join(map(str, UNCLAIMABLE))
MAX_BATCH = 500
READ_THREADS = 8
INSTANCE_COLUMNS = ("instance_id, execution_id, name, version, status, created_at, updated_at, completed_at, "
                    "scheduled_start, input, output, custom_status, failure_details, parent_instance_id, tags")


class StoreUrlError(ValueError):
    pass


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


def _placeholders(values) -> str:
    return ",".join("?" * len(values))


def _filter_sql(filters: tuple[NameFilter, ...]) -> tuple[str, list]:
    """A WHERE fragment matching any of the name (and version) filters. Versions match as the
    workers compare them: a listed version also matches its equals ("1.0" takes "1.0.0")."""
    clauses, params = [], []
    for f in filters:
        params.append(f.name)
        versions = []
        if f.versions:
            # The exact match first: it spares the Python call for most rows.
            versions.append(f"version IN ({_placeholders(f.versions)})")
            versions += ["compare_versions(version, ?) = 0"] * len(f.versions)
            params += [*f.versions, *f.versions]
        if f.max_version is not None:
            versions.append("compare_versions(version, ?) <= 0")
            params.append(f.max_version)
        clauses.append(f"(name = ? AND ({' OR '.join(versions)}))" if versions else "name = ?")
    return " AND (" + " OR ".join(clauses) + ")", params


def _history_bytes(events: list[pb.HistoryEvent]) -> bytes:
    return pb.OrchestratorRequest(pastEvents=events).SerializeToString()


@dataclass
class _Tx:
    """One writer transaction: the connection, the batch's clock and what it changed."""
    conn: sqlite3.Connection
    now: float
    notice: CommitNotice = field(default_factory=CommitNotice)

    def one(self, sql: str, *params) -> Any:
        return self.conn.execute(sql, params).fetchone()

    def run(self, sql: str, *params) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)


class SqliteStore(Store):
    def __init__(self, path: str):
        self.path = path
        self._listeners: list[Callable[[CommitNotice], None]] = []
        self._readers = threading.local()
        self._read_pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="sqlite-reader")
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        writer_conn = _connect(path)
        self._migrate(writer_conn)
        self._writer = threading.Thread(target=self._write_loop, args=(writer_conn,), name="sqlite-writer",
                                        daemon=True)
        self._writer.start()

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

    def _write(self, fn: Callable, *args) -> asyncio.Future:
        """Queue `fn(tx, *args)` for the writer; the result resolves on the caller's event loop."""
        done: Future = Future()
        self._requests.put((fn, args, done))
        return asyncio.wrap_future(done)

    def _read(self, fn: Callable, *args) -> asyncio.Future:
        return asyncio.get_running_loop().run_in_executor(self._read_pool, fn, *args)

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        while True:
            batch = [self._requests.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._requests.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            # A request whose caller gave up (its gRPC call was cancelled) before it ran is dropped, as
            # if never sent; a running one can no longer be cancelled, so its outcome always finds its future.
            batch = [request for request in batch if request is not None and request[2].set_running_or_notify_cancel()]
            tx = _Tx(conn, time.time())
            outcomes = []
            try:
                conn.execute("BEGIN IMMEDIATE")
                for fn, args, _ in batch:
                    conn.execute("SAVEPOINT request")
                    finished_before = len(tx.notice.finished)
                    try:
                        outcomes.append((fn(tx, *args), None))
                        conn.execute("RELEASE request")
                    except Exception as error:  # the request fails alone; the batch goes on
                        conn.execute("ROLLBACK TO request")
                        conn.execute("RELEASE request")
                        del tx.notice.finished[finished_before:]  # they did not happen
                        outcomes.append((None, error))
                conn.execute("COMMIT")
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
            if tx.notice.work_ready or tx.notice.status_changed or tx.notice.finished:
                for listener in self._listeners:
                    listener(tx.notice)
            if stop:
                conn.close()
                return

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._readers, "conn", None)
        if conn is None:
            conn = self._readers.conn = _connect(self.path)
            conn.execute("PRAGMA query_only=ON")
        return conn

    def close(self) -> None:
        self._requests.put(None)
        self._writer.join()
        self._read_pool.shutdown()

    # -- shared transaction steps -------------------------------------------------------------
    @staticmethod
    def _count(tx: _Tx, key: tuple[str, str, int] | None, delta: int) -> None:
        if key is not None:
            tx.run("INSERT INTO instance_counts VALUES (?, ?, ?, ?) "
                   "ON CONFLICT (name, version, status) DO UPDATE SET count = count + excluded.count", *key, delta)

    def _recount(self, tx: _Tx, instance_id: str, old: tuple | None, new: tuple | None) -> None:
        """Move one instance between (name, version, status) counts; tell status waiters."""
        if old != new:
            self._count(tx, old, -1)
            self._count(tx, new, +1)
            tx.notice.status_changed.add(instance_id)

    @staticmethod
    def _refresh_ready(tx: _Tx, instance_id: str) -> None:
        """Recompute when the instance can next be claimed."""
        status, token, blocked_until = tx.one(
            "SELECT status, lease_token, blocked_until FROM instances WHERE instance_id = ?", instance_id)
        if status in UNCLAIMABLE:
            ready_at = None
        elif token is not None and blocked_until > tx.now:
            ready_at = blocked_until
        else:
            (ready_at,) = tx.one("SELECT MIN(visible_at) FROM inbox WHERE instance_id = ?", instance_id)
            if ready_at is not None and SqliteStore._results_due(tx, instance_id):
                ready_at += RESULT_BATCH_SECONDS
            if ready_at is not None and blocked_until is not None:
                ready_at = max(ready_at, blocked_until)
            tx.notice.work_ready |= ready_at is not None
        tx.run("UPDATE instances SET ready_at = ? WHERE instance_id = ?", ready_at, instance_id)

    @staticmethod
    def _enqueue(tx: _Tx, instance_id: str, ev: pb.HistoryEvent, execution_id: str | None,
                 visible_at: float | None = None) -> None:
        """Add an event to the inbox. A new event can only make its instance ready sooner: ready_at
        becomes the earlier of itself and the event's time (but no earlier than an abandon back-off),
        unless a live lease, a suspension or the end of the instance keeps it unclaimable."""
        visible_at = tx.now if visible_at is None else visible_at
        tx.run("INSERT INTO inbox (instance_id, execution_id, visible_at, event) VALUES (?, ?, ?, ?)",
               instance_id, execution_id, visible_at, ev.SerializeToString())
        sooner = tx.run(
            "UPDATE instances SET ready_at = MIN(COALESCE(ready_at, MAX(?1, COALESCE(blocked_until, 0))), "
            "MAX(?1, COALESCE(blocked_until, 0))) "
            f"WHERE instance_id = ?2 AND status NOT IN ({UNCLAIMABLE_SQL}) "
            "AND (lease_token IS NULL OR blocked_until <= ?3)", visible_at, instance_id, tx.now)
        tx.notice.work_ready |= sooner.rowcount > 0

    def _deliver(self, tx: _Tx, message: Deliver) -> bool:
        """Put an event in an unfinished instance's inbox; False if there is no such instance."""
        row = tx.one("SELECT status, execution_id, scheduled_start FROM instances WHERE instance_id = ?",
                     message.instance_id)
        if row is None:
            return False
        status, execution_id, scheduled_start = row
        if status in TERMINAL_STATUSES or (message.execution_id and message.execution_id != execution_id):
            return True  # finished (or a stale execution): the event is dropped
        # Nothing reaches an instance before its scheduled start, so ExecutionStarted stays first.
        visible_at = max(tx.now, scheduled_start or 0) if status == pb.ORCHESTRATION_STATUS_PENDING else None
        self._enqueue(tx, message.instance_id, message.event, message.execution_id, visible_at)
        return True

    def _insert_instance(self, tx: _Tx, new: NewInstance) -> str:
        execution_id = new.execution_id or uuid.uuid4().hex
        parent = new.parent.SerializeToString() if new.parent is not None else None
        parent_id = new.parent.orchestrationInstance.instanceId if new.parent is not None else None
        tx.run("INSERT INTO instances (instance_id, execution_id, name, version, status, created_at, updated_at, "
               "scheduled_start, input, tags, parent, parent_instance_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
               new.instance_id, execution_id, new.name, new.version, pb.ORCHESTRATION_STATUS_PENDING, tx.now,
               tx.now, new.scheduled_start, new.input, json.dumps(new.tags), parent, parent_id)
        self._recount(tx, new.instance_id, None, (new.name, new.version, pb.ORCHESTRATION_STATUS_PENDING))
        self._enqueue(tx, new.instance_id, episodes.execution_started(new, execution_id, tx.now), None,
                      max(tx.now, new.scheduled_start or 0))
        return execution_id

    def _delete_instance(self, tx: _Tx, instance_id: str) -> None:
        name, version, status = tx.one("SELECT name, version, status FROM instances WHERE instance_id = ?",
                                       instance_id)
        for table in ("instances", "history", "inbox", "activities"):
            tx.run(f"DELETE FROM {table} WHERE instance_id = ?", instance_id)
        self._recount(tx, instance_id, (name, version, status), None)

    def _start_child(self, tx: _Tx, new: NewInstance) -> None:
        row = tx.one("SELECT status FROM instances WHERE instance_id = ?", new.instance_id)
        if row is not None and row[0] not in TERMINAL_STATUSES:
            failure = pb.TaskFailureDetails(
                errorType="InstanceExists", isNonRetriable=True,
                errorMessage=f"An orchestration instance with id '{new.instance_id}' is already running.")
            self._deliver(tx, episodes.parent_notice(new.parent, pb.ORCHESTRATION_STATUS_FAILED, None, failure,
                                                     tx.now))
            return
        if row is not None:
            self._delete_instance(tx, new.instance_id)
        self._insert_instance(tx, new)

    def _append_history(self, tx: _Tx, instance_id: str, events: list[pb.HistoryEvent]) -> None:
        tx.run("INSERT INTO history (instance_id, episode, events) "
               "SELECT instance_id, episodes, ? FROM instances WHERE instance_id = ?",
               _history_bytes(events), instance_id)
        tx.run("UPDATE instances SET episodes = episodes + 1 WHERE instance_id = ?", instance_id)

    def _finish(self, tx: _Tx, instance_id: str) -> None:
        """Drop what a finished instance will never process: its inbox and unclaimed activities."""
        tx.run("DELETE FROM inbox WHERE instance_id = ?", instance_id)
        tx.run("DELETE FROM activities WHERE instance_id = ? AND lease_token IS NULL", instance_id)

    def _terminate(self, tx: _Tx, instance_id: str, output: str | None, recursive: bool) -> bool:
        row = tx.one("SELECT name, version, status, parent, created_at FROM instances WHERE instance_id = ?",
                     instance_id)
        if row is None:
            return False
        name, version, status, parent, created_at = row
        if status not in TERMINAL_STATUSES:
            terminated = pb.ORCHESTRATION_STATUS_TERMINATED
            result = episodes.optional_string(output)
            self._append_history(tx, instance_id, [
                event(tx.now, orchestratorStarted=pb.OrchestratorStartedEvent()),
                event(tx.now, executionTerminated=pb.ExecutionTerminatedEvent(input=result, recurse=recursive)),
                event(tx.now, executionCompleted=pb.ExecutionCompletedEvent(orchestrationStatus=terminated,
                                                                            result=result))])
            # Clearing the lease fences off any worker still running an episode of this instance.
            tx.run("UPDATE instances SET status = ?, output = ?, completed_at = ?, updated_at = ?, "
                   "lease_token = NULL, blocked_until = NULL, ready_at = NULL WHERE instance_id = ?",
                   terminated, output, tx.now, tx.now, instance_id)
            self._recount(tx, instance_id, (name, version, status), (name, version, terminated))
            self._finish(tx, instance_id)
            tx.notice.finished.append((name, tx.now - created_at))
            notice = episodes.parent_notice(pb.ParentInstanceInfo.FromString(parent) if parent else None,
                                            terminated, output, None, tx.now)
            if notice is not None:
                self._deliver(tx, notice)
        if recursive:
            for (child,) in tx.run("SELECT instance_id FROM instances WHERE parent_instance_id = ? "
                                   f"AND status NOT IN ({_placeholders(TERMINAL)})", instance_id, *TERMINAL).fetchall():
                self._terminate(tx, child, output, True)
        return True

    # -- instances ----------------------------------------------------------------------------
    async def create_instance(self, new: NewInstance, replaceable: tuple[int, ...] = ()) -> str:
        return await self._write(self._create_instance, new, replaceable)

    def _create_instance(self, tx: _Tx, new: NewInstance, replaceable: tuple[int, ...]) -> str:
        row = tx.one("SELECT status FROM instances WHERE instance_id = ?", new.instance_id)
        if row is not None:
            if row[0] not in replaceable:
                raise InstanceExists(f"An orchestration instance with id '{new.instance_id}' already exists "
                                     f"(status {status_name(row[0])}).")
            self._delete_instance(tx, new.instance_id)
        return self._insert_instance(tx, new)

    async def get_instance(self, instance_id: str, include_payloads: bool = True) -> InstanceState | None:
        return await self._read(self._get_instance, instance_id, include_payloads)

    def _get_instance(self, instance_id: str, include_payloads: bool) -> InstanceState | None:
        row = self._reader().execute(f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE instance_id = ?",
                                     (instance_id,)).fetchone()
        return None if row is None else self._state(row, include_payloads)

    @staticmethod
    def _state(row, include_payloads: bool) -> InstanceState:
        (instance_id, execution_id, name, version, status, created_at, updated_at, completed_at, scheduled_start,
         input_, output, custom_status, failure, parent_id, tags) = row
        return InstanceState(
            instance_id=instance_id, execution_id=execution_id, name=name, version=version, status=status,
            created_at=created_at, updated_at=updated_at, completed_at=completed_at,
            scheduled_start=scheduled_start, input=input_ if include_payloads else None,
            output=output if include_payloads else None, custom_status=custom_status,
            failure_details=pb.TaskFailureDetails.FromString(failure) if failure is not None else None,
            parent_instance_id=parent_id, tags=json.loads(tags))

    async def get_history(self, instance_id: str) -> list[pb.HistoryEvent]:
        return await self._read(self._get_history, instance_id)

    def _get_history(self, instance_id: str) -> list[pb.HistoryEvent]:
        conn = self._reader()
        if conn.execute("SELECT 1 FROM instances WHERE instance_id = ?", (instance_id,)).fetchone() is None:
            raise InstanceNotFound(f"No orchestration instance with id '{instance_id}' exists.")
        blobs = conn.execute("SELECT events FROM history WHERE instance_id = ? ORDER BY episode", (instance_id,))
        return list(pb.OrchestratorRequest.FromString(b"".join(blob for (blob,) in blobs)).pastEvents)

    async def raise_event(self, instance_id: str, name: str, data: str | None) -> None:
        return await self._write(self._raise_event, instance_id, name, data)

    def _raise_event(self, tx: _Tx, instance_id: str, name: str, data: str | None) -> None:
        raised = event(tx.now, eventRaised=pb.EventRaisedEvent(name=name, input=episodes.optional_string(data)))
        if not self._deliver(tx, Deliver(instance_id, raised)):
            raise InstanceNotFound(f"No orchestration instance with id '{instance_id}' exists.")

    async def terminate(self, instance_id: str, output: str | None, recursive: bool) -> None:
        return await self._write(self._terminate_or_raise, instance_id, output, recursive)

    def _terminate_or_raise(self, tx: _Tx, instance_id: str, output: str | None, recursive: bool) -> None:
        if not self._terminate(tx, instance_id, output, recursive):
            raise InstanceNotFound(f"No orchestration instance with id '{instance_id}' exists.")

    async def suspend(self, instance_id: str, reason: str | None) -> None:
        return await self._write(self._suspend_or_resume, instance_id, reason, True)

    async def resume(self, instance_id: str, reason: str | None) -> None:
        return await self._write(self._suspend_or_resume, instance_id, reason, False)

    def _suspend_or_resume(self, tx: _Tx, instance_id: str, reason: str | None, suspend: bool) -> None:
        row = tx.one("SELECT name, version, status, episodes FROM instances WHERE instance_id = ?", instance_id)
        if row is None:
            raise InstanceNotFound(f"No orchestration instance with id '{instance_id}' exists.")
        name, version, status, episode_count = row
        if status in TERMINAL_STATUSES:
            raise WrongState(f"Orchestration instance '{instance_id}' has already finished "
                             f"({status_name(status)}); it cannot be {'suspended' if suspend else 'resumed'}.")
        suspended = status == pb.ORCHESTRATION_STATUS_SUSPENDED
        if suspended == suspend:
            return
        if suspend:
            new_status = pb.ORCHESTRATION_STATUS_SUSPENDED
            marker = event(tx.now, executionSuspended=pb.ExecutionSuspendedEvent(
                input=episodes.optional_string(reason)))
        else:
            new_status = pb.ORCHESTRATION_STATUS_RUNNING if episode_count else pb.ORCHESTRATION_STATUS_PENDING
            marker = event(tx.now, executionResumed=pb.ExecutionResumedEvent(input=episodes.optional_string(reason)))
        tx.run("UPDATE instances SET status = ?, updated_at = ? WHERE instance_id = ?", new_status, tx.now,
               instance_id)
        self._recount(tx, instance_id, (name, version, status), (name, version, new_status))
        # The marker travels with the buffered events, so the orchestrator sees when they arrived.
        self._deliver(tx, Deliver(instance_id, marker))
        self._refresh_ready(tx, instance_id)

    async def query_instances(self, query: InstanceQuery) -> tuple[list[InstanceState], str | None]:
        return await self._read(self._query_instances, query)

    def _query_instances(self, query: InstanceQuery) -> tuple[list[InstanceState], str | None]:
        where, params = ["1 = 1"], []
        if query.statuses:
            where.append(f"status IN ({_placeholders(query.statuses)})")
            params += query.statuses
        if query.created_from is not None:
            where.append("created_at >= ?")
            params.append(query.created_from)
        if query.created_to is not None:
            where.append("created_at < ?")
            params.append(query.created_to)
        if query.id_prefix:  # a key range, so the primary key index finds it
            where.append("instance_id >= ? AND instance_id < ?")
            params += [query.id_prefix, query.id_prefix[:-1] + chr(ord(query.id_prefix[-1]) + 1)]
        if query.after_id is not None:
            where.append("instance_id > ?")
            params.append(query.after_id)
        rows = self._reader().execute(
            f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE {' AND '.join(where)} ORDER BY instance_id LIMIT ?",
            (*params, query.page_size + 1)).fetchall()
        states = [self._state(row, query.include_payloads) for row in rows[:query.page_size]]
        more = len(rows) > query.page_size
        return states, (states[-1].instance_id if more else None)

    async def list_instance_ids(self, statuses: tuple[int, ...], completed_from: float | None,
                                completed_to: float | None, page_size: int,
                                after: str | None) -> tuple[list[str], str | None]:
        return await self._read(self._list_instance_ids, statuses, completed_from, completed_to, page_size, after)

    def _list_instance_ids(self, statuses: tuple[int, ...], completed_from: float | None,
                           completed_to: float | None, page_size: int,
                           after: str | None) -> tuple[list[str], str | None]:
        statuses = tuple(s for s in statuses or TERMINAL if s in TERMINAL_STATUSES)
        if not statuses:
            return [], None
        where, params = [f"status IN ({_placeholders(statuses)})", "completed_at IS NOT NULL"], list(statuses)
        if completed_from is not None:
            where.append("completed_at >= ?")
            params.append(completed_from)
        if completed_to is not None:
            where.append("completed_at < ?")
            params.append(completed_to)
        if after:
            at, _, last_id = after.partition("|")
            where.append("(completed_at > ? OR (completed_at = ? AND instance_id > ?))")
            params += [float(at), float(at), last_id]
        rows = self._reader().execute(
            f"SELECT completed_at, instance_id FROM instances WHERE {' AND '.join(where)} "
            "ORDER BY completed_at, instance_id LIMIT ?", (*params, page_size + 1)).fetchall()
        page = rows[:page_size]
        more = len(rows) > page_size
        return [iid for _, iid in page], (f"{page[-1][0]!r}|{page[-1][1]}" if more else None)

    async def purge(self, instance_ids: list[str] | None = None, where: PurgeFilter | None = None,
              recursive: bool = False) -> int:
        return await self._write(self._purge, instance_ids, where, recursive)

    def _purge(self, tx: _Tx, instance_ids: list[str] | None, where: PurgeFilter | None, recursive: bool) -> int:
        if instance_ids is None:
            where = where or PurgeFilter()
            statuses = tuple(s for s in where.statuses or TERMINAL if s in TERMINAL_STATUSES)
            sql, params = f"status IN ({_placeholders(statuses)})", list(statuses)
            if where.created_from is not None:
                sql += " AND created_at >= ?"
                params.append(where.created_from)
            if where.created_to is not None:
                sql += " AND created_at < ?"
                params.append(where.created_to)
            instance_ids = [iid for (iid,) in tx.run(f"SELECT instance_id FROM instances WHERE {sql}", *params)]
        else:
            for iid in instance_ids:
                row = tx.one("SELECT status FROM instances WHERE instance_id = ?", iid)
                if row is not None and row[0] not in TERMINAL_STATUSES:
                    raise WrongState(f"Orchestration instance '{iid}' is {status_name(row[0])}; only finished "
                                     "instances can be purged (terminate it first).")
        deleted = 0
        pending = list(instance_ids)
        while pending:
            iid = pending.pop()
            row = tx.one("SELECT status FROM instances WHERE instance_id = ?", iid)
            if row is None or row[0] not in TERMINAL_STATUSES:
                continue
            if recursive:
                pending += [child for (child,) in tx.run(
                    "SELECT instance_id FROM instances WHERE parent_instance_id = ?", iid)]
            self._delete_instance(tx, iid)
            deleted += 1
        return deleted

    def instance_counts(self) -> list[tuple[str, str, int, int]]:
        return self._reader().execute("SELECT name, version, status, count FROM instance_counts").fetchall()

    def pending_counts(self) -> list[tuple[str, str, str, int]]:
        # A lease moves ready_at to the lease's end, so "ready_at <= now" is exactly "claimable now";
        # the ready_at indexes keep this a range scan over the backlog alone.
        conn, now = self._reader(), time.time()
        return [(kind, name, version, count) for kind, table in (("orchestration", "instances"),
                                                                 ("activity", "activities"))
                for name, version, count in conn.execute(
                    f"SELECT name, version, COUNT(*) FROM {table} WHERE ready_at <= ? GROUP BY name, version",
                    (now,))]

    # -- work items ---------------------------------------------------------------------------
    async def claim(self, max_orchestrations: int, max_activities: int, filters: WorkFilters,
              lease_seconds: float) -> ClaimResult:
        return await self._write(self._claim, max_orchestrations, max_activities, filters, lease_seconds)

    def _claim(self, tx: _Tx, max_orchestrations: int, max_activities: int, filters: WorkFilters,
               lease_seconds: float) -> ClaimResult:
        lease_end = tx.now + lease_seconds
        result = ClaimResult([], [], None)
        if max_orchestrations > 0 and filters.orchestrations != ():
            where, params = _filter_sql(filters.orchestrations) if filters.orchestrations else ("", [])
            if filters.excluded_instances:
                where += f" AND instance_id NOT IN ({_placeholders(filters.excluded_instances)})"
                params += filters.excluded_instances
            for iid, execution_id, ready_at, old_token in tx.run(
                    f"SELECT instance_id, execution_id, ready_at, lease_token FROM instances WHERE ready_at <= ?{where} "
                    "ORDER BY ready_at LIMIT ?", tx.now, *params, max_orchestrations).fetchall():
                item = self._lease_orchestration(tx, iid, execution_id, lease_end)
                if item is not None:
                    # A lease token still set on a claimable instance is one that ran out.
                    item.ready_at, item.lease_expired = ready_at, old_token is not None
                    result.orchestrations.append(item)
        if max_activities > 0 and filters.activities != ():
            where, params = _filter_sql(filters.activities) if filters.activities else ("", [])
            rows = tx.run(f"SELECT id, request, ready_at, lease_token FROM activities WHERE ready_at <= ?{where} "
                          "ORDER BY ready_at LIMIT ?", tx.now, *params, max_activities).fetchall()
            if rows:
                nonce = secrets.token_hex(8)  # one per claim; the id in front keeps every token distinct
                tx.run(f"UPDATE activities SET lease_token = 'a' || id || '.' || ?, ready_at = ? "
                       f"WHERE id IN ({_placeholders(rows)})", nonce, lease_end, *(row[0] for row in rows))
                result.activities = [WorkItem(f"a{activity_id}.{nonce}", pb.ActivityRequest.FromString(request),
                                              ready_at, old_token is not None)
                                     for activity_id, request, ready_at, old_token in rows]
        (next_instance,) = tx.one("SELECT MIN(ready_at) FROM instances WHERE ready_at > ?", tx.now)
        (next_activity,) = tx.one("SELECT MIN(ready_at) FROM activities WHERE ready_at > ?", tx.now)
        result.next_ready_at = min((t for t in (next_instance, next_activity) if t is not None), default=None)
        return result

    def _lease_orchestration(self, tx: _Tx, instance_id: str, execution_id: str,
                             lease_end: float) -> WorkItem | None:
        token = f"o{secrets.token_hex(8)}.{instance_id}"
        inbox = tx.run("SELECT seq, event FROM inbox WHERE instance_id = ? AND visible_at <= ? "
                       "ORDER BY visible_at, seq", instance_id, tx.now).fetchall()
        if not inbox:  # defensive: a ready_at that outlived its events
            self._refresh_ready(tx, instance_id)
            return None
        tx.run("UPDATE instances SET lease_token = ?, blocked_until = ?, ready_at = ?, claim_seq = ?, "
               "claim_time = ? WHERE instance_id = ?", token, lease_end, lease_end,
               max(seq for seq, _ in inbox), tx.now, instance_id)
        history = b"".join(blob for (blob,) in tx.run(
            "SELECT events FROM history WHERE instance_id = ? ORDER BY episode", instance_id))
        request = pb.OrchestratorRequest.FromString(history)
        request.instanceId = instance_id
        request.executionId.value = execution_id
        request.newEvents.append(event(tx.now, orchestratorStarted=pb.OrchestratorStartedEvent()))
        request.newEvents.extend(pb.HistoryEvent.FromString(blob) for _, blob in inbox)
        return WorkItem(token, request)

    def _leased_instance(self, tx: _Tx, token: str) -> tuple:
        instance_id = token.partition(".")[2] if token.startswith("o") else ""
        row = tx.one(f"SELECT {INSTANCE_COLUMNS}, parent, claim_seq, claim_time, lease_token FROM instances "
                     "WHERE instance_id = ?", instance_id)
        if row is None or row[-1] != token:
            raise StaleToken("The completion token is unknown or its lease has passed to another worker; "
                             "the result was not applied.")
        return row

    async def complete_orchestration(self, token: str, response: pb.OrchestratorResponse) -> None:
        return await self._write(self._complete_orchestration, token, response)

    def _complete_orchestration(self, tx: _Tx, token: str, response: pb.OrchestratorResponse) -> None:
        row = self._leased_instance(tx, token)
        state = self._state(row[:15], include_payloads=True)
        parent, claim_seq, claim_time = row[15:18]
        iid = state.instance_id
        delivered = [event(claim_time, orchestratorStarted=pb.OrchestratorStartedEvent())]
        delivered += [pb.HistoryEvent.FromString(blob) for (blob,) in tx.run(
            "SELECT event FROM inbox WHERE instance_id = ? AND seq <= ? AND visible_at <= ? ORDER BY visible_at, seq",
            iid, claim_seq, claim_time)]
        tx.run("DELETE FROM inbox WHERE instance_id = ? AND seq <= ? AND visible_at <= ?", iid, claim_seq, claim_time)
        episode = episodes.plan_episode(state, pb.ParentInstanceInfo.FromString(parent) if parent else None,
                                        delivered, response, tx.now)
        old_key = (state.name, state.version, state.status)
        if episode.continue_as_new is not None:
            self._continue_as_new(tx, state, parent, episode)
        else:
            self._append_history(tx, iid, episode.history)
            finished = episode.status in TERMINAL_STATUSES
            tx.run("UPDATE instances SET status = ?, output = ?, failure_details = ?, custom_status = ?, "
                   "updated_at = ?, completed_at = ?, lease_token = NULL, blocked_until = NULL WHERE instance_id = ?",
                   episode.status, episode.output,
                   episode.failure_details.SerializeToString() if episode.failure_details else None,
                   episode.custom_status, tx.now, tx.now if finished else None, iid)
            self._recount(tx, iid, old_key, (state.name, state.version, episode.status))
            if finished:
                self._finish(tx, iid)
                tx.notice.finished.append((state.name, tx.now - state.created_at))
        for request in episode.activities:
            tx.run("INSERT INTO activities (instance_id, execution_id, task_id, name, version, request, ready_at) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)", iid, state.execution_id, request.taskId, request.name,
                   request.version.value, request.SerializeToString(), tx.now)
            tx.notice.work_ready = True
        for fire_at, fired in episode.timers:
            tx.run("INSERT INTO inbox (instance_id, execution_id, visible_at, event) VALUES (?, ?, ?, ?)",
                   iid, state.execution_id, fire_at, fired.SerializeToString())
        for message in episode.messages:
            if isinstance(message, Deliver):
                self._deliver(tx, message)
            elif isinstance(message, StartChild):
                self._start_child(tx, message.new)
            elif isinstance(message, TerminateOther):
                self._terminate(tx, message.instance_id, message.reason, message.recursive)
        self._refresh_ready(tx, iid)

    def _continue_as_new(self, tx: _Tx, state: InstanceState, parent: bytes | None,
                         episode: episodes.Episode) -> None:
        """Start a fresh execution: empty history, ExecutionStarted (and carried-over events) first in the
        inbox, events of the old execution dropped, events raised meanwhile kept."""
        can = episode.continue_as_new
        iid = state.instance_id
        tx.run("DELETE FROM history WHERE instance_id = ?", iid)
        tx.run("DELETE FROM inbox WHERE instance_id = ? AND execution_id = ?", iid, state.execution_id)
        tx.run("DELETE FROM activities WHERE instance_id = ? AND lease_token IS NULL", iid)
        new = NewInstance(instance_id=iid, name=state.name, version=can.version, input=can.input, tags=state.tags,
                          parent=pb.ParentInstanceInfo.FromString(parent) if parent else None)
        execution_id = uuid.uuid4().hex
        status = state.status if state.status == pb.ORCHESTRATION_STATUS_SUSPENDED \
            else pb.ORCHESTRATION_STATUS_RUNNING
        tx.run("UPDATE instances SET execution_id = ?, version = ?, input = ?, output = NULL, failure_details = NULL, "
               "custom_status = ?, status = ?, updated_at = ?, episodes = 0, lease_token = NULL, blocked_until = NULL "
               "WHERE instance_id = ?", execution_id, can.version, can.input, episode.custom_status, status, tx.now, iid)
        self._recount(tx, iid, (state.name, state.version, state.status), (state.name, can.version, status))
        # visible_at 0 sorts these before any event that arrived while the last episode ran.
        for seed in [episodes.execution_started(new, execution_id, tx.now), *can.carryover]:
            self._enqueue(tx, iid, seed, None, visible_at=0.0)

    async def complete_activity(self, token: str, response: pb.ActivityResponse) -> None:
        return await self._write(self._complete_activity, token, response)

    def _complete_activity(self, tx: _Tx, token: str, response: pb.ActivityResponse) -> None:
        activity_id, iid, execution_id, task_id = self._leased_activity(tx, token)
        tx.run("DELETE FROM activities WHERE id = ?", activity_id)
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
        return tx.one("SELECT 1 FROM activities WHERE instance_id = ? LIMIT 1", instance_id) is not None

    @staticmethod
    def _leased_activity(tx: _Tx, token: str) -> tuple[int, str, str, int]:
        """(id, instance id, execution id, task id) of the activity this token holds; else StaleToken."""
        id_part = token[1:].partition(".")[0]
        row = tx.one("SELECT id, instance_id, execution_id, task_id FROM activities WHERE id = ? AND lease_token = ?",
                     int(id_part) if token.startswith("a") and id_part.isdigit() else -1, token)
        if row is None:
            raise StaleToken("The completion token is unknown or its lease has passed to another worker; "
                             "the result was not applied.")
        return row

    async def renew(self, tokens: list[str], lease_seconds: float) -> None:
        return await self._write(self._renew, tokens, lease_seconds)

    @staticmethod
    def _renew(tx: _Tx, tokens: list[str], lease_seconds: float) -> None:
        lease_end = tx.now + lease_seconds
        for token in tokens:
            if token.startswith("a"):
                tx.run("UPDATE activities SET ready_at = ? WHERE lease_token = ? AND id = ?", lease_end, token,
                       token[1:].partition(".")[0])
            else:
                tx.run("UPDATE instances SET ready_at = ?, blocked_until = ? WHERE lease_token = ? AND instance_id = ?",
                       lease_end, lease_end, token, token.partition(".")[2])

    async def abandon(self, token: str, retry_after: float = 0.0) -> None:
        return await self._write(self._abandon, token, retry_after)

    def _abandon(self, tx: _Tx, token: str, retry_after: float) -> None:
        if token.startswith("a"):
            activity_id = self._leased_activity(tx, token)[0]
            tx.run("UPDATE activities SET lease_token = NULL, ready_at = ? WHERE id = ?", tx.now + retry_after,
                   activity_id)
            tx.notice.work_ready = True
        else:
            iid = self._leased_instance(tx, token)[0]
            tx.run("UPDATE instances SET lease_token = NULL, blocked_until = ? WHERE instance_id = ?",
                   tx.now + retry_after, iid)
            self._refresh_ready(tx, iid)


def open_sqlite(url: str) -> SqliteStore:
    """`sqlite:///relative/path.db` or `sqlite:////absolute/path.db`."""
    path = url.removeprefix("sqlite:///")
    if not path or path == url:
        raise StoreUrlError(f"Invalid SQLite store URL '{url}': expected sqlite:///PATH/TO/FILE.db.")
    try:
        return SqliteStore(path)
    except sqlite3.Error as error:
        raise StoreUrlError(f"Cannot open the SQLite store at '{path}': {error}.") from None
