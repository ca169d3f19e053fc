"""The rendered definitions, imported into a real broker, make the broker a second wall.

A node's broker user may publish only with routing keys naming itself as sender, and may
read only its own queues. Users are global on a broker, so names are unique per test and
deleted afterwards, with the test's virtual host.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aio_pika
import aiormq
import pytest
from rabbitmq_cli import ImportedVhost, imported_definitions

from exchange.transport.amqp import AmqpBus
from exchange.transport.bus import ACK, ConsumeError, Delivery, Outgoing, PublishError, Verdict
from exchange.transport.topology import Topology

NETWORK = "see-arn"


@dataclass(frozen=True, kw_only=True)
class Broker(ImportedVhost):
    a: str  # member of NETWORK
    b: str  # member of NETWORK
    c: str  # in no network
    auditor: str


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    tag = secrets.token_hex(4).upper()
    a, b, c = (f"{cc}-T{tag}" for cc in ("AL", "RS", "MD"))
    net = Broker(
        vhost=f"xbperm-{tag.lower()}",
        topology=Topology(prefix="xb"),
        a=a,
        b=b,
        c=c,
        auditor=f"AUDIT-{tag}",
        password=secrets.token_urlsafe(16),
    )
    users = [a, b, c, net.auditor]
    definitions = net.topology.render_definitions(
        net.vhost,
        [a, b, c],
        {NETWORK: [a, b]},
        passwords=dict.fromkeys(users, net.password),
        auditors=[net.auditor],
    )
    with imported_definitions(net.vhost, definitions, users):
        yield net


@pytest.fixture
async def bus_a(broker: Broker) -> AsyncIterator[AmqpBus]:
    bus = AmqpBus(broker.url(broker.a), broker.topology, node_id=broker.a, provisioned=True)
    await bus.start()
    await bus.declare_node(broker.a)  # passive: node users may not configure exchanges
    yield bus
    await bus.close()


def to(broker: Broker, recipient: str, sender: str) -> Outgoing:
    key = broker.topology.routing_key(recipient, "asset-inquiry", sender)
    return Outgoing("messages", key, b"{}", str(uuid.uuid4()))


async def test_a_node_publishes_as_itself_and_its_recipient_receives(
    broker: Broker, bus_a: AmqpBus
) -> None:
    sent = to(broker, broker.b, broker.a)
    await bus_a.publish(sent)
    bus_b = AmqpBus(broker.url(broker.b), broker.topology, node_id=broker.b, provisioned=True)
    await bus_b.start()
    try:
        got: list[Delivery] = []

        async def handler(delivery: Delivery) -> Verdict:
            got.append(delivery)
            return ACK

        await bus_b.consume(broker.topology.inbox_queue(broker.b), handler)
        for _ in range(500):
            if any(d.message_id == sent.message_id for d in got):
                break
            await asyncio.sleep(0.02)
        assert any(d.message_id == sent.message_id for d in got)
    finally:
        await bus_b.close()


async def test_the_broker_refuses_a_node_publishing_as_another(
    broker: Broker, bus_a: AmqpBus
) -> None:
    forged = to(broker, broker.b, broker.b)  # A claims to be B
    with pytest.raises(PublishError, match="ACCESS_REFUSED - access to topic") as refused:
        await bus_a.publish(forged)
    assert forged.routing_key in str(refused.value)
    with pytest.raises(PublishError, match="ACCESS_REFUSED - access to topic"):
        await bus_a.publish(to(broker, broker.b, broker.c))
    await bus_a.publish(to(broker, broker.b, broker.a))  # the channel is back for honest use
    # A may not put anything into B's dead-letter queue either
    dead_key = broker.topology.dead_letter_routing_key(broker.b, "signature.invalid")
    with pytest.raises(PublishError, match="ACCESS_REFUSED"):
        await bus_a._send(broker.topology.dead.name, dead_key, b"{}", str(uuid.uuid4()), {})


async def test_a_node_cannot_read_or_bind_what_is_not_addressed_to_it(
    broker: Broker, bus_a: AmqpBus
) -> None:
    with pytest.raises(ConsumeError, match="ACCESS_REFUSED"):
        await bus_a.consume(broker.topology.inbox_queue(broker.b), _never)
    with pytest.raises(ConsumeError, match="ACCESS_REFUSED"):
        await bus_a.consume(broker.topology.dead_queue(broker.b), _never)
    connection = await aio_pika.connect(broker.url(broker.a))
    try:
        for key in ("#", f"{broker.b}.#", "*.asset-inquiry.*"):
            channel = await connection.channel()
            inbox = await channel.get_queue(broker.topology.inbox_queue(broker.a))
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
                await inbox.bind(broker.topology.messages.name, key)
    finally:
        await connection.close()


async def test_case_updates_only_within_the_networks_a_node_belongs_to(
    broker: Broker,
) -> None:
    key = broker.topology.case_routing_key(NETWORK, "AL-2026-0042", "opened")
    member = AmqpBus(broker.url(broker.a), broker.topology, provisioned=True)
    outsider = AmqpBus(broker.url(broker.c), broker.topology, provisioned=True)
    await member.start()
    await outsider.start()
    try:
        await member.publish(Outgoing("cases", key, b"{}", str(uuid.uuid4())))
        with pytest.raises(PublishError, match="ACCESS_REFUSED"):
            await outsider.publish(Outgoing("cases", key, b"{}", str(uuid.uuid4())))
    finally:
        await member.close()
        await outsider.close()


async def test_the_auditor_reads_the_audit_stream_and_nothing_else(
    broker: Broker, bus_a: AmqpBus
) -> None:
    sent = to(broker, broker.b, broker.a)
    await bus_a.publish(sent)
    auditor = AmqpBus(broker.url(broker.auditor), broker.topology)
    await auditor.start()
    try:
        seen = [d.message_id async for d in auditor.read_audit_stream(idle_timeout=0.5)]
        assert sent.message_id in seen
        with pytest.raises(ConsumeError, match="ACCESS_REFUSED"):
            await auditor.consume(broker.topology.inbox_queue(broker.b), _never)
    finally:
        await auditor.close()


async def _never(delivery: Delivery) -> Verdict:
    raise AssertionError(f"nothing should be delivered here, got {delivery.message_id}")
