"""The RabbitMQ bus: a robust aio-pika connection, confirmed mandatory persistent publishes,
verdict-driven consumers (`amqp_consumer`), and reads of the audit stream (`amqp_stream`).

With several broker URLs (the nodes of one cluster), the connection tries them in turn: the
first one that answers at start-up, then, after a loss, the next one at each attempt, so a
node whose broker died carries on through another member of the cluster.

A small pool of long-lived confirm channels carries the publishes (many in flight on each,
spread round robin); each consumer has its own long-lived channel, so its prefetch is its
own and restored on reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar, cast

import aiormq
from aio_pika.abc import AbstractRobustChannel
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic
from yarl import URL

from exchange.log import get_logger
from exchange.transport.amqp_consumer import CONNECTION_ERRORS, AmqpConsumer, delivery_of
from exchange.transport.amqp_stream import read_stream, stream_offset_at
from exchange.transport.bus import (
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
from exchange.transport.failover import FailoverConnection
from exchange.transport.topology import (
    MAX_ROUTING_KEY_BYTES,
    Declarations,
    DestinationKind,
    InvalidName,
    Topology,
)

_log = get_logger(__name__)
_T = TypeVar("_T")

PUBLISHER_CHANNELS = 8
"""Confirm channels per bus. aiormq lets one publish at a time through a channel's lock,
and under load each hand-over of that lock waits a turn of the event loop; a few channels
keep that many hand-overs going at once."""
PERSISTENT = 2  # AMQP delivery mode
_CONNECTION_ERRORS = CONNECTION_ERRORS
CONNECT_TIMEOUT_SECONDS = 15.0
"""How long one connection attempt to one broker may take before the next is tried."""
_REFUSED_LOGIN = (ssl.SSLError, aiormq.exceptions.ProbableAuthenticationError)
"""Errors that another broker of the same cluster would answer alike: not worth a failover."""


class AmqpBus:
    """A `Bus` on RabbitMQ.

    `provisioned=True` is for a virtual host an operator set up from the rendered
    definitions: `declare_node` then only checks (passively) that the node's exchanges and
    queues exist, which needs no configure permission. `ssl_context` is for `amqps://`
    (see `exchange.transport.tls`).
    """

    def __init__(
        self,
        url: str,
        topology: Topology,
        *,
        node_id: str | None = None,
        provisioned: bool = False,
        confirm_timeout: float = 30.0,
        reconnect_interval: float = 1.0,
        max_in_flight: int = 1000,
        publisher_channels: int = PUBLISHER_CHANNELS,
        ssl_context: ssl.SSLContext | None = None,
        failover_urls: Sequence[str] = (),
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    ) -> None:
        if publisher_channels < 1:
            raise ValueError("a bus needs at least one publisher channel")
        self.url = url
        self.urls = (url, *failover_urls)
        self.connect_timeout = connect_timeout
        self.ssl_context = ssl_context
        self.topology = topology
        self.node_id = node_id
        self.provisioned = provisioned
        self.confirm_timeout = confirm_timeout
        self.reconnect_interval = reconnect_interval
        self.max_in_flight = max_in_flight
        self.publisher_channels = publisher_channels
        self._connection: FailoverConnection | None = None
        self._publishers: tuple[AbstractRobustChannel, ...] = ()
        self._next_publisher = 0
        self._consumers: set[AmqpConsumer] = set()
        self._known_exchanges: set[str] = set()
        self._exchange_check = asyncio.Lock()
        self._in_flight: dict[str, asyncio.Future[None]] = {}
        self._closing = False
        self._reconnects = 0

    @property
    def reconnects(self) -> int:
        """How many times the connection was re-established after a loss."""
        return self._reconnects

    def _on_reconnect(self, *_: Any) -> None:
        self._reconnects += 1
        _log.info(
            "reconnected to the broker",
            node=self.node_id,
            reconnects=self._reconnects,
            url=self.broker_url,
        )

    @property
    def _publisher(self) -> AbstractRobustChannel | None:
        """The pool's first channel (restored after a reconnect like the others)."""
        return self._publishers[0] if self._publishers else None

    @property
    def connected(self) -> bool:
        conn = self._connection
        return (
            conn is not None
            and not self._closing
            and not conn.is_closed
            and conn.connected.is_set()
            and conn.transport is not None
        )

    @property
    def broker_url(self) -> str | None:
        """The URL of the broker the bus is connected to (or last tried), password hidden."""
        conn = self._connection
        return None if conn is None else str(conn.url.with_password(None))

    async def start(self) -> None:
        self._connection = await self._connect()
        self._connection.reconnect_callbacks.add(self._on_reconnect)
        try:
            self._publishers = tuple(
                [
                    await self._connection.channel(publisher_confirms=True, on_return_raises=True)
                    for _ in range(self.publisher_channels)
                ]
            )
        except BaseException:  # half a start: let a later `start` begin from scratch
            connection, self._connection = self._connection, None
            await connection.close()
            raise

    async def _connect(self) -> FailoverConnection:
        """Connect to the first broker that answers, trying each URL once."""
        name = f"exchange {self.node_id or ''}".strip()
        failure: BaseException | None = None
        for first in range(len(self.urls)):
            connection = FailoverConnection(
                self.urls,
                first,
                client_properties={"connection_name": name},
                reconnect_interval=self.reconnect_interval,
                ssl_context=self.ssl_context,
            )
            try:
                await connection.connect(timeout=self.connect_timeout)
            except _REFUSED_LOGIN:
                raise
            except (*_CONNECTION_ERRORS, TimeoutError) as err:
                failure = err
                with contextlib.suppress(*_CONNECTION_ERRORS):
                    await connection.close()
                if len(self.urls) > 1:
                    _log.warning(
                        "broker.unreachable",
                        node=self.node_id,
                        url=str(URL(self.urls[first]).with_password(None)),
                        error=f"{type(err).__name__}: {err}",
                    )
                continue
            return connection
        assert failure is not None
        raise failure

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        await asyncio.gather(*(c.cancel() for c in list(self._consumers)))
        if self._connection is not None:
            await self._connection.close()
        self._connection = None
        self._publishers = ()

    # -- declarations ------------------------------------------------------------------------
    async def declare_node(self, node_id: str) -> None:
        await self._declare(self.topology.for_node(node_id))

    async def declare_subscription(
        self, node_id: str, networks: Sequence[str], cases: Sequence[str] | None = None
    ) -> None:
        await self._declare(self.topology.for_subscriber(node_id, networks, cases))

    async def _declare(self, decl: Declarations) -> None:
        passive = self.provisioned
        async with self._raw_channel() as ch:
            try:
                for ex in decl.exchanges:
                    await ch.exchange_declare(
                        ex.name, exchange_type=ex.kind.value, durable=True, passive=passive
                    )
                for q in decl.queues:
                    arguments: dict[str, Any] = dict(q.argument_map)
                    await ch.queue_declare(
                        q.name, durable=True, arguments=arguments, passive=passive
                    )
                for b in decl.bindings if not passive else ():
                    if b.destination_kind is DestinationKind.EXCHANGE:
                        await ch.exchange_bind(b.destination, b.source, b.routing_key)
                    else:
                        await ch.queue_bind(b.destination, b.source, routing_key=b.routing_key)
            except aiormq.exceptions.AMQPError as err:
                raise BusError(f"declaring the topology failed: {err}") from err
        self._known_exchanges.update(ex.name for ex in decl.exchanges)

    @contextlib.asynccontextmanager
    async def _raw_channel(self) -> AsyncIterator[aiormq.abc.AbstractChannel]:
        """A short-lived plain channel for declarations and stream reads (never restored)."""
        conn = self._connection
        if conn is None or conn.transport is None or not self.connected:
            raise BusError("not connected to the broker")
        channel = await conn.transport.connection.channel()
        try:
            yield channel
        finally:
            with contextlib.suppress(*_CONNECTION_ERRORS):
                await channel.close()

    async def _ensure_exchange(self, name: str) -> None:
        """Check once that an exchange exists, so that a publish to a missing one fails alone
        instead of closing the shared publishing channel under every other publish."""
        if name in self._known_exchanges:
            return
        async with self._exchange_check:
            if name in self._known_exchanges:
                return
            try:
                async with self._raw_channel() as ch:
                    await ch.exchange_declare(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity as err:
                raise PublishError(f"no exchange {name}: {err}") from err
            except (BusError, *_CONNECTION_ERRORS) as err:
                raise PublishError(f"cannot check exchange {name}: {err}") from err
            self._known_exchanges.add(name)

    # -- publishing --------------------------------------------------------------------------
    async def publish(self, msg: Outgoing, *, channel: AbstractRobustChannel | None = None) -> None:
        try:
            exchange = self.topology.exchange_name(msg.exchange)
        except KeyError as err:
            raise PublishError(str(err)) from None
        await self._send(
            exchange, msg.routing_key, msg.body, msg.message_id, msg.headers, channel=channel
        )

    async def publish_sequence(
        self, msgs: Sequence[Outgoing], *, key: str
    ) -> list[PublishError | None]:
        """On the key's confirm channel, each publish started in order: they pass the
        channel's (first come, first served) lock and reach the connection's writer in
        this order, after those of earlier calls with the same key."""
        if not self.connected or not self._publishers:
            return [PublishError("not connected to the broker")] * len(msgs)
        channel = self._publishers[zlib.crc32(key.encode()) % len(self._publishers)]
        if channel.is_closed:
            channel = self._pick_publisher()
        sends = [asyncio.ensure_future(self.publish(msg, channel=channel)) for msg in msgs]
        outcomes = await asyncio.gather(*sends, return_exceptions=True)
        results: list[PublishError | None] = []
        for outcome in outcomes:
            if isinstance(outcome, PublishError) or outcome is None:
                results.append(outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
        return results

    async def publish_many(self, msgs: Sequence[Outgoing]) -> list[PublishError | None]:
        """All in flight at once, up to `max_in_flight` (then a sliding window of that size)."""
        results: list[PublishError | None] = [None] * len(msgs)
        pending = iter(range(len(msgs)))

        async def publisher() -> None:
            for i in pending:
                try:
                    await self.publish(msgs[i])
                except PublishError as err:
                    results[i] = err

        await asyncio.gather(*(publisher() for _ in range(min(len(msgs), self.max_in_flight))))
        return results

    async def _send(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        message_id: str,
        headers: Mapping[str, Any],
        *,
        channel: AbstractRobustChannel | None = None,
    ) -> None:
        if len(routing_key.encode()) > MAX_ROUTING_KEY_BYTES:
            raise PublishError(f"routing key longer than {MAX_ROUTING_KEY_BYTES} bytes")
        if not self.connected or not self._publishers:
            raise PublishError("not connected to the broker")
        await self._ensure_exchange(exchange)
        properties = Basic.Properties(
            delivery_mode=PERSISTENT, message_id=message_id, headers=dict(headers) or None
        )
        # Returns are matched to publishes by message id: one id in flight at a time.
        while (earlier := self._in_flight.get(message_id)) is not None:
            await asyncio.wait([earlier])
        done = asyncio.get_running_loop().create_future()
        self._in_flight[message_id] = done
        try:
            result = await self._confirmed(
                channel or self._pick_publisher(),
                # wait=False: the channel's lock is released once the frame is queued for
                # the connection's writer, not after it was written; the confirm is awaited
                # all the same.
                lambda ch, timeout: cast(aiormq.Channel, ch).basic_publish(
                    body,
                    exchange=exchange,
                    routing_key=routing_key,
                    properties=properties,
                    mandatory=True,
                    timeout=timeout,
                    wait=False,
                ),
            )
        finally:
            del self._in_flight[message_id]
            done.set_result(None)
        if not isinstance(result, Basic.Ack):
            raise PublishError(f"not acknowledged by the broker: {result!r}")

    def _pick_publisher(self) -> AbstractRobustChannel:
        """The next channel of the pool, round robin, passing over closed ones (a refusal
        closes a channel until it is reopened) unless every one is closed."""
        pool = self._publishers
        for _ in range(len(pool)):
            channel = pool[self._next_publisher]
            self._next_publisher = (self._next_publisher + 1) % len(pool)
            if not channel.is_closed:
                return channel
        return channel

    async def _confirmed(
        self,
        channel: AbstractRobustChannel,
        send: Callable[[aiormq.abc.AbstractChannel, float], Awaitable[_T]],
    ) -> _T:
        """`send` on the channel's open AMQP channel, within `confirm_timeout` in all."""
        try:
            underlay = await channel.get_underlay_channel()
            if underlay.is_closed:  # being reopened: wait for it, within the same budget
                start = asyncio.get_running_loop().time()
                async with asyncio.timeout(self.confirm_timeout):
                    underlay = await self._open_underlay(channel)
                remaining = self.confirm_timeout - (asyncio.get_running_loop().time() - start)
                return await send(underlay, max(remaining, 0.001))
            return await send(underlay, self.confirm_timeout)
        except aiormq.exceptions.PublishError as err:
            raise PublishError(f"unroutable (returned by the broker): {err}") from err
        except aiormq.exceptions.DeliveryError as err:
            raise PublishError(f"refused by the broker (nack): {err}") from err
        except TimeoutError as err:
            raise PublishError(f"no confirm within {self.confirm_timeout}s") from err
        except aiormq.exceptions.ChannelAccessRefused as err:
            raise PublishError(f"refused by the broker: {err}") from err
        except _CONNECTION_ERRORS as err:
            raise PublishError(f"channel or connection lost: {err!r}") from err

    @staticmethod
    async def _open_underlay(channel: AbstractRobustChannel) -> aiormq.abc.AbstractChannel:
        """The channel's current AMQP channel, waiting while a closed one is being reopened
        (the broker closes a channel on a refusal such as ACCESS_REFUSED)."""
        while True:
            await channel.ready()
            underlay = await channel.get_underlay_channel()
            if not underlay.is_closed:
                return underlay
            await asyncio.sleep(0.02)

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
        headers = dead_letter_headers(
            delivery, reason, self.topology.physical_name(delivery.exchange)
        )
        await self._send(
            self.topology.dead.name, key, delivery.body, delivery.message_id or "", headers
        )

    # -- consuming ---------------------------------------------------------------------------
    async def consume(self, queue: str, handler: Handler, *, prefetch: int = 64) -> AmqpConsumer:
        validate_prefetch(prefetch)
        if queue == self.topology.audit_stream_queue:
            raise ConsumeError(f"{queue} is a stream: use read_audit_stream")
        try:
            async with self._raw_channel() as ch:
                await ch.queue_declare(queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity as err:
            raise ConsumeError(f"no queue {queue}: {err}") from err
        except aiormq.exceptions.ChannelAccessRefused as err:
            raise ConsumeError(f"may not consume {queue}: {err}") from err
        except (BusError, *_CONNECTION_ERRORS) as err:
            raise ConsumeError(f"cannot consume {queue}: {err}") from err
        assert self._connection is not None
        channel = await self._connection.channel(publisher_confirms=False)
        consumer = AmqpConsumer(self, queue, handler, channel)
        try:
            await channel.set_qos(prefetch_count=prefetch)  # remembered across reopenings
            await consumer.subscribe()
        except aiormq.exceptions.AMQPError as err:
            with contextlib.suppress(*_CONNECTION_ERRORS):
                await channel.close()
            raise ConsumeError(f"cannot consume {queue}: {err}") from err
        channel.reopen_callbacks.add(consumer.resubscribe)
        self._consumers.add(consumer)
        return consumer

    def delivery(self, message: DeliveredMessage) -> Delivery:
        return delivery_of(message, self.topology)

    async def settle(
        self,
        queue: str,
        channel: aiormq.abc.AbstractChannel,
        message: DeliveredMessage,
        delivery: Delivery,
        verdict: Verdict,
    ) -> None:
        """Apply a verdict on the channel the delivery came on."""
        tag = message.delivery_tag
        if tag is None:
            return
        # wait=False: queued for the connection's writer, not awaited until written (the
        # broker redelivers whatever it did not get, as for a lost connection).
        try:
            if verdict.disposition is Disposition.ACK:
                await channel.basic_ack(tag, wait=False)
            elif verdict.disposition is Disposition.REQUEUE:
                await channel.basic_nack(tag, requeue=True, wait=False)
            else:
                try:
                    await self.publish_dead_letter(queue, delivery, verdict.reason)
                except PublishError as err:
                    _log.warning(
                        "dead-letter failed; requeued",
                        message_id=delivery.message_id,
                        error=str(err),
                    )
                    await channel.basic_nack(tag, requeue=True, wait=False)
                else:
                    await channel.basic_ack(tag, wait=False)
        except _CONNECTION_ERRORS as err:
            # The channel this delivery came on is gone; the broker redelivers it.
            _log.info("could not settle delivery", message_id=delivery.message_id, error=repr(err))

    def read_audit_stream(
        self, *, offset: str | int = "first", idle_timeout: float = 1.0, queue: str | None = None
    ) -> AsyncIterator[Delivery]:
        return read_stream(self, offset=offset, idle_timeout=idle_timeout, queue=queue)

    async def audit_stream_offset_at(
        self, when: datetime, *, idle_timeout: float = 1.0
    ) -> int | None:
        return await stream_offset_at(self, when, idle_timeout=idle_timeout)
