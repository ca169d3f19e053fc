"""`sealed`: a payload encrypted to its recipient nodes, in place of the clear `payload`.

AES-256-GCM under a fresh content key (CEK), the CEK committed to by a SHA-256, and sealed
to each recipient node with HPKE (RFC 9180, Base mode). `exchange.crypto.sealing` builds
and opens it; this model is its structure, checked before anything is decrypted.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from exchange.model.common import NodeId
from exchange.model.envelope import B64URL_PATTERN, KID_PATTERN, MAX_ENVELOPE_BYTES, MAX_RECIPIENTS

Kem = Literal["X-Wing", "X25519"]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_max_length=4096)


class SealedRecipient(_Strict):
    """The CEK, sealed to one recipient node's encryption key."""

    node: NodeId
    kid: str = Field(
        pattern=KID_PATTERN,
        description="Hex SHA-256 of the recipient's encryption public key bytes, as the "
        "network directory publishes them.",
    )
    kem: Kem = Field(
        description="X-Wing (ML-KEM-768 + X25519, the network default) or X25519: the KEM "
        "of that key in the directory.",
        examples=["X-Wing"],
    )
    enc: str = Field(
        pattern=B64URL_PATTERN,
        description="base64url of HPKE Base-mode single-shot sealing of the CEK (KEM per "
        "`kem`, HKDF-SHA256, AES-256-GCM, info 'xb-cek/v1 ' + header.id): the KEM's "
        "encapsulated key followed by the ciphertext.",
    )


class Sealed(_Strict):
    """A payload sealed to its recipient nodes."""

    alg: Literal["A256GCM"] = Field(description="Always A256GCM: AES-256-GCM.")
    nonce: str = Field(
        pattern=B64URL_PATTERN,
        min_length=16,
        max_length=16,
        description="base64url of the 12-byte AES-GCM nonce.",
    )
    ciphertext: str = Field(
        pattern=B64URL_PATTERN,
        max_length=MAX_ENVELOPE_BYTES,
        description="base64url of AES-256-GCM (tag appended) of the payload's RFC 8785 "
        "bytes under the CEK, with the header's RFC 8785 bytes as additional data.",
    )
    commitment: str = Field(
        pattern=B64URL_PATTERN,
        min_length=43,
        max_length=43,
        description="base64url of SHA-256('xb-cek/v1' ‖ CEK): commits the sender to one CEK.",
    )
    recipients: list[SealedRecipient] = Field(
        min_length=1,
        max_length=MAX_RECIPIENTS,
        description="One entry per recipient node.",
    )

    @field_validator("recipients")
    @classmethod
    def _one_entry_per_node(cls, value: list[SealedRecipient]) -> list[SealedRecipient]:
        nodes = [r.node for r in value]
        if len(set(nodes)) != len(nodes):
            raise ValueError("a node has more than one entry")
        return value
