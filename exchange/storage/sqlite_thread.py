"""One SQLite connection owned by one dedicated thread, driven from asyncio.

Every operation is a function of the connection, queued from the event loop and run on the
thread. Operations that are queued together are group-committed: one transaction (and one
fsync) for the batch. If one of them fails, the batch is rolled back and each operation runs
again in its own transaction, so one failure spoils none of the others. A caller's await
returns only after its transaction committed.

`TransactionHook`s take part in every transaction: the audit log keeps its Merkle frontier in
memory, writes its entries inside the caller's transaction, and forgets them if it rolls back.
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
from typing import Any, Protocol, TypeVar

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


class TransactionHook(Protocol):
    """Something that writes inside other operations' transactions (on the worker thread)."""

    def begin(self) -> None:
        """A transaction began."""

    def before_commit(self, conn: sqlite3.Connection) -> None:
        """The transaction's operations ran; write what the hook owes them."""

    def committed(self) -> None:
        """The transaction is durable."""

    def rolled_back(self) -> None:
        """Nothing of the transaction was kept."""


class SqliteThread:
    """A durable SQLite database (WAL, synchronous=FULL) served by one worker thread."""

    def __init__(self, path: Path, setup: Callable[[sqlite3.Connection], None]) -> None:
        self.path = path
        self._setup = setup
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._hooks: list[TransactionHook] = []
        self._conn: sqlite3.Connection | None = None

    def add_hook(self, hook: TransactionHook) -> None:
        """Take `hook` into every transaction from now on (call before queuing work)."""
        self._hooks.append(hook)

    @property
    def is_open(self) -> bool:
        return not self._closed and self._thread is not None

    def owns(self, conn: sqlite3.Connection) -> bool:
        """True when `conn` is this database's connection (so its transaction is ours)."""
        return conn is self._conn

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
        return await self.submit(fn)

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue `fn(connection)` now; the future gives its result once it is committed.

        Operations run in the order they are queued. Cancelling the future does not
        withdraw the operation.
        """
        if self._closed or self._thread is None:
            raise RuntimeError(f"database {self.path} is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Op(fn, loop, future))
        return future

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
        self._conn = conn
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

    def _execute(self, conn: sqlite3.Connection, group: list[_Op]) -> None:
        try:
            outcomes = self._transaction(conn, group)
        except _OpFailed:
            # One operation failed: run each on its own, so it spoils none of the others.
            outcomes = [self._alone(conn, op) for op in group]
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

    def _transaction(self, conn: sqlite3.Connection, group: list[_Op]) -> list[_Outcome]:
        """Every operation of the group in one transaction; nothing is kept if one fails.

        No savepoints on this path: every statement hands the GIL back and forth, and under
        load each handover can cost milliseconds, so the common case runs as few as possible.
        """
        results: list[_Outcome] = []
        conn.execute("BEGIN IMMEDIATE")
        for hook in self._hooks:
            hook.begin()
        try:
            for op in group:
                try:
                    results.append((op.fn(conn), None))
                except Exception as exc:
                    if len(group) == 1:
                        raise
                    raise _OpFailed from exc
            for hook in self._hooks:
                hook.before_commit(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            for hook in self._hooks:
                hook.rolled_back()
            raise
        for hook in self._hooks:
            hook.committed()
        return results

    def _alone(self, conn: sqlite3.Connection, op: _Op) -> _Outcome:
        try:
            return self._transaction(conn, [op])[0]
        except Exception as exc:
            return (None, exc)
