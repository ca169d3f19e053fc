"""The broker's wall around a private-sector member, with each node's own broker login.

The definitions rendered from the signed directory (`exchange topology render --directory`)
let a virtual-asset service provider publish only the types its role may send, as itself,
and bind its inbox only to the types it may receive; it has no access to case updates. An
authority's message of another type to it finds no queue: the broker returns it. Only the
secretariat may publish directories, and it may publish nothing else.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aio_pika
import aiormq
import pytest
from rabbitmq_cli import ImportedVhost, imported_definitions

from exchange.directory.document import default_permissions
from exchange.transport.amqp import AmqpBus
from exchange.transport.bus import Outgoing, PublishError
from exchange.transport.topology import Topology

pytestmark = pytest.mark.integration

PCN = "see-pcn"


@dataclass(frozen=True, kw_only=True)
class Broker(ImportedVhost):
    al: str
    rs: str
    vasp: str
    secretariat: str


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    tag = secrets.token_hex(4).upper()
    al, rs, vasp = f"AL-P{tag}", f"RS-P{tag}", f"LT-V{tag}"
    b = Broker(
        vhost=f"xbsector-{tag.lower()}",
        topology=Topology(),
        password=secrets.token_urlsafe(16),
        al=al,
        rs=rs,
        vasp=vasp,
        secretariat=f"sec{tag.lower()}",
    )
    rule = next(r for role, r in default_permissions().items() if role.value == "private-sector")
    users = [al, rs, vasp, b.secretariat]
    definitions = b.topology.render_definitions(
        b.vhost,
        [al, rs, vasp],
        {PCN: [al, rs]},
        passwords=dict.fromkeys(users, b.password),
        roles={vasp: ([t.value for t in rule.send], [t.value for t in rule.receive])},
        directory_publishers=[b.secretariat],
    )
    with imported_definitions(b.vhost, definitions, users):
        yield b


@pytest.fixture
async def bus_of(broker: Broker) -> AsyncIterator[dict[str, AmqpBus]]:
    buses = {
        user: AmqpBus(broker.url(user), broker.topology, node_id=user, provisioned=True)
        for user in (broker.al, broker.rs, broker.vasp)
    }
    for bus in buses.values():
        await bus.start()
    yield buses
    for bus in buses.values():
        await bus.close()


def message(broker: Broker, recipient: str, kind: str, sender: str) -> Outgoing:
    key = broker.topology.routing_key(recipient, kind, sender)
    return Outgoing("messages", key, b"{}", str(uuid.uuid4()))


async def test_a_vasp_publishes_only_what_its_role_may_send(
    broker: Broker, bus_of: dict[str, AmqpBus]
) -> None:
    vasp = bus_of[broker.vasp]
    for kind in ("asset-inquiry-response", "freeze-decision", "receipt"):
        await vasp.publish(message(broker, broker.al, kind, broker.vasp))
    for kind in ("asset-inquiry", "extradition-support", "case-update", "freeze-notice"):
        forged = message(broker, broker.al, kind, broker.vasp)
        with pytest.raises(PublishError, match="ACCESS_REFUSED") as refused:
            await vasp.publish(forged)
        assert forged.routing_key in str(refused.value)
    update = Outgoing("cases", broker.topology.case_routing_key(PCN, "C-1", "note"), b"{}", "u")
    with pytest.raises(PublishError, match="ACCESS_REFUSED"):
        await vasp.publish(update)


async def test_only_the_types_a_vasp_may_receive_reach_its_inbox(
    broker: Broker, bus_of: dict[str, AmqpBus]
) -> None:
    al = bus_of[broker.al]
    for kind in ("asset-inquiry", "freeze-notice", "receipt"):
        await al.publish(message(broker, broker.vasp, kind, broker.al))
    for kind in ("extradition-support", "case-update", "asset-inquiry-response"):
        with pytest.raises(PublishError, match=r"unroutable|NO_ROUTE|returned"):
            await al.publish(message(broker, broker.vasp, kind, broker.al))


async def test_a_vasp_may_not_bind_its_inbox_to_more_or_reach_case_updates(
    broker: Broker,
) -> None:
    connection = await aio_pika.connect(broker.url(broker.vasp))
    try:
        inbox = broker.topology.inbox_queue(broker.vasp)
        for exchange, key in [
            (broker.topology.messages.name, f"{broker.vasp}.#"),
            (broker.topology.messages.name, f"{broker.vasp}.extradition-support.*"),
            (broker.topology.cases.name, f"{PCN}.#"),
        ]:
            channel = await connection.channel()
            queue = await channel.get_queue(inbox)
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
                await queue.bind(exchange, key)
        channel = await connection.channel()
        queue = await channel.get_queue(inbox)
        await queue.bind(broker.topology.messages.name, f"{broker.vasp}.asset-inquiry.*")
    finally:
        await connection.close()


async def test_only_the_secretariat_publishes_directories(broker: Broker) -> None:
    for user, allowed in ((broker.secretariat, True), (broker.al, False), (broker.vasp, False)):
        connection = await aio_pika.connect(broker.url(user))
        try:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(broker.topology.directory.name, ensure=False)
            publish = exchange.publish(aio_pika.Message(b"{}"), routing_key="")
            if allowed:
                await publish
            else:
                with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
                    await publish
        finally:
            await connection.close()
    connection = await aio_pika.connect(broker.url(broker.secretariat))
    try:  # and nothing else
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(broker.topology.messages.name, ensure=False)
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await exchange.publish(aio_pika.Message(b"{}"), routing_key="x.y.z")
    finally:
        await connection.close()
