"""The `durabletask-worker` runner: configuration, probes, metrics and drain, as real subprocesses
against a real task hub server (apps: examples/orders and tests/support/napping_app.py)."""

import os
import signal
import subprocess
import time

import pytest

from durabletask import client
from durabletask.worker import VersionFailureStrategy, VersionMatchStrategy
from durabletask_worker.config import parse_config
from tests.support.processes import REPO, RUNNER, RunnerProcess, ServerProcess
from tests.support.sdk import new_id

NAPPING = "tests.support.napping_app"


@pytest.fixture
def runners():
    """Start runners with `runners(*args, env=...)`; all are stopped at the end of the test."""
    started = []

    def start(*args, env=None) -> RunnerProcess:
        runner = RunnerProcess(*args, env=env).start()
        started.append(runner)
        return runner

    yield start
    for runner in started:
        runner.stop()


# ---- configuration --------------------------------------------------------------------------

def test_environment_variables_configure_the_runner_and_flags_win():
    env = {"DURABLETASK_ADDRESS": "hub:5000", "DURABLETASK_APP": "orders.workflows", "DURABLETASK_VERSION": "1.0",
           "DURABLETASK_MATCH_STRATEGY": "CURRENT_OR_OLDER", "DURABLETASK_FAILURE_STRATEGY": "fail",
           "DURABLETASK_CONCURRENCY": "4", "DURABLETASK_HTTP_PORT": "0", "DURABLETASK_DRAIN_SECONDS": "2.5",
           "DURABLETASK_LOG_LEVEL": "debug"}
    from_env = parse_config([], env)
    assert (from_env.address, from_env.app, from_env.version, from_env.default_version) == \
           ("hub:5000", "orders.workflows", "1.0", "1.0")
    assert (from_env.match_strategy, from_env.failure_strategy) == \
           (VersionMatchStrategy.CURRENT_OR_OLDER, VersionFailureStrategy.FAIL)
    assert (from_env.concurrency, from_env.http_port, from_env.drain_seconds, from_env.log_level) == \
           (4, 0, 2.5, "DEBUG")

    flagged = parse_config(["--version", "2.0", "--default-version", "1.5", "--match-strategy", "Strict",
                            "--address", "grpc://other:6000"], env)
    assert (flagged.version, flagged.default_version, flagged.match_strategy, flagged.address) == \
           ("2.0", "1.5", VersionMatchStrategy.STRICT, "grpc://other:6000")
    assert flagged.app == "orders.workflows"


def test_defaults():
    config = parse_config(["--app", "orders"], {})
    assert (config.address, config.version, config.match_strategy, config.failure_strategy) == \
           ("localhost:4001", None, VersionMatchStrategy.NONE, VersionFailureStrategy.REJECT)
    assert (config.http_port, config.drain_seconds, config.log_level) == (8080, 30.0, "INFO")


@pytest.mark.parametrize("args, env, message", [
    (["--app", NAPPING, "--match-strategy", "Sometimes"], {},
     "--match-strategy 'Sometimes' is not one of None, Strict or CurrentOrOlder."),
    (["--app", NAPPING], {"DURABLETASK_FAILURE_STRATEGY": "retry"},
     "DURABLETASK_FAILURE_STRATEGY 'retry' is not one of Reject or Fail."),
    (["--app", "tests.support.no_such_app"], {},
     "The app module 'tests.support.no_such_app' (--app, DURABLETASK_APP) could not be imported "
     "(No module named 'tests.support.no_such_app')."),
    (["--app", "tests.support"], {},
     "The app module 'tests.support' (--app, DURABLETASK_APP) lists no orchestrators: define a module-level "
     "list `orchestrators = [...]` of orchestrator functions."),
    (["--app", NAPPING, "--address", "hub:port"], {},
     "--address 'hub:port' is not a task hub address of the form host:port, e.g. localhost:4001."),
    (["--app", NAPPING], {"DURABLETASK_HTTP_PORT": "eighty"},
     "DURABLETASK_HTTP_PORT 'eighty' is not a port number from 0 (off) to 65535."),
    (["--app", NAPPING, "--tls-ca", "/no/such/ca.crt"], {},
     "--tls-ca '/no/such/ca.crt' cannot be read (No such file or directory)."),
    (["--app", NAPPING], {"DURABLETASK_TLS_CERT": "/etc/hostname"},
     "A client certificate needs its key: set both --tls-cert and --tls-key (DURABLETASK_TLS_CERT and "
     "DURABLETASK_TLS_KEY), or neither."),
    (["--app", NAPPING, "--token-file", "/dev/null"], {},
     "--token-file '/dev/null' holds no token (the token goes on the first line)."),
    (["--app", NAPPING, "--address", "http://hub:4001", "--tls-ca", "/etc/hostname"], {},
     "The address 'http://hub:4001' asks for plain text, but TLS files are set: use grpcs:// or no scheme."),
    ([], {}, "No app module given: set --app or DURABLETASK_APP to the module that lists your orchestrators, "
             "e.g. --app orders.workflows."),
    (["--app", NAPPING, "--match-strategy", "strict"], {},
     "The match strategy Strict compares versions, so the worker needs one: set --version or DURABLETASK_VERSION."),
])
def test_bad_configuration_exits_at_once_with_one_sentence(args, env, message):
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLETASK_")}
    result = subprocess.run([str(RUNNER), *args], env={**clean_env, **env}, cwd=REPO,
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 2
    assert result.stderr == f"durabletask-worker: {message}\n"


def test_an_environment_configured_runner_runs_only_its_own_version(shared_server, runners):
    runner = runners(env={"DURABLETASK_ADDRESS": shared_server.address, "DURABLETASK_APP": NAPPING,
                          "DURABLETASK_VERSION": "2.0", "DURABLETASK_MATCH_STRATEGY": "STRICT"})
    runner.wait_until("/readyz", 200)
    with client.TaskHubGrpcClient(host_address=shared_server.address) as hub:
        other = hub.schedule_new_orchestration("napping", input=0, instance_id=new_id("v1"), version="1.0")
        ours = hub.schedule_new_orchestration("napping", input=0, instance_id=new_id("v2"), version="2.0")
        assert hub.wait_for_orchestration_completion(ours, timeout=10).get_output() == runner.process.pid
        assert hub.get_orchestration_state(other).runtime_status == client.OrchestrationStatus.PENDING
        hub.terminate_orchestration(other)


# ---- probes and metrics ---------------------------------------------------------------------

def test_ready_only_once_the_stream_to_the_hub_is_open(tmp_path, runners):
    server = ServerProcess(f"sqlite:///{tmp_path}/hub.db")
    runner = runners("--app", NAPPING, "--address", server.address)
    try:
        runner.wait_until("/healthz", 200)
        assert runner.get("/readyz") == (503, "not ready: no open work item stream to the task hub\n")
        server.start()
        runner.wait_until("/readyz", 200)
        assert runner.terminate() == 0
    finally:
        server.stop()


def metric(text: str, sample_name: str, /, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 if absent)."""
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample.split("{")[0] == sample_name and all(f'{k}="{v}"' in sample for k, v in labels.items()):
            return float(value)
    return 0.0


def test_metrics_count_work_items_by_kind_name_version_and_outcome(shared_server, runners):
    runner = runners("--app", "examples.orders", "--address", shared_server.address, "--version", "2.0")
    runner.wait_until("/readyz", 200)
    order = {"id": "o-1", "items": 1, "amount": 5.0}
    with client.TaskHubGrpcClient(host_address=shared_server.address, default_version="2.0") as hub:
        instance_id = hub.schedule_new_orchestration("process_order", input=order, instance_id=new_id("order"))
        hub.raise_orchestration_event(instance_id, "shipped", data="T-1")
        assert hub.wait_for_orchestration_completion(instance_id, timeout=10).get_output()["status"] == "shipped"
    # The hub reports completion as soon as it has applied the last episode; the worker counts that
    # episode a moment later, once its CompleteOrchestratorTask call has returned.
    deadline = time.monotonic() + 5
    while metric(text := runner.get("/metrics")[1], "durabletask_worker_work_items_in_flight",
                 kind="orchestration") > 0:
        assert time.monotonic() < deadline, "the last orchestration episode never finished on the worker"
        time.sleep(0.05)
    for activity in ("reserve_stock", "check_fraud", "charge_card"):
        assert metric(text, "durabletask_worker_work_items_total", kind="activity", name=activity,
                      version="2.0", outcome="completed") == 1
        assert metric(text, "durabletask_worker_activity_duration_seconds_count", name=activity) == 1
    episodes = metric(text, "durabletask_worker_work_items_total", kind="orchestration", name="process_order",
                      version="2.0", outcome="completed")
    assert episodes >= 4  # started, after each of three activities, after the event (some may be batched)
    assert metric(text, "durabletask_worker_work_items_in_flight", kind="activity") == 0
    assert metric(text, "durabletask_worker_connected") == 1
    assert runner.get("/nowhere")[0] == 404


# ---- drain on SIGTERM -----------------------------------------------------------------------

def wait_for_activity_in_flight(runner: RunnerProcess, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while metric(runner.get("/metrics")[1], "durabletask_worker_work_items_in_flight", kind="activity") < 1:
        assert time.monotonic() < deadline, "the activity never started"
        time.sleep(0.05)


@pytest.mark.parametrize("nap, drain, finishes_on", [(1.0, 10, "first"), (3.0, 0.5, "second")])
def test_sigterm_mid_activity_loses_nothing(shared_server, runners, nap, drain, finishes_on):
    first = runners("--app", NAPPING, "--address", shared_server.address, "--drain-seconds", str(drain))
    first.wait_until("/readyz", 200)
    with client.TaskHubGrpcClient(host_address=shared_server.address) as hub:
        instance_id = hub.schedule_new_orchestration("napping", input=nap, instance_id=new_id("drain"))
        wait_for_activity_in_flight(first)
        second = runners("--app", NAPPING, "--address", shared_server.address)
        second.wait_until("/readyz", 200)
        began = time.monotonic()
        first.process.send_signal(signal.SIGTERM)
        assert first.wait_until("/readyz", 503).startswith("not ready"), "a draining runner takes no new work"
        assert first.wait_until("/healthz", 200) == "alive\n", "a draining runner is still alive"
        assert first.process.wait(30) == 0
        # Within the grace period the activity finished on the first runner; past it, the item was
        # handed back and the first runner exited without waiting for its activity to end.
        assert time.monotonic() - began < min(nap, drain) + 2
        state = hub.wait_for_orchestration_completion(instance_id, timeout=20)
    assert state.runtime_status == client.OrchestrationStatus.COMPLETED
    runner = first if finishes_on == "first" else second
    assert state.get_output() == runner.process.pid
