"""What the SQLite and PostgreSQL stores share: the same tables, so the same transaction steps for
everything but the hot path, written once here.

Queries are written in PostgreSQL's notation: `%s` placeholders, and `FOR UPDATE` on the reads that
lock an instance before changing it. The SQLite store's connections translate them (`?`, and no row
locks: its single writer already runs one transaction at a time). Each store brings its plumbing
(`_write`, `_read`, and adding up each transaction's `counts` at its end) and the steps whose SQL
or strategy differs: the inbox and readiness (`_enqueue`, `_refresh_ready`), history
(`_append_history`), and claiming and completing work items.
"""

from __future__ import annotations

import abc
import asyncio
import json
import uuid
from collections import Counter
from typing import Any, Callable, Protocol

from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.server import episodes
from durabletask.server.episodes import Deliver, StartChild, TerminateOther, event
from durabletask.server.stores.base import (
    TERMINAL_STATUSES, ClaimRequest, ClaimResult, CommitNotice, InstanceExists, InstanceNotFound, InstanceQuery,
    InstanceState, NewInstance, PurgeFilter, StaleToken, Store, WrongState, activity_row_id, list_key, parse_list_key,
    prefix_end, status_name)

TERMINAL = tuple(sorted(TERMINAL_STATUSES))
UNCLAIMABLE = (*TERMINAL, pb.ORCHESTRATION_STATUS_SUSPENDED)
UNCLAIMABLE_SQL = ", ".join(map(str, UNCLAIMABLE))
INSTANCE_COLUMNS = ("instance_id, execution_id, name, version, status, created_at, updated_at, completed_at, "
                    "scheduled_start, input, output, custom_status, failure_details, parent_instance_id, tags")
GET_INSTANCE = f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE instance_id = %s"
STALE_TOKEN = ("The completion token is unknown or its lease has passed to another worker; "
               "the result was not applied.")


class Sql(Protocol):
    """A connection as the shared steps use it."""

    def one(self, query: str, *params) -> Any: ...

    def run(self, query: str, *params) -> Any: ...  # a cursor: iterable, with fetchall()


class SqlTx(Sql, Protocol):
    """A write transaction: one clock for the whole batch, the notice of what it changed, and whether
    it claimed work."""
    now: float
    notice: CommitNotice
    counts: Counter  # (name, version, status) -> change in this transaction
    claimed: bool


# When work next becomes claimable after now (parameters: now, now): a claim's `next_ready_at`.
NEXT_READY_AT = ("SELECT (SELECT MIN(ready_at) FROM instances WHERE ready_at > %s), "
                 "(SELECT MIN(ready_at) FROM activities WHERE ready_at > %s)")


def earliest(times) -> float | None:
    """The earliest of `times`, ignoring None; None when there is none."""
    return min((t for t in times if t is not None), default=None)


def placeholders(values) -> str:
    return ", ".join(["%s"] * len(values))


def history_bytes(events: list[pb.HistoryEvent]) -> bytes:
    return pb.OrchestratorRequest(pastEvents=events).SerializeToString()


def instance_of(token: str) -> str:
    """The instance id an orchestration token names ('' for anything else)."""
    return token.partition(".")[2] if token.startswith("o") else ""


def instance_state(row, include_payloads: bool) -> InstanceState:
    """An InstanceState from a row of INSTANCE_COLUMNS."""
    (instance_id, execution_id, name, version, status, created_at, updated_at, completed_at, scheduled_start,
     input_, output, custom_status, failure, parent_id, tags) = row
    return InstanceState(
        instance_id=instance_id, execution_id=execution_id, name=name, version=version, status=status,
        created_at=created_at, updated_at=updated_at, completed_at=completed_at,
        scheduled_start=scheduled_start, input=input_ if include_payloads else None,
        output=output if include_payloads else None, custom_status=custom_status,
        failure_details=pb.TaskFailureDetails.FromString(failure) if failure is not None else None,
        parent_instance_id=parent_id, tags=json.loads(tags))


def _not_found(instance_id: str) -> InstanceNotFound:
    return InstanceNotFound(f"No orchestration instance with id '{instance_id}' exists.")


class SqlStore(Store):
    """The transaction steps and the store methods both SQL stores run unchanged."""

    # -- what each store provides --------------------------------------------------------------
    @abc.abstractmethod
    def _write(self, fn: Callable, *args, lock_key: str = "") -> asyncio.Future:
        """Run `fn(tx, *args)` in a write transaction; `lock_key` is the instance it locks first."""

    @abc.abstractmethod
    def _read(self, fn: Callable, *args) -> asyncio.Future:
        """Run `fn(db, *args)` on a read connection."""

    @abc.abstractmethod
    def _enqueue(self, tx: SqlTx, instance_id: str, ev: pb.HistoryEvent, execution_id: str | None,
                 visible_at: float | None = None) -> None:
        """Add an event to the inbox of an instance the caller has locked."""

    @abc.abstractmethod
    def _refresh_ready(self, tx: SqlTx, instance_id: str) -> None:
        """Recompute when the instance can next be claimed."""

    @abc.abstractmethod
    def _append_history(self, tx: SqlTx, instance_id: str, events: list[pb.HistoryEvent]) -> None: ...

    @abc.abstractmethod
    def _add_work(self, tx: SqlTx, state: InstanceState, episode: episodes.Episode) -> None:
        """Queue the episode's new activities and put its timers in the inbox."""

    @abc.abstractmethod
    def _claim(self, tx: SqlTx, max_orchestrations: int, max_activities: int, filters, lease_seconds: float
               ) -> ClaimResult: ...

    def _complete_and_refill(self, tx: SqlTx, complete: Callable, token: str, response,
                             refill: ClaimRequest | None) -> ClaimResult | None:
        """`complete(tx, token, response)`, then the refill claim, if any (see `Store.complete_orchestration`)."""
        complete(tx, token, response)
        if refill is None:
            return None
        return self._claim(tx, refill.max_orchestrations, refill.max_activities, refill.filters, refill.lease_seconds)

    # -- shared transaction steps --------------------------------------------------------------
    @staticmethod
    def _recount(tx: SqlTx, instance_id: str, old: tuple | None, new: tuple | None) -> None:
        """Move one instance between (name, version, status) counts (added to the table once per batch,
        at its end); tell status waiters."""
        if old != new:
            if old is not None:
                tx.counts[old] -= 1
            if new is not None:
                tx.counts[new] += 1
            tx.notice.status_changed.add(instance_id)

    def _deliver(self, tx: SqlTx, message: Deliver, locked_row: tuple | None = None) -> bool:
        """Put an event in an unfinished instance's inbox; False if there is no such instance.
        `locked_row`: the instance's (status, execution id, scheduled start), when the caller locked it."""
        row = locked_row or tx.one("SELECT status, execution_id, scheduled_start FROM instances "
                                   "WHERE instance_id = %s FOR UPDATE", message.instance_id)
        if row is None:
            return False
        status, execution_id, scheduled_start = row
        if status in TERMINAL_STATUSES or (message.execution_id and message.execution_id != execution_id):
            return True  # finished (or a stale execution): the event is dropped
        # Nothing reaches an instance before its scheduled start, so ExecutionStarted stays first.
        visible_at = max(tx.now, scheduled_start or 0) if status == pb.ORCHESTRATION_STATUS_PENDING else None
        self._enqueue(tx, message.instance_id, message.event, message.execution_id, visible_at)
        return True

    def _insert_instance(self, tx: SqlTx, new: NewInstance) -> str:
        execution_id = new.execution_id or uuid.uuid4().hex
        parent = new.parent.SerializeToString() if new.parent is not None else None
        parent_id = new.parent.orchestrationInstance.instanceId if new.parent is not None else None
        # Ready with its first event, ExecutionStarted (at once, or at its scheduled start): written
        # with it, rather than enqueued after it (a second write of the new row).
        ready_at = max(tx.now, new.scheduled_start or 0)
        tx.run("INSERT INTO instances (instance_id, execution_id, name, version, status, created_at, updated_at, "
               "scheduled_start, input, tags, parent, parent_instance_id, ready_at) "
               "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
               new.instance_id, execution_id, new.name, new.version, pb.ORCHESTRATION_STATUS_PENDING, tx.now,
               tx.now, new.scheduled_start, new.input, json.dumps(new.tags), parent, parent_id, ready_at)
        tx.run("INSERT INTO inbox (instance_id, visible_at, event) VALUES (%s, %s, %s)", new.instance_id, ready_at,
               episodes.execution_started(new, execution_id, tx.now).SerializeToString())
        self._recount(tx, new.instance_id, None, (new.name, new.version, pb.ORCHESTRATION_STATUS_PENDING))
        tx.notice.work_ready = True
        return execution_id

    def _delete_instance(self, tx: SqlTx, instance_id: str) -> None:
        name, version, status = tx.one("SELECT name, version, status FROM instances WHERE instance_id = %s "
                                       "FOR UPDATE", instance_id)
        for table in ("instances", "history", "inbox", "activities"):
            tx.run(f"DELETE FROM {table} WHERE instance_id = %s", instance_id)
        self._recount(tx, instance_id, (name, version, status), None)

    def _start_child(self, tx: SqlTx, new: NewInstance) -> None:
        row = tx.one("SELECT status FROM instances WHERE instance_id = %s FOR UPDATE", new.instance_id)
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

    @staticmethod
    def _finish(tx: SqlTx, instance_id: str) -> None:
        """Drop what a finished instance will never process: its inbox and unclaimed activities."""
        tx.run("DELETE FROM inbox WHERE instance_id = %s", instance_id)
        tx.run("DELETE FROM activities WHERE instance_id = %s AND lease_token IS NULL", instance_id)

    def _terminate(self, tx: SqlTx, instance_id: str, output: str | None, recursive: bool) -> bool:
        row = tx.one("SELECT name, version, status, parent, created_at FROM instances WHERE instance_id = %s "
                     "FOR UPDATE", instance_id)
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
            tx.run("UPDATE instances SET status = %s, output = %s, completed_at = %s, updated_at = %s, "
                   "lease_token = NULL, blocked_until = NULL, ready_at = NULL WHERE instance_id = %s",
                   terminated, output, tx.now, tx.now, instance_id)
            self._recount(tx, instance_id, (name, version, status), (name, version, terminated))
            self._finish(tx, instance_id)
            tx.notice.finished.append((name, tx.now - created_at))
            notice = episodes.parent_notice(pb.ParentInstanceInfo.FromString(parent) if parent else None,
                                            terminated, output, None, tx.now)
            if notice is not None:
                self._deliver(tx, notice)
        if recursive:
            for (child,) in tx.run("SELECT instance_id FROM instances WHERE parent_instance_id = %s "
                                   f"AND status NOT IN ({placeholders(TERMINAL)})", instance_id, *TERMINAL).fetchall():
                self._terminate(tx, child, output, True)
        return True

    def _continue_as_new(self, tx: SqlTx, state: InstanceState, parent: bytes | None,
                         episode: episodes.Episode) -> None:
        """Start a fresh execution: empty history, ExecutionStarted (and carried-over events) first in the
        inbox, events of the old execution dropped, events raised meanwhile kept."""
        can = episode.continue_as_new
        iid = state.instance_id
        tx.run("DELETE FROM history WHERE instance_id = %s", iid)
        tx.run("DELETE FROM inbox WHERE instance_id = %s AND execution_id = %s", iid, state.execution_id)
        tx.run("DELETE FROM activities WHERE instance_id = %s AND lease_token IS NULL", iid)
        new = NewInstance(instance_id=iid, name=state.name, version=can.version, input=can.input, tags=state.tags,
                          parent=pb.ParentInstanceInfo.FromString(parent) if parent else None)
        execution_id = uuid.uuid4().hex
        status = state.status if state.status == pb.ORCHESTRATION_STATUS_SUSPENDED \
            else pb.ORCHESTRATION_STATUS_RUNNING
        tx.run("UPDATE instances SET execution_id = %s, version = %s, input = %s, output = NULL, "
               "failure_details = NULL, custom_status = %s, status = %s, updated_at = %s, episodes = 0, "
               "lease_token = NULL, blocked_until = NULL WHERE instance_id = %s",
               execution_id, can.version, can.input, episode.custom_status, status, tx.now, iid)
        self._recount(tx, iid, (state.name, state.version, state.status), (state.name, can.version, status))
        # visible_at 0 sorts these before any event that arrived while the last episode ran.
        for seed in [episodes.execution_started(new, execution_id, tx.now), *can.carryover]:
            self._enqueue(tx, iid, seed, None, visible_at=0.0)

    def _apply_episode(self, tx: SqlTx, state: InstanceState, parent: bytes | None,
                       delivered: list[pb.HistoryEvent], response: pb.OrchestratorResponse) -> None:
        """Commit the episode a worker completed, once the caller has checked its lease and taken the
        events the worker was given (`delivered`) from the inbox."""
        self._commit_episode(tx, state, parent, self._plan_episode(tx, state, parent, delivered, response))

    @staticmethod
    def _plan_episode(tx: SqlTx, state: InstanceState, parent: bytes | None, delivered: list[pb.HistoryEvent],
                      response: pb.OrchestratorResponse) -> episodes.Episode:
        return episodes.plan_episode(state, pb.ParentInstanceInfo.FromString(parent) if parent else None,
                                     delivered, response, tx.now)

    def _commit_episode(self, tx: SqlTx, state: InstanceState, parent: bytes | None,
                        episode: episodes.Episode) -> None:
        """Write a planned episode: history, status, new work, messages to other instances."""
        iid = state.instance_id
        if episode.continue_as_new is not None:
            self._continue_as_new(tx, state, parent, episode)
        else:
            self._append_history(tx, iid, episode.history)
            finished = episode.status in TERMINAL_STATUSES
            tx.run("UPDATE instances SET status = %s, output = %s, failure_details = %s, custom_status = %s, "
                   "updated_at = %s, completed_at = %s, lease_token = NULL, blocked_until = NULL "
                   "WHERE instance_id = %s",
                   episode.status, episode.output,
                   episode.failure_details.SerializeToString() if episode.failure_details else None,
                   episode.custom_status, tx.now, tx.now if finished else None, iid)
            self._recount(tx, iid, (state.name, state.version, state.status),
                          (state.name, state.version, episode.status))
            if finished:
                self._finish(tx, iid)
                tx.notice.finished.append((state.name, tx.now - state.created_at))
        self._add_work(tx, state, episode)
        self._send(tx, episode.messages)
        self._refresh_ready(tx, iid)

    def _send(self, tx: SqlTx, messages: list[Deliver | StartChild | TerminateOther]) -> None:
        for message in messages:
            if isinstance(message, Deliver):
                self._deliver(tx, message)
            elif isinstance(message, StartChild):
                self._start_child(tx, message.new)
            elif isinstance(message, TerminateOther):
                self._terminate(tx, message.instance_id, message.reason, message.recursive)

    @staticmethod
    def _leased_instance(tx: SqlTx, token: str) -> tuple:
        """The instance row (INSTANCE_COLUMNS, parent, claim_seq, claim_time) this token leases, locked;
        else StaleToken."""
        row = tx.one(f"SELECT {INSTANCE_COLUMNS}, parent, claim_seq, claim_time, lease_token FROM instances "
                     "WHERE instance_id = %s FOR UPDATE", instance_of(token))
        if row is None or row[-1] != token:
            raise StaleToken(STALE_TOKEN)
        return row[:-1]

    @staticmethod
    def _leased_activity(tx: SqlTx, token: str) -> tuple[int, str, str, int]:
        """(id, instance id, execution id, task id) of the activity this token holds; else StaleToken."""
        row = tx.one("SELECT id, instance_id, execution_id, task_id FROM activities WHERE id = %s AND "
                     "lease_token = %s FOR UPDATE", activity_row_id(token), token)
        if row is None:
            raise StaleToken(STALE_TOKEN)
        return row

    # -- instances ----------------------------------------------------------------------------
    async def create_instance(self, new: NewInstance, replaceable: tuple[int, ...] = ()) -> str:
        return await self._write(self._create_instance, new, replaceable, lock_key=new.instance_id)

    def _create_instance(self, tx: SqlTx, new: NewInstance, replaceable: tuple[int, ...]) -> str:
        row = tx.one("SELECT status FROM instances WHERE instance_id = %s FOR UPDATE", new.instance_id)
        if row is not None:
            if row[0] not in replaceable:
                raise InstanceExists(f"An orchestration instance with id '{new.instance_id}' already exists "
                                     f"(status {status_name(row[0])}).")
            self._delete_instance(tx, new.instance_id)
        return self._insert_instance(tx, new)

    async def get_instance(self, instance_id: str, include_payloads: bool = True) -> InstanceState | None:
        return await self._read(self._get_instance, instance_id, include_payloads)

    @staticmethod
    def _get_instance(db: Sql, instance_id: str, include_payloads: bool) -> InstanceState | None:
        row = db.one(GET_INSTANCE, instance_id)
        return None if row is None else instance_state(row, include_payloads)

    async def get_history(self, instance_id: str) -> list[pb.HistoryEvent]:
        return await self._read(self._get_history, instance_id)

    @staticmethod
    def _get_history(db: Sql, instance_id: str) -> list[pb.HistoryEvent]:
        if db.one("SELECT 1 FROM instances WHERE instance_id = %s", instance_id) is None:
            raise _not_found(instance_id)
        blobs = db.run("SELECT events FROM history WHERE instance_id = %s ORDER BY episode", instance_id)
        return list(pb.OrchestratorRequest.FromString(b"".join(blob for (blob,) in blobs)).pastEvents)

    async def raise_event(self, instance_id: str, name: str, data: str | None) -> None:
        return await self._write(self._raise_event, instance_id, name, data, lock_key=instance_id)

    def _raise_event(self, tx: SqlTx, instance_id: str, name: str, data: str | None) -> None:
        raised = event(tx.now, eventRaised=pb.EventRaisedEvent(name=name, input=episodes.optional_string(data)))
        if not self._deliver(tx, Deliver(instance_id, raised)):
            raise _not_found(instance_id)

    async def terminate(self, instance_id: str, output: str | None, recursive: bool) -> None:
        return await self._write(self._terminate_or_raise, instance_id, output, recursive, lock_key=instance_id)

    def _terminate_or_raise(self, tx: SqlTx, instance_id: str, output: str | None, recursive: bool) -> None:
        if not self._terminate(tx, instance_id, output, recursive):
            raise _not_found(instance_id)

    async def suspend(self, instance_id: str, reason: str | None) -> None:
        return await self._write(self._suspend_or_resume, instance_id, reason, True, lock_key=instance_id)

    async def resume(self, instance_id: str, reason: str | None) -> None:
        return await self._write(self._suspend_or_resume, instance_id, reason, False, lock_key=instance_id)

    def _suspend_or_resume(self, tx: SqlTx, instance_id: str, reason: str | None, suspend: bool) -> None:
        row = tx.one("SELECT name, version, status, episodes FROM instances WHERE instance_id = %s FOR UPDATE",
                     instance_id)
        if row is None:
            raise _not_found(instance_id)
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
        tx.run("UPDATE instances SET status = %s, updated_at = %s WHERE instance_id = %s", new_status, tx.now,
               instance_id)
        self._recount(tx, instance_id, (name, version, status), (name, version, new_status))
        # The marker travels with the buffered events, so the orchestrator sees when they arrived.
        self._deliver(tx, Deliver(instance_id, marker))
        self._refresh_ready(tx, instance_id)

    async def query_instances(self, query: InstanceQuery) -> tuple[list[InstanceState], str | None]:
        return await self._read(self._query_instances, query)

    @staticmethod
    def _query_instances(db: Sql, query: InstanceQuery) -> tuple[list[InstanceState], str | None]:
        where, params = ["1 = 1"], []
        if query.statuses:
            where.append(f"status IN ({placeholders(query.statuses)})")
            params += query.statuses
        if query.created_from is not None:
            where.append("created_at >= %s")
            params.append(query.created_from)
        if query.created_to is not None:
            where.append("created_at < %s")
            params.append(query.created_to)
        if query.id_prefix:  # a key range, so the primary key index finds it
            where.append("instance_id >= %s")
            params.append(query.id_prefix)
            if (end := prefix_end(query.id_prefix)) is not None:
                where.append("instance_id < %s")
                params.append(end)
        if query.after_id is not None:
            where.append("instance_id > %s")
            params.append(query.after_id)
        rows = db.run(f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE {' AND '.join(where)} "
                      "ORDER BY instance_id LIMIT %s", *params, query.page_size + 1).fetchall()
        states = [instance_state(row, query.include_payloads) for row in rows[:query.page_size]]
        more = len(rows) > query.page_size
        return states, (states[-1].instance_id if more else None)

    async def list_instance_ids(self, statuses: tuple[int, ...], completed_from: float | None,
                                completed_to: float | None, page_size: int,
                                after: str | None) -> tuple[list[str], str | None]:
        return await self._read(self._list_instance_ids, statuses, completed_from, completed_to, page_size, after)

    @staticmethod
    def _list_instance_ids(db: Sql, statuses: tuple[int, ...], completed_from: float | None,
                           completed_to: float | None, page_size: int,
                           after: str | None) -> tuple[list[str], str | None]:
        statuses = tuple(s for s in statuses or TERMINAL if s in TERMINAL_STATUSES)
        if not statuses:
            return [], None
        where, params = [f"status IN ({placeholders(statuses)})", "completed_at IS NOT NULL"], list(statuses)
        if completed_from is not None:
            where.append("completed_at >= %s")
            params.append(completed_from)
        if completed_to is not None:
            where.append("completed_at < %s")
            params.append(completed_to)
        if after:
            at, last_id = parse_list_key(after)
            where.append("(completed_at > %s OR (completed_at = %s AND instance_id > %s))")
            params += [at, at, last_id]
        rows = db.run(f"SELECT completed_at, instance_id FROM instances WHERE {' AND '.join(where)} "
                      "ORDER BY completed_at, instance_id LIMIT %s", *params, page_size + 1).fetchall()
        page = rows[:page_size]
        more = len(rows) > page_size
        return [iid for _, iid in page], (list_key(*page[-1]) if more else None)

    async def purge(self, instance_ids: list[str] | None = None, where: PurgeFilter | None = None,
                    recursive: bool = False) -> int:
        return await self._write(self._purge, instance_ids, where, recursive,
                                 lock_key=min(instance_ids, default="") if instance_ids else "")

    def _purge(self, tx: SqlTx, instance_ids: list[str] | None, where: PurgeFilter | None, recursive: bool) -> int:
        if instance_ids is None:
            where = where or PurgeFilter()
            statuses = tuple(s for s in where.statuses or TERMINAL if s in TERMINAL_STATUSES)
            clause, params = f"status IN ({placeholders(statuses)})", list(statuses)
            if where.created_from is not None:
                clause += " AND created_at >= %s"
                params.append(where.created_from)
            if where.created_to is not None:
                clause += " AND created_at < %s"
                params.append(where.created_to)
            instance_ids = [iid for (iid,) in tx.run(f"SELECT instance_id FROM instances WHERE {clause}", *params)]
        else:
            for iid in instance_ids:
                row = tx.one("SELECT status FROM instances WHERE instance_id = %s", iid)
                if row is not None and row[0] not in TERMINAL_STATUSES:
                    raise WrongState(f"Orchestration instance '{iid}' is {status_name(row[0])}; only finished "
                                     "instances can be purged (terminate it first).")
        deleted = 0
        pending = list(instance_ids)
        while pending:
            iid = pending.pop()
            row = tx.one("SELECT status FROM instances WHERE instance_id = %s FOR UPDATE", iid)
            if row is None or row[0] not in TERMINAL_STATUSES:
                continue
            if recursive:
                pending += [child for (child,) in tx.run(
                    "SELECT instance_id FROM instances WHERE parent_instance_id = %s", iid)]
            self._delete_instance(tx, iid)
            deleted += 1
        return deleted

    # -- work items ---------------------------------------------------------------------------
    async def abandon(self, token: str, retry_after: float = 0.0) -> None:
        return await self._write(self._abandon, token, retry_after, lock_key=instance_of(token))

    def _abandon(self, tx: SqlTx, token: str, retry_after: float) -> None:
        if token.startswith("a"):
            activity_id = self._leased_activity(tx, token)[0]
            tx.run("UPDATE activities SET lease_token = NULL, ready_at = %s WHERE id = %s", tx.now + retry_after,
                   activity_id)
            tx.notice.work_ready = True
        else:
            iid = self._leased_instance(tx, token)[0]
            tx.run("UPDATE instances SET lease_token = NULL, blocked_until = %s WHERE instance_id = %s",
                   tx.now + retry_after, iid)
            self._refresh_ready(tx, iid)
