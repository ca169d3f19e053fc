"""Reading the network's audit stream over AMQP 0.9.1: its records from an offset, and the
broker's own clock for them.

RabbitMQ 3.10 gives a stream consumer each record's offset (the `x-stream-offset` header)
and nothing of when it was written: the `timestamp` property is the publisher's, not the
broker's. But the broker stamps every chunk of records it writes, and a consumer that
attaches at a time (`x-stream-offset` = an AMQP timestamp, to the second) starts at the
first chunk stamped at or after it. `stream_offset_at` asks exactly that: the offset of
the first record the broker wrote at or after a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import aiormq
from aiormq.abc import DeliveredMessage

from exchange.transport.bus import BusError, ConsumeError, Delivery, stream_offset

if TYPE_CHECKING:
    from exchange.transport.amqp import AmqpBus

STREAM_PREFETCH = 500


async def read_stream(
    bus: AmqpBus,
    *,
    offset: str | int = "first",
    idle_timeout: float = 1.0,
    queue: str | None = None,
) -> AsyncIterator[Delivery]:
    """The audit stream (or the stream `queue`) from `offset`, acked as read, until
    `idle_timeout` passes quietly."""
    received: asyncio.Queue[DeliveredMessage] = asyncio.Queue()

    async def on_delivery(message: DeliveredMessage) -> None:
        received.put_nowait(message)

    if not bus.connected:
        raise ConsumeError("cannot read the audit stream: not connected to the broker")
    async with bus._raw_channel() as ch:
        try:
            await ch.basic_qos(prefetch_count=STREAM_PREFETCH)
            await ch.basic_consume(
                queue or bus.topology.audit_stream_queue,
                on_delivery,
                arguments={"x-stream-offset": offset},
            )
        except aiormq.exceptions.AMQPError as err:
            raise ConsumeError(f"cannot read the audit stream: {err}") from err
        while True:
            try:
                message = await asyncio.wait_for(received.get(), idle_timeout)
            except TimeoutError:
                if ch.is_closed:
                    raise BusError("the audit stream read was interrupted") from None
                return
            delivery = bus.delivery(message)
            tag = message.delivery_tag
            if tag is not None:
                await ch.basic_ack(tag)
            yield delivery


async def stream_offset_at(
    bus: AmqpBus, when: datetime, *, idle_timeout: float = 1.0
) -> int | None:
    """The offset of the first audit stream record the broker wrote at or after `when` (to
    the second, as AMQP timestamps go), or None when none came within `idle_timeout` seconds:
    the broker has written nothing since."""
    if when.tzinfo is None:
        raise ValueError("when must be timezone-aware")
    first: asyncio.Future[DeliveredMessage] = asyncio.get_running_loop().create_future()

    async def on_delivery(message: DeliveredMessage) -> None:
        if not first.done():
            first.set_result(message)

    if not bus.connected:
        raise ConsumeError("cannot read the audit stream: not connected to the broker")
    async with bus._raw_channel() as ch:  # closing it ends the consumer
        try:
            await ch.basic_qos(prefetch_count=1)
            await ch.basic_consume(
                bus.topology.audit_stream_queue,
                on_delivery,
                arguments={"x-stream-offset": when.astimezone(UTC).replace(microsecond=0)},
            )
            message = await asyncio.wait_for(first, idle_timeout)
        except TimeoutError:
            return None
        except aiormq.exceptions.AMQPError as err:
            raise ConsumeError(f"cannot read the audit stream: {err}") from err
        offset = stream_offset(bus.delivery(message))
        if offset is None:
            raise BusError("the audit stream gave a record without its offset")
        return offset
