"""Signed network directories for tests: the layout's own, changed and signed again by its CA.

`resign(layout, change)` reads `pki/directory.json`, lets `change` edit its body (a JSON
dict), gives it the next serial (or `serial`), signs it with the network CA and
writes it back (so that nodes started afterwards start from it); it returns the bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from exchange.crypto.pki import load_certificate, load_crl, load_private_key
from exchange.directory.document import DirectoryBody, der_b64, sign_directory
from exchange.network import NetworkLayout

Change = Callable[[dict[str, Any]], None]


def resign(
    layout: NetworkLayout, change: Change, *, serial: int | None = None, write: bool = True
) -> bytes:
    body = json.loads(layout.directory_file.read_bytes())["directory"]
    change(body)
    body["serial"] = serial if serial is not None else body["serial"] + 1
    ca_key = load_private_key(layout.pki_dir / "ca.key")
    ca = load_certificate(layout.pki_dir / "ca.pem")
    document = sign_directory(DirectoryBody.model_validate(body), ca_key, ca)
    if write:
        layout.directory_file.write_bytes(document)
    return document


def add_certificate(node: str, cert: x509.Certificate) -> Change:
    def change(body: dict[str, Any]) -> None:
        member = next(m for m in body["members"] if m["id"] == node)
        member["certificates"].append(der_b64(cert.public_bytes(Encoding.DER)))

    return change


def use_crl_file(layout: NetworkLayout) -> Change:
    def change(body: dict[str, Any]) -> None:
        body["crl"] = der_b64(load_crl(layout.pki_dir / "crl.pem").public_bytes(Encoding.DER))

    return change


def expired(body: dict[str, Any]) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    body["issued_at"] = (now - timedelta(days=9)).isoformat()
    body["next_update"] = (now - timedelta(days=2)).isoformat()


def both(*changes: Change) -> Change:
    def change(body: dict[str, Any]) -> None:
        for one in changes:
            one(body)

    return change
