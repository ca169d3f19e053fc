"""Audit log entries: the events a node records, and their canonical JSON form.

An entry's RFC 8785 canonical bytes are its Merkle leaf (leaf hash = SHA-256(0x00 || bytes)),
so what is stored is exactly what was hashed; `AuditEntry.from_bytes` reads them back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

import orjson

from exchange.crypto.canonical import canonicalize
from exchange.model.common import format_utc

ENTRY_FORMAT = 1
"""Version of the entry document (`"v"`); bumped only with a note to auditors."""


class AuditEvent(StrEnum):
    """What happened to a message (or to the log itself), in the order it usually happens."""

    ACCEPTED = "accepted"  # a local client's request passed auth and schema
    REFUSED = "refused"  # a local client's request was refused (code)
    SIGNED = "signed"  # the node signed an outgoing envelope
    PUBLISHED = "published"  # handed to the broker
    CONFIRMED = "confirmed"  # the broker confirmed it
    RECEIVED = "received"  # consumed from the inbox
    VERIFIED = "verified"  # signature, certificate, freshness and schema checked
    REJECTED = "rejected"  # an incoming envelope failed verification (code)
    STORED = "stored"  # durably in the inbox
    RECEIPT_SENT = "receipt-sent"
    RECEIPT_RECEIVED = "receipt-received"
    DELIVERED = "delivered"  # fetched by a local client
    SUBSCRIPTION_DELIVERED = "subscription-delivered"
    CHECKPOINT = "checkpoint"  # the log signed its own tree head (written by the log only)
    PEER_CHECKPOINT = "peer-checkpoint"  # another node's checkpoint, checked and kept
    DIRECTORY_UPDATED = "directory-updated"  # a newer signed network directory taken up


REFUSAL_EVENTS = frozenset({AuditEvent.REFUSED, AuditEvent.REJECTED})
"""Events whose envelope is kept as evidence of what was refused, not as a valid message."""


def canonical_json(doc: Any) -> bytes:
    """RFC 8785 canonical bytes of a JSON document."""
    return canonicalize(doc)


@dataclass(frozen=True, slots=True)
class EntryFields:
    """What a caller records; the log adds index, time and node when it writes."""

    event: AuditEvent
    actor: str | None = None
    role: str | None = None
    message_id: str | None = None
    case: str | None = None
    code: str | None = None
    digest: str | None = None
    envelope: Mapping[str, Any] | None = None
    detail: Mapping[str, Any] | None = None

    @classmethod
    def build(
        cls,
        event: AuditEvent | str,
        *,
        actor: str | None = None,
        role: str | None = None,
        message_id: UUID | str | None = None,
        case: str | None = None,
        code: str | None = None,
        digest: str | None = None,
        envelope: Mapping[str, Any] | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> EntryFields:
        """Check and normalise a caller's fields; raises ValueError on bad input."""
        kind = AuditEvent(event)
        if message_id is not None and not isinstance(message_id, UUID):
            message_id = UUID(message_id)
        return cls(
            event=kind,
            actor=actor,
            role=role,
            message_id=str(message_id) if message_id is not None else None,
            case=case,
            code=code,
            digest=digest,
            envelope=dict(envelope) if envelope is not None else None,
            detail=dict(detail) if detail is not None else None,
        )

    def document(self, index: int, time: datetime | str, node: str) -> dict[str, Any]:
        """The entry document; `time` may come already in its wire form (one per batch)."""
        doc: dict[str, Any] = {
            "v": ENTRY_FORMAT,
            "index": index,
            "time": time if isinstance(time, str) else format_utc(time),
            "node": node,
            "event": self.event.value,
        }
        for name in ("actor", "role", "message_id", "case", "code", "digest"):
            value = getattr(self, name)
            if value is not None:
                doc[name] = value
        if self.envelope is not None:
            doc["envelope"] = self.envelope
        if self.detail is not None:
            doc["detail"] = self.detail
        return doc

    def encode(self, index: int, time: datetime | str, node: str) -> bytes:
        """The entry's canonical bytes: its Merkle leaf data."""
        return canonical_json(self.document(index, time, node))


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One stored entry, decoded. `body` is the exact bytes that were hashed."""

    index: int
    time: datetime
    node: str
    event: AuditEvent
    actor: str | None
    role: str | None
    message_id: str | None
    case: str | None
    code: str | None
    digest: str | None
    envelope: dict[str, Any] | None
    detail: dict[str, Any] | None
    body: bytes

    @classmethod
    def from_bytes(cls, body: bytes) -> AuditEntry:
        """Decode stored bytes; raises ValueError saying what is wrong with them."""
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"entry is not JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise ValueError("entry is not a JSON object")
        if doc.get("v") != ENTRY_FORMAT:
            raise ValueError(f"unknown entry format {doc.get('v')!r}")
        index, node = doc.get("index"), doc.get("node")
        envelope, detail = doc.get("envelope"), doc.get("detail")
        if type(index) is not int or not isinstance(node, str):
            raise ValueError("entry lacks an integer index or a node")
        try:
            event = AuditEvent(str(doc["event"]))
            time = datetime.fromisoformat(doc["time"])
        except (KeyError, TypeError, ValueError):
            raise ValueError("entry has no valid event or time") from None
        if time.tzinfo is None:
            raise ValueError("entry time has no time zone")
        if envelope is not None and not isinstance(envelope, dict):
            raise ValueError("entry envelope is not an object")
        if detail is not None and not isinstance(detail, dict):
            raise ValueError("entry detail is not an object")
        text: dict[str, str | None] = {}
        for name in ("actor", "role", "message_id", "case", "code", "digest"):
            value = doc.get(name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"entry field {name!r} is not a string")
            text[name] = value
        return cls(
            index=index,
            time=time,
            node=node,
            event=event,
            envelope=envelope,
            detail=detail,
            body=body,
            **text,
        )

    @property
    def header(self) -> dict[str, Any] | None:
        """The envelope's header, when an envelope is kept and has one."""
        if self.envelope is None:
            return None
        header = self.envelope.get("header")
        return header if isinstance(header, dict) else None

    @property
    def cases(self) -> frozenset[str]:
        """Every case the entry concerns: its own, its envelope's, and those of the messages
        a read handed out (`detail.cases`, one entry per call)."""
        found = {self.case, (self.header or {}).get("case")}
        listed = (self.detail or {}).get("cases")
        if isinstance(listed, list):
            found.update(listed)
        return frozenset(c for c in found if isinstance(c, str))

    @property
    def message_type(self) -> str | None:
        header = self.header
        if header is not None and isinstance(header.get("type"), str):
            return str(header["type"])
        if self.detail is not None and isinstance(self.detail.get("type"), str):
            return str(self.detail["type"])
        return None

    def summary(self) -> dict[str, Any]:
        """The entry without its envelope's payload: what a timeline shows."""
        doc = orjson.loads(self.body)
        if self.envelope is not None:
            doc["envelope"] = {k: v for k, v in self.envelope.items() if k != "payload"}
        return dict(doc)
