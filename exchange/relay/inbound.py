"""The one inbound pipeline: verify -> store and audit (one transaction) -> ack.

Messages and case updates alike: a delivery is verified with the node's one verification
policy, checked by its step (routing key, payload, membership), then stored with the
audit entries and the receipt it owes in one transaction, and only then acked. A refusal
is recorded by the one `RefusalRecorder`: its `rejected` entry (the refused body kept as its
SHA-256 and its first KiB) and, for a message whose sender can be named, a signed negative
receipt, in one transaction; then the delivery is dead-lettered with its code.

A receipt names the digest of the signed bytes only once their signature verified; a
refusal before that names the SHA-256 of the body as it arrived, so that a copy with a
forged signature can never be answered in the genuine message's name. A correctly signed
message that the transport misrouted (`MisroutedError`) is refused without a receipt: the
signer did not send it there.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

import orjson

from exchange.audit.entries import AuditEvent, EntryFields
from exchange.audit.log import AuditLog
from exchange.audit.peers import PeerCheckpoints
from exchange.config import NodeConfig
from exchange.crypto.canonical import sha256_hex
from exchange.crypto.verify import TrustStore, VerificationPolicy, VerifiedEnvelope, verify_envelope
from exchange.errors import ExchangeError, MisroutedError
from exchange.log import get_logger
from exchange.metrics import Metrics, type_label
from exchange.model.common import MessageType, utc_now
from exchange.relay.receipts import RECEIPT_CODES, OwedReceipt, uuid_or_none
from exchange.storage import outbox
from exchange.storage.sqlite_thread import SqliteThread
from exchange.transport.bus import REQUEUE, Delivery, Verdict, dead_letter

_log = get_logger(__name__)

EVIDENCE_HEAD_BYTES = 1024
"""How much of a refused body its `rejected` entry keeps, beside the SHA-256 of all of it."""

MAX_QUEUED_AGE = timedelta(days=14)
"""How old a message may be when it is consumed. Longer than the clock skew on purpose: a
message waits in the broker while its recipient is down, and must not be lost for that;
a second copy is refused by the durable inbox, not by a time window."""


def verification_policy(config: NodeConfig, trust: TrustStore) -> VerificationPolicy:
    """The node's policy for everything that arrives from the broker."""
    skew = timedelta(seconds=config.limits.max_skew_seconds)
    return VerificationPolicy(
        trust=trust,
        max_skew=skew,
        max_bytes=config.limits.max_body_bytes + 65_536,
        max_age=max(MAX_QUEUED_AGE, skew),
    )


P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class StepResult:
    """What a step's transaction did: the verdict, or a refusal to record instead."""

    verdict: Verdict
    refusal: ExchangeError | None = None
    after: Callable[[], None] | None = None
    """Run once committed (wake the publisher and the feeds, count, log)."""


class InboundStep(Protocol, Generic[P]):
    """What one queue's deliveries need beyond the envelope's own verification."""

    def prepare(self, delivery: Delivery, verified: VerifiedEnvelope, received_at: datetime) -> P:
        """Checks that need no database (raise ExchangeError), and the work that may be
        done before the transaction (signing receipts and automatic updates)."""
        ...

    def store(self, conn: sqlite3.Connection, prepared: P) -> StepResult:
        """Inside the transaction: the facts, their audit entries, the publishes owed."""
        ...


Answer = Callable[[Mapping[str, Any], str, datetime, str, str], OwedReceipt | None]
"""Signs a negative receipt (loose header, digest, received at, code, detail), if any."""


@dataclass(slots=True)
class RefusalRecorder:
    """Records a refused delivery once: its entry and its negative receipt together."""

    node_id: str
    db: SqliteThread
    audit: AuditLog
    metrics: Metrics
    answer: Answer | None = None
    wake: Callable[[], None] = field(default=lambda: None)

    async def refuse(
        self, delivery: Delivery, err: ExchangeError, received_at: datetime
    ) -> Verdict:
        """Audit the refusal (with a negative receipt where one is owed); dead-letter it.

        `err.extra["digest"]` is set only when the signature verified (else the receipt and
        the entry name the body's own SHA-256). If the detail cannot be kept, the entry is
        written without it; if nothing can be written, the delivery is requeued.
        """
        misrouted = isinstance(err, MisroutedError)
        code = err.code if err.code in RECEIPT_CODES or misrouted else "envelope.malformed"
        raw = _loose_json(delivery.body)
        header = raw.get("header") if isinstance(raw, dict) else None
        header = dict(header) if isinstance(header, dict) else {}
        message_id = uuid_or_none(header.get("id"))
        body_digest = sha256_hex(delivery.body)
        digest = err.extra.get("digest") or body_digest
        case = header.get("case") if isinstance(header.get("case"), str) else None
        detail = {
            "exchange": delivery.exchange,
            "routing_key": delivery.routing_key[:255],
            "reason": err.detail[:500],
            "claimed_id": str(header.get("id"))[:100] if message_id is None else None,
            "body": body_evidence(delivery.body, body_digest),
        }
        if misrouted:
            detail["source"] = "transport"
        receipt = None
        answered = header.get("type") != MessageType.RECEIPT.value and not misrouted
        if self.answer is not None and answered:
            receipt = self.answer(header, digest, received_at, code, err.detail)
        entries = [
            EntryFields.build(
                AuditEvent.REJECTED,
                message_id=message_id,
                case=case[:64] if case else None,
                digest=digest,
                code=code,
                detail=detail,
            )
        ]
        fallback = [EntryFields.build(AuditEvent.REJECTED, digest=body_digest, code=code)]
        try:
            await self.db.call(lambda conn: self._record(conn, entries, receipt, received_at))
        except Exception:
            _log.exception("audit.refusal_evidence_failed", code=code, node=self.node_id)
            try:
                await self.db.call(lambda conn: self._record(conn, fallback, receipt, received_at))
            except Exception:
                _log.exception("audit.refusal_failed", code=code, node=self.node_id)
                return REQUEUE  # nothing recorded: the broker keeps the delivery
        if receipt is not None:
            self.wake()
        self.metrics.message("in", type_label(header.get("type")), "refused")
        _log.warning(
            "inbox.refused",
            code=code,
            message_id=str(message_id),
            node=self.node_id,
            exchange=delivery.exchange,
            routing_key=delivery.routing_key[:255],
            misrouted=misrouted,
        )
        return dead_letter(code)

    def _record(
        self,
        conn: sqlite3.Connection,
        entries: list[EntryFields],
        receipt: OwedReceipt | None,
        now: datetime,
    ) -> None:
        for entry in entries:
            self.audit.write(conn, entry)
        if receipt is not None:
            outbox.add(conn, [receipt.publish], now)
            self.audit.write(conn, receipt.entry)


class InboundPipeline(Generic[P]):
    """Handles the deliveries of one queue; `handle` is the bus handler."""

    def __init__(
        self,
        *,
        db: SqliteThread,
        policy: VerificationPolicy,
        step: InboundStep[P],
        refusals: RefusalRecorder,
        peers: PeerCheckpoints | None = None,
    ) -> None:
        self._db = db
        self._policy = policy
        self._step = step
        self._refusals = refusals
        self._peers = peers

    async def handle(self, delivery: Delivery) -> Verdict:
        received_at = utc_now()
        verified: VerifiedEnvelope | None = None
        try:
            verified = verify_envelope(delivery.body, self._policy, now=received_at)
            prepared = self._step.prepare(delivery, verified, received_at)
        except ExchangeError as err:
            if verified is not None:
                # Refused after the signature checked out: name what was signed, so the
                # sender can match the negative receipt to its message.
                err.extra.setdefault("digest", verified.digest)
            return await self._refusals.refuse(delivery, err, received_at)
        # No await between the delivery and queuing its transaction: deliveries are stored
        # in the order they arrived.
        stored = await self._db.call(lambda conn: self._step.store(conn, prepared))
        if stored.refusal is not None:
            stored.refusal.extra.setdefault("digest", verified.digest)
            return await self._refusals.refuse(delivery, stored.refusal, received_at)
        if stored.after is not None:
            stored.after()
        sender = verified.envelope.header.sender
        if self._peers is not None and sender != self._refusals.node_id:
            # evidence about the sender; never refuses
            await self._peers.observe_headers(delivery.headers, sender)
        return stored.verdict


def body_evidence(body: bytes, digest: str) -> dict[str, Any]:
    """A refused body as its `rejected` entry keeps it: its SHA-256, its length and its
    first KiB (as text when that is UTF-8, else base64). Kept whole, a flood of large
    refused envelopes would grow the permanent log by their full size."""
    head = body[:EVIDENCE_HEAD_BYTES]
    text = _utf8_prefix(head)
    return {
        "sha256": digest,
        "bytes": len(body),
        "head": text if text is not None else base64.b64encode(head).decode("ascii"),
        "head_encoding": "utf-8" if text is not None else "base64",
        "kept": f"the SHA-256 of the body and its first {len(head)} bytes, not the body",
    }


def _utf8_prefix(head: bytes) -> str | None:
    """`head` as text, allowing a character cut at its end; None when it is not UTF-8."""
    for cut in range(4):
        try:
            return head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None


def _loose_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
