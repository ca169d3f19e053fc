"""The gateway's HTTP API under /v1, plus health, readiness, metrics and the OpenAPI document.

`ROUTES` is the one table of what the node serves; `app.py` registers it behind
authentication and `openapi.py` documents it. `POST /v1/messages` answers 202 only once
the signed message is durably in the outbox and audited, and only then wakes the relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Mapping
from typing import Annotated, Any

import orjson
from aiohttp import web
from pydantic import Field

from exchange.audit.entries import AuditEvent, EntryFields
from exchange.directory.follow import degraded_reason
from exchange.directory.view import NetworkView
from exchange.errors import RequestError
from exchange.gateway import case_updates_http as subscriptions
from exchange.gateway import keys, views
from exchange.gateway.api_models import (
    Accepted,
    CaseUpdateEvent,
    CaseUpdatePage,
    CaseView,
    Health,
    InboxItem,
    InboxPage,
    MessageView,
    OverdueView,
    Readiness,
    SubmitMessage,
)
from exchange.gateway.audit_http import AUDIT_ROUTES
from exchange.gateway.auth import Permission, Principal
from exchange.gateway.openapi import build_openapi
from exchange.gateway.params import PATH, AsciiInt, Cursor, MessageId, RouteParams, takes
from exchange.gateway.problems import problem, problem_response
from exchange.gateway.reads import audit_read, audit_read_one
from exchange.gateway.request_body import read_json_object
from exchange.gateway.route_spec import EventStream, Route
from exchange.gateway.submit import (
    check_case_update,
    check_payload,
    check_recipients,
    commit_submission,
    owed_publishes,
    parse_submission,
    sign_submission,
)
from exchange.log import get_logger
from exchange.model.common import CaseRef, MessageType, utc_now
from exchange.storage.records import OutgoingRecord
from exchange.subscriptions import sse

DEFAULT_PAGE = 100
MAX_PAGE = 500
READY_TIMEOUT_SECONDS = 2.0

_log = get_logger(__name__)


class MessageRef(RouteParams):
    id: Annotated[MessageId, PATH] = Field(description="The message id.")


class InboxQuery(RouteParams):
    after: Cursor = Field(0, description="Return messages after this cursor.")
    limit: AsciiInt = Field(DEFAULT_PAGE, ge=1, le=MAX_PAGE, description="At most this many.")


class CaseParams(RouteParams):
    case: Annotated[CaseRef, PATH] = Field(description="The case reference.")


def _payloads(request: web.Request) -> bool:
    """Whether the caller may see payloads (else envelopes come with them withheld)."""
    return request[keys.PRINCIPAL].may(Permission.PAYLOADS)


def _not_found(what: str) -> RequestError:
    return RequestError(f"no {what} with this id", code="not_found")


# --- handlers -----------------------------------------------------------------------------


async def accept_submission(
    app: web.Application, principal: Principal, body: Mapping[str, Any]
) -> OutgoingRecord:
    """Check, sign, store and audit one submission of `principal` (the body of
    `POST /v1/messages`), as the API and the console both do; the relay is not woken yet.
    Refusals raise the `ExchangeError` the API answers."""
    config = app[keys.CONFIG]
    submission = parse_submission(body)
    view = app[keys.DIRECTORY]
    check_recipients(submission, view)
    payload_model = check_payload(submission)
    if submission.type is MessageType.CASE_UPDATE:
        check_case_update(submission, payload_model, view)
    signed = sign_submission(
        submission,
        payload_model,
        config=config,
        signer=app[keys.SIGNER],
        submitted_by=principal.token_id,
    )
    record = signed.record
    case_updates = app[keys.CASE_UPDATES]
    if submission.type is MessageType.CASE_UPDATE:
        # fanned out on the cases exchange, not sent to each recipient
        await case_updates.accept(
            signed.envelope, actor=principal.token_id, role=principal.role.value
        )
    else:
        updates = case_updates.prepare_automatic(
            signed.envelope, signed.header, payload_model, "sent"
        )
        stored = await commit_submission(
            app[keys.DATABASE],
            app[keys.AUDIT],
            signed,
            publishes=owed_publishes(record, case_updates.topology, config.node_id),
            accepted=EntryFields.build(
                AuditEvent.ACCEPTED,
                actor=principal.token_id,
                role=principal.role.value,
                message_id=record.id,
                case=record.case,
                digest=record.digest,
                envelope=signed.envelope,
            ),
            also=(lambda conn: case_updates.store_automatic(conn, updates)) if updates else None,
        )
        case_updates.announce(stored or [])
    app[keys.METRICS].message("out", record.type, "accepted")
    return record


async def submit_message(request: web.Request) -> web.StreamResponse:
    app = request.app
    config = app[keys.CONFIG]
    body = await read_json_object(request, config.limits.max_body_bytes)
    record = await accept_submission(app, request[keys.PRINCIPAL], body)
    response = views.json_response({"id": str(record.id), "status": "accepted"}, status=202)
    await response.prepare(request)
    await response.write_eof()
    relay = app.get(keys.RELAY)
    if relay is not None:
        relay.wake()
    with contextlib.suppress(Exception):  # a broken log stream must not undo an acceptance
        _log.info(
            "message.accepted",
            message_id=str(record.id),
            case=record.case,
            node=config.node_id,
            type=record.type,
            recipients=list(record.recipients),
        )
    return response


@takes(MessageRef)
async def get_message(request: web.Request, params: MessageRef) -> web.StreamResponse:
    message = await request.app[keys.STORE].get_message(params.id)
    if message is None:
        raise _not_found("outgoing message")
    node_id, payloads = request.app[keys.CONFIG].node_id, _payloads(request)
    return views.json_response(views.message_view(message, node_id, payloads=payloads))


@takes(InboxQuery)
async def list_inbox(request: web.Request, params: InboxQuery) -> web.StreamResponse:
    after, limit = params.after, params.limit
    records = await request.app[keys.STORE].inbox_page(after, limit)
    await audit_read(
        request, AuditEvent.DELIVERED, [r.id for r in records], [r.case for r in records]
    )
    items = [views.inbox_item(r, payloads=_payloads(request)) for r in records]
    return views.json_response({"items": items, "next": records[-1].cursor if records else after})


@takes(MessageRef)
async def get_inbox_message(request: web.Request, params: MessageRef) -> web.StreamResponse:
    record = await request.app[keys.STORE].inbox_get(params.id)
    if record is None:
        raise _not_found("incoming message")
    await audit_read_one(request, AuditEvent.DELIVERED, record.id, record.case, record.digest)
    return views.json_response(views.inbox_item(record, payloads=_payloads(request)))


@takes(CaseParams)
async def get_case(request: web.Request, params: CaseParams) -> web.StreamResponse:
    case = params.case
    messages = await request.app[keys.STORE].case_messages(case)
    return views.json_response(views.case_view(case, messages, request.app[keys.CONFIG].node_id))


async def get_overdue(request: web.Request) -> web.StreamResponse:
    now = utc_now()
    report = await request.app[keys.STORE].overdue(now)
    return views.json_response(views.overdue_view(report, now))


async def healthz(request: web.Request) -> web.StreamResponse:
    return views.json_response({"status": "ok", "node": request.app[keys.CONFIG].node_id})


async def readyz(request: web.Request) -> web.StreamResponse:
    relay = request.app.get(keys.RELAY)
    store = request.app.get(keys.STORE)
    checks = {"broker": relay is not None and relay.ready, "store": False}
    if store is not None:
        try:
            checks["store"] = await asyncio.wait_for(store.ping(), READY_TIMEOUT_SECONDS)
        except Exception as exc:  # a failed or slow write means not ready, never a 500
            _log.warning("readiness.store_failed", error=type(exc).__name__)
    degraded = degraded_reason(request.app.get(keys.DIRECTORY))
    if all(checks.values()):
        checks["directory"] = degraded is None
        if degraded is not None:
            # Still serving on the last good directory: say so, but stay in rotation.
            return views.json_response({"status": "degraded", "checks": checks, "detail": degraded})
        return views.json_response({"status": "ready", "checks": checks})
    checks["directory"] = degraded is None
    failing = ", ".join(name for name, ok in checks.items() if not ok)
    return problem_response(problem("service.unavailable", f"not ready: {failing}", checks=checks))


async def metrics(request: web.Request) -> web.StreamResponse:
    registry = request.app[keys.METRICS]
    store = request.app.get(keys.STORE)
    if store is not None:
        registry.set_outbox_depth(await store.outbox_depth())
    body, content_type = registry.exposition(request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})


@functools.lru_cache(maxsize=8)
def _openapi_document(view: NetworkView, serial: int) -> bytes:
    return orjson.dumps(build_openapi(ROUTES, view))


def openapi_document(view: NetworkView) -> bytes:
    """The node's OpenAPI document, built once per directory serial (it costs ~0.1 s): its
    partners and networks are the directory's."""
    return _openapi_document(view, view.serial)


async def openapi(request: web.Request) -> web.StreamResponse:
    body = openapi_document(request.app[keys.DIRECTORY])
    return web.Response(body=body, content_type="application/json")


# --- the table ----------------------------------------------------------------------------

ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/v1/messages",
        submit_message,
        "submitMessage",
        "Sign a message and queue it for its recipients",
        Permission.SEND,
        status=202,
        response=Accepted,
        request=SubmitMessage,
        errors=(
            "request.malformed_json",
            "request.unsupported_media_type",
            "request.too_large",
            "request.invalid",
            "recipient.unknown",
            "schema.invalid",
            "schema.unknown",
            "network.forbidden",
            "handling.restricted",
        ),
        tags=("messages",),
        description="Validates the request and its payload, fills in id, sender, schema and "
        "created_at, signs, stores durably in the outbox and audits; answers 202 only then. "
        "A `case-update` goes to every other member of its payload's network, on the cases "
        "exchange; only a member may send one (else 403 `network.forbidden`), and never one "
        "labelled TLP:RED or TLP:AMBER+STRICT (422 `handling.restricted`: it would reach every "
        "member's subscribers and webhooks).",
    ),
    Route(
        "GET",
        "/v1/messages/{id}",
        get_message,
        "getMessage",
        "An outgoing message's status, receipts and per-recipient delivery",
        Permission.READ,
        response=MessageView,
        errors=("not_found",),
        tags=("messages",),
    ),
    Route(
        "GET",
        "/v1/inbox",
        list_inbox,
        "listInbox",
        "Verified incoming messages, oldest first, after a cursor",
        Permission.READ,
        response=InboxPage,
        tags=("inbox",),
        description="Each call that returns messages is audited as one `delivered` entry "
        "naming the calling token and listing the ids returned.",
    ),
    Route(
        "GET",
        "/v1/inbox/{id}",
        get_inbox_message,
        "getInboxMessage",
        "One verified incoming message",
        Permission.READ,
        response=InboxItem,
        errors=("not_found",),
        tags=("inbox",),
        description="Audited as delivered to the calling token.",
    ),
    Route(
        "GET",
        "/v1/cases/{case}",
        get_case,
        "getCase",
        "Every message of a case, in both directions, in time order",
        Permission.READ,
        response=CaseView,
        tags=("cases",),
    ),
    Route(
        "GET",
        "/v1/overdue",
        get_overdue,
        "getOverdue",
        "Requests past their response deadline: those we owe and those owed to us",
        Permission.READ,
        response=OverdueView,
        tags=("cases",),
    ),
    Route(
        "GET",
        "/v1/subscriptions/events",
        subscriptions.list_events,
        "listCaseUpdates",
        "Case updates of this node's networks, oldest first, after a cursor",
        Permission.SUBSCRIBE,
        response=CaseUpdatePage,
        tags=("subscriptions",),
        description="Each call that returns updates is audited as one "
        "`subscription-delivered` entry naming the token and listing the ids returned.",
    ),
    Route(
        "GET",
        "/v1/subscriptions/stream",
        subscriptions.stream_events,
        "streamCaseUpdates",
        "Case updates as Server-Sent Events, resumable with Last-Event-ID",
        Permission.SUBSCRIBE,
        stream=EventStream(
            sse.EVENT_NAME,
            CaseUpdateEvent,
            "An update: event `case-update`, `id` its cursor (what Last-Event-ID resumes "
            "after), `data` the CaseUpdateEvent as one line of JSON. While idle the stream "
            "sends `: heartbeat` comments, and first a `retry:` line.",
        ),
        tags=("subscriptions",),
        description="Each batch of updates sent is audited as one `subscription-delivered` "
        "entry naming the token and listing the ids sent.",
    ),
    Route(
        "GET",
        "/healthz",
        healthz,
        "health",
        "The process is alive",
        None,
        response=Health,
        tags=("operations",),
    ),
    Route(
        "GET",
        "/readyz",
        readyz,
        "readiness",
        "Broker connected and consuming, store writable; degraded on an expired directory",
        None,
        response=Readiness,
        errors=("service.unavailable",),
        tags=("operations",),
    ),
    Route(
        "GET",
        "/metrics",
        metrics,
        "metrics",
        "Prometheus metrics",
        None,
        response_media="text/plain",
        response_schema={"type": "string"},
        tags=("operations",),
    ),
    Route(
        "GET",
        "/openapi.json",
        openapi,
        "openapi",
        "This document",
        None,
        response_schema={"type": "object"},
        tags=("operations",),
    ),
    *AUDIT_ROUTES,
)
