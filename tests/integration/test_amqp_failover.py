"""A bus given several brokers (the nodes of one cluster) carries on through another one
when its broker cannot be reached or goes away.

Each "broker" is a TCP relay in front of the real RabbitMQ (`tcp_relay.py`): closing a relay
refuses new connections and cuts the ones it carried, as when a cluster node's host dies.
The messages live in the one real broker behind them, as they would in a cluster's
replicated queues.
"""

from __future__ import annotations

import asyncio
import urllib.parse
import uuid
from collections.abc import AsyncIterator

import pytest
from polling import eventually
from tcp_relay import TcpRelay, free_port

from exchange.transport.amqp import AmqpBus
from exchange.transport.bus import ACK, Delivery, Outgoing, PublishError, Verdict
from exchange.transport.topology import Topology

pytestmark = pytest.mark.integration

AL, RS = "AL-ARO", "RS-PPO"


def via(amqp_url: str, port: int) -> str:
    """`amqp_url` (user, password, vhost) pointed at 127.0.0.1:`port`."""
    parts = urllib.parse.urlsplit(amqp_url)
    netloc = f"{parts.username}:{parts.password}@127.0.0.1:{port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def port_of(url: str | None) -> int | None:
    return None if url is None else urllib.parse.urlsplit(url).port


@pytest.fixture
async def relays(amqp_url: str) -> AsyncIterator[tuple[TcpRelay, TcpRelay]]:
    target = urllib.parse.urlsplit(amqp_url)
    pair = (
        TcpRelay(free_port(), (target.hostname or "127.0.0.1", target.port or 5672)),
        TcpRelay(free_port(), (target.hostname or "127.0.0.1", target.port or 5672)),
    )
    for relay in pair:
        await relay.start()
    yield pair
    for relay in pair:
        await relay.close()


def message(topology: Topology) -> Outgoing:
    return Outgoing(
        "messages", topology.routing_key(RS, "asset-inquiry", AL), b"{}", str(uuid.uuid4())
    )


async def publish_retrying(bus: AmqpBus, msg: Outgoing, within: float = 20.0) -> None:
    """Publish until confirmed, as the outbox does (channels come back after a reconnect)."""
    async with asyncio.timeout(within):
        while True:
            try:
                await bus.publish(msg)
                return
            except PublishError:
                await asyncio.sleep(0.1)


async def test_a_bus_starts_on_the_next_broker_when_the_first_does_not_answer(
    amqp_url: str, prefix: str, relays: tuple[TcpRelay, TcpRelay]
) -> None:
    dead = via(amqp_url, free_port())  # nothing listens there: connecting is refused
    alive = via(amqp_url, relays[1].port)
    bus = AmqpBus(dead, Topology(prefix=prefix), node_id=prefix, failover_urls=[alive])
    await bus.start()
    try:
        assert port_of(bus.broker_url) == relays[1].port
        assert "guest@" in (bus.broker_url or "") and ":guest@" not in (bus.broker_url or "")
        await bus.declare_node(RS)
        await bus.declare_node(AL)
        received: list[str | None] = []

        async def handler(delivery: Delivery) -> Verdict:
            received.append(delivery.message_id)
            return ACK

        await bus.consume(bus.topology.inbox_queue(RS), handler)
        sent = message(bus.topology)
        await bus.publish(sent)
        await eventually(lambda: received == [sent.message_id])
    finally:
        await bus.close()


async def test_a_bus_whose_broker_dies_carries_on_through_the_next_one(
    amqp_url: str, prefix: str, relays: tuple[TcpRelay, TcpRelay]
) -> None:
    first, second = relays
    bus = AmqpBus(
        via(amqp_url, first.port),
        Topology(prefix=prefix),
        node_id=prefix,
        failover_urls=[via(amqp_url, second.port)],
        reconnect_interval=0.2,
    )
    await bus.start()
    try:
        assert port_of(bus.broker_url) == first.port
        await bus.declare_node(RS)
        await bus.declare_node(AL)
        received: set[str | None] = set()

        async def handler(delivery: Delivery) -> Verdict:
            received.add(delivery.message_id)
            return ACK

        await bus.consume(bus.topology.inbox_queue(RS), handler, prefetch=50)
        before = [message(bus.topology) for _ in range(50)]
        assert await bus.publish_many(before) == [None] * 50
        await eventually(lambda: {m.message_id for m in before} <= received, within=20)

        await first.close()  # the first broker's host goes down, connections and all
        await eventually(lambda: bus.reconnects == 1 and bus.connected, within=20)
        assert port_of(bus.broker_url) == second.port

        after = [message(bus.topology) for _ in range(50)]
        for msg in after:
            await publish_retrying(bus, msg)
        # the consumer was restored on the second broker: it gets what was published there
        await eventually(lambda: {m.message_id for m in after} <= received, within=20)
        assert received == {m.message_id for m in before + after}
    finally:
        await bus.close()


async def test_a_bus_with_no_broker_answering_fails_to_start_after_trying_each(
    amqp_url: str, prefix: str
) -> None:
    urls = [via(amqp_url, free_port()) for _ in range(3)]
    bus = AmqpBus(urls[0], Topology(prefix=prefix), node_id=prefix, failover_urls=urls[1:])
    with pytest.raises(ConnectionError):
        async with asyncio.timeout(30):
            await bus.start()
    assert not bus.connected
