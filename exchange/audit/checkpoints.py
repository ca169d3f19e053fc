"""Checkpoints: signed tree heads of a node's audit log.

A checkpoint `{node, size, root, time, kid, signature}` is signed (Ed25519, by the node
key) over the RFC 8785 form of the other fields. Published to the network, it stops a
node from rewriting its own history unnoticed. Exported as JSON Lines for auditors.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from exchange.audit.entries import canonical_json
from exchange.audit.merkle import HASH_SIZE
from exchange.crypto.verify import TrustStore, verify_detached
from exchange.errors import AuditError, ExchangeError
from exchange.model.common import format_utc

_FIELDS = ("node", "size", "root", "time", "kid", "signature")


class CheckpointSigner(Protocol):
    """What the log needs of a node's signer (`exchange.crypto.signing.NodeSigner` fits)."""

    @property
    def node_id(self) -> str: ...

    @property
    def kid(self) -> str: ...

    def sign_bytes(self, data: bytes) -> str:
        """Ed25519 signature of `data`, base64url without padding."""
        ...


@dataclass(frozen=True, slots=True)
class CheckpointPolicy:
    """When the log signs a checkpoint: after `every_entries` new entries or `every_seconds`."""

    every_entries: int = 1000
    every_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.every_entries < 1 or not self.every_seconds > 0:
            raise ValueError("checkpoint intervals must be positive")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed tree head. `root` is the hex RFC 9162 root of the first `size` entries."""

    node: str
    size: int
    root: str
    time: datetime
    kid: str
    signature: str

    def signed_fields(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "size": self.size,
            "root": self.root,
            "time": format_utc(self.time),
            "kid": self.kid,
        }

    def signed_bytes(self) -> bytes:
        """The bytes the signature covers: canonical JSON of every field but the signature."""
        return canonical_json(self.signed_fields())

    @property
    def root_hash(self) -> bytes:
        return bytes.fromhex(self.root)

    def as_dict(self) -> dict[str, Any]:
        return {**self.signed_fields(), "signature": self.signature}

    def to_json(self) -> bytes:
        return canonical_json(self.as_dict())

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Checkpoint:
        """Parse a checkpoint strictly (exact fields, canonical forms); raises ValueError."""
        if set(doc) != set(_FIELDS):
            raise ValueError(f"a checkpoint has exactly the fields {', '.join(_FIELDS)}")
        node, size, root, time, kid, signature = (doc[k] for k in _FIELDS)
        if not all(isinstance(v, str) for v in (node, root, time, kid, signature)):
            raise ValueError("checkpoint fields node, root, time, kid, signature are strings")
        if type(size) is not int or size < 0:
            raise ValueError("checkpoint size is not a non-negative integer")
        if len(root) != 2 * HASH_SIZE or root != root.lower():
            raise ValueError("checkpoint root is not 64 lower-case hex digits")
        bytes.fromhex(root)
        try:
            when = datetime.fromisoformat(time)
        except ValueError:
            raise ValueError("checkpoint time is not an RFC 3339 time") from None
        if when.tzinfo is None or format_utc(when) != time:
            raise ValueError("checkpoint time is not in the wire form YYYY-MM-DDTHH:MM:SS.mmmZ")
        return cls(node=node, size=size, root=root, time=when, kid=kid, signature=signature)

    @classmethod
    def from_json(cls, data: bytes | str) -> Checkpoint:
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"checkpoint is not JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise ValueError("checkpoint is not a JSON object")
        return cls.from_dict(doc)


def sign_checkpoint(signer: CheckpointSigner, size: int, root: bytes, time: datetime) -> Checkpoint:
    """Sign the tree head (size, root) at `time` with the node key."""
    unsigned = Checkpoint(signer.node_id, size, root.hex(), time, signer.kid, signature="")
    signature = signer.sign_bytes(unsigned.signed_bytes())
    return Checkpoint(signer.node_id, size, root.hex(), time, signer.kid, signature)


def verify_checkpoint(cp: Checkpoint, public_key: Ed25519PublicKey) -> bool:
    """Does the signature on `cp` verify with `public_key`?"""
    return verify_detached(cp.signed_bytes(), cp.signature, public_key)


def check_checkpoint(cp: Checkpoint, trust: TrustStore) -> None:
    """Raise AuditError unless `cp` is signed by a certificate of its own node that the
    network's trust store accepts at the checkpoint's time (for a peer's checkpoints)."""
    try:
        signer = trust.check(cp.kid, cp.time)
    except ExchangeError as err:
        raise AuditError(f"{err.code}: {err.detail}", extra={"size": cp.size}) from None
    if signer.node_id != cp.node:
        raise AuditError(
            f"its key belongs to {signer.node_id}, not {cp.node}", extra={"size": cp.size}
        )
    if not verify_checkpoint(cp, signer.public_key):
        raise AuditError("its signature does not verify", extra={"size": cp.size})


def write_checkpoints_jsonl(checkpoints: Iterable[Checkpoint], path: str | os.PathLike[str]) -> int:
    """Write checkpoints as JSON Lines (the `--checkpoints FILE` format); returns the count."""
    count = 0
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    with tmp.open("wb") as out:
        for cp in checkpoints:
            out.write(cp.to_json() + b"\n")
            count += 1
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(target)
    return count


def read_checkpoints_jsonl(path: str | os.PathLike[str]) -> list[Checkpoint]:
    """Read a JSON Lines file of checkpoints; raises ValueError naming the bad line."""
    checkpoints: list[Checkpoint] = []
    with Path(path).open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                checkpoints.append(Checkpoint.from_json(line))
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: {exc}") from None
    return checkpoints
