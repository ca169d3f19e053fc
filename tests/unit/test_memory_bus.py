"""What only the in-memory bus needs: a lost connection, and several nodes on one broker."""

from __future__ import annotations

import asyncio
import uuid

from exchange.transport.bus import ACK, Delivery, Outgoing, Verdict
from exchange.transport.memory import MemoryBroker, MemoryBus
from exchange.transport.topology import Topology

AL, RS = "AL-ARO", "RS-PPO"


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
