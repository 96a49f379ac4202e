"""One PostgreSQL connection driven from the event loop in libpq's pipeline mode.

Statements go out together, without waiting for each other, followed by a sync point; their rows
come back to callbacks, in order, as the results arrive, and the sync point says whether they all
ran. The event loop never blocks on the database: it reads the socket when it is readable.

Why not psycopg's own (async) pipeline: its cursor machinery costs about 40 µs of Python per
statement, the price of the whole transaction on the database's side, and in a task hub every write
is a handful of statements. Here a statement is prepared once per connection (the database infers
its parameter types), its parameters are dumped as text by psycopg's C adapters, and a result is
loaded by them: a few µs per statement.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
import logging
import os
import re
from typing import Callable, NamedTuple, Sequence

import psycopg
import psycopg.errors
from psycopg import pq
from psycopg.adapt import PyFormat, Transformer

log = logging.getLogger(__name__)
_PLACEHOLDER = re.compile(r"%%|%s")
_OK = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK)


@functools.lru_cache(maxsize=1024)
def numbered(query: str) -> bytes:
    """A query written with psycopg's placeholders (`%s`, `%%`) in PostgreSQL's ($1, $2, ...)."""
    count = 0

    def number(match: re.Match) -> str:
        nonlocal count
        if match.group() == "%%":
            return "%"
        count += 1
        return f"${count}"

    return _PLACEHOLDER.sub(number, query).encode()


class Statement(NamedTuple):
    query: bytes  # with $n placeholders
    values: list[bytes | None] | None  # the parameters, as text
    on_rows: Callable[[list[tuple]], None] | None


class Pipeline:
    """Use `await Pipeline.connect(...)`, then `send` (or `run`) statements made by `statement`. Only
    the event loop it was connected on may use it."""

    def __init__(self, connection: psycopg.AsyncConnection, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.backend_pid = connection.info.backend_pid
        self.broken: Exception | None = None  # the connection is lost: make another
        self._connection = connection  # owns the libpq connection below
        self._pg = connection.pgconn
        # The event loop watches a duplicate of libpq's socket: libpq closes its own descriptor the
        # moment it finds the connection lost, and a new connection may get the same number at once.
        self._socket = os.dup(self._pg.socket)
        self._dumper = Transformer(connection)
        self._loader = Transformer(connection)
        self._prepared: dict[bytes, bytes] = {}  # query -> name of its prepared statement
        self._names = itertools.count()
        # What the results to come answer, in order: ("prepare", query), ("statement", on_rows), ("sync", on_done).
        self._expected: collections.deque = collections.deque()
        self._failure: Exception | None = None  # the first error since the last sync point
        self._pg.nonblocking = 1
        self._pg.enter_pipeline_mode()
        loop.add_reader(self._socket, self._read)

    @classmethod
    async def connect(cls, conninfo: str, connect_timeout: float,
                      settings: Sequence[str] = ()) -> "Pipeline":
        connection = await psycopg.AsyncConnection.connect(conninfo, autocommit=True, connect_timeout=connect_timeout)
        for setting in settings:
            await connection.execute(setting)
        return cls(connection, asyncio.get_running_loop())

    def statement(self, query: str, params: Sequence = (),
                  on_rows: Callable[[list[tuple]], None] | None = None) -> Statement:
        """A statement (`%s` placeholders) with its parameters dumped, ready to send; raises here if a
        parameter cannot be. `on_rows` gets its rows, unless a statement before it failed; it must
        not raise."""
        values = self._dumper.dump_sequence(params, [PyFormat.TEXT] * len(params)) if params else None
        return Statement(numbered(query), values, on_rows)

    def send(self, statements: list[Statement], on_done: Callable[[Exception | None], None]) -> None:
        """Send the statements, then a sync point: unless they BEGIN a transaction of their own, they
        run as one, committed at the sync point, or rolled back whole if one of them fails. `on_done`
        is called (on the event loop, as soon as the sync point's result is read, or at once if the
        connection is already lost) with None once they have all run, with the first database error
        among them, or with the OperationalError that lost the connection (`broken`: whether they
        committed is unknown). It must not raise."""
        if self.broken is not None:
            _call(on_done, self.broken)
            return
        try:
            for query, values, on_rows in statements:
                name = self._prepared.get(query)
                if name is None:
                    name = self._prepared[query] = b"durabletask_%d" % next(self._names)
                    self._pg.send_prepare(name, query)
                    self._expected.append(("prepare", query))
                self._pg.send_query_prepared(name, values)
                self._expected.append(("statement", on_rows))
            self._pg.pipeline_sync()
        except psycopg.OperationalError as error:
            self._lose(error)
            _call(on_done, error)
            return
        self._expected.append(("sync", on_done))
        self._flush()

    async def run(self, statements: list[Statement]) -> None:
        """`send`, awaited: raises what `on_done` would be given."""
        outcome = self.loop.create_future()

        def settle(error: Exception | None) -> None:
            if not outcome.done():  # (the caller may have been cancelled)
                outcome.set_result(error)

        self.send(statements, settle)
        if (error := await outcome) is not None:
            raise error

    def close(self) -> None:
        if self.broken is None:
            self._lose(psycopg.OperationalError("the store is closing"))
        self._pg.finish()

    def _flush(self) -> None:
        try:
            if self._pg.flush() == 1:  # the socket is full: the rest goes out when it can take it
                self.loop.add_writer(self._socket, self._flush_more)
        except psycopg.OperationalError as error:
            self._lose(error)

    def _flush_more(self) -> None:
        try:
            if self._pg.flush() == 0:
                self.loop.remove_writer(self._socket)
        except psycopg.OperationalError as error:
            self._lose(error)

    def _read(self) -> None:
        try:
            self._pg.consume_input()
            while self._expected and not self._pg.is_busy():
                result = self._pg.get_result()
                if result is not None:  # (None ends each statement's results)
                    self._take(result)
        except psycopg.OperationalError as error:
            self._lose(error)

    def _take(self, result: pq.abc.PGresult) -> None:
        kind, what = self._expected.popleft()
        if kind == "sync":
            failure, self._failure = self._failure, None
            _call(what, failure)
        elif kind == "prepare":
            if result.status != pq.ExecStatus.COMMAND_OK:  # not prepared: prepare it again next time
                self._prepared.pop(what, None)
                self._fail(result)
        elif result.status in _OK:
            if what is not None and self._failure is None:
                self._loader.set_pgresult(result)
                try:
                    what(self._loader.load_rows(0, result.ntuples, tuple))
                except Exception:  # a bug: what the database did stands, so the outcome must not change
                    log.exception("a handler of a statement's rows failed")
        else:
            self._fail(result)

    def _fail(self, result: pq.abc.PGresult) -> None:
        if result.status != pq.ExecStatus.PIPELINE_ABORTED and self._failure is None:
            self._failure = psycopg.errors.error_from_result(result)

    def _lose(self, error: Exception) -> None:
        """The connection is gone: every sync point still waited on fails with `error`."""
        self.broken = error
        self.loop.remove_reader(self._socket)
        self.loop.remove_writer(self._socket)
        os.close(self._socket)
        while self._expected:
            kind, what = self._expected.popleft()
            if kind == "sync":
                _call(what, error)


def _call(on_done: Callable[[Exception | None], None], error: Exception | None) -> None:
    try:
        on_done(error)
    except Exception:  # a bug: what the database did stands, and the pipeline goes on
        log.exception("a handler of a sync point's outcome failed")
