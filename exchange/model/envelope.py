"""The signed envelope: header, payload (or sealed payload), signature.

The envelope is the unit that crosses the broker. The signature covers the RFC 8785
canonical form of `{"header": ..., "payload": ...}`; the payload's own schema is checked
separately by the schema registry (`exchange.schemas`), named by `header.schema`.
"""

from __future__ import annotations

from typing import Any, Literal, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from exchange.model.common import (
    CaseRef,
    HandlingCode,
    MessageType,
    NodeId,
    Priority,
    Tlp,
    UtcDatetime,
)

MAX_ENVELOPE_BYTES = 1_048_576
"""Largest serialized envelope a node accepts (1 MiB); checked before parsing."""

MAX_RECIPIENTS = 64
SCHEMA_REF_PATTERN = r"^[a-z][a-z-]{2,40}/[1-9][0-9]{0,3}$"
KID_PATTERN = r"^[0-9a-f]{64}$"
B64URL_PATTERN = r"^[A-Za-z0-9_-]+$"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_max_length=4096)


NAMED_RECIPIENTS_ONLY = frozenset({Tlp.RED, Tlp.AMBER_STRICT})
"""Labels whose information stays with the named recipients: never in a network's case
updates, a subscriber's feed or a webhook."""


class Handling(_Strict):
    """How the recipient may use and pass on the information."""

    tlp: Tlp = Field(description="Traffic Light Protocol label.", examples=["AMBER"])
    code: HandlingCode = Field(
        description="Handling code: H0 no restriction, H1 not to be used as evidence without "
        "the originator's consent, H2 not to be disseminated without consent, "
        "H3 other restrictions (see payload).",
        examples=["H2"],
    )

    @property
    def named_recipients_only(self) -> bool:
        """TLP:RED or TLP:AMBER+STRICT: the information may not be passed on beyond the
        message's named recipients (a case update reaches a whole network and its
        subscribers and webhooks, so none is made of it)."""
        return self.tlp in NAMED_RECIPIENTS_ONLY


class Header(_Strict):
    """Who sends what to whom, when, and how it must be handled."""

    id: UUID = Field(description="Unique message id (UUID), chosen by the sender.")
    type: MessageType = Field(description="The message type.", examples=["asset-inquiry"])
    schema_: str = Field(
        alias="schema",
        pattern=SCHEMA_REF_PATTERN,
        description="The payload schema, as '<type>/<major version>'.",
        examples=["asset-inquiry/1"],
    )
    sender: NodeId
    recipients: list[NodeId] = Field(
        min_length=1, max_length=MAX_RECIPIENTS, description="The nodes the message is for."
    )
    case: CaseRef
    in_reply_to: UUID | None = Field(
        default=None, description="The id of the message this one answers, if any."
    )
    created_at: UtcDatetime = Field(description="When the sender signed the message.")
    expires_at: UtcDatetime | None = Field(
        default=None, description="After this time the message must not be acted upon."
    )
    priority: Priority = Field(description="urgent or normal.", examples=["urgent"])
    handling: Handling

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        if not self.schema_.startswith(f"{self.type.value}/"):
            raise ValueError(f"schema {self.schema_!r} does not name type {self.type.value!r}")
        if len(set(self.recipients)) != len(self.recipients):
            raise ValueError("recipients must not repeat")
        if self.sender in self.recipients:
            raise ValueError("a node cannot send a message to itself")
        if self.expires_at is not None and self.expires_at <= self.created_at:
            raise ValueError("expires_at must be after created_at")
        return self

    @property
    def schema_major(self) -> int:
        return int(self.schema_.rsplit("/", 1)[1])


class Signature(_Strict):
    """An Ed25519 signature over the canonical header and payload."""

    alg: Literal["Ed25519"] = Field(description="Always Ed25519 (RFC 8032).")
    kid: str = Field(
        pattern=KID_PATTERN,
        description="Hex SHA-256 of the signer's DER-encoded certificate.",
    )
    value: str = Field(
        pattern=B64URL_PATTERN,
        min_length=86,
        max_length=86,
        description="The 64-byte signature, base64url without padding.",
    )


class UnsignedEnvelope(BaseModel):
    """Header and payload before signing (the input of `exchange envelope sign`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    header: Header
    payload: dict[str, Any] = Field(description="The message body; its schema is header.schema.")


class Envelope(UnsignedEnvelope):
    """A signed envelope as it crosses the broker."""

    signature: Signature

    def signed_part(self) -> dict[str, Any]:
        """The document the signature covers, in its JSON form."""
        return {
            "header": self.header.model_dump(mode="json", by_alias=True, exclude_none=False),
            "payload": self.payload,
        }


class SealedEnvelope(BaseModel):
    """A signed envelope whose payload is sealed to its recipients: `sealed` in place of
    `payload`, and the signature covers `{"header": ..., "sealed": ...}`. The structure of
    `sealed` is checked when it is opened (`exchange.crypto.sealing`), as a payload's is
    checked against its schema."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    header: Header
    sealed: dict[str, Any] = Field(description="The payload, sealed to the recipient nodes.")
    signature: Signature

    def signed_part(self) -> dict[str, Any]:
        """The document the signature covers, in its JSON form."""
        return {
            "header": self.header.model_dump(mode="json", by_alias=True, exclude_none=False),
            "sealed": self.sealed,
        }
