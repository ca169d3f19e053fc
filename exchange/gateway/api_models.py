"""The HTTP API's request and response documents, as pydantic models.

They validate what local clients send (`SubmitMessage`) and describe what the gateway
answers; `openapi.py` publishes their JSON Schemas, so the served OpenAPI document and the
behaviour cannot drift apart (a test validates real responses against these models).
"""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from exchange.model.common import CaseRef, MessageType, NodeId, Priority, UtcDatetime
from exchange.model.envelope import MAX_RECIPIENTS, Envelope, Handling, Header, Signature

MessageStatusName = Literal["accepted", "sent", "delivered", "rejected", "failed"]


class _Api(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SubmitMessage(_Api):
    """A message for partner nodes. The gateway adds id, sender, schema and created_at, signs it."""

    type: MessageType = Field(
        description="The message type (not `receipt`: nodes send those).",
        json_schema_extra={"not": {"const": MessageType.RECEIPT.value}},
    )
    recipients: list[NodeId] = Field(
        min_length=1,
        max_length=MAX_RECIPIENTS,
        description="Nodes of this network to send to, each once.",
        json_schema_extra={"uniqueItems": True},
    )
    case: CaseRef
    in_reply_to: UUID | None = Field(default=None, description="The message this one answers.")
    priority: Priority = Field(description="urgent or normal; sets the response deadline.")
    handling: Handling
    expires_at: UtcDatetime | None = Field(
        default=None, description="After this time the message must not be sent or acted upon."
    )
    payload: dict[str, Any] = Field(
        description="The message body, valid against `schemas/<type>/v<major>.json`."
    )

    @field_validator("type")
    @classmethod
    def _not_receipt(cls, value: MessageType) -> MessageType:
        if value is MessageType.RECEIPT:
            raise ValueError("receipts are sent by the receiving node itself")
        return value

    @field_validator("recipients")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("recipients must not repeat")
        return value


class Accepted(_Api):
    id: UUID = Field(description="The message id the gateway chose.")
    status: Literal["accepted"]


class RedactedEnvelope(_Api):
    """A signed envelope as a role that may not read payloads (an auditor) sees it: header
    and signature, the payload replaced by its digest."""

    header: Header
    signature: Signature
    withheld: dict[str, str] = Field(
        description="Each withheld member (`payload`) with the hex SHA-256 of its RFC 8785 "
        "canonical form: whoever holds the payload can show it is the one signed.",
        json_schema_extra={"additionalProperties": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
    )


class ReceiptView(_Api):
    """A signed receipt from a recipient."""

    id: UUID = Field(description="The receipt's own message id.")
    from_node: NodeId
    outcome: Literal["accepted", "rejected"]
    reason: str | None = Field(description="The error code of a rejection.")
    detail: str | None
    digest: str = Field(
        description="What the recipient received: the message's `digest` (the bytes it "
        "signed, once their signature verified), or the SHA-256 of the exact bytes published "
        "(refused before the signature was checked)."
    )
    received_at: UtcDatetime
    envelope: Envelope = Field(description="The signed receipt, proof of receipt.")


class RecipientView(_Api):
    recipient: NodeId
    state: Literal["pending", "sent", "delivered", "rejected", "failed"]
    attempts: int = Field(ge=0, description="Publish attempts made so far.")
    next_attempt_at: UtcDatetime | None
    confirmed_at: UtcDatetime | None = Field(description="When the broker confirmed the publish.")
    receipt: ReceiptView | None = Field(
        description="The receipt that sets the state: the recipient's first positive one, "
        "else its first refusal."
    )


class MessageView(_Api):
    """An outgoing message and where it stands."""

    id: UUID
    type: MessageType
    case: CaseRef
    sender: NodeId
    recipients: list[NodeId]
    in_reply_to: UUID | None
    created_at: UtcDatetime
    expires_at: UtcDatetime | None
    respond_by: UtcDatetime | None = Field(description="When a response is legally due.")
    status: MessageStatusName
    reason: str | None = Field(description="Error code of a rejection, or why it failed.")
    digest: str = Field(description="Hex SHA-256 of the canonical signed header and payload.")
    submitted_by: str | None = Field(description="The token id that submitted it.")
    updated_at: UtcDatetime
    deliveries: list[RecipientView]
    receipts: list[ReceiptView] = Field(
        description="The status history: every receipt received, in the order it came. A "
        "recipient's positive receipt supersedes a refusal it sent before (of a copy it could "
        "not accept then); a refusal never undoes a positive receipt."
    )
    envelope: Envelope | RedactedEnvelope = Field(
        description="The signed message; without its payload for a role that may not read "
        "payloads (auditors)."
    )


class InboxItem(_Api):
    """A verified incoming message."""

    cursor: int = Field(ge=1, description="Position in this node's inbox.")
    id: UUID
    type: MessageType
    case: CaseRef
    sender: NodeId
    in_reply_to: UUID | None
    digest: str
    received_at: UtcDatetime
    respond_by: UtcDatetime | None
    envelope: Envelope | RedactedEnvelope = Field(
        description="The signed message; without its payload for a role that may not read "
        "payloads (auditors)."
    )


class InboxPage(_Api):
    items: list[InboxItem]
    next: int = Field(
        ge=0, description="Pass as `after` to get the following messages (same when empty)."
    )


class CaseUpdateEvent(_Api):
    """A signed case update of a network this node belongs to, as subscribers receive it."""

    cursor: int = Field(
        ge=1, description="Position in this node's updates: the SSE `id` and polling cursor."
    )
    id: UUID = Field(description="The update's message id.")
    network: str = Field(description="The prosecutor network it was published to.")
    case: CaseRef
    event: str = Field(description="What happened (a case-update event).", examples=["frozen"])
    sender: NodeId
    direction: Literal["in", "out"] = Field(description="Received, or published by this node.")
    digest: str = Field(description="Hex SHA-256 of the canonical signed header and payload.")
    created_at: UtcDatetime
    received_at: UtcDatetime = Field(description="When this node stored it.")
    update: dict[str, Any] = Field(description="The case-update payload.")
    envelope: Envelope = Field(description="The signed envelope, to verify independently.")


class CaseUpdatePage(_Api):
    items: list[CaseUpdateEvent]
    next: int = Field(
        ge=0, description="Pass as `after` to get the following updates (same when empty)."
    )


class CaseMessageView(_Api):
    direction: Literal["out", "in"]
    id: UUID
    type: MessageType
    sender: NodeId
    recipients: list[NodeId] = Field(description="For outgoing messages; empty for incoming.")
    in_reply_to: UUID | None
    at: UtcDatetime = Field(description="Created (outgoing) or received (incoming).")
    status: MessageStatusName | None = Field(description="For outgoing messages.")


class CaseView(_Api):
    case: CaseRef
    messages: list[CaseMessageView]


class OverdueItemView(_Api):
    message_id: UUID
    type: MessageType
    case: CaseRef
    counterpart: NodeId = Field(description="Who sent the request (we owe) or owes the answer.")
    respond_by: UtcDatetime
    overdue_seconds: int = Field(ge=0)


class OverdueView(_Api):
    now: UtcDatetime
    we_owe: list[OverdueItemView]
    owed_to_us: list[OverdueItemView]


class Health(_Api):
    status: Literal["ok"]
    node: NodeId


class Readiness(_Api):
    status: Literal["ready", "degraded"] = Field(
        description="degraded: serving, but on a network directory past its next update."
    )
    checks: dict[str, bool]
    detail: str | None = None


class ProblemFieldError(_Api):
    path: str = Field(description="JSON-pointer-like path of the failing field.")
    message: str


class ProblemDetails(_Api):
    """RFC 9457 problem details, with a stable machine `code`."""

    type: str
    title: str
    status: int
    code: str = Field(examples=["schema.invalid"])
    detail: str
    errors: list[ProblemFieldError] | None = None
    checks: dict[str, bool] | None = Field(default=None, description="Readiness checks (503).")
