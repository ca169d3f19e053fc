"""What signs for a node: any Ed25519 key that can sign bytes and show its public half.

A private key in memory (`Ed25519PrivateKey`) is one; a key held in a PKCS#11 token
(`exchange.crypto.pkcs11_key.TokenKey`) is another. Envelopes, checkpoints and
certification requests are signed through this protocol only.
"""

from __future__ import annotations

from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class SigningKey(Protocol):
    """An Ed25519 signing key, wherever its private half lives."""

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `data`."""
        ...

    def public_key(self) -> Ed25519PublicKey: ...


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    """The 32 bytes of an Ed25519 public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def same_public_key(a: object, b: object) -> bool:
    """Whether `a` and `b` are the same Ed25519 public key."""
    return (
        isinstance(a, Ed25519PublicKey)
        and isinstance(b, Ed25519PublicKey)
        and raw_public_key(a) == raw_public_key(b)
    )
