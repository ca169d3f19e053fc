"""One SQLite connection owned by one dedicated thread, driven from asyncio.

Every operation is a function of the connection, queued from the event loop and run on the
thread. Operations that are queued together are group-committed: one transaction (and one
fsync) for the batch. If one of them fails, the batch is rolled back and each operation runs
again in its own transaction, so one failure spoils none of the others. A caller's await
returns only after its transaction committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

MAX_GROUP = 512
"""Most operations committed in one transaction."""


@dataclass(slots=True)
class _Op:
    fn: Callable[[sqlite3.Connection], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


_Outcome = tuple[Any, BaseException | None]


class _OpFailed(Exception):
    """One operation of a group failed: the group is rolled back and retried one by one."""


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _settle_all(settled: list[tuple[asyncio.Future[Any], _Outcome]]) -> None:
    for future, (result, error) in settled:
        _settle(future, result, error)


class SqliteThread:
    """A durable SQLite database (WAL, synchronous=FULL) served by one worker thread."""

    def __init__(self, path: Path, setup: Callable[[sqlite3.Connection], None]) -> None:
        self.path = path
        self._setup = setup
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False

    async def start(self) -> None:
        """Open the connection on the worker thread; raises if the database cannot be opened."""
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(
            target=self._run, args=(loop, opened), name=f"sqlite:{self.path.name}", daemon=True
        )
        self._thread.start()
        await opened

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` in a transaction on the worker thread; return once committed."""
        if self._closed or self._thread is None:
            raise RuntimeError(f"database {self.path} is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Op(fn, loop, future))
        return await future

    async def close(self) -> None:
        """Finish the queued operations, then close the connection."""
        if self._closed or self._thread is None:
            return
        self._closed = True
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._setup(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            conn.close()
            raise
        return conn

    def _run(self, loop: asyncio.AbstractEventLoop, opened: asyncio.Future[None]) -> None:
        try:
            conn = self._connect()
        except Exception as exc:
            self._closed = True
            loop.call_soon_threadsafe(_settle, opened, None, exc)
            return
        loop.call_soon_threadsafe(_settle, opened, None, None)
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is None:
                    break
                group = [first]
                while len(group) < MAX_GROUP:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stopping = True
                        break
                    group.append(nxt)
                self._execute(conn, group)
        finally:
            conn.close()

    @classmethod
    def _execute(cls, conn: sqlite3.Connection, group: list[_Op]) -> None:
        try:
            outcomes = cls._transaction(conn, group)
        except _OpFailed:
            # One operation failed: run each on its own, so it spoils none of the others.
            outcomes = [cls._alone(conn, op) for op in group]
        except Exception as exc:
            outcomes = [(None, exc)] * len(group)
        # One wake-up of each caller's loop for the whole group, not one per operation:
        # every call_soon_threadsafe writes to the loop's self-pipe and takes the GIL back.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], _Outcome]]] = {}
        for op, outcome in zip(group, outcomes, strict=True):
            by_loop.setdefault(op.loop, []).append((op.future, outcome))
        for loop, settled in by_loop.items():
            # RuntimeError: the caller's loop is closed, so nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle_all, settled)

    @staticmethod
    def _transaction(conn: sqlite3.Connection, group: list[_Op]) -> list[_Outcome]:
        """Every operation of the group in one transaction; nothing is kept if one fails.

        No savepoints on this path: every statement hands the GIL back and forth, and under
        load each handover can cost milliseconds, so the common case runs as few as possible.
        """
        results: list[_Outcome] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for op in group:
                try:
                    results.append((op.fn(conn), None))
                except Exception as exc:
                    if len(group) == 1:
                        raise
                    raise _OpFailed from exc
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        return results

    @classmethod
    def _alone(cls, conn: sqlite3.Connection, op: _Op) -> _Outcome:
        try:
            return cls._transaction(conn, [op])[0]
        except Exception as exc:
            return (None, exc)
