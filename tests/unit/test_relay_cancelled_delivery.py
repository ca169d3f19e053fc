"""A delivery whose handling is cancelled half-way (aiormq cancels the handlers of a channel
that closes, as when the broker restarts) still gets its audit record exactly once.

The first delivery has stored the message and queued its `verified` and `stored` entries
when it is cancelled; the broker then delivers the message again. The redelivery must wait
for those entries, not write them a second time. The audit log's writer is held back while
this happens, so the entries are not yet durable at the moment of the redelivery.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from networks import NetworkFactory

from exchange.crypto.signing import NodeSigner, encode_envelope
from exchange.gateway import keys
from exchange.gateway.app import create_app
from exchange.gateway.relay import Relay
from exchange.model.envelope import Header
from exchange.network import NetworkLayout
from exchange.transport.bus import ACK, Delivery
from exchange.transport.memory import MemoryBroker, MemoryBus
from exchange.transport.topology import Topology

HeaderFactory = Callable[..., Header]  # the `make_header` fixture
EXAMPLE = (
    Path(__file__).resolve().parents[2]
    / "schemas/examples/asset-inquiry/valid/me-to-al-yacht-car-account.json"
)


@pytest.fixture
async def rs(make_network: NetworkFactory) -> AsyncIterator[tuple[NetworkLayout, Relay]]:
    network = make_network(["AL-ARO", "RS-PPO"])
    topology = Topology(prefix="xb")
    bus = MemoryBus(topology, broker=MemoryBroker(topology), node_id="RS-PPO")
    await bus.start()
    await bus.declare_node("AL-ARO")  # where the receipt goes
    app = create_app(network.config("RS-PPO", environ={}), bus=bus)
    server = TestServer(app)
    await server.start_server()
    try:
        relay = app[keys.RELAY]
        assert relay is not None
        yield network, relay
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


async def test_a_redelivery_after_a_cancelled_delivery_does_not_audit_it_twice(
    rs: tuple[NetworkLayout, Relay],
    make_header: HeaderFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    network, relay = rs
    envelope, delivery = inquiry(network, make_header())
    message_id = uuid.UUID(envelope["header"]["id"])
    audit = relay._audit
    gate = threading.Event()
    commit = audit._store.commit_batch

    def held_back(*args: Any, **kwargs: Any) -> Any:
        gate.wait(10)
        return commit(*args, **kwargs)

    monkeypatch.setattr(audit._store, "commit_batch", held_back)

    first = asyncio.create_task(relay.handle_delivery(delivery))
    for _ in range(200):  # stored, its entries queued, the receipt published: now it waits
        if message_id in relay._recording:
            break
        await asyncio.sleep(0.01)
    recording = relay._recording[message_id]
    await asyncio.sleep(0.1)
    first.cancel()  # the channel closed under it
    with pytest.raises(asyncio.CancelledError):
        await first
    given_up = recording.cancelled()

    again = asyncio.create_task(relay.handle_delivery(delivery))  # the broker's redelivery
    await asyncio.sleep(0.3)
    gate.set()
    assert await asyncio.wait_for(again, 10) == ACK

    size = audit.head.size
    entries = [e for e in await audit.entries(0, size) if e.message_id == str(message_id)]
    events = [str(e.event) for e in entries]
    assert events.count("verified") == 1 and events.count("stored") == 1, events
    assert not given_up  # the record being written was not given up with the handler
