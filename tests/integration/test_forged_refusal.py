"""A forged refusal, on the real RabbitMQ and on the in-memory bus alike.

Whoever controls the broker (its operator) can take a genuine message off the recipient's
queue and put copies ahead of it: one with its signature value changed, and the genuine
bytes on a routing key that disagrees with the signed header (one a co-recipient's broker
user may publish). Neither may make the recipient refuse the genuine message in its name:
the copy with the altered signature is refused naming its own bytes (a digest the sender
does not recognise), the misrouted one is refused without a receipt, and the genuine message
that follows is delivered. A refusal the recipient did make of the genuine bytes (its CRL
was stale) is superseded by its positive receipt once the message is accepted, and the
message's history shows both.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import timedelta
from typing import Any
from uuid import uuid4

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from http_helpers import submission
from polling import dead_letters

from exchange.audit.entries import AuditEntry, AuditEvent
from exchange.crypto.pki import create_crl, load_certificate, load_private_key
from exchange.crypto.signing import b64url_decode, b64url_encode, encode_envelope
from exchange.demo.runner import DemoNetwork
from exchange.demo.scenario import load_payload
from exchange.gateway import keys
from exchange.gateway.api_models import MessageView
from exchange.model.common import utc_now
from exchange.transport.bus import (
    ACK,
    ORIGINAL_ROUTING_KEY_HEADER,
    Bus,
    Delivery,
    Outgoing,
    Verdict,
)

pytestmark = pytest.mark.integration

SENDER, RECIPIENT, CO_RECIPIENT = "AL-ARO", "RS-PPO", "MD-ARO"
WITHIN = 30.0


async def _send(network: DemoNetwork) -> str:
    body = submission(
        "asset-inquiry",
        [RECIPIENT],
        priority="normal",
        payload=load_payload("01-asset-inquiry.json"),
    )
    status, sent = await network.call(SENDER, "POST", "/v1/messages", body)
    assert status == 202, sent
    return str(sent["id"])


async def _view_until(network: DemoNetwork, message_id: str, status: str) -> MessageView:
    """The sender's view of its message once it has `status` (fails after WITHIN)."""
    client = network.client(SENDER)
    deadline = time.monotonic() + WITHIN
    while True:
        view = await client.message(message_id)
        if view.status == status:
            return view
        assert time.monotonic() < deadline, f"still {view.status}: {view.receipts}"
        await asyncio.sleep(0.05)


async def _entries_until(
    network: DemoNetwork, node: str, wanted: Any, count: int = 1
) -> list[AuditEntry]:
    """`node`'s audit entries that satisfy `wanted`, once there are `count` of them."""
    audit = network.apps[node][keys.AUDIT]
    deadline = time.monotonic() + WITHIN
    while True:
        found = [e for e in await audit.entries(0, 100_000) if wanted(e)]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{node}: {len(found)} of {count} entries"
        await asyncio.sleep(0.05)


async def _take_off_the_queue(bus: Bus, queue: str) -> Delivery:
    """What the broker's operator does: take the one waiting message off `queue`."""
    taken: list[Delivery] = []

    async def handler(delivery: Delivery) -> Verdict:
        taken.append(delivery)
        return ACK

    handle = await bus.consume(queue, handler, prefetch=1)
    try:
        deadline = time.monotonic() + WITHIN
        while not taken:
            assert time.monotonic() < deadline, f"nothing arrived on {queue}"
            await asyncio.sleep(0.02)
    finally:
        await handle.cancel()
    assert len(taken) == 1
    return taken[0]


def _signature_changed(body: bytes) -> bytes:
    doc = orjson.loads(body)
    value = bytearray(b64url_decode(doc["signature"]["value"]))
    value[0] ^= 0x01
    doc["signature"]["value"] = b64url_encode(bytes(value))
    return encode_envelope(doc)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_copies_put_ahead_of_a_genuine_message_cannot_refuse_it_in_its_name(
    network: DemoNetwork,
) -> None:
    relay = network.apps[RECIPIENT][keys.RELAY]
    attacker = network.apps[CO_RECIPIENT][keys.BUS]  # any connection that may publish
    assert relay is not None and attacker is not None
    topology = attacker.topology
    await relay.stop()  # the recipient is away: the genuine message waits in its queue
    message_id = await _send(network)
    await _view_until(network, message_id, "sent")
    genuine = await _take_off_the_queue(attacker, topology.inbox_queue(RECIPIENT))
    altered = _signature_changed(genuine.body)
    right_key = topology.routing_key(RECIPIENT, "asset-inquiry", SENDER)
    wrong_key = topology.routing_key(RECIPIENT, "asset-inquiry", CO_RECIPIENT)
    # The unsigned gossip header varied too: it must not be blamed on the sender.
    varied = {**genuine.headers, "x-xb-checkpoint": '{"node": "AL-ARO", "size": 1}'}
    for key, body, headers in (
        (right_key, altered, genuine.headers),
        (wrong_key, genuine.body, genuine.headers),
        (right_key, genuine.body, varied),
    ):
        await attacker.publish(Outgoing("messages", key, body, str(uuid4()), headers))
    await relay.start()

    view = await _view_until(network, message_id, "delivered")
    genuine_digest = view.digest
    (positive,) = view.receipts
    assert (positive.from_node, positive.outcome, positive.digest) == (
        RECIPIENT,
        "accepted",
        genuine_digest,
    )
    assert view.deliveries[0].state == "delivered"

    # The recipient refused the altered copy naming that copy's bytes, refused the misrouted
    # genuine bytes without any receipt, and accepted the genuine message.
    def about_it(entry: AuditEntry) -> bool:
        return entry.message_id == message_id and entry.event in (
            AuditEvent.REJECTED,
            AuditEvent.RECEIPT_SENT,
            AuditEvent.STORED,
        )

    seen = await _entries_until(network, RECIPIENT, about_it, count=5)
    assert sorted((e.event.value, e.code or "", e.digest) for e in seen) == sorted(
        [
            ("rejected", "signature.invalid", _sha256(altered)),
            ("receipt-sent", "signature.invalid", _sha256(altered)),
            ("rejected", "sender.mismatch", genuine_digest),
            ("stored", "", genuine_digest),
            ("receipt-sent", "", genuine_digest),
        ]
    )
    (misrouted,) = [e for e in seen if e.code == "sender.mismatch"]
    assert misrouted.detail is not None and misrouted.detail["source"] == "transport"
    signed = [e for e in seen if e.event is AuditEvent.RECEIPT_SENT]
    assert all(e.digest != genuine_digest for e in signed if e.code is not None)
    dead = await dead_letters(attacker, RECIPIENT)
    assert sorted(d.headers.get("x-xb-reason") for d in dead) == [
        "sender.mismatch",
        "signature.invalid",
    ]

    # The sender kept the refusal of the altered copy as evidence, not as its receipt.
    def refused_receipt(entry: AuditEntry) -> bool:
        return entry.event is AuditEvent.REJECTED and entry.code == "receipt.mismatch"

    (kept,) = await _entries_until(network, SENDER, refused_receipt)
    assert kept.envelope is not None
    payload = kept.envelope["payload"]
    assert (payload["message_id"], payload["reason"]) == (message_id, "signature.invalid")
    assert payload["digest"] == _sha256(altered) != genuine_digest

    # The varied gossip header is a transport problem, not evidence against the sender.
    def header_refused(entry: AuditEntry) -> bool:
        return entry.event is AuditEvent.REJECTED and entry.code == "checkpoint.invalid"

    (header,) = await _entries_until(network, RECIPIENT, header_refused)
    assert header.detail is not None and header.detail["source"] == "transport"
    assert "from" not in header.detail


async def test_a_later_positive_receipt_supersedes_a_refusal_and_the_history_shows_both(
    network: DemoNetwork,
) -> None:
    pki = network.layout.directory / "pki"
    ca_key, ca = load_private_key(pki / "ca.key"), load_certificate(pki / "ca.pem")
    trust = network.apps[RECIPIENT][keys.TRUST]
    now = utc_now()
    stale = create_crl(
        ca_key, ca, {}, number=1000, this_update=now - timedelta(hours=2), next_update=now
    )
    trust.set_crl(stale)
    message_id = await _send(network)
    refused = await _view_until(network, message_id, "rejected")
    assert refused.reason == "cert.untrusted"
    bus = network.apps[RECIPIENT][keys.BUS]
    assert bus is not None
    (dead,) = [
        d
        for d in await dead_letters(bus, RECIPIENT)
        if orjson.loads(d.body)["header"]["id"] == message_id
    ]
    # Refused before its signature was checked: the receipt names the exact bytes published.
    (negative,) = refused.receipts
    assert (negative.outcome, negative.reason) == ("rejected", "cert.untrusted")
    assert negative.digest == _sha256(dead.body) != refused.digest

    # The operator installs a fresh CRL and sends the dead letter round again.
    fresh = create_crl(ca_key, ca, {}, number=1001, next_update=now + timedelta(days=7))
    (pki / "crl.pem").write_bytes(fresh.public_bytes(serialization.Encoding.PEM))
    trust.set_crl(fresh)
    original_key = str(dead.headers[ORIGINAL_ROUTING_KEY_HEADER])
    await bus.publish(Outgoing("messages", original_key, dead.body, str(uuid4()), {}))

    view = await _view_until(network, message_id, "delivered")
    assert view.reason is None
    history = [(r.from_node, r.outcome, r.reason, r.digest) for r in view.receipts]
    assert history == [
        (RECIPIENT, "rejected", "cert.untrusted", _sha256(dead.body)),
        (RECIPIENT, "accepted", None, view.digest),
    ]
    (delivery,) = view.deliveries
    assert delivery.state == "delivered"
    assert delivery.receipt is not None and delivery.receipt.outcome == "accepted"
    status, document = await network.call(SENDER, "GET", f"/v1/messages/{message_id}")
    assert status == 200
    assert [r["outcome"] for r in document["receipts"]] == ["rejected", "accepted"]
