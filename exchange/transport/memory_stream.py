"""The in-memory broker's messages and stream queues: entries numbered like RabbitMQ's
stream offsets, and where a reader starts for a given `x-stream-offset`."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any

from exchange.transport.bus import STREAM_OFFSET_HEADER, ConsumeError
from exchange.transport.topology import QueueSpec

_INTERVAL = re.compile(r"^(\d+)([YMDhms])$")
_SECONDS = {"Y": 365 * 86400, "M": 30 * 86400, "D": 86400, "h": 3600, "m": 60, "s": 1}


@dataclass(slots=True)
class Message:
    body: bytes
    exchange: str
    routing_key: str
    message_id: str | None
    headers: dict[str, Any]
    returns: int = 0
    redelivered: bool = False
    published_at: float = field(default_factory=time.time)

    def copy(self) -> Message:
        return Message(
            self.body, self.exchange, self.routing_key, self.message_id, dict(self.headers)
        )


class Stream:
    def __init__(self, spec: QueueSpec) -> None:
        self.spec = spec
        self.entries: list[Message] = []
        self.waiters: set[asyncio.Future[None]] = set()

    def append(self, message: Message) -> None:
        message.headers[STREAM_OFFSET_HEADER] = len(self.entries)
        self.entries.append(message)
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.waiters.clear()

    async def wait_beyond(self, position: int, idle: float) -> bool:
        """Wait until an entry exists at `position`; False after `idle` seconds."""
        if position < len(self.entries):
            return True
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter, idle)
        except TimeoutError:
            return False
        finally:
            self.waiters.discard(waiter)
        return position < len(self.entries)


def stream_start(stream: Stream, offset: str | int) -> int:
    """Where a reader starts, as RabbitMQ's `x-stream-offset` would place it."""
    if isinstance(offset, int):
        return max(offset, 0)
    if offset == "first":
        return 0
    if offset == "last":
        return max(len(stream.entries) - 1, 0)
    if offset == "next":
        return len(stream.entries)
    match = _INTERVAL.fullmatch(offset)
    if match is None:
        raise ConsumeError(f"invalid x-stream-offset {offset!r}")
    since = time.time() - int(match.group(1)) * _SECONDS[match.group(2)]
    return next(
        (i for i, m in enumerate(stream.entries) if m.published_at >= since), len(stream.entries)
    )
