"""Turning a local client's request into a signed outgoing message, or a precise refusal.

Order of checks: fields only the gateway sets (`id`, `sender`, ...) -> the request model
(422 `request.invalid` with field paths) -> recipients known to the network (422
`recipient.unknown`) -> the payload against its schema (422 `schema.invalid`) -> for a
case update, membership of its network (403 `network.forbidden`), a label that allows
passing it on (422 `handling.restricted`: not TLP:RED nor TLP:AMBER+STRICT, as a case
update reaches every member's subscribers and webhooks) and its consistency. Then
the gateway fills in id, sender, schema and created_at, signs, and computes the deadline.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import uuid4

from pydantic import BaseModel, ValidationError

from exchange.audit.entries import EntryFields
from exchange.audit.log import AuditLog
from exchange.config import NodeConfig
from exchange.crypto.signing import NodeSigner, encode_envelope
from exchange.directory.view import NetworkView
from exchange.errors import ExchangeError, FieldError, RequestError
from exchange.gateway.api_models import SubmitMessage
from exchange.gateway.request_body import field_errors
from exchange.model.case_update import CaseUpdate
from exchange.model.common import utc_now
from exchange.model.deadlines import respond_by
from exchange.model.envelope import MAX_ENVELOPE_BYTES, Header
from exchange.schemas import schema_ref, validate_payload
from exchange.storage import outbox
from exchange.storage.messages import insert_message
from exchange.storage.outbox import Publish
from exchange.storage.records import OutgoingRecord
from exchange.storage.sqlite_thread import SqliteThread
from exchange.transport.topology import Topology

T = TypeVar("T")

GATEWAY_FIELDS = ("id", "sender", "schema", "created_at", "signature", "header")
"""Body fields a client may not set: the gateway fills them in (or they are the envelope's)."""


@dataclass(frozen=True, slots=True)
class SignedSubmission:
    """What a valid request became: the record to store and the signed wire envelope."""

    record: OutgoingRecord
    envelope: dict[str, Any]
    header: Header


def owed_publishes(record: OutgoingRecord, topology: Topology, node_id: str) -> list[Publish]:
    """One publish per recipient; a sender's messages of one case to one recipient keep
    their order."""
    return [
        Publish(
            message_id=record.id,
            recipient=recipient,
            kind="message",
            type=record.type,
            exchange="messages",
            routing_key=topology.routing_key(recipient, record.type, node_id),
            order_key=f"messages:{recipient}:{record.case}",
        )
        for recipient in record.recipients
    ]


async def commit_submission(
    db: SqliteThread,
    audit: AuditLog,
    signed: SignedSubmission,
    *,
    publishes: list[Publish],
    accepted: EntryFields,
    also: Callable[[sqlite3.Connection], T] | None = None,
) -> T | None:
    """Store the message, owe its publishes and write its `accepted` entry in one
    transaction, with `also` (the case updates it means); returns what `also` returned."""

    def run(conn: sqlite3.Connection) -> T | None:
        insert_message(conn, signed.record)
        outbox.add(conn, publishes, signed.record.created_at)
        audit.write(conn, accepted)
        return also(conn) if also is not None else None

    return await db.call(run)


def parse_submission(body: Mapping[str, Any]) -> SubmitMessage:
    """The request model of `POST /v1/messages`; RequestError (422) naming each bad field."""
    reserved = [name for name in GATEWAY_FIELDS if name in body]
    if reserved:
        raise RequestError(
            f"{', '.join(reserved)} {'is' if len(reserved) == 1 else 'are'} set by the gateway",
            errors=[FieldError(f"/{n}", "set by the gateway; do not send it") for n in reserved],
        )
    try:
        return SubmitMessage.model_validate(dict(body))
    except ValidationError as exc:
        raise RequestError(
            "the request does not match the API's schema", errors=field_errors(exc)
        ) from None


def check_recipients(request: SubmitMessage, view: NetworkView) -> None:
    """RequestError `recipient.unknown` (422) for a recipient that is not a member of the
    directory in use; `role.forbidden` (403) when this node's role may not send the type or
    a recipient's may not receive it."""
    errors = []
    for i, recipient in enumerate(request.recipients):
        if recipient == view.node_id:
            errors.append(FieldError(f"/recipients/{i}", "a node cannot send to itself"))
        elif recipient not in view.recipients:
            errors.append(
                FieldError(
                    f"/recipients/{i}",
                    f"{recipient} is not a member of {view.config.network} "
                    f"(directory serial {view.serial})",
                )
            )
    if errors:
        raise RequestError(
            "a recipient is not a partner node of this network",
            code="recipient.unknown",
            errors=errors,
        )
    kind = request.type.value
    if not view.may_send(view.node_id, kind):
        raise ExchangeError(
            f"this node is {_role(view, view.node_id)}: it may not send {kind}",
            code="role.forbidden",
            errors=[FieldError("/type", f"{_role(view, view.node_id)} members may not send it")],
        )
    refused = [
        FieldError(f"/recipients/{i}", f"{r} is {_role(view, r)}: it may not receive {kind}")
        for i, r in enumerate(request.recipients)
        if not view.may_receive(r, kind)
    ]
    if refused:
        raise ExchangeError(
            f"a recipient's role may not receive {kind}", code="role.forbidden", errors=refused
        )


def _role(view: NetworkView, node: str) -> str:
    role = view.role_of(node)
    return role.value if role is not None else "not a member"


def check_payload(request: SubmitMessage) -> BaseModel:
    """The payload validated against its type's current schema (SchemaError, 422)."""
    return validate_payload(request.type.value, schema_ref(request.type), request.payload)


def check_case_update(request: SubmitMessage, payload: BaseModel, view: NetworkView) -> None:
    """A node publishes updates only for networks it is a member of (403 `network.forbidden`),
    to every other member and nobody else, for the message's case and a shared event (422)."""
    assert isinstance(payload, CaseUpdate)
    network = view.network(payload.network)
    if network is None or view.node_id not in network.members:
        raise ExchangeError(
            f"{view.node_id} is not a member of network {payload.network}",
            code="network.forbidden",
            errors=[FieldError("/payload/network", "not a network this node belongs to")],
        )
    strangers = [
        FieldError(f"/recipients/{i}", f"{r} is not a member of {network.name}")
        for i, r in enumerate(request.recipients)
        if r not in network.members
    ]
    if strangers:
        raise ExchangeError(
            f"a case update of {network.name} may go to its members only",
            code="network.forbidden",
            errors=strangers,
        )
    if request.handling.named_recipients_only:
        raise ExchangeError(
            f"a case update reaches every member of {network.name}, their subscribers and "
            f"webhooks: TLP:{request.handling.tlp.value} information goes in a message to "
            "its named recipients only",
            code="handling.restricted",
            errors=[FieldError("/handling/tlp", "a case update is AMBER, GREEN or CLEAR")],
        )
    errors = []
    missing = [m for m in network.members if m != view.node_id and m not in request.recipients]
    if missing:
        errors.append(
            FieldError("/recipients", f"add {', '.join(missing)}: every other member receives it")
        )
    if payload.case != request.case:
        errors.append(FieldError("/payload/case", f"must be the message's case {request.case}"))
    if payload.event not in network.events:
        errors.append(
            FieldError("/payload/event", f"{network.name} does not share {payload.event.value}")
        )
    if errors:
        raise RequestError("the case update does not fit its network", errors=errors)


def sign_submission(
    request: SubmitMessage,
    payload_model: BaseModel,
    *,
    config: NodeConfig,
    signer: NodeSigner,
    submitted_by: str | None,
) -> SignedSubmission:
    """Fill in the header, sign, and compute the digest and the response deadline."""
    created_at = utc_now()
    if request.expires_at is not None and request.expires_at <= created_at:
        raise RequestError(
            "the message would already be expired",
            errors=[FieldError("/expires_at", "must be in the future")],
        )
    header = Header.model_validate(
        {
            "id": uuid4(),
            "type": request.type,
            "schema": schema_ref(request.type),
            "sender": config.node_id,
            "recipients": request.recipients,
            "case": request.case,
            "in_reply_to": request.in_reply_to,
            "created_at": created_at,
            "expires_at": request.expires_at,
            "priority": request.priority,
            "handling": request.handling,
        }
    )
    envelope, digest = signer.sign_envelope_with_digest(header, request.payload)
    body = encode_envelope(envelope)
    if len(body) > MAX_ENVELOPE_BYTES:
        raise RequestError(
            f"the signed message would be {len(body)} bytes, over {MAX_ENVELOPE_BYTES}",
            code="request.too_large",
        )
    directly = getattr(payload_model, "directly_accessible", None)
    hints = {"directly_accessible": bool(directly)} if directly is not None else {}
    record = OutgoingRecord(
        id=header.id,
        type=header.type.value,
        case=header.case,
        in_reply_to=header.in_reply_to,
        recipients=tuple(header.recipients),
        created_at=header.created_at,
        respond_by=respond_by(header.type, header.priority, header.created_at, **hints),
        envelope=body,
        digest=digest,
        submitted_by=submitted_by,
        expires_at=header.expires_at,
    )
    return SignedSubmission(record=record, envelope=envelope, header=header)
