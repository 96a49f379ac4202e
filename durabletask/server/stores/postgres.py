"""The PostgreSQL store: one database shared by any number of task hub server replicas.

The SQLite store's twin: the same tables, the same semantics (both pass
`tests/test_store_conformance.py`), and the transaction steps of `sql.SqlStore`. What differs is
what several replicas at once require:

- Writes are batched: the requests that arrive together share one transaction and one commit
  (group commit). A batch is first tried optimistically, on the event loop: its statements go out
  at once over one connection in pipeline mode (`postgres_pipeline`), the sync point after them
  commits them, and no row is read before that. The hot paths fit that: starts, claims, renewals,
  completions (an episode's completion plans from what its claim read, and the database checks that
  this still holds). A request that must read first (a message to another instance, a terminate, ...), and
  every request of an optimistic batch the database refused, run carefully instead: on a writer
  thread, reading as they go, requests back to back; should one fail, that batch runs again with
  each request in its own savepoint, so that it fails alone. The hot paths are PL/pgSQL functions
  (migrations 2 and 3), so that a request is one or two statements. Requests in a batch are sorted
  by the instance they touch first, so that batches of different replicas lock instances in the
  same order and rarely deadlock. A request that does lose a deadlock (or an insert race) is
  retried in a later batch.
- A request locks its instance row (`FOR UPDATE`) before it reads or adds inbox events; claims
  skip rows another transaction holds (`FOR UPDATE SKIP LOCKED`), so replicas never hand out the
  same work item and never wait on each other to claim.
- Each commit that made work ready or changed a status sends a `NOTIFY` from the committing
  transaction; every replica LISTENs and hands the notice to its commit listeners (so a commit on
  replica A wakes the streams and status waiters on replica B). A slow poll is the safety net.
- Lease times come from the database's clock (read off the local one, with the offset measured
  every few seconds), so replicas agree on when a lease ends.
- `instance_counts` is split into a few shards per (name, version, status) so that concurrent
  transactions rarely queue on the same counter row; a read sums the shards.

The schema is created and upgraded by the server itself (`MIGRATIONS`, applied in order under an
advisory lock, so replicas starting together migrate once); a server refuses a newer schema.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import os
import queue
import random
import secrets
import threading
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import psycopg
import psycopg.errors
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal.versions import compare_versions
from durabletask.server import episodes
from durabletask.server.episodes import event
from durabletask.server.stores import safe_url
from durabletask.server.stores.base import (
    RESULT_BATCH_SECONDS, TERMINAL_STATUSES, ClaimRequest, ClaimResult, CommitNotice, InstanceState, NameFilter,
    NewInstance, StaleToken, StoreUnavailable, StoreUrlError, Unstorable, WorkFilters, WorkItem, activity_row_id)
from durabletask.server.stores.postgres_pipeline import Pipeline
from durabletask.server.stores.sql import (
    GET_INSTANCE, INSTANCE_COLUMNS, NEXT_READY_AT, STALE_TOKEN, SqlStore, earliest, history_bytes, instance_of,
    instance_state)

log = logging.getLogger(__name__)

# Each entry upgrades the schema by one version; never edit a released entry, append a new one.
MIGRATIONS: tuple[str, ...] = (
    # 1: the initial schema. Ids and names use the "C" collation: byte order, as in SQLite, so that
    # pages ordered by id and prefix key ranges behave the same whatever the database's locale.
    """
    CREATE TABLE instances (
        instance_id TEXT COLLATE "C" PRIMARY KEY,
        execution_id TEXT NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        version TEXT COLLATE "C" NOT NULL,      -- '' when unversioned
        status INTEGER NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        completed_at DOUBLE PRECISION,
        scheduled_start DOUBLE PRECISION,
        input TEXT,
        output TEXT,
        custom_status TEXT,
        failure_details BYTEA,                  -- TaskFailureDetails
        tags TEXT NOT NULL,                     -- JSON object
        parent BYTEA,                           -- ParentInstanceInfo, for sub-orchestrations
        parent_instance_id TEXT COLLATE "C",
        episodes INTEGER NOT NULL DEFAULT 0,
        ready_at DOUBLE PRECISION,              -- NULL: nothing to do (or suspended, or finished)
        lease_token TEXT,
        blocked_until DOUBLE PRECISION,         -- end of the current lease or abandon back-off
        claim_seq BIGINT,                       -- the lease holder was given inbox rows up to this seq ...
        claim_time DOUBLE PRECISION             -- ... that were visible at this time
    );
    CREATE INDEX instances_ready ON instances (ready_at) WHERE ready_at IS NOT NULL;
    CREATE INDEX instances_created ON instances (created_at);
    CREATE INDEX instances_completed ON instances (completed_at, instance_id);
    CREATE INDEX instances_parent ON instances (parent_instance_id);
    CREATE TABLE history (
        instance_id TEXT COLLATE "C" NOT NULL,
        episode INTEGER NOT NULL,
        events BYTEA NOT NULL,                  -- OrchestratorRequest encoding holding only pastEvents
        PRIMARY KEY (instance_id, episode)
    );
    CREATE TABLE inbox (
        seq BIGSERIAL PRIMARY KEY,
        instance_id TEXT COLLATE "C" NOT NULL,
        execution_id TEXT,                      -- set for events that belong to one execution
        visible_at DOUBLE PRECISION NOT NULL,
        event BYTEA NOT NULL                    -- HistoryEvent
    );
    CREATE INDEX inbox_instance ON inbox (instance_id, seq);
    CREATE TABLE activities (
        id BIGSERIAL PRIMARY KEY,
        instance_id TEXT COLLATE "C" NOT NULL,
        execution_id TEXT NOT NULL,
        task_id INTEGER NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        version TEXT COLLATE "C" NOT NULL,
        request BYTEA NOT NULL,                 -- ActivityRequest
        ready_at DOUBLE PRECISION NOT NULL,
        lease_token TEXT
    );
    CREATE INDEX activities_ready ON activities (ready_at);
    CREATE INDEX activities_instance ON activities (instance_id);
    CREATE TABLE instance_counts (
        name TEXT COLLATE "C" NOT NULL,
        version TEXT COLLATE "C" NOT NULL,
        status INTEGER NOT NULL,
        shard SMALLINT NOT NULL,
        count BIGINT NOT NULL,
        PRIMARY KEY (name, version, status, shard)
    );
    """,
    # 2: the hot paths as functions, so that a request is one or two statements instead of eight
    # (psycopg's cost per statement is what bounded throughput). Statuses as in orchestrator_service:
    # 1, 3, 5 finished (TERMINAL), 7 suspended, 6 pending.
    """
    -- PostgresStore._refresh_ready: when the (locked) instance can next be claimed. True if it is now
    -- claimable.
    CREATE FUNCTION durabletask_refresh_ready(p_instance TEXT, p_now DOUBLE PRECISION,
                                              p_hold DOUBLE PRECISION) RETURNS BOOLEAN
    LANGUAGE plpgsql AS $$
    DECLARE
        claimable BOOLEAN;
    BEGIN
        UPDATE instances SET ready_at = CASE
            WHEN status IN (1, 3, 5, 7) THEN NULL
            WHEN lease_token IS NOT NULL AND blocked_until > p_now THEN blocked_until
            WHEN next_event.at IS NULL THEN NULL
            ELSE GREATEST(next_event.at + next_event.hold, COALESCE(blocked_until, 0)) END
        FROM (SELECT MIN(visible_at) AS at,
                     CASE WHEN EXISTS (SELECT 1 FROM activities WHERE instance_id = p_instance)
                          THEN p_hold ELSE 0 END AS hold
              FROM inbox WHERE instance_id = p_instance) AS next_event
        WHERE instance_id = p_instance
        RETURNING status NOT IN (1, 3, 5, 7) AND (lease_token IS NULL OR blocked_until <= p_now)
                  AND ready_at IS NOT NULL INTO claimable;
        RETURN COALESCE(claimable, FALSE);
    END $$;

    -- PostgresStore._enqueue: add an event to the inbox of a locked instance, which can only make it
    -- ready sooner. True if that made it claimable.
    CREATE FUNCTION durabletask_enqueue(p_instance TEXT, p_execution_id TEXT, p_visible_at DOUBLE PRECISION,
                                        p_event BYTEA, p_now DOUBLE PRECISION) RETURNS BOOLEAN
    LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO inbox (instance_id, execution_id, visible_at, event)
        VALUES (p_instance, p_execution_id, p_visible_at, p_event);
        UPDATE instances SET ready_at = LEAST(COALESCE(ready_at, GREATEST(p_visible_at, COALESCE(blocked_until, 0))),
                                              GREATEST(p_visible_at, COALESCE(blocked_until, 0)))
        WHERE instance_id = p_instance AND status NOT IN (1, 3, 5, 7)
          AND (lease_token IS NULL OR blocked_until <= p_now);
        RETURN FOUND;
    END $$;

    -- PostgresStore._complete_activity: the instance locked first, the activity taken if the token
    -- holds it, its outcome delivered as SqlStore._deliver does. taken_task_id is NULL for a stale
    -- token; when it differs from p_task_id (the id p_outcome was built for) nothing was changed.
    CREATE FUNCTION durabletask_complete_activity(
        p_id BIGINT, p_token TEXT, p_instance TEXT, p_task_id INTEGER, p_outcome BYTEA,
        p_now DOUBLE PRECISION, p_hold DOUBLE PRECISION, OUT taken_task_id INTEGER, OUT work_ready BOOLEAN)
    LANGUAGE plpgsql AS $$
    DECLARE
        v_status INTEGER;
        v_execution_id TEXT;
        v_scheduled_start DOUBLE PRECISION;
        v_instance TEXT;
        v_activity_execution_id TEXT;
    BEGIN
        work_ready := FALSE;
        SELECT status, execution_id, scheduled_start INTO v_status, v_execution_id, v_scheduled_start
        FROM instances WHERE instance_id = p_instance FOR UPDATE;
        SELECT instance_id, execution_id, task_id INTO v_instance, v_activity_execution_id, taken_task_id
        FROM activities WHERE id = p_id AND lease_token = p_token;
        IF taken_task_id IS NULL OR taken_task_id <> p_task_id THEN
            RETURN;
        END IF;
        DELETE FROM activities WHERE id = p_id;
        IF v_instance <> p_instance THEN
            SELECT status, execution_id, scheduled_start INTO v_status, v_execution_id, v_scheduled_start
            FROM instances WHERE instance_id = v_instance FOR UPDATE;
            IF NOT FOUND THEN
                RETURN;
            END IF;
        ELSIF v_status IS NULL THEN
            RETURN;
        END IF;
        IF v_status NOT IN (1, 3, 5) AND (v_activity_execution_id = '' OR v_activity_execution_id = v_execution_id) THEN
            work_ready := durabletask_enqueue(v_instance, v_activity_execution_id,
                CASE WHEN v_status = 6 THEN GREATEST(p_now, COALESCE(v_scheduled_start, 0)) ELSE p_now END,
                p_outcome, p_now);
        END IF;
        IF durabletask_refresh_ready(v_instance, p_now, p_hold) THEN  -- runs whatever work_ready is
            work_ready := TRUE;
        END IF;
    END $$;

    -- The non-continue-as-new part of SqlStore._commit_episode for an instance whose lease the caller
    -- checked: history, status, finishing, new activities and timers, and (p_refresh) the next ready
    -- time. True if the instance is now claimable.
    CREATE FUNCTION durabletask_commit_episode(
        p_instance TEXT, p_execution_id TEXT, p_history BYTEA, p_status INTEGER, p_output TEXT,
        p_failure_details BYTEA, p_custom_status TEXT, p_finished BOOLEAN, p_task_ids INTEGER[],
        p_names TEXT[], p_versions TEXT[], p_requests BYTEA[], p_timer_at DOUBLE PRECISION[],
        p_timers BYTEA[], p_refresh BOOLEAN, p_now DOUBLE PRECISION, p_hold DOUBLE PRECISION)
    RETURNS BOOLEAN
    LANGUAGE plpgsql AS $$
    DECLARE
        v_episode INTEGER;
    BEGIN
        UPDATE instances SET episodes = episodes + 1, status = p_status, output = p_output,
            failure_details = p_failure_details, custom_status = p_custom_status, updated_at = p_now,
            completed_at = CASE WHEN p_finished THEN p_now END, lease_token = NULL, blocked_until = NULL
        WHERE instance_id = p_instance RETURNING episodes - 1 INTO v_episode;
        INSERT INTO history (instance_id, episode, events) VALUES (p_instance, v_episode, p_history);
        IF p_finished THEN
            DELETE FROM inbox WHERE instance_id = p_instance;
            DELETE FROM activities WHERE instance_id = p_instance AND lease_token IS NULL;
        END IF;
        IF cardinality(p_task_ids) > 0 THEN
            INSERT INTO activities (instance_id, execution_id, task_id, name, version, request, ready_at)
            SELECT p_instance, p_execution_id, task_id, name, version, request, p_now
            FROM unnest(p_task_ids, p_names, p_versions, p_requests) AS a(task_id, name, version, request);
        END IF;
        IF cardinality(p_timers) > 0 THEN
            INSERT INTO inbox (instance_id, execution_id, visible_at, event)
            SELECT p_instance, p_execution_id, visible_at, event
            FROM unnest(p_timer_at, p_timers) AS t(visible_at, event);
        END IF;
        IF p_refresh THEN
            RETURN durabletask_refresh_ready(p_instance, p_now, p_hold);
        END IF;
        RETURN FALSE;
    END $$;
    """,
    # 3: for completions committed without reading first (PostgresStore._next_batch), which must
    # fail the whole transaction when what they assumed does not hold.
    """
    -- Raise unless p_ok: the batch is rolled back, and runs again reading before it writes.
    CREATE FUNCTION durabletask_expect(p_ok BOOLEAN, p_what TEXT) RETURNS BOOLEAN
    LANGUAGE plpgsql AS $$
    BEGIN
        IF p_ok IS NOT TRUE THEN
            RAISE EXCEPTION 'durabletask: %', p_what;
        END IF;
        RETURN TRUE;
    END $$;

    -- The start of an episode's commit from what its claim read (PostgresStore._LeasedEpisode): the
    -- instance locked, still leased by p_token in the same execution and status, and the events the
    -- worker was given (p_seqs) taken from its inbox. Raises if anything changed since the claim.
    CREATE FUNCTION durabletask_take_delivered(p_instance TEXT, p_token TEXT, p_execution_id TEXT,
                                               p_status INTEGER, p_seqs BIGINT[]) RETURNS VOID
    LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM 1 FROM instances WHERE instance_id = p_instance AND lease_token = p_token
            AND execution_id = p_execution_id AND status = p_status FOR UPDATE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'durabletask: the lease on % has passed, or the instance changed', p_instance;
        END IF;
        DELETE FROM inbox WHERE instance_id = p_instance AND seq = ANY(p_seqs);
    END $$;
    """,
    # 4: less work per completion, and fewer row versions of an instance (each UPDATE writes one, and
    # one of a fan-out's instance per activity result made its index scans and the database's work
    # grow): an activity result updates the instance only when it makes it ready sooner, and an
    # episode's commit checks its lease and computes the next ready time in the UPDATE that releases
    # the lease.
    """
    CREATE OR REPLACE FUNCTION durabletask_complete_activity(
        p_id BIGINT, p_token TEXT, p_instance TEXT, p_task_id INTEGER, p_outcome BYTEA,
        p_now DOUBLE PRECISION, p_hold DOUBLE PRECISION, OUT taken_task_id INTEGER, OUT work_ready BOOLEAN)
    LANGUAGE plpgsql AS $$
    DECLARE
        v_instance TEXT;
        v_activity_execution_id TEXT;
        v_row RECORD;
        v_at DOUBLE PRECISION;
        v_next DOUBLE PRECISION;
    BEGIN
        work_ready := FALSE;
        SELECT instance_id, status, execution_id, scheduled_start, lease_token, blocked_until, ready_at INTO v_row
        FROM instances WHERE instance_id = p_instance FOR UPDATE;
        SELECT instance_id, execution_id, task_id INTO v_instance, v_activity_execution_id, taken_task_id
        FROM activities WHERE id = p_id AND lease_token = p_token;
        IF taken_task_id IS NULL OR taken_task_id <> p_task_id THEN
            RETURN;
        END IF;
        DELETE FROM activities WHERE id = p_id;
        IF v_instance <> p_instance THEN
            SELECT instance_id, status, execution_id, scheduled_start, lease_token, blocked_until, ready_at INTO v_row
            FROM instances WHERE instance_id = v_instance FOR UPDATE;
        END IF;
        IF v_row.instance_id IS NULL THEN
            RETURN;
        END IF;
        IF v_row.status IN (1, 3, 5)
           OR (v_activity_execution_id <> '' AND v_activity_execution_id <> v_row.execution_id) THEN
            work_ready := durabletask_refresh_ready(v_instance, p_now, p_hold);
            RETURN;
        END IF;
        v_at := CASE WHEN v_row.status = 6 THEN GREATEST(p_now, COALESCE(v_row.scheduled_start, 0)) ELSE p_now END;
        INSERT INTO inbox (instance_id, execution_id, visible_at, event)
        VALUES (v_instance, v_activity_execution_id, v_at, p_outcome);
        IF NOT EXISTS (SELECT 1 FROM activities WHERE instance_id = v_instance) THEN
            -- The last one: the instance no longer waits for more results (the hold ends).
            work_ready := durabletask_refresh_ready(v_instance, p_now, p_hold);
        ELSIF v_row.status <> 7 AND (v_row.lease_token IS NULL OR v_row.blocked_until <= p_now) THEN
            -- The hold stands, so the new event can only make the instance ready sooner:
            -- durabletask_refresh_ready's time, without reading the whole inbox.
            v_next := GREATEST(v_at + p_hold, COALESCE(v_row.blocked_until, 0));
            IF v_row.ready_at IS NULL OR v_row.ready_at > v_next THEN
                UPDATE instances SET ready_at = v_next WHERE instance_id = v_instance;
            END IF;
            work_ready := TRUE;
        END IF;  -- else suspended, or leased: resuming it, or committing its episode, reads the inbox
    END $$;

    -- The non-continue-as-new part of SqlStore._commit_episode. With p_token, it checks first that
    -- the instance is still leased by p_token in the same execution and status (else raises), and
    -- takes the events the worker was given (p_seqs) from its inbox, as durabletask_take_delivered
    -- does; without, the caller checked the lease and took them. True if the instance is now
    -- claimable.
    CREATE FUNCTION durabletask_commit_claimed_episode(
        p_instance TEXT, p_token TEXT, p_status_was INTEGER, p_seqs BIGINT[],
        p_execution_id TEXT, p_history BYTEA, p_status INTEGER, p_output TEXT,
        p_failure_details BYTEA, p_custom_status TEXT, p_finished BOOLEAN, p_task_ids INTEGER[],
        p_names TEXT[], p_versions TEXT[], p_requests BYTEA[], p_timer_at DOUBLE PRECISION[],
        p_timers BYTEA[], p_refresh BOOLEAN, p_now DOUBLE PRECISION, p_hold DOUBLE PRECISION)
    RETURNS BOOLEAN
    LANGUAGE plpgsql AS $$
    DECLARE
        v_episode INTEGER;
        v_claimable BOOLEAN;
    BEGIN
        -- With the lease released, durabletask_refresh_ready's time is the first event's (of the
        -- inbox, less the events taken, or a new timer's), later by the hold while activities are due.
        UPDATE instances SET episodes = episodes + 1, status = p_status, output = p_output,
            failure_details = p_failure_details, custom_status = p_custom_status, updated_at = p_now,
            completed_at = CASE WHEN p_finished THEN p_now END, lease_token = NULL, blocked_until = NULL,
            ready_at = CASE WHEN NOT p_refresh THEN ready_at
                            WHEN p_status IN (1, 3, 5, 7) THEN NULL
                            ELSE next_event.at + next_event.hold END
        FROM (SELECT LEAST((SELECT MIN(visible_at) FROM inbox
                            WHERE instance_id = p_instance AND seq <> ALL(COALESCE(p_seqs, '{}'))),
                           (SELECT MIN(t) FROM unnest(p_timer_at) AS t)) AS at,
                     CASE WHEN cardinality(p_task_ids) > 0
                               OR EXISTS (SELECT 1 FROM activities WHERE instance_id = p_instance)
                          THEN p_hold ELSE 0 END AS hold) AS next_event
        WHERE instance_id = p_instance
          AND (p_token IS NULL OR (lease_token = p_token AND execution_id = p_execution_id AND status = p_status_was))
        RETURNING episodes - 1, p_refresh AND status NOT IN (1, 3, 5, 7) AND ready_at IS NOT NULL
        INTO v_episode, v_claimable;
        IF NOT FOUND AND p_token IS NOT NULL THEN
            RAISE EXCEPTION 'durabletask: the lease on % has passed, or the instance changed', p_instance;
        END IF;
        IF p_seqs IS NOT NULL THEN
            DELETE FROM inbox WHERE instance_id = p_instance AND seq = ANY(p_seqs);
        END IF;
        INSERT INTO history (instance_id, episode, events) VALUES (p_instance, v_episode, p_history);
        IF p_finished THEN
            DELETE FROM inbox WHERE instance_id = p_instance;
            DELETE FROM activities WHERE instance_id = p_instance AND lease_token IS NULL;
        END IF;
        IF cardinality(p_task_ids) > 0 THEN
            INSERT INTO activities (instance_id, execution_id, task_id, name, version, request, ready_at)
            SELECT p_instance, p_execution_id, task_id, name, version, request, p_now
            FROM unnest(p_task_ids, p_names, p_versions, p_requests) AS a(task_id, name, version, request);
        END IF;
        IF cardinality(p_timers) > 0 THEN
            INSERT INTO inbox (instance_id, execution_id, visible_at, event)
            SELECT p_instance, p_execution_id, visible_at, event
            FROM unnest(p_timer_at, p_timers) AS t(visible_at, event);
        END IF;
        RETURN COALESCE(v_claimable, FALSE);
    END $$;

    -- Migration 2's, for servers of schema version 3 still running during a rolling upgrade.
    CREATE OR REPLACE FUNCTION durabletask_commit_episode(
        p_instance TEXT, p_execution_id TEXT, p_history BYTEA, p_status INTEGER, p_output TEXT,
        p_failure_details BYTEA, p_custom_status TEXT, p_finished BOOLEAN, p_task_ids INTEGER[],
        p_names TEXT[], p_versions TEXT[], p_requests BYTEA[], p_timer_at DOUBLE PRECISION[],
        p_timers BYTEA[], p_refresh BOOLEAN, p_now DOUBLE PRECISION, p_hold DOUBLE PRECISION)
    RETURNS BOOLEAN
    LANGUAGE sql AS $$
        SELECT durabletask_commit_claimed_episode(p_instance, NULL, NULL, NULL, p_execution_id, p_history,
            p_status, p_output, p_failure_details, p_custom_status, p_finished, p_task_ids, p_names, p_versions,
            p_requests, p_timer_at, p_timers, p_refresh, p_now, p_hold)
    $$;
    """,
)

DATABASE_NOW = "SELECT extract(epoch FROM clock_timestamp())::float8"
CLOCK_SYNC_SECONDS = 10.0
MIGRATION_LOCK = 0x64757261626c65  # pg_advisory_xact_lock key: "durable"
MAX_BATCH = 200
# Writer threads. One writes the most per CPU second: more only share the GIL and split the batches.
WRITERS = 1
READ_THREADS = 8
COUNT_SHARDS = 8
RETRIES = 10  # attempts for a request that keeps losing deadlocks or insert races
FALLBACK_POLL_SECONDS = 5.0  # safety net: wake the dispatcher even if no NOTIFY arrived
NOTIFY_PAYLOAD_BYTES = 7000  # PostgreSQL's limit is 8000
CONNECT_TIMEOUT_SECONDS = 10
# For a transaction of claims and renewals alone, whose commit need not wait for the disk: if the
# database loses them, the work is simply claimed again, and the lost lease's token is refused.
NOT_DURABLE = "SELECT set_config('synchronous_commit', 'off', true)"
# Lost a lock-order race with another transaction, or two replicas inserted the same instance id.
RETRYABLE = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure, psycopg.errors.UniqueViolation)


# Lease ready instances (locked, skipping those another transaction holds) with the inbox events
# visible now, and return each (INSTANCE_COLUMNS, parent, ready_at, lease token) with those events,
# their seqs and its history. Parameters: now, the filters', the limit, now, the claim's nonce, the
# lease's end twice, now. An instance with no visible events is returned without any (and not leased).
CLAIM_ORCHESTRATIONS = """
WITH picked AS (
    SELECT """ + INSTANCE_COLUMNS + """, parent, ready_at, lease_token FROM instances
    WHERE ready_at <= %s{where} ORDER BY ready_at LIMIT %s FOR UPDATE SKIP LOCKED),
given AS (
    SELECT instance_id, max(seq) AS last_seq, array_agg(event ORDER BY visible_at, seq) AS events,
        array_agg(seq ORDER BY visible_at, seq) AS seqs FROM inbox
    WHERE instance_id IN (SELECT instance_id FROM picked) AND visible_at <= %s GROUP BY instance_id),
leased AS (
    UPDATE instances AS i SET lease_token = 'o' || %s || '.' || i.instance_id, blocked_until = %s, ready_at = %s,
        claim_seq = g.last_seq, claim_time = %s
    FROM given AS g WHERE i.instance_id = g.instance_id)
SELECT p.*, g.events, g.seqs,
    (SELECT array_agg(h.events ORDER BY h.episode) FROM history AS h WHERE h.instance_id = p.instance_id)
FROM picked AS p LEFT JOIN given AS g USING (instance_id) ORDER BY p.ready_at
"""
# Lease ready activities and return them. Parameters: now, the filters', the limit, the nonce, the
# lease's end.
CLAIM_ACTIVITIES = """
WITH picked AS (
    SELECT id, request, ready_at, lease_token FROM activities
    WHERE ready_at <= %s{where} ORDER BY ready_at LIMIT %s FOR UPDATE SKIP LOCKED),
leased AS (
    UPDATE activities AS a SET lease_token = 'a' || a.id || '.' || %s, ready_at = %s FROM picked AS p
    WHERE a.id = p.id)
SELECT id, request, ready_at, lease_token FROM picked ORDER BY ready_at
"""


# The SQLite store's `_settle_work_ready` and the NOTIFY in one statement: the earliest ready_at of
# any work item, and a notice saying whether that is now (else when). Parameters: the channel, now,
# now, the instance ids whose status changed (JSON).
SETTLE_AND_NOTIFY = """
SELECT earliest, pg_notify(%s, json_build_object('work_ready', earliest <= %s,
    'wake_at', CASE WHEN earliest > %s THEN earliest END, 'status_changed', %s::json)::text)
FROM (SELECT LEAST((SELECT MIN(ready_at) FROM instances), (SELECT MIN(ready_at) FROM activities)) AS earliest) AS e
"""


class _DatabaseClock:
    """The database's clock, read off this process's: lease ends and timers must agree across
    replicas, but asking the database for the time in every batch would cost a round trip each. The
    writes measure the offset again every CLOCK_SYNC_SECONDS; the time never goes back."""

    def __init__(self):
        self._lock = threading.Lock()
        self._offset = 0.0
        self._last = -math.inf
        self.synced_at = -math.inf  # time.monotonic() of the last measure

    def sync(self, conn: psycopg.Connection) -> None:
        before = time.time()
        (database_now,) = conn.execute(DATABASE_NOW).fetchone()
        with self._lock:
            self._offset = database_now - (before + time.time()) / 2
            self.synced_at = time.monotonic()

    def now(self) -> float:
        with self._lock:
            self._last = max(self._last, time.time() + self._offset)
            return self._last


_compare_versions = functools.lru_cache(maxsize=4096)(compare_versions)


def _accepts(f: NameFilter, version: str) -> bool:
    """Whether a worker with this filter runs `version`, compared as workers compare versions."""
    return any(_compare_versions(version, listed) == 0 for listed in f.versions) or \
        (f.max_version is not None and _compare_versions(version, f.max_version) <= 0)


class _ReadyVersions:
    """The versions seen among ready work, by table and name. Version order is not SQL's string order
    ("10.0" > "9.0", "1.0" = "1.0.0"), so a claim with a version filter lists the versions it accepts.
    The first claim for a name reads them (carefully); later ones take them from here, which keeps
    them optimistic, and look for ready versions not seen yet. Used on the event loop's thread and
    the writer's."""

    def __init__(self):
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], set[str]] = {}

    def seen(self, table: str, name: str) -> list[str] | None:
        """None if no claim has read them yet."""
        with self._lock:
            versions = self._seen.get((table, name))
            return None if versions is None else list(versions)

    def see(self, table: str, name: str, versions: list[str]) -> None:
        with self._lock:
            self._seen.setdefault((table, name), set()).update(versions)


def _columns(rows: list[tuple], width: int) -> list[list]:
    """Rows as column lists (for unnest), `width` empty lists when there are none."""
    return [list(column) for column in zip(*rows)] if rows else [[] for _ in range(width)]


def _work_columns(episode: episodes.Episode) -> tuple[list[list], list[list]]:
    """The episode's new activities (task id, name, version, request) and timers (due time, event),
    as unnest columns."""
    activities = [(request.taskId, request.name, request.version.value, request.SerializeToString())
                  for request in episode.activities]
    timers = [(fire_at, fired.SerializeToString()) for fire_at, fired in episode.timers]
    return _columns(activities, 4), _columns(timers, 2)


def _note_work_ready(tx: "_Tx", ready: bool) -> None:
    tx.notice.work_ready |= ready


@dataclass
class _Sql:
    conn: psycopg.Connection

    def one(self, query: str, *params) -> Any:
        return self.conn.execute(query, params).fetchone()

    def run(self, query: str, *params) -> psycopg.Cursor:
        return self.conn.execute(query, params)


@dataclass
class _Tx(_Sql):
    """One careful write transaction (on the writer thread): the connection, the batch's clock and
    what it changed."""
    now: float
    notice: CommitNotice = field(default_factory=CommitNotice)
    counts: Counter = field(default_factory=Counter)  # (name, version, status) -> delta, this request's
    deferred: list = field(default_factory=list)  # (cursor, on_row) of `then`, not yet read
    claimed: bool = False

    def then(self, on_row: Callable[[Any], None], query: str, *params) -> None:
        """Run a statement now and hand its row to `on_row` once the statements of the request (or of
        the whole batch) have all been sent, instead of waiting a round trip for it here."""
        self.deferred.append((self.conn.execute(query, params), on_row, psycopg.Cursor.fetchone))

    def then_rows(self, on_rows: Callable[[list], None], query: str, *params) -> None:
        """`then`, for a statement whose rows (all of them, as a list) go to `on_rows`."""
        self.deferred.append((self.conn.execute(query, params), on_rows, psycopg.Cursor.fetchall))

    def read_deferred(self) -> None:
        """Hand the deferred rows over, in order; an `on_row` may defer another statement."""
        while self.deferred:
            cursor, on_result, fetch = self.deferred.pop(0)
            on_result(fetch(cursor))

    optimistic = False


class _NeedsRead(Exception):
    """A step of an optimistic transaction wants rows before the transaction ends."""


class _Unread:
    """The rows of a statement of an optimistic transaction: none before it commits, so a step that
    reads them has to run carefully."""

    def __iter__(self):
        raise _NeedsRead

    def fetchall(self):
        raise _NeedsRead


@dataclass
class _OptimisticTx:
    """One optimistic write transaction (see `PostgresStore._next_batch`): a step's statements
    are only collected, to be sent together, and their rows handed over once they have all run."""
    now: float
    notice: CommitNotice = field(default_factory=CommitNotice)
    counts: Counter = field(default_factory=Counter)  # (name, version, status) -> delta, this request's
    statements: list = field(default_factory=list)  # (query, params, on_rows), this request's
    follow_up: list = field(default_factory=list)  # statements added while rows are handed over
    sealed: bool = False  # the statements have been sent
    claimed: bool = False

    optimistic = True

    def one(self, query: str, *params) -> Any:
        raise _NeedsRead

    def run(self, query: str, *params) -> _Unread:
        self._add(query, params, None)
        return _Unread()

    def then(self, on_row: Callable[[Any], None], query: str, *params) -> None:
        self._add(query, params, lambda rows: on_row(rows[0] if rows else None))

    def then_rows(self, on_rows: Callable[[list], None], query: str, *params) -> None:
        self._add(query, params, on_rows)

    def _add(self, query: str, params: tuple, on_rows: Callable[[list], None] | None) -> None:
        # A statement added once the transaction is sent (a claim's repair of a stale ready time) runs
        # in a transaction of its own, right after.
        (self.follow_up if self.sealed else self.statements).append((query, params, on_rows))


@dataclass
class _LeasedEpisode:
    """What a claim read of an instance and handed its worker: the completion plans the episode from
    this instead of reading it again, and `durabletask_take_delivered` checks that it still holds."""
    state: InstanceState
    parent: bytes | None
    delivered: list[pb.HistoryEvent]  # OrchestratorStarted, then the inbox events given
    seqs: list[int]  # the inbox rows of those events
    lease_end: float


class _Leases:
    """The episodes this replica handed out, by lease token, until completed or their lease is over.
    A completion whose episode is not here (its lease ran out, or it reached another replica) reads
    afresh. Claims and completions run on both the event loop's thread and the writer's."""

    def __init__(self):
        self._lock = threading.Lock()
        self._by_token: dict[str, _LeasedEpisode] = {}

    def keep(self, token: str, episode: _LeasedEpisode, now: float) -> None:
        with self._lock:
            self._by_token[token] = episode
            # Kept in claim order, so the first lease is the first to end (a renewed one is dropped
            # early: its completion reads afresh).
            while self._by_token and next(iter(self._by_token.values())).lease_end < now:
                del self._by_token[next(iter(self._by_token))]

    def take(self, token: str) -> _LeasedEpisode | None:
        with self._lock:
            return self._by_token.pop(token, None)


@dataclass
class _Request:
    fn: Callable
    args: tuple
    lock_key: str  # the instance the request locks first ('' when it waits on none)
    durable: bool  # False: losing it in a database crash is harmless, so its commit need not wait for the disk
    done: asyncio.Future  # on the caller's event loop
    attempts: int = 0

    def settle(self, result: Any = None, error: Exception | None = None) -> None:
        """Hand the outcome over (on the event loop's thread), unless the caller gave up waiting."""
        if not self.done.done():
            if error is None:
                self.done.set_result(result)
            else:
                self.done.set_exception(error)

    def settle_from_thread(self, result: Any = None, error: Exception | None = None) -> None:
        try:
            self.done.get_loop().call_soon_threadsafe(self.settle, result, error)
        except RuntimeError:  # the event loop is closed: nobody waits any more
            pass


def _still_wanted(requests: list[_Request]) -> list[_Request]:
    """The requests to run, in lock order: one whose caller gave up (its gRPC call was cancelled)
    before it ran is dropped, as if never sent."""
    return sorted((request for request in requests if not request.done.cancelled()), key=lambda r: r.lock_key)


def _log_failure(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("store follow-up failed: %s", future.exception())


class PostgresStore(SqlStore):
    def __init__(self, conninfo: str, *, synchronous_commit: bool = True,
                 migrations: tuple[str, ...] = MIGRATIONS):
        self._conninfo = conninfo
        self._synchronous_commit = synchronous_commit
        self._listeners: list[Callable[[CommitNotice], None]] = []
        self._own_backends: set[int] = set()  # backend pids of our pool, whose NOTIFYs we skip
        self._closed = threading.Event()
        self._clock = _DatabaseClock()
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS) as conn:
            self._migrate(conn, migrations)
            schema = conn.execute("SELECT current_schema()").fetchone()[0]
            self._clock.sync(conn)
        self._channel = f"durabletask.{schema}"  # hubs in different schemas of one database stay apart
        self._pool = ConnectionPool(conninfo, min_size=2, max_size=WRITERS + READ_THREADS + 2, open=False,
                                    kwargs={"autocommit": True}, configure=self._configure, name="durabletask")
        self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_SECONDS)
        self._read_pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="postgres-reader")
        self._waiting: list[_Request] = []  # for the next optimistic batch
        self._writing = False  # an optimistic batch is being written (`_next_batch`)
        self._batch_due = False  # `_next_batch` is scheduled
        self._pipeline: Pipeline | None = None
        self._pipeline_retry_at = -math.inf
        self._clock_measure: asyncio.Future | None = None
        self._connecting: asyncio.Task | None = None  # (held, as the event loop only holds tasks weakly)
        self._leases = _Leases()
        self._ready_versions = _ReadyVersions()
        # One queue per writer. Requests for one instance always go to the same writer, so that they
        # share its batches (one lock, one commit: a fan-out's results) instead of queueing for that
        # instance's row lock behind the other writers' transactions.
        self._queues: list[queue.SimpleQueue] = [queue.SimpleQueue() for _ in range(WRITERS)]
        self._writers = [threading.Thread(target=self._write_loop, args=(q,), name=f"postgres-writer-{i}",
                                          daemon=True) for i, q in enumerate(self._queues)]
        self._listening: asyncio.Task | None = None  # `_listen`, once a commit listener is added
        for writer in self._writers:
            writer.start()

    # -- plumbing -----------------------------------------------------------------------------
    @staticmethod
    def _migrate(conn: psycopg.Connection, migrations: tuple[str, ...]) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS durabletask_schema (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM durabletask_schema").fetchone()
            current = 0 if row is None else row[0]
            if current > len(migrations):
                raise StoreUrlError(f"The PostgreSQL store has schema version {current}, newer than this server "
                                    f"knows (up to {len(migrations)}); upgrade the server.")
            for version in range(current + 1, len(migrations) + 1):
                log.info("upgrading the PostgreSQL store schema to version %d", version)
                conn.execute(migrations[version - 1])
            if row is None:
                conn.execute("INSERT INTO durabletask_schema VALUES (%s)", (len(migrations),))
            elif current != len(migrations):
                conn.execute("UPDATE durabletask_schema SET version = %s", (len(migrations),))

    def _configure(self, conn: psycopg.Connection) -> None:
        if not self._synchronous_commit:
            conn.execute("SET synchronous_commit = off")
        self._own_backends.add(conn.info.backend_pid)

    def add_commit_listener(self, listener: Callable[[CommitNotice], None]) -> None:
        """Also starts hearing other replicas' commits: call it on the event loop."""
        self._listeners.append(listener)
        if self._listening is None:
            self._listening = asyncio.get_running_loop().create_task(self._listen())

    def _tell_listeners(self, notice: CommitNotice) -> None:
        if not self._closed.is_set():
            for listener in self._listeners:
                listener(notice)

    def _write(self, fn: Callable, *args, lock_key: str = "", durable: bool = True) -> asyncio.Future:
        """Queue `fn(tx, *args)` for the next optimistic batch (a careful one if it must read before it
        commits); the result resolves on the caller's event loop."""
        loop = asyncio.get_running_loop()
        request = _Request(fn, args, lock_key, durable, loop.create_future())
        self._waiting.append(request)
        if not self._writing and not self._batch_due:
            self._batch_due = True
            loop.call_soon(self._next_batch)
        return request.done

    def _write_carefully(self, request: _Request) -> None:
        self._queue_for(request).put(request)

    def _queue_for(self, request: _Request) -> queue.SimpleQueue:
        """The writer of the request's instance; any writer for a request that locks none (a claim)."""
        index = hash(request.lock_key) if request.lock_key else random.randrange(WRITERS)
        return self._queues[index % WRITERS]

    def _read(self, fn: Callable, *args) -> asyncio.Future:
        return asyncio.get_running_loop().run_in_executor(self._read_pool, self._with_connection, fn, *args)

    def _with_connection(self, fn: Callable, *args):
        try:
            with self._pool.connection() as conn:
                return fn(_Sql(conn), *args)
        except (psycopg.OperationalError, PoolTimeout) as error:
            raise _unavailable(error) from None

    # -- optimistic batches, on the event loop -------------------------------------------------
    def _next_batch(self) -> None:
        """Start an optimistic batch of the requests waiting, on the event loop; one at a time, each of
        the requests that arrived while the one before ran. A batch is optimistic: its statements go
        out together, as one transaction that the sync point after them commits (`Pipeline.send`), in
        one round trip, and none of its rows is read before the commit. That holds for the hot paths:
        starts, claims, renewals, completions (an episode's completion plans from what its claim read,
        `_LeasedEpisode`, and the database checks that this still holds). A request that has to read
        first (a message to another instance, a terminate, ...) goes to the careful writer instead;
        so does every request of a batch the database refused (a lease that had passed, an instance id
        already taken), as the batch was rolled back.

        Why not all on the writer thread: its hand-offs with the event loop, the GIL passed between
        the two threads at every round trip, a round trip per read and psycopg's cost per statement
        cost more than the database's work (hello-cities went from 0.59-0.67 times the rate of
        Microsoft's in-memory backend to 0.87-0.96: bench/README.md)."""
        self._batch_due = False
        while self._waiting and not self._writing:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            if batch := _still_wanted(batch):
                self._writing = True
                if (pipeline := self._usable_pipeline()) is None:
                    self._connecting = asyncio.get_running_loop().create_task(self._connect_then_send(batch))
                else:
                    self._send_or_log(pipeline, batch)

    async def _connect_then_send(self, batch: list[_Request]) -> None:
        if (pipeline := await self._open_pipeline()) is not None:
            self._send_or_log(pipeline, batch)
            return
        for request in batch:
            self._write_carefully(request)
        self._batch_over()

    def _send_or_log(self, pipeline: Pipeline, batch: list[_Request]) -> None:
        try:
            self._send_batch(pipeline, batch)
        except Exception:  # a bug: the batch's callers wait in vain, but the batches after it still run
            log.exception("an optimistic batch failed")
            self._batch_over()

    def _batch_over(self) -> None:
        # The next batch starts a loop round after this one's callers have resumed: their replies go
        # out first, and what they ask next, or wake up (a claim), joins it. Measured in alternating
        # pairs: hello-cities +6%, fan-out-fan-in about +4%.
        self._writing = False
        if self._waiting and not self._batch_due:
            self._batch_due = True
            asyncio.get_running_loop().call_soon(self._next_batch)

    def _send_batch(self, pipeline: Pipeline, batch: list[_Request]) -> None:
        """Build the batch's statements and send them; `_batch_sent` takes over when they have run.
        Called (and calling back) on the event loop, without a task: every hop through the loop's
        queue of ready callbacks would add to every request's latency."""
        self._measure_clock()
        tx = _OptimisticTx(self._clock.now())
        notice, counts, statements, queued = CommitNotice(), Counter(), [], []
        for request in batch:
            tx.notice, tx.counts, tx.statements = CommitNotice(), Counter(), []
            try:
                result = request.fn(tx, *request.args)
                statements += [pipeline.statement(*statement) for statement in tx.statements]
            except Exception:  # it reads first, or fails: the careful writer runs it (and fails it alone)
                self._write_carefully(request)
                continue
            queued.append((request, result))
            notice.merge(tx.notice)
            counts.update(tx.counts)
        if not queued:
            self._batch_over()
            return
        durable = any(request.durable for request, _ in queued)
        tx.notice, tx.counts, tx.statements = notice, counts, []
        self._apply_counts(tx, counts)
        self._publish(tx, settle=durable)  # what the batch made ready is known only once it has run
        tx.sealed = True
        if not durable:
            statements.insert(0, pipeline.statement(NOT_DURABLE))
        statements += [pipeline.statement(*statement) for statement in tx.statements]
        pipeline.send(statements, functools.partial(self._batch_sent, pipeline, tx, queued))

    def _batch_sent(self, pipeline: Pipeline, tx: _OptimisticTx, queued: list[tuple[_Request, Any]],
                    error: Exception | None) -> None:
        try:
            if error is None:
                for request, result in queued:
                    request.settle(result)
                if tx.follow_up:
                    self._write(self._run_statements, tx.follow_up).add_done_callback(_log_failure)
                self._tell_listeners(tx.notice)
            elif pipeline.broken is not None:  # the connection is lost: whether it committed is unknown
                log.warning("store transaction failed: %s", error)
                for request, _ in queued:
                    request.settle(error=_unavailable(error))
            else:
                log.debug("optimistic batch refused, running it carefully: %s", error)
                for request, _ in queued:
                    self._write_carefully(request)
        finally:
            self._batch_over()

    def _usable_pipeline(self) -> Pipeline | None:
        """The event loop's connection, if it is open and belongs to the running loop."""
        pipeline = self._pipeline
        if pipeline is None or pipeline.broken is not None or pipeline.loop is not asyncio.get_running_loop():
            return None
        return pipeline

    async def _open_pipeline(self) -> Pipeline | None:
        """The event loop's connection, (re)connected if need be; None while the database is out of
        reach (the careful writer then reports that)."""
        if self._pipeline is not None and self._usable_pipeline() is None:
            self._pipeline.close()
            self._pipeline = None
        if self._pipeline is None and time.monotonic() >= self._pipeline_retry_at:
            try:
                self._pipeline = await Pipeline.connect(
                    self._conninfo, CONNECT_TIMEOUT_SECONDS,
                    () if self._synchronous_commit else ("SET synchronous_commit = off",))
            except psycopg.Error as error:
                log.warning("cannot open the PostgreSQL pipeline connection (%s); writing carefully meanwhile",
                            _reason(error))
                self._pipeline_retry_at = time.monotonic() + 1.0
            else:
                self._own_backends.add(self._pipeline.backend_pid)
        return self._pipeline

    def _measure_clock(self) -> None:
        """Measure the database clock's offset again when it is due (the two clocks drift apart), on a
        read thread; the last offset stands meanwhile."""
        if time.monotonic() - self._clock.synced_at >= CLOCK_SYNC_SECONDS and self._clock_measure is None:
            self._clock_measure = self._read(lambda db: self._clock.sync(db.conn))
            self._clock_measure.add_done_callback(self._clock_measured)

    def _clock_measured(self, measure: asyncio.Future) -> None:
        self._clock_measure = None
        if not measure.cancelled() and measure.exception() is not None:
            log.debug("cannot measure the database clock (%s); the last offset stands", measure.exception())

    @staticmethod
    def _run_statements(tx: _Tx | _OptimisticTx, statements: list[tuple]) -> None:
        for query, params, on_rows in statements:
            if on_rows is None:
                tx.run(query, *params)
            else:
                tx.then_rows(on_rows, query, *params)

    # -- careful batches, on the writer thread --------------------------------------------------
    def _write_loop(self, requests: queue.SimpleQueue) -> None:
        while True:
            batch = [requests.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(requests.get_nowait())
                except queue.Empty:
                    break
            if live := _still_wanted([request for request in batch if request is not None]):
                self._run_batch(live)
            if None in batch:
                return

    def _run_batch(self, batch: list[_Request]) -> None:
        """One transaction for the whole batch, in pipeline mode: a statement whose result nobody reads
        goes out with the next one that is read. Round trips, not the database, are what small
        transactions mostly wait on. The requests first run together, with nothing between them; if
        any of them fails, that transaction is rolled back and the batch runs again with each request
        in its own savepoint, so that a failing request fails alone."""
        retry: list[_Request] = []
        notice = None
        try:
            with self._pool.connection() as conn:
                try:
                    outcomes, notice = self._run_together(conn, batch)
                except Exception:
                    conn.execute("ROLLBACK")
                    outcomes, retry, notice = self._run_apart(conn, batch)
        except (psycopg.OperationalError, PoolTimeout) as error:  # the database is out of reach
            log.warning("store transaction failed: %s", error)
            outcomes = {i: (None, _unavailable(error)) for i in range(len(batch))}
            retry = []
        except Exception as error:
            log.exception("store transaction failed")
            outcomes = {i: (None, error) for i in range(len(batch))}
            retry = []
        for i, (result, error) in outcomes.items():
            batch[i].settle_from_thread(result, error)
        for request in retry:
            self._queue_for(request).put(request)
        if notice is not None and notice.says_anything():
            self._tell_listeners(notice)

    def _run_together(self, conn: psycopg.Connection, batch: list[_Request]) -> tuple[dict, CommitNotice]:
        """The batch's requests one after another, no savepoints, each request's deferred reads at
        the end; the first error (after the pipeline is back in sync) is raised."""
        with conn.pipeline() as pipeline:
            try:
                tx = self._begin(conn, batch)
                results = {i: (request.fn(tx, *request.args), None) for i, request in enumerate(batch)}
                tx.read_deferred()
                self._end(tx, tx.counts)
                return results, tx.notice
            except BaseException:
                try:  # so that leaving the pipeline does not report the error again
                    pipeline.sync()
                except psycopg.Error:
                    pass
                raise

    def _run_apart(self, conn: psycopg.Connection, batch: list[_Request]) -> tuple[dict, list, CommitNotice]:
        """The batch with each request in a savepoint, synced on its own: a failing request is rolled
        back alone, one that lost a lock-order race goes to `retry`."""
        outcomes: dict[int, tuple[Any, Exception | None]] = {}
        retry: list[_Request] = []
        with conn.pipeline() as pipeline:
            tx = self._begin(conn, batch)
            counts: Counter = Counter()
            for i, request in enumerate(batch):
                tx.counts, tx.deferred = Counter(), []
                finished_before = len(tx.notice.finished)
                conn.execute("SAVEPOINT request")
                try:
                    result = request.fn(tx, *request.args)
                    pipeline.sync()  # so that an error of its last statements is raised here
                    tx.read_deferred()
                except RETRYABLE as error:
                    request.attempts += 1
                    if request.attempts < RETRIES:
                        retry.append(request)
                    else:
                        outcomes[i] = (None, error)
                except psycopg.DataError as error:  # a value the database cannot keep; it fails alone
                    outcomes[i] = (None, Unstorable(f"The PostgreSQL store cannot keep this request: "
                                                    f"{str(error).rstrip('.')}."))
                except Exception as error:  # the request fails alone; the batch goes on
                    if isinstance(error, psycopg.Error):
                        log.warning("store request %s failed: %s", request.fn.__name__, error)
                    outcomes[i] = (None, error)
                else:
                    outcomes[i] = (result, None)
                    counts.update(tx.counts)
                    conn.execute("RELEASE request")
                    continue
                del tx.notice.finished[finished_before:]  # they did not happen
                try:  # statements queued after a failed one are skipped until the pipeline syncs
                    pipeline.sync()
                except psycopg.Error:
                    pass
                conn.execute("ROLLBACK TO request")
                conn.execute("RELEASE request")
            self._end(tx, counts)
        return outcomes, retry, tx.notice

    def _begin(self, conn: psycopg.Connection, batch: list[_Request]) -> _Tx:
        conn.execute("BEGIN")
        if not any(request.durable for request in batch):
            conn.execute(NOT_DURABLE)
        return _Tx(conn, self._clock.now())

    def _end(self, tx: _Tx, counts: Counter) -> None:
        self._apply_counts(tx, counts)
        self._publish(tx, settle=tx.claimed and tx.notice.work_ready)
        tx.conn.execute("COMMIT")
        tx.read_deferred()  # what `_publish` learnt, with the commit's round trip

    @staticmethod
    def _apply_counts(tx: _Tx, counts: Counter) -> None:
        """Add the batch's count changes: one statement, rows in key order so that concurrent batches
        never deadlock on them, into a random shard so that they rarely wait for each other."""
        changed = [(*key, delta) for key, delta in sorted(counts.items()) if delta]
        if changed:
            names, versions, statuses, deltas = map(list, zip(*changed))
            tx.run("INSERT INTO instance_counts SELECT name, version, status, %s, delta "
                   "FROM unnest(%s::text[], %s::text[], %s::int[], %s::bigint[]) AS c(name, version, status, delta) "
                   "ON CONFLICT (name, version, status, shard) DO UPDATE SET count = instance_counts.count + "
                   "excluded.count", random.randrange(COUNT_SHARDS), names, versions, statuses, deltas)

    def _publish(self, tx: _Tx | _OptimisticTx, settle: bool) -> None:
        """NOTIFY the other replicas (delivered when the transaction commits). `finished` stays local:
        each replica's metrics observe the completions it applied, so none is counted twice. With
        `settle`, the first NOTIFY says whether work is ready now from the earliest ready time of any
        work item, read in the same statement (as the SQLite store's `_settle_work_ready` does): for
        a batch that claimed work as well as made some ready, or that cannot know what it made ready
        before it has run (optimistic)."""
        notice = tx.notice
        if not (settle or notice.work_ready or notice.wake_at or notice.status_changed):
            return
        chunks, chunk, size = [], [], 0
        for iid in sorted(notice.status_changed):
            if size + len(iid.encode()) + 4 > NOTIFY_PAYLOAD_BYTES and chunk:
                chunks.append(chunk)
                chunk, size = [], 0
            chunk.append(iid)
            size += len(iid.encode()) + 4
        chunks.append(chunk)
        if settle:
            def settled(row: tuple) -> None:
                earliest = row[0]
                notice.work_ready = earliest is not None and earliest <= tx.now
                notice.wake_at = None if notice.work_ready else earliest

            tx.then(settled, SETTLE_AND_NOTIFY, self._channel, tx.now, tx.now, json.dumps(chunks.pop(0)))
        for chunk in chunks:
            tx.run("SELECT pg_notify(%s, %s)", self._channel,
                   json.dumps({"work_ready": notice.work_ready, "wake_at": notice.wake_at, "status_changed": chunk}))

    async def _listen(self) -> None:
        """Turn other replicas' NOTIFYs into commit notices, on the event loop (as a thread, it would
        take the GIL from the loop at each of this replica's own NOTIFYs, which it receives too);
        reconnect when the connection drops. Every FALLBACK_POLL_SECONDS, a notice says that work
        may be ready anyway: the safety net, should a notification be lost."""
        loop = asyncio.get_running_loop()
        while not self._closed.is_set():
            try:
                conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True,
                                                             connect_timeout=CONNECT_TIMEOUT_SECONDS)
            except psycopg.Error as error:
                log.warning("cannot LISTEN on the PostgreSQL store (%s); trying again", _reason(error))
                await asyncio.sleep(1.0)
                continue
            try:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                lost = loop.create_future()
                socket = os.dup(conn.pgconn.socket)  # (as Pipeline does: libpq closes its own when lost)
                loop.add_reader(socket, self._hear, conn.pgconn, lost)
                try:
                    while not lost.done():
                        self._tell_listeners(CommitNotice(work_ready=True))  # whatever happened while deaf
                        await asyncio.wait([lost], timeout=FALLBACK_POLL_SECONDS)
                finally:
                    loop.remove_reader(socket)
                    os.close(socket)
                raise lost.result()
            except psycopg.Error as error:
                if not self._closed.is_set():
                    log.warning("lost the PostgreSQL LISTEN connection (%s); reconnecting", error)
                    await asyncio.sleep(1.0)
            finally:
                await conn.close()

    def _hear(self, pgconn: psycopg.pq.abc.PGconn, lost: asyncio.Future) -> None:
        """The LISTEN connection is readable: hand over what other replicas NOTIFYed."""
        try:
            pgconn.consume_input()
        except psycopg.OperationalError as error:
            if not lost.done():
                lost.set_result(error)
            return
        while (notify := pgconn.notifies()) is not None:
            if notify.be_pid not in self._own_backends:
                message = json.loads(notify.extra)
                self._tell_listeners(CommitNotice(message["work_ready"], set(message["status_changed"]),
                                                  message.get("wake_at")))

    def close(self) -> None:
        if self._closed.is_set():
            return
        if self._pipeline is not None:
            self._pipeline.close()  # an optimistic batch still in flight fails as unavailable
        for requests in self._queues:
            requests.put(None)
        for writer in self._writers:
            writer.join()
        self._closed.set()
        if self._listening is not None and not self._listening.get_loop().is_closed():
            self._listening.cancel()
        self._read_pool.shutdown()
        self._pool.close()

    # -- shared transaction steps -------------------------------------------------------------
    @staticmethod
    def _refresh_ready(tx: _Tx, instance_id: str) -> None:
        """Recompute when the instance can next be claimed (the caller holds its row lock): never while
        suspended or finished; at the end of a live lease; else at its first event, RESULT_BATCH_SECONDS
        later while some of its activities are still due (no earlier than an abandon back-off)."""
        tx.then(lambda row: _note_work_ready(tx, row[0]), "SELECT durabletask_refresh_ready(%s, %s, %s)",
                instance_id, tx.now, RESULT_BATCH_SECONDS)

    @staticmethod
    def _enqueue(tx: _Tx, instance_id: str, ev: pb.HistoryEvent, execution_id: str | None,
                 visible_at: float | None = None) -> None:
        """Add an event to the inbox (the caller holds the instance's row lock, so a claim never misses
        an event committed later with a lower seq). A new event can only make its instance ready
        sooner, unless a live lease, a suspension or the end of the instance keeps it unclaimable."""
        tx.then(lambda row: _note_work_ready(tx, row[0]), "SELECT durabletask_enqueue(%s, %s, %s, %s, %s)",
                instance_id, execution_id, tx.now if visible_at is None else visible_at, ev.SerializeToString(),
                tx.now)

    @staticmethod
    def _append_history(tx: _Tx, instance_id: str, events: list[pb.HistoryEvent]) -> None:
        tx.run("WITH counted AS (UPDATE instances SET episodes = episodes + 1 WHERE instance_id = %s "
               "RETURNING episodes - 1 AS episode) "
               "INSERT INTO history (instance_id, episode, events) SELECT %s, episode, %s FROM counted",
               instance_id, instance_id, history_bytes(events))

    # -- instances ----------------------------------------------------------------------------
    def instance_counts(self) -> list[tuple[str, str, int, int]]:
        with self._pool.connection() as conn:
            return conn.execute("SELECT name, version, status, SUM(count)::bigint FROM instance_counts "
                                "GROUP BY name, version, status").fetchall()

    def pending_counts(self) -> list[tuple[str, str, str, int]]:
        # A lease moves ready_at to the lease's end, so "ready_at <= now" is exactly "claimable now";
        # the ready_at indexes keep this a range scan over the backlog alone.
        with self._pool.connection() as conn:
            (now,) = conn.execute(DATABASE_NOW).fetchone()
            return [(kind, name, version, count) for kind, table in (("orchestration", "instances"),
                                                                     ("activity", "activities"))
                    for name, version, count in conn.execute(
                        f"SELECT name, version, COUNT(*) FROM {table} WHERE ready_at <= %s GROUP BY name, version",
                        (now,))]

    async def get_instance(self, instance_id: str, include_payloads: bool = True) -> InstanceState | None:
        """On the event loop's pipeline, when it is open: a read of one row takes less than the hand-off
        to a read thread and back (every WaitForInstance* call reads one)."""
        if (pipeline := self._usable_pipeline()) is None:
            return await super().get_instance(instance_id, include_payloads)
        rows: list[tuple] = []
        try:
            await pipeline.run([pipeline.statement(GET_INSTANCE, (instance_id,), rows.extend)])
        except psycopg.Error as error:
            if pipeline.broken is None:
                raise
            raise _unavailable(error) from None
        return instance_state(rows[0], include_payloads) if rows else None

    # -- work items ---------------------------------------------------------------------------
    async def claim(self, max_orchestrations: int, max_activities: int, filters: WorkFilters,
                    lease_seconds: float) -> ClaimResult:
        return await self._write(self._claim, max_orchestrations, max_activities, filters, lease_seconds,
                                 durable=False)

    def _claim(self, tx: _Tx, max_orchestrations: int, max_activities: int, filters: WorkFilters,
               lease_seconds: float) -> ClaimResult:
        """Three statements whose rows are read with the batch's others (`then`), so that a claim adds
        no round trip of its own; the result is filled in by then."""
        tx.claimed = True
        lease_end = tx.now + lease_seconds
        nonce = secrets.token_hex(8)  # one per claim; the instance or row id keeps every token distinct
        result = ClaimResult([], [], None)
        if max_orchestrations > 0 and filters.orchestrations != ():
            where, params = self._filter_sql(tx, "instances", filters.orchestrations, result) \
                if filters.orchestrations else ("", [])
            if filters.excluded_instances:
                where += " AND instance_id <> ALL(%s)"
                params.append(list(filters.excluded_instances))
            tx.then_rows(lambda rows: result.orchestrations.extend(
                self._orchestration_items(tx, rows, nonce, lease_end)),
                         CLAIM_ORCHESTRATIONS.format(where=where), tx.now, *params, max_orchestrations, tx.now,
                         nonce, lease_end, lease_end, tx.now)
        if max_activities > 0 and filters.activities != ():
            where, params = self._filter_sql(tx, "activities", filters.activities, result) \
                if filters.activities else ("", [])
            # A lease token still set on a claimable item is one that ran out.
            tx.then_rows(lambda rows: result.activities.extend(
                WorkItem(f"a{activity_id}.{nonce}", pb.ActivityRequest.FromString(request), ready_at,
                         old_token is not None) for activity_id, request, ready_at, old_token in rows),
                CLAIM_ACTIVITIES.format(where=where), tx.now, *params, max_activities, nonce, lease_end)

        def note_next_ready(row: tuple) -> None:
            result.next_ready_at = earliest((result.next_ready_at, *row))

        tx.then(note_next_ready, NEXT_READY_AT, tx.now, tx.now)
        return result

    def _filter_sql(self, tx: _Tx | _OptimisticTx, table: str, filters: tuple[NameFilter, ...],
                    result: ClaimResult) -> tuple[str, list]:
        """A WHERE fragment matching any of the name (and version) filters."""
        clauses, params = [], []
        for f in filters:
            if f.versions or f.max_version is not None:
                clauses.append("(name = %s AND version = ANY(%s))")
                params += [f.name, self._accepted_versions(tx, table, f, result)]
            else:
                clauses.append("name = %s")
                params.append(f.name)
        return " AND (" + " OR ".join(clauses) + ")", params

    def _accepted_versions(self, tx: _Tx | _OptimisticTx, table: str, f: NameFilter,
                           result: ClaimResult) -> list[str]:
        """The versions `f` accepts among those it lists and those seen ready (`_ReadyVersions`),
        which the first claim for the name reads. A later claim looks for ready versions not seen yet
        and, should `f` accept one, asks for another claim at once (`next_ready_at`), which lists it."""
        query = f"SELECT DISTINCT version FROM {table} WHERE name = %s AND ready_at <= %s AND version <> ALL(%s)"
        seen = self._ready_versions.seen(table, f.name)
        if seen is None:  # reading makes the transaction careful
            seen = [version for (version,) in tx.run(query, f.name, tx.now, [])]
            self._ready_versions.see(table, f.name, seen)
        else:
            def note_unseen(rows: list[tuple]) -> None:
                unseen = [version for (version,) in rows]
                self._ready_versions.see(table, f.name, unseen)
                if any(_accepts(f, version) for version in unseen):
                    result.next_ready_at = tx.now

            tx.then_rows(note_unseen, query, f.name, tx.now, seen)
        return list(f.versions) + [version for version in seen if _accepts(f, version)]

    def _orchestration_items(self, tx: _Tx | _OptimisticTx, rows: list[tuple], nonce: str,
                             lease_end: float) -> list[WorkItem]:
        """Work items from the rows of CLAIM_ORCHESTRATIONS; what each completion will need is kept."""
        items = []
        for row in rows:
            state = instance_state(row[:15], include_payloads=False)
            parent, ready_at, old_token, inbox, seqs, history = row[15:]
            if inbox is None:  # defensive: a ready_at that outlived its events
                self._refresh_ready(tx, state.instance_id)
                continue
            token = f"o{nonce}.{state.instance_id}"
            delivered = [event(tx.now, orchestratorStarted=pb.OrchestratorStartedEvent()),
                         *(pb.HistoryEvent.FromString(blob) for blob in inbox)]
            request = pb.OrchestratorRequest.FromString(b"".join(history or ()))
            request.instanceId = state.instance_id
            request.executionId.value = state.execution_id
            request.newEvents.extend(delivered)
            items.append(WorkItem(token, request, ready_at, old_token is not None))
            self._leases.keep(token, _LeasedEpisode(state, parent, delivered, seqs, lease_end), tx.now)
        return items

    def complete_orchestration(self, token: str, response: pb.OrchestratorResponse,
                               refill: ClaimRequest | None = None) -> asyncio.Future:
        return self._write(self._complete_and_refill, self._complete_orchestration, token, response, refill,
                           lock_key=instance_of(token))

    def _complete_orchestration(self, tx: _Tx | _OptimisticTx, token: str, response: pb.OrchestratorResponse) -> None:
        leased = self._leases.take(token)
        if leased is not None:  # what the claim read stands, unless the database finds it changed
            episode = self._plan_episode(tx, leased.state, leased.parent, leased.delivered, response)
            if episode.continue_as_new is None:  # the commit checks the lease and takes the events itself
                self._commit_episode(tx, leased.state, leased.parent, episode, claimed=(token, leased.seqs))
                return
            tx.run("SELECT durabletask_take_delivered(%s, %s, %s, %s, %s)", leased.state.instance_id, token,
                   leased.state.execution_id, leased.state.status, leased.seqs)
            self._commit_episode(tx, leased.state, leased.parent, episode)
            return
        # Else the lease check locks the instance, then takes the events the worker was given: one statement
        # that deletes nothing unless the token still holds the lease.
        row = tx.one(f"WITH leased AS (SELECT {INSTANCE_COLUMNS}, parent, claim_seq, claim_time FROM instances "
                     "    WHERE instance_id = %s AND lease_token = %s FOR UPDATE), "
                     "taken AS (DELETE FROM inbox AS i USING leased AS l WHERE i.instance_id = l.instance_id "
                     "    AND i.seq <= l.claim_seq AND i.visible_at <= l.claim_time RETURNING i.visible_at, i.seq, "
                     "    i.event) "
                     "SELECT leased.*, (SELECT array_agg(event ORDER BY visible_at, seq) FROM taken) FROM leased",
                     instance_of(token), token)
        if row is None:
            raise StaleToken(STALE_TOKEN)
        state = instance_state(row[:15], include_payloads=True)
        parent, _, claim_time, taken = row[15:19]
        delivered = [event(claim_time, orchestratorStarted=pb.OrchestratorStartedEvent())]
        # In the order the worker was given them (visible_at, seq).
        delivered += [pb.HistoryEvent.FromString(blob) for blob in taken or ()]
        self._apply_episode(tx, state, parent, delivered, response)

    def _commit_episode(self, tx: _Tx, state: InstanceState, parent: bytes | None,
                        episode: episodes.Episode, claimed: tuple[str, list[int]] | None = None) -> None:
        """`claimed`: the lease token and the seqs of the events delivered, for a commit that checks the
        lease and takes the events itself (see durabletask_commit_claimed_episode)."""
        if episode.continue_as_new is not None:
            return super()._commit_episode(tx, state, parent, episode)
        iid = state.instance_id
        finished = episode.status in TERMINAL_STATUSES
        activities, timers = _work_columns(episode)
        token, seqs = claimed or (None, None)
        # Messages go out before the instance's next ready time is computed, as in the shared step.
        tx.then(lambda row: _note_work_ready(tx, row[0]),
                "SELECT durabletask_commit_claimed_episode(%s, %s, %s, %s::bigint[], %s, %s, %s, %s, %s, %s, %s, "
                "%s::int[], %s::text[], %s::text[], %s::bytea[], %s::float8[], %s::bytea[], %s, %s, %s)",
                iid, token, state.status if claimed else None, seqs,
                state.execution_id, history_bytes(episode.history), episode.status, episode.output,
                episode.failure_details.SerializeToString() if episode.failure_details else None,
                episode.custom_status, finished, *activities, *timers, not episode.messages, tx.now,
                RESULT_BATCH_SECONDS)
        self._recount(tx, iid, (state.name, state.version, state.status), (state.name, state.version, episode.status))
        if finished:
            tx.notice.finished.append((state.name, tx.now - state.created_at))
        tx.notice.work_ready |= bool(episode.activities)
        if episode.messages:
            self._send(tx, episode.messages)
            self._refresh_ready(tx, iid)

    @staticmethod
    def _add_work(tx: _Tx, state: InstanceState, episode: episodes.Episode) -> None:
        activities, timers = _work_columns(episode)
        if episode.activities:
            tx.run("INSERT INTO activities (instance_id, execution_id, task_id, name, version, request, ready_at) "
                   "SELECT %s, %s, task_id, name, version, request, %s "
                   "FROM unnest(%s::int[], %s::text[], %s::text[], %s::bytea[]) AS a(task_id, name, version, request)",
                   state.instance_id, state.execution_id, tx.now, *activities)
            tx.notice.work_ready = True
        if episode.timers:
            tx.run("INSERT INTO inbox (instance_id, execution_id, visible_at, event) "
                   "SELECT %s, %s, visible_at, event FROM unnest(%s::float8[], %s::bytea[]) AS t(visible_at, event)",
                   state.instance_id, state.execution_id, *timers)

    def complete_activity(self, token: str, response: pb.ActivityResponse,
                          refill: ClaimRequest | None = None) -> asyncio.Future:
        return self._write(self._complete_and_refill, self._complete_activity, token, response, refill,
                           lock_key=response.instanceId)

    def _complete_activity(self, tx: _Tx | _OptimisticTx, token: str, response: pb.ActivityResponse,
                           task_id: int | None = None) -> None:
        """One statement: the outcome is built for the task id the worker reports, which the function
        checks against the activity's own (and, should they differ, is built again for that one;
        in an optimistic batch, anything but the plain outcome rolls the batch back)."""
        task_id = response.taskId if task_id is None else task_id
        if response.HasField("failureDetails"):
            outcome = event(tx.now, taskFailed=pb.TaskFailedEvent(
                taskScheduledId=task_id, failureDetails=response.failureDetails))
        else:
            outcome = event(tx.now, taskCompleted=pb.TaskCompletedEvent(
                taskScheduledId=task_id, result=response.result if response.HasField("result") else None))

        complete = "durabletask_complete_activity(%s, %s, %s, %s, %s, %s, %s)"
        args = (activity_row_id(token), token, response.instanceId, task_id, outcome.SerializeToString(), tx.now,
                RESULT_BATCH_SECONDS)
        if tx.optimistic:
            tx.then(lambda row: _note_work_ready(tx, row[1]),
                    "SELECT durabletask_expect(taken_task_id = %s, 'the activity lease has passed, or its task id "
                    "differs'), work_ready FROM " + complete, task_id, *args)
            return

        def on_row(row: tuple) -> None:
            taken_task_id, work_ready = row
            if taken_task_id is None:
                raise StaleToken(STALE_TOKEN)
            if taken_task_id != task_id:
                self._complete_activity(tx, token, response, taken_task_id)
            _note_work_ready(tx, work_ready)

        tx.then(on_row, "SELECT * FROM " + complete, *args)

    def _create_instance(self, tx: _Tx | _OptimisticTx, new: NewInstance, replaceable: tuple[int, ...]) -> str:
        if tx.optimistic and not replaceable:  # an id already taken fails the batch, which then runs carefully
            return self._insert_instance(tx, new)
        return super()._create_instance(tx, new, replaceable)

    async def renew(self, tokens: list[str], lease_seconds: float) -> None:
        return await self._write(self._renew, tokens, lease_seconds, durable=False)

    @staticmethod
    def _renew(tx: _Tx, tokens: list[str], lease_seconds: float) -> None:
        lease_end = tx.now + lease_seconds
        activity_tokens = [t for t in tokens if activity_row_id(t) >= 0]
        instance_tokens = [t for t in tokens if t.startswith("o")]
        if activity_tokens:
            tx.run("UPDATE activities SET ready_at = %s WHERE id = ANY(%s) AND lease_token = ANY(%s)", lease_end,
                   [activity_row_id(t) for t in activity_tokens], activity_tokens)
        if instance_tokens:
            tx.run("UPDATE instances SET ready_at = %s, blocked_until = %s WHERE instance_id = ANY(%s) "
                   "AND lease_token = ANY(%s)", lease_end, lease_end, [instance_of(t) for t in instance_tokens],
                   instance_tokens)


STORE_PARAMETERS = {"synchronous_commit"}  # query parameters the store reads itself, not libpq


def open_postgres(url: str) -> PostgresStore:
    """`postgresql://user[:password]@host[:port]/database[?synchronous_commit=off&<libpq parameters>]`.

    `synchronous_commit=off` is an explicit opt-in to faster commits that a database crash may
    lose (the last few hundred milliseconds; never a half-applied one)."""
    parts = urllib.parse.urlsplit(url)
    params = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    ours = {key: value for key, value in params if key in STORE_PARAMETERS}
    synchronous = ours.get("synchronous_commit", "on")
    if synchronous not in ("on", "off"):
        raise StoreUrlError(f"Invalid PostgreSQL store URL '{safe_url(url)}': synchronous_commit must be on or off.")
    conninfo = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(
        [(key, value) for key, value in params if key not in STORE_PARAMETERS])))
    try:
        psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as error:
        raise StoreUrlError(f"Invalid PostgreSQL store URL '{safe_url(url)}': "
                            f"{str(error).strip().splitlines()[-1].rstrip('.')}.") from None
    try:
        return PostgresStore(conninfo, synchronous_commit=synchronous == "on")
    except psycopg.Error as error:
        raise StoreUrlError(f"Cannot open the PostgreSQL store at '{safe_url(url)}': {_reason(error)}.") from None


def _unavailable(error: Exception) -> StoreUnavailable:
    return StoreUnavailable(f"The PostgreSQL store cannot be reached right now ({str(error).strip().rstrip('.')}); "
                            "try again.")


def _reason(error: psycopg.Error) -> str:
    """The gist of a libpq error: 'Connection refused', 'database "x" does not exist', ..."""
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return first_line.rpartition("failed: ")[2].removeprefix("FATAL:").strip().rstrip(".")
