"""The contact point's pages: inbox, messages sent, one message, the cases and a case's timeline.

Each reads through the gateway's own store and views, with the API's rules: opening an
incoming message is audited as `delivered` to the signed-in token (as `GET /v1/inbox/{id}`
is); lists show headers, times and statuses, no payload, and like the API's case and
overdue lists are not audited; a role without `payloads` (an auditor) sees the payload
withheld, by the same function that withholds it from the API. Case updates appear on a
case's timeline for roles that may subscribe (audited as `subscription-delivered`, never
one labelled TLP:RED or TLP:AMBER+STRICT) and, for those that send, the updates this node
published itself.
"""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

from aiohttp import web

from exchange.audit.entries import AuditEvent
from exchange.console import queries
from exchange.console.schema_form import FormBuilder, payload_schema
from exchange.console.web import PREFIX, SESSION, page, render
from exchange.errors import FieldError, RequestError
from exchange.gateway import keys, views
from exchange.gateway.auth import Permission
from exchange.gateway.reads import audit_read, audit_read_one
from exchange.model.common import CASE_PATTERN, MessageType, format_utc, utc_now
from exchange.model.deadlines import RESPONSE_TYPES
from exchange.storage.case_records import CaseEventRecord, named_recipients_only
from exchange.storage.records import ReceiptRecord

MAX_TIMELINE_UPDATES = 500
SENDABLE = tuple(t.value for t in MessageType if t is not MessageType.RECEIPT)


def bad_parameter(name: str, why: str) -> RequestError:
    return RequestError(
        f"the parameter {name} is not valid: {why}",
        code="request.bad_parameter",
        errors=[FieldError(name, why)],
    )


def message_id(request: web.Request) -> UUID:
    try:
        return UUID(request.match_info["id"])
    except ValueError:
        raise RequestError("no message with this id", code="not_found") from None


def case_ref(value: str | None, name: str = "case") -> str | None:
    if value is None or value == "":
        return None
    if not re.fullmatch(CASE_PATTERN, value):
        raise bad_parameter(name, "a case reference is letters, digits, '-' and '_'")
    return value


def choice(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    value = request.query.get(name) or None
    if value is not None and value not in allowed:
        raise bad_parameter(name, f"one of {', '.join(allowed)}")
    return value


def cursor(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise bad_parameter(name, "a cursor is a whole number")
    return int(value)


@page(Permission.READ)
async def inbox(request: web.Request) -> web.StreamResponse:
    case = case_ref(request.query.get("case"))
    kind = choice(request, "type", tuple(t.value for t in MessageType))
    status = choice(request, "status", queries.INBOX_STATUSES)
    before = cursor(request, "before")
    now = utc_now()
    rows = await request.app[keys.DATABASE].call(
        lambda conn: queries.inbox_rows(
            conn, now, case=case, kind=kind, status=status, before=before, limit=queries.PAGE
        )
    )
    older = rows[-1].cursor if len(rows) == queries.PAGE else None
    context = {
        "title": "Inbox",
        "rows": rows,
        "filters": {"case": case or "", "type": kind or "", "status": status or ""},
        "types": [t.value for t in MessageType],
        "statuses": queries.INBOX_STATUSES,
        "older": older,
        "now": now,
    }
    return render(request, "inbox.html", context)


@page(Permission.READ)
async def sent(request: web.Request) -> web.StreamResponse:
    case = case_ref(request.query.get("case"))
    kind = choice(request, "type", SENDABLE)
    status = choice(request, "status", queries.SENT_STATUSES)
    before = request.query.get("before") or None
    if before is not None and (len(before) > 40 or not before.isascii()):
        raise bad_parameter("before", "a time as the list gave it")
    now = utc_now()
    rows = await request.app[keys.DATABASE].call(
        lambda conn: queries.sent_rows(
            conn, now, case=case, kind=kind, status=status, before=before, limit=queries.PAGE
        )
    )
    context = {
        "title": "Sent",
        "rows": rows,
        "filters": {"case": case or "", "type": kind or "", "status": status or ""},
        "types": SENDABLE,
        "statuses": queries.SENT_STATUSES,
        "older": rows[-1].created_at if len(rows) == queries.PAGE else None,
    }
    return render(request, "sent.html", context)


def readable(envelope: dict[str, Any]) -> dict[str, Any]:
    """The envelope with its payload's keys in the order of its type's schema (the signed
    form sorts them), for reading; a payload of an unknown type is left as it is."""
    kind = envelope.get("header", {}).get("type")
    if "payload" in envelope and kind in SENDABLE:
        schema = FormBuilder(payload_schema(str(kind)))
        envelope = {**envelope, "payload": schema.ordered(envelope["payload"])}
    return envelope


def _certificate(request: web.Request, envelope: dict[str, Any]) -> dict[str, Any] | None:
    """The certificate that signed `envelope`, as the node's trust store knows it."""
    signature = envelope.get("signature")
    kid = signature.get("kid") if isinstance(signature, dict) else None
    trusted = request.app[keys.TRUST].get(kid) if isinstance(kid, str) else None
    if trusted is None:
        return None
    return {
        "kid": trusted.kid,
        "node": trusted.node_id,
        "serial": f"{trusted.serial:x}",
        "not_before": trusted.not_before,
        "not_after": trusted.not_after,
    }


def _receipt(request: web.Request, receipt: ReceiptRecord) -> dict[str, Any]:
    view = views.receipt_view(receipt)
    view["certificate"] = _certificate(request, view["envelope"])
    return view


@page(Permission.READ)
async def inbox_message(request: web.Request) -> web.StreamResponse:
    mid = message_id(request)
    record = await request.app[keys.STORE].inbox_get(mid)
    if record is None:
        raise RequestError("no incoming message with this id", code="not_found")
    await audit_read_one(request, AuditEvent.DELIVERED, record.id, record.case, record.digest)
    principal = request[SESSION].principal
    envelope = views.envelope_view(record.envelope, payloads=principal.may(Permission.PAYLOADS))
    replies = await request.app[keys.DATABASE].call(lambda conn: queries.replies_to(conn, mid))
    header = envelope.get("header", {})
    history = [
        (header.get("created_at"), f"Signed by {record.sender}"),
        (format_utc(record.received_at), "Received, verified and stored; receipt sent"),
    ]
    history += [(at, f"Answered by us: {kind}") for d, _, kind, at in replies if d == "out"]
    answer = RESPONSE_TYPES.get(MessageType(record.type)) if record.type in SENDABLE else None
    context = {
        "title": f"{record.type} from {record.sender}",
        "direction": "in",
        "id": str(record.id),
        "header": header,
        "envelope": readable(envelope),
        "digest": record.digest,
        "certificate": _certificate(request, envelope),
        "received_at": record.received_at,
        "respond_by": record.respond_by,
        "replies": replies,
        "history": sorted(history, key=lambda item: str(item[0])),
        "reply_type": answer.value if answer is not None else None,
        "may_send": principal.may(Permission.SEND),
        "now": utc_now(),
    }
    return render(request, "message.html", context)


@page(Permission.READ)
async def sent_message(request: web.Request) -> web.StreamResponse:
    mid = message_id(request)
    message = await request.app[keys.STORE].get_message(mid)
    if message is None:
        raise RequestError("no outgoing message with this id", code="not_found")
    principal = request[SESSION].principal
    node = request.app[keys.CONFIG].node_id
    view = views.message_view(message, node, payloads=principal.may(Permission.PAYLOADS))
    replies = await request.app[keys.DATABASE].call(lambda conn: queries.replies_to(conn, mid))
    history = [(view["created_at"], f"Accepted and signed for {message.submitted_by or node}")]
    for state in message.recipient_states:
        if state.confirmed_at is not None:
            when = format_utc(state.confirmed_at)
            history.append((when, f"Published for {state.recipient}, confirmed by the broker"))
        if state.state == "failed":
            history.append((view["updated_at"], f"Given up for {state.recipient}"))
    for receipt in message.receipts:
        outcome = receipt.outcome + (f" ({receipt.reason})" if receipt.reason else "")
        history.append(
            (format_utc(receipt.received_at), f"Receipt from {receipt.from_node}: {outcome}")
        )
    history += [(at, f"Answer received: {kind}") for d, _, kind, at in replies if d == "in"]
    envelope = view["envelope"]
    context = {
        "title": f"{message.type} to {', '.join(message.recipients)}",
        "direction": "out",
        "id": str(message.id),
        "header": envelope.get("header", {}),
        "envelope": readable(envelope),
        "digest": message.digest,
        "certificate": _certificate(request, envelope),
        "message": view,
        "deliveries": [
            {**d, "receipt": _receipt(request, s.receipt) if s.receipt else None}
            for d, s in zip(view["deliveries"], message.recipient_states, strict=True)
        ],
        "receipts": [_receipt(request, r) for r in message.receipts],
        "respond_by": message.respond_by,
        "replies": replies,
        "history": sorted(history, key=lambda item: str(item[0])),
        "reply_type": None,
        "sent_notice": request.query.get("sent") == "1",
        "may_send": principal.may(Permission.SEND),
        "now": utc_now(),
    }
    return render(request, "message.html", context)


@page((Permission.READ, Permission.SUBSCRIBE))
async def cases(request: web.Request) -> web.StreamResponse:
    wanted = case_ref(request.query.get("case"))
    if wanted is not None:
        raise web.HTTPSeeOther(f"{PREFIX}/cases/{wanted}")
    principal = request[SESSION].principal
    messages, updates = principal.may(Permission.READ), principal.may(Permission.SUBSCRIBE)
    rows = await request.app[keys.DATABASE].call(
        lambda conn: queries.recent_cases(conn, messages=messages, updates=updates)
    )
    return render(request, "cases.html", {"title": "Cases", "rows": rows})


async def case_updates(request: web.Request, case: str) -> list[CaseEventRecord]:
    """The case's updates this principal may read: all of its networks' (audited) for a
    subscriber, the ones this node published for a sender; never a restricted one."""
    principal = request[SESSION].principal
    store = request.app[keys.CASE_UPDATES].store
    if principal.may(Permission.SUBSCRIBE):
        records = await store.events_after(0, MAX_TIMELINE_UPDATES, case=case)
        handed = [r for r in records if not named_recipients_only(r.envelope)]
        await audit_read(
            request,
            AuditEvent.SUBSCRIPTION_DELIVERED,
            [r.id for r in handed],
            [r.case for r in handed],
            {"channel": "console", "networks": sorted({r.network for r in handed})},
        )
        return handed
    if principal.may(Permission.SEND):
        records = await store.events_after(0, MAX_TIMELINE_UPDATES, case=case)
        return [
            r for r in records if r.direction == "out" and not named_recipients_only(r.envelope)
        ]
    return []


@page((Permission.READ, Permission.SUBSCRIBE))
async def case_view(request: web.Request) -> web.StreamResponse:
    case = case_ref(request.match_info["case"])
    assert case is not None
    principal = request[SESSION].principal
    timeline: list[dict[str, Any]] = []
    if principal.may(Permission.READ):
        node = request.app[keys.CONFIG].node_id
        document = views.case_view(case, await request.app[keys.STORE].case_messages(case), node)
        timeline += [{"kind": "message", "at": m["at"], **m} for m in document["messages"]]
    for record in await case_updates(request, case):
        timeline.append({"kind": "update", "at": format_utc(record.created_at), **record.view()})
    timeline.sort(key=lambda item: str(item["at"]))
    context = {
        "title": f"Case {case}",
        "case": case,
        "timeline": timeline,
        "may_send": principal.may(Permission.SEND),
        "live": not principal.may(Permission.SUBSCRIBE),
    }
    return render(request, "case.html", context)
