"""Compare throughput: Microsoft's SDK on its in-memory backend vs our SDK on our server (SQLite).

Every run starts a fresh hub (Microsoft's `create_test_backend`, or our server on a new SQLite
file) and one `bench/workloads.py` process under the matching interpreter; the sides alternate
run by run so that drift in the machine's load hits both alike. The table shows median rates.

    .venv/bin/python bench/run.py                       # all workloads, both sides, 3 runs each
    .venv/bin/python bench/run.py --quick               # smaller sizes, one run: a smoke test
    .venv/bin/python bench/run.py --sides theirs        # Microsoft's side alone
    .venv/bin/python bench/run.py --ours-against-theirs # also our SDK on Microsoft's backend
    .venv/bin/python bench/run.py --sides theirs,ours,ours-postgres  # also our server on PostgreSQL

Exits 1 with one sentence on stderr when a side fails; its logs are then kept and named.
"""

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.postgres import PostgresCluster  # noqa: E402
from tests.support.processes import MS_VENV, MsBackendProcess, ServerProcess, ms_python  # noqa: E402

WORKLOADS_SCRIPT = REPO / "bench" / "workloads.py"
SIZES = {"hello-cities": 200, "fan-out-fan-in": 1000, "chain": 200}
QUICK_SIZES = {"hello-cities": 50, "fan-out-fan-in": 200, "chain": 50}


class BenchFailed(Exception):
    pass


@dataclass(frozen=True)
class Side:
    title: str
    python: Callable[[], Path]          # interpreter whose `durabletask` is measured
    sdk_home: Path                      # where that `durabletask` must be imported from
    hub: Callable[[Path], object]       # temp dir -> hub process (has start/stop/address)


# "Ours" is the SDK and server in this checkout (the workload gets PYTHONPATH=REPO, the server runs
# with cwd=REPO), so `python /a/snapshot/bench/run.py` measures that snapshot, not the editable install.
SIDES = {
    "theirs": Side("theirs: MS SDK + MS in-memory", ms_python, MS_VENV, lambda tmp: MsBackendProcess()),
    "ours": Side("ours: our SDK + our server/SQLite", lambda: Path(sys.executable), REPO,
                 lambda tmp: ServerProcess(f"sqlite:///{tmp / 'hub.db'}")),
    # One throwaway PostgreSQL cluster (started on first use, with fsync on) serves every run, each on
    # a fresh database.
    "ours-postgres": Side("ours: our SDK + our server/PostgreSQL", lambda: Path(sys.executable), REPO,
                          lambda tmp: ServerProcess(postgres_cluster().new_database() + POSTGRES_PARAMS[0])),
    "ours-on-theirs": Side("diag: our SDK + MS in-memory", lambda: Path(sys.executable), REPO,
                           lambda tmp: MsBackendProcess()),
}


_postgres: list[PostgresCluster] = []
POSTGRES_PARAMS = [""]  # "?synchronous_commit=off" with --postgres-synchronous-commit off


def postgres_cluster() -> PostgresCluster:
    if not _postgres:
        try:
            _postgres.append(PostgresCluster(fsync=True).start())
        except RuntimeError as error:
            raise BenchFailed(f"ours-postgres side: {error}") from None
    return _postgres[0]


@contextlib.contextmanager
def output_to(log: Path):
    """Point this process's stdout/stderr at `log` while hubs are spawned, so they inherit it."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "ab") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def run_once(side_name: str, workload: str, size: int, timeout: float, tmp: Path) -> dict:
    """Start a fresh hub, run one workload process against it, return its JSON result."""
    side = SIDES[side_name]
    hub_log = tmp / "hub.log"
    hub = side.hub(tmp)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if side.sdk_home == REPO:
        env["PYTHONPATH"] = str(REPO)
    try:
        try:
            with output_to(hub_log):
                hub.start()
        except Exception as e:
            raise BenchFailed(f"{side_name} side: the hub did not start ({e}); see {hub_log}") from None
        proc = subprocess.run([str(side.python()), str(WORKLOADS_SCRIPT), "--address", hub.address,
                               "--workload", workload, "--size", str(size), "--timeout", str(timeout)],
                              capture_output=True, text=True, timeout=timeout + 30, env=env, cwd=tmp)
    except subprocess.TimeoutExpired:
        raise BenchFailed(f"{side_name} side: {workload} did not finish within {timeout + 30:.0f}s") from None
    finally:
        hub.stop()  # also on Ctrl-C
    (tmp / "workload.log").write_text(proc.stderr)
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit code {proc.returncode}"
        raise BenchFailed(f"{side_name} side: {last} (logs in {tmp})")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if not Path(result["sdk"]).resolve().is_relative_to(side.sdk_home.resolve()):
        raise BenchFailed(f"{side_name} side imported durabletask from {result['sdk']}, not from {side.sdk_home}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default=",".join(SIZES), help="comma-separated, from: %(default)s")
    parser.add_argument("--sides", default="theirs,ours", help="comma-separated, from: theirs,ours,ours-postgres")
    parser.add_argument("--postgres-synchronous-commit", choices=["on", "off"], default="on",
                        help="the ours-postgres store's synchronous_commit (off: a database crash may lose the "
                             "last moments of commits, as SQLite's synchronous=NORMAL may on power loss)")
    parser.add_argument("--ours-against-theirs", action="store_true",
                        help="also run our SDK against Microsoft's backend (separates SDK from server speed)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per side and workload; the median counts")
    parser.add_argument("--quick", action="store_true", help="smaller sizes and one run, for a smoke test")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per run")
    args = parser.parse_args()

    workloads = args.workloads.split(",")
    if args.postgres_synchronous_commit == "off":
        POSTGRES_PARAMS[0] = "?synchronous_commit=off"
    sides = args.sides.split(",") + (["ours-on-theirs"] if args.ours_against_theirs else [])
    unknown = [w for w in workloads if w not in SIZES] + [s for s in args.sides.split(",") if s not in ("theirs", "ours", "ours-postgres")]
    if unknown:
        parser.error(f"unknown workload or side: {', '.join(unknown)}")
    sizes = QUICK_SIZES if args.quick else SIZES
    repeat = 1 if args.quick else args.repeat

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"{repeat} run(s) per side and workload", flush=True)
    rates: dict[tuple[str, str], list[float]] = {}
    units: dict[str, str] = {}
    try:
        for workload in workloads:
            for run in range(1, repeat + 1):
                for side in sides:
                    tmp = Path(tempfile.mkdtemp(prefix=f"bench-{side}-{workload}-"))
                    keep_logs = False
                    try:
                        result = run_once(side, workload, sizes[workload], args.timeout, tmp)
                    except BenchFailed:
                        keep_logs = True
                        raise
                    finally:
                        if not keep_logs:
                            shutil.rmtree(tmp, ignore_errors=True)
                    rates.setdefault((workload, side), []).append(result["rate"])
                    units[workload] = result["unit"]
                    print(f"  {workload:<15} {side:<15} run {run}/{repeat}: {result['rate']:>9.1f} {result['unit']}"
                          f" ({result['seconds']:.2f}s)", flush=True)
    except BenchFailed as e:
        print(f"bench failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench interrupted; every hub and worker it started has been stopped", file=sys.stderr)
        return 130
    finally:
        for cluster in _postgres:
            cluster.stop()

    print(f"\nmedian rates (load average now {os.getloadavg()[0]:.2f}):")
    for side in sides:
        print(f"  {side:<15} = {SIDES[side].title}")
    compared = [s for s in sides if s != "theirs"] if "theirs" in sides else []
    print(f"{'workload':<15} {'size':>5} {'unit':<17}" + "".join(f"{s:>16}" for s in sides)
          + "".join(f"{s + '/theirs':>22}" for s in compared))
    for workload in workloads:
        median = {side: statistics.median(rates[workload, side]) for side in sides}
        print(f"{workload:<15} {sizes[workload]:>5} {units[workload]:<17}" + "".join(f"{median[s]:>16.1f}" for s in sides)
              + "".join(f"{median[s] / median['theirs']:>22.2f}" for s in compared))
    return 0


if __name__ == "__main__":
    sys.exit(main())
