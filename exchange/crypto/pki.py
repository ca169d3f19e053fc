"""The network's PKI: a self-signed Ed25519 CA, node certificates, and the CRL.

A network directory holds `ca.pem`/`ca.key`, each node's current `<NODE>.pem`/`<NODE>.key`,
rotated ones as `<NODE>.<serial-hex>.pem`/`.key`, and `crl.pem`; TLS server certificates
(brokers, HTTPS gateways) live apart in `tls/<HOST>.pem`/`.key`, so that no trust store
ever mistakes one for a node. Certificates reach the other nodes out of band; the CA key
stays with the network's operator.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exchange.crypto.pem_files import read_pem as _read
from exchange.crypto.pem_files import staging_path as _staging
from exchange.crypto.pem_files import write_certificate as _write_certificate
from exchange.crypto.pem_files import write_crl as _write_crl
from exchange.crypto.pem_files import write_private_key as _write_private_key
from exchange.errors import ConfigError, ExchangeError, VerificationError
from exchange.model.common import NETWORK_PATTERN, NODE_ID_PATTERN

NODE_URI_PREFIX = "urn:xb:node:"
CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
CRL_FILE = "crl.pem"
TLS_DIR = "tls"

CA_VALIDITY = timedelta(days=3650)
NODE_VALIDITY = timedelta(days=730)
SERVER_VALIDITY = timedelta(days=397)
CRL_VALIDITY = timedelta(days=365)
BACKDATE = timedelta(minutes=5)
"""Certificates start a little in the past, so a peer whose clock lags accepts them at once."""

_NODE_ID = re.compile(NODE_ID_PATTERN)
_NETWORK = re.compile(NETWORK_PATTERN)
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


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
    usage = _key_usage(key_cert_sign=True, crl_sign=True)
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
    serial: int | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> tuple[Ed25519PrivateKey, x509.Certificate]:
    """A node's signing certificate (also fit as a TLS client certificate)."""
    _check_node_id(node)
    key = key or Ed25519PrivateKey.generate()
    start = not_before or _now() - BACKDATE
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, network_of(ca_cert)),
            x509.NameAttribute(NameOID.COMMON_NAME, node),
        ]
    )
    san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(NODE_URI_PREFIX + node)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(not_after or start + NODE_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(san, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, algorithm=None)
    )
    return key, cert


def create_server_certificate(
    ca_key: Ed25519PrivateKey,
    ca_cert: x509.Certificate,
    hostname: str,
    *,
    alt_names: Sequence[str] = (),
    key: Ed25519PrivateKey | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> tuple[Ed25519PrivateKey, x509.Certificate]:
    """A TLS server certificate (a broker, an HTTPS gateway): CN `hostname`, SAN DNS names
    and IP addresses for `hostname` and `alt_names`, extended key usage serverAuth only.

    It names no node, so it can never sign an envelope, nor log in to a broker as a node.
    """
    names = [_server_name(hostname), *(_server_name(n) for n in alt_names)]
    key = key or Ed25519PrivateKey.generate()
    start = not_before or _now() - BACKDATE
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, network_of(ca_cert)),
            x509.NameAttribute(NameOID.COMMON_NAME, hostname),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(not_after or start + SERVER_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(list(dict.fromkeys(names))), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, algorithm=None)
    )
    return key, cert


def _server_name(name: str) -> x509.GeneralName:
    """An IP address SAN for an address, else a DNS SAN for a valid host name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(name):
        raise ExchangeError(f"{name!r} is neither a host name nor an IP address", code="usage")
    return x509.DNSName(name.lower())


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
    """Create a network CA, one certificate per node, and an empty CRL in `directory`."""
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
        key, cert = create_node_certificate(
            ca_key, ca_cert, node, not_before=start, not_after=start + node_validity
        )
        _write_private_key(root / f"{node}.key", key)
        _write_certificate(root / f"{node}.pem", cert)
    _write_crl(root / CRL_FILE, create_crl(ca_key, ca_cert, {}))


def issue_node_certificate(
    directory: str | os.PathLike[str], node: str, *, validity: timedelta = NODE_VALIDITY
) -> Path:
    """Give `node` a new key and certificate; a previous pair is kept as `<NODE>.<serial>.*`.

    The archived certificate stays valid (envelopes it signed still verify) until it
    expires or is revoked. Returns the path of the new certificate, `<NODE>.pem`.
    """
    root = Path(directory)
    _check_node_id(node)
    ca_key, ca_cert = _load_ca(root)
    start = _now() - BACKDATE
    key, cert = create_node_certificate(
        ca_key, ca_cert, node, not_before=start, not_after=start + validity
    )
    cert_path, key_path = root / f"{node}.pem", root / f"{node}.key"
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


def issue_server_certificate(
    directory: str | os.PathLike[str],
    hostname: str,
    *,
    alt_names: Sequence[str] = (),
    validity: timedelta = SERVER_VALIDITY,
) -> Path:
    """Write a new TLS server key and certificate as `tls/<hostname>.pem`/`.key`.

    For a broker's TLS listener or a gateway's HTTPS. A previous pair is replaced (a
    server certificate signs nothing that must stay verifiable). Returns the certificate.
    """
    root = Path(directory)
    ca_key, ca_cert = _load_ca(root)
    start = _now() - BACKDATE
    key, cert = create_server_certificate(
        ca_key,
        ca_cert,
        hostname,
        alt_names=alt_names,
        not_before=start,
        not_after=start + validity,
    )
    tls = root / TLS_DIR
    tls.mkdir(mode=0o755, exist_ok=True)
    name = hostname.lower()
    _write_private_key(tls / f"{name}.key", key)
    _write_certificate(tls / f"{name}.pem", cert)
    return tls / f"{name}.pem"


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
    ca_key, ca_cert = _load_ca(root)
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


def _key_usage(
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


def _load_ca(root: Path) -> tuple[Ed25519PrivateKey, x509.Certificate]:
    return load_private_key(root / CA_KEY_FILE), load_certificate(root / CA_CERT_FILE)
