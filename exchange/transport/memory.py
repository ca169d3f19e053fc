"""An embedded, in-process bus with the routing, ack and dead-letter semantics of the RabbitMQ
topology, for the demo and for tests without a broker.

`MemoryBroker` holds exchanges, bindings and queues; each `MemoryBus` is one connection to
it (several nodes in one process share a broker). It refuses what RabbitMQ refuses with the
rendered definitions: a publish to the audit exchange, and one to a queue at its bounds.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

from exchange.log import get_logger
from exchange.transport.bus import (
    DELIVERY_COUNT_HEADER,
    REQUEUE,
    BusError,
    ConsumeError,
    Delivery,
    Disposition,
    Handler,
    Outgoing,
    PublishError,
    Verdict,
    dead_letter_headers,
    validate_prefetch,
)
from exchange.transport.memory_stream import Message as _Message
from exchange.transport.memory_stream import Stream as _Stream
from exchange.transport.memory_stream import stream_start as _start
from exchange.transport.topology import (
    MAX_ROUTING_KEY_BYTES,
    BindingSpec,
    Declarations,
    DestinationKind,
    ExchangeKind,
    ExchangeSpec,
    InvalidName,
    QueueBounds,
    QueueKind,
    QueueSpec,
    Topology,
)

_log = get_logger(__name__)
CANCEL_GRACE_SECONDS = 30.0


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: words split on '.', `*` is one word, `#` zero or more."""
    return _match(_words(pattern), _words(key))


def _words(value: str) -> list[str]:
    return value.split(".") if value else []


def _match(pattern: list[str], key: list[str]) -> bool:
    if not pattern:
        return not key
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, key[i:]) for i in range(len(key) + 1))
    if not key:
        return False
    return (head == "*" or head == key[0]) and _match(rest, key[1:])


class _WorkQueue:
    """A quorum queue: FIFO, returned messages first, per-consumer prefetch."""

    def __init__(self, spec: QueueSpec) -> None:
        self.spec = spec
        self.ready: deque[_Message] = deque()
        self.consumers: list[_Consumer] = []
        self.stuck: list[_Message] = []  # poison messages waiting for a routable dead-letter target
        self._next = 0

    def full(self, bounds: QueueBounds | None) -> bool:
        """Past its bounds, `reject-publish` refuses what comes next. A RabbitMQ 3.10 quorum
        queue counts ready messages only, and refuses once it holds more than the bound
        (so it takes one past it)."""
        if bounds is None:
            return False
        if len(self.ready) > bounds.max_length:
            return True
        return sum(len(m.body) for m in self.ready) > bounds.max_bytes

    def dispatch(self) -> None:
        while self.ready:
            consumer = self._next_consumer()
            if consumer is None:
                return
            consumer.deliver(self.ready.popleft())

    def _next_consumer(self) -> _Consumer | None:
        for i in range(len(self.consumers)):
            candidate = self.consumers[(self._next + i) % len(self.consumers)]
            if candidate.has_capacity:
                self._next = (self._next + i + 1) % len(self.consumers)
                return candidate
        return None


class MemoryBroker:
    """The shared state: exchanges, bindings, work queues and streams."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.exchanges: dict[str, ExchangeSpec] = {}
        self.bindings: dict[str, list[tuple[str, str, DestinationKind]]] = {}
        self.queues: dict[str, _WorkQueue] = {}
        self.streams: dict[str, _Stream] = {}

    def declare(self, decl: Declarations) -> None:
        """Idempotent, like AMQP declarations; a different existing definition is refused."""
        for exchange in decl.exchanges:
            if self.exchanges.setdefault(exchange.name, exchange) != exchange:
                raise BusError(f"PRECONDITION_FAILED - exchange {exchange.name} differs")
        for queue in decl.queues:
            self._declare_queue(queue)
        for binding in decl.bindings:
            self._bind(binding)
        for work_queue in self.queues.values():
            stuck, work_queue.stuck = work_queue.stuck, []
            for message in stuck:
                self.dead_letter_poison(work_queue, message)

    def _declare_queue(self, spec: QueueSpec) -> None:
        existing = self.queues.get(spec.name) or self.streams.get(spec.name)
        if existing is not None:
            if existing.spec != spec:
                raise BusError(f"PRECONDITION_FAILED - queue {spec.name} differs")
        elif spec.kind is QueueKind.STREAM:
            self.streams[spec.name] = _Stream(spec)
        else:
            self.queues[spec.name] = _WorkQueue(spec)

    def _bind(self, binding: BindingSpec) -> None:
        if binding.source not in self.exchanges:
            raise BusError(f"NOT_FOUND - no exchange '{binding.source}'")
        if binding.destination_kind is DestinationKind.EXCHANGE:
            exists = binding.destination in self.exchanges
        else:
            exists = binding.destination in self.queues or binding.destination in self.streams
        if not exists:
            raise BusError(f"NOT_FOUND - no {binding.destination_kind} '{binding.destination}'")
        entry = (binding.routing_key, binding.destination, binding.destination_kind)
        if entry not in self.bindings.setdefault(binding.source, []):
            self.bindings[binding.source].append(entry)

    def route(self, exchange: str, routing_key: str) -> list[str]:
        """Destination queues, each once, following exchange-to-exchange bindings."""
        found: dict[str, None] = {}
        seen: set[str] = set()
        pending = [exchange]
        while pending:
            name = pending.pop(0)
            if name in seen:
                continue
            seen.add(name)
            fanout = self.exchanges[name].kind is ExchangeKind.FANOUT
            for key, destination, kind in self.bindings.get(name, []):
                if not (fanout or topic_matches(key, routing_key)):
                    continue
                if kind is DestinationKind.EXCHANGE:
                    pending.append(destination)
                else:
                    found[destination] = None
        return list(found)

    def publish(self, exchange: str, message: _Message) -> None:
        if len(message.routing_key.encode()) > MAX_ROUTING_KEY_BYTES:
            raise PublishError(f"routing key longer than {MAX_ROUTING_KEY_BYTES} bytes")
        if exchange not in self.exchanges:
            raise PublishError(f"NOT_FOUND - no exchange '{exchange}'")
        destinations = self.route(exchange, message.routing_key)
        if not destinations:
            raise PublishError(f"unroutable: {exchange} {message.routing_key} (NO_ROUTE)")
        refused = []
        for name in destinations:
            copy = message.copy()
            if name in self.streams:
                self.streams[name].append(copy)
                continue
            queue = self.queues[name]
            if queue.full(self.topology.bounds_of(name)):
                refused.append(name)  # the other destinations keep their copy, as in RabbitMQ
                continue
            queue.ready.append(copy)
            queue.dispatch()
        if refused:
            raise PublishError(f"refused by the broker (nack): {', '.join(refused)} full")

    def requeue(self, queue: _WorkQueue, message: _Message) -> None:
        """Return a message to the front of its queue, or dead-letter it past the limit."""
        message.returns += 1
        message.redelivered = True
        limit = queue.spec.argument("x-delivery-limit")
        if isinstance(limit, int) and message.returns > limit:
            self.dead_letter_poison(queue, message)
        else:
            queue.ready.appendleft(message)
        queue.dispatch()

    def dead_letter_poison(self, queue: _WorkQueue, message: _Message) -> None:
        """What RabbitMQ does past `x-delivery-limit`: re-publish to the queue's DLX."""
        dlx = queue.spec.argument("x-dead-letter-exchange")
        if not isinstance(dlx, str):
            return  # no dead-letter exchange: RabbitMQ drops it too
        key = queue.spec.argument("x-dead-letter-routing-key")
        death = {
            "count": 1,
            "reason": "delivery_limit",
            "queue": queue.spec.name,
            "time": datetime.now(UTC).replace(microsecond=0),
            "exchange": message.exchange,
            "routing-keys": [message.routing_key],
        }
        headers = dict(message.headers)
        headers[DELIVERY_COUNT_HEADER] = 0
        headers["x-death"] = [death]
        headers.setdefault("x-first-death-exchange", message.exchange)
        headers.setdefault("x-first-death-queue", queue.spec.name)
        headers.setdefault("x-first-death-reason", "delivery_limit")
        dead = _Message(
            message.body,
            dlx,
            key if isinstance(key, str) else message.routing_key,
            message.message_id,
            headers,
        )
        try:
            self.publish(dlx, dead)
        except PublishError:
            queue.stuck.append(message)  # at-least-once: kept until the target is routable


class _Consumer:
    """One consumer of a work queue; runs the handler for each delivery as its own task."""

    def __init__(self, bus: MemoryBus, queue: _WorkQueue, handler: Handler, prefetch: int) -> None:
        self.bus, self.queue, self.handler, self.prefetch = bus, queue, handler, prefetch
        self.unacked: dict[asyncio.Task[None], _Message] = {}
        self.active = True

    @property
    def has_capacity(self) -> bool:
        return self.active and len(self.unacked) < self.prefetch

    def deliver(self, message: _Message) -> None:
        task = asyncio.get_running_loop().create_task(self._handle(message))
        self.unacked[task] = message

    async def _handle(self, message: _Message) -> None:
        headers = dict(message.headers)
        headers[DELIVERY_COUNT_HEADER] = message.returns
        delivery = Delivery(
            body=message.body,
            exchange=self.bus.topology.logical_name(message.exchange),
            routing_key=message.routing_key,
            message_id=message.message_id,
            headers=headers,
            redelivered=message.redelivered,
            delivery_count=message.returns + 1,
        )
        try:
            verdict = await self.handler(delivery)
        except Exception:
            _log.warning("handler failed; requeued", message_id=message.message_id, exc_info=True)
            verdict = REQUEUE
        task = asyncio.current_task()
        await self.settle(message, delivery, verdict)
        if task is not None:
            self.unacked.pop(task, None)
        self.queue.dispatch()

    async def settle(self, message: _Message, delivery: Delivery, verdict: Verdict) -> None:
        broker = self.bus.broker
        if verdict.disposition is Disposition.DEAD_LETTER:
            try:
                await self.bus.publish_dead_letter(self.queue.spec.name, delivery, verdict.reason)
            except PublishError as err:
                _log.warning(
                    "dead-letter failed; requeued", message_id=message.message_id, error=str(err)
                )
                broker.requeue(self.queue, message)
        elif verdict.disposition is Disposition.REQUEUE:
            broker.requeue(self.queue, message)

    async def cancel(self) -> None:
        """Stop receiving; deliveries being handled settle first (or return to the queue)."""
        if not self.active:
            return
        self.active = False
        with contextlib.suppress(ValueError):
            self.queue.consumers.remove(self)
        current = asyncio.current_task()
        pending = [t for t in self.unacked if t is not current]
        if pending:
            await asyncio.wait(pending, timeout=CANCEL_GRACE_SECONDS)
        for task, message in list(self.unacked.items()):
            if task is not current:  # still running after the grace period: give it back
                task.cancel()
                del self.unacked[task]
                self.bus.broker.requeue(self.queue, message)

    def abandon(self) -> None:
        """Connection lost: unacked messages go back to the queue, counted as deliveries."""
        self.active = False
        with contextlib.suppress(ValueError):
            self.queue.consumers.remove(self)
        for task, message in list(self.unacked.items()):
            task.cancel()
            self.bus.broker.requeue(self.queue, message)
        self.unacked.clear()


class MemoryBus:
    """A `Bus` over a `MemoryBroker` (a private one unless `broker` is given)."""

    def __init__(
        self,
        topology: Topology,
        *,
        broker: MemoryBroker | None = None,
        node_id: str | None = None,
    ) -> None:
        self.topology = topology
        self.broker = broker if broker is not None else MemoryBroker(topology)
        self.node_id = node_id
        self._connected = False
        self._consumers: list[_Consumer] = []
        self._sequences: dict[str, asyncio.Lock] = {}

    @property
    def connected(self) -> bool:
        return self._connected

    async def start(self) -> None:
        self._connected = True

    async def close(self) -> None:
        await asyncio.gather(*(c.cancel() for c in self._consumers))
        self._consumers.clear()
        self._connected = False

    async def declare_node(self, node_id: str) -> None:
        self.broker.declare(self.topology.for_node(node_id))

    async def declare_subscription(
        self, node_id: str, networks: Sequence[str], cases: Sequence[str] | None = None
    ) -> None:
        self.broker.declare(self.topology.for_subscriber(node_id, networks, cases))

    async def publish(self, msg: Outgoing) -> None:
        try:
            exchange = self.topology.exchange_name(msg.exchange)
        except KeyError as err:
            raise PublishError(str(err)) from None
        if exchange == self.topology.audit.name:
            raise PublishError(
                f"ACCESS_REFUSED - write access to exchange '{exchange}' refused: only the "
                "broker's bindings copy into the audit exchange"
            )
        await self._publish(
            exchange,
            _Message(msg.body, exchange, msg.routing_key, msg.message_id, dict(msg.headers)),
        )

    async def _publish(self, exchange: str, message: _Message) -> None:
        if not self._connected:
            raise PublishError("not connected")
        self.broker.publish(exchange, message)
        await asyncio.sleep(0)

    async def publish_many(self, msgs: Sequence[Outgoing]) -> list[PublishError | None]:
        results: list[PublishError | None] = []
        for msg in msgs:
            try:
                await self.publish(msg)
                results.append(None)
            except PublishError as err:
                results.append(err)
        return results

    async def publish_sequence(
        self, msgs: Sequence[Outgoing], *, key: str
    ) -> list[PublishError | None]:
        # One after another, and one sequence of a key after the other, as on one channel.
        async with self._sequences.setdefault(key, asyncio.Lock()):
            return await self.publish_many(msgs)

    async def publish_dead_letter(self, queue: str, delivery: Delivery, reason: str | None) -> None:
        """A DEAD_LETTER verdict: a copy to `<p>.dead` as `<node>.<reason>`, confirmed."""
        node = self.topology.node_of_queue(queue) or self.node_id
        if node is None:
            raise PublishError(f"no node owns {queue}: cannot dead-letter")
        reason = reason or "unspecified"
        try:
            key = self.topology.dead_letter_routing_key(node, reason)
        except InvalidName as err:
            raise PublishError(str(err)) from None
        exchange = self.topology.dead.name
        original = self.topology.physical_name(delivery.exchange)
        headers = dead_letter_headers(delivery, reason, original)
        await self._publish(
            exchange, _Message(delivery.body, exchange, key, delivery.message_id, headers)
        )

    async def consume(self, queue: str, handler: Handler, *, prefetch: int = 64) -> _Consumer:
        validate_prefetch(prefetch)
        if not self._connected:
            raise ConsumeError("not connected")
        if queue in self.broker.streams:
            raise ConsumeError(f"{queue} is a stream: use read_audit_stream")
        state = self.broker.queues.get(queue)
        if state is None:
            raise ConsumeError(f"NOT_FOUND - no queue '{queue}'")
        consumer = _Consumer(self, state, handler, prefetch)
        state.consumers.append(consumer)
        self._consumers.append(consumer)
        state.dispatch()
        return consumer

    def drop_connection(self) -> None:
        """Simulate a lost connection: unacked deliveries return to their queues."""
        for consumer in self._consumers:
            consumer.abandon()
        self._consumers.clear()
        self._connected = False

    def _audit_stream(self, queue: str | None = None) -> _Stream:
        if not self._connected:
            raise ConsumeError("not connected")
        name = queue or self.topology.audit_stream_queue
        stream = self.broker.streams.get(name)
        if stream is None:
            raise ConsumeError(f"NOT_FOUND - no queue '{name}'")
        return stream

    async def audit_stream_offset_at(
        self, when: datetime, *, idle_timeout: float = 1.0
    ) -> int | None:
        stream = self._audit_stream()
        since = float(int(when.timestamp()))  # RabbitMQ takes the time to the second
        found = bisect.bisect_left(stream.entries, since, key=lambda m: m.published_at)
        return found if found < len(stream.entries) else None

    async def read_audit_stream(
        self, *, offset: str | int = "first", idle_timeout: float = 1.0, queue: str | None = None
    ) -> AsyncIterator[Delivery]:
        stream = self._audit_stream(queue)
        position = _start(stream, offset)
        while True:
            if position < len(stream.entries):
                message = stream.entries[position]
                position += 1
                yield Delivery(
                    body=message.body,
                    exchange=self.topology.logical_name(message.exchange),
                    routing_key=message.routing_key,
                    message_id=message.message_id,
                    headers={**message.headers, "x-stream-offset": position - 1},
                    redelivered=False,
                    delivery_count=1,
                )
                continue
            if not await stream.wait_beyond(position, idle_timeout):
                return
