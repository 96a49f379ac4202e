"""A ledger of activity runs shared by worker processes: each finished run appends one line to a
file (O_APPEND keeps concurrent lines whole), so a test can count the activities that ran more
than once, across kills and restarts."""

import os
from collections import Counter
from pathlib import Path

LEDGER_ENV = "DURABLETASK_TEST_LEDGER"  # where the worker processes' apps record their activity runs


def record_run(ctx) -> None:
    """Record that the activity `ctx` describes ran to its end (a no-op outside a ledger test)."""
    path = os.environ.get(LEDGER_ENV)
    if path:
        with open(path, "a") as ledger:
            ledger.write(f"{ctx.orchestration_id} {ctx.task_id} {os.getpid()}\n")


class Ledger:
    def __init__(self, path: Path):
        self.path = path
        path.touch()

    @property
    def env(self) -> dict[str, str]:
        """The environment that makes a worker process record its runs here."""
        return {LEDGER_ENV: str(self.path)}

    def _lines(self) -> list[list[str]]:
        """Whole lines only: one may be half-written as we read."""
        return [fields for line in self.path.read_text().splitlines() if len(fields := line.split()) == 3]

    def runs(self) -> Counter:
        """(instance id, task id) -> how many times that activity ran to its end."""
        return Counter((instance_id, task_id) for instance_id, task_id, _ in self._lines())

    def workers(self, instance_prefix: str = "") -> set[int]:
        """The process ids of the workers that ran activities of the instances whose ids start so."""
        return {int(pid) for instance_id, _, pid in self._lines() if instance_id.startswith(instance_prefix)}

    def total(self) -> int:
        return len(self._lines())

    def duplicates(self) -> dict[tuple[str, str], int]:
        """The activities that ran more than once, with their run counts."""
        return {key: count for key, count in self.runs().items() if count > 1}
