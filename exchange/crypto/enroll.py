"""Enrollment by request, as files: the node's side and the CA's side never share a key.

On the node: `request_key` makes the node's Ed25519 key (`<NODE>.key`, mode 0600) and its
request (`<NODE>.csr`); a key made in a token gets only its request (`write_request`).
A rotation writes `<NODE>.next.key`/`<NODE>.next.csr` beside the running key, which stays
untouched until `install_certificate` switches to the new pair.

At the CA: `sign_request` checks the request and writes `<NODE>.pem`. It refuses a second
key for a node unless the request is a rotation, and then keeps the previous certificate as
`<NODE>.<serial-hex>.pem`, so that both verify during the overlap.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exchange.crypto.csr import create_request, load_request, request_pem
from exchange.crypto.keys import SigningKey, same_public_key
from exchange.crypto.pem_files import staging_path, write_certificate, write_file
from exchange.crypto.pem_files import write_private_key as _write_private_key
from exchange.crypto.pki import (
    BACKDATE,
    CA_CERT_FILE,
    CRL_FILE,
    NODE_VALIDITY,
    ROLE_AUTHORITY,
    certify_request,
    load_ca,
    load_certificate,
    load_private_key,
    node_id_of,
    role_of,
)
from exchange.errors import ConfigError, ExchangeError, VerificationError
from exchange.model.common import NODE_ID_PATTERN, utc_now

NEXT = "next"
"""The infix of a pending rotation's files: `<NODE>.next.key` and `<NODE>.next.csr`."""


def request_paths(
    directory: str | os.PathLike[str], node: str, *, rotate: bool
) -> tuple[Path, Path]:
    """Where a request for `node` goes: `<NODE>.key`/`.csr`, or `.next.key`/`.next.csr`."""
    _check_node_id(node)
    stem = f"{node}.{NEXT}" if rotate else node
    root = Path(directory)
    return root / f"{stem}.key", root / f"{stem}.csr"


def request_key(
    directory: str | os.PathLike[str], node: str, *, rotate: bool = False
) -> tuple[Path, Path]:
    """Make `node`'s key and its request in `directory`; returns (key path, request path).

    A key is never replaced: an existing `<NODE>.key` (or, when rotating, a pending
    `<NODE>.next.key`) is refused.
    """
    key_path, request_path = request_paths(directory, node, rotate=rotate)
    _refuse_existing(key_path, node, rotate=rotate)
    key = Ed25519PrivateKey.generate()
    key_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write_private_key(key_path, key)
    write_request(directory, node, key, rotate=rotate)
    return key_path, request_path


def write_request(
    directory: str | os.PathLike[str], node: str, key: SigningKey, *, rotate: bool = False
) -> Path:
    """Write the request for `key` (in memory or in a token) as `<NODE>[.next].csr`."""
    _, request_path = request_paths(directory, node, rotate=rotate)
    request_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_file(request_path, request_pem(create_request(key, node)), 0o644)
    return request_path


def sign_request(
    ca_dir: str | os.PathLike[str],
    request_path: str | os.PathLike[str],
    node: str,
    *,
    role: str | None = None,
    validity: timedelta = NODE_VALIDITY,
    rotate: bool = False,
    out: str | os.PathLike[str] | None = None,
) -> Path:
    """Certify the key in `request_path` for `node`; write `CA_DIR/<NODE>.pem` (and `out`).

    Refused (see `exchange.crypto.csr.check_request`): a malformed request, a key that is
    not Ed25519, a failing signature, other names than `node`. Refused as `csr.duplicate`: a
    key already certified for another node, and a new key for a node that has a current
    certificate, unless `rotate`. A replaced certificate is kept as `<NODE>.<serial>.pem`:
    it stays valid until it expires or is revoked. `role` defaults to the current
    certificate's, or `authority`. Returns the path of `<NODE>.pem`.
    """
    _check_node_id(node)
    root = Path(ca_dir)
    try:
        data = Path(request_path).read_bytes()
    except OSError as err:
        raise ExchangeError(
            f"cannot read the request {request_path}: {err.strerror}", code="usage"
        ) from None
    request = load_request(data)
    ca_key, ca_cert = load_ca(root)
    current_path = root / f"{node}.pem"
    current = load_certificate(current_path) if current_path.exists() else None
    start = utc_now().replace(microsecond=0) - BACKDATE
    cert = certify_request(
        ca_key,
        ca_cert,
        request,
        node,
        role=role or (role_of(current) if current is not None else ROLE_AUTHORITY),
        not_before=start,
        not_after=start + validity,
    )
    _refuse_duplicate(root, node, cert, current, rotate=rotate)
    staged = staging_path(current_path)
    write_certificate(staged, cert)
    if current is not None:
        os.replace(current_path, root / f"{node}.{current.serial_number:x}.pem")
    os.replace(staged, current_path)
    if out is not None:
        write_certificate(Path(out), cert)
    return current_path


def install_certificate(
    directory: str | os.PathLike[str], node: str, certificate_path: str | os.PathLike[str]
) -> Path:
    """On the node: put the CA's answer in place as `<NODE>.pem`, beside its key.

    The certificate must name `node`, be issued by `directory`'s `ca.pem` when there is one,
    and certify the pending rotation's key (`<NODE>.next.key`) or else the node's key. A
    rotation archives the running pair as `<NODE>.<serial>.pem`/`.key` and makes the new
    pair current; a gateway reads its key at start, so it signs with the new one once it is
    restarted. Returns the path of `<NODE>.pem`.
    """
    root = Path(directory)
    cert = load_certificate(certificate_path)
    if node_id_of(cert) != node:
        raise VerificationError(
            f"{certificate_path} is {node_id_of(cert)}'s certificate, not {node}'s",
            code="cert.untrusted",
        )
    if (root / CA_CERT_FILE).exists():
        try:
            cert.verify_directly_issued_by(load_certificate(root / CA_CERT_FILE))
        except (ValueError, TypeError, InvalidSignature):
            raise VerificationError(
                f"{certificate_path} is not issued by the network CA {root / CA_CERT_FILE}",
                code="cert.untrusted",
            ) from None
    pending_key, pending_request = request_paths(root, node, rotate=True)
    key_path, request_path = request_paths(root, node, rotate=False)
    rotating = pending_key.exists()
    new_key = pending_key if rotating else key_path
    if not new_key.exists():
        raise ExchangeError(f"{root} holds no key of {node} ({key_path.name})", code="usage")
    if not same_public_key(load_private_key(new_key).public_key(), cert.public_key()):
        raise ConfigError(
            f"{certificate_path} certifies another key than {new_key}", code="key.mismatch"
        )
    cert_path = root / f"{node}.pem"
    staged = staging_path(cert_path)
    write_certificate(staged, cert)
    if cert_path.exists():
        archived = f"{node}.{load_certificate(cert_path).serial_number:x}"
        if rotating and key_path.exists():
            os.replace(key_path, root / f"{archived}.key")
        os.replace(cert_path, root / f"{archived}.pem")
    if rotating:
        os.replace(pending_key, key_path)
    os.replace(staged, cert_path)
    (pending_request if rotating else request_path).unlink(missing_ok=True)
    return cert_path


def _refuse_existing(key_path: Path, node: str, *, rotate: bool) -> None:
    if not key_path.exists():
        return
    if rotate:
        raise ExchangeError(
            f"a rotation of {node} is already pending ({key_path}): install its certificate "
            "(exchange pki install) or delete that key first",
            code="usage",
        )
    raise ExchangeError(
        f"{key_path} exists and a node's key is never replaced; to rotate it, --rotate writes "
        f"a new key beside it ({node}.{NEXT}.key)",
        code="usage",
    )


def _refuse_duplicate(
    root: Path,
    node: str,
    cert: x509.Certificate,
    current: x509.Certificate | None,
    *,
    rotate: bool,
) -> None:
    """One node, one current key; one key, one node."""
    key = cert.public_key()
    if current is not None and not rotate and not same_public_key(key, current.public_key()):
        raise VerificationError(
            f"{node} already has a certificate (serial {current.serial_number:x}) for another "
            "key: a second node with this id, or a rotation not marked --rotate",
            code="csr.duplicate",
        )
    for path in sorted(root.glob("*.pem")):
        if path.name in (CA_CERT_FILE, CRL_FILE) or path.name.split(".", 1)[0] == node:
            continue
        try:
            other = load_certificate(path)
            holder = node_id_of(other)
        except ExchangeError:
            continue
        if same_public_key(key, other.public_key()):
            raise VerificationError(
                f"this key is already certified for {holder} ({path.name}); each node has "
                "its own key",
                code="csr.duplicate",
            )


def _check_node_id(node: str) -> None:
    if not re.fullmatch(NODE_ID_PATTERN, node):
        raise ExchangeError(f"{node!r} is not a node id ({NODE_ID_PATTERN})", code="usage")
