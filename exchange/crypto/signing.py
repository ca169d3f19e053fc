"""Signing envelopes with a node's Ed25519 key, and the wire encoding of envelopes.

The signature covers the RFC 8785 canonical bytes of `{"header": ..., "payload": ...}`;
`signing_input` is that one definition, shared with verification.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography import x509

from exchange.crypto.canonical import canonicalize, sha256_hex
from exchange.crypto.keys import SigningKey, same_public_key
from exchange.crypto.pkcs11_key import TokenKey, open_token_key
from exchange.crypto.pki import kid_of, load_certificate, load_private_key, node_id_of
from exchange.errors import ConfigError, ExchangeError
from exchange.model.envelope import Header

ALGORITHM = "Ed25519"


def signing_input(header: Mapping[str, Any], payload: Mapping[str, Any]) -> bytes:
    """The bytes an envelope's signature covers: canonical JSON of header and payload."""
    return canonicalize({"header": header, "payload": payload})


def b64url_encode(data: bytes) -> str:
    """base64url without padding, as signature values are written."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict inverse of `b64url_encode`: any other spelling of the bytes is refused."""
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise ValueError("not base64url") from None
    # The decoder skips stray characters and ignores trailing bits; one spelling only.
    if b64url_encode(data) != text:
        raise ValueError("not canonical base64url without padding")
    return data


def encode_envelope(envelope: Mapping[str, Any]) -> bytes:
    """Compact JSON bytes of a wire envelope, as published to the broker."""
    return orjson.dumps(envelope)


@dataclass(frozen=True, slots=True)
class NodeSigner:
    """A node's signing identity: its key and the certificate that names it.

    `private_key` is any `SigningKey`: an Ed25519 private key in memory, or a key in a
    PKCS#11 token (`from_token`), which signs without ever leaving it.
    """

    private_key: SigningKey = field(repr=False)
    certificate: x509.Certificate = field(repr=False)
    node_id: str
    kid: str

    @classmethod
    def from_key_and_certificate(
        cls, private_key: SigningKey, certificate: x509.Certificate
    ) -> NodeSigner:
        """Refuses (`key.mismatch`) a key whose public half is not the certificate's."""
        if not same_public_key(private_key.public_key(), certificate.public_key()):
            raise ConfigError(
                "the signing key does not belong to the certificate", code="key.mismatch"
            )
        return cls(private_key, certificate, node_id_of(certificate), kid_of(certificate))

    @classmethod
    def from_files(
        cls, key_path: str | os.PathLike[str], cert_path: str | os.PathLike[str]
    ) -> NodeSigner:
        return cls.from_key_and_certificate(load_private_key(key_path), load_certificate(cert_path))

    @classmethod
    def from_token(
        cls, module: Path, key_uri: str, pin_path: Path, cert_path: str | os.PathLike[str]
    ) -> NodeSigner:
        """The key `key_uri` names in a PKCS#11 token, checked against the certificate."""
        certificate = load_certificate(cert_path)
        key = open_token_key(module, key_uri, pin_path)
        try:
            return cls.from_key_and_certificate(key, certificate)
        except BaseException:
            key.close()
            raise

    def close(self) -> None:
        """Let go of a token key (nothing to do for a key in memory)."""
        if isinstance(self.private_key, TokenKey):
            self.private_key.close()

    def sign_bytes(self, data: bytes) -> str:
        """An Ed25519 signature of `data`, base64url without padding."""
        return b64url_encode(self.private_key.sign(data))

    def sign_envelope(self, header: Header, payload: dict[str, Any]) -> dict[str, Any]:
        """The wire envelope {"header", "payload", "signature"} for `header` and `payload`.

        The payload is used as given (not copied): do not change it afterwards.
        """
        return self.sign_envelope_with_digest(header, payload)[0]

    def sign_envelope_with_digest(
        self, header: Header, payload: dict[str, Any]
    ) -> tuple[dict[str, Any], str]:
        """`sign_envelope`, and the hex SHA-256 of the signed bytes (what receipts and the
        audit log name), from the one canonical form that was signed."""
        if header.sender != self.node_id:
            raise ExchangeError(
                f"this key signs for {self.node_id}, not for sender {header.sender}",
                code="sender.mismatch",
            )
        header_json = header.model_dump(mode="json", by_alias=True)
        signed = signing_input(header_json, payload)
        envelope = {
            "header": header_json,
            "payload": payload,
            "signature": {"alg": ALGORITHM, "kid": self.kid, "value": self.sign_bytes(signed)},
        }
        return envelope, sha256_hex(signed)
