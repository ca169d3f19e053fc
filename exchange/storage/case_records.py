"""The records of case updates as a node keeps them, and the JSON view subscribers receive.

A `CaseEventRecord` is one signed case update this node holds (received from a network
member, or published by this node); its `cursor` is its position in the node's events
table, the durable cursor of the SSE stream and of polling.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import orjson

from exchange.model.common import format_utc
from exchange.model.envelope import NAMED_RECIPIENTS_ONLY

_RESTRICTED = frozenset(t.value for t in NAMED_RECIPIENTS_ONLY)

Direction = Literal["in", "out"]


@dataclass(frozen=True, slots=True)
class NewCaseEvent:
    """A verified (or locally signed) case update, ready to be stored once."""

    id: UUID
    network: str
    case: str
    event: str
    sender: str
    direction: Direction
    digest: str
    created_at: datetime
    received_at: datetime
    envelope: bytes

    def stored_as(self, cursor: int) -> CaseEventRecord:
        fields = {name: getattr(self, name) for name in NewCaseEvent.__dataclass_fields__}
        return CaseEventRecord(**fields, cursor=cursor)


@dataclass(frozen=True, slots=True)
class CaseEventRecord(NewCaseEvent):
    """A stored case update; `cursor` orders the node's events, oldest first."""

    cursor: int

    def view(self) -> dict[str, Any]:
        """The document a subscriber receives (SSE data, polling item, webhook body)."""
        envelope = orjson.loads(self.envelope)
        return {
            "cursor": self.cursor,
            "id": str(self.id),
            "network": self.network,
            "case": self.case,
            "event": self.event,
            "sender": self.sender,
            "direction": self.direction,
            "digest": self.digest,
            "created_at": format_utc(self.created_at),
            "received_at": format_utc(self.received_at),
            "update": envelope["payload"],
            "envelope": envelope,
        }


def named_recipients_only(envelope: bytes) -> bool:
    """Whether a stored update is labelled TLP:RED or TLP:AMBER+STRICT. None is stored any
    more (they are refused at every door); one kept from before is never handed out."""
    header = orjson.loads(envelope).get("header") if envelope else None
    handling = header.get("handling") if isinstance(header, dict) else None
    return isinstance(handling, dict) and handling.get("tlp") in _RESTRICTED


@dataclass(frozen=True, slots=True)
class Stored:
    """What storing an update did: its cursor, whether it is new, and the digest held."""

    cursor: int
    new: bool
    digest: str


@dataclass(frozen=True, slots=True)
class WebhookJob:
    """One update owed to one webhook, with the attempts made so far."""

    webhook: str
    attempts: int
    record: CaseEventRecord
