"""Signed receipts: the answer a recipient owes for each message, and the one it refuses.

A receipt is signed before the transaction that stores the message it answers, and is
owed in that transaction: an outbox row (published like any other message) and its
`receipt-sent` audit entry, written with the `verified` and `stored` entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from exchange.audit.entries import AuditEvent, EntryFields
from exchange.crypto.signing import NodeSigner, encode_envelope
from exchange.errors import RECEIPT_REASONS
from exchange.model.common import HandlingCode, MessageType, Priority, Tlp, utc_now
from exchange.model.envelope import Handling, Header
from exchange.model.receipt import Receipt
from exchange.schemas import schema_ref
from exchange.storage.outbox import Publish
from exchange.transport.topology import Topology

RECEIPT_CODES = RECEIPT_REASONS
"""The reason codes a negative receipt may carry (anything else is `envelope.malformed`)."""


@dataclass(frozen=True, slots=True)
class ReplyTo:
    """What a receipt needs to know of the message it answers."""

    id: UUID
    sender: str
    case: str
    priority: Priority
    handling: Handling | None

    @classmethod
    def of(cls, header: Header) -> ReplyTo:
        return cls(header.id, header.sender, header.case, header.priority, header.handling)

    @classmethod
    def loose(cls, header: Mapping[str, Any], partners: frozenset[str]) -> ReplyTo | None:
        """From the header of an envelope that failed verification, when its sender is a
        partner node and its id a UUID; else None (nobody to answer)."""
        sender = header.get("sender")
        message_id = uuid_or_none(header.get("id"))
        if not isinstance(sender, str) or sender not in partners or message_id is None:
            return None
        case = header.get("case") if isinstance(header.get("case"), str) else None
        try:
            original = Header.model_validate({**header, "case": case or "unknown"})
        except ValueError:
            return cls(message_id, sender, "unknown", Priority.NORMAL, None)
        return cls(message_id, sender, original.case, original.priority, original.handling)


@dataclass(frozen=True, slots=True)
class OwedReceipt:
    """A signed receipt: its outbox row and its audit entry."""

    publish: Publish
    entry: EntryFields


def sign_receipt(
    signer: NodeSigner,
    topology: Topology,
    original: ReplyTo,
    digest: str,
    received_at: datetime,
    refusal: tuple[str, str] | None,
) -> OwedReceipt:
    """Sign a receipt for `original` (accepted, or refused with (code, detail))."""
    node_id = signer.node_id
    payload = Receipt(
        message_id=original.id,
        digest=digest,
        outcome="accepted" if refusal is None else "rejected",
        reason=None if refusal is None else refusal[0],
        detail=None if refusal is None else refusal[1][:1000],
        received_at=received_at,
    ).model_dump(mode="json")
    handling = original.handling or Handling(tlp=Tlp.AMBER, code=HandlingCode.H0)
    header = Header.model_validate(
        {
            "id": str(uuid4()),
            "type": MessageType.RECEIPT.value,
            "schema": schema_ref(MessageType.RECEIPT),
            "sender": node_id,
            "recipients": [original.sender],
            "case": original.case,
            "in_reply_to": str(original.id),
            "created_at": utc_now(),
            "priority": original.priority,
            "handling": handling.model_dump(mode="json"),
        }
    )
    envelope = signer.sign_envelope(header, payload)
    publish = Publish(
        message_id=header.id,
        recipient=original.sender,
        kind="receipt",
        type=MessageType.RECEIPT.value,
        exchange="messages",
        routing_key=topology.routing_key(original.sender, MessageType.RECEIPT.value, node_id),
        body=encode_envelope(envelope),
    )
    entry = EntryFields.build(
        AuditEvent.RECEIPT_SENT,
        message_id=original.id,
        case=original.case,
        digest=digest,
        code=None if refusal is None else refusal[0],
        envelope=envelope,
        detail={"to": original.sender, "receipt_id": str(header.id)},
    )
    return OwedReceipt(publish, entry)


def uuid_or_none(value: Any) -> UUID | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return UUID(value)
    except ValueError:
        return None
