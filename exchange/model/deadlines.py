"""Legal deadlines: when an answer to a request is due, from its type and urgency, in one table.

The gateway stores `respond_by` with each request and auditors list overdue ones. Rows marked
`statutory=False` are this network's own targets where the law sets no fixed period.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from exchange.model.common import MessageType, Priority


@dataclass(frozen=True, slots=True)
class Deadline:
    """How long the recipient has to answer one kind of request, and on what authority."""

    type: MessageType
    priority: Priority
    directly_accessible: bool | None  # None: the row applies either way
    period: timedelta
    basis: str
    statutory: bool = True


DEADLINES: tuple[Deadline, ...] = (
    Deadline(
        MessageType.ASSET_INQUIRY,
        Priority.URGENT,
        True,
        timedelta(hours=8),
        "Directive (EU) 2023/977 art. 5(1)(a): urgent, directly accessible information",
    ),
    Deadline(
        MessageType.ASSET_INQUIRY,
        Priority.URGENT,
        False,
        timedelta(days=3),
        "Directive (EU) 2023/977 art. 5(1)(b): urgent, indirectly accessible information",
    ),
    Deadline(
        MessageType.ASSET_INQUIRY,
        Priority.NORMAL,
        None,
        timedelta(days=7),
        "Directive (EU) 2023/977 art. 5(1)(c): all other requests",
    ),
    Deadline(
        MessageType.FREEZE_NOTICE,
        Priority.URGENT,
        None,
        timedelta(hours=48),
        "Regulation (EU) 2018/1805 art. 9(3): decision on recognition within 48 hours of "
        "receipt when immediate freezing is necessary",
    ),
    # Art. 9(1) sets no period for other freezing orders: "without delay and with the same
    # speed and priority as for similar domestic cases". Seven days, the non-urgent limit for
    # information requests, is the network's target so that a slow decision shows as overdue.
    Deadline(
        MessageType.FREEZE_NOTICE,
        Priority.NORMAL,
        None,
        timedelta(days=7),
        "Regulation (EU) 2018/1805 art. 9(1) (without delay): network target of 7 days",
        statutory=False,
    ),
    # No instrument sets a period for locating or provisionally arresting a person on request
    # (FD 2002/584 art. 17 governs the decision on surrender, after arrest). A person at large
    # may move on, so urgent support is due within 24 hours, other support within 7 days.
    Deadline(
        MessageType.EXTRADITION_SUPPORT,
        Priority.URGENT,
        None,
        timedelta(hours=24),
        "network target: urgent support to locate or arrest a wanted person",
        statutory=False,
    ),
    Deadline(
        MessageType.EXTRADITION_SUPPORT,
        Priority.NORMAL,
        None,
        timedelta(days=7),
        "network target: other extradition support",
        statutory=False,
    ),
)

RESPONSE_TYPES: Mapping[MessageType, MessageType] = {
    MessageType.ASSET_INQUIRY: MessageType.ASSET_INQUIRY_RESPONSE,
    MessageType.FREEZE_NOTICE: MessageType.FREEZE_DECISION,
    MessageType.EXTRADITION_SUPPORT: MessageType.EXTRADITION_SUPPORT_RESPONSE,
}
"""Each request type and the type of message that answers it."""


def deadline_for(
    type: MessageType | str, priority: Priority | str, *, directly_accessible: bool = False
) -> Deadline | None:
    """The table row that applies, or None when no answer is due (responses, case updates,
    receipts)."""
    kind, urgency = MessageType(type), Priority(priority)
    for row in DEADLINES:
        applies = row.directly_accessible in (None, directly_accessible)
        if row.type is kind and row.priority is urgency and applies:
            return row
    return None


def respond_by(
    type: MessageType | str,
    priority: Priority | str,
    created_at: datetime,
    *,
    directly_accessible: bool = False,
) -> datetime | None:
    """When the answer to a request created at `created_at` is due (UTC), or None.

    Periods run in calendar time from the request's creation, as Directive 2023/977 counts
    them (hours, and calendar days).
    """
    if created_at.tzinfo is None or created_at.utcoffset() is None:
        raise ValueError("created_at must be timezone-aware")
    row = deadline_for(type, priority, directly_accessible=directly_accessible)
    if row is None:
        return None
    return created_at.astimezone(UTC) + row.period
