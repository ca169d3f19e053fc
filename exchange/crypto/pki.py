"""The network's PKI: a self-signed Ed25519 CA, node certificates, and the CRL.

A network directory holds `ca.pem`/`ca.key`, each node's current `<NODE>.pem`, rotated ones
as `<NODE>.<serial-hex>.pem`, and `crl.pem`; TLS server certificates (brokers, HTTPS
gateways) live apart in `tls/<HOST>.pem`/`.key` (`exchange.crypto.server_certs`), so that
no trust store ever mistakes one for a node. A node certificate certifies a key the node
made itself: the CA signs the node's request (`certify_request`; `exchange.crypto.enroll`
for the files) and never sees the private key. Only the development network
(`init_network`) keeps every node's key beside the CA, made through the same two steps.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exchange.crypto.csr import NODE_URI_PREFIX, check_request, create_request, load_request
from exchange.crypto.csr import request_pem as _request_pem
from exchange.crypto.pem_files import read_pem as _read
from exchange.crypto.pem_files import staging_path as _staging
from exchange.crypto.pem_files import write_certificate as _write_certificate
from exchange.crypto.pem_files import write_crl as _write_crl
from exchange.crypto.pem_files import write_private_key as _write_private_key
from exchange.errors import ConfigError, ExchangeError, VerificationError
from exchange.model.common import NETWORK_PATTERN, NODE_ID_PATTERN

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
CRL_FILE = "crl.pem"
TLS_DIR = "tls"

CA_VALIDITY = timedelta(days=3650)
NODE_VALIDITY = timedelta(days=730)
CRL_VALIDITY = timedelta(days=365)
BACKDATE = timedelta(minutes=5)
"""Certificates start a little in the past, so a peer whose clock lags accepts them at once."""

_NODE_ID = re.compile(NODE_ID_PATTERN)
_NETWORK = re.compile(NETWORK_PATTERN)

ROLE_AUTHORITY = "authority"
ROLE_PRIVATE_SECTOR = "private-sector"
ROLES = (ROLE_AUTHORITY, ROLE_PRIVATE_SECTOR)
"""A member's role, written as its certificate's subject OU. An authority's certificate has
no OU, as every certificate from before roles has none: no existing certificate changes."""


# --- reading ------------------------------------------------------------------------------


def kid_of(cert: x509.Certificate) -> str:
    """The key id of a certificate: hex SHA-256 of its DER encoding."""
    return cert.fingerprint(hashes.SHA256()).hex()


def node_id_of(cert: x509.Certificate) -> str:
    """The node a certificate belongs to, from its single `urn:xb:node:<ID>` SAN URI."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise VerificationError(
            "the certificate names no node (no subjectAltName)", code="cert.untrusted"
        ) from None
    uris = [
        u
        for u in san.get_values_for_type(x509.UniformResourceIdentifier)
        if u.startswith(NODE_URI_PREFIX)
    ]
    node = uris[0].removeprefix(NODE_URI_PREFIX) if len(uris) == 1 else ""
    if not _NODE_ID.fullmatch(node):
        raise VerificationError(
            f"the certificate must name exactly one valid node as {NODE_URI_PREFIX}<ID>",
            code="cert.untrusted",
        )
    return node


def network_of(ca_cert: x509.Certificate) -> str:
    """The network a CA serves: the organization (O) of its subject."""
    names = ca_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    if len(names) != 1:
        raise ConfigError("the CA certificate must name its network as the subject's O")
    return str(names[0].value)


def role_of(cert: x509.Certificate) -> str:
    """A node certificate's role (`ROLES`): its subject OU, `authority` when it has none.

    An OU that names no role is refused (`cert.untrusted`) rather than read as a default.
    """
    units = [
        str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    ]
    if not units:
        return ROLE_AUTHORITY
    if len(units) != 1 or units[0] not in ROLES:
        raise VerificationError(
            f"the certificate's OU {', '.join(units)!r} names no role ({', '.join(ROLES)})",
            code="cert.untrusted",
        )
    return units[0]


def load_certificate(path: str | os.PathLike[str]) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(_read(path, "certificate"))
    except ValueError as err:
        raise ConfigError(f"{path}: not a PEM certificate ({err})") from None


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    data = _read(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{path}: not an unencrypted PEM private key ({err})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: not an Ed25519 private key")
    return key


def load_crl(path: str | os.PathLike[str]) -> x509.CertificateRevocationList:
    try:
        return x509.load_pem_x509_crl(_read(path, "CRL"))
    except ValueError as err:
        raise ConfigError(f"{path}: not a PEM CRL ({err})") from None


def node_certificate_paths(directory: str | os.PathLike[str], node: str) -> list[Path]:
    """A node's current certificate and the ones it rotated away from, current first."""
    root = Path(directory)
    _check_node_id(node)
    current = [root / f"{node}.pem"] if (root / f"{node}.pem").exists() else []
    # Node ids contain no dots, so "<NODE>.*.pem" never matches another node's files.
    return current + sorted(root.glob(f"{node}.*.pem"))


# --- making -------------------------------------------------------------------------------


def create_ca(
    network: str,
    *,
    key: Ed25519PrivateKey | None = None,
    serial: int | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> tuple[Ed25519PrivateKey, x509.Certificate]:
    """A self-signed network CA that may sign node certificates and CRLs, nothing else."""
    _check_network(network)
    key = key or Ed25519PrivateKey.generate()
    start = not_before or _now() - BACKDATE
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, network),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{network} network CA"),
        ]
    )
    usage = key_usage(key_cert_sign=True, crl_sign=True)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(not_after or start + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, algorithm=None)
    )
    return key, cert


def create_node_certificate(
    ca_key: Ed25519PrivateKey,
    ca_cert: x509.Certificate,
    node: str,
    *,
    key: Ed25519PrivateKey | None = None,
    role: str = ROLE_AUTHORITY,
    serial: int | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> tuple[Ed25519PrivateKey, x509.Certificate]:
    """A key (`key`, or a new one) and its node certificate, for tests and test vectors.

    Networks enroll by request instead (`certify_request`): the CA never holds the key.
    """
    key = key or Ed25519PrivateKey.generate()
    cert = certify_key(
        ca_key,
        ca_cert,
        node,
        key.public_key(),
        role=role,
        serial=serial,
        not_before=not_before,
        not_after=not_after,
    )
    return key, cert


def certify_request(
    ca_key: Ed25519PrivateKey,
    ca_cert: x509.Certificate,
    request: x509.CertificateSigningRequest,
    node: str,
    *,
    role: str = ROLE_AUTHORITY,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> x509.Certificate:
    """The CA's half of enrollment: check `request` (`exchange.crypto.csr.check_request`:
    an Ed25519 key, a valid signature, named `node` and nothing else), then certify its key.

    Only the key comes from the request; names, role and extensions are the CA's own.
    """
    _check_node_id(node)
    public_key = check_request(request, node)
    return certify_key(
        ca_key, ca_cert, node, public_key, role=role, not_before=not_before, not_after=not_after
    )


def certify_key(
    ca_key: Ed25519PrivateKey,
    ca_cert: x509.Certificate,
    node: str,
    public_key: Ed25519PublicKey,
    *,
    role: str = ROLE_AUTHORITY,
    serial: int | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> x509.Certificate:
    """A node's signing certificate for `public_key` (also fit as a TLS client certificate):
    O = the network, OU = the role unless `authority`, CN and SAN URI = the node."""
    _check_node_id(node)
    if role not in ROLES:
        raise ExchangeError(f"{role!r} is not a role ({', '.join(ROLES)})", code="usage")
    start = not_before or _now() - BACKDATE
    names = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, network_of(ca_cert))]
    if role != ROLE_AUTHORITY:
        names.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role))
    names.append(x509.NameAttribute(NameOID.COMMON_NAME, node))
    san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(NODE_URI_PREFIX + node)])
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name(names))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(not_after or start + NODE_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(san, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, algorithm=None)
    )


def create_crl(
    ca_key: Ed25519PrivateKey,
    ca_cert: x509.Certificate,
    revoked: Mapping[int, datetime],
    *,
    number: int = 1,
    this_update: datetime | None = None,
    next_update: datetime | None = None,
) -> x509.CertificateRevocationList:
    """A CRL listing `revoked` (serial -> revocation time), signed by the network CA."""
    start = this_update or _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(start)
        .next_update(next_update or start + CRL_VALIDITY)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    for serial, when in sorted(revoked.items()):
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(ca_key, algorithm=None)


# --- the network directory ----------------------------------------------------------------


def init_network(
    directory: str | os.PathLike[str],
    network: str,
    nodes: Sequence[str],
    *,
    node_validity: timedelta = NODE_VALIDITY,
) -> None:
    """Create a network CA, one key and certificate per node, and an empty CRL in `directory`.

    For the development network, where one operator runs every node: each key is made and
    enrolled as a node would do it (`_enroll_here`), then kept beside the CA.
    """
    root = Path(directory)
    _check_network(network)
    for node in nodes:
        _check_node_id(node)
    if len(set(nodes)) != len(nodes):
        raise ExchangeError("node ids must not repeat", code="usage")
    names = [CA_CERT_FILE, CA_KEY_FILE, *(f"{n}.{e}" for n in nodes for e in ("pem", "key"))]
    if any((root / name).exists() for name in names):
        raise ExchangeError(
            f"{root} already holds a network CA or node keys; refusing to replace them",
            code="usage",
        )
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_key, ca_cert = create_ca(network)
    _write_private_key(root / CA_KEY_FILE, ca_key)
    _write_certificate(root / CA_CERT_FILE, ca_cert)
    start = _now() - BACKDATE
    for node in nodes:
        key, cert = _enroll_here(ca_key, ca_cert, node, start, start + node_validity)
        _write_private_key(root / f"{node}.key", key)
        _write_certificate(root / f"{node}.pem", cert)
    _write_crl(root / CRL_FILE, create_crl(ca_key, ca_cert, {}))


def issue_node_certificate(
    directory: str | os.PathLike[str], node: str, *, validity: timedelta = NODE_VALIDITY
) -> Path:
    """Give `node` a new key and certificate; a previous pair is kept as `<NODE>.<serial>.*`.

    The development network's rotation, where the CA's directory holds the node's key too.
    A real node rotates by request (`exchange.crypto.enroll`: `exchange pki request
    --rotate`, then `sign-request --rotate`), and its key never reaches the CA.
    The archived certificate stays valid (envelopes it signed still verify) until it
    expires or is revoked; the new one keeps its role. Returns the path of `<NODE>.pem`.
    """
    root = Path(directory)
    _check_node_id(node)
    ca_key, ca_cert = load_ca(root)
    start = _now() - BACKDATE
    cert_path, key_path = root / f"{node}.pem", root / f"{node}.key"
    role = role_of(load_certificate(cert_path)) if cert_path.exists() else ROLE_AUTHORITY
    key, cert = _enroll_here(ca_key, ca_cert, node, start, start + validity, role=role)
    # Write the new pair aside first, so a crash never leaves the node without a key.
    new_cert, new_key = _staging(cert_path), _staging(key_path)
    _write_certificate(new_cert, cert)
    _write_private_key(new_key, key)
    if cert_path.exists():
        archived = f"{node}.{load_certificate(cert_path).serial_number:x}"
        if key_path.exists():
            os.replace(key_path, root / f"{archived}.key")
        os.replace(cert_path, root / f"{archived}.pem")
    os.replace(new_key, key_path)
    os.replace(new_cert, cert_path)
    return cert_path


def _enroll_here(
    ca_key: Ed25519PrivateKey,
    ca_cert: x509.Certificate,
    node: str,
    not_before: datetime,
    not_after: datetime,
    *,
    role: str = ROLE_AUTHORITY,
) -> tuple[Ed25519PrivateKey, x509.Certificate]:
    """Both halves of enrollment in one place: the node makes a key and its request, the CA
    reads the request's bytes and certifies it, exactly as across the network."""
    key = Ed25519PrivateKey.generate()
    sent = _request_pem(create_request(key, node))
    cert = certify_request(
        ca_key,
        ca_cert,
        load_request(sent),
        node,
        role=role,
        not_before=not_before,
        not_after=not_after,
    )
    return key, cert


def revoke_node(
    directory: str | os.PathLike[str], node: str, *, serial: int | None = None
) -> list[int]:
    """Revoke every certificate of `node` (or only the one with `serial`); re-sign the CRL.

    Returns the serials newly listed.
    """
    root = Path(directory)
    serials = [load_certificate(p).serial_number for p in node_certificate_paths(root, node)]
    if not serials:
        raise ExchangeError(f"no certificate of node {node} in {root}", code="usage")
    if serial is not None:
        if serial not in serials:
            raise ExchangeError(f"node {node} has no certificate {serial:x}", code="usage")
        serials = [serial]
    crl = load_crl(root / CRL_FILE)
    revoked = {r.serial_number: r.revocation_date_utc for r in crl}
    added = [s for s in serials if s not in revoked]
    now = _now()
    revoked.update(dict.fromkeys(added, now))
    _reissue_crl(root, crl, revoked)
    return added


def refresh_crl(
    directory: str | os.PathLike[str], *, validity: timedelta = CRL_VALIDITY
) -> x509.CertificateRevocationList:
    """Re-sign the CRL with the same entries and a new next-update time."""
    root = Path(directory)
    crl = load_crl(root / CRL_FILE)
    revoked = {r.serial_number: r.revocation_date_utc for r in crl}
    return _reissue_crl(root, crl, revoked, validity=validity)


def _reissue_crl(
    root: Path,
    previous: x509.CertificateRevocationList,
    revoked: Mapping[int, datetime],
    *,
    validity: timedelta = CRL_VALIDITY,
) -> x509.CertificateRevocationList:
    ca_key, ca_cert = load_ca(root)
    try:
        number = previous.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        number = 0
    now = _now()
    crl = create_crl(
        ca_key, ca_cert, revoked, number=number + 1, this_update=now, next_update=now + validity
    )
    _write_crl(root / CRL_FILE, crl)
    return crl


# --- helpers ------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _check_node_id(node: str) -> None:
    if not _NODE_ID.fullmatch(node):
        raise ExchangeError(f"{node!r} is not a node id ({NODE_ID_PATTERN})", code="usage")


def _check_network(network: str) -> None:
    if not _NETWORK.fullmatch(network):
        raise ExchangeError(f"{network!r} is not a network name ({NETWORK_PATTERN})", code="usage")


def load_ca(root: Path) -> tuple[Ed25519PrivateKey, x509.Certificate]:
    """The CA's key and certificate from a network directory."""
    return load_private_key(root / CA_KEY_FILE), load_certificate(root / CA_CERT_FILE)
