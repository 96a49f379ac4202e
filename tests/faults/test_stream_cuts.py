"""The work item stream cut under the workers, by a server restart or by a network reset (a TCP
proxy between workers and server whose connections the test resets): the workers reconnect with
back-off and carry on, none stays dead, and no orchestration is lost. Also: a stream left open but
silent (the proxy drops everything) is given up and replaced; and (with --soak) a worker finds a
hub that was down for long within seconds of its return."""

import time

import pytest

from durabletask import client, worker
from tests.support.processes import ServerProcess
from tests.support.tcp_proxy import TcpProxy

INSTANCES = 400
AFTER_THE_CUTS = 100  # orchestrations started once every worker is back: each worker must run some
LONG_OUTAGE_SECONDS = 90
# A worker reconnects at most 5 s after the hub is back (its own back-off), plus gRPC's reconnect
# back-off, capped at 5 s too (gRPC's default grows to 2 min: ~40 s late after a 90 s outage).
BACK_WITHIN_SECONDS = 15
# When to cut, as fractions of the activity runs.
CUTS = {"server restart": (0.25, 0.5), "network reset": (0.15, 0.3, 0.5)}


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("cut", CUTS)
@pytest.mark.timeout(120)
def test_workers_reconnect_after_their_stream_is_cut(fault_hub, cut):
    hub = fault_hub(through_proxies=cut == "network reset", workers=2, concurrency=10)
    started = time.monotonic()
    scheduling, expected = hub.start_orchestrations_in_background(INSTANCES)
    for fraction in CUTS[cut]:
        hub.wait_for_activity_runs(int(INSTANCES * 2 * fraction))
        if cut == "server restart":
            hub.servers[0].restart()  # SIGTERM, a graceful stop whose end cuts the streams; then a start
            hub.faults += 1
        else:
            hub.faults += hub.proxies[0].reset()  # every connection of every worker
    scheduling.join()
    hub.wait_until_every_worker_connected()
    expected |= hub.start_orchestrations(AFTER_THE_CUTS, prefix="after-the-cuts")

    result = hub.settle(expected, timeout=60)
    hub.report(f"stream cut by {cut}", expected, result, started)
    assert not result.problems(INSTANCES + AFTER_THE_CUTS)
    assert hub.ledger.workers("after-the-cuts") == hub.worker_pids(), "a worker took no work after the cuts"


@pytest.mark.timeout(LONG_OUTAGE_SECONDS + 60)
def test_a_worker_finds_a_hub_that_was_down_for_long_within_seconds(long_run, tmp_path):
    server = ServerProcess(f"sqlite:///{tmp_path}/hub.db")
    w = worker.TaskHubGrpcWorker(host_address=server.address)
    w.start()
    try:
        time.sleep(LONG_OUTAGE_SECONDS)
        server.start()
        back = time.monotonic()
        while not w.is_connected:
            assert time.monotonic() - back < BACK_WITHIN_SECONDS, "the worker did not find the hub again in time"
            time.sleep(0.1)
        print(f"[faults] hub down {LONG_OUTAGE_SECONDS}s: the worker was back {time.monotonic() - back:.1f}s "
              "after the hub")
    finally:
        w.stop()
        server.stop()


def shout(ctx, text: str) -> str:
    return text.upper()


def shouting(ctx, text: str):
    return (yield ctx.call_activity(shout, input=text))


def test_a_worker_gives_up_a_silent_stream_and_reconnects(server_factory, monkeypatch):
    # The hub's node vanishes behind the network: the connection stays open, nothing comes through.
    monkeypatch.setattr(worker, "SILENT_STREAM_SECONDS", 2.0)
    server = server_factory("--lease-seconds", "1")
    proxy = TcpProxy(server.address)
    w = worker.TaskHubGrpcWorker(host_address=proxy.address)
    w.add_orchestrator(shouting)
    w.add_activity(shout)
    w.start()
    try:
        deadline = time.monotonic() + 10
        while not w.is_connected:
            assert time.monotonic() < deadline, "the worker never connected"
            time.sleep(0.05)
        silenced = proxy.silence()
        with client.TaskHubGrpcClient(host_address=server.address) as hub_client:
            instance_id = hub_client.schedule_new_orchestration(shouting, input="still here")
            state = hub_client.wait_for_orchestration_completion(instance_id, timeout=20)
        assert state.serialized_output == '"STILL HERE"'
        print(f"[faults] {silenced} connection(s) silenced: the worker gave them up and carried on")
    finally:
        w.stop()
        proxy.close()
