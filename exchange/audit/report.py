"""Deadline compliance from an audit log: each request, its respond-by time, its answer.

A request is an envelope of a type that expects a response (asset inquiry, freeze notice,
extradition support); each recipient owes one answer, matched by `in_reply_to`, sender and
response type. Times are the senders' signed `created_at`, the same in every node's log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from exchange.audit.entries import REFUSAL_EVENTS, AuditEntry
from exchange.audit.store import AuditStore
from exchange.model import deadlines
from exchange.model.common import MessageType, Priority, format_utc

STATUSES = ("on time", "late", "overdue", "open", "answered", "no deadline")

RespondBy = Callable[..., datetime | None]


@dataclass(frozen=True, slots=True)
class DeadlineRules:
    """When a request must be answered, and which response type answers it."""

    respond_by: RespondBy = deadlines.respond_by
    response_types: Mapping[MessageType, MessageType] = field(
        default_factory=lambda: deadlines.RESPONSE_TYPES
    )


@dataclass(frozen=True, slots=True)
class RequestDeadline:
    """One request to one recipient, and how it was answered."""

    message_id: str
    type: str
    case: str
    sender: str
    recipient: str
    priority: str
    created_at: datetime
    respond_by: datetime | None
    answered_at: datetime | None
    answer_id: str | None

    def status(self, now: datetime) -> str:
        if self.answered_at is not None:
            if self.respond_by is None:
                return "answered"
            return "on time" if self.answered_at <= self.respond_by else "late"
        if self.respond_by is None:
            return "no deadline"
        return "overdue" if now > self.respond_by else "open"

    def as_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "type": self.type,
            "case": self.case,
            "sender": self.sender,
            "recipient": self.recipient,
            "priority": self.priority,
            "created_at": format_utc(self.created_at),
            "respond_by": format_utc(self.respond_by) if self.respond_by else None,
            "answered_at": format_utc(self.answered_at) if self.answered_at else None,
            "answer_id": self.answer_id,
            "status": self.status(now),
        }


@dataclass(frozen=True, slots=True)
class _Request:
    entry_header: dict[str, Any]
    respond_by: datetime | None


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def _envelopes(store: AuditStore) -> Iterator[AuditEntry]:
    for _, _, raw in store.iter_rows():
        try:
            entry = AuditEntry.from_bytes(bytes(raw))
        except ValueError:
            continue  # `exchange audit verify` reports unreadable entries
        if entry.header is not None and entry.event not in REFUSAL_EVENTS:
            yield entry


def deadline_report(store: AuditStore, rules: DeadlineRules | None = None) -> list[RequestDeadline]:
    """Every request in the log with its deadline and first answer, oldest first."""
    rules = rules or DeadlineRules()
    requests: dict[str, _Request] = {}
    answers: dict[tuple[str, str, str], tuple[datetime, str]] = {}
    for entry in _envelopes(store):
        header = entry.header or {}
        kind, message_id = header.get("type"), str(header.get("id"))
        created = _time(header.get("created_at"))
        if created is None or not isinstance(kind, str):
            continue
        is_request, due = _deadline(rules, entry, header, kind, created)
        if is_request and message_id not in requests:
            requests[message_id] = _Request(header, due)
        in_reply_to, sender = header.get("in_reply_to"), header.get("sender")
        if isinstance(in_reply_to, str) and isinstance(sender, str) and kind != "receipt":
            key = (in_reply_to, str(sender), kind)
            if key not in answers or created < answers[key][0]:
                answers[key] = (created, message_id)
    rows = []
    for message_id, request in requests.items():
        header = request.entry_header
        kind = str(header["type"])
        expected = _response_type(rules, kind)
        for recipient in header.get("recipients") or ():
            answer = next(
                (
                    answers[(message_id, str(recipient), t)]
                    for t in expected
                    if (message_id, str(recipient), t) in answers
                ),
                None,
            )
            rows.append(
                RequestDeadline(
                    message_id=message_id,
                    type=kind,
                    case=str(header.get("case")),
                    sender=str(header.get("sender")),
                    recipient=str(recipient),
                    priority=str(header.get("priority")),
                    created_at=_time(header.get("created_at")) or datetime.min,
                    respond_by=request.respond_by,
                    answered_at=answer[0] if answer else None,
                    answer_id=answer[1] if answer else None,
                )
            )
    rows.sort(key=lambda r: (r.created_at, r.message_id, r.recipient))
    return rows


def _deadline(
    rules: DeadlineRules,
    entry: AuditEntry,
    header: Mapping[str, Any],
    kind: str,
    created: datetime,
) -> tuple[bool, datetime | None]:
    """Whether the envelope is a request, and its respond-by time (None if it has none)."""
    try:
        message_type = MessageType(kind)
        priority = Priority(str(header.get("priority")))
    except ValueError:
        return False, None
    if message_type not in rules.response_types:
        return False, None
    payload = (entry.envelope or {}).get("payload")
    direct = payload.get("directly_accessible") if isinstance(payload, dict) else None
    hints = {"directly_accessible": direct} if isinstance(direct, bool) else {}
    return True, rules.respond_by(message_type, priority, created, **hints)


def _response_type(rules: DeadlineRules, kind: str) -> list[str]:
    response = rules.response_types.get(MessageType(kind))
    return [response.value] if response is not None else []


def summary_by_node(rows: list[RequestDeadline], now: datetime) -> dict[str, dict[str, int]]:
    """Per recipient node: how many requests it owed, and how each stands."""
    nodes: dict[str, dict[str, int]] = {}
    for row in rows:
        counts = nodes.setdefault(row.recipient, {"requests": 0} | dict.fromkeys(STATUSES, 0))
        counts["requests"] += 1
        counts[row.status(now)] += 1
    return dict(sorted(nodes.items()))
