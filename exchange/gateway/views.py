"""The JSON documents the HTTP API answers, built from the store's records.

Each function's output matches one model of `api_models` (a test validates them), so the
OpenAPI document describes exactly what clients receive. Envelopes are returned as the
exact signed JSON the node holds, or, for a role that may not read payloads (`payloads`
False: an auditor), without the payload (`exchange.audit.redaction`); receipts stay whole.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from exchange.audit.redaction import redact_envelope
from exchange.model.common import format_utc
from exchange.storage.records import (
    CaseMessage,
    InboxRecord,
    MessageRecord,
    OverdueItem,
    OverdueReport,
    ReceiptRecord,
)


def json_response(doc: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(doc), status=status, content_type="application/json")


def _time(value: datetime | None) -> str | None:
    return None if value is None else format_utc(value)


def _id(value: object | None) -> str | None:
    return None if value is None else str(value)


def envelope_view(envelope: bytes, *, payloads: bool) -> dict[str, Any]:
    """A stored envelope as JSON: whole, or with its payload withheld."""
    document: dict[str, Any] = orjson.loads(envelope)
    return document if payloads else redact_envelope(document)


def receipt_view(receipt: ReceiptRecord) -> dict[str, Any]:
    return {
        "id": str(receipt.id),
        "from_node": receipt.from_node,
        "outcome": receipt.outcome,
        "reason": receipt.reason,
        "detail": receipt.detail,
        "digest": receipt.digest,
        "received_at": format_utc(receipt.received_at),
        "envelope": orjson.loads(receipt.envelope),
    }


def message_view(message: MessageRecord, sender: str, *, payloads: bool) -> dict[str, Any]:
    return {
        "id": str(message.id),
        "type": message.type,
        "case": message.case,
        "sender": sender,
        "recipients": list(message.recipients),
        "in_reply_to": _id(message.in_reply_to),
        "created_at": format_utc(message.created_at),
        "expires_at": _time(message.expires_at),
        "respond_by": _time(message.respond_by),
        "status": message.status,
        "reason": message.reason,
        "digest": message.digest,
        "submitted_by": message.submitted_by,
        "updated_at": format_utc(message.updated_at),
        "deliveries": [
            {
                "recipient": s.recipient,
                "state": s.state,
                "attempts": s.attempts,
                "next_attempt_at": _time(s.next_attempt_at),
                "confirmed_at": _time(s.confirmed_at),
                "receipt": None if s.receipt is None else receipt_view(s.receipt),
            }
            for s in message.recipient_states
        ],
        "receipts": [receipt_view(r) for r in message.receipts],
        "envelope": envelope_view(message.envelope, payloads=payloads),
    }


def inbox_item(record: InboxRecord, *, payloads: bool) -> dict[str, Any]:
    return {
        "cursor": record.cursor,
        "id": str(record.id),
        "type": record.type,
        "case": record.case,
        "sender": record.sender,
        "in_reply_to": _id(record.in_reply_to),
        "digest": record.digest,
        "received_at": format_utc(record.received_at),
        "respond_by": _time(record.respond_by),
        "envelope": envelope_view(record.envelope, payloads=payloads),
    }


def case_view(case: str, messages: list[CaseMessage], node_id: str) -> dict[str, Any]:
    return {
        "case": case,
        "messages": [
            {
                "direction": m.direction,
                "id": str(m.id),
                "type": m.type,
                "sender": m.sender or node_id,
                "recipients": list(m.recipients),
                "in_reply_to": _id(m.in_reply_to),
                "at": format_utc(m.at),
                "status": m.status,
            }
            for m in messages
        ],
    }


def _overdue_item(item: OverdueItem, now: datetime) -> dict[str, Any]:
    return {
        "message_id": str(item.message_id),
        "type": item.type,
        "case": item.case,
        "counterpart": item.counterpart,
        "respond_by": format_utc(item.respond_by),
        "overdue_seconds": max(0, int((now - item.respond_by).total_seconds())),
    }


def overdue_view(report: OverdueReport, now: datetime) -> dict[str, Any]:
    return {
        "now": format_utc(now),
        "we_owe": [_overdue_item(i, now) for i in report.we_owe],
        "owed_to_us": [_overdue_item(i, now) for i in report.owed_to_us],
    }
