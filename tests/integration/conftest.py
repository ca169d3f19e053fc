"""Shared fixtures of the integration tests: networks of nodes running in this process, on
the in-memory bus and on the real RabbitMQ alike."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from networks import DemoNetworks, NetworkFactory

from exchange.demo.runner import DemoNetwork
from exchange.demo.scenario import DEMO_NODES, NODES, PROSECUTOR_NETWORK, ROLES


@pytest.fixture(params=["memory", "amqp"])
def demo_networks(
    request: pytest.FixtureRequest, make_network: NetworkFactory, prefix: str
) -> DemoNetworks:
    """Makes and starts this test's networks of nodes: a test taking it runs twice, on the
    in-memory bus and on the real RabbitMQ (the session's virtual host)."""
    kind = request.param
    url = request.getfixturevalue("amqp_url") if kind == "amqp" else "amqp://unused/"
    return DemoNetworks(kind, url, prefix, make_network)


@pytest.fixture
async def network(demo_networks: DemoNetworks) -> AsyncIterator[DemoNetwork]:
    """The demo's three authorities in this process, members of its prosecutor network, on the
    in-memory bus and on the real RabbitMQ. A module that needs other nodes or networks
    makes them with `demo_networks`."""
    layout = demo_networks.layout(NODES, networks={PROSECUTOR_NETWORK: NODES})
    async with demo_networks.running(layout) as net:
        yield net


@pytest.fixture
async def demo_network(demo_networks: DemoNetworks) -> AsyncIterator[DemoNetwork]:
    """The whole demo network: the three authorities, members of the prosecutor network,
    and EE-VASP, a private-sector member of none, on both buses."""
    layout = demo_networks.layout(DEMO_NODES, networks={PROSECUTOR_NETWORK: NODES}, roles=ROLES)
    async with demo_networks.running(layout) as net:
        yield net
