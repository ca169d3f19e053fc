"""The small immutable records that `MessageStore` takes and returns.

Times are timezone-aware UTC, ids are UUIDs, envelopes are the exact signed bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    """A signed message accepted from a local client, ready for the outbox."""

    id: UUID
    type: str
    case: str
    in_reply_to: UUID | None
    recipients: tuple[str, ...]
    created_at: datetime
    respond_by: datetime | None
    envelope: bytes
    digest: str
    submitted_by: str | None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ReceiptRecord:
    """A verified receipt from a recipient: accepted, or rejected with a reason code.

    `digest` is what it names: the digest of the message's signed bytes, or (a refusal
    before the signature was checked) the SHA-256 of the exact bytes that were published.
    """

    id: UUID
    """The receipt's own message id: a receipt is recorded once, however often delivered."""
    message_id: UUID
    from_node: str
    digest: str
    outcome: str
    reason: str | None
    detail: str | None
    received_at: datetime
    envelope: bytes


@dataclass(frozen=True, slots=True)
class IncomingReceipt:
    """A verified receipt, ready to be recorded; `receipt_digest` is the digest of the
    receipt envelope's own signed bytes (a second copy under its id must match it)."""

    receipt: ReceiptRecord
    receipt_digest: str


RecipientStateName = Literal["pending", "sent", "delivered", "rejected", "failed"]


@dataclass(frozen=True, slots=True)
class RecipientState:
    """Where one recipient's copy of a message stands."""

    recipient: str
    state: RecipientStateName
    attempts: int
    next_attempt_at: datetime | None
    confirmed_at: datetime | None
    receipt: ReceiptRecord | None


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """An outgoing message as stored, with its status and per-recipient states."""

    id: UUID
    type: str
    case: str
    in_reply_to: UUID | None
    recipients: tuple[str, ...]
    created_at: datetime
    respond_by: datetime | None
    expires_at: datetime | None
    status: str
    reason: str | None
    envelope: bytes
    digest: str
    submitted_by: str | None
    updated_at: datetime
    recipient_states: tuple[RecipientState, ...]
    receipts: tuple[ReceiptRecord, ...]


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A verified incoming message, ready to be stored once (`envelope`: the exact bytes)."""

    id: UUID
    type: str
    case: str
    sender: str
    in_reply_to: UUID | None
    digest: str
    envelope: bytes
    received_at: datetime
    respond_by: datetime | None


@dataclass(frozen=True, slots=True)
class InboxRecord(IncomingMessage):
    """A stored incoming message; `cursor` orders the inbox."""

    cursor: int


@dataclass(frozen=True, slots=True)
class InboxArrival:
    """What `insert_inbox` found for an incoming message, or stored."""

    cursor: int
    digest: str
    """Of the stored copy: not the arrival's when its id was used for other content."""
    new: bool
    """Stored by this call; False when a copy with the same id was already there."""


@dataclass(frozen=True, slots=True)
class ReceiptOutcome:
    """What `insert_receipt` made of a receipt.

    `refusal` ("recipient.mismatch", "receipt.mismatch" or "message.replayed") means
    nothing was recorded; otherwise `status` is the message's status after the receipt, and
    `new` is False when this very receipt was recorded before (a redelivery).
    """

    refusal: str | None
    status: str | None = None
    type: str | None = None
    created_at: datetime | None = None
    new: bool = True


@dataclass(frozen=True, slots=True)
class CaseMessage:
    """One message of a case: sent by us ("out", with status) or received ("in", with sender)."""

    direction: Literal["out", "in"]
    id: UUID
    type: str
    sender: str | None
    recipients: tuple[str, ...]
    in_reply_to: UUID | None
    at: datetime
    status: str | None


@dataclass(frozen=True, slots=True)
class OverdueItem:
    """A request past its deadline; `counterpart` is who sent it or who owes the answer."""

    message_id: UUID
    type: str
    case: str
    counterpart: str
    respond_by: datetime


@dataclass(frozen=True, slots=True)
class OverdueReport:
    we_owe: tuple[OverdueItem, ...]
    owed_to_us: tuple[OverdueItem, ...]
