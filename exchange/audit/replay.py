"""The timeline of a node's audit log, filtered, with each entry checked as it is shown.

Entries stream from the store in index order; each row says whether its bytes still match
its leaf hash and sit at their index, and whether its envelope verifies again (when the
network's certificates are given). Payloads are never shown, only headers, ids and digests.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from exchange.audit.entries import REFUSAL_EVENTS, AuditEntry, AuditEvent
from exchange.audit.envelopes import EnvelopeChecker
from exchange.audit.merkle import leaf_hash
from exchange.audit.store import AuditStore
from exchange.model.common import format_utc


@dataclass(frozen=True, slots=True)
class TimelineFilter:
    """Which entries to show. `kind` is an event (`received`) or a message type (`receipt`);
    `node` matches the log's node, an envelope's sender or one of its recipients."""

    since: datetime | None = None
    until: datetime | None = None
    case: str | None = None
    node: str | None = None
    kind: str | None = None

    def matches(self, entry: AuditEntry) -> bool:
        header = entry.header or {}
        if self.since is not None and entry.time < self.since:
            return False
        if self.until is not None and entry.time >= self.until:
            return False
        if self.case is not None and self.case not in entry.cases:
            return False
        if self.kind is not None and self.kind not in (entry.event.value, entry.message_type):
            return False
        if self.node is not None:
            recipients = header.get("recipients")
            parties = {entry.node, header.get("sender")}
            if isinstance(recipients, list):
                parties.update(r for r in recipients if isinstance(r, str))
            if self.node not in parties:
                return False
        return True


@dataclass(frozen=True, slots=True)
class TimelineRow:
    """One shown entry (None when its bytes cannot be read) and what checking it found."""

    index: int
    entry: AuditEntry | None
    problem: str | None
    envelope_verified: bool

    @property
    def ok(self) -> bool:
        return self.problem is None

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"index": self.index}
        if self.entry is not None:
            doc.update(self.entry.summary())
        doc["check"] = {"ok": self.ok, "envelope_verified": self.envelope_verified}
        if self.problem is not None:
            doc["check"]["problem"] = self.problem
        return doc

    def cells(self) -> list[str]:
        """The row of the table view."""
        e = self.entry
        check = self.problem or ("ok, envelope verified" if self.envelope_verified else "ok")
        if e is None:
            return [str(self.index), "", "", "", "", "", "", "", "", check]
        return [
            str(e.index),
            format_utc(e.time),
            e.event.value,
            e.message_type or "",
            e.message_id or _tree_head(e),
            e.case or str((e.header or {}).get("case") or ""),
            _peer(e),
            "/".join(p for p in (e.actor, e.role) if p),
            e.code or "",
            check,
        ]


TABLE_COLUMNS = (
    "INDEX",
    "TIME",
    "EVENT",
    "TYPE",
    "MESSAGE",
    "CASE",
    "PEER",
    "ACTOR",
    "CODE",
    "CHECK",
)


def _tree_head(entry: AuditEntry) -> str:
    detail = entry.detail or {}
    if entry.event is not AuditEvent.CHECKPOINT or "size" not in detail:
        return ""
    return f"signed tree of {detail['size']}: {str(detail.get('root', ''))[:16]}…"


def _peer(entry: AuditEntry) -> str:
    header = entry.header
    if header is None:
        return ""
    sender = header.get("sender")
    if sender != entry.node:
        return str(sender or "")
    recipients = header.get("recipients")
    return ",".join(str(r) for r in recipients) if isinstance(recipients, list) else ""


def timeline(
    store: AuditStore,
    selection: TimelineFilter | None = None,
    checker: EnvelopeChecker | None = None,
) -> Iterator[TimelineRow]:
    """The selected entries in index order, each checked; unreadable entries always show."""
    selection = selection or TimelineFilter()
    expected = 0
    for idx, stored_leaf, raw in store.iter_rows():
        body = bytes(raw)
        problems: list[str] = []
        if idx != expected:
            problems.append(f"entries {expected} to {idx - 1} are missing")
        expected = idx + 1
        if leaf_hash(body) != bytes(stored_leaf):
            problems.append("its bytes do not match its leaf hash: altered")
        try:
            entry = AuditEntry.from_bytes(body)
        except ValueError as exc:
            yield TimelineRow(idx, None, "; ".join([*problems, f"unreadable: {exc}"]), False)
            continue
        if not selection.matches(entry):
            continue
        if entry.index != idx:
            problems.append(f"it says it is entry {entry.index}: moved")
        verified = False
        if checker is not None and entry.envelope is not None and entry.event not in REFUSAL_EVENTS:
            failure = checker.check(entry)
            if failure is None:
                verified = True
            else:
                problems.append(failure)
        yield TimelineRow(idx, entry, "; ".join(problems) or None, verified)
