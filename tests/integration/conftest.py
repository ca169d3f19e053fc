"""Shared fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from exchange.demo.runner import NODES, PROSECUTOR_NETWORK, DemoNetwork, free_base_port
from exchange.network import init_network_dir
from exchange.transport.memory import MemoryBus
from exchange.transport.topology import Topology


@pytest.fixture(params=["memory", "amqp"])
async def network(
    request: pytest.FixtureRequest, tmp_path: Path, prefix: str
) -> AsyncIterator[DemoNetwork]:
    """The demo's three nodes in this process, members of its prosecutor network, on the
    in-memory bus and on the real RabbitMQ (a module may define its own `network`)."""
    kind = request.param
    url = request.getfixturevalue("amqp_url") if kind == "amqp" else "amqp://unused/"
    layout = init_network_dir(
        tmp_path / "net",
        NODES,
        amqp_url=url,
        base_port=free_base_port(len(NODES)),
        bus=kind,
        prefix=prefix,
        networks={PROSECUTOR_NETWORK: NODES},
    )
    shared = MemoryBus(Topology(prefix)) if kind == "memory" else None
    net = DemoNetwork(layout, shared)
    await net.start()
    try:
        yield net
    finally:
        await net.stop()
