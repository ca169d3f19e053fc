"""Every broker case of the bad-input corpus is refused by the receiving node's relay: audited
with its code, answered with a signed negative receipt when the sender can be named,
dead-lettered with the reason, and nothing else is stored or published.

The envelopes are built and signed at test time with the network's development PKI (and
the bad certificates `make_identities` issues), then published on the in-memory broker to
the receiving node's inbox queue, where its relay consumes them as it would from RabbitMQ.
Control cases (`"outcome": "accepted"`) show that what the cases change is what matters.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from hostile_broker import (
    NETWORKS,
    NODES,
    PARTNERS,
    RECEIVER,
    BrokerTarget,
    build,
    make_identities,
    run_broker_case,
)
from hostile_corpus import Case, load_cases
from hostile_node import audit_since, snapshot

from exchange.audit.entries import AuditEvent
from exchange.crypto.verify import TrustStore
from exchange.gateway.app import create_app
from exchange.network import init_network_dir
from exchange.relay.inbound import body_evidence
from exchange.transport.memory import MemoryBroker, MemoryBus
from exchange.transport.topology import Topology

pytestmark = pytest.mark.asyncio(loop_scope="module")

BROKER_CASES = load_cases("broker")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def target(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BrokerTarget]:
    root = tmp_path_factory.mktemp("hostile-broker")
    # The receiver follows one prosecutor network with AL-ARO; MD-ARO is not a member.
    network = init_network_dir(root / "net", NODES, bus="memory", networks=NETWORKS)
    identities = make_identities(network)
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
                TrustStore.from_directory(network.pki_dir),
            )
    finally:
        await receiver_bus.close()
        await partner.close()


@pytest.mark.parametrize("case", BROKER_CASES, ids=[c.id for c in BROKER_CASES])
async def test_hostile_envelope_is_refused_receipted_dead_lettered_and_changes_nothing(
    target: BrokerTarget, case: Case
) -> None:
    await run_broker_case(target, case)


async def test_a_refused_mebibyte_envelope_is_audited_as_its_digest_and_first_kib(
    target: BrokerTarget,
) -> None:
    """A flood of large refused envelopes must not grow the permanent log by their size: the
    `rejected` entry keeps the body's SHA-256, its length and its first KiB, and says so."""
    padding = {"repeat": [{"text": '"', "times": 1}, {"text": "x", "times": 1 << 20}]}
    padding["repeat"].append({"text": '"', "times": 1})
    tampered = {"body": {"edit": {"raw": {"/payload/annex": padding}}}}
    built = build({}, tampered, target.identities, now=datetime.now(UTC))
    assert 1 << 20 < len(built.body) <= (1 << 20) + 65_536  # under the node's size limit
    before = await snapshot(target.app)
    await target.deliver(built)
    await target.settled()
    added = await audit_since(target.app, before.audit_size)
    for name in target.all_work_queues():
        target.drain(name)
    (rejected,) = [e for e in added if e.event is AuditEvent.REJECTED]
    assert rejected.code == "signature.invalid"
    assert len(rejected.body) < 4096, f"the entry holds {len(rejected.body)} bytes"
    assert rejected.envelope is None
    assert rejected.detail is not None
    kept = rejected.detail["body"]
    assert kept["sha256"] == hashlib.sha256(built.body).hexdigest() == rejected.digest
    assert kept["bytes"] == len(built.body)
    head = kept["head"].encode()  # the first KiB, less a character it would cut in two
    assert kept["head_encoding"] == "utf-8" and built.body.startswith(head)
    assert 1021 <= len(head) <= 1024
    assert "first 1024 bytes" in kept["kept"]


@pytest.mark.parametrize(
    ("body", "encoding", "head"),
    [
        (b"a" + "\u00e9".encode() * 1000, "utf-8", b"a" + "\u00e9".encode() * 511),
        (b"\xff" * 2000, "base64", b"\xff" * 1024),
        (b"{}", "utf-8", b"{}"),
    ],
    ids=["utf8-cut-inside-a-character", "not-utf8", "small"],
)
async def test_refused_body_evidence_keeps_the_first_kib_as_text_or_base64(
    body: bytes, encoding: str, head: bytes
) -> None:
    kept = body_evidence(body, hashlib.sha256(body).hexdigest())
    assert (kept["bytes"], kept["head_encoding"]) == (len(body), encoding)
    decoded = kept["head"].encode() if encoding == "utf-8" else base64.b64decode(kept["head"])
    assert decoded == head
