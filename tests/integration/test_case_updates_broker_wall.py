"""The broker's wall around case updates, with each node's own broker credentials.

The definitions rendered by the topology, imported into a real RabbitMQ, let a node publish
on `<p>.cases` and bind its subscription queue only with routing keys of the networks it is
a member of. A non-member can neither publish an update for the network, nor bind any
queue to its updates, nor read a member's queue; a member cannot reach into a network it is
not in. Users are global on a broker: names are unique per run and deleted afterwards.
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

pytestmark = pytest.mark.integration

PCN = "see-pcn"  # members: al, rs, md
PAIR = "md-rs"  # members: md, rs


@dataclass(frozen=True, kw_only=True)
class Broker(ImportedVhost):
    al: str
    rs: str
    md: str
    kz: str  # in no network


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    tag = secrets.token_hex(4).upper()
    al, rs, md, kz = (f"{cc}-W{tag}" for cc in ("AL", "RS", "MD", "KZ"))
    b = Broker(
        vhost=f"xbwall-{tag.lower()}",
        topology=Topology(),
        password=secrets.token_urlsafe(16),
        al=al,
        rs=rs,
        md=md,
        kz=kz,
    )
    users = [al, rs, md, kz]
    definitions = b.topology.render_definitions(
        b.vhost,
        users,
        {PCN: [al, rs, md], PAIR: [md, rs]},
        passwords=dict.fromkeys(users, b.password),
    )
    with imported_definitions(b.vhost, definitions, users):
        yield b


@pytest.fixture
async def bus_of(broker: Broker) -> AsyncIterator[dict[str, AmqpBus]]:
    buses = {
        user: AmqpBus(broker.url(user), broker.topology, node_id=user, provisioned=True)
        for user in (broker.al, broker.rs, broker.md, broker.kz)
    }
    for bus in buses.values():
        await bus.start()
    yield buses
    for bus in buses.values():
        await bus.close()


def case_update(broker: Broker, network: str, case: str = "AL-2026-0042") -> Outgoing:
    key = broker.topology.case_routing_key(network, case, "frozen")
    return Outgoing("cases", key, b"{}", str(uuid.uuid4()))


async def test_a_member_publishes_and_every_member_and_only_members_receive(
    broker: Broker, bus_of: dict[str, AmqpBus]
) -> None:
    got: dict[str, list[str | None]] = {broker.rs: [], broker.md: []}

    def collect(user: str):  # type: ignore[no-untyped-def]
        async def handler(delivery: Delivery) -> Verdict:
            got[user].append(delivery.message_id)
            return ACK

        return handler

    for user in got:
        await bus_of[user].consume(broker.topology.subscription_queue(user), collect(user))
    sent = case_update(broker, PCN)
    await bus_of[broker.al].publish(sent)
    for _ in range(250):
        if all(sent.message_id in ids for ids in got.values()):
            break
        await asyncio.sleep(0.02)
    assert got == {broker.rs: [sent.message_id], broker.md: [sent.message_id]}


async def test_a_non_member_may_not_publish_an_update_for_the_network(
    broker: Broker, bus_of: dict[str, AmqpBus]
) -> None:
    outsider = bus_of[broker.kz]
    for network in (PCN, PAIR):
        forged = case_update(broker, network)
        with pytest.raises(PublishError, match="ACCESS_REFUSED - access to topic") as refused:
            await outsider.publish(forged)
        assert forged.routing_key in str(refused.value)


async def test_a_member_may_not_publish_into_a_network_it_is_not_in(
    broker: Broker, bus_of: dict[str, AmqpBus]
) -> None:
    with pytest.raises(PublishError, match="ACCESS_REFUSED"):
        await bus_of[broker.al].publish(case_update(broker, PAIR))
    await bus_of[broker.md].publish(case_update(broker, PAIR))  # a member of it may


async def test_a_non_member_can_neither_read_a_members_queue_nor_bind_to_the_updates(
    broker: Broker, bus_of: dict[str, AmqpBus]
) -> None:
    outsider = bus_of[broker.kz]
    with pytest.raises(ConsumeError, match="ACCESS_REFUSED"):
        await outsider.consume(broker.topology.subscription_queue(broker.rs), _never)
    connection = await aio_pika.connect(broker.url(broker.kz))
    try:
        channel = await connection.channel()
        # its own subscription queue it may declare (configure permission on its own names) ...
        queue = await channel.declare_queue(
            broker.topology.subscription_queue(broker.kz),
            durable=True,
            arguments={"x-queue-type": "quorum"},
        )
        # ... but no binding key of the network's updates is granted
        for key in (f"{PCN}.#", "#", "*.AL-2026-0042.*", f"{PCN}.AL-2026-0042.frozen"):
            channel = await connection.channel()
            queue = await channel.get_queue(broker.topology.subscription_queue(broker.kz))
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
                await queue.bind(broker.topology.cases.name, key)
    finally:
        await connection.close()


async def test_a_member_cannot_bind_its_queue_to_a_network_it_is_not_in(broker: Broker) -> None:
    connection = await aio_pika.connect(broker.url(broker.al))
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(broker.topology.subscription_queue(broker.al))
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await queue.bind(broker.topology.cases.name, f"{PAIR}.#")
        channel = await connection.channel()
        queue = await channel.get_queue(broker.topology.subscription_queue(broker.al))
        await queue.bind(broker.topology.cases.name, f"{PCN}.AL-2026-0042.*")  # its own: fine
    finally:
        await connection.close()


async def _never(delivery: Delivery) -> Verdict:
    raise AssertionError(f"nothing should be delivered here, got {delivery.message_id}")
