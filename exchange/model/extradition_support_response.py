"""`extradition-support-response`: what the requested authority did about an extradition
support request: each support asked for and its result, the person's location or custody,
or the refusal or delay and its reasons.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import Field, StrictBool

from exchange.model.base import AbsentWhen, Part, RequiredWhen, Rule, RuledPart, UniqueItems
from exchange.model.extradition_support import SupportKind
from exchange.model.parts import Address, Authority, Contact, Delay
from exchange.model.values import Date, Line, Text, Timestamp


class SupportOutcome(StrEnum):
    COMPLETED = "completed"
    PARTIAL = "partial"
    IN_PROGRESS = "in-progress"
    REFUSED = "refused"
    DELAYED = "delayed"


class SupportStatus(StrEnum):
    DONE = "done"
    IN_PROGRESS = "in-progress"
    NOT_POSSIBLE = "not-possible"
    REFUSED = "refused"


class SupportResult(Part):
    """The result of one support asked for."""

    support: SupportKind = Field(description="The support asked for.", examples=["locate"])
    status: SupportStatus = Field(description="Its result.", examples=["done"])
    completed_at: Timestamp | None = Field(default=None, description="When it was done.")
    details: Text | None = Field(
        default=None,
        description="Details.",
        examples=["Located at his sister's address; under discreet surveillance."],
    )


class Custody(Part):
    """The person's provisional arrest and what follows."""

    arrested_at: Timestamp = Field(description="When the person was arrested.")
    held_at: Line = Field(
        description="Where the person is held.", examples=["Penitenciarul nr. 13, Chișinău"]
    )
    detained_until: Date | None = Field(default=None, description="Detention ordered until.")
    next_hearing_on: Date | None = Field(default=None, description="Next court hearing.")
    consents_to_surrender: StrictBool | None = Field(
        default=None, description="Whether the person consents to surrender.", examples=[False]
    )
    documents_due_by: Date | None = Field(
        default=None,
        description="Date by which the formal extradition request must arrive "
        "(e.g. 18 or 40 days after arrest, European Convention on Extradition art. 16(4)).",
    )


class ExtraditionRefusalGround(StrEnum):
    OWN_NATIONAL = "own-national"
    POLITICAL_OFFENCE = "political-offence"
    MILITARY_OFFENCE = "military-offence"
    NE_BIS_IN_IDEM = "ne-bis-in-idem"
    STATUTE_OF_LIMITATIONS = "statute-of-limitations"
    AMNESTY = "amnesty"
    DEATH_PENALTY = "death-penalty"
    FUNDAMENTAL_RIGHTS = "fundamental-rights"
    INSUFFICIENT_INFORMATION = "insufficient-information"
    OTHER = "other"


class ExtraditionRefusal(Part):
    """Why the support is refused."""

    grounds: Annotated[list[ExtraditionRefusalGround], UniqueItems()] = Field(
        min_length=1, max_length=10, description="The grounds.", examples=[["own-national"]]
    )
    explanation: Text = Field(description="The reasons.")


class ExtraditionSupportResponse(RuledPart):
    """The answer to an extradition support request (header.in_reply_to names it)."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        RequiredWhen("outcome", ("completed", "partial", "in-progress"), non_empty=("results",)),
        RequiredWhen("outcome", ("refused",), present=("refusal",)),
        RequiredWhen("outcome", ("delayed",), present=("delay",)),
        AbsentWhen("outcome", ("completed", "partial", "in-progress", "delayed"), ("refusal",)),
    )

    responding_authority: Authority = Field(description="The authority that answers.")
    contact: Contact | None = Field(default=None, description="Who handles the matter.")
    outcome: SupportOutcome = Field(description="The overall outcome.", examples=["completed"])
    results: list[SupportResult] = Field(
        default_factory=list, max_length=7, description="Result of each support asked for."
    )
    located: StrictBool | None = Field(
        default=None, description="Whether the person was located.", examples=[True]
    )
    location: Address | None = Field(default=None, description="Where the person was found.")
    identity_confirmed: StrictBool | None = Field(
        default=None, description="Whether the identity was confirmed.", examples=[True]
    )
    custody: Custody | None = Field(default=None, description="Arrest and detention.")
    refusal: ExtraditionRefusal | None = Field(default=None, description="Grounds, when refused.")
    delay: Delay | None = Field(default=None, description="Reason and date, when delayed.")
    remarks: Text | None = Field(default=None, description="Anything else.")
