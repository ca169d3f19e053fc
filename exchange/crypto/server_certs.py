"""TLS server certificates from the network CA: a broker's listener, a gateway's HTTPS.

They live apart from node certificates, in `tls/<HOST>.pem`/`.key` of the network
directory, and name no node: none can sign an envelope or log in to a broker as a node.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exchange.crypto.pem_files import write_certificate, write_private_key
from exchange.crypto.pki import BACKDATE, TLS_DIR, key_usage, load_ca, network_of
from exchange.errors import ExchangeError

SERVER_VALIDITY = timedelta(days=397)

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


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
    start = not_before or datetime.now(UTC).replace(microsecond=0) - BACKDATE
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
        .add_extension(key_usage(digital_signature=True), critical=True)
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
    ca_key, ca_cert = load_ca(root)
    start = datetime.now(UTC).replace(microsecond=0) - BACKDATE
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
    write_private_key(tls / f"{name}.key", key)
    write_certificate(tls / f"{name}.pem", cert)
    return tls / f"{name}.pem"
