"""The Bus contract, run against both the in-memory bus and the real RabbitMQ.

The in-memory bus is only worth having if it behaves like the broker, so every test here
runs twice: `memory` and `amqp` (a unique prefix in the session's virtual host).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from polling import eventually

from exchange.transport.amqp import AmqpBus
from exchange.transport.bus import (
    ACK,
    ORIGINAL_ROUTING_KEY_HEADER,
    REASON_HEADER,
    REQUEUE,
    Bus,
    ConsumeError,
    Delivery,
    Outgoing,
    PublishError,
    Verdict,
    dead_letter,
    stream_offset,
)
from exchange.transport.memory import MemoryBroker, MemoryBus
from exchange.transport.topology import Topology

AL, RS, MD = "AL-ARO", "RS-PPO", "MD-ARO"
BusFactory = Callable[..., Awaitable[Bus]]


@pytest.fixture(params=["memory", "amqp"])
async def make_bus(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[BusFactory]:
    """Started buses on one broker (a shared MemoryBroker, or RabbitMQ), closed afterwards."""
    buses: list[Bus] = []
    brokers: dict[Topology, MemoryBroker] = {}
    url = request.getfixturevalue("amqp_url") if request.param == "amqp" else ""

    async def factory(delivery_limit: int = 5, node_id: str | None = None) -> Bus:
        topology = Topology(prefix=prefix, delivery_limit=delivery_limit)
        bus: Bus
        if request.param == "amqp":
            bus = AmqpBus(url, topology, node_id=node_id, confirm_timeout=10)
        else:
            broker = brokers.setdefault(topology, MemoryBroker(topology))
            bus = MemoryBus(topology, broker=broker, node_id=node_id)
        await bus.start()
        buses.append(bus)
        return bus

    yield factory
    for bus in buses:
        await bus.close()


@pytest.fixture
async def bus(make_bus: BusFactory) -> Bus:
    bus = await make_bus()
    for node in (AL, RS):
        await bus.declare_node(node)
    return bus


@dataclass
class Collector:
    """A handler that records deliveries and answers with a fixed or computed verdict."""

    verdict: Callable[[Delivery], Verdict] = lambda _: ACK
    received: list[Delivery] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, delivery: Delivery) -> Verdict:
        self.received.append(delivery)
        self.arrived.set()
        return self.verdict(delivery)

    async def wait_for(self, count: int, within: float = 10.0) -> list[Delivery]:
        async with asyncio.timeout(within):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.received


def message(bus: Bus, recipient: str = RS, sender: str = AL, **headers: str | int) -> Outgoing:
    key = bus.topology.routing_key(recipient, "asset-inquiry", sender)
    return Outgoing("messages", key, b'{"n": 1}', str(uuid.uuid4()), headers)


async def quiet(seconds: float = 0.3) -> None:
    """Give a wrongly routed or wrongly redelivered message time to show up."""
    await asyncio.sleep(seconds)


async def test_a_message_reaches_only_its_recipients_inbox(bus: Bus) -> None:
    to_rs, to_al = Collector(), Collector()
    await bus.consume(bus.topology.inbox_queue(RS), to_rs)
    await bus.consume(bus.topology.inbox_queue(AL), to_al)
    sent = message(bus, recipient=RS, sender=AL, **{"x-xb-type": "asset-inquiry"})
    await bus.publish(sent)
    [got] = await to_rs.wait_for(1)
    await quiet()
    assert to_al.received == []
    assert len(to_rs.received) == 1
    assert got.body == sent.body and got.message_id == sent.message_id
    assert got.routing_key == f"{RS}.asset-inquiry.{AL}" and got.exchange == "messages"
    assert got.headers["x-xb-type"] == "asset-inquiry"
    assert not got.redelivered and got.delivery_count == 1


async def test_a_sequence_arrives_in_the_order_it_was_published_all_in_flight(
    bus: Bus,
) -> None:
    """What the outbox relies on to keep a sender's order within a case, with hundreds of
    publishes in flight (and other publishes interleaved on the bus's other channels)."""
    got = Collector()
    await bus.consume(bus.topology.inbox_queue(RS), got, prefetch=500)
    key = bus.topology.routing_key(RS, "case-update", AL)
    runs = [
        [Outgoing("messages", key, f"{run}:{n}".encode(), str(uuid.uuid4())) for n in range(150)]
        for run in range(3)
    ]
    halves = [(run[:75], run[75:]) for run in runs]  # two calls per key, one after the other
    calls = [bus.publish_sequence(part, key=f"k{n}") for n, h in enumerate(halves) for part in h]
    results = await asyncio.gather(*calls)
    assert all(error is None for result in results for error in result)
    received = await got.wait_for(450)
    for run in range(3):
        mine = [d.body for d in received if d.body.startswith(f"{run}:".encode())]
        assert mine == [m.body for m in runs[run]]


async def test_a_message_nobody_can_receive_is_refused_not_lost(bus: Bus) -> None:
    with pytest.raises(PublishError, match="unroutable"):
        await bus.publish(message(bus, recipient="KZ-ARC"))
    with pytest.raises(PublishError):
        await bus.publish(Outgoing("messages", "RS-PPO." + "x" * 260, b"", str(uuid.uuid4())))
    with pytest.raises(PublishError):
        await bus.publish(Outgoing("nowhere", "RS-PPO.a.AL-ARO", b"", str(uuid.uuid4())))
    # the bus still works after those refusals
    await bus.publish(message(bus))


async def test_publishing_to_an_undeclared_topology_is_refused(make_bus: BusFactory) -> None:
    bus = await make_bus()  # nothing declared under this prefix
    with pytest.raises(PublishError):
        await bus.publish(message(bus))


async def test_consuming_an_undeclared_queue_is_refused(bus: Bus) -> None:
    with pytest.raises(ConsumeError):
        await bus.consume(bus.topology.inbox_queue("KZ-ARC"), Collector())
    with pytest.raises(ConsumeError):
        await bus.consume(bus.topology.audit_stream_queue, Collector())


async def test_an_acked_message_is_gone(bus: Bus) -> None:
    first = Collector()
    handle = await bus.consume(bus.topology.inbox_queue(RS), first)
    await bus.publish(message(bus))
    await first.wait_for(1)
    await handle.cancel()
    again = Collector()
    await bus.consume(bus.topology.inbox_queue(RS), again)
    await quiet()
    assert again.received == []


async def test_requeue_redelivers_with_a_higher_delivery_count(bus: Bus) -> None:
    collector = Collector(lambda d: REQUEUE if d.delivery_count == 1 else ACK)
    await bus.consume(bus.topology.inbox_queue(RS), collector)
    sent = message(bus)
    await bus.publish(sent)
    first, second = await collector.wait_for(2)
    await quiet()
    assert len(collector.received) == 2
    assert (first.redelivered, first.delivery_count) == (False, 1)
    assert (second.redelivered, second.delivery_count) == (True, 2)
    assert second.message_id == sent.message_id and second.body == sent.body


async def test_a_handler_that_raises_gets_the_message_again(bus: Bus) -> None:
    calls: list[Delivery] = []

    async def flaky(delivery: Delivery) -> Verdict:
        calls.append(delivery)
        if len(calls) == 1:
            raise RuntimeError("disk full")
        return ACK

    await bus.consume(bus.topology.inbox_queue(RS), flaky)
    await bus.publish(message(bus))
    await eventually(lambda: len(calls) >= 2)
    assert calls[1].redelivered and calls[1].delivery_count == 2


async def test_a_poison_message_is_dead_lettered_after_the_delivery_limit(
    make_bus: BusFactory,
) -> None:
    bus = await make_bus(delivery_limit=2)
    await bus.declare_node(RS)
    await bus.declare_node(AL)
    always_requeue = Collector(lambda _: REQUEUE)
    await bus.consume(bus.topology.inbox_queue(RS), always_requeue)
    sent = message(bus)
    await bus.publish(sent)
    dead = Collector()
    await bus.consume(bus.topology.dead_queue(RS), dead)
    [poison] = await dead.wait_for(1)
    # limit 2: delivered once, then twice more, then dead-lettered by the queue
    assert [d.delivery_count for d in always_requeue.received] == [1, 2, 3]
    assert poison.message_id == sent.message_id and poison.body == sent.body
    assert poison.exchange == "dead" and poison.routing_key == f"{RS}.delivery-limit"
    assert poison.headers["x-first-death-reason"] == "delivery_limit"
    assert poison.headers["x-first-death-queue"] == bus.topology.inbox_queue(RS)
    assert not (await _no_more(always_requeue))


async def _no_more(collector: Collector) -> bool:
    before = len(collector.received)
    await quiet()
    return len(collector.received) > before


async def test_a_dead_letter_verdict_moves_the_message_with_its_reason(bus: Bus) -> None:
    reject = Collector(lambda _: dead_letter("signature.invalid"))
    await bus.consume(bus.topology.inbox_queue(RS), reject)
    dead = Collector()
    await bus.consume(bus.topology.dead_queue(RS), dead)
    sent = message(bus)
    await bus.publish(sent)
    [got] = await dead.wait_for(1)
    assert got.headers[REASON_HEADER] == "signature.invalid"
    assert got.headers[ORIGINAL_ROUTING_KEY_HEADER] == sent.routing_key
    assert got.routing_key == f"{RS}.signature.invalid" and got.exchange == "dead"
    assert got.message_id == sent.message_id and got.body == sent.body
    assert await _no_more(reject) is False  # acked in the inbox: not delivered again
    assert dead.received == [got]  # and only RS's dead queue holds it


async def test_the_audit_stream_keeps_every_message_in_order(bus: Bus) -> None:
    sent = [message(bus, recipient=RS if i % 2 else AL, sender=AL) for i in range(6)]
    for outgoing in sent:
        await bus.publish(outgoing)
    with pytest.raises(PublishError):
        await bus.publish(message(bus, recipient="KZ-ARC"))  # refused: not audited either
    everything = [d async for d in bus.read_audit_stream(offset="first", idle_timeout=0.5)]
    assert [d.message_id for d in everything] == [m.message_id for m in sent]
    assert [d.routing_key for d in everything] == [m.routing_key for m in sent]
    assert all(d.exchange == "messages" for d in everything)
    offsets = [offset for d in everything if (offset := stream_offset(d)) is not None]
    assert len(offsets) == len(everything) and offsets == sorted(set(offsets))
    tail = [d async for d in bus.read_audit_stream(offset=offsets[2], idle_timeout=0.5)]
    assert [d.message_id for d in tail] == [m.message_id for m in sent[2:]]
    assert [d async for d in bus.read_audit_stream(offset="next", idle_timeout=0.3)] == []


async def test_the_stream_tells_where_a_reader_attaching_at_a_time_would_start(
    bus: Bus,
) -> None:
    """The broker's own clock for the audit stream (to the second): what the replay holds
    each record's signed time against."""
    before = datetime.now(UTC) - timedelta(seconds=2)
    for outgoing in [message(bus) for _ in range(3)]:
        await bus.publish(outgoing)
    offsets = [stream_offset(d) async for d in bus.read_audit_stream(idle_timeout=0.5)]
    assert await bus.audit_stream_offset_at(before) == offsets[0]
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert await bus.audit_stream_offset_at(later, idle_timeout=0.3) is None


async def test_case_updates_reach_network_subscribers_and_the_audit_stream(bus: Bus) -> None:
    await bus.declare_subscription(MD, ["see-arn"])
    followers = Collector()
    await bus.consume(bus.topology.subscription_queue(MD), followers)
    key = bus.topology.case_routing_key("see-arn", "AL-2026-0042", "freeze-ordered")
    update = Outgoing("cases", key, b"{}", str(uuid.uuid4()))
    await bus.publish(update)
    [got] = await followers.wait_for(1)
    assert (got.exchange, got.routing_key) == ("cases", key)
    # a case of another network is not delivered to this subscriber (only audited)
    await bus.publish(Outgoing("cases", "pcoc.C1.opened", b"{}", str(uuid.uuid4())))
    assert await _no_more(followers) is False
    audited = [d.message_id async for d in bus.read_audit_stream(idle_timeout=0.5)]
    assert update.message_id in audited and len(audited) == 2


async def test_prefetch_bounds_unacknowledged_deliveries(bus: Bus) -> None:
    release = asyncio.Event()
    in_hand: list[Delivery] = []

    async def slow(delivery: Delivery) -> Verdict:
        in_hand.append(delivery)
        await release.wait()
        return ACK

    for outgoing in [message(bus) for _ in range(10)]:
        await bus.publish(outgoing)
    await bus.consume(bus.topology.inbox_queue(RS), slow, prefetch=3)
    await quiet(0.5)
    assert len(in_hand) == 3
    release.set()
    await eventually(lambda: len(in_hand) == 10)


async def test_publish_many_confirms_500_messages_consumed_exactly_once(bus: Bus) -> None:
    batch = [message(bus) for _ in range(500)]
    results = await bus.publish_many(batch)
    assert results == [None] * 500
    collector = Collector()
    await bus.consume(bus.topology.inbox_queue(RS), collector, prefetch=200)
    await collector.wait_for(500, within=20)
    await quiet()
    ids = [d.message_id for d in collector.received]
    assert len(ids) == 500 and set(ids) == {m.message_id for m in batch}


async def test_publish_many_reports_each_failure_in_place(bus: Bus) -> None:
    batch = [message(bus), message(bus, recipient="KZ-ARC"), message(bus)]
    results = await bus.publish_many(batch)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], PublishError)


async def test_a_closed_bus_refuses_to_publish(make_bus: BusFactory) -> None:
    bus = await make_bus()
    await bus.declare_node(RS)
    await bus.close()
    assert not bus.connected
    with pytest.raises(PublishError):
        await bus.publish(message(bus))
