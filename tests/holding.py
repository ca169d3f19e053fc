"""Holding a node's database thread busy, to act while other operations wait in its queue."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from exchange.storage.sqlite_thread import SqliteThread


class Held:
    """The database's worker is held; `queued_by(task)` waits until `task` queued an
    operation behind it (operations of other tasks, e.g. a publisher's, do not count)."""

    def __init__(self) -> None:
        self.submitters: list[asyncio.Task[Any] | None] = []

    async def queued_by(self, task: asyncio.Task[Any], n: int = 1) -> None:
        async with asyncio.timeout(10):
            while self.submitters.count(task) < n:
                if task.done():
                    raise AssertionError(f"the task ended before it queued {n} operation(s)")
                await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def held(db: SqliteThread) -> AsyncIterator[Held]:
    """While inside, the worker runs nothing: operations queued meanwhile wait, and each is
    noted with the task that queued it. Leaving releases the worker and returns once the
    holding operation is done (those queued behind it run next, in order)."""
    gate = threading.Event()
    blocker = db.submit(lambda conn: gate.wait(30))
    state = Held()
    submit = db.submit

    def noted(fn: Callable[[Any], Any]) -> asyncio.Future[Any]:
        future = submit(fn)
        state.submitters.append(asyncio.current_task())
        return future

    db.submit = noted  # type: ignore[method-assign]
    try:
        yield state
    finally:
        del db.submit  # type: ignore[method-assign]
        gate.set()
        await blocker
