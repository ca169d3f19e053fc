"""Consuming from the RabbitMQ bus: a verdict-driven consumer on a long-lived robust channel
of its own (the audit stream is read in `amqp_stream`).

Each delivery is handled in a task of its own (aiormq starts them in delivery order) and
settled, by the handler's verdict, on the channel it came on; a handler that raises has its
delivery requeued. The channel's reopen callback subscribes the consumer again.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import TYPE_CHECKING, Any

import aiormq
from aio_pika.abc import AbstractRobustChannel
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from exchange.log import get_logger
from exchange.transport.bus import (
    DELIVERY_COUNT_HEADER,
    REQUEUE,
    BusError,
    Delivery,
    Handler,
)
from exchange.transport.topology import Topology

if TYPE_CHECKING:
    from exchange.transport.amqp import AmqpBus

_log = get_logger(__name__)

CONNECTION_ERRORS = (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError, OSError)
"""What a lost connection or channel raises."""


def delivery_of(message: DeliveredMessage, topology: Topology) -> Delivery:
    """A received AMQP message as the bus's `Delivery` (logical exchange names)."""
    props, frame = message.header.properties, message.delivery
    if not isinstance(frame, Basic.Deliver):
        raise BusError(f"not a delivery: {frame!r}")
    headers = dict(props.headers or {})
    count = headers.get(DELIVERY_COUNT_HEADER)
    return Delivery(
        body=message.body,
        exchange=topology.logical_name(frame.exchange or ""),
        routing_key=frame.routing_key or "",
        message_id=props.message_id,
        headers=headers,
        redelivered=bool(frame.redelivered),
        delivery_count=(count if isinstance(count, int) else 0) + 1,
    )


class AmqpConsumer:
    """A consumer on its own robust channel, subscribed again whenever the channel reopens.

    It consumes on the protocol layer (one task per delivery, no per-message wrapper objects)
    and settles each delivery on the channel it came on.
    """

    def __init__(
        self, bus: AmqpBus, queue: str, handler: Handler, channel: AbstractRobustChannel
    ) -> None:
        self.bus, self.queue, self.handler, self.channel = bus, queue, handler, channel
        self.tag = f"xb-{uuid.uuid4().hex}"
        self._handling: set[asyncio.Task[Any]] = set()
        self._active = True

    async def subscribe(self) -> None:
        underlay = await self.channel.get_underlay_channel()

        async def on_message(message: DeliveredMessage) -> None:
            await self.on_message(underlay, message)

        await underlay.basic_consume(self.queue, on_message, consumer_tag=self.tag)

    async def resubscribe(self, *_: Any) -> None:
        if not self._active:
            return
        try:
            await self.subscribe()
            _log.info("consumer restored", queue=self.queue)
        except Exception:
            _log.error("could not restore consumer", queue=self.queue, exc_info=True)

    async def on_message(
        self, channel: aiormq.abc.AbstractChannel, message: DeliveredMessage
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handling.add(task)
        try:
            delivery = self.bus.delivery(message)
            try:
                verdict = await self.handler(delivery)
            except Exception:
                _log.warning(
                    "handler failed; requeued", message_id=delivery.message_id, exc_info=True
                )
                verdict = REQUEUE
            await self.bus.settle(self.queue, channel, message, delivery, verdict)
        finally:
            if task is not None:
                self._handling.discard(task)

    async def cancel(self) -> None:
        """Stop consuming, let deliveries being handled settle, then close the channel."""
        self._active = False
        self.bus._consumers.discard(self)
        self.channel.reopen_callbacks.discard(self.resubscribe)
        with contextlib.suppress(*CONNECTION_ERRORS, TimeoutError):
            underlay = await asyncio.wait_for(self.channel.get_underlay_channel(), 5)
            await underlay.basic_cancel(self.tag, timeout=5)
        current = asyncio.current_task()
        pending = [t for t in self._handling if t is not current]
        if pending:
            await asyncio.wait(pending, timeout=self.bus.confirm_timeout)
        with contextlib.suppress(*CONNECTION_ERRORS):
            await self.channel.close()
