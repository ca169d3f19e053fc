"""Waiting in tests for something that happens in the background (a broker, another task)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from exchange.transport.bus import ACK, Bus, Delivery, Verdict


async def eventually(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Poll `condition` until it holds; fail after `within` seconds."""
    for _ in range(int(within / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"condition still false after {within}s")


async def dead_letters(bus: Bus, node: str) -> list[Delivery]:
    """Read (and ack) what sits in `node`'s dead-letter queue, waiting briefly for it."""
    got: list[Delivery] = []

    async def handler(delivery: Delivery) -> Verdict:
        got.append(delivery)
        return ACK

    handle = await bus.consume(bus.topology.dead_queue(node), handler, prefetch=10)
    for _ in range(100):
        if got:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    await handle.cancel()
    return got
