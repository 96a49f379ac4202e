"""A randomized soak: kill -9 of random server replicas and worker processes, one after another,
while orchestrations run; each killed process comes back after a random pause. The plan (which
process, at which point of the run, down for how long) comes from a seed, so a failing run can be
replayed. The short version runs in CI; `--soak` runs a long one (see tests/faults/README.md)."""

import random
import time
from dataclasses import dataclass

import pytest

REPLICAS = 3
WORKERS = 3
SHORT = (6, 300)  # kills, orchestrations
LONG = (40, 5000)
DEFAULT_SEED = 20261123


@dataclass(frozen=True)
class Kill:
    at_runs: int  # when: after this many activity runs
    target: str  # "server 2", "worker 0", ...
    down_seconds: float


def plan(seed: int, kills: int, orchestrations: int) -> list[Kill]:
    """Kills spread over the first 90% of the run's activities, in order."""
    rng = random.Random(seed)
    runs = 2 * orchestrations
    points = sorted(rng.randrange(runs // 20, runs * 9 // 10) for _ in range(kills))
    targets = [f"server {i}" for i in range(REPLICAS)] + [f"worker {i}" for i in range(WORKERS)]
    return [Kill(at, rng.choice(targets), round(rng.uniform(0.0, 1.0), 2)) for at in points]


@pytest.fixture
def soak(request):
    option = request.config.getoption
    kills, orchestrations = LONG if option("--soak") else SHORT
    return (option("--soak-kills") or kills, option("--soak-orchestrations") or orchestrations,
            option("--soak-seed") or DEFAULT_SEED)


@pytest.fixture
def store_url(postgres_cluster):
    return postgres_cluster.new_database()  # replicas share a database


@pytest.mark.timeout(600)
def test_random_kills_across_replicas_and_workers_lose_nothing(fault_hub, soak):
    kills, orchestrations, seed = soak
    kill_plan = plan(seed, kills, orchestrations)
    print(f"[faults] soak: seed {seed}, {kills} kills during {orchestrations} orchestrations: "
          + ", ".join(f"{k.target} at {k.at_runs} down {k.down_seconds}s" for k in kill_plan))
    hub = fault_hub(replicas=REPLICAS, workers=WORKERS)
    processes = {f"server {i}": server for i, server in enumerate(hub.servers)}
    processes |= {f"worker {i}": worker for i, worker in enumerate(hub.workers)}
    started = time.monotonic()
    scheduling, expected = hub.start_orchestrations_in_background(orchestrations)
    for kill in kill_plan:
        hub.wait_for_activity_runs(kill.at_runs, timeout=120)
        victim = processes[kill.target]
        victim.kill()
        hub.faults += 1
        time.sleep(kill.down_seconds)
        victim.start()
    scheduling.join()

    result = hub.settle(expected, timeout=max(60, orchestrations / 20))
    hub.report(f"soak (seed {seed})", expected, result, started)
    assert not result.problems(orchestrations), f"replay with --soak-seed {seed}"
