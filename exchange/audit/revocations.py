"""The network's CRL as the audit tools read it: which certificate was revoked, and since when.

A live node refuses a revoked certificate outright. An auditor looks back in time: an
envelope was good if it was exchanged before its signer's certificate was revoked, and is
suspect if a node logged it, or the broker recorded it, afterwards. So the audit tools
compare each revocation date with a time nobody but the recorder controls (the node's own
log entry, the broker's stream), never with the `created_at` the signer chose.
"""

from __future__ import annotations

import os
from datetime import datetime

from cryptography import x509

from exchange.crypto.pki import load_crl
from exchange.crypto.verify import TrustStore
from exchange.errors import ConfigError, ExchangeError


class Revocations:
    """Revocation dates by certificate serial, from a CRL the network CA signed."""

    def __init__(self, crl: x509.CertificateRevocationList, ca: x509.Certificate) -> None:
        TrustStore(ca, crl)  # refuses (cert.untrusted) a CRL the network CA did not sign
        self.crl = crl
        self._since = {r.serial_number: r.revocation_date_utc for r in crl}

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], ca: x509.Certificate) -> Revocations:
        """The CRL at `path` (PEM), checked against the network CA; else ConfigError."""
        crl = load_crl(path)
        try:
            return cls(crl, ca)
        except ExchangeError as err:
            raise ConfigError(f"the CRL {path} is not the network's: {err.detail}") from None

    def __len__(self) -> int:
        return len(self._since)

    def since(self, serial: int) -> datetime | None:
        """When the certificate with `serial` was revoked; None if it is not."""
        return self._since.get(serial)

    def revoked_before(self, serial: int, when: datetime) -> datetime | None:
        """The revocation date of `serial` if it is not after `when`, else None."""
        since = self._since.get(serial)
        return since if since is not None and since <= when else None
