"""Building the network directory from the secretariat's `members.toml` and the CA's files.

`members.toml` is the source of truth for who belongs to the network (see
`deploy/members.example.toml`): each member's id, country, display name and role, the
prosecutor networks and, optionally, what each role may send and receive. Certificates and
the CRL come from the CA's directory: each member's current `<ID>.pem` and the rotated
`<ID>.<serial>.pem` that have not expired, so that both keys verify during a rotation.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import ValidationError

from exchange.crypto.pki import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    CRL_FILE,
    load_certificate,
    load_crl,
    load_private_key,
    network_of,
    node_certificate_paths,
)
from exchange.directory.document import (
    DirectoryBody,
    MemberRole,
    RolePermissions,
    default_permissions,
    der_b64,
    parse_directory,
    sign_directory,
)
from exchange.errors import ConfigError, ExchangeError

DEFAULT_VALIDITY = timedelta(days=7)
"""A directory must be re-issued within a week: a node whose directory lapses says so."""


def read_members(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        with Path(path).open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from None


def build_directory(
    ca_dir: str | os.PathLike[str],
    members: Mapping[str, Any],
    *,
    serial: int,
    now: datetime | None = None,
) -> bytes:
    """The signed directory for `members` (a parsed members.toml), with serial `serial`."""
    root = Path(ca_dir)
    ca = load_certificate(root / CA_CERT_FILE)
    ca_key = load_private_key(root / CA_KEY_FILE)
    issued = (now or datetime.now(UTC)).replace(microsecond=0)
    network = members.get("network", network_of(ca))
    if network != network_of(ca):
        raise ConfigError(f"members.toml is for network {network}, the CA for {network_of(ca)}")
    days = members.get("validity_days", DEFAULT_VALIDITY.days)
    if not isinstance(days, int) or not 1 <= days <= 366:
        raise ConfigError("validity_days must be a whole number of days from 1 to 366")
    entries = members.get("members")
    if not isinstance(entries, list) or not entries:
        raise ConfigError("members.toml lists no [[members]]")
    ids = [m.get("id") for m in entries if isinstance(m, dict)]
    duplicates = sorted({i for i in ids if isinstance(i, str) and ids.count(i) > 1})
    if duplicates:
        raise ExchangeError(f"member ids repeat: {', '.join(duplicates)}", code="usage")
    body = {
        "network": network,
        "serial": serial,
        "issued_at": issued,
        "next_update": issued + timedelta(days=days),
        "members": [_member(root, m, issued) for m in entries],
        "networks": members.get("networks", []),
        "permissions": _permissions(members.get("permissions", {})),
        "crl": der_b64(load_crl(root / CRL_FILE).public_bytes(Encoding.DER)),
    }
    try:
        model = DirectoryBody.model_validate(body)
    except ValidationError as exc:
        summary = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise ConfigError(f"members.toml: {summary}") from None
    return sign_directory(model, ca_key, ca)


def next_serial(previous: str | os.PathLike[str] | None) -> int:
    """One more than the serial of the directory at `previous` (1 when there is none)."""
    if previous is None or not Path(previous).exists():
        return 1
    return parse_directory(Path(previous).read_bytes()).directory.serial + 1


def _member(root: Path, entry: Any, now: datetime) -> dict[str, Any]:
    if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
        raise ConfigError("each [[members]] needs an id")
    node = entry["id"]
    try:
        paths = node_certificate_paths(root, node)
    except ExchangeError as err:
        raise ConfigError(f"member {node}: {err.detail}") from None
    certs = [load_certificate(p) for p in paths]
    current = [c for c in certs if c.not_valid_after_utc > now]
    if not current:
        raise ConfigError(
            f"member {node} has no valid certificate in {root} (sign its request first: "
            f"exchange pki sign-request {root} {node}.csr --node {node})"
        )
    return {
        "id": node,
        "country": entry.get("country", node[:2]),
        "name": entry.get("name", node),
        "role": entry.get("role", MemberRole.AUTHORITY.value),
        "certificates": [der_b64(c.public_bytes(Encoding.DER)) for c in current],
        "encryption_keys": entry.get("encryption_keys", []),
    }


def _permissions(overrides: Any) -> dict[str, Any]:
    rules = {
        role.value: rule.model_dump(mode="json") for role, rule in default_permissions().items()
    }
    if not isinstance(overrides, dict):
        raise ConfigError("[permissions] must be a table of roles")
    for role, rule in overrides.items():
        if role not in rules:
            raise ConfigError(f"[permissions.{role}]: not a role ({', '.join(rules)})")
        try:
            rules[role] = RolePermissions.model_validate(rule).model_dump(mode="json")
        except ValidationError as exc:
            raise ConfigError(f"[permissions.{role}]: {exc.errors()[0]['msg']}") from None
    return rules
