"""A delivery whose handling is cancelled half-way (aiormq cancels the handlers of a channel
that closes, as when the broker restarts) still has its record written exactly once.

The relay's inbox stores the message, its `verified`, `stored` and `receipt-sent` entries
and its receipt's outbox row in one operation of the node's database, and an operation
once queued is not withdrawn when its caller is cancelled. The database's worker is held
while the first delivery's operation waits in the queue, the handler is cancelled, and the
broker delivers the message again: the first operation still commits everything, and the
redelivery, queued behind it, is a duplicate that writes nothing and owes no second receipt.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from networks import NetworkFactory

from exchange.crypto.signing import NodeSigner, encode_envelope
from exchange.gateway import keys
from exchange.gateway.app import create_app
from exchange.model.envelope import Header
from exchange.network import NetworkLayout
from exchange.relay.relay import Relay
from exchange.transport.bus import ACK, Delivery
from exchange.transport.memory import MemoryBroker, MemoryBus
from exchange.transport.topology import Topology
from tests.holding import held

HeaderFactory = Callable[..., Header]  # the `make_header` fixture
EXAMPLE = (
    Path(__file__).resolve().parents[2]
    / "schemas/examples/asset-inquiry/valid/me-to-al-yacht-car-account.json"
)


@dataclass
class RsNode:
    network: NetworkLayout
    app: web.Application

    @property
    def relay(self) -> Relay:
        relay = self.app[keys.RELAY]
        assert relay is not None
        return relay

    def committed(self, message_id: uuid.UUID) -> tuple[int, list[str], int]:
        """What the database file holds for the message, read by a connection of its own:
        its inbox rows, the events of its audit entries, and the receipts owed for it."""
        mid = str(message_id)
        path = self.app[keys.CONFIG].database_path
        with contextlib.closing(sqlite3.connect(path)) as conn:
            (inbox,) = conn.execute("SELECT count(*) FROM inbox WHERE id = ?", (mid,)).fetchone()
            entries = conn.execute("SELECT body FROM entries ORDER BY idx").fetchall()
            receipts = conn.execute("SELECT body FROM outbox WHERE kind = 'receipt'").fetchall()
        events = [e["event"] for (b,) in entries if (e := json.loads(b)).get("message_id") == mid]
        answering = [b for (b,) in receipts if json.loads(b)["payload"]["message_id"] == mid]
        return int(inbox), events, len(answering)


@pytest.fixture
async def rs(make_network: NetworkFactory, tmp_path: Path) -> AsyncIterator[RsNode]:
    network = make_network(["AL-ARO", "RS-PPO"])
    topology = Topology(prefix="xb")
    bus = MemoryBus(topology, broker=MemoryBroker(topology), node_id="RS-PPO")
    await bus.start()
    await bus.declare_node("AL-ARO")  # where the receipt goes
    config = network.config("RS-PPO", environ={"EXCHANGE_DATA_DIR": str(tmp_path / "data")})
    app = create_app(config, bus=bus)
    server = TestServer(app)
    await server.start_server()
    try:
        yield RsNode(network, app)
    finally:
        await server.close()
        await bus.close()


def inquiry(network: NetworkLayout, header: Header) -> tuple[dict[str, Any], Delivery]:
    pki = network.directory / "pki"
    signer = NodeSigner.from_files(pki / "AL-ARO.key", pki / "AL-ARO.pem")
    envelope = signer.sign_envelope(header, json.loads(EXAMPLE.read_text("utf-8")))
    key = Topology(prefix="xb").routing_key("RS-PPO", "asset-inquiry", "AL-ARO")
    delivery = Delivery(encode_envelope(envelope), "messages", key, str(header.id), {}, False, 1)
    return envelope, delivery


async def test_a_cancelled_delivery_commits_once_and_its_redelivery_is_a_duplicate(
    rs: RsNode, make_header: HeaderFactory
) -> None:
    envelope, delivery = inquiry(rs.network, make_header())
    message_id = uuid.UUID(envelope["header"]["id"])
    relay, audit = rs.relay, rs.app[keys.AUDIT]
    redelivery = Delivery(
        delivery.body, delivery.exchange, delivery.routing_key, delivery.message_id, {}, True, 2
    )

    async with held(rs.app[keys.DATABASE]) as database:
        first = asyncio.create_task(relay.inbox.handle(delivery))
        await database.queued_by(first)  # verified, receipt signed, its transaction queued
        first.cancel()  # the channel closed under it
        with pytest.raises(asyncio.CancelledError):
            await first
        assert rs.committed(message_id) == (0, [], 0)  # nothing is durable yet

        again = asyncio.create_task(relay.inbox.handle(redelivery))  # the broker's redelivery
        await database.queued_by(again)  # queued behind the cancelled handler's operation
        assert not again.done()
    # released: the cancelled handler's operation runs first, then the redelivery's
    assert await asyncio.wait_for(again, 10) == ACK

    inbox, events, receipts = rs.committed(message_id)
    assert inbox == 1
    assert events.count("verified") == 1 and events.count("stored") == 1, events
    assert events.count("receipt-sent") == 1, events
    assert receipts == 1  # one receipt owed, not one per delivery (each signs its own)
    head = audit.head.size
    entries = await audit.entries(0, head)
    assert [e.index for e in entries] == list(range(head))

    # a later copy (the ack of the redelivery was lost too) changes nothing either
    assert await relay.inbox.handle(redelivery) == ACK
    assert rs.committed(message_id) == (inbox, events, receipts)
    assert audit.head.size == head
