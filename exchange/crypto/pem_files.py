"""PEM files of the PKI: read with a clear error, written atomically with their modes."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exchange.errors import ConfigError


def read_pem(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read {what} {path}: {err.strerror}") from None
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{path}: not a PEM {what}")
    return data


def staging_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Write atomically: a reader sees the old file or the new one, never half of one."""
    tmp = staging_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # the umask may have narrowed it; keys must stay 0600
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_file(path, pem, 0o600)


def write_certificate(path: Path, cert: x509.Certificate) -> None:
    write_file(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def write_crl(path: Path, crl: x509.CertificateRevocationList) -> None:
    write_file(path, crl.public_bytes(serialization.Encoding.PEM), 0o644)
