"""Legal deadlines: when an answer is due, by type and urgency, as auditors will check them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from exchange.model.common import MessageType, Priority
from exchange.model.deadlines import DEADLINES, RESPONSE_TYPES, deadline_for, respond_by

SENT = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kind", "priority", "direct", "due"),
    [
        # Directive (EU) 2023/977 art. 5(1)
        (MessageType.ASSET_INQUIRY, Priority.URGENT, True, timedelta(hours=8)),
        (MessageType.ASSET_INQUIRY, Priority.URGENT, False, timedelta(days=3)),
        (MessageType.ASSET_INQUIRY, Priority.NORMAL, False, timedelta(days=7)),
        (MessageType.ASSET_INQUIRY, Priority.NORMAL, True, timedelta(days=7)),
        # Regulation (EU) 2018/1805 art. 9(3), and the network target for art. 9(1)
        (MessageType.FREEZE_NOTICE, Priority.URGENT, False, timedelta(hours=48)),
        (MessageType.FREEZE_NOTICE, Priority.NORMAL, False, timedelta(days=7)),
        # network targets for extradition support
        (MessageType.EXTRADITION_SUPPORT, Priority.URGENT, False, timedelta(hours=24)),
        (MessageType.EXTRADITION_SUPPORT, Priority.NORMAL, True, timedelta(days=7)),
    ],
)
def test_requests_are_due_after_their_legal_period(
    kind: MessageType, priority: Priority, direct: bool, due: timedelta
) -> None:
    assert respond_by(kind, priority, SENT, directly_accessible=direct) == SENT + due


def test_an_urgent_inquiry_sent_at_night_is_due_the_next_morning() -> None:
    sent = datetime(2026, 3, 2, 23, 30, tzinfo=UTC)
    due = respond_by("asset-inquiry", "urgent", sent, directly_accessible=True)
    assert due == datetime(2026, 3, 3, 7, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "kind",
    [
        MessageType.ASSET_INQUIRY_RESPONSE,
        MessageType.FREEZE_DECISION,
        MessageType.EXTRADITION_SUPPORT_RESPONSE,
        MessageType.CASE_UPDATE,
        MessageType.RECEIPT,
    ],
)
def test_messages_that_answer_or_inform_have_no_deadline(kind: MessageType) -> None:
    for priority in Priority:
        assert respond_by(kind, priority, SENT) is None


def test_the_deadline_is_given_in_utc_whatever_the_sender_offset() -> None:
    chisinau = timezone(timedelta(hours=2))
    sent = datetime(2026, 3, 2, 16, 0, tzinfo=chisinau)
    due = respond_by(MessageType.FREEZE_NOTICE, Priority.URGENT, sent)
    assert due == datetime(2026, 3, 4, 14, 0, tzinfo=UTC)
    assert due is not None and due.utcoffset() == timedelta(0)


def test_a_naive_creation_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        respond_by(MessageType.ASSET_INQUIRY, Priority.NORMAL, datetime(2026, 3, 2, 14, 0))


def test_unknown_types_and_priorities_are_refused() -> None:
    with pytest.raises(ValueError):
        respond_by("wire-transfer", "normal", SENT)
    with pytest.raises(ValueError):
        respond_by("asset-inquiry", "whenever", SENT)


def test_every_request_type_has_its_response_type_and_a_deadline_for_each_priority() -> None:
    assert RESPONSE_TYPES == {
        MessageType.ASSET_INQUIRY: MessageType.ASSET_INQUIRY_RESPONSE,
        MessageType.FREEZE_NOTICE: MessageType.FREEZE_DECISION,
        MessageType.EXTRADITION_SUPPORT: MessageType.EXTRADITION_SUPPORT_RESPONSE,
    }
    for request in RESPONSE_TYPES:
        for priority in Priority:
            for direct in (False, True):
                assert deadline_for(request, priority, directly_accessible=direct) is not None
    assert {row.type for row in DEADLINES} == set(RESPONSE_TYPES)


def test_each_row_cites_its_basis_and_says_whether_the_law_fixes_it() -> None:
    statutory = {(r.type, r.priority, r.directly_accessible) for r in DEADLINES if r.statutory}
    assert statutory == {
        (MessageType.ASSET_INQUIRY, Priority.URGENT, True),
        (MessageType.ASSET_INQUIRY, Priority.URGENT, False),
        (MessageType.ASSET_INQUIRY, Priority.NORMAL, None),
        (MessageType.FREEZE_NOTICE, Priority.URGENT, None),
    }
    for row in DEADLINES:
        assert ("Directive" in row.basis or "Regulation" in row.basis) or not row.statutory
    freeze = deadline_for(MessageType.FREEZE_NOTICE, Priority.NORMAL)
    assert freeze is not None and "art. 9(1)" in freeze.basis and not freeze.statutory
