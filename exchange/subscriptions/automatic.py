"""Automatic case updates: what a network learns when a freeze decision or an asset-inquiry
response on its case is sent or received.

Pure functions: which event a message means, the update's short summary (ids, counts and
amounts only; never names or other personal data), and its id, derived from the network and
the message so that emitting twice (a redelivery, a restart, or the hook and the inbox
follower both seeing the message) yields the same update, stored and published once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal
from uuid import UUID, uuid5

from pydantic import BaseModel

from exchange.config import NetworkConfig
from exchange.model.asset_inquiry_response import AssetInquiryResponse, InquiryOutcome
from exchange.model.case_update import CaseEvent, CaseUpdate
from exchange.model.common import MessageType
from exchange.model.envelope import Header
from exchange.model.freeze_decision import FreezeDecision, FreezeStatus

Direction = Literal["sent", "received"]

UPDATE_NAMESPACE = UUID("6f1d3c2e-8a47-5b0e-9c1a-2d7e4f5a6b80")
"""Namespace of automatic update ids (UUIDv5 of `<network>/<message id>`)."""


def automatic_update_id(network: str, message_id: UUID) -> UUID:
    return uuid5(UPDATE_NAMESPACE, f"{network}/{message_id}")


def should_emit(network: NetworkConfig, header: Header, node_id: str, direction: Direction) -> bool:
    """Whether this node emits the network's update for this message.

    The sender emits when it is a member; a receiving member emits only when the sender is
    not a member (who therefore cannot), so each message yields one update per network.
    """
    auto = network.auto_updates
    if not auto.enabled or header.type not in auto.message_types:
        return False
    if node_id not in network.members:
        return False
    if direction == "sent":
        return header.sender == node_id
    return header.sender not in network.members and node_id in header.recipients


def automatic_update(
    network: NetworkConfig, header: Header, payload: BaseModel | Mapping[str, Any]
) -> CaseUpdate | None:
    """The update for `network` of a freeze decision or asset-inquiry response, or None
    when the network does not share that event."""
    if header.type is MessageType.FREEZE_DECISION:
        decision = (
            payload
            if isinstance(payload, FreezeDecision)
            else FreezeDecision.model_validate(payload)
        )
        event, summary, extra = _freeze(header, decision)
    elif header.type is MessageType.ASSET_INQUIRY_RESPONSE:
        answer = (
            payload
            if isinstance(payload, AssetInquiryResponse)
            else AssetInquiryResponse.model_validate(payload)
        )
        event, summary, extra = _inquiry(header, answer)
    else:
        return None
    if event not in network.events:
        return None
    related = [header.id] + ([header.in_reply_to] if header.in_reply_to is not None else [])
    countries = list(dict.fromkeys(node[:2] for node in (header.sender, *header.recipients)))
    return CaseUpdate.model_validate(
        {
            "case": header.case,
            "network": network.name,
            "event": event.value,
            "summary": summary,
            "related_messages": [str(r) for r in related],
            "countries": countries,
            **extra,
        }
    )


def _freeze(header: Header, decision: FreezeDecision) -> tuple[CaseEvent, str, dict[str, Any]]:
    extra: dict[str, Any] = {"occurred_at": decision.decided_at}
    if decision.total_frozen is not None:
        extra["amount"] = decision.total_frozen.model_dump(mode="json")
    if decision.status is FreezeStatus.EXECUTED:
        items = len(decision.frozen)
        total = _money(extra.get("amount"))
        summary = (
            f"{header.sender} executed the freeze: {items} item{'s' if items != 1 else ''} "
            f"frozen{total}, at the request of {', '.join(header.recipients)}."
        )
        return CaseEvent.FROZEN, summary, extra
    summary = (
        f"{header.sender} decided on the freeze requested by {', '.join(header.recipients)}: "
        f"{decision.status.value}."
    )
    return CaseEvent.NOTE, summary, extra


def _inquiry(header: Header, answer: AssetInquiryResponse) -> tuple[CaseEvent, str, dict[str, Any]]:
    extra: dict[str, Any] = {}
    if answer.total_value is not None:
        extra["amount"] = answer.total_value.model_dump(mode="json")
    if answer.outcome in (InquiryOutcome.FOUND, InquiryOutcome.PARTIAL):
        found = sum(1 for f in answer.findings if f.status.value == "identified")
        summary = (
            f"{header.sender} answered the asset inquiry of {', '.join(header.recipients)}: "
            f"{answer.outcome.value}, {found} asset{'s' if found != 1 else ''} "
            f"identified{_money(extra.get('amount'))}."
        )
        return CaseEvent.ASSETS_IDENTIFIED, summary, extra
    summary = (
        f"{header.sender} answered the asset inquiry of {', '.join(header.recipients)}: "
        f"{answer.outcome.value}."
    )
    return CaseEvent.NOTE, summary, extra


def _money(amount: Any) -> str:
    if isinstance(amount, dict) and "amount" in amount and "currency" in amount:
        return f" (total {amount['currency']} {amount['amount']})"
    return ""
