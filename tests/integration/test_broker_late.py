"""A node started while RabbitMQ cannot be reached serves anyway: its outbox accepts, its
`/readyz` says 503 until it is connected and consuming, and what it accepted meanwhile is
delivered once the broker answers.

The broker "appears" when a TCP relay to the real RabbitMQ starts listening on the port the
nodes were configured with; until then, connecting to it is refused, as when the broker's
host is down.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from http_helpers import submission
from networks import NetworkFactory
from tcp_relay import TcpRelay, free_port

from exchange.demo.runner import DemoNetwork, free_base_port
from exchange.demo.scenario import load_payload
from exchange.gateway.app import create_app

pytestmark = pytest.mark.integration

NODES = ("AL-ARO", "RS-PPO")


@pytest.fixture
async def late(
    amqp_url: str, make_network: NetworkFactory, prefix: str
) -> AsyncIterator[tuple[DemoNetwork, TcpRelay]]:
    real = urllib.parse.urlsplit(amqp_url)
    relay = TcpRelay(free_port(), (real.hostname or "127.0.0.1", real.port or 5672))
    netloc = f"{real.username}:{real.password}@127.0.0.1:{relay.port}"
    layout = make_network(
        NODES,
        bus="amqp",
        amqp_url=urllib.parse.urlunsplit(real._replace(netloc=netloc)),
        base_port=free_base_port(len(NODES)),
        prefix=prefix,
    )
    network = DemoNetwork(layout, None)  # its HTTP client; the apps are started here
    try:
        for node in NODES:
            config = layout.config(node, environ={})
            runner = web.AppRunner(create_app(config), access_log=None)
            await runner.setup()  # returns although the broker is unreachable
            await web.TCPSite(runner, config.listen_host, config.listen_port).start()
            network.runners[node] = runner
        yield network, relay
    finally:
        await network.stop()
        await relay.close()


async def _readiness(network: DemoNetwork, node: str) -> tuple[int, Any]:
    return await network.call(node, "GET", "/readyz")


async def test_a_node_started_without_a_broker_accepts_and_delivers_once_it_appears(
    late: tuple[DemoNetwork, TcpRelay],
) -> None:
    network, relay = late
    for node in NODES:
        status, problem = await _readiness(network, node)
        assert status == 503, problem
        assert problem["code"] == "service.unavailable"
        assert problem["checks"] == {"broker": False, "store": True, "directory": True}

    body = submission(payload=load_payload("01-asset-inquiry.json"))
    status, accepted = await network.call("AL-ARO", "POST", "/v1/messages", body)
    assert status == 202, accepted
    status, view = await network.call("AL-ARO", "GET", f"/v1/messages/{accepted['id']}")
    assert status == 200 and view["status"] == "accepted"  # stored, not published

    await asyncio.sleep(1.5)  # a few connection attempts fail meanwhile
    await relay.start()
    deadline = time.monotonic() + 30
    for node in NODES:
        while (await _readiness(network, node))[0] != 200:
            assert time.monotonic() < deadline, f"{node} never became ready"
            await asyncio.sleep(0.1)

    view = await network.wait_settled("AL-ARO", accepted["id"])
    assert view.status == "delivered", view
    status, page = await network.call("RS-PPO", "GET", "/v1/inbox?limit=100")
    assert status == 200
    assert [item["id"] for item in page["items"]] == [accepted["id"]]
