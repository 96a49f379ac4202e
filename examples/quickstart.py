"""Quickstart: a rolling upgrade of a long-running workflow from v1 to v2, with no cluster.

What happens when you run it (`make run`, or `python examples/quickstart.py [--quick]`):
  1. the task hub server starts (state in SQLite in a temporary folder, Prometheus metrics on);
  2. a v1 worker pool starts: two `durabletask-worker` processes running examples.orders as
     version 1.0 with Strict matching, so they take v1 orders only (Reject hands others back);
  3. a batch of v1 orders is placed; each waits for the warehouse's "shipped" event;
  4. a v2 pool starts, and new orders are placed as v2 (the client's default_version);
  5. the per-version counts, read from the server's /metrics, show v1 draining while v2 takes
     the new work; once no v1 order is left, the v1 pool gets SIGTERM, drains and exits;
  6. a summary: orders completed per version, none lost, none failed.
Every process it starts is stopped on the way out, Ctrl-C included.
"""

import argparse
import heapq
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import grpc
from prometheus_client.parser import text_string_to_metric_families

from durabletask import client

REPO = Path(__file__).resolve().parents[1]
WORKER = Path(sys.executable).parent / "durabletask-worker"
ORCHESTRATOR = "process_order"
FINISHED = ("COMPLETED", "FAILED", "TERMINATED")


@dataclass(frozen=True)
class Pace:
    v1_orders: int  # placed at once, before the upgrade
    v2_seconds: float  # how long new (v2) orders keep coming
    v2_every: float  # seconds between new orders
    ship_after: tuple[float, float]  # an order ships this many seconds (uniform) after it is placed


NORMAL = Pace(v1_orders=12, v2_seconds=30, v2_every=1.0, ship_after=(4, 16))
QUICK = Pace(v1_orders=8, v2_seconds=6, v2_every=0.3, ship_after=(1, 4))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Starts subprocesses in their own sessions (so Ctrl-C reaches only us) and stops them all."""

    def __init__(self, folder: str):
        self.folder = folder
        self.running: list[subprocess.Popen] = []

    def start(self, log_name: str, *command: str) -> subprocess.Popen:
        with open(f"{self.folder}/{log_name}.log", "w") as log:
            process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.running.append(process)
        return process

    def stop(self, *processes: subprocess.Popen, timeout: float = 30) -> list[int]:
        """SIGTERM `processes` (all, newest first, if none given) and wait; their exit codes."""
        chosen = list(processes) or self.running[::-1]
        for process in chosen:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = []
        for process in chosen:
            try:
                codes.append(process.wait(timeout))
            except subprocess.TimeoutExpired:
                process.kill()
                codes.append(process.wait())
            self.running.remove(process)
        return codes


def wait_until(what: str, ready, process: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} was not ready within {timeout}s")
        time.sleep(0.1)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start_server(processes: Processes, folder: str) -> tuple[str, str]:
    """Start the task hub server; returns (its gRPC address, its metrics URL)."""
    port, metrics_port = free_port(), free_port()
    server = processes.start("server", sys.executable, "-m", "durabletask.server", "--host", "127.0.0.1",
                             "--port", str(port), "--store", f"sqlite:///{folder}/hub.db",
                             "--metrics-port", str(metrics_port))
    address = f"127.0.0.1:{port}"
    with grpc.insecure_channel(address) as channel:
        ready = grpc.channel_ready_future(channel)
        wait_until("the server", ready.done, server)
    return address, f"http://127.0.0.1:{metrics_port}/metrics"


def start_pool(processes: Processes, address: str, version: str, size: int = 2) -> list[subprocess.Popen]:
    """Start `size` runners of examples.orders at `version` and wait until each is ready."""
    pool = []
    for number in range(1, size + 1):
        http_port = free_port()
        worker = processes.start(f"worker-v{version}-{number}", str(WORKER), "--app", "examples.orders",
                                 "--address", address, "--version", version, "--match-strategy", "Strict",
                                 "--failure-strategy", "Reject", "--http-port", str(http_port),
                                 "--drain-seconds", "10", "--log-level", "WARNING")
        pool.append((worker, f"http://127.0.0.1:{http_port}/readyz"))
    for worker, readyz in pool:
        wait_until(f"a v{version} worker", lambda: http_ok(readyz), worker)
    return [worker for worker, _ in pool]


def orders_by_version(metrics_url: str) -> dict[str, dict[str, int]]:
    """{version: {status: count}} of the orders in the hub, from the server's Prometheus metrics."""
    with urllib.request.urlopen(metrics_url, timeout=2) as response:
        text = response.read().decode()
    counts: dict[str, dict[str, int]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "durabletask_orchestrations" and sample.labels["name"] == ORCHESTRATOR:
                by_status = counts.setdefault(sample.labels["version"], {})
                by_status[sample.labels["status"]] = int(sample.value)
    return counts


class Progress:
    """One line refreshed in place on a terminal; a line every few seconds otherwise."""

    def __init__(self, every: float = 3.0):
        self.tty = sys.stdout.isatty()
        self.every = every
        self.last_print = 0.0

    def show(self, text: str) -> None:
        if self.tty:
            print(f"\r\033[K{text}", end="", flush=True)
        elif time.monotonic() - self.last_print >= self.every:
            print(text, flush=True)
            self.last_print = time.monotonic()

    def note(self, text: str) -> None:
        """A message that stays, above the refreshed line."""
        print(f"\r\033[K{text}" if self.tty else text, flush=True)


def describe(counts: dict[str, dict[str, int]], started: float) -> str:
    parts = []
    for version in ("1.0", "2.0"):
        by_status = counts.get(version, {})
        in_flight = sum(n for status, n in by_status.items() if status not in FINISHED)
        parts.append(f"v{version}: {in_flight:3d} in flight, {by_status.get('COMPLETED', 0):3d} completed")
    return f"[{time.monotonic() - started:5.1f}s] " + "  |  ".join(parts)


def run(pace: Pace, folder: str, processes: Processes) -> int:
    started = time.monotonic()
    address, metrics_url = start_server(processes, folder)
    print(f"Task hub server on {address}, metrics at {metrics_url}, state in {folder}")
    v1_pool = start_pool(processes, address, "1.0")
    print("v1 pool ready: 2 workers, version 1.0, Strict/Reject")

    rng = random.Random(7)
    placed: dict[str, str] = {}  # instance id -> version it was placed as
    shipments: list[tuple[float, str]] = []  # (when, instance id): the warehouse's schedule

    def place(hub: client.TaskHubGrpcClient, version: str) -> None:
        number = len(placed) + 1
        order = {"id": f"order-{number}", "items": rng.randint(1, 5), "amount": rng.uniform(5, 500)}
        instance_id = hub.schedule_new_orchestration(ORCHESTRATOR, input=order, instance_id=order["id"])
        placed[instance_id] = version
        heapq.heappush(shipments, (time.monotonic() + rng.uniform(*pace.ship_after), instance_id))

    def ship_due(hub: client.TaskHubGrpcClient) -> None:
        while shipments and shipments[0][0] <= time.monotonic():
            _, instance_id = heapq.heappop(shipments)
            hub.raise_orchestration_event(instance_id, "shipped", data=f"TRACK-{instance_id}")

    progress = Progress()
    with client.TaskHubGrpcClient(host_address=address, default_version="1.0") as v1_client:
        for _ in range(pace.v1_orders):
            place(v1_client, "1.0")
    progress.note(f"Placed {pace.v1_orders} v1 orders; each waits for its shipment")

    v2_pool = start_pool(processes, address, "2.0")
    progress.note("v2 pool ready: 2 workers, version 2.0; new orders now go to v2")
    v1_exit_codes: list[int] = []
    with client.TaskHubGrpcClient(host_address=address, default_version="2.0") as hub:
        upgrade_ends = time.monotonic() + pace.v2_seconds
        next_order = time.monotonic()
        while True:
            now = time.monotonic()
            if now < upgrade_ends and now >= next_order:
                place(hub, "2.0")
                next_order = now + pace.v2_every
            ship_due(hub)
            counts = orders_by_version(metrics_url)
            progress.show(describe(counts, started))
            v1_left = sum(n for status, n in counts.get("1.0", {}).items() if status not in FINISHED)
            if v1_pool and v1_left == 0:
                v1_exit_codes = processes.stop(*v1_pool)
                v1_pool = []
                progress.note(f"{describe(counts, started)}\nNo v1 order left: stopped the v1 pool "
                              f"(SIGTERM; exit codes {v1_exit_codes})")
            if now >= upgrade_ends and not shipments and not v1_pool and \
                    sum(counts.get(v, {}).get(s, 0) for v in counts for s in FINISHED) >= len(placed):
                break
            time.sleep(0.2)
        states = [hub.get_orchestration_state(instance_id) for instance_id in placed]
    progress.note(describe(counts, started))
    processes.stop(*v2_pool)
    return summarize(placed, states, v1_exit_codes)


def summarize(placed: dict[str, str], states: list, v1_exit_codes: list[int]) -> int:
    completed = {"1.0": 0, "2.0": 0}
    fraud_checked = 0
    failed = lost = 0
    for state in states:
        if state is None:
            lost += 1
        elif state.runtime_status != client.OrchestrationStatus.COMPLETED:
            failed += 1
        else:
            output = state.get_output()
            completed[output["version"]] += 1
            fraud_checked += "fraud check passed" in output["steps"]
    print("\nSummary")
    print(f"  orders placed:    {len(placed)} ({sum(v == '1.0' for v in placed.values())} as v1.0, "
          f"{sum(v == '2.0' for v in placed.values())} as v2.0)")
    print(f"  completed v1.0:   {completed['1.0']}")
    print(f"  completed v2.0:   {completed['2.0']} ({fraud_checked} with the v2 fraud check)")
    print(f"  lost: {lost}, failed: {failed}")
    print(f"  v1 pool exit codes after draining: {v1_exit_codes}")
    ok = lost == failed == 0 and v1_exit_codes == [0, 0] and fraud_checked == completed["2.0"]
    print("Rolling upgrade complete: nothing lost." if ok else "Rolling upgrade FAILED: see above.")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a shorter run (for CI), about 15 seconds")
    pace = QUICK if parser.parse_args().quick else NORMAL
    # Ctrl-C and SIGTERM both end the run through KeyboardInterrupt, so the cleanup below runs.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="durabletask-quickstart-") as folder, ExitStack() as cleanup:
        processes = Processes(folder)
        cleanup.callback(processes.stop)
        try:
            return run(pace, folder, processes)
        except KeyboardInterrupt:
            print("\nInterrupted; stopping the workers and the server.")
            return 130
        except (RuntimeError, TimeoutError, OSError, grpc.RpcError) as error:
            print(f"\nThe quickstart failed: {error}", file=sys.stderr)
            for log in sorted(Path(folder).glob("*.log")):  # the folder goes away with us: show the logs' ends
                print(f"--- {log.name} (last lines)\n" + "\n".join(log.read_text().splitlines()[-10:]), file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
