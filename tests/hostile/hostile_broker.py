"""Playing a broker corpus case: an envelope built and signed now, delivered to a running node.

Signatures cannot be committed for "now", so a case describes its envelope: who signs it
(a node, or a certificate that is expired, not yet valid, revoked, undistributed or from a
foreign CA), its times relative to now, edits made before signing (covered by the
signature) and after it (tampering), and how it is delivered (routing key, AMQP
properties). The receiving node's relay consumes it from its inbox queue on the in-memory
broker; `run_broker_case` then checks the audit, the negative receipt, the dead-letter
copy, every queue and stream of the broker, and the node's store.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from directories import add_certificate, both, resign, use_crl_file
from hostile_corpus import Case, apply_edits, body_bytes, get, put
from hostile_node import audit_since, snapshot
from http_helpers import auth_headers, example_payload

from exchange.crypto.pki import (
    create_ca,
    create_crl,
    create_node_certificate,
    kid_of,
    load_certificate,
    load_private_key,
)
from exchange.crypto.signing import b64url_decode, b64url_encode, signing_input
from exchange.crypto.verify import TrustStore, VerificationPolicy, verify_envelope
from exchange.gateway import keys
from exchange.model.common import format_utc
from exchange.network import NetworkLayout
from exchange.transport.bus import ORIGINAL_ROUTING_KEY_HEADER, REASON_HEADER, Outgoing
from exchange.transport.memory import MemoryBroker, MemoryBus

RECEIVER = "RS-PPO"
PARTNERS = ("AL-ARO", "MD-ARO")
NODES = (PARTNERS[0], RECEIVER, PARTNERS[1])
NETWORKS = {"pcoc": ["AL-ARO", RECEIVER]}
"""Prosecutor networks: the receiver follows `pcoc` with AL-ARO; MD-ARO is in none."""
SETTLE_TIMEOUT = 10.0


@dataclass(frozen=True)
class Identity:
    """A signing key and the certificate its signatures name (by kid)."""

    key: Ed25519PrivateKey
    certificate: x509.Certificate

    @property
    def kid(self) -> str:
        return kid_of(self.certificate)


def make_identities(layout: NetworkLayout) -> dict[str, Identity]:
    """The network's nodes and CA, plus the bad certificates the corpus signs with.

    Expired, not-yet-valid and revoked certificates of AL-ARO are issued by the network CA
    and distributed (listed under AL-ARO in the signed directory the receiver starts from,
    whose CRL lists the revoked one). The undistributed one is never given to the receiver; the
    foreign one comes from another CA that names itself and AL-ARO exactly like ours.
    """
    pki = layout.pki_dir
    ca_key, ca_cert = load_private_key(pki / "ca.key"), load_certificate(pki / "ca.pem")
    identities = {
        node: Identity(load_private_key(pki / f"{node}.key"), load_certificate(pki / f"{node}.pem"))
        for node in NODES
    }
    identities["CA"] = Identity(ca_key, ca_cert)
    now = datetime.now(UTC).replace(microsecond=0)

    distributed: list[x509.Certificate] = []

    def issue(name: str, *, distribute: bool, **validity: datetime) -> Identity:
        key, cert = create_node_certificate(ca_key, ca_cert, "AL-ARO", **validity)
        if distribute:
            distributed.append(cert)
        identities[name] = Identity(key, cert)
        return identities[name]

    day = timedelta(days=1)
    issue("AL-ARO@expired", distribute=True, not_before=now - 400 * day, not_after=now - day)
    issue("AL-ARO@not-yet-valid", distribute=True, not_before=now + day, not_after=now + 400 * day)
    revoked = issue("AL-ARO@revoked", distribute=True)
    issue("AL-ARO@undistributed", distribute=False)
    crl = create_crl(ca_key, ca_cert, {revoked.certificate.serial_number: now}, number=2)
    (pki / "crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    resign(layout, both(*(add_certificate("AL-ARO", c) for c in distributed), use_crl_file(layout)))

    foreign_ca_key, foreign_ca = create_ca(layout.network)
    key, cert = create_node_certificate(foreign_ca_key, foreign_ca, "AL-ARO")
    identities["AL-ARO@foreign-ca"] = Identity(key, cert)
    return identities


# --- building envelopes -------------------------------------------------------------------------


@dataclass
class Built:
    """What a case delivers, and what it claimed, for the checks afterwards."""

    body: bytes
    exchange: str  # "messages" (to the inbox) or "cases" (to the subscription queue)
    routing_key: str
    message_id: str | None
    headers: dict[str, Any]
    header: dict[str, Any]
    wire: dict[str, Any] = field(repr=False)


def default_payload(message_type: str, now: datetime, spec: Mapping[str, Any]) -> dict[str, Any]:
    if message_type == "receipt":
        return {
            "message_id": str(spec.get("receipt_for") or uuid4()),
            "digest": "ab" * 32,
            "outcome": "accepted",
            "reason": None,
            "detail": None,
            "received_at": format_utc(now),
        }
    return example_payload(spec.get("payload_type", message_type))


def _signature_value(
    transform: str | None, signer: Identity, signed: bytes, header: Mapping[str, Any]
) -> str:
    good = signer.key.sign(signed)
    if transform is None:
        return b64url_encode(good)
    if transform.startswith("flip-bit-"):
        bit = int(transform.removeprefix("flip-bit-"))
        raw = bytearray(good)
        raw[bit // 8] ^= 1 << (bit % 8)
        return b64url_encode(bytes(raw))
    if transform == "all-zero":
        return b64url_encode(bytes(64))
    if transform == "non-canonical-tail":
        # The last character carries 2 bits of the signature and 4 unused ones: setting an
        # unused bit spells the same 64 bytes differently.
        text = b64url_encode(good)
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        value = alphabet.index(text[-1]) | 1
        spelled = text[:-1] + alphabet[value]
        assert b64url_decode(text) == good and spelled != text
        return spelled
    if transform == "of-empty-input":
        return b64url_encode(signer.key.sign(b""))
    if transform == "of-another-message":
        other = dict(header, id=str(uuid4()))
        return b64url_encode(signer.key.sign(signing_input(other, {})))
    if transform == "truncated":
        return b64url_encode(good)[:-1]
    if transform == "padded":
        return b64url_encode(good) + "=="
    raise ValueError(f"unknown signature transform {transform!r}")


def build(
    spec: Mapping[str, Any],
    delivery: Mapping[str, Any],
    identities: Mapping[str, Identity],
    *,
    now: datetime,
    same_id: str | None = None,
) -> Built:
    """The wire bytes and delivery of a case's envelope spec, signed at `now`."""
    message_type = spec.get("type", "asset-inquiry")
    sender = spec.get("sender", "AL-ARO")
    payload = default_payload(message_type, now, spec)
    header: dict[str, Any] = {
        "id": same_id or str(uuid4()),
        "type": message_type,
        "schema": f"{message_type}/1",
        "sender": sender,
        "recipients": spec.get("recipients", [RECEIVER]),
        "case": "AL-2026-0042",
        "created_at": format_utc(now + timedelta(seconds=spec.get("created_at", 0))),
        "priority": "urgent",
        "handling": {"tlp": "AMBER", "code": "H2"},
    }
    if message_type == "receipt":
        header["in_reply_to"] = payload["message_id"]
    if spec.get("created_at_as") == "unix-seconds":
        header["created_at"] = int((now + timedelta(seconds=spec.get("created_at", 0))).timestamp())
    if "expires_at" in spec:
        header["expires_at"] = format_utc(now + timedelta(seconds=spec["expires_at"]))
    signed_doc, raws = apply_edits({"header": header, "payload": payload}, spec.get("signed", {}))
    assert not raws, "raw edits cannot be signed: put them in delivery.body"
    signer = identities[spec.get("signer", sender)]
    signed = signing_input(signed_doc["header"], signed_doc["payload"])
    kid = spec.get("kid", signer.kid)
    kid = identities[kid].kid if kid in identities else kid
    for pointer in spec.get("respell_utc", []):
        # The same instant written with "+00:00" instead of "Z", after signing.
        signed_doc = put(
            copy.deepcopy(signed_doc), pointer, get(signed_doc, pointer)[:-1] + "+00:00"
        )
    wire = {
        "header": signed_doc["header"],
        "payload": signed_doc["payload"],
        "signature": {
            "alg": "Ed25519",
            "kid": kid,
            "value": _signature_value(spec.get("signature"), signer, signed, signed_doc["header"]),
        },
    }
    body = body_bytes(delivery.get("body", {"edit": {}}), wire)
    assert body is not None
    claimed = signed_doc["header"] if isinstance(signed_doc.get("header"), dict) else {}
    exchange = delivery.get("exchange", "messages")
    if exchange == "cases":  # `<network>.<case>.<event>` of the signed update
        update = signed_doc["payload"]
        words = (update.get("network"), update.get("case"), update.get("event"))
    else:  # `<recipient>.<type>.<sender>` of the signed header
        words = (RECEIVER, claimed.get("type", message_type), claimed.get("sender", sender))
    routing_key = delivery.get("routing_key") or ".".join(str(w) for w in words)
    message_id = delivery.get("message_id", str(claimed.get("id", "")))
    headers = dict(delivery.get("headers", {"x-xb-sender": sender}))
    return Built(body, exchange, routing_key, message_id, headers, claimed, wire)


# --- the node under attack ----------------------------------------------------------------------


@dataclass
class BrokerTarget:
    """The receiving node (HTTP client and app), the broker, and a partner's connection to it."""

    client: TestClient[web.Request, web.Application]
    app: web.Application
    network: NetworkLayout
    broker: MemoryBroker
    partner: MemoryBus
    identities: dict[str, Identity]
    trust: TrustStore

    @property
    def topology(self) -> Any:
        return self.broker.topology

    def queue(self, name: str) -> Any:
        return self.broker.queues[name]

    def drain(self, name: str) -> list[Any]:
        """Take every ready message out of a work queue (nothing consumes the partners')."""
        queue = self.queue(name)
        taken = list(queue.ready)
        queue.ready.clear()
        return taken

    def stream_length(self) -> int:
        return len(self.broker.streams[self.topology.audit_stream_queue].entries)

    def stream_since(self, start: int) -> list[Any]:
        return list(self.broker.streams[self.topology.audit_stream_queue].entries[start:])

    async def deliver(self, built: Built) -> None:
        # A message_id of None stands for a publisher that set no AMQP message-id at all.
        message_id: Any = built.message_id
        await self.partner.publish(
            Outgoing(built.exchange, built.routing_key, built.body, message_id, built.headers)
        )

    async def settled(self) -> None:
        """Wait until the receiver's consumed queues are empty and nothing is being handled."""
        queues = [
            self.queue(name)
            for name in (
                self.topology.inbox_queue(RECEIVER),
                self.topology.subscription_queue(RECEIVER),
            )
            if name in self.broker.queues
        ]
        deadline = asyncio.get_running_loop().time() + SETTLE_TIMEOUT
        while any(q.ready or any(c.unacked for c in q.consumers) for q in queues):
            assert asyncio.get_running_loop().time() < deadline, "the node did not settle"
            await asyncio.sleep(0.002)
        # Receipts are owed in the delivery's own transaction and published by the outbox.
        while await _outbox_depth(self):
            assert asyncio.get_running_loop().time() < deadline, "the outbox did not drain"
            await asyncio.sleep(0.002)
        for _ in range(5):  # let any stray follow-up publish happen before we look
            await asyncio.sleep(0)

    async def case_updates(self) -> int:
        """How many case updates the node holds, as its API lists them (read by the admin)."""
        response = await self.client.get(
            "/v1/subscriptions/events?limit=500",
            headers=auth_headers(self.network, RECEIVER, "admin"),
        )
        assert response.status == 200, await response.text()
        return len((await response.json())["items"])

    def all_work_queues(self) -> list[str]:
        return sorted(self.broker.queues)


# --- running a case -----------------------------------------------------------------------------


async def _setup(target: BrokerTarget, case: Case, now: datetime) -> dict[str, str]:
    """Deliver or send what the case needs first; return ids the case may refer to."""
    setup = case.doc.get("setup", {})
    refs: dict[str, str] = {}
    if "deliver_first" in setup:
        first = build(setup["deliver_first"], {}, target.identities, now=now)
        before = await snapshot(target.app)
        await target.deliver(first)
        await target.settled()
        after = await snapshot(target.app)
        assert after.counts["inbox"] == before.counts["inbox"] + 1, "the setup was not accepted"
        refs["first_id"] = str(first.header["id"])
    if "send_first" in setup:
        response = await target.client.post(
            "/v1/messages",
            json=_with_examples(setup["send_first"]),
            headers=auth_headers(target.network, RECEIVER),
        )
        assert response.status == 202, await response.text()
        refs["sent_id"] = (await response.json())["id"]
        deadline = asyncio.get_running_loop().time() + SETTLE_TIMEOUT
        while await _outbox_depth(target):
            assert asyncio.get_running_loop().time() < deadline, "the setup was not published"
            await asyncio.sleep(0.01)
    consumed = {
        target.topology.inbox_queue(RECEIVER),
        target.topology.subscription_queue(RECEIVER),
    }
    for name in target.all_work_queues():
        if name not in consumed:
            target.drain(name)
    return refs


def _with_examples(doc: Any) -> Any:
    """`{"$example": "<type>"}` anywhere in `doc` becomes that type's example payload."""
    if isinstance(doc, dict):
        if set(doc) == {"$example"}:
            return example_payload(doc["$example"])
        return {k: _with_examples(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_with_examples(v) for v in doc]
    return doc


async def _outbox_depth(target: BrokerTarget) -> int:
    return await target.app[keys.STORE].outbox_depth()


async def run_broker_case(target: BrokerTarget, case: Case) -> None:
    now = datetime.now(UTC)
    refs = await _setup(target, case, now)
    spec = dict(case.doc.get("envelope", {}))
    if "receipt_for" in spec:
        spec["receipt_for"] = refs.get(spec["receipt_for"], spec["receipt_for"])
    same_id = refs.get("first_id") if case.doc.get("setup", {}).get("same_id") else None
    built = build(spec, case.doc.get("delivery", {}), target.identities, now=now, same_id=same_id)

    # Listing the case updates is itself audited (as delivered to the reader): list them
    # outside the window whose audit entries the case checks.
    updates_before = await target.case_updates()
    before = await snapshot(target.app)
    stream_before = target.stream_length()
    await target.deliver(built)
    await target.settled()
    after = await snapshot(target.app)
    added = await audit_since(target.app, before.audit_size)
    before.counts["case updates"] = updates_before
    after.counts["case updates"] = await target.case_updates()
    taken = {name: target.drain(name) for name in target.all_work_queues()}
    stream = target.stream_since(stream_before)

    expect = case.expect
    if expect["outcome"] == "accepted":
        _check_accepted(target, case, built, before.counts, after.counts, added, taken, stream)
    else:
        _check_rejected(target, case, built, before.counts, after.counts, added, taken, stream)


def _receipt_of(target: BrokerTarget, message: Any, to: str) -> dict[str, Any]:
    """A receipt the receiver published: it must verify as RS-PPO's, addressed to `to`."""
    assert message.routing_key == target.topology.routing_key(to, "receipt", RECEIVER)
    verified = verify_envelope(message.body, VerificationPolicy(trust=target.trust))
    header = verified.envelope.header
    assert (header.sender, header.recipients, header.type.value) == (RECEIVER, [to], "receipt")
    payload: dict[str, Any] = verified.raw["payload"]
    return payload


def _check_rejected(
    target: BrokerTarget,
    case: Case,
    built: Built,
    before: dict[str, int],
    after: dict[str, int],
    added: list[Any],
    taken: dict[str, list[Any]],
    stream: list[Any],
) -> None:
    expect, topology = case.expect, target.topology
    code, receipt = expect["code"], expect["receipt"]
    _no_poison(case, taken[topology.dead_queue(RECEIVER)])
    # Nothing is stored but the negative receipt owed (and published) with the refusal.
    owed = dict(before, outbox=before["outbox"] + (1 if receipt else 0))
    assert after == owed, f"{case.id}: the store changed: {before} -> {after}"
    events = [(e.event.value, e.code) for e in added]
    wanted = [("rejected", code)] + (
        [("receipt-sent", code), ("confirmed", None)] if receipt else []
    )
    assert events == wanted, f"{case.id}: audit {events}"
    rejected = added[0]
    if expect.get("audit_digest") == "canonical":  # refused after the signature verified
        signed = signing_input(built.wire["header"], built.wire["payload"])
        assert rejected.digest == hashlib.sha256(signed).hexdigest(), case.id
    else:
        # Refused before the signature verified: the refusal (and its receipt) names the
        # body as it arrived, never the digest of the signed bytes it claims to carry.
        assert rejected.digest == hashlib.sha256(built.body).hexdigest(), case.id
    assert rejected.detail is not None
    if rejected.envelope is not None:
        # Only a verified envelope refused in its step's transaction (a receipt that
        # acknowledges nothing of ours) is kept whole: it is signed evidence.
        assert expect.get("audit_digest") == "canonical" and built.header["type"] == "receipt"
    else:
        evidence = rejected.detail["body"]
        assert evidence["sha256"] == hashlib.sha256(built.body).hexdigest()
        assert evidence["bytes"] == len(built.body)
    loose_id = _loose_id(built.body)
    if loose_id is not None:
        assert rejected.message_id == loose_id

    dead = taken.pop(topology.dead_queue(RECEIVER))
    assert len(dead) == 1, f"{case.id}: {len(dead)} dead-letter copies"
    assert dead[0].body == built.body and dead[0].routing_key == f"{RECEIVER}.{code}"
    assert dead[0].headers[REASON_HEADER] == code
    assert dead[0].headers[ORIGINAL_ROUTING_KEY_HEADER] == built.routing_key

    receipts: list[Any] = []
    if receipt:
        to = expect.get("receipt_to", built.header.get("sender"))
        receipts = taken.pop(topology.inbox_queue(to))
        assert len(receipts) == 1, f"{case.id}: {len(receipts)} receipts to {to}"
        payload = _receipt_of(target, receipts[0], to)
        assert (payload["outcome"], payload["reason"]) == ("rejected", code)
        assert payload["message_id"] == loose_id
        assert payload["digest"] == rejected.digest
    leftovers = {name: len(msgs) for name, msgs in taken.items() if msgs}
    assert not leftovers, f"{case.id}: also published {leftovers}"
    # The audit stream copies what crossed the messages exchange: the delivery and the receipt.
    assert [m.body for m in stream] == [built.body] + [r.body for r in receipts]


def _no_poison(case: Case, dead: list[Any]) -> None:
    """A dead-letter copy made by the broker's delivery limit means the relay's handler
    raised on every delivery of this input instead of answering it with a verdict."""
    for message in dead:
        reason = message.headers.get("x-first-death-reason")
        assert reason is None, (
            f"{case.id}: the relay raised on this delivery each time it was delivered; the "
            f"broker dead-lettered it ({reason}) with nothing audited and no receipt"
        )


def _check_accepted(
    target: BrokerTarget,
    case: Case,
    built: Built,
    before: dict[str, int],
    after: dict[str, int],
    added: list[Any],
    taken: dict[str, list[Any]],
    stream: list[Any],
) -> None:
    topology = target.topology
    _no_poison(case, taken[topology.dead_queue(RECEIVER)])
    if built.exchange == "cases":
        # A case update is stored once and audited; it gets no receipt (it fans out).
        grown = dict(before, **{"case updates": before["case updates"] + 1})
        assert after == grown, f"{case.id}: {after}"
        events = sorted((e.event.value, e.code) for e in added)
        assert events == [("stored", None), ("verified", None)], events
        leftovers = {name: len(msgs) for name, msgs in taken.items() if msgs}
        assert not leftovers, f"{case.id}: also published {leftovers}"
        assert [m.body for m in stream] == [built.body]
        return
    grown = dict(before, inbox=before["inbox"] + 1, outbox=before["outbox"] + 1)
    assert after == grown, f"{case.id}: {after}"
    events = sorted((e.event.value, e.code) for e in added)
    wanted = [("confirmed", None), ("receipt-sent", None), ("stored", None), ("verified", None)]
    assert events == wanted, events
    to = str(built.header["sender"])
    receipts = taken.pop(topology.inbox_queue(to))
    assert len(receipts) == 1
    payload = _receipt_of(target, receipts[0], to)
    assert (payload["outcome"], payload["message_id"]) == ("accepted", built.header["id"])
    leftovers = {name: len(msgs) for name, msgs in taken.items() if msgs}
    assert not leftovers, f"{case.id}: also published {leftovers}"
    assert [m.body for m in stream] == [built.body, receipts[0].body]


def _loose_id(body: bytes) -> str | None:
    """The id a refused envelope claims, if it claims a UUID at all."""
    try:
        doc = orjson.loads(body)
        return str(UUID(doc["header"]["id"]))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
