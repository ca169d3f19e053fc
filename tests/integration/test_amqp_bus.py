"""What only the RabbitMQ bus must survive: the broker dropping its connection.

The broker closes just this bus's connection (`rabbitmqctl close_connection`), which is what
a broker restart looks like to the client, without disturbing anyone else on the broker.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from polling import eventually
from rabbitmq_cli import rabbitmqctl

from exchange.transport.amqp import AmqpBus
from exchange.transport.bus import ACK, Delivery, Outgoing, PublishError, Verdict
from exchange.transport.topology import Topology

AL, RS = "AL-ARO", "RS-PPO"


@pytest.fixture
async def bus(amqp_url: str, prefix: str) -> AsyncIterator[AmqpBus]:
    # a unique node id names the connection, so the test can find it on the broker
    bus = AmqpBus(amqp_url, Topology(prefix=prefix), node_id=f"{prefix}", confirm_timeout=10)
    await bus.start()
    await bus.declare_node(RS)
    await bus.declare_node(AL)
    yield bus
    await bus.close()


def connection_pid(connection_name: str) -> str:
    listing = rabbitmqctl("list_connections", "pid", "client_properties", timeout=30)
    pids = [
        line.split("\t", 1)[0]
        for line in listing.splitlines()
        if f'{{"connection_name","{connection_name}"}}' in line
    ]
    assert len(pids) == 1, listing
    return pids[0]


def close_connection(pid: str) -> None:
    rabbitmqctl("close_connection", pid, "test: simulated broker restart", timeout=30)


def drop_connection(connection_name: str) -> None:
    close_connection(connection_pid(connection_name))


def message(bus: AmqpBus) -> Outgoing:
    key = bus.topology.routing_key(RS, "asset-inquiry", AL)
    return Outgoing("messages", key, b"{}", str(uuid.uuid4()))


async def test_consumers_come_back_after_the_connection_is_lost(bus: AmqpBus) -> None:
    received: list[Delivery] = []

    async def handler(delivery: Delivery) -> Verdict:
        received.append(delivery)
        return ACK

    await bus.consume(bus.topology.inbox_queue(RS), handler)
    await bus.publish(message(bus))
    await eventually(lambda: len(received) == 1)

    await asyncio.to_thread(drop_connection, f"exchange {bus.node_id}")
    await eventually(lambda: bus.reconnects == 1 and bus.connected)

    after = message(bus)
    async with asyncio.timeout(15):
        while True:  # channels are restored just after the connection
            try:
                await bus.publish(after)
                break
            except PublishError:
                await asyncio.sleep(0.1)
    await eventually(lambda: any(d.message_id == after.message_id for d in received))


async def test_publishes_in_flight_when_the_connection_drops_fail_and_none_is_lost(
    bus: AmqpBus,
) -> None:
    pid = connection_pid(f"exchange {bus.node_id}")
    batch = [message(bus) for _ in range(5000)]
    publishing = asyncio.create_task(bus.publish_many(batch))
    await asyncio.to_thread(close_connection, pid)
    async with asyncio.timeout(30):
        results = await publishing
    failed = [m for m, r in zip(batch, results, strict=True) if r is not None]
    confirmed = {m.message_id for m, r in zip(batch, results, strict=True) if r is None}
    assert failed, "the connection was dropped while publishing, some publishes must fail"

    received: set[str | None] = set()

    async def handler(delivery: Delivery) -> Verdict:
        received.add(delivery.message_id)
        return ACK

    await eventually(lambda: bus.connected)
    await eventually(lambda: bus._publisher is not None and not bus._publisher.is_closed)
    await bus.consume(bus.topology.inbox_queue(RS), handler, prefetch=500)
    await eventually(lambda: confirmed <= received)
    # what failed may still have arrived (a lost confirm is not a refusal): the caller
    # retries it and the receiver's dedupe by message id absorbs the duplicate.
    assert received <= {m.message_id for m in batch}
