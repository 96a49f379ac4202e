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
            ledger.write(f"{ctx.orchestration_id} {ctx.task_id}\n")


class Ledger:
    def __init__(self, path: Path):
        self.path = path
        path.touch()

    @property
    def env(self) -> dict[str, str]:
        """The environment that makes a worker process record its runs here."""
        return {LEDGER_ENV: str(self.path)}

    def runs(self) -> Counter:
        """(instance id, task id) -> how many times that activity ran to its end."""
        return Counter(tuple(line.split()) for line in self.path.read_text().splitlines())

    def total(self) -> int:
        return sum(self.runs().values())

    def duplicates(self) -> dict[tuple[str, str], int]:
        """The activities that ran more than once, with their run counts."""
        return {key: count for key, count in self.runs().items() if count > 1}
