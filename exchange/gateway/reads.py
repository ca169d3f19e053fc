"""The audit of reads: one entry per call that hands messages or case updates to a client.

A page of the inbox, a poll of case updates or one batch of the update stream is written
as ONE entry naming the calling token, with every message handed out in `detail.ids` (in
the order sent) and the cases they belong to in `detail.cases`, so a page of 500 costs one
entry, not 500. Fetching one message by its id names it in the entry's own `message_id`,
`case` and `digest`. Nothing is written for an empty page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from aiohttp import web

from exchange.audit.entries import AuditEvent, EntryFields
from exchange.gateway import keys


def read_entry(
    request: web.Request,
    event: AuditEvent,
    ids: Sequence[UUID | str],
    cases: Sequence[str],
    detail: Mapping[str, Any] | None = None,
) -> EntryFields:
    """The one entry of a call that handed out the messages `ids` (of `cases`)."""
    principal = request[keys.PRINCIPAL]
    return EntryFields.build(
        event,
        actor=principal.token_id,
        role=principal.role.value,
        detail={
            **(detail or {}),
            "count": len(ids),
            "ids": [str(i) for i in ids],
            "cases": sorted(set(cases)),
        },
    )


async def audit_read(
    request: web.Request,
    event: AuditEvent,
    ids: Sequence[UUID | str],
    cases: Sequence[str],
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Write the call's one entry, once it is durable; nothing when nothing was handed out."""
    if ids:
        await request.app[keys.AUDIT].enqueue(read_entry(request, event, ids, cases, detail))


async def audit_read_one(
    request: web.Request, event: AuditEvent, message_id: UUID, case: str, digest: str
) -> None:
    """Write the entry of a call that handed out one message, asked for by its id."""
    principal = request[keys.PRINCIPAL]
    await request.app[keys.AUDIT].append(
        event,
        actor=principal.token_id,
        role=principal.role.value,
        message_id=message_id,
        case=case,
        digest=digest,
    )
