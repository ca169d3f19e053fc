"""What only the in-memory bus needs: a lost connection, several nodes on one broker, and
the refusals RabbitMQ makes with the rendered definitions (the audit exchange, full queues)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from exchange.transport.bus import ACK, Delivery, Outgoing, PublishError, Verdict
from exchange.transport.memory import MemoryBroker, MemoryBus
from exchange.transport.topology import QueueBounds, Topology

AL, RS, MD = "AL-ARO", "RS-PPO", "MD-ARO"


async def test_a_lost_connection_returns_unacked_messages_for_redelivery() -> None:
    topology = Topology()
    broker = MemoryBroker(topology)
    first, second = MemoryBus(topology, broker=broker), MemoryBus(topology, broker=broker)
    for bus in (first, second):
        await bus.start()
    await first.declare_node(RS)
    stuck = asyncio.Event()
    held: list[Delivery] = []

    async def never_finishes(delivery: Delivery) -> Verdict:
        held.append(delivery)
        await stuck.wait()
        return ACK

    got: list[Delivery] = []

    async def handler(delivery: Delivery) -> Verdict:
        got.append(delivery)
        return ACK

    await first.consume(topology.inbox_queue(RS), never_finishes)
    sent = Outgoing("messages", topology.routing_key(RS, "receipt", AL), b"{}", str(uuid.uuid4()))
    await first.publish(sent)
    await asyncio.sleep(0)
    assert [d.message_id for d in held] == [sent.message_id]

    first.drop_connection()
    assert not first.connected
    await second.consume(topology.inbox_queue(RS), handler)
    await asyncio.sleep(0.01)
    assert [(d.message_id, d.redelivered, d.delivery_count) for d in got] == [
        (sent.message_id, True, 2)
    ]
    await second.close()


async def test_nodes_sharing_a_broker_see_each_others_declarations() -> None:
    topology = Topology()
    broker = MemoryBroker(topology)
    al, rs = MemoryBus(topology, broker=broker), MemoryBus(topology, broker=broker)
    await al.start()
    await rs.start()
    await rs.declare_node(RS)
    received: list[Delivery] = []

    async def handler(delivery: Delivery) -> Verdict:
        received.append(delivery)
        return ACK

    await rs.consume(topology.inbox_queue(RS), handler)
    key = topology.routing_key(RS, "asset-inquiry", AL)
    await al.publish(Outgoing("messages", key, b"{}", str(uuid.uuid4())))
    await asyncio.sleep(0.01)
    assert len(received) == 1
    await al.close()
    await rs.close()


async def test_no_node_may_publish_into_the_audit_exchange() -> None:
    """As RabbitMQ with the rendered definitions: only the broker's bindings copy into it."""
    topology = Topology()
    bus = MemoryBus(topology)
    await bus.start()
    await bus.declare_node(RS)
    with pytest.raises(PublishError, match="ACCESS_REFUSED"):
        await bus.publish(Outgoing("audit", "", b"{}", str(uuid.uuid4())))
    checkpoint = Outgoing("messages", topology.checkpoint_routing_key(AL), b"{}", "cp-1")
    await bus.publish(checkpoint)  # through the messages exchange, copied into the stream
    assert [d.routing_key async for d in bus.read_audit_stream(idle_timeout=0.01)] == [
        checkpoint.routing_key
    ]
    await bus.close()


async def test_a_full_inbox_refuses_more_while_other_nodes_keep_receiving() -> None:
    topology = Topology(inbox_bounds=QueueBounds(max_length=3, max_bytes=10_000))
    bus = MemoryBus(topology)
    await bus.start()
    for node in (AL, RS, MD):
        await bus.declare_node(node)

    def to(node: str, body: bytes = b"{}") -> Outgoing:
        key = topology.routing_key(node, "asset-inquiry", AL)
        return Outgoing("messages", key, body, str(uuid.uuid4()))

    results = await bus.publish_many([to(RS) for _ in range(6)])
    # like a RabbitMQ 3.10 quorum queue: refused once it holds more than its bound
    assert results[:4] == [None] * 4
    assert all(isinstance(r, PublishError) and "nack" in str(r) for r in results[4:])
    await bus.publish(to(MD))  # another node's inbox is not affected
    assert len(bus.broker.queues[topology.inbox_queue(MD)].ready) == 1
    # bytes count too: a queue holding more than its bytes refuses the next message
    await bus.publish(to(AL, b"x" * 10_001))
    with pytest.raises(PublishError, match="full"):
        await bus.publish(to(AL))
    await bus.close()


async def test_the_stream_tells_where_a_reader_attaching_at_a_time_would_start() -> None:
    topology = Topology()
    bus = MemoryBus(topology)
    await bus.start()
    await bus.declare_node(RS)
    for _ in range(3):
        await bus.publish(Outgoing("messages", f"{RS}.receipt.{AL}", b"{}", str(uuid.uuid4())))
    entries = bus.broker.streams[topology.audit_stream_queue].entries
    start = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    for i, entry in enumerate(entries):
        entry.published_at = (start + timedelta(seconds=10 * i, milliseconds=300)).timestamp()
    at = bus.audit_stream_offset_at
    assert await at(start - timedelta(days=1)) == 0
    assert await at(start + timedelta(seconds=10)) == 1  # to the second, as RabbitMQ does
    assert await at(start + timedelta(seconds=10, milliseconds=900)) == 1
    assert await at(start + timedelta(seconds=11)) == 2
    assert await at(start + timedelta(seconds=21)) is None
    await bus.close()
