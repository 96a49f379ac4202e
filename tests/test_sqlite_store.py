"""What only the SQLite store does: its write-ahead log is copied back into the database file in the
background (the store turns SQLite's own checkpoints off, since they would run inside a commit)."""

import asyncio

from durabletask.server.stores import sqlite
from durabletask.server.stores.base import NewInstance
from durabletask.server.stores.sqlite import SqliteStore
from tests.support.hub import run_async


@run_async
async def test_the_write_ahead_log_stops_growing_between_bursts_of_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite, "CHECKPOINT_SECONDS", 0.1)
    store = SqliteStore(str(tmp_path / "hub.db"))
    wal = tmp_path / "hub.db-wal"

    async def burst(number: int) -> None:
        await asyncio.gather(*(store.create_instance(NewInstance(f"burst{number}-{i}", "workflow", input="x" * 2000))
                               for i in range(200)))
        await asyncio.sleep(0.5)  # a checkpoint's turn

    try:
        await burst(0)
        after_one = wal.stat().st_size
        for number in range(1, 4):
            await burst(number)
        # Without checkpoints the log would hold all four bursts; checkpointed, each reuses it.
        assert wal.stat().st_size < 2 * after_one
    finally:
        store.close()
