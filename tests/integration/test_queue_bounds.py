"""Bounded queues on a real broker: a flood to one node is refused by RabbitMQ itself.

The rendered definitions carry a policy that bounds every node's inbox, subscription and
dead-letter queue (`max-length`, `max-length-bytes`, `overflow: reject-publish`). A partner
that floods one node gets a nack (a PublishError) once that node's inbox is full; every
other node keeps sending and receiving. The policy also reaches queues made before it, which
is how an existing network takes it: `exchange topology apply` again, no queue re-declared.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aio_pika
import pytest
from polling import eventually
from rabbitmq_cli import ImportedVhost, imported_definitions, rabbitmqctl

from exchange.transport.amqp import AmqpBus
from exchange.transport.bus import ACK, Delivery, Outgoing, PublishError, Verdict
from exchange.transport.provision import import_with_rabbitmqctl
from exchange.transport.topology import QueueBounds, Topology

pytestmark = pytest.mark.integration

BOUND = 20
"""Messages each inbox holds in these tests (a RabbitMQ 3.10 quorum queue takes one more)."""
KZ_BYTES = 32 * 1024
"""KZ's own bound, in bytes of message bodies (network.json's per-node setting)."""


@dataclass(frozen=True, kw_only=True)
class Broker(ImportedVhost):
    al: str
    rs: str
    md: str
    kz: str

    def bus(self, user: str) -> AmqpBus:
        return AmqpBus(
            self.url(user), self.topology, node_id=user, provisioned=True, confirm_timeout=10
        )

    def message(self, recipient: str, sender: str, body: bytes = b"{}") -> Outgoing:
        key = self.topology.routing_key(recipient, "asset-inquiry", sender)
        return Outgoing("messages", key, body, str(uuid.uuid4()))

    async def depth(self, node: str) -> int:
        """Messages ready in `node`'s inbox, as its leader counts them now (the node's own
        user asks; `rabbitmqctl list_queues` shows quorum queue counts seconds late)."""
        connection = await aio_pika.connect(self.url(node))
        try:
            channel = await connection.channel()
            inbox = await channel.declare_queue(self.topology.inbox_queue(node), passive=True)
            count = inbox.declaration_result.message_count
            assert count is not None
            return count
        finally:
            await connection.close()


def make_broker(tag: str) -> Broker:
    return Broker(
        vhost=f"xbbound-{tag.lower()}",
        topology=Topology(inbox_bounds=QueueBounds(BOUND, 1024**2)),
        password=secrets.token_urlsafe(16),
        al=f"AL-Q{tag}",
        rs=f"RS-Q{tag}",
        md=f"MD-Q{tag}",
        kz=f"KZ-Q{tag}",
    )


def definitions(broker: Broker) -> dict[str, object]:
    users = [broker.al, broker.rs, broker.md, broker.kz]
    return broker.topology.render_definitions(
        broker.vhost,
        users,
        passwords=dict.fromkeys(users, broker.password),
        node_bounds={broker.kz: QueueBounds(1000, KZ_BYTES)},
    )


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    net = make_broker(secrets.token_hex(4).upper())
    with imported_definitions(net.vhost, definitions(net), [net.al, net.rs, net.md, net.kz]):
        yield net


@pytest.fixture
async def buses(broker: Broker) -> AsyncIterator[dict[str, AmqpBus]]:
    buses = {user: broker.bus(user) for user in (broker.al, broker.rs, broker.md, broker.kz)}
    for bus in buses.values():
        await bus.start()
    yield buses
    for bus in buses.values():
        await bus.close()


async def flood(bus: AmqpBus, messages: list[Outgoing]) -> tuple[int, list[PublishError]]:
    """Publish one after another: how many the broker confirmed, and its refusals."""
    confirmed, refused = 0, []
    for message in messages:
        try:
            await bus.publish(message)
            confirmed += 1
        except PublishError as err:
            refused.append(err)
    return confirmed, refused


async def test_a_flood_to_one_node_is_refused_at_the_broker_while_others_keep_working(
    broker: Broker, buses: dict[str, AmqpBus]
) -> None:
    al, rs, md = buses[broker.al], buses[broker.rs], buses[broker.md]
    confirmed, refused = await flood(al, [broker.message(broker.rs, broker.al) for _ in range(60)])
    assert confirmed == BOUND + 1  # nobody consumes RS's inbox; the broker takes no more
    assert len(refused) == 60 - confirmed
    assert all("refused by the broker (nack)" in str(err) for err in refused)
    assert await broker.depth(broker.rs) == BOUND + 1
    # a burst in flight at once is refused just the same
    burst = await al.publish_many([broker.message(broker.rs, broker.al) for _ in range(50)])
    assert all(isinstance(result, PublishError) for result in burst)
    assert await broker.depth(broker.rs) == BOUND + 1
    # everyone else carries on: AL to MD, and RS itself still sends
    received: list[Delivery] = []

    async def handler(delivery: Delivery) -> Verdict:
        received.append(delivery)
        return ACK

    await md.consume(broker.topology.inbox_queue(broker.md), handler)
    to_md = [broker.message(broker.md, broker.al), broker.message(broker.md, broker.rs)]
    await al.publish(to_md[0])
    await rs.publish(to_md[1])
    await eventually(lambda: len(received) == 2)
    assert {d.message_id for d in received} == {m.message_id for m in to_md}
    # once RS drains its inbox, the broker takes its messages again
    await rs.consume(broker.topology.inbox_queue(broker.rs), handler)
    for _ in range(100):
        if await broker.depth(broker.rs) == 0:
            break
        await asyncio.sleep(0.05)
    await al.publish(broker.message(broker.rs, broker.al))


async def test_a_nodes_own_bound_in_bytes_refuses_large_messages_early(
    broker: Broker, buses: dict[str, AmqpBus]
) -> None:
    al = buses[broker.al]
    body = b"x" * 8 * 1024
    confirmed, refused = await flood(
        al, [broker.message(broker.kz, broker.al, body) for _ in range(10)]
    )
    # KZ's 32 KiB: accepted until it holds more than that, then refused
    assert confirmed == KZ_BYTES // len(body) + 1
    assert len(refused) == 10 - confirmed
    await al.publish(broker.message(broker.md, broker.al))  # others still have room


async def test_an_existing_network_takes_the_bounds_by_applying_the_definitions_again() -> None:
    """Queues made by definitions without the policy are unbounded; `topology apply` with
    the new definitions bounds them in place: no queue is re-declared (RabbitMQ would refuse
    other arguments with PRECONDITION_FAILED) and nothing in them is lost."""
    net = make_broker(secrets.token_hex(4).upper())
    users = [net.al, net.rs, net.md, net.kz]
    older = {**definitions(net), "policies": []}
    with imported_definitions(net.vhost, older, users):
        al = net.bus(net.al)
        await al.start()
        try:
            confirmed, refused = await flood(al, [net.message(net.rs, net.al) for _ in range(30)])
            assert (confirmed, refused) == (30, [])  # unbounded
            await asyncio.to_thread(import_with_rabbitmqctl, definitions(net))
            await eventually(lambda: policy_of(net, net.topology.inbox_queue(net.rs)) != "")
            assert policy_of(net, net.topology.inbox_queue(net.rs)) == "xb-work-queues"
            assert await net.depth(net.rs) == 30  # kept
            with pytest.raises(PublishError, match="nack"):
                await al.publish(net.message(net.rs, net.al))
            await al.declare_node(net.al)  # a gateway's check of its queues still passes
        finally:
            await al.close()


def policy_of(broker: Broker, queue: str) -> str:
    listing = rabbitmqctl("list_queues", "-p", broker.vhost, "name", "policy")
    return dict(line.split("\t") for line in listing.splitlines()).get(queue, "")
