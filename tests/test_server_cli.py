"""The `durabletask-server` command: flags, default store, clear start-up errors, graceful stop,
and the Prometheus endpoint."""

import re
import signal
import subprocess
import sys
import urllib.request

import grpc

from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as stubs
from tests.support.hub import text
from tests.support.processes import REPO, free_port, wait_for_hub


def server_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "durabletask.server", "--host", "127.0.0.1", "--metrics-port", "0", *args]


def test_a_bad_store_url_is_one_clear_sentence_and_exit_code_2(tmp_path):
    for url in ["mysql://somewhere/hub", "sqlite:///", f"sqlite:///{tmp_path}/missing-folder/hub.db"]:
        done = subprocess.run(server_command("--port", str(free_port()), "--store", url), capture_output=True,
                              text=True, timeout=30, cwd=REPO)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].endswith("."), done.stderr


def test_a_second_server_on_the_same_sqlite_store_is_refused(tmp_path):
    store = f"sqlite:///{tmp_path}/hub.db"
    port = free_port()
    first = subprocess.Popen(server_command("--port", str(port), "--store", store), cwd=REPO)
    try:
        wait_for_hub(f"127.0.0.1:{port}", first)
        second = subprocess.run(server_command("--port", str(free_port()), "--store", store), capture_output=True,
                                text=True, timeout=30, cwd=REPO)
        assert second.returncode == 2, second.stderr
        assert second.stderr.strip() == (f"durabletask-server: Another task hub server is using the SQLite store at "
                                         f"'{tmp_path}/hub.db': stop it first (to run several servers on one task "
                                         "hub, use a PostgreSQL store).")
    finally:
        first.kill()
        first.wait()


def test_without_a_store_it_keeps_state_in_the_working_directory_and_stops_on_sigterm(tmp_path):
    port = free_port()
    process = subprocess.Popen(server_command("--port", str(port)), cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_hub(f"127.0.0.1:{port}", process)
        assert (tmp_path / "durabletask-hub.db").exists()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=15)
    finally:
        process.kill()
    assert process.returncode == 0
    assert str(tmp_path / "durabletask-hub.db") in err


def test_metrics_report_instances_by_name_version_and_status(server_factory):
    metrics_port = free_port()
    server = server_factory("--metrics-port", str(metrics_port))
    with grpc.insecure_channel(server.address) as channel:
        stub = stubs.TaskHubSidecarServiceStub(channel)
        for i in range(3):
            stub.StartInstance(pb.CreateInstanceRequest(instanceId=f"m{i}", name="billing", version=text("1.2")))
        stub.TerminateInstance(pb.TerminateRequest(instanceId="m0"))
    page = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    samples = {tuple(sorted(re.findall(r'(\w+)="([^"]*)"', labels))): float(value) for labels, value in
               re.findall(r'^durabletask_orchestrations\{([^}]*)\} (\S+)$', page, re.MULTILINE)}
    assert samples[(("name", "billing"), ("status", "PENDING"), ("version", "1.2"))] == 2
    assert samples[(("name", "billing"), ("status", "TERMINATED"), ("version", "1.2"))] == 1


def test_a_taken_port_is_a_clear_error(server_factory):
    server = server_factory()
    done = subprocess.run(server_command("--port", str(server.port), "--store", server.store_url + "-second"),
                          capture_output=True, text=True, timeout=30, cwd=REPO)
    assert done.returncode == 1
    assert f"Cannot listen on 127.0.0.1 (gRPC port {server.port}" in done.stderr


def test_the_store_password_never_reaches_the_output(postgres_cluster):
    password = "s3cret-Passw0rd"
    working_url = postgres_cluster.new_database().replace("postgres@", f"postgres:{password}@")  # trust auth
    for url in [f"mysql://hub:{password}@somewhere/hub", f"postgresql://hub:{password}@127.0.0.1:1/hub"]:
        done = subprocess.run(server_command("--port", str(free_port()), "--store", url), capture_output=True,
                              text=True, timeout=30, cwd=REPO)
        assert done.returncode == 2 and ":***@" in done.stderr, done.stderr
        assert password not in done.stdout + done.stderr
    port = free_port()
    process = subprocess.Popen(server_command("--port", str(port), "--store", working_url), cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_hub(f"127.0.0.1:{port}", process)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
    finally:
        process.kill()
    assert "state in postgresql://postgres:***@" in output, output
    assert password not in output
