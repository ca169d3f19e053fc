"""Fixtures for fault tests: a private RabbitMQ node per test module, a network of node processes.

`broker` boots its own RabbitMQ node on spare ports (never the shared one on 5672, which
other tests use) and deletes it afterwards; `network` writes a three-node network that
points at it, under a topology prefix of its own, and stops every node process it started.
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

# The harness modules sit next to this file (tests/ is not a package), whatever import mode.
sys.path.insert(0, str(Path(__file__).parent))

from fault_harness import FaultNetwork
from networks import NetworkFactory
from private_broker import PrivateBroker, free_base_port

NODES = ("AL-ARO", "RS-PPO", "MD-ARO")


@pytest.fixture(scope="module")
def broker() -> Iterator[PrivateBroker]:
    """A RabbitMQ node of this test module's own, stopped and deleted afterwards."""
    attempts: list[str] = []
    for _ in range(2):  # a spare port may be taken between choosing and binding it
        node = PrivateBroker(Path(tempfile.mkdtemp(prefix="xbfault-")))
        try:
            seconds = node.start()
        except Exception as exc:
            attempts.append(str(exc))
            node.close()
            continue
        print(f"\nprivate broker {node.nodename} on {node.port}: booted in {seconds:.1f}s")
        try:
            yield node
        finally:
            node.close()
        return
    pytest.fail("the private RabbitMQ node did not start:\n" + "\n".join(attempts))


@pytest.fixture
async def network(
    broker: PrivateBroker, make_network: NetworkFactory, tmp_path: Path
) -> AsyncIterator[FaultNetwork]:
    """AL-ARO, RS-PPO and MD-ARO on the private broker; no node is started yet."""
    layout = make_network(
        NODES,
        bus="amqp",
        amqp_url=broker.url,
        base_port=free_base_port(len(NODES)),
        prefix=f"f{uuid.uuid4().hex[:10]}",
    )
    net = FaultNetwork(layout, tmp_path / "logs")
    try:
        yield net
    finally:
        await net.close()
