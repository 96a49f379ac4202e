"""What the PostgreSQL store adds to the conformance suite: several replicas on one database (wake-ups
across replicas, no work item claimed twice, the same counts everywhere), schema migrations, and
its URL. Runs against the session's throwaway cluster."""

import asyncio
import queue
import time

import psycopg
import pytest

from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.server.stores import StoreUrlError, open_store
from durabletask.server.stores.base import ACCEPT_ALL, NameFilter, NewInstance, StaleToken, WorkFilters
from durabletask.server.stores.postgres import DATABASE_NOW, MIGRATIONS, PostgresStore, _DatabaseClock
from durabletask.server.stores.sql import TERMINAL, UNCLAIMABLE
from tests.support.hub import complete, episode, run_async, schedule


@pytest.fixture
def database(postgres_cluster):
    return postgres_cluster.new_database()


@pytest.fixture
def replicas(database):
    """Two stores on one database, as two server replicas would have."""
    stores = [PostgresStore(database), PostgresStore(database)]
    yield stores
    for store in stores:
        store.close()


@run_async
async def test_a_commit_on_one_replica_wakes_the_other_at_once(replicas):
    a, b = replicas
    heard: queue.Queue = queue.Queue()
    b.add_commit_listener(heard.put)
    await asyncio.sleep(0.3)  # b's LISTEN is up (it announces itself with a first notice)
    while not heard.empty():
        heard.get()
    committed = time.monotonic()
    await a.create_instance(NewInstance("wake", "workflow"))
    notice = await asyncio.to_thread(heard.get, timeout=2)
    latency = time.monotonic() - committed
    assert notice.work_ready and notice.status_changed == {"wake"}
    assert latency < 0.5, f"replica b heard of the commit after {latency:.2f}s: a poll, not a notification"


@run_async
async def test_replicas_never_claim_the_same_work_item_and_report_the_same_counts(replicas):
    a, b = replicas
    await asyncio.gather(*(a.create_instance(NewInstance(f"i{n:03d}", "workflow")) for n in range(200)))

    async def drain(store):
        mine = []
        while claimed := (await store.claim(7, 0, ACCEPT_ALL, 30)).orchestrations:
            mine += claimed
            for item in claimed:
                await store.complete_orchestration(item.token, episode(item.request.instanceId, item.token,
                                                                       complete('"ok"')))
        return [item.request.instanceId for item in mine]

    by_a, by_b = await asyncio.gather(drain(a), drain(b))
    assert sorted(by_a + by_b) == [f"i{n:03d}" for n in range(200)]  # each exactly once
    assert by_a and by_b  # both took part
    completed = [("workflow", "", pb.ORCHESTRATION_STATUS_COMPLETED, 200)]
    assert [c for c in a.instance_counts() if c[3]] == [c for c in b.instance_counts() if c[3]] == completed


@run_async
async def test_a_refused_completion_does_not_undo_those_committed_with_it(database):
    store = PostgresStore(database)
    try:
        await asyncio.gather(*(store.create_instance(NewInstance(f"i{n}", "workflow")) for n in range(6)))
        items = (await store.claim(10, 0, ACCEPT_ALL, 30)).orchestrations
        tokens = {item.request.instanceId: item.token for item in items}
        tokens["i3"] = "o0000000000000000.i3"  # not the lease i3's worker holds
        outcomes = await asyncio.gather(*(store.complete_orchestration(token, episode(iid, token, complete('"ok"')))
                                          for iid, token in tokens.items()), return_exceptions=True)
        refused = {iid for iid, outcome in zip(tokens, outcomes) if isinstance(outcome, StaleToken)}
        assert refused == {"i3"} and all(outcome is None for outcome in outcomes if not isinstance(outcome, StaleToken))
        statuses = {iid: (await store.get_instance(iid)).status for iid in tokens}
        assert statuses == {**{f"i{n}": pb.ORCHESTRATION_STATUS_COMPLETED for n in range(6)},
                            "i3": pb.ORCHESTRATION_STATUS_PENDING}
    finally:
        store.close()


@run_async
async def test_a_completion_planned_from_its_claim_is_checked_against_the_instance(database):
    """A completion trusts what its claim read of the instance, and the database checks that this still
    holds. Here one instance is suspended while its episode runs: its completion, in one batch with
    another's, must see that (as a fresh read would), and the other must not suffer for it."""
    store = PostgresStore(database)
    try:
        await asyncio.gather(*(store.create_instance(NewInstance(iid, "workflow")) for iid in ("kept", "paused")))
        items = (await store.claim(10, 0, ACCEPT_ALL, 30)).orchestrations
        await store.suspend("paused", "maintenance")
        await asyncio.gather(*(store.complete_orchestration(item.token, episode(
            item.request.instanceId, item.token, schedule(1, "step"))) for item in items))
        statuses = {iid: (await store.get_instance(iid)).status for iid in ("kept", "paused")}
        assert statuses == {"kept": pb.ORCHESTRATION_STATUS_RUNNING, "paused": pb.ORCHESTRATION_STATUS_SUSPENDED}
        activities = (await store.claim(0, 10, ACCEPT_ALL, 30)).activities
        assert sorted(item.request.orchestrationInstance.instanceId for item in activities) == ["kept", "paused"]
    finally:
        store.close()


@run_async
async def test_a_version_that_appears_after_the_first_claim_is_claimed_by_the_next_claim_at_once(database):
    """A versioned claim lists the ready versions this replica has seen, reading them only for the
    first claim of a name (a claim that reads cannot be optimistic). A version that appears later
    is missed once, by a claim that finds it and asks for another claim now."""
    store = PostgresStore(database)
    up_to_2 = WorkFilters(orchestrations=(NameFilter("order", max_version="2.0"),), activities=())
    try:
        await store.create_instance(NewInstance("v1", "order", version="1.0"))
        assert [item.request.instanceId for item in (await store.claim(10, 0, up_to_2, 30)).orchestrations] == ["v1"]
        await store.create_instance(NewInstance("v3", "order", version="3.0"))  # not accepted: no hurry
        assert (await store.claim(10, 0, up_to_2, 30)).next_ready_at > time.time() + 10  # v1's lease end
        await store.create_instance(NewInstance("v2", "order", version="2.0"))
        missed = await store.claim(10, 0, up_to_2, 30)
        assert not missed.orchestrations and missed.next_ready_at <= time.time() + 0.1
        assert [item.request.instanceId for item in (await store.claim(10, 0, up_to_2, 30)).orchestrations] == ["v2"]
    finally:
        store.close()


@run_async
async def test_a_newer_server_upgrades_the_schema_and_an_older_one_refuses_it(database):
    store = PostgresStore(database)
    await store.create_instance(NewInstance("kept", "workflow"))
    store.close()

    newer = MIGRATIONS + ("CREATE TABLE future_feature (id INTEGER)",)
    store = PostgresStore(database, migrations=newer)
    assert (await store.get_instance("kept")) is not None
    with store._pool.connection() as conn:
        assert conn.execute("SELECT version FROM durabletask_schema").fetchone() == (len(newer),)
        conn.execute("SELECT * FROM future_feature")
    store.close()

    with pytest.raises(StoreUrlError, match=f"schema version {len(newer)}, newer than this server knows"):
        PostgresStore(database)


@run_async
async def test_a_server_of_the_schema_before_still_commits_episodes_during_a_rolling_upgrade(database):
    """Migration 4 changed how an episode is committed; a replica still running the code of schema 3
    calls migration 2's function, which must go on doing what it did."""
    store = PostgresStore(database)
    try:
        await store.create_instance(NewInstance("old", "workflow"))
        assert (await store.claim(1, 0, ACCEPT_ALL, 30.0)).orchestrations
        execution_id = (await store.get_instance("old")).execution_id
        with psycopg.connect(database, autocommit=True) as conn, conn.transaction():
            conn.execute("SELECT 1 FROM instances WHERE instance_id = 'old' FOR UPDATE")
            conn.execute("DELETE FROM inbox WHERE instance_id = 'old'")
            conn.execute("SELECT durabletask_commit_episode('old', %s, ''::bytea, %s, '\"done\"', NULL, NULL, TRUE, "
                         "'{}', '{}', '{}', '{}', '{}', '{}', TRUE, %s, 0.1)",
                         (execution_id, pb.ORCHESTRATION_STATUS_COMPLETED, time.time()))
        state = await store.get_instance("old")
        assert (state.status, state.output) == (pb.ORCHESTRATION_STATUS_COMPLETED, '"done"')
        with store._pool.connection() as conn:
            assert conn.execute("SELECT lease_token, ready_at, episodes FROM instances").fetchall() == [(None, None, 1)]
    finally:
        store.close()


def test_store_urls_name_their_problem_in_one_sentence(database):
    with pytest.raises(StoreUrlError, match=r"^Cannot open the PostgreSQL store at 'postgresql://me:\*\*\*@127.0.0.1:1/"
                                            r"hub': Connection refused\.$"):
        open_store("postgresql://me:secret@127.0.0.1:1/hub")
    with pytest.raises(StoreUrlError, match=r"^Invalid PostgreSQL store URL .*: synchronous_commit must be on or off\.$"):
        open_store(database + "?synchronous_commit=later")
    with pytest.raises(StoreUrlError, match='does not exist'):
        open_store(database + "_missing")


def test_synchronous_commit_off_is_an_explicit_opt_in(database):
    async def on_the_pipeline(store, instance_id: str) -> list[tuple]:
        await store.create_instance(NewInstance(instance_id, "workflow"))  # opens the pipeline
        rows: list[tuple] = []
        await store._pipeline.run([store._pipeline.statement("SHOW synchronous_commit", (), rows.extend)])
        return rows

    for url, expected in ((database, "on"), (database + "?synchronous_commit=off", "off")):
        store = open_store(url)
        try:
            with store._pool.connection() as conn:
                assert conn.execute("SHOW synchronous_commit").fetchone() == (expected,)
            assert asyncio.run(on_the_pipeline(store, f"synchronous-{expected}")) == [(expected,)]
        finally:
            store.close()


def test_the_functions_of_migrations_2_and_4_know_the_statuses_as_the_server_does():
    # Released migrations are never edited, so their SQL spells statuses as numbers: should the
    # protocol's numbering or the server's idea of finished/unclaimable change, a new migration is due.
    assert TERMINAL == (pb.ORCHESTRATION_STATUS_COMPLETED, pb.ORCHESTRATION_STATUS_FAILED,
                        pb.ORCHESTRATION_STATUS_TERMINATED) == (1, 3, 5)
    assert UNCLAIMABLE == (1, 3, 5, pb.ORCHESTRATION_STATUS_SUSPENDED) == (1, 3, 5, 7)
    assert pb.ORCHESTRATION_STATUS_PENDING == 6
    functions = MIGRATIONS[1]
    assert functions.count("(1, 3, 5, 7)") == 3 and "NOT IN (1, 3, 5)" in functions and "v_status = 6" in functions
    replaced = MIGRATIONS[3]
    assert replaced.count("(1, 3, 5, 7)") == 2 and "status IN (1, 3, 5)" in replaced and "status = 6" in replaced \
        and "status <> 7" in replaced


def test_the_batch_clock_follows_the_database_clock_and_never_goes_back(database):
    """Lease ends and timers are written in the database's time (replicas on other machines agree),
    read off the local clock with a measured offset rather than asked for in every batch."""
    clock = _DatabaseClock()
    readings = []
    with psycopg.connect(database, autocommit=True) as conn:
        for n in range(200):
            if n % 20 == 0:  # each measure of the offset differs a little
                clock.sync(conn)
            readings.append(clock.now())
        (database_now,) = conn.execute(DATABASE_NOW).fetchone()
        after = clock.now()
    assert readings == sorted(readings)
    assert abs(after - database_now) < 0.25
