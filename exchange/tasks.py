"""Background tasks: one that repeats a step forever, and stopping one (cancel, then wait
until it has finished)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from exchange.log import get_logger

_log = get_logger(__name__)


async def every(
    interval: float, step: Callable[[], Awaitable[object]], failed: str, *, wait_first: bool = False
) -> None:
    """Run `step` every `interval` seconds until cancelled (the first after one interval with
    `wait_first`); a step that raises is logged as the error event `failed` and the next one
    runs on time (a watch must survive anything)."""
    if wait_first:
        await asyncio.sleep(interval)
    while True:
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception(failed)
        await asyncio.sleep(interval)


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` (if any) and wait for it to end; its cancellation is not an error."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
