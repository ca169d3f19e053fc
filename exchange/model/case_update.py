"""`case-update`: news of a shared case for the prosecutor networks that follow it.

It names the case and the network, the event (opened, assets identified, frozen, confiscated,
returned, closed ...), a short summary, and the ids of the messages it relates to. It is
routed on `<network>.<case>.<event>`, so case and network use the routing-key-safe forms.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from exchange.model.base import Part, UniqueItems
from exchange.model.common import CaseRef, NetworkName
from exchange.model.parts import Money
from exchange.model.values import CountryCode, MessageId, Text, Timestamp


class CaseEvent(StrEnum):
    """What happened in the case. Values contain no dots: they are routing-key words."""

    OPENED = "opened"
    REQUEST_SENT = "request-sent"
    ASSETS_IDENTIFIED = "assets-identified"
    FROZEN = "frozen"
    UNFROZEN = "unfrozen"
    CONFISCATED = "confiscated"
    RETURNED = "returned"
    SUSPECT_LOCATED = "suspect-located"
    SUSPECT_ARRESTED = "suspect-arrested"
    SURRENDERED = "surrendered"
    CHARGED = "charged"
    JUDGMENT = "judgment"
    CLOSED = "closed"
    REOPENED = "reopened"
    NOTE = "note"


class CaseUpdate(Part):
    """An event in a case shared by a network, published to the network's members that
    follow the case (routing key `<network>.<case>.<event>`)."""

    case: CaseRef = Field(max_length=64, description="The case reference.")
    network: NetworkName = Field(
        max_length=32, description="The network the update is published to."
    )
    event: CaseEvent = Field(description="What happened.", examples=["frozen"])
    summary: Text = Field(
        description="What happened, for the network's prosecutors. No more personal data "
        "than they need.",
        examples=["Serbia froze EUR 312,400 on two accounts at the request of Albania."],
    )
    related_messages: Annotated[list[MessageId], UniqueItems()] = Field(
        default_factory=list,
        max_length=100,
        description="Ids of the messages this update relates to.",
    )
    occurred_at: Timestamp | None = Field(default=None, description="When it happened.")
    countries: Annotated[list[CountryCode], UniqueItems()] = Field(
        default_factory=list,
        max_length=20,
        description="States involved in this event.",
        examples=[["AL", "RS"]],
    )
    amount: Money | None = Field(
        default=None, description="Amount frozen, confiscated or returned, when relevant."
    )
