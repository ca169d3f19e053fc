"""The inbox step of the inbound pipeline: messages and receipts on `<p>.inbox.<node>`.

A message is checked against its routing key (the broker-authenticated sender) and its
schema; its positive receipt and the automatic case updates it means are signed; then one
transaction stores it in the inbox with its `verified`, `stored` and `receipt-sent` entries,
the receipt's outbox row and the updates. A receipt is checked against the message it
acknowledges and recorded with its `receipt-received` entry.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel

from exchange.audit.entries import AuditEvent, EntryFields
from exchange.audit.log import AuditLog
from exchange.crypto.signing import NodeSigner
from exchange.crypto.verify import VerifiedEnvelope
from exchange.directory.view import NetworkView
from exchange.errors import MisroutedError, VerificationError
from exchange.log import get_logger
from exchange.metrics import Metrics
from exchange.model.common import MessageType
from exchange.model.deadlines import respond_by
from exchange.model.envelope import Header
from exchange.model.receipt import Receipt
from exchange.relay.inbound import StepResult
from exchange.relay.receipts import OwedReceipt, ReplyTo, sign_receipt
from exchange.schemas import validate_payload
from exchange.storage import outbox
from exchange.storage.messages import insert_inbox, insert_receipt
from exchange.storage.records import IncomingMessage, IncomingReceipt, ReceiptRecord
from exchange.transport.bus import ACK, Delivery, dead_letter
from exchange.transport.topology import Topology, exchange_of

_log = get_logger(__name__)


class AutomaticUpdates(Protocol):
    """The case updates a message means for this node's networks (`CaseUpdates`)."""

    def prepare_automatic(
        self, envelope: Mapping[str, Any], header: Header, payload: BaseModel | None, direction: str
    ) -> Sequence[Any]:
        """Sign the updates the message triggers (before the transaction)."""
        ...

    def store_automatic(self, conn: sqlite3.Connection, prepared: Sequence[Any]) -> Sequence[Any]:
        """Store them inside the message's transaction; returns what was stored."""
        ...

    def announce(self, stored: Sequence[Any]) -> None:
        """Once committed: wake the feeds and the publisher."""
        ...


@dataclass(frozen=True, slots=True)
class MessageArrival:
    verified: VerifiedEnvelope
    body: bytes
    received_at: datetime
    respond_by: datetime | None
    receipt: OwedReceipt
    updates: Sequence[Any]


@dataclass(frozen=True, slots=True)
class ReceiptArrival:
    verified: VerifiedEnvelope
    receipt: Receipt
    body: bytes
    received_at: datetime


class InboxStep:
    """`InboundStep` for this node's inbox queue."""

    def __init__(
        self,
        *,
        node_id: str,
        view: NetworkView,
        signer: NodeSigner,
        topology: Topology,
        audit: AuditLog,
        metrics: Metrics,
        wake: Callable[[], None],
        updates: AutomaticUpdates | None = None,
    ) -> None:
        self.node_id = node_id
        self._view = view
        self._signer = signer
        self._topology = topology
        self._audit = audit
        self._metrics = metrics
        self._wake = wake
        self._updates = updates

    def prepare(
        self, delivery: Delivery, verified: VerifiedEnvelope, received_at: datetime
    ) -> MessageArrival | ReceiptArrival:
        header = verified.envelope.header
        self._check_routing(delivery, header)
        # What each member's role may send and receive (private-sector members: inquiries
        # and freeze notices in, their answers out): `role.forbidden`, with a receipt.
        self._view.check_exchange(header.sender, self.node_id, header.type)
        payload = validate_payload(header.type.value, header.schema_, verified.raw["payload"])
        if header.type is MessageType.RECEIPT:
            receipt = (
                payload
                if isinstance(payload, Receipt)
                else Receipt.model_validate(verified.raw["payload"])
            )
            return ReceiptArrival(verified, receipt, delivery.body, received_at)
        hints = _deadline_hints(payload)
        deadline = respond_by(header.type, header.priority, header.created_at, **hints)
        answer = sign_receipt(
            self._signer, self._topology, ReplyTo.of(header), verified.digest, received_at, None
        )
        updates: Sequence[Any] = ()
        if self._updates is not None:
            updates = self._updates.prepare_automatic(verified.raw, header, payload, "received")
        return MessageArrival(verified, delivery.body, received_at, deadline, answer, updates)

    def store(
        self, conn: sqlite3.Connection, arrival: MessageArrival | ReceiptArrival
    ) -> StepResult:
        if isinstance(arrival, ReceiptArrival):
            return self._store_receipt(conn, arrival)
        header = arrival.verified.envelope.header
        stored = insert_inbox(
            conn,
            IncomingMessage(
                header.id,
                header.type.value,
                header.case,
                header.sender,
                header.in_reply_to,
                arrival.verified.digest,
                arrival.body,
                arrival.received_at,
                arrival.respond_by,
            ),
        )
        if not stored.new:
            if stored.digest != arrival.verified.digest:
                return StepResult(
                    ACK,
                    refusal=VerificationError(
                        f"message {header.id} was already received with different content",
                        code="message.replayed",
                    ),
                )
            # A redelivery of what we hold: its receipt is owed already; change nothing.
            kind = header.type.value
            return StepResult(ACK, after=lambda: self._metrics.message("in", kind, "duplicate"))
        self._audit.write(conn, self._entry(AuditEvent.VERIFIED, arrival.verified, envelope=True))
        self._audit.write(conn, self._entry(AuditEvent.STORED, arrival.verified))
        outbox.add(conn, [arrival.receipt.publish], arrival.received_at)
        self._audit.write(conn, arrival.receipt.entry)
        updates: Sequence[Any] = ()
        if self._updates is not None and arrival.updates:
            updates = self._updates.store_automatic(conn, arrival.updates)
        return StepResult(ACK, after=lambda: self._stored(header, updates))

    def _stored(self, header: Header, updates: Sequence[Any]) -> None:
        self._wake()
        if self._updates is not None and updates:
            self._updates.announce(updates)
        self._metrics.message("in", header.type.value, "received")
        self._metrics.receipt("sent", "accepted")
        _log.info(
            "inbox.stored",
            message_id=str(header.id),
            case=header.case,
            node=self.node_id,
            sender=header.sender,
            type=header.type.value,
        )

    def _store_receipt(self, conn: sqlite3.Connection, arrival: ReceiptArrival) -> StepResult:
        header = arrival.verified.envelope.header
        receipt = arrival.receipt
        # The receipt must come from a recipient of a message we sent, and be about the
        # bytes we signed (else it says nothing about our message: see `insert_receipt`).
        record = ReceiptRecord(
            header.id,
            receipt.message_id,
            header.sender,
            receipt.digest,
            receipt.outcome,
            receipt.reason,
            receipt.detail,
            arrival.received_at,
            arrival.body,
        )
        outcome = insert_receipt(conn, IncomingReceipt(record, arrival.verified.digest))
        if outcome.refusal is not None:
            # Kept as evidence; nothing changes. A receipt is never answered.
            code = outcome.refusal
            self._audit.write(
                conn, self._entry(AuditEvent.REJECTED, arrival.verified, envelope=True, code=code)
            )
            return StepResult(dead_letter(code), after=lambda: self._receipt_refused(arrival, code))
        if not outcome.new:
            # A redelivery of a receipt we hold: change nothing.
            return StepResult(ACK)
        status = outcome.status
        self._audit.write(
            conn,
            EntryFields.build(
                AuditEvent.RECEIPT_RECEIVED,
                message_id=receipt.message_id,
                case=header.case,
                digest=receipt.digest,
                code=receipt.reason,
                envelope=arrival.verified.raw,
                detail={"from": header.sender, "outcome": receipt.outcome, "status": status},
            ),
        )

        def counted() -> None:
            self._metrics.receipt("received", receipt.outcome)
            if status in ("delivered", "rejected") and outcome.created_at is not None:
                self._metrics.message("out", outcome.type or "unknown", status)
                age = (arrival.received_at - outcome.created_at).total_seconds()
                self._metrics.observe_end_to_end(age)

        return StepResult(ACK, after=counted)

    def _receipt_refused(self, arrival: ReceiptArrival, code: str) -> None:
        if code == "receipt.mismatch":
            _log.warning(
                "receipt.digest_mismatch",
                message_id=str(arrival.receipt.message_id),
                node=self.node_id,
                sender=arrival.verified.envelope.header.sender,
            )

    def _check_routing(self, delivery: Delivery, header: Header) -> None:
        """The exchange and the broker-authenticated routing key must agree with the signed
        header. A disagreement is the transport's doing (whoever published the signed bytes
        there), not the signer's: `MisroutedError`, refused without a receipt."""
        home = exchange_of(header.type)
        if home != "messages":
            raise MisroutedError(
                f"a {header.type.value} travels on the {home} exchange, not on the messages "
                "exchange: refused here, where no network membership is checked",
                code="exchange.mismatch",
            )
        if self.node_id not in header.recipients:
            raise MisroutedError(
                f"the message is addressed to {', '.join(header.recipients)}, not {self.node_id}",
                code="recipient.mismatch",
            )
        expected = self._topology.routing_key(self.node_id, header.type.value, header.sender)
        if delivery.routing_key != expected:
            raise MisroutedError(
                f"routing key {delivery.routing_key!r} does not match the signed header "
                f"(expected {expected!r})",
                code="sender.mismatch",
            )

    @staticmethod
    def _entry(
        event: AuditEvent,
        verified: VerifiedEnvelope,
        *,
        envelope: bool = False,
        code: str | None = None,
    ) -> EntryFields:
        header = verified.envelope.header
        return EntryFields.build(
            event,
            message_id=header.id,
            case=header.case,
            digest=verified.digest,
            code=code,
            envelope=verified.raw if envelope else None,
            detail={"from": header.sender, "type": header.type.value},
        )


def _deadline_hints(payload: Any) -> dict[str, Any]:
    """Extra inputs of the deadline table that a payload may carry."""
    value = getattr(payload, "directly_accessible", None)
    return {"directly_accessible": bool(value)} if value is not None else {}
