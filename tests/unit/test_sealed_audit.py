"""Auditors check sealed envelopes without the key: the signature, the digest, the route and
the seal's structure; a sealed receipt or a malformed seal is flagged."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from exchange.audit.entries import AuditEntry, AuditEvent
from exchange.audit.envelopes import EnvelopeChecker
from exchange.audit.stream import StreamReplay, StreamRow
from exchange.crypto.kem import KEM_XWING, generate_decryption_key
from exchange.crypto.sealing import seal_and_sign, sign_sealed
from exchange.crypto.signing import NodeSigner, encode_envelope
from exchange.crypto.verify import TrustStore
from exchange.model.common import utc_now
from exchange.model.envelope import Header
from exchange.transport.bus import Outgoing
from exchange.transport.memory import MemoryBus
from exchange.transport.topology import Topology

AL, RS, MD = "AL-ARO", "RS-PPO", "MD-ARO"
SignerFactory = Callable[..., NodeSigner]
HeaderFactory = Callable[..., Header]
KEYS = {node: generate_decryption_key(KEM_XWING) for node in (RS, MD)}


def sealed(
    signer: SignerFactory, make_header: HeaderFactory, payload: dict[str, Any], **fields: Any
) -> tuple[dict[str, Any], str]:
    header = make_header(**fields)
    recipients = [KEYS[node].recipient(node) for node in header.recipients]
    envelope, digest, _ = seal_and_sign(signer(AL), header, payload, recipients)
    return envelope, digest


def entry(envelope: dict[str, Any], digest: str | None) -> AuditEntry:
    return AuditEntry(
        index=0,
        time=utc_now(),
        node=RS,
        event=AuditEvent.VERIFIED,
        actor=None,
        role=None,
        message_id=envelope["header"]["id"],
        case=None,
        code=None,
        digest=digest,
        envelope=envelope,
        detail=None,
        body=b"",
    )


def test_a_kept_sealed_envelope_verifies_again_without_its_key(
    trust_store: TrustStore, signer: SignerFactory, make_header: HeaderFactory
) -> None:
    checker = EnvelopeChecker(trust_store)
    envelope, digest = sealed(signer, make_header, {"note": "test"}, recipients=[RS])
    assert checker.check(entry(envelope, digest)) is None
    assert checker.check(entry(envelope, "0" * 64)) == "the digest it records is not its envelope's"


def test_a_kept_sealed_envelope_with_a_malformed_seal_is_flagged(
    trust_store: TrustStore, signer: SignerFactory, make_header: HeaderFactory
) -> None:
    envelope, _ = sealed(signer, make_header, {"note": "test"}, recipients=[RS])
    envelope["sealed"]["recipients"][0]["kem"] = "X448"
    resigned, digest = sign_sealed(signer(AL), envelope["header"], envelope["sealed"])
    problem = EnvelopeChecker(trust_store).check(entry(resigned, digest))
    assert problem is not None and "seal.malformed" in problem


def test_a_sealed_receipt_is_flagged(
    trust_store: TrustStore, signer: SignerFactory, make_header: HeaderFactory
) -> None:
    envelope, digest = sealed(
        signer, make_header, {"note": "test"}, recipients=[RS], type="receipt", schema="receipt/1"
    )
    problem = EnvelopeChecker(trust_store).check(entry(envelope, digest))
    assert problem == "its receipt is sealed, and receipts travel in clear"


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    bus = MemoryBus(Topology())
    await bus.start()
    for node in (AL, RS, MD):
        await bus.declare_node(node)
    yield bus
    await bus.close()


async def replay(bus: MemoryBus, trust: TrustStore) -> list[StreamRow]:
    return [row async for row in StreamReplay("", trust, bus=bus, idle_timeout=0.01)]


async def publish(bus: MemoryBus, envelope: dict[str, Any], key: str, exchange: str) -> None:
    await bus.publish(Outgoing(exchange, key, encode_envelope(envelope), str(uuid.uuid4())))


async def test_the_audit_stream_checks_a_sealed_envelopes_route(
    bus: MemoryBus, trust_store: TrustStore, signer: SignerFactory, make_header: HeaderFactory
) -> None:
    envelope, _ = sealed(signer, make_header, {"note": "test"}, recipients=[RS])
    await publish(bus, envelope, bus.topology.routing_key(RS, "asset-inquiry", AL), "messages")
    await publish(bus, envelope, bus.topology.routing_key(MD, "asset-inquiry", AL), "messages")
    rows = await replay(bus, trust_store)
    assert [row.reason for row in rows] == ["", "route.mismatch"]


async def test_a_sealed_case_update_must_travel_under_its_signed_case(
    bus: MemoryBus, trust_store: TrustStore, signer: SignerFactory, make_header: HeaderFactory
) -> None:
    """The network and event are sealed; the case is in the signed header, and the routing
    key must name it."""
    fields = {"type": "case-update", "schema": "case-update/1", "recipients": [RS, MD]}
    update, _ = sealed(signer, make_header, {"event": "frozen"}, **fields)
    case = update["header"]["case"]
    await bus.declare_subscription(RS, ["see-pcn"])
    right = bus.topology.case_routing_key("see-pcn", case, "frozen")
    await publish(bus, update, right, "cases")
    other, _ = sealed(signer, make_header, {"event": "frozen"}, **fields)
    await publish(
        bus, other, bus.topology.case_routing_key("see-pcn", "AL-2026-0099", "frozen"), "cases"
    )
    rows = await replay(bus, trust_store)
    assert [row.reason for row in rows] == ["", "route.mismatch"]
