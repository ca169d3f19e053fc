"""Completing the audit record of messages accepted just before the node stopped.

Submitting commits the message to the store, then appends its `accepted` entry to the
audit log: two files, so a node killed between the two commits keeps (and will deliver) a
message its audit log does not mention. At start-up the newest stored messages are
compared with the newest `accepted` entries; each one missing is appended then, marked
`"recovered": true` in its detail, with the token that submitted it as the actor.
"""

from __future__ import annotations

from datetime import datetime

import orjson

from exchange.audit.entries import AuditEvent
from exchange.audit.log import AuditLog
from exchange.config import NodeConfig
from exchange.gateway.store import MessageStore
from exchange.log import get_logger

_log = get_logger(__name__)

RECENT_MESSAGES = 1_000
"""How many of the newest messages are checked: more than can be between the two commits."""
SCAN_ENTRIES = 20_000
"""How many of the newest audit entries are searched for their `accepted` entries."""


async def recover_accepted(config: NodeConfig, store: MessageStore, audit: AuditLog) -> int:
    """Append the `accepted` entries a crash left out; return how many were appended."""
    size = audit.head.size
    start = max(0, size - SCAN_ENTRIES)
    recent = await audit.entries(start, size - start)
    seen = {e.message_id for e in recent if e.event == AuditEvent.ACCEPTED}
    # A message older than the scanned window may have its entry further back: only
    # messages created after the window began are judged (all of them, if the log is short).
    since: datetime | None = recent[0].time if start > 0 and recent else None
    roles = {token.id: token.role.value for token in config.tokens}
    added = 0
    for record in reversed(await store.recent_outgoing(RECENT_MESSAGES)):
        if str(record.id) in seen or (since is not None and record.created_at < since):
            continue
        await audit.append(
            AuditEvent.ACCEPTED,
            actor=record.submitted_by,
            role=roles.get(record.submitted_by or ""),
            message_id=record.id,
            case=record.case,
            digest=record.digest,
            envelope=orjson.loads(record.envelope),
            detail={"recovered": True},
        )
        added += 1
    if added:
        _log.warning("audit.accepted_recovered", node=config.node_id, messages=added)
    return added
