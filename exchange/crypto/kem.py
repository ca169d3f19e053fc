"""Nodes' encryption keys for sealed payloads: the two HPKE KEMs, the public key bytes that
the network directory announces, and the `<node>.kem.key` file of a node's decryption key.

Public key bytes (what the directory publishes, and what a `kid` is the SHA-256 of):
- X-Wing: the ML-KEM-768 encapsulation key (1184 bytes) followed by the X25519 public key
  (32 bytes), 1216 bytes, as the X-Wing specification encodes it;
- X25519: the raw 32-byte public key (RFC 7748).

Decryption key (the secret a node keeps, 32 bytes for either KEM):
- X-Wing: the X-Wing seed. SHAKE256 expands it to 96 bytes: the ML-KEM-768 seed d‖z (64)
  and the X25519 private key (32);
- X25519: the raw private key.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from exchange.crypto.pem_files import write_file
from exchange.crypto.signing import b64url_decode, b64url_encode
from exchange.errors import ConfigError, ExchangeValueError

__all__ = [
    "KEMS",
    "KEM_X25519",
    "KEM_XWING",
    "DecryptionKey",
    "RecipientKey",
    "enc_length",
    "generate_decryption_key",
    "hpke_suite",
    "keyring",
    "load_decryption_key",
    "write_decryption_key",
]

KEM_XWING = "X-Wing"
KEM_X25519 = "X25519"
KEMS = (KEM_XWING, KEM_X25519)

SECRET_LENGTH = 32
_MLKEM768_PUBLIC_LENGTH = 1184
_X25519_LENGTH = 32
_PUBLIC_LENGTH = {KEM_XWING: _MLKEM768_PUBLIC_LENGTH + _X25519_LENGTH, KEM_X25519: _X25519_LENGTH}
_ENC_LENGTH = {KEM_XWING: 1120, KEM_X25519: 32}
_HPKE_KEM = {KEM_XWING: hpke.KEM.MLKEM768_X25519, KEM_X25519: hpke.KEM.X25519}
_SUITES = {
    kem: hpke.Suite(hpke_kem, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
    for kem, hpke_kem in _HPKE_KEM.items()
}

HpkePublicKey = hpke.MLKEM768X25519PublicKey | x25519.X25519PublicKey
HpkePrivateKey = hpke.MLKEM768X25519PrivateKey | x25519.X25519PrivateKey


def hpke_suite(kem: str) -> hpke.Suite:
    """The HPKE suite of `kem`: that KEM, HKDF-SHA256 and AES-256-GCM."""
    return _SUITES[_known(kem)]


def enc_length(kem: str) -> int:
    """The length of `kem`'s encapsulated key (the start of a recipient's `enc`)."""
    return _ENC_LENGTH[_known(kem)]


@dataclass(frozen=True, slots=True)
class RecipientKey:
    """A node's encryption public key as the directory announces it. The bytes are parsed
    once, here: a key that is not a valid `kem` public key is refused (`config.invalid`)."""

    node: str
    kem: str
    public_key: bytes = field(repr=False)
    kid: str = field(init=False, compare=False)
    """Lower-case hex SHA-256 of `public_key`: what a sealed payload's entry names."""
    hpke_key: HpkePublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kid", kid_of(self.public_key))
        object.__setattr__(self, "hpke_key", _public_key(self.kem, self.public_key))

    @classmethod
    def from_announced(cls, node: str, entry: Mapping[str, str]) -> RecipientKey:
        """A key as a directory entry announces it (`announced`): `kem`, `public_key`
        (base64url) and, if given, `kid`, which must be the key's."""
        try:
            key = cls(node, entry["kem"], b64url_decode(entry["public_key"]))
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, ExchangeValueError):
                raise
            raise _bad_key(f"the encryption key of {node} is not kem + base64url") from None
        if entry.get("kid", key.kid) != key.kid:
            raise _bad_key(f"the encryption key of {node} does not have the kid announced")
        return key

    def announced(self) -> dict[str, str]:
        """What a directory entry announces of this key."""
        return {"kem": self.kem, "public_key": b64url_encode(self.public_key), "kid": self.kid}


@dataclass(frozen=True, slots=True)
class DecryptionKey:
    """A node's decryption key: its KEM and 32-byte secret, with the public key it derives."""

    kem: str
    secret: bytes = field(repr=False)
    public_key: bytes = field(init=False, repr=False, compare=False)
    kid: str = field(init=False, compare=False)
    hpke_key: HpkePrivateKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.secret) != SECRET_LENGTH:
            raise _bad_key(f"a {self.kem} decryption key is {SECRET_LENGTH} bytes")
        private, public = _private_key(_known(self.kem), self.secret)
        object.__setattr__(self, "hpke_key", private)
        object.__setattr__(self, "public_key", public)
        object.__setattr__(self, "kid", kid_of(public))

    def recipient(self, node: str) -> RecipientKey:
        """This key's public half, as the directory announces it for `node`."""
        return RecipientKey(node, self.kem, self.public_key)


def kid_of(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()


def keyring(keys: Iterable[DecryptionKey]) -> dict[str, DecryptionKey]:
    """Decryption keys by kid: a node's current key and those it rotated away from, which it
    keeps to open the messages it already stored."""
    return {key.kid: key for key in keys}


def generate_decryption_key(kem: str = KEM_XWING) -> DecryptionKey:
    return DecryptionKey(_known(kem), os.urandom(SECRET_LENGTH))


# --- the key file -------------------------------------------------------------------------
#
# One line, `<kem>:<base64url of the 32 secret bytes, no padding>`, e.g. `X-Wing:q1…`. Both
# KEMs have 32-byte secrets, so the file names its KEM: the key opens messages on its own,
# without the directory. ':' is not a base64url character.


def write_decryption_key(path: str | os.PathLike[str], key: DecryptionKey) -> None:
    """Write `key` to `path` (`<node>.kem.key`), atomically, with mode 0600."""
    line = f"{key.kem}:{b64url_encode(key.secret)}\n"
    write_file(Path(path), line.encode("ascii"), 0o600)


def load_decryption_key(path: str | os.PathLike[str]) -> DecryptionKey:
    """Read a `<node>.kem.key` file; refused (`config.invalid`) unless it is exactly one line
    `<kem>:<base64url>` of a known KEM and a 32-byte secret."""
    try:
        text = Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read decryption key {path}: {err.strerror}") from None
    try:
        line = text.decode("ascii").removesuffix("\n")
        kem, _, encoded = line.partition(":")
        secret = b64url_decode(encoded)
    except (UnicodeDecodeError, ValueError):
        raise ConfigError(f"{path}: not a decryption key line <kem>:<base64url>") from None
    if kem not in KEMS:
        raise ConfigError(f"{path}: unknown KEM {kem[:20]!r} (expected one of {', '.join(KEMS)})")
    try:
        return DecryptionKey(kem, secret)
    except ExchangeValueError as err:
        raise ConfigError(f"{path}: {err.detail}") from None


# --- helpers ------------------------------------------------------------------------------


def _known(kem: str) -> str:
    if kem not in _SUITES:
        raise _bad_key(f"unknown KEM {kem!r} (expected one of {', '.join(KEMS)})")
    return kem


def _public_key(kem: str, data: bytes) -> HpkePublicKey:
    if len(data) != _PUBLIC_LENGTH[_known(kem)]:
        raise _bad_key(f"a {kem} public key is {_PUBLIC_LENGTH[kem]} bytes, not {len(data)}")
    try:
        if kem == KEM_X25519:
            return x25519.X25519PublicKey.from_public_bytes(data)
        return hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(data[:_MLKEM768_PUBLIC_LENGTH]),
            x25519.X25519PublicKey.from_public_bytes(data[_MLKEM768_PUBLIC_LENGTH:]),
        )
    except ValueError:
        raise _bad_key(f"not a valid {kem} public key") from None


def _private_key(kem: str, secret: bytes) -> tuple[HpkePrivateKey, bytes]:
    if kem == KEM_X25519:
        key = x25519.X25519PrivateKey.from_private_bytes(secret)
        return key, key.public_key().public_bytes_raw()
    expanded = hashlib.shake_256(secret).digest(96)
    ml = mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64])
    x = x25519.X25519PrivateKey.from_private_bytes(expanded[64:])
    public = ml.public_key().public_bytes_raw() + x.public_key().public_bytes_raw()
    return hpke.MLKEM768X25519PrivateKey(ml, x), public


def _bad_key(detail: str) -> ExchangeValueError:
    return ExchangeValueError(detail, code="config.invalid")
