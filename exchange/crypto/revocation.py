"""The network's CRL as a file the operator replaces: read again whenever it changes.

`CrlFile.poll()` looks at the file's modification time and size and parses it again only
when either changed, so it is cheap to call every second. What to do with what it found (a
new CRL to check, keep and apply, or a file that went missing or bad) is the caller's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from exchange.crypto.pki import load_crl
from exchange.errors import ConfigError


@dataclass(frozen=True, slots=True)
class FileStamp:
    """What tells a changed file: modification time (ns) and size; None when missing."""

    mtime_ns: int
    size: int

    @classmethod
    def of(cls, path: Path) -> FileStamp | None:
        try:
            stat = os.stat(path)
        except OSError:
            return None
        return cls(stat.st_mtime_ns, stat.st_size)


@dataclass(frozen=True, slots=True)
class CrlChange:
    """The file changed: the CRL it now holds, or why it holds none (`error`)."""

    crl: x509.CertificateRevocationList | None
    error: ConfigError | None


class CrlFile:
    """A CRL file and the stamp of the version last read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: FileStamp | None = None

    def read(self) -> x509.CertificateRevocationList:
        """The CRL the file holds now (ConfigError when there is none); remembered as seen."""
        stamp = FileStamp.of(self.path)
        if stamp is None:
            raise ConfigError(
                f"the CRL {self.path} does not exist: a node refuses to start without the "
                'network\'s CRL (revocation = "off" runs without one, never in production)'
            )
        crl = load_crl(self.path)
        self._stamp = stamp
        return crl

    def poll(self) -> CrlChange | None:
        """None while the file is unchanged since the last read or poll; else what it holds."""
        stamp = FileStamp.of(self.path)
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        if stamp is None:
            return CrlChange(None, ConfigError(f"the CRL {self.path} was removed"))
        try:
            return CrlChange(load_crl(self.path), None)
        except ConfigError as err:
            return CrlChange(None, err)
