"""The network directory as a document: its model, its signature, and its verification.

The directory is one JSON object, `{"directory": {...}, "signature": {...}}`. The network
CA signs the RFC 8785 bytes of `{"directory": ...}` with Ed25519, with the conventions of
envelopes: `signature` = `{"alg": "Ed25519", "kid": <hex SHA-256 of the CA's DER
certificate>, "value": <base64url, no padding>}`. Certificates and the CRL travel as
standard base64 of their DER bytes.

`verify_directory` checks, in this order, and refuses with the first failing code:
`directory.malformed` (not JSON, not the model), `directory.untrusted` (another CA, or a
signature that does not verify), `directory.invalid` (another network; a certificate that
is not the CA's or does not name its member; a prosecutor network with an unknown or a
private-sector member; a CRL the CA did not sign) and `directory.expired` (past
`next_update`, unless the caller asks to see an expired one).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from exchange.crypto.canonical import canonicalize, parse_json
from exchange.crypto.pki import kid_of, network_of, node_id_of, role_of
from exchange.crypto.signing import ALGORITHM, b64url_decode, b64url_encode
from exchange.errors import ExchangeError, VerificationError
from exchange.model.common import MessageType, NetworkName, NodeId

FORMAT: Literal["xb-directory/1"] = "xb-directory/1"
MAX_DETAIL_NAME = 120
"""The most of a refused document's field path a refusal repeats."""
MAX_DIRECTORY_BYTES = 4 * 1024 * 1024
"""A directory of a few hundred members with rotated certificates fits easily."""


class MemberRole(StrEnum):
    AUTHORITY = "authority"
    PRIVATE_SECTOR = "private-sector"


PRIVATE_SECTOR_SENDS = (MessageType.ASSET_INQUIRY_RESPONSE, MessageType.FREEZE_DECISION)
PRIVATE_SECTOR_RECEIVES = (MessageType.ASSET_INQUIRY, MessageType.FREEZE_NOTICE)
PAYLOAD_TYPES = tuple(t for t in MessageType if t is not MessageType.RECEIPT)


def default_permissions() -> dict[MemberRole, RolePermissions]:
    """What each role may send and receive unless members.toml says otherwise: authorities
    everything; a private-sector member answers inquiries and freeze notices addressed to it.
    Receipts are always allowed: they answer a message that was."""
    return {
        MemberRole.AUTHORITY: RolePermissions(send=PAYLOAD_TYPES, receive=PAYLOAD_TYPES),
        MemberRole.PRIVATE_SECTOR: RolePermissions(
            send=PRIVATE_SECTOR_SENDS, receive=PRIVATE_SECTOR_RECEIVES
        ),
    }


class _Doc(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Base64Der = Annotated[str, Field(min_length=4, max_length=64 * 1024, pattern=r"^[A-Za-z0-9+/]+=*$")]


class Member(_Doc):
    id: NodeId
    country: str = Field(pattern=r"^[A-Z]{2}$")
    name: str = Field(min_length=1, max_length=200)
    role: MemberRole
    certificates: tuple[Base64Der, ...] = Field(min_length=1, max_length=8)
    encryption_keys: tuple[dict[str, str], ...] = Field(default=(), max_length=8)


class ProsecutorNetwork(_Doc):
    name: NetworkName
    members: tuple[NodeId, ...] = Field(min_length=2, max_length=500)


class RolePermissions(_Doc):
    send: tuple[MessageType, ...]
    receive: tuple[MessageType, ...]

    @field_validator("send", "receive")
    @classmethod
    def _no_receipts(cls, value: tuple[MessageType, ...]) -> tuple[MessageType, ...]:
        if MessageType.RECEIPT in value:
            raise ValueError("receipts are always allowed; do not list them")
        return value


class DirectoryBody(_Doc):
    format: Literal["xb-directory/1"] = FORMAT
    network: NetworkName
    serial: int = Field(ge=1, le=2**53)
    issued_at: datetime
    next_update: datetime
    members: tuple[Member, ...] = Field(min_length=1, max_length=1000)
    networks: tuple[ProsecutorNetwork, ...] = Field(default=(), max_length=500)
    permissions: dict[MemberRole, RolePermissions]
    crl: Base64Der


class DirectorySignature(_Doc):
    alg: Literal["Ed25519"]
    kid: str = Field(pattern=r"^[0-9a-f]{64}$")
    value: str = Field(min_length=1, max_length=200)


class SignedDirectory(_Doc):
    directory: DirectoryBody
    signature: DirectorySignature


@dataclass(frozen=True)
class VerifiedDirectory:
    """A directory whose signature, certificates and CRL the network CA vouches for."""

    body: DirectoryBody
    raw: bytes = field(repr=False)
    digest: str
    certificates: Mapping[str, tuple[x509.Certificate, ...]] = field(repr=False)
    crl: x509.CertificateRevocationList = field(repr=False)

    @property
    def serial(self) -> int:
        return self.body.serial

    def expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) > self.body.next_update


def signing_input(body: Mapping[str, Any]) -> bytes:
    """The bytes the CA signs: RFC 8785 of `{"directory": body}`."""
    return canonicalize({"directory": body})


def sign_directory(body: DirectoryBody, ca_key: Ed25519PrivateKey, ca: x509.Certificate) -> bytes:
    """The signed directory document (UTF-8 JSON, canonical, newline-terminated)."""
    body_json = body.model_dump(mode="json")
    value = b64url_encode(ca_key.sign(signing_input(body_json)))
    signature = {"alg": ALGORITHM, "kid": kid_of(ca), "value": value}
    return canonicalize({"directory": body_json, "signature": signature}) + b"\n"


def der_b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _der(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"{what} is not base64") from None


def _malformed(detail: str) -> VerificationError:
    return VerificationError(detail, code="directory.malformed")


def _invalid(detail: str) -> VerificationError:
    return VerificationError(detail, code="directory.invalid")


def parse_directory(data: bytes) -> SignedDirectory:
    """The document's model; `directory.malformed` for anything else."""
    if len(data) > MAX_DIRECTORY_BYTES:
        raise _malformed(f"the directory is larger than {MAX_DIRECTORY_BYTES} bytes")
    try:
        doc = parse_json(bytes(data))
    except (ValueError, ExchangeError) as err:
        raise _malformed(f"the directory is not JSON: {err}") from None
    try:
        return SignedDirectory.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        # the location may hold a key the publisher chose: cut it before logs and the audit
        where = (".".join(str(p) for p in first["loc"]) or "(root)")[:MAX_DETAIL_NAME]
        raise _malformed(f"the directory is not valid at {where}: {first['msg']}") from None


def verify_directory(
    data: bytes,
    ca: x509.Certificate,
    *,
    now: datetime | None = None,
    allow_expired: bool = False,
) -> VerifiedDirectory:
    """Verify a signed directory against the network CA (see the module docstring)."""
    signed = parse_directory(data)
    body = signed.directory
    ca_key = ca.public_key()
    if not isinstance(ca_key, Ed25519PublicKey):
        raise VerificationError("the network CA's key is not Ed25519", code="directory.untrusted")
    if signed.signature.kid != kid_of(ca):
        raise VerificationError(
            "the directory is signed by another CA than this network's",
            code="directory.untrusted",
        )
    try:
        ca_key.verify(
            b64url_decode(signed.signature.value),
            signing_input(parse_json(bytes(data))["directory"]),
        )
    except (InvalidSignature, ValueError):
        raise VerificationError(
            "the directory's signature does not verify", code="directory.untrusted"
        ) from None
    _check_network(body, ca)
    certificates = {m.id: _member_certificates(m, ca) for m in body.members}
    crl = _crl(body.crl, ca)
    if not allow_expired and (now or datetime.now(UTC)) > body.next_update:
        raise VerificationError(
            f"directory serial {body.serial} expired at {body.next_update}",
            code="directory.expired",
        )
    return VerifiedDirectory(
        body=body,
        raw=bytes(data),
        digest=hashlib.sha256(bytes(data)).hexdigest(),
        certificates=certificates,
        crl=crl,
    )


def _check_network(body: DirectoryBody, ca: x509.Certificate) -> None:
    if body.network != network_of(ca):
        raise _invalid(f"the directory is for network {body.network}, not {network_of(ca)}")
    if body.next_update <= body.issued_at:
        raise _invalid("next_update must be after issued_at")
    ids = [m.id for m in body.members]
    if len(set(ids)) != len(ids):
        raise _invalid("a member id appears twice")
    roles = {m.id: m.role for m in body.members}
    names = [n.name for n in body.networks]
    if len(set(names)) != len(names):
        raise _invalid("a prosecutor network appears twice")
    for network in body.networks:
        if len(set(network.members)) != len(network.members):
            raise _invalid(f"network {network.name} lists a member twice")
        for member in network.members:
            if member not in roles:
                raise _invalid(f"network {network.name}: {member} is not a member")
            if roles[member] is not MemberRole.AUTHORITY:
                raise _invalid(
                    f"network {network.name}: {member} is private-sector and may not join "
                    "a prosecutor network"
                )
    missing = [r.value for r in MemberRole if r not in body.permissions]
    if missing:
        raise _invalid(f"permissions name no rule for {', '.join(missing)}")
    sector = body.permissions[MemberRole.PRIVATE_SECTOR]
    if MessageType.CASE_UPDATE in (*sector.send, *sector.receive):
        raise _invalid("private-sector members may not send or receive case updates")


def _member_certificates(member: Member, ca: x509.Certificate) -> tuple[x509.Certificate, ...]:
    certs = []
    for index, text in enumerate(member.certificates):
        what = f"member {member.id}'s certificate {index}"
        try:
            cert = x509.load_der_x509_certificate(_der(text, what))
        except ValueError:
            raise _invalid(f"{what} is not a DER certificate") from None
        if not isinstance(cert.public_key(), Ed25519PublicKey):
            raise _invalid(f"{what} has no Ed25519 key")
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            raise _invalid(f"{what} is not issued by the network CA") from None
        try:
            named = node_id_of(cert)
        except ExchangeError:
            raise _invalid(f"{what} names no node") from None
        if named != member.id:
            raise _invalid(f"{what} names {named}, not {member.id}")
        try:
            certified = role_of(cert)
        except ExchangeError:
            raise _invalid(f"{what} names no role") from None
        if member.role is MemberRole.AUTHORITY and certified != MemberRole.AUTHORITY.value:
            # the directory may confine a member further than its certificate, never free it
            raise _invalid(f"{what} is certified {certified}; the directory says authority")
        certs.append(cert)
    return tuple(certs)


def _crl(text: str, ca: x509.Certificate) -> x509.CertificateRevocationList:
    try:
        crl = x509.load_der_x509_crl(_der(text, "the CRL"))
    except ValueError:
        raise _invalid("the CRL is not a DER CRL") from None
    ca_key = ca.public_key()
    if (
        not isinstance(ca_key, Ed25519PublicKey)
        or crl.issuer != ca.subject
        or not crl.is_signature_valid(ca_key)
    ):
        raise _invalid("the CRL is not signed by the network CA")
    return crl
