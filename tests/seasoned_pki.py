"""A network CA and node certificates issued a month ago, kept in memory.

For tests of what a node can sign with a certificate it has held for a while: an envelope
dated days back still verifies as of its own `created_at`. The CRL is the test's to write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding

from exchange.crypto.pki import create_ca, create_crl, create_node_certificate
from exchange.crypto.signing import NodeSigner
from exchange.crypto.verify import TrustStore
from exchange.model.common import utc_now


@dataclass(frozen=True)
class SeasonedPki:
    ca_key: Ed25519PrivateKey
    ca: x509.Certificate
    signers: Mapping[str, NodeSigner]

    def trust(self) -> TrustStore:
        """A trust store of the CA and every node certificate, without a CRL."""
        return TrustStore(self.ca, None, [s.certificate for s in self.signers.values()])

    def write_crl(self, path: Path, revoked: Mapping[str, datetime]) -> Path:
        """A CRL revoking each named node's certificate at the given time, as PEM."""
        serials = {self.signers[node].certificate.serial_number: t for node, t in revoked.items()}
        crl = create_crl(self.ca_key, self.ca, serials, number=2)
        path.write_bytes(crl.public_bytes(Encoding.PEM))
        return path

    def write_public(self, directory: Path) -> tuple[Path, list[Path]]:
        """ca.pem and <NODE>.pem files, for the command line."""
        directory.mkdir(parents=True, exist_ok=True)
        ca = directory / "ca.pem"
        ca.write_bytes(self.ca.public_bytes(Encoding.PEM))
        certs = []
        for node, signer in self.signers.items():
            certs.append(directory / f"{node}.pem")
            certs[-1].write_bytes(signer.certificate.public_bytes(Encoding.PEM))
        return ca, certs


def seasoned_pki(
    nodes: Sequence[str], *, network: str = "test-net", age: timedelta = timedelta(days=30)
) -> SeasonedPki:
    since = utc_now().replace(microsecond=0) - age
    ca_key, ca = create_ca(network, not_before=since)
    signers = {}
    for node in nodes:
        key, cert = create_node_certificate(ca_key, ca, node, not_before=since)
        signers[node] = NodeSigner.from_key_and_certificate(key, cert)
    return SeasonedPki(ca_key, ca, signers)
