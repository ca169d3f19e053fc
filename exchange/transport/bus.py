"""The message bus contract shared by RabbitMQ (`AmqpBus`) and the in-process `MemoryBus`.

A handler answers each delivery with a `Verdict`; retries and dead-lettering are that
explicit policy, never an implicit loop. Both buses pass the same contract tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from exchange.errors import ExchangeError
from exchange.transport.topology import Topology

REASON_HEADER = "x-xb-reason"
ORIGINAL_ROUTING_KEY_HEADER = "x-xb-original-routing-key"
ORIGINAL_EXCHANGE_HEADER = "x-xb-original-exchange"
DELIVERY_COUNT_HEADER = "x-delivery-count"
STREAM_OFFSET_HEADER = "x-stream-offset"

MAX_PREFETCH = 65535


class Disposition(StrEnum):
    ACK = "ack"
    DEAD_LETTER = "dead-letter"
    REQUEUE = "requeue"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with a delivery; `reason` is the error code for DEAD_LETTER."""

    disposition: Disposition
    reason: str | None = None


ACK = Verdict(Disposition.ACK)
REQUEUE = Verdict(Disposition.REQUEUE)


def dead_letter(reason: str) -> Verdict:
    return Verdict(Disposition.DEAD_LETTER, reason)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to publish. `exchange` is logical: "messages" or "cases" (or "dead").
    Nothing may publish to "audit": only the broker's bindings copy into it."""

    exchange: str
    routing_key: str
    body: bytes
    message_id: str
    headers: Mapping[str, str | int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A received message. `exchange` is logical ("messages", "dead", ...) for our exchanges.

    `delivery_count` is 1 on the first delivery and grows by one each time the message
    went back to its queue (a requeue, or a consumer lost before it acked).
    """

    body: bytes
    exchange: str
    routing_key: str
    message_id: str | None
    headers: Mapping[str, Any]
    redelivered: bool
    delivery_count: int


Handler = Callable[[Delivery], Awaitable[Verdict]]


class BusError(ExchangeError):
    """Root of the bus's errors."""

    code = "bus.failed"


class PublishError(BusError):
    """Not confirmed: nacked, returned as unroutable, channel/connection lost, or timed out."""

    code = "bus.publish_failed"


class ConsumeError(BusError):
    """A queue cannot be consumed: it does not exist, or it is not a work queue."""

    code = "bus.consume_failed"


def stream_offset(delivery: Delivery) -> int | None:
    """The audit stream offset of a delivery from `read_audit_stream`."""
    value = delivery.headers.get(STREAM_OFFSET_HEADER)
    return value if isinstance(value, int) else None


class ConsumerHandle(Protocol):
    async def cancel(self) -> None:
        """Stop receiving; deliveries being handled finish first."""
        ...


class Bus(Protocol):
    topology: Topology

    @property
    def connected(self) -> bool: ...

    async def start(self) -> None:
        """Connect (robustly, for AMQP)."""
        ...

    async def close(self) -> None: ...

    async def declare_node(self, node_id: str) -> None:
        """Idempotent: exchanges, the node's inbox and dead queue, audit stream and bindings."""
        ...

    async def declare_subscription(
        self, node_id: str, networks: Sequence[str], cases: Sequence[str] | None = None
    ) -> None:
        """Idempotent: the node's case-update queue, bound to whole networks or to cases."""
        ...

    async def publish(self, msg: Outgoing) -> None:
        """Return once the broker confirmed; else raise PublishError."""
        ...

    async def publish_many(self, msgs: Sequence[Outgoing]) -> list[PublishError | None]:
        """Publish all at once; one result per message, in order (None = confirmed)."""
        ...

    async def publish_sequence(
        self, msgs: Sequence[Outgoing], *, key: str
    ) -> list[PublishError | None]:
        """Publish all at once, in order, on the one channel of `key`, so that the broker
        receives them in this order, and after what earlier calls with the same key
        published (it keeps one channel's order into a queue); one result each."""
        ...

    async def consume(
        self, queue: str, handler: Handler, *, prefetch: int = 64
    ) -> ConsumerHandle: ...

    def read_audit_stream(
        self, *, offset: str | int = "first", idle_timeout: float = 1.0, queue: str | None = None
    ) -> AsyncIterator[Delivery]:
        """The audit stream (or another stream `queue`, such as the directory's) from
        `offset`, ending after `idle_timeout` seconds without news."""
        ...

    async def audit_stream_offset_at(
        self, when: datetime, *, idle_timeout: float = 1.0
    ) -> int | None:
        """The offset of the first audit stream record the broker wrote at or after `when`
        (to the second), or None when it wrote none since: the broker's own clock for the
        stream (see `exchange.transport.amqp_stream`)."""
        ...


def validate_prefetch(prefetch: int) -> int:
    if not 1 <= prefetch <= MAX_PREFETCH:
        raise ValueError(f"prefetch must be within 1..{MAX_PREFETCH}, not {prefetch}")
    return prefetch


def dead_letter_headers(delivery: Delivery, reason: str, original_exchange: str) -> dict[str, Any]:
    """Headers of the copy a DEAD_LETTER verdict publishes to the dead exchange."""
    headers = {k: v for k, v in delivery.headers.items() if k != DELIVERY_COUNT_HEADER}
    headers[REASON_HEADER] = reason
    headers[ORIGINAL_ROUTING_KEY_HEADER] = delivery.routing_key
    headers[ORIGINAL_EXCHANGE_HEADER] = original_exchange
    return headers
