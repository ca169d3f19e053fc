"""Test networks: what the `make_network` and `demo_networks` fixtures hand out."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from exchange.demo.runner import DemoNetwork, free_base_port
from exchange.network import NetworkLayout
from exchange.transport.memory import MemoryBus
from exchange.transport.topology import Topology

NetworkFactory = Callable[..., NetworkLayout]  # the `make_network` fixture


class DemoNetworks:
    """Test networks on one bus: the in-memory one (`kind` "memory") or the real RabbitMQ."""

    def __init__(self, kind: str, amqp_url: str, prefix: str, make_network: NetworkFactory) -> None:
        self.kind = kind
        self.amqp_url = amqp_url
        self.prefix = prefix
        self._make_network = make_network

    def layout(self, nodes: Sequence[str], **options: Any) -> NetworkLayout:
        """A new network of `nodes` on this bus, with free ports and the test's topology
        prefix (`options`, such as `networks`, as `init_network_dir` takes them)."""
        return self._make_network(
            nodes,
            amqp_url=self.amqp_url,
            base_port=free_base_port(len(nodes)),
            bus=self.kind,
            prefix=self.prefix,
            **options,
        )

    @contextlib.asynccontextmanager
    async def running(self, layout: NetworkLayout) -> AsyncIterator[DemoNetwork]:
        """The nodes of `layout` started in this process, stopped when the block ends."""
        shared = MemoryBus(Topology(self.prefix)) if self.kind == "memory" else None
        network = DemoNetwork(layout, shared)
        await network.start()
        try:
            yield network
        finally:
            await network.stop()
