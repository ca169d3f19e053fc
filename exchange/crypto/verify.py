"""Verification of signed envelopes: one fail-closed policy with a stable code per check.

`verify_envelope` checks, in order, stopping at the first failure: structure, the signer's
certificate (known, chained to the network CA, valid now, not revoked), sender named by the
certificate, signature, expiry, clock skew, replay. An envelope carries a clear `payload` or
a `sealed` one (signed over `{"header", "sealed"}`), never both; a sealed payload is opened
afterwards, by its recipient (`exchange.crypto.sealing`). `TrustStore` holds the network CA, the
CRL and the node certificates, and does the per-certificate work once, not per message.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import ExtensionOID
from pydantic import ValidationError

from exchange.crypto.canonical import CanonicalizationError, parse_json, sha256_hex
from exchange.crypto.pki import CA_CERT_FILE, CRL_FILE, kid_of, load_certificate, load_crl
from exchange.crypto.pki import node_id_of as _node_id_of
from exchange.crypto.replay import MemoryReplayGuard, ReplayGuard
from exchange.crypto.sealing import signing_input_sealed
from exchange.crypto.signing import b64url_decode, signing_input
from exchange.errors import ConfigError, FieldError, VerificationError
from exchange.model.envelope import MAX_ENVELOPE_BYTES, Envelope, SealedEnvelope

__all__ = [
    "MemoryReplayGuard",
    "ReplayGuard",
    "TrustStore",
    "TrustedCertificate",
    "VerificationPolicy",
    "VerifiedEnvelope",
    "verify_detached",
    "verify_envelope",
]

_KNOWN_EXTENSIONS = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    }
)
_MAX_FIELD_ERRORS = 20
_Ext = TypeVar("_Ext", bound=x509.ExtensionType)


@dataclass(frozen=True, slots=True)
class TrustedCertificate:
    """A node certificate that chains to the network CA, with what each message needs."""

    certificate: x509.Certificate = field(repr=False)
    kid: str
    node_id: str
    serial: int
    public_key: Ed25519PublicKey = field(repr=False)
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True, slots=True)
class _Revocations:
    crl: x509.CertificateRevocationList
    serials: frozenset[int]
    number: int
    next_update: datetime | None


class TrustStore:
    """The network CA, its current CRL, and node certificates by kid (several per node)."""

    def __init__(
        self,
        ca: x509.Certificate,
        crl: x509.CertificateRevocationList | None = None,
        certificates: Iterable[x509.Certificate] = (),
    ) -> None:
        self._ca = ca
        self._ca_key = _check_ca(ca)
        self._ca_not_before = ca.not_valid_before_utc
        self._ca_not_after = ca.not_valid_after_utc
        self._by_kid: dict[str, TrustedCertificate] = {}
        self._members: frozenset[str] | None = None
        self._revocations: _Revocations | None = None
        if crl is not None:
            self.set_crl(crl)
        for cert in certificates:
            self.add_certificate(cert)

    @classmethod
    def from_files(
        cls,
        ca_path: str | os.PathLike[str],
        crl_path: str | os.PathLike[str] | None = None,
        cert_paths: Iterable[str | os.PathLike[str]] = (),
    ) -> TrustStore:
        crl = load_crl(crl_path) if crl_path is not None else None
        return cls(load_certificate(ca_path), crl, [load_certificate(p) for p in cert_paths])

    @classmethod
    def from_directory(cls, directory: str | os.PathLike[str]) -> TrustStore:
        """A network directory: ca.pem, crl.pem if present, and every node certificate."""
        root = Path(directory)
        crl = root / CRL_FILE
        certs = sorted(p for p in root.glob("*.pem") if p.name not in (CA_CERT_FILE, CRL_FILE))
        return cls.from_files(root / CA_CERT_FILE, crl if crl.exists() else None, certs)

    @property
    def ca(self) -> x509.Certificate:
        return self._ca

    @property
    def crl(self) -> x509.CertificateRevocationList | None:
        return self._revocations.crl if self._revocations else None

    def __len__(self) -> int:
        return len(self._by_kid)

    def __contains__(self, kid: object) -> bool:
        return kid in self._by_kid

    def get(self, kid: str) -> TrustedCertificate | None:
        return self._by_kid.get(kid)

    def add_certificate(self, cert: x509.Certificate) -> TrustedCertificate:
        """Trust a node certificate from now on; refused (`cert.untrusted`) unless it is a
        node certificate issued by the network CA. Its CA signature is checked here, once."""
        kid = kid_of(cert)
        known = self._by_kid.get(kid)
        if known is not None:
            return known
        public_key = cert.public_key()
        if not isinstance(public_key, Ed25519PublicKey):
            raise _untrusted("the certificate's key is not Ed25519", kid)
        try:
            cert.verify_directly_issued_by(self._ca)
        except (ValueError, TypeError, InvalidSignature):
            raise _untrusted("the certificate is not issued by the network CA", kid) from None
        for ext in cert.extensions:
            if ext.critical and ext.oid not in _KNOWN_EXTENSIONS:
                raise _untrusted(f"unknown critical extension {ext.oid.dotted_string}", kid)
        if _extension(cert, x509.BasicConstraints) is not None and _is_ca(cert):
            raise _untrusted("a CA certificate cannot sign envelopes", kid)
        usage = _extension(cert, x509.KeyUsage)
        if usage is not None and not usage.digital_signature:
            raise _untrusted("the certificate may not sign (keyUsage)", kid)
        node_id = _node_id_of(cert)
        trusted = TrustedCertificate(
            certificate=cert,
            kid=kid,
            node_id=node_id,
            serial=cert.serial_number,
            public_key=public_key,
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
        )
        self._by_kid[kid] = trusted
        return trusted

    def use_members(self, certificates: Mapping[str, Iterable[x509.Certificate]]) -> None:
        """Trust exactly these members (node id -> its certificates) from now on: a network
        directory's. Every certificate is checked as `add_certificate` does before any is
        used; a sender outside `certificates` is then refused as `sender.unknown`."""
        previous, self._by_kid = self._by_kid, {}
        try:
            for node, certs in certificates.items():
                for cert in certs:
                    if self.add_certificate(cert).node_id != node:
                        raise _untrusted(
                            f"a certificate of {node} names another node", kid_of(cert)
                        )
        except VerificationError:
            self._by_kid = previous
            raise
        self._members = frozenset(certificates)

    @property
    def members(self) -> frozenset[str] | None:
        """The network's members when a directory names them; None when any node whose
        certificate is trusted may send."""
        return self._members

    @property
    def crl_number(self) -> int | None:
        """The number of the CRL in use (0 for one without a CRLNumber), None without one."""
        return self._revocations.number if self._revocations else None

    def crl_number_of(self, crl: x509.CertificateRevocationList) -> int:
        """`crl`'s number, once its signature is checked: refused (`cert.untrusted`) unless
        the network CA signed it."""
        if crl.issuer != self._ca.subject or not crl.is_signature_valid(self._ca_key):
            raise VerificationError(
                "the CRL is not signed by the network CA", code="cert.untrusted"
            )
        number_ext = _extension(crl, x509.CRLNumber)
        return number_ext.crl_number if number_ext is not None else 0

    def set_crl(self, crl: x509.CertificateRevocationList) -> None:
        """Use `crl` from now on; refused (`cert.untrusted`) unless the network CA signed it
        and it is not older than the current one."""
        number = self.crl_number_of(crl)
        current = self._revocations
        if current is not None and number < current.number:
            raise VerificationError(
                f"CRL number {number} is older than the current {current.number}",
                code="cert.untrusted",
            )
        serials = frozenset(r.serial_number for r in crl)
        self._revocations = _Revocations(crl, serials, number, crl.next_update_utc)

    def check(self, kid: str, now: datetime) -> TrustedCertificate:
        """The certificate `kid` names, if it may sign at `now`; else the failing code:
        `cert.unknown`, `cert.untrusted` (stale CRL), `cert.expired`, `cert.revoked`."""
        trusted = self._by_kid.get(kid)
        if trusted is None:
            raise VerificationError(f"no certificate is known for kid {kid}", code="cert.unknown")
        revocations = self._revocations
        stale_after = revocations.next_update if revocations is not None else None
        if stale_after is not None and now > stale_after:
            raise VerificationError(
                f"the CRL is out of date (its next update was due {stale_after})",
                code="cert.untrusted",
            )
        if now < trusted.not_before:
            raise VerificationError(
                f"the certificate is not valid before {trusted.not_before}", code="cert.expired"
            )
        if now > trusted.not_after:
            raise VerificationError(
                f"the certificate expired at {trusted.not_after}", code="cert.expired"
            )
        if not self._ca_not_before <= now <= self._ca_not_after:
            raise VerificationError(
                "the network CA certificate is outside its validity period", code="cert.expired"
            )
        if revocations is not None and trusted.serial in revocations.serials:
            raise VerificationError(
                f"certificate {trusted.serial:x} of {trusted.node_id} is revoked",
                code="cert.revoked",
            )
        return trusted


@dataclass(frozen=True)
class VerificationPolicy:
    """What `verify_envelope` demands. There is no way to switch a check off: a replay guard
    of None only means the caller deduplicates by message id itself."""

    trust: TrustStore
    max_skew: timedelta = timedelta(minutes=5)
    replay: ReplayGuard | None = None
    max_bytes: int = MAX_ENVELOPE_BYTES
    max_age: timedelta | None = None
    """How long before `now` `created_at` may lie; None: `max_skew`. A receiving node sets
    it longer than `max_skew`: a message may wait in its queue while the node is down, and
    its durable inbox (not a time window) is what refuses a second copy."""

    def __post_init__(self) -> None:
        if not isinstance(self.trust, TrustStore):
            raise TypeError("a verification policy needs a TrustStore")
        if self.max_skew < timedelta(0):
            raise ValueError("max_skew must not be negative")
        if self.max_age is not None and self.max_age < self.max_skew:
            raise ValueError("max_age must not be shorter than max_skew")
        if self.max_bytes <= 0:
            raise ValueError("max_bytes must be positive")

    @property
    def oldest_allowed(self) -> timedelta:
        return self.max_skew if self.max_age is None else self.max_age


@dataclass(frozen=True, slots=True)
class VerifiedEnvelope:
    """An envelope that passed every check, with the dict it was parsed to."""

    envelope: Envelope | SealedEnvelope
    raw: dict[str, Any] = field(repr=False)
    digest: str
    """Hex SHA-256 of the canonical signed bytes (what receipts and the audit log name)."""
    signer: x509.Certificate = field(repr=False)

    @property
    def payload(self) -> dict[str, Any] | None:
        """The clear payload; None when it is sealed (open `sealed` to read it)."""
        return self.envelope.payload if isinstance(self.envelope, Envelope) else None

    @property
    def sealed(self) -> dict[str, Any] | None:
        """The sealed payload as signed; None when the payload travels in clear."""
        return self.envelope.sealed if isinstance(self.envelope, SealedEnvelope) else None


def verify_envelope(
    data: bytes | bytearray | memoryview | Mapping[str, Any],
    policy: VerificationPolicy,
    *,
    now: datetime | None = None,
) -> VerifiedEnvelope:
    """Verify a received envelope (its wire bytes, or the dict they were parsed to).

    Raises `VerificationError` with the code of the first failing check. `extra` carries
    what was learnt before the failure (message_id, sender, kid) for receipts, and `digest`
    once the signature verified: a digest of the signed bytes names what the sender signed,
    so it is never named for bytes whose signature was not checked.
    """
    when = _utc(now)
    raw, envelope, signed = _parse(data, policy.max_bytes)
    header, signature = envelope.header, envelope.signature
    digest = sha256_hex(signed)
    signature_checked = False
    try:
        members = policy.trust.members
        if members is not None and header.sender not in members:
            raise VerificationError(
                f"{header.sender} is not a member of the network's directory",
                code="sender.unknown",
            )
        trusted = policy.trust.check(signature.kid, when)
        if trusted.node_id != header.sender:
            raise VerificationError(
                f"the certificate belongs to {trusted.node_id}, not to sender {header.sender}",
                code="sender.mismatch",
            )
        if not _signature_ok(trusted.public_key, signature.value, signed):
            raise VerificationError("the signature does not verify", code="signature.invalid")
        signature_checked = True
        if header.expires_at is not None and when > header.expires_at:
            raise VerificationError(
                f"the message expired at {header.expires_at}", code="message.expired"
            )
        if header.created_at - when > policy.max_skew:
            raise VerificationError(
                f"created_at {header.created_at} is more than {policy.max_skew} ahead of {when}",
                code="clock.skew",
            )
        if when - header.created_at > policy.oldest_allowed:
            raise VerificationError(
                f"created_at {header.created_at} is more than {policy.oldest_allowed} "
                f"before {when}",
                code="clock.skew",
            )
        if policy.replay is not None:
            # After this time a replay fails the clock-skew or expiry check anyway.
            forget_after = header.created_at + policy.oldest_allowed
            if header.expires_at is not None:
                forget_after = min(forget_after, header.expires_at)
            if policy.replay.check_and_record(header.id, forget_after, when):
                raise VerificationError(
                    f"message {header.id} was already received", code="message.replayed"
                )
    except VerificationError as err:
        err.extra.update(message_id=str(header.id), sender=header.sender, kid=signature.kid)
        if signature_checked:
            err.extra["digest"] = digest
        raise
    return VerifiedEnvelope(envelope=envelope, raw=raw, digest=digest, signer=trusted.certificate)


def verify_detached(data: bytes, signature_b64: str, public_key: Ed25519PublicKey) -> bool:
    """Whether `signature_b64` (base64url, no padding) is `public_key`'s signature of `data`."""
    return _signature_ok(public_key, signature_b64, data)


# --- the structure check ------------------------------------------------------------------


def _parse(
    data: bytes | bytearray | memoryview | Mapping[str, Any], max_bytes: int
) -> tuple[dict[str, Any], Envelope | SealedEnvelope, bytes]:
    if isinstance(data, bytes | bytearray | memoryview):
        data = bytes(data) if not isinstance(data, bytes) else data
        if len(data) > max_bytes:
            raise VerificationError(
                f"the envelope has {len(data)} bytes, more than {max_bytes}",
                code="envelope.too_large",
            )
        raw = _loads(data)
    elif isinstance(data, Mapping):
        raw = dict(data)
    else:
        raise TypeError(f"cannot verify a {type(data).__name__}")
    # `payload` or `sealed`: the model refuses the other one beside it, and names a missing one.
    is_sealed = "sealed" in raw
    try:
        envelope = (SealedEnvelope if is_sealed else Envelope).model_validate(raw)
    except ValidationError as err:
        errors = [
            FieldError("/" + "/".join(str(p) for p in e["loc"]), e["msg"])
            for e in err.errors(include_url=False, include_input=False)[:_MAX_FIELD_ERRORS]
        ]
        raise VerificationError(
            "the envelope does not match the envelope schema",
            code="envelope.malformed",
            errors=errors,
            extra=_context_of(raw),
        ) from None
    try:
        sign = signing_input_sealed if is_sealed else signing_input
        signed = sign(raw["header"], raw["sealed" if is_sealed else "payload"])
    except CanonicalizationError as err:
        raise VerificationError(
            str(err), code="envelope.malformed", extra=_context_of(raw)
        ) from None
    return raw, envelope, signed


def _loads(data: bytes) -> dict[str, Any]:
    try:
        raw = parse_json(data)
    except CanonicalizationError as err:
        raise VerificationError(str(err), code="envelope.malformed") from None
    except (ValueError, TypeError, RecursionError) as err:
        # TypeError: orjson's recursion limit when writing a deeply nested document back
        raise VerificationError(f"not valid JSON: {err}", code="envelope.malformed") from None
    if type(raw) is not dict:
        raise VerificationError("the envelope is not a JSON object", code="envelope.malformed")
    return raw


def _context_of(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Best-effort ids of an envelope that may be malformed, for negative receipts."""
    header = raw.get("header")
    context: dict[str, Any] = {}
    if isinstance(header, Mapping):
        with contextlib.suppress(ValueError):
            context["message_id"] = str(UUID(str(header.get("id"))))
        if isinstance(header.get("sender"), str):
            context["sender"] = header["sender"]
    return context


# --- helpers ------------------------------------------------------------------------------


def _signature_ok(public_key: Ed25519PublicKey, value: str, data: bytes) -> bool:
    try:
        public_key.verify(b64url_decode(value), data)
    except (InvalidSignature, ValueError):
        return False
    return True


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now


def _check_ca(ca: x509.Certificate) -> Ed25519PublicKey:
    key = ca.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError("the network CA's key is not Ed25519")
    if not _is_ca(ca):
        raise ConfigError("the network CA certificate is not a CA (basicConstraints)")
    try:
        ca.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise ConfigError("the network CA certificate is not self-signed") from None
    usage = _extension(ca, x509.KeyUsage)
    if usage is not None and not usage.key_cert_sign:
        raise ConfigError("the network CA may not sign certificates (keyUsage)")
    return key


def _is_ca(cert: x509.Certificate) -> bool:
    constraints = _extension(cert, x509.BasicConstraints)
    return constraints is not None and constraints.ca


def _extension(
    item: x509.Certificate | x509.CertificateRevocationList, kind: type[_Ext]
) -> _Ext | None:
    try:
        return item.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _untrusted(detail: str, kid: str) -> VerificationError:
    return VerificationError(detail, code="cert.untrusted", extra={"kid": kid})
