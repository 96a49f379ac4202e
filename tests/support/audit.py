"""Did every orchestration finish, exactly once, with no activity result or timer lost? Read from
the store's own records (state, history and the per-status counters the metrics report)."""

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.server.stores.base import Store

COMPLETED = pb.ORCHESTRATION_STATUS_COMPLETED


def completed_count(store: Store) -> int:
    """The store's counter of completed instances (what the metrics gauge reports)."""
    return sum(count for _, _, status, count in store.instance_counts() if status == COMPLETED)


def wait_for_completed(store: Store, count: int, timeout: float) -> int:
    """Poll until `count` instances completed or `timeout` passed; the last count read. A failing
    read (the database restarting) is tried again."""
    deadline = time.monotonic() + timeout
    done = -1
    while time.monotonic() < deadline:
        try:
            done = completed_count(store)
        except Exception:  # noqa: BLE001 - the store is down for a moment; the deadline bounds this
            pass
        if done >= count:
            break
        time.sleep(0.1)
    return done


@dataclass
class Audit:
    lost: list[str]  # not completed with the expected output, or an activity result or timer missing
    applied_twice: list[str]  # a completion, activity result or timer recorded more than once
    completed: int  # the store's counter of completed instances

    def problems(self, instances: int) -> str:
        """'' when every one of `instances` completed exactly once; else what went wrong."""
        messages = []
        if self.lost:
            messages.append(f"{len(self.lost)} lost (e.g. {self.lost[:5]})")
        if self.applied_twice:
            messages.append(f"{len(self.applied_twice)} applied twice (e.g. {self.applied_twice[:5]})")
        if self.completed != instances:
            messages.append(f"the completed counter says {self.completed}, not {instances}")
        return "; ".join(messages)


def audit(store: Store, expected_outputs: dict[str, str]) -> Audit:
    """Check each instance (id -> its expected serialized output) in the store."""
    async def read():
        ids = list(expected_outputs)
        states = await asyncio.gather(*(store.get_instance(iid) for iid in ids))
        histories = await asyncio.gather(*(store.get_history(iid) for iid in ids))
        return zip(ids, states, histories)

    lost, applied_twice = [], []
    for iid, state, history in asyncio.run(read()):
        if state is None or state.status != COMPLETED or state.output != expected_outputs[iid]:
            lost.append(iid)
            continue
        kinds = Counter(e.WhichOneof("eventType") for e in history)
        activities = sorted(e.eventId for e in history if e.HasField("taskScheduled"))
        results = sorted(e.taskCompleted.taskScheduledId for e in history if e.HasField("taskCompleted"))
        timers = sorted(e.eventId for e in history if e.HasField("timerCreated"))
        fired = sorted(e.timerFired.timerId for e in history if e.HasField("timerFired"))
        if kinds["executionCompleted"] > 1 or len(set(results)) < len(results) or len(set(fired)) < len(fired):
            applied_twice.append(iid)
        elif kinds["executionCompleted"] == 0 or results != activities or fired != timers:
            lost.append(iid)
    return Audit(lost, applied_twice, completed_count(store))
