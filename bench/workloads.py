"""One benchmark workload, written once against the public `durabletask` API.

The same file runs under Microsoft's SDK (`.venv-ms/bin/python`) and under ours (`.venv/bin/python`):
whichever `durabletask` the interpreter imports is the one measured. It starts a worker, runs one
warm-up instance, then times the workload, checks that every instance COMPLETED with the expected
output, and prints one JSON line:

    {"workload": ..., "size": ..., "seconds": ..., "rate": ..., "unit": ..., "sdk": ...}

Usage: PYTHON bench/workloads.py --address 127.0.0.1:4001 --workload hello-cities --size 200

Exit code 0 on success; 1 with a one-sentence reason on stderr otherwise.
"""

import argparse
import json
import logging
import os
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import grpc

from durabletask import client, task, worker

# Worker concurrency, identical on both sides (Microsoft's defaults depend on the CPU count).
CONCURRENCY = dict(
    maximum_concurrent_activity_work_items=100,
    maximum_concurrent_orchestration_work_items=100,
    maximum_thread_pool_workers=8,
)

CITIES = ("Tokyo", "Seattle", "London")


# --- activities and orchestrators -----------------------------------------------------------

def hello(ctx: task.ActivityContext, name: str) -> str:
    return f"Hello {name}!"


def square(ctx: task.ActivityContext, n: int) -> int:
    return n * n


def increment(ctx: task.ActivityContext, n: int) -> int:
    return n + 1


def hello_cities(ctx: task.OrchestrationContext, _):
    """Three activities in sequence."""
    results = []
    for city in CITIES:
        results.append((yield ctx.call_activity(hello, input=city)))
    return results


def fan_out_fan_in(ctx: task.OrchestrationContext, n: int):
    """n activities scheduled at once, joined with when_all."""
    squares = yield task.when_all([ctx.call_activity(square, input=i) for i in range(n)])
    return sum(squares)


def chain(ctx: task.OrchestrationContext, n: int):
    """n activities in sequence, each feeding the next."""
    value = 0
    for _ in range(n):
        value = yield ctx.call_activity(increment, input=value)
    return value


# --- workloads --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Workload:
    orchestrator: Callable
    unit: str                             # what `size` counts, and so `rate` per second
    instances: Callable[[int], int]       # size -> number of instances started at once
    input: Callable[[int], Any]           # size -> input of each instance
    expected: Callable[[int], Any]        # size -> expected output of each instance
    warm_up_size: int                     # size of the single untimed warm-up instance


WORKLOADS = {
    "hello-cities": Workload(hello_cities, "orchestrations", instances=lambda n: n, input=lambda n: None,
                             expected=lambda n: [f"Hello {c}!" for c in CITIES], warm_up_size=1),
    "fan-out-fan-in": Workload(fan_out_fan_in, "activities", instances=lambda n: 1, input=lambda n: n,
                               expected=lambda n: sum(i * i for i in range(n)), warm_up_size=10),
    "chain": Workload(chain, "steps", instances=lambda n: 1, input=lambda n: n,
                      expected=lambda n: n, warm_up_size=5),
}


class WorkloadFailed(Exception):
    pass


def run_instances(c: client.TaskHubGrpcClient, workload: Workload, size: int, count: int, deadline: float) -> None:
    """Start `count` instances at once, then wait for each and check its result."""
    ids = [c.schedule_new_orchestration(workload.orchestrator, input=workload.input(size)) for _ in range(count)]
    expected = workload.expected(size)
    for instance_id in ids:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WorkloadFailed(f"time ran out before instance {instance_id} completed")
        try:
            state = c.wait_for_orchestration_completion(instance_id, timeout=remaining)
        except TimeoutError:
            raise WorkloadFailed(f"instance {instance_id} did not complete within the time limit") from None
        if state is None:
            raise WorkloadFailed(f"instance {instance_id} vanished")
        if state.runtime_status != client.OrchestrationStatus.COMPLETED:
            details = state.failure_details.message if state.failure_details else "no failure details"
            raise WorkloadFailed(f"instance {instance_id} ended {state.runtime_status.name}: {details}")
        output = json.loads(state.serialized_output) if state.serialized_output else None
        if output != expected:
            raise WorkloadFailed(f"instance {instance_id} returned {str(output)[:200]}, expected {str(expected)[:200]}")


def measure(address: str, name: str, size: int, timeout: float) -> dict:
    workload = WORKLOADS[name]
    deadline = time.monotonic() + timeout
    # The SDKs log every instance at INFO; keep only warnings and errors, on stderr.
    logger = logging.getLogger("durabletask-bench")
    logger.setLevel(logging.WARNING)
    logger.addHandler(logging.StreamHandler(sys.stderr))

    w = worker.TaskHubGrpcWorker(host_address=address, logger=logger,
                                 concurrency_options=worker.ConcurrencyOptions(**CONCURRENCY))
    for orchestrator in (hello_cities, fan_out_fan_in, chain):
        w.add_orchestrator(orchestrator)
    for activity in (hello, square, increment):
        w.add_activity(activity)
    c = client.TaskHubGrpcClient(host_address=address, logger=logger)
    w.start()
    try:
        run_instances(c, workload, workload.warm_up_size, 1, deadline)  # untimed: connections, first claims
        started = time.perf_counter()
        run_instances(c, workload, size, workload.instances(size), deadline)
        seconds = time.perf_counter() - started
    finally:
        w.stop()
        c.close()
    # `size` counts the unit in every workload: instances, activities or steps.
    return {"workload": name, "size": size, "seconds": round(seconds, 4), "rate": round(size / seconds, 2),
            "unit": f"{workload.unit}/s", "sdk": os.path.dirname(client.__file__)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True, help="task hub address, HOST:PORT")
    parser.add_argument("--workload", required=True, choices=sorted(WORKLOADS))
    parser.add_argument("--size", type=int, required=True,
                        help="instances (hello-cities), activities (fan-out-fan-in) or steps (chain)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds for warm-up and run together")
    args = parser.parse_args()
    try:
        result = measure(args.address, args.workload, args.size, args.timeout)
    except WorkloadFailed as e:
        print(f"{args.workload} failed: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # an SDK or hub error: full traceback for the log, then one line last
        traceback.print_exc()
        if isinstance(e, grpc.RpcError):
            reason = f"gRPC {e.code().name}: {e.details()}"
        else:
            reason = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"
        print(f"{args.workload} failed: {reason}", file=sys.stderr)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
