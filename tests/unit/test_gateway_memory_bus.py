"""Two gateways wired to one in-memory broker: what a contact point sees end to end.

`create_app(config, bus=...)` starts the relay on a bus the caller owns; the message goes
from AL-ARO's outbox to RS-PPO's inbox and the signed receipt comes back as `delivered`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from http_helpers import auth_headers, metric_samples, submission
from networks import NetworkFactory

from exchange.gateway.app import create_app
from exchange.network import NetworkLayout
from exchange.transport.memory import MemoryBroker, MemoryBus
from exchange.transport.topology import Topology

Clients = dict[str, TestClient[web.Request, web.Application]]


@pytest.fixture
async def nodes(make_network: NetworkFactory) -> AsyncIterator[tuple[NetworkLayout, Clients]]:
    network = make_network(["AL-ARO", "RS-PPO"])
    topology = Topology(prefix="xb")
    broker = MemoryBroker(topology)
    clients: Clients = {}
    buses = []
    try:
        for node in network.nodes:
            bus = MemoryBus(topology, broker=broker, node_id=node)
            await bus.start()
            buses.append(bus)
            app = create_app(network.config(node, environ={}), bus=bus)
            client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
            await client.start_server()
            clients[node] = client
        yield network, clients
    finally:
        for client in clients.values():
            await client.close()
        for bus in buses:
            await bus.close()


async def wait_for_status(
    client: TestClient[web.Request, web.Application], path: str, auth: dict[str, str], want: str
) -> dict[str, Any]:
    for _ in range(200):
        view: dict[str, Any] = await (await client.get(path, headers=auth)).json()
        if view["status"] == want:
            return view
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} stayed {view['status']}, never {want}")


async def test_a_message_is_delivered_and_its_receipt_comes_back(
    nodes: tuple[NetworkLayout, Clients],
) -> None:
    network, clients = nodes
    for client in clients.values():
        assert (await client.get("/readyz")).status == 200
    body = submission()
    sender = auth_headers(network, "AL-ARO")
    response = await clients["AL-ARO"].post("/v1/messages", json=body, headers=sender)
    assert response.status == 202
    message_id = (await response.json())["id"]

    view = await wait_for_status(
        clients["AL-ARO"], f"/v1/messages/{message_id}", sender, "delivered"
    )
    (delivery,) = view["deliveries"]
    assert delivery["state"] == "delivered"
    assert delivery["receipt"]["outcome"] == "accepted"
    assert delivery["receipt"]["envelope"]["header"]["sender"] == "RS-PPO"

    inbox = await (
        await clients["RS-PPO"].get("/v1/inbox", headers=auth_headers(network, "RS-PPO"))
    ).json()
    (item,) = inbox["items"]
    assert item["id"] == message_id and item["sender"] == "AL-ARO"
    assert item["digest"] == view["digest"]
    assert item["respond_by"] is not None

    metrics = metric_samples(await (await clients["AL-ARO"].get("/metrics")).text())
    delivered = {"direction": "out", "type": "asset-inquiry", "outcome": "delivered"}
    assert metrics["xb_messages_total", frozenset(delivered.items())] == 1
    assert metrics["xb_outbox_depth", frozenset()] == 0
