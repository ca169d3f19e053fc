"""Composing a message: a form per type generated from its JSON Schema, sent through the API's
own acceptance (`accept_submission`), so a message composed here is checked, signed, stored
and audited exactly as one posted to `POST /v1/messages`; a refusal is recorded as the API
records it and shown with each field error next to its input.

A reply (`?reply_to=<id>` of an incoming message) pre-fills the case, `in_reply_to`, the
recipient (its sender), the priority and the handling. A case update goes to every other
member of the network chosen in it, as the gateway requires. Without script, the buttons
that add or remove list items, or apply a changed kind, post the form and get it back
changed; with script they act at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any
from uuid import UUID

import orjson
from aiohttp import web
from multidict import MultiDictProxy

from exchange.console.form_edits import attach_errors, edit_list, pointer_to_path, readable
from exchange.console.messages import SENDABLE
from exchange.console.schema_form import Field, FormBuilder, payload_schema
from exchange.console.web import PREFIX, SESSION, page, record_refusal, render
from exchange.errors import ExchangeError, FieldError, RequestError
from exchange.gateway import keys
from exchange.gateway.auth import Permission
from exchange.gateway.routes import accept_submission
from exchange.log import get_logger
from exchange.model.common import HandlingCode, MessageType, Priority, Tlp

_log = get_logger(__name__)

TYPE_TEXT = {
    "asset-inquiry": "Ask another office to trace assets (Directive (EU) 2024/1260 art. 9).",
    "asset-inquiry-response": "Answer an asset inquiry with what was found.",
    "freeze-notice": "Ask another state to freeze property (Regulation (EU) 2018/1805).",
    "freeze-decision": "Answer a freeze notice: executed, postponed or refused.",
    "extradition-support": "Ask for help to locate and arrest a wanted person.",
    "extradition-support-response": "Answer an extradition support request.",
    "case-update": "Tell a prosecutor network that something happened in a case.",
}


def _kind(request: web.Request) -> str:
    kind = request.match_info["type"]
    if kind not in SENDABLE:
        raise RequestError(f"no message type {kind!r} can be composed", code="not_found")
    return kind


def _context(
    request: web.Request,
    kind: str,
    body: Mapping[str, Any],
    errors: list[FieldError],
    problem: str | None,
) -> dict[str, Any]:
    view = request.app[keys.DIRECTORY]
    builder = FormBuilder(payload_schema(kind))
    payload = builder.form(body.get("payload"))
    placed = attach_errors(
        [payload, *_envelope_fields()], [(pointer_to_path(e.path), e.message) for e in errors]
    )
    networks = list(view.member_networks())
    if kind == MessageType.CASE_UPDATE.value:
        _offer_networks(payload, [n.name for n in networks])
    return {
        "title": f"Compose: {kind}",
        "kind": kind,
        "about": TYPE_TEXT.get(kind, ""),
        "body": body,
        "payload": payload,
        "datalists": builder.datalists,
        "errors": [(path, readable(path), message) for path, message in placed],
        "problem": problem,
        "partners": sorted(r for r in view.recipients if view.may_receive(r, kind)),
        "networks": networks,
        "priorities": [p.value for p in Priority],
        "tlps": [t.value for t in Tlp],
        "codes": [c.value for c in HandlingCode],
        "field_errors": {path: [m for p, m in placed if p == path] for path, _ in placed},
    }


def _offer_networks(payload: Field, names: list[str]) -> None:
    """A case update's network: one of this node's, chosen from a list; its case is the
    message's (filled in when it is posted), so it is not asked twice."""
    payload.children = [c for c in payload.children if c.path != "payload.case"]
    for field in payload.walk():
        if field.path == "payload.network":
            field.kind, field.options, field.datalist = "select", tuple(names), None
            if field.value is None and len(names) == 1:
                field.value = names[0]


def _envelope_fields() -> list[Any]:
    """The message's own fields as targets of field errors (the template draws them)."""
    names = ("recipients", "case", "in_reply_to", "priority", "handling.tlp", "handling.code")
    return [Field("text", name, name) for name in (*names, "handling", "expires_at", "type")]


def _body(
    kind: str, form: MultiDictProxy[Any], network_members: Mapping[str, list[str]]
) -> dict[str, Any]:
    """The `POST /v1/messages` body a posted compose form describes."""
    texts = {k: v for k, v in form.items() if isinstance(v, str)}
    body: dict[str, Any] = {"type": kind}
    payload = FormBuilder(payload_schema(kind)).collect(texts)
    recipients = [r for r in form.getall("recipients", []) if isinstance(r, str)]
    if kind == MessageType.CASE_UPDATE.value:
        recipients = network_members.get(str(payload.get("network")), recipients)
    body["recipients"] = recipients
    for name in ("case", "priority", "in_reply_to", "expires_at"):
        value = texts.get(name, "").strip()
        if value:
            body[name] = value
    handling = {k: texts[f"handling.{k}"] for k in ("tlp", "code") if texts.get(f"handling.{k}")}
    body["handling"] = handling
    if kind == MessageType.CASE_UPDATE.value and "case" in body:
        payload["case"] = body["case"]
    body["payload"] = payload
    return body


@page(Permission.SEND)
async def choose(request: web.Request) -> web.StreamResponse:
    view = request.app[keys.DIRECTORY]
    allowed = [kind for kind in SENDABLE if view.may_send(view.node_id, kind)]
    types = [(kind, TYPE_TEXT.get(kind, "")) for kind in allowed]
    return render(request, "compose_index.html", {"title": "Compose", "types": types})


@page(Permission.SEND)
async def compose_form(request: web.Request) -> web.StreamResponse:
    kind = _kind(request)
    body: dict[str, Any] = {
        "type": kind,
        "recipients": [],
        "priority": Priority.NORMAL.value,
        "handling": {"tlp": Tlp.AMBER.value, "code": HandlingCode.H2.value},
    }
    reply_to = request.query.get("reply_to")
    if reply_to:
        try:
            original = await request.app[keys.STORE].inbox_get(UUID(reply_to))
        except ValueError:
            original = None
        if original is None:
            raise RequestError("no incoming message with this id to reply to", code="not_found")
        header = _header(original.envelope)
        body.update(
            case=original.case,
            in_reply_to=str(original.id),
            recipients=[original.sender],
            priority=header.get("priority", Priority.NORMAL.value),
        )
        if isinstance(header.get("handling"), dict):
            body["handling"] = header["handling"]
    elif request.query.get("case"):
        body["case"] = request.query["case"][:64]
    return render(request, "compose.html", _context(request, kind, body, [], None))


def _header(envelope: bytes) -> dict[str, Any]:
    header = orjson.loads(envelope).get("header")
    return header if isinstance(header, dict) else {}


@page(Permission.SEND)
async def compose_send(request: web.Request) -> web.StreamResponse:
    kind = _kind(request)
    config, view = request.app[keys.CONFIG], request.app[keys.DIRECTORY]
    members = {
        n.name: [m for m in n.members if m != config.node_id] for n in view.member_networks()
    }
    form = await request.post()
    body = _body(kind, form, members)
    action = form.get("_action")
    if isinstance(action, str) and action:
        edit_list(body, action)
        return render(request, "compose.html", _context(request, kind, body, [], None))
    principal = request[SESSION].principal
    try:
        record = await accept_submission(request.app, principal, body)
    except ExchangeError as err:
        await record_refusal(request, err.code, err.http_status)
        problem = f"{err.code}: {err.detail}"
        context = _context(request, kind, body, list(err.errors), problem)
        return render(request, "compose.html", context, status=err.http_status)
    relay = request.app.get(keys.RELAY)
    if relay is not None:
        relay.wake()
    with contextlib.suppress(Exception):
        _log.info(
            "message.accepted",
            message_id=str(record.id),
            case=record.case,
            node=config.node_id,
            type=record.type,
            recipients=list(record.recipients),
            via="console",
        )
    if kind == MessageType.CASE_UPDATE.value:
        raise web.HTTPSeeOther(f"{PREFIX}/cases/{record.case}?sent={record.id}")
    raise web.HTTPSeeOther(f"{PREFIX}/sent/{record.id}?sent=1")
