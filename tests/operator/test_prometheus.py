"""Instance counts through Debian's real Prometheus scraping a real task hub server, and the
operator draining by them. Prometheus starts once per session (its first scrape takes seconds)."""

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
import uuid

import pytest

from durabletask import client
from durabletask_operator.metrics import query_prometheus, scrape_hub
from tests.operator.conftest import Hub, wait_until
from tests.operator.test_drain_e2e import strict, wait_for_release
from tests.operator.test_operator import manifest
from tests.support.processes import ServerProcess, free_port, stop_process
from tests.support.sdk import new_id, running_worker


@pytest.fixture(scope="session")
def scraped_hub(tmp_path_factory):
    """A task hub server and a Prometheus scraping it every second, both for the whole session."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("The prometheus binary is missing: .ci/run must install it (apt-get install -y prometheus).")
    workdir = tmp_path_factory.mktemp("prometheus")
    metrics_port, web_port = free_port(), free_port()
    server = ServerProcess(f"sqlite:///{workdir}/hub.db", extra_args=("--metrics-port", str(metrics_port))).start()
    config = workdir / "prometheus.yml"
    # Two jobs scrape the one server, as Prometheus sees two hub replicas sharing a store: same counts twice.
    config.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n" + "".join(
        f"  - {{job_name: {job}, static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]}}\n"
        for job in ("hub-a", "hub-b")))
    prometheus = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
         f"--web.listen-address=127.0.0.1:{web_port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{web_port}"
    try:
        hub = Hub(server, metrics_port)
        # A first orchestration gives the gauge a series; wait until Prometheus has scraped it.
        warm_up = client.TaskHubGrpcClient(host_address=hub.address)
        warm_up.schedule_new_orchestration("warm_up", instance_id=new_id("warm"))
        wait_until(lambda: _ready(url) and _scraped_jobs(url) == 2 and query_prometheus(url) is not None,
                   timeout=30, what="Prometheus' first scrape of both jobs")
        yield hub, url
    finally:
        stop_process(prometheus)
        server.stop()


def _scraped_jobs(url):
    query = urllib.parse.urlencode({"query": "count(durabletask_orchestrations) by (job)"})
    with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=1) as response:
        return len(json.load(response)["data"]["result"])


def _ready(url):
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def test_prometheus_counts_agree_with_the_server_and_stale_data_is_unknown(scraped_hub):
    # Counted once although two replicas report them.
    hub, prometheus_url = scraped_hub
    wait_until(lambda: query_prometheus(prometheus_url) == scrape_hub(hub.metrics_url), what="Prometheus catching up")
    assert query_prometheus(prometheus_url, max_age=-1) is None  # any sample is older than that


def test_operator_drains_by_prometheus_counts(scraped_hub, cluster, namespace, start_operator):
    hub, prometheus_url = scraped_hub
    start_operator("--prometheus-url", prometheus_url)
    hub_client = client.TaskHubGrpcClient(host_address=hub.address)
    status = lambda name: cluster.pool(namespace, name).get("status", {})  # noqa: E731
    instant = {"scaleDownDelaySeconds": 0, "deleteDelaySeconds": 60}
    # Versions of this test's own, so the session's other instances never count.
    run = uuid.uuid4().int % 10**6
    old, new = f"1.{run}", f"2.{run}"
    with running_worker(hub.address, orchestrators=[wait_for_release], versioning=strict(old)):
        instance = hub_client.schedule_new_orchestration(wait_for_release, instance_id=new_id("p"), version=old)
        hub_client.wait_for_orchestration_start(instance, timeout=10)
        # Prometheus lags the hub by up to a scrape; a pool seen idle before that would drain early.
        wait_until(lambda: (query_prometheus(prometheus_url) or {}).get(old) == 1,
                   what="Prometheus seeing the instance")
        cluster.apply(namespace, manifest("old", old, drain=instant))
        cluster.apply(namespace, manifest("new", new, drain=instant))
        wait_until(lambda: status("old").get("phase") == "Draining" and status("old").get("runningInstances") == 1,
                   timeout=20, what="old pool draining with 1 instance seen through Prometheus")
        assert cluster.deployment(namespace, "old")["spec"]["replicas"] == 2
        hub_client.raise_orchestration_event(instance, "release")
        hub_client.wait_for_orchestration_completion(instance, timeout=10)
        wait_until(lambda: status("old").get("phase") == "ScaledDown", timeout=20, what="old pool scaled down")
        assert cluster.deployment(namespace, "old")["spec"]["replicas"] == 0
