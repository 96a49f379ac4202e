"""How long a scrape of the task hub's /metrics takes with 100,000 instances in the store.

Instances are created straight through the store API (the writer batches them), spread over a few
orchestrator names and versions. Two shapes are timed: every instance still PENDING (the largest
backlog `durabletask_work_items_pending` can have), then all but 5,000 terminated (a long-lived hub:
mostly finished instances, a small backlog).

    .venv/bin/python bench/metrics_scrape.py [--instances 100000] [--scrapes 20]
"""

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from durabletask.server.metrics import HubMetrics, serve_metrics  # noqa: E402
from durabletask.server.stores.base import NewInstance  # noqa: E402
from durabletask.server.stores.sqlite import SqliteStore  # noqa: E402
from tests.support.processes import free_port  # noqa: E402

NAMES = ("order", "invoice", "shipment", "refund")
VERSIONS = ("", "1.0", "1.1", "2.0", "3.0")
STILL_PENDING = 5_000
CHUNK = 2_000  # requests in flight at once


async def in_chunks(calls) -> None:
    calls = list(calls)
    for start in range(0, len(calls), CHUNK):
        await asyncio.gather(*calls[start:start + CHUNK])


async def fill(store: SqliteStore, count: int) -> list[str]:
    ids = [f"bench-{i:06d}" for i in range(count)]
    await in_chunks(store.create_instance(NewInstance(instance_id=iid, name=NAMES[i % len(NAMES)],
                                                      version=VERSIONS[i % len(VERSIONS)]))
                    for i, iid in enumerate(ids))
    return ids


def time_scrapes(port: int, scrapes: int) -> tuple[float, float, int]:
    """(median ms, max ms, bytes) of `scrapes` GETs of /metrics."""
    timings, size = [], 0
    for _ in range(scrapes):
        began = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
            size = len(response.read())
        timings.append((time.perf_counter() - began) * 1000)
    return statistics.median(timings), max(timings), size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--scrapes", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(str(Path(tmp) / "hub.db"))
        port = free_port()
        server = serve_metrics(HubMetrics(store), "127.0.0.1", port)
        try:
            began = time.perf_counter()
            ids = asyncio.run(fill(store, args.instances))
            print(f"created {args.instances} instances in {time.perf_counter() - began:.1f}s")
            median, worst, size = time_scrapes(port, args.scrapes)
            print(f"all {args.instances} PENDING:          scrape median {median:.1f} ms, max {worst:.1f} ms "
                  f"({size} bytes)")
            began = time.perf_counter()
            asyncio.run(in_chunks(store.terminate(iid, None, False) for iid in ids[STILL_PENDING:]))
            print(f"terminated {args.instances - STILL_PENDING} in {time.perf_counter() - began:.1f}s")
            median, worst, size = time_scrapes(port, args.scrapes)
            print(f"{STILL_PENDING} PENDING, rest TERMINATED: scrape median {median:.1f} ms, max {worst:.1f} ms "
                  f"({size} bytes)")
        finally:
            server.shutdown()
            store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
