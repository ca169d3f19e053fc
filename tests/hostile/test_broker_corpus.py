"""Every broker case of the bad-input corpus is refused by the receiving node's relay: audited
with its code, answered with a signed negative receipt when the sender can be named,
dead-lettered with the reason, and nothing else is stored or published.

The envelopes are built and signed at test time with the network's development PKI (and
the bad certificates `make_identities` issues), then published on the in-memory broker to
the receiving node's inbox queue, where its relay consumes them as it would from RabbitMQ.
Control cases (`"outcome": "accepted"`) show that what the cases change is what matters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from hostile_broker import (
    NETWORKS,
    NODES,
    PARTNERS,
    RECEIVER,
    BrokerTarget,
    make_identities,
    run_broker_case,
)
from hostile_corpus import Case, load_cases

from exchange.crypto.verify import TrustStore
from exchange.gateway.app import create_app
from exchange.network import init_network_dir
from exchange.transport.memory import MemoryBroker, MemoryBus
from exchange.transport.topology import Topology

pytestmark = pytest.mark.asyncio(loop_scope="module")

BROKER_CASES = load_cases("broker")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def target(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BrokerTarget]:
    root = tmp_path_factory.mktemp("hostile-broker")
    # The receiver follows one prosecutor network with AL-ARO; MD-ARO is not a member.
    network = init_network_dir(root / "net", NODES, bus="memory", networks=NETWORKS)
    pki = network.directory / "pki"
    identities = make_identities(pki, network.network)
    config = network.config(RECEIVER, environ={})
    # A handler that raises makes the broker dead-letter the delivery on its second try,
    # so a poison input fails its own case quickly instead of looping into the next one.
    topology = Topology(prefix=config.topology_prefix, delivery_limit=1)
    broker = MemoryBroker(topology)
    partner = MemoryBus(topology, broker=broker, node_id=PARTNERS[0])
    receiver_bus = MemoryBus(topology, broker=broker, node_id=RECEIVER)
    await partner.start()
    await receiver_bus.start()
    for node in PARTNERS:  # their inbox queues collect what the receiver answers
        await partner.declare_node(node)
    app = create_app(config, bus=receiver_bus)
    try:
        async with TestClient(TestServer(app)) as client:
            yield BrokerTarget(
                client,
                app,
                network,
                broker,
                partner,
                identities,
                TrustStore.from_directory(pki),
            )
    finally:
        await receiver_bus.close()
        await partner.close()


@pytest.mark.parametrize("case", BROKER_CASES, ids=[c.id for c in BROKER_CASES])
async def test_hostile_envelope_is_refused_receipted_dead_lettered_and_changes_nothing(
    target: BrokerTarget, case: Case
) -> None:
    await run_broker_case(target, case)
