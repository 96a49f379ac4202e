"""Instance counts from a real task hub server's /metrics, and what counts as unknown."""

from durabletask import client, task
from durabletask_operator.metrics import SharedCounts, counts_from_exposition, query_prometheus, scrape_hub
from tests.support.processes import free_port
from tests.support.sdk import new_id, running_worker

EXPOSITION = """\
# HELP durabletask_orchestrations Orchestration instances in the task hub, by name, version and status.
# TYPE durabletask_orchestrations gauge
durabletask_orchestrations{name="a",status="RUNNING",version="1.0"} 2.0
durabletask_orchestrations{name="b",status="PENDING",version="1.0"} 1.0
durabletask_orchestrations{name="a",status="SUSPENDED",version="2.0"} 4.0
durabletask_orchestrations{name="a",status="COMPLETED",version="2.0"} 7.0
durabletask_orchestrations{name="a",status="FAILED",version="3.0"} 1.0
durabletask_orchestrations{name="a",status="RUNNING",version=""} 1.0
"""


def test_live_statuses_are_summed_by_version_and_terminal_ones_ignored():
    assert counts_from_exposition(EXPOSITION) == {"1.0": 3, "2.0": 4, "": 1}


def test_a_page_without_the_metric_is_unknown_but_an_empty_gauge_is_zero():
    assert counts_from_exposition("# TYPE other_metric gauge\nother_metric 1.0\n") is None
    empty_gauge = "# HELP durabletask_orchestrations x\n# TYPE durabletask_orchestrations gauge\n"
    assert counts_from_exposition(empty_gauge) == {}


def test_unreachable_sources_are_unknown():
    dead = f"http://127.0.0.1:{free_port()}"
    assert scrape_hub(f"{dead}/metrics", timeout=1) is None
    assert query_prometheus(dead, timeout=1) is None


def test_shared_counts_read_once_per_ttl():
    reads, now = [], [0.0]
    shared = SharedCounts(lambda: reads.append(1) or {"1.0": len(reads)}, ttl=5, clock=lambda: now[0])
    assert shared.get() == shared.get() == {"1.0": 1}
    now[0] = 5.0
    assert shared.get() == {"1.0": 2}


def test_counts_from_a_real_server_follow_instances_of_each_version(hub):

    def wait_for_release(ctx: task.OrchestrationContext, _):
        yield ctx.wait_for_external_event("release")
        return ctx.version

    tag = new_id("metrics")
    hub_client = client.TaskHubGrpcClient(host_address=hub.address)
    ids = [hub_client.schedule_new_orchestration(wait_for_release, instance_id=f"{tag}-{v}-{i}", version=v)
           for v, n in (("1.0", 2), ("2.0", 1)) for i in range(n)]
    assert scrape_hub(hub.metrics_url) == {"1.0": 2, "2.0": 1}  # pending: no worker yet

    with running_worker(hub.address, orchestrators=[wait_for_release]):
        for instance_id in ids:
            hub_client.wait_for_orchestration_start(instance_id, timeout=10)
        assert scrape_hub(hub.metrics_url) == {"1.0": 2, "2.0": 1}  # running
        hub_client.raise_orchestration_event(ids[0], "release")
        hub_client.wait_for_orchestration_completion(ids[0], timeout=10)
        assert scrape_hub(hub.metrics_url) == {"1.0": 1, "2.0": 1}
