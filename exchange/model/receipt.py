"""`receipt`: the recipient node's signed acknowledgement of a message (non-repudiation of
receipt): accepted, or rejected with the error code that made it refuse the message.

`digest` is the hex SHA-256 of the RFC 8785 canonical bytes of the received message's
`{"header", "payload"}`, the bytes its signature covers, once that signature verified. A
refusal before the signature verified names the SHA-256 of the exact bytes received
instead: a copy whose signature was altered is never refused in the genuine message's name.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field
from typing_extensions import TypeAliasType

from exchange.model.base import AbsentWhen, NamedString, RequiredWhen, Rule, RuledPart
from exchange.model.values import Digest, MessageId, Text, Timestamp

ReasonCode = TypeAliasType(
    "ReasonCode",
    Annotated[
        str,
        NamedString(
            "ReasonCode",
            description="An error code, e.g. signature.invalid, cert.revoked, schema.invalid, "
            "message.replayed. A pattern rather than a closed list, so that a node still accepts "
            "receipts that carry codes added by newer nodes.",
            max_length=64,
            pattern=r"^[a-z][a-z_]{0,30}(\.[a-z][a-z_]{0,30})?$",
            examples=["signature.invalid", "schema.invalid"],
        ),
    ],
)


class Receipt(RuledPart):
    """Acknowledgement of one message, accepted or rejected with a reason code."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        RequiredWhen("outcome", ("rejected",), present=("reason",)),
        AbsentWhen("outcome", ("accepted",), ("reason",)),
    )

    message_id: MessageId = Field(description="Header id of the message acknowledged.")
    digest: Digest = Field(
        description="Hex SHA-256 of the canonical signed bytes received (RFC 8785 form of "
        '{"header": ..., "payload": ...}) once their signature verified; in a refusal made '
        "before the signature verified, hex SHA-256 of the exact bytes received."
    )
    outcome: Literal["accepted", "rejected"] = Field(
        description="Whether the message was accepted.", examples=["rejected"]
    )
    reason: ReasonCode | None = Field(
        default=None, description="The error code, when rejected; absent when accepted."
    )
    detail: Text | None = Field(
        default=None,
        description="A person-readable explanation (no payload contents).",
        examples=["The certificate of RS-PPO was revoked on 2026-11-20."],
    )
    received_at: Timestamp = Field(description="When the message was received.")
