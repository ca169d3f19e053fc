"""A three-node RabbitMQ cluster loses a node while messages flow, and nothing is lost.

The test starts three RabbitMQ nodes of its own (spare ports, own names and data, one
Erlang cookie) and clusters them with `join_cluster`. A node's inbox is a quorum queue
with a replica on each of the three; its leader is put on the node that is then killed
(SIGKILL, no goodbye) while 2,000 messages are published and consumed. Publishing and
consuming go through the exchange's own `AmqpBus`, connected to a node that stays up
(a bus whose own broker goes away moves to another with `failover_urls`: see
test_amqp_failover.py and deploy/README.md). The receiver drops duplicates by message id,
as the gateway's inbox does: every message is handled exactly once.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from private_broker import PrivateBroker, close_all, start_all

from exchange.transport.amqp import AmqpBus
from exchange.transport.bus import ACK, Delivery, Outgoing, Verdict
from exchange.transport.topology import Topology

pytestmark = pytest.mark.slow

MESSAGES = 2000
BATCH = 100
KILL_AFTER = 600
SETTLE_SECONDS = 45.0
SENDER, RECIPIENT = "AL-ARO", "RS-PPO"


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[PrivateBroker]]:
    """Three clustered nodes: [seed, victim, third]."""
    base = Path(tempfile.mkdtemp(prefix="xbcluster-"))
    cookie = uuid.uuid4().hex.upper()
    nodes = [PrivateBroker(base / f"n{i}", name=f"xbcl{i}", cookie=cookie) for i in range(3)]
    try:
        started = time.monotonic()
        start_all(nodes)
        seed = nodes[0]
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda n: n.join_cluster(seed), nodes[1:]))
        status = seed.ctl("cluster_status", "--formatter", "json")
        for node in nodes:
            assert node.nodename in status
        print(f"\ncluster of 3 formed in {time.monotonic() - started:.1f}s")
        yield nodes
    finally:
        close_all(nodes)
        shutil.rmtree(base, ignore_errors=True)


def queue_replicas(node: PrivateBroker, queue: str) -> tuple[str, list[str]]:
    """The queue's leader and members, as `rabbitmqctl list_queues` reports them."""
    for line in node.ctl("list_queues", "name", "leader", "members").splitlines():
        name, leader, members = line.split("\t")
        if name == queue:
            return leader, [m.strip(" []'\"") for m in members.split(",")]
    raise AssertionError(f"no queue {queue} on {node.nodename}")


async def test_a_stopped_node_loses_nothing_and_each_message_is_handled_once(
    cluster: list[PrivateBroker],
) -> None:
    seed, victim, third = cluster
    topology = Topology(prefix=f"cl{uuid.uuid4().hex[:8]}")
    inbox = topology.inbox_queue(RECIPIENT)

    # declared through the victim, so that the inbox's leader is the node about to die
    declarer = AmqpBus(victim.url, topology)
    await declarer.start()
    await declarer.declare_node(RECIPIENT)
    await declarer.close()
    leader, members = await asyncio.to_thread(queue_replicas, seed, inbox)
    assert leader == victim.nodename
    assert sorted(members) == sorted(n.nodename for n in cluster)

    producer = AmqpBus(seed.url, topology, node_id=SENDER, confirm_timeout=20)
    consumer = AmqpBus(third.url, topology, node_id=RECIPIENT)
    await producer.start()
    await consumer.start()
    deliveries: Counter[str] = Counter()
    handled: set[str] = set()
    all_handled = asyncio.Event()

    async def handle(delivery: Delivery) -> Verdict:
        assert delivery.message_id is not None
        deliveries[delivery.message_id] += 1
        handled.add(delivery.message_id)  # the inbox stores by id: a repeat changes nothing
        if len(handled) == MESSAGES:
            all_handled.set()
        return ACK

    at_kill: dict[str, float] = {}
    started = time.monotonic()

    def kill_victim() -> None:
        at_kill["handled"] = len(handled)
        victim.kill()
        at_kill["seconds"] = time.monotonic() - started

    try:
        await consumer.consume(inbox, handle, prefetch=200)
        key = topology.routing_key(RECIPIENT, "asset-inquiry", SENDER)
        sent = [
            Outgoing("messages", key, f'{{"n": {i}}}'.encode(), str(uuid.uuid4()))
            for i in range(MESSAGES)
        ]
        retried = 0
        kill: asyncio.Task[None] | None = None
        for start in range(0, MESSAGES, BATCH):
            if start == KILL_AFTER:
                kill = asyncio.create_task(asyncio.to_thread(kill_victim))
            pending = sent[start : start + BATCH]
            while pending:  # as the outbox does: publish again what was not confirmed
                results = await producer.publish_many(pending)
                pending = [m for m, err in zip(pending, results, strict=True) if err is not None]
                retried += len(pending)
                if pending:
                    await asyncio.sleep(0.2)
        published = time.monotonic() - started
        assert kill is not None
        await kill
        async with asyncio.timeout(SETTLE_SECONDS):
            await all_handled.wait()
        settled = time.monotonic() - started
    finally:
        await producer.close()
        await consumer.close()

    assert handled == {m.message_id for m in sent}
    # the node died while messages flowed: before the last ones were published or handled
    assert at_kill["handled"] < MESSAGES and at_kill["seconds"] < published
    repeats = sum(deliveries.values()) - len(deliveries)
    print(
        f"\n{MESSAGES} messages: leader killed at {at_kill['seconds']:.1f}s with "
        f"{at_kill['handled']} handled; published in {published:.1f}s, all handled after "
        f"{settled:.1f}s; {retried} publishes retried, {repeats} deliveries repeated"
    )
    leader, _ = await asyncio.to_thread(queue_replicas, seed, inbox)
    assert leader in (seed.nodename, third.nodename)
