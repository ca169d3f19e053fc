"""Sealed payloads: a payload encrypted end to end to its recipient nodes, and signed.

The payload's RFC 8785 bytes are encrypted with AES-256-GCM under a fresh 32-byte content
key (CEK), with the header's RFC 8785 bytes as additional data. The CEK is committed to
(SHA-256 of 'xb-cek/v1' ‖ CEK), so that a disclosed CEK proves which plaintext was sent, and
sealed to each recipient node's key with HPKE (X-Wing or X25519, HKDF-SHA256, AES-256-GCM,
info 'xb-cek/v1 ' ‖ header.id). The signature covers `{"header": ..., "sealed": ...}`.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import ValidationError

from exchange.crypto.canonical import CanonicalizationError, canonicalize, sha256_hex
from exchange.crypto.kem import DecryptionKey, RecipientKey, enc_length, hpke_suite
from exchange.crypto.signing import ALGORITHM, b64url_encode
from exchange.errors import ExchangeError, ExchangeValueError, FieldError, SealError
from exchange.model.common import MessageType
from exchange.model.envelope import Header
from exchange.model.sealed import Sealed, SealedRecipient

__all__ = [
    "CEK_LENGTH",
    "EnvelopeSigner",
    "SealedParts",
    "commitment_of",
    "open_sealed",
    "open_with_cek",
    "parse_sealed",
    "require_sealed",
    "seal_and_sign",
    "seal_payload",
    "sign_sealed",
    "signing_input_sealed",
]

ALG = "A256GCM"
CEK_LENGTH = 32
NONCE_LENGTH = 12
_TAG_LENGTH = 16
COMMITMENT_LABEL = b"xb-cek/v1"
INFO_LABEL = b"xb-cek/v1 "
_MAX_FIELD_ERRORS = 20
_COMMITMENT_LENGTH = 32
_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_PAD = {0: b"", 2: b"==", 3: b"="}
_UNUSED_BITS = {2: 0x0F, 3: 0x03}  # the bits of the last character that encode nothing


class EnvelopeSigner(Protocol):
    """What signing needs of a node's identity (`NodeSigner`, or a key in a token)."""

    @property
    def node_id(self) -> str: ...

    @property
    def kid(self) -> str: ...

    def sign_bytes(self, data: bytes) -> str: ...


def commitment_of(cek: bytes) -> bytes:
    """SHA-256('xb-cek/v1' ‖ CEK): what `sealed.commitment` holds, base64url."""
    return hashlib.sha256(COMMITMENT_LABEL + cek).digest()


def signing_input_sealed(header: Mapping[str, Any], sealed: Mapping[str, Any]) -> bytes:
    """The bytes a sealed envelope's signature covers: canonical JSON of header and sealed."""
    return canonicalize({"header": header, "sealed": sealed})


CLEAR_TYPES = frozenset({MessageType.RECEIPT})
"""Message types that travel in clear: a receipt carries only ids, digests and a code."""


def require_sealed(header: Header, *, sealed: bool, required: bool = True) -> None:
    """Refuse (`seal.required`) a clear payload of a type that is sealed, where the network
    requires sealing (`required`, the default)."""
    if required and not sealed and header.type not in CLEAR_TYPES:
        raise SealError(
            f"a {header.type.value} must be sealed to its recipients", code="seal.required"
        )


# --- sealing ------------------------------------------------------------------------------


def seal_payload(
    header_json: Mapping[str, Any],
    payload: Mapping[str, Any],
    recipients: Sequence[RecipientKey],
) -> tuple[dict[str, Any], bytes]:
    """The `sealed` object of `payload` for `recipients` (one key per node), and its CEK.

    `header_json` is the header exactly as it will be signed (its JSON form): its RFC 8785
    bytes are the AES-GCM additional data, and its `id` is in each recipient's HPKE info.
    """
    nodes = [r.node for r in recipients]
    if not nodes:
        raise ExchangeValueError("a payload is sealed to at least one node", code="usage")
    if len(set(nodes)) != len(nodes):
        raise ExchangeValueError("a payload is sealed to each node once", code="usage")
    info = _info(header_json)
    cek = os.urandom(CEK_LENGTH)
    nonce = os.urandom(NONCE_LENGTH)
    ciphertext = AESGCM(cek).encrypt(nonce, canonicalize(payload), canonicalize(header_json))
    entries = []
    for recipient in recipients:
        try:
            enc = hpke_suite(recipient.kem).encrypt(cek, recipient.hpke_key, info=info)
        except ValueError as err:  # an X25519 key of low order
            raise ExchangeValueError(
                f"the {recipient.kem} key of {recipient.node} is not usable: {err}",
                code="config.invalid",
            ) from None
        entries.append(
            {
                "node": recipient.node,
                "kid": recipient.kid,
                "kem": recipient.kem,
                "enc": b64url_encode(enc),
            }
        )
    sealed = {
        "alg": ALG,
        "nonce": b64url_encode(nonce),
        "ciphertext": b64url_encode(ciphertext),
        "commitment": b64url_encode(commitment_of(cek)),
        "recipients": entries,
    }
    return sealed, cek


def sign_sealed(
    signer: EnvelopeSigner, header: Header | Mapping[str, Any], sealed: Mapping[str, Any]
) -> tuple[dict[str, Any], str]:
    """The wire envelope {"header", "sealed", "signature"}, and the hex SHA-256 of the
    signed bytes (what receipts and the audit log name)."""
    header_json = (
        header.model_dump(mode="json", by_alias=True) if isinstance(header, Header) else header
    )
    if header_json.get("sender") != signer.node_id:
        raise ExchangeError(
            f"this key signs for {signer.node_id}, not for sender {header_json.get('sender')}",
            code="sender.mismatch",
        )
    signed = signing_input_sealed(header_json, sealed)
    envelope = {
        "header": dict(header_json),
        "sealed": dict(sealed),
        "signature": {"alg": ALGORITHM, "kid": signer.kid, "value": signer.sign_bytes(signed)},
    }
    return envelope, sha256_hex(signed)


def seal_and_sign(
    signer: EnvelopeSigner,
    header: Header,
    payload: Mapping[str, Any],
    recipients: Sequence[RecipientKey],
) -> tuple[dict[str, Any], str, bytes]:
    """`seal_payload` then `sign_sealed`: the wire envelope, its digest and the CEK (which
    the sender may keep, for disclosure)."""
    header_json = header.model_dump(mode="json", by_alias=True)
    sealed, cek = seal_payload(header_json, payload, recipients)
    envelope, digest = sign_sealed(signer, header_json, sealed)
    return envelope, digest, cek


# --- opening ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SealedParts:
    """A `sealed` object whose structure was checked, with its byte fields decoded (each
    entry's `enc` is decoded by the node that opens it)."""

    recipients: tuple[SealedRecipient, ...]
    nonce: bytes = field(repr=False)
    ciphertext: bytes = field(repr=False)
    commitment: bytes = field(repr=False)


def parse_sealed(sealed: Any) -> SealedParts:
    """The structure of a `sealed` object, checked: fields, base64url, the lengths of nonce,
    commitment and each `enc`, known KEMs, one entry per node. Else `seal.malformed`."""
    try:
        model = Sealed.model_validate(sealed)
    except ValidationError as err:
        errors = [
            FieldError("/sealed/" + "/".join(str(p) for p in e["loc"]), e["msg"])
            for e in err.errors(include_url=False, include_input=False)[:_MAX_FIELD_ERRORS]
        ]
        raise SealError(
            "the sealed payload does not match its structure", code="seal.malformed", errors=errors
        ) from None
    # The model admits only the base64url alphabet; the lengths and spellings are checked here.
    nonce = _decode(model.nonce, "nonce", NONCE_LENGTH)
    commitment = _decode(model.commitment, "commitment", _COMMITMENT_LENGTH)
    ciphertext = _decode(model.ciphertext, "ciphertext")
    if len(ciphertext) < _TAG_LENGTH:
        raise _malformed("the ciphertext is shorter than an AES-GCM tag", "ciphertext")
    for i, entry in enumerate(model.recipients):
        _check_length(entry.enc, f"recipients/{i}/enc", _sealed_cek_length(entry.kem))
    return SealedParts(tuple(model.recipients), nonce, ciphertext, commitment)


def open_sealed(
    header_json: Mapping[str, Any],
    sealed: Any,
    node_id: str,
    keys: Mapping[str, DecryptionKey],
) -> tuple[dict[str, Any], bytes]:
    """Open a sealed payload as recipient `node_id`, with its decryption keys by kid.

    Returns the payload and the CEK. `header_json` is the signed header as received, and
    its signature must have verified over `sealed`. Raises `SealError`: `seal.malformed`,
    `seal.not_for_me` (no entry for this node), `seal.key_unknown` (no key with the entry's
    kid and kem), `seal.invalid` (HPKE, commitment or AES-GCM fails).
    """
    parts = parse_sealed(sealed)
    entry = next((r for r in parts.recipients if r.node == node_id), None)
    if entry is None:
        raise SealError(f"the payload is not sealed to {node_id}", code="seal.not_for_me")
    key = keys.get(entry.kid)
    if key is None or key.kem != entry.kem:
        raise SealError(
            f"{node_id} holds no {entry.kem} decryption key with kid {entry.kid}",
            code="seal.key_unknown",
        )
    enc = _decode(entry.enc, "enc", _sealed_cek_length(entry.kem))
    try:
        cek = hpke_suite(key.kem).decrypt(enc, key.hpke_key, info=_info(header_json))
    except InvalidTag:
        raise SealError(
            f"the content key sealed to {node_id} does not open", code="seal.invalid"
        ) from None
    return _decrypt(header_json, parts, cek), cek


def open_with_cek(header_json: Mapping[str, Any], sealed: Any, cek: bytes) -> dict[str, Any]:
    """Open a sealed payload with its disclosed CEK: the commitment must name that CEK.
    This is how a court checks a disclosure, with no private key."""
    return _decrypt(header_json, parse_sealed(sealed), cek)


def _decrypt(header_json: Mapping[str, Any], parts: SealedParts, cek: bytes) -> dict[str, Any]:
    if len(cek) != CEK_LENGTH or not hmac.compare_digest(commitment_of(cek), parts.commitment):
        raise SealError("the content key is not the one committed to", code="seal.invalid")
    try:
        aad = canonicalize(header_json)
    except CanonicalizationError as err:
        raise _malformed(f"the header has no RFC 8785 form: {err}", "header") from None
    try:
        plaintext = AESGCM(cek).decrypt(parts.nonce, parts.ciphertext, aad)
    except InvalidTag:
        raise SealError(
            "the ciphertext does not decrypt under the header and content key",
            code="seal.invalid",
        ) from None
    try:
        # Equal to its own canonical form: so it also repeats no member name.
        payload = orjson.loads(plaintext)
        exact = type(payload) is dict and canonicalize(payload) == plaintext
    except (ValueError, TypeError, RecursionError):
        exact = False
    if not exact:
        raise _malformed("the plaintext is not the RFC 8785 form of a JSON object", "ciphertext")
    result: dict[str, Any] = payload
    return result


# --- helpers ------------------------------------------------------------------------------


def _info(header_json: Mapping[str, Any]) -> bytes:
    message_id = header_json.get("id")
    if not isinstance(message_id, str) or not message_id:
        raise _malformed("the header has no id", "header/id")
    return INFO_LABEL + message_id.encode("utf-8")


def _sealed_cek_length(kem: str) -> int:
    """The length of an `enc`: the KEM's encapsulated key, then the CEK and its tag."""
    return enc_length(kem) + CEK_LENGTH + _TAG_LENGTH


def _decode(text: str, where: str, length: int | None = None) -> bytes:
    """Strict base64url (no padding, unused bits zero) of a string the model already held
    to the base64url alphabet. Decoded once: base64 is much of the cost of opening."""
    _check_length(text, where, length)
    return binascii.a2b_base64(text.encode("ascii").translate(_TO_STANDARD) + _PAD[len(text) % 4])


def _check_length(text: str, where: str, length: int | None) -> None:
    """`text` is the one base64url spelling of `length` bytes (of some length, if None)."""
    rest = len(text) % 4
    if rest == 1 or (rest and _B64URL.index(text[-1]) & _UNUSED_BITS[rest]):
        raise _malformed(f"{where} is not canonical base64url without padding", where)
    size = len(text) * 3 // 4
    if length is not None and size != length:
        raise _malformed(f"{where} has {size} bytes, not {length}", where)


def _malformed(detail: str, where: str) -> SealError:
    """`where`: a path under `sealed`, or `header/...` for the header."""
    path = f"/{where}" if where.startswith("header") else f"/sealed/{where}"
    return SealError(detail, code="seal.malformed", errors=[FieldError(path, detail)])
