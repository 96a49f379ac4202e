"""Helpers for SDK tests: unique instance ids and a worker that runs for the length of a `with`."""

import contextlib
import time
import uuid

from durabletask import worker


def new_id(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:12]}"


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


@contextlib.contextmanager
def running_worker(address, orchestrators=(), activities=(), versioning=None, filters=True, **options):
    """A started worker; `filters=False` sends no work item filters (the hub then offers it everything)."""
    w = worker.TaskHubGrpcWorker(host_address=address, **options)
    for fn in orchestrators:
        w.add_orchestrator(fn)
    for fn in activities:
        w.add_activity(fn)
    if versioning is not None:
        w.use_versioning(versioning)
    if not filters:
        w.use_work_item_filters(None)
    w.start()
    try:
        yield w
    finally:
        w.stop()
