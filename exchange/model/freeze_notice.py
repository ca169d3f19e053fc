"""`freeze-notice`: a freezing order sent for recognition and execution, after the freezing
certificate of Regulation (EU) 2018/1805 (Annex I).

Like the certificate it names the issuing, validating and executing authorities, the urgency
and its grounds (art. 9(3): decision within 48 hours), the property (a sum of money, specific
items, or property of equivalent value), the persons affected, the facts and the offence (the
32 listed categories and free text), confidentiality, and related requests.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from exchange.model.assets import MAX_ASSETS, Asset, ReferencesResolve
from exchange.model.base import Part, RequiredWhen, Rule, RuledPart
from exchange.model.parts import (
    Authority,
    Contact,
    LegalReference,
    Money,
    Offence,
    Proceedings,
    RelatedRequest,
)
from exchange.model.persons import MAX_SUBJECTS, Subject
from exchange.model.values import CountryCode, Date, LongText, ShortLine, Text


class FreezingPurpose(StrEnum):
    SUBSEQUENT_CONFISCATION = "subsequent-confiscation"
    RESTITUTION_TO_VICTIM = "restitution-to-victim"
    EVIDENCE_AND_CONFISCATION = "evidence-and-confiscation"


class FreezingOrder(Part):
    """The national freezing order the notice asks to be recognised."""

    reference: ShortLine = Field(description="Its reference.", examples=["Nr. 87/2026 Vendim"])
    issued_on: Date = Field(description="When it was issued.")
    purpose: FreezingPurpose = Field(
        description="Why the property is frozen.", examples=["subsequent-confiscation"]
    )
    summary: Text | None = Field(
        default=None,
        description="The order's operative part, in short.",
        examples=["Freezing of the bank accounts and the apartment listed, until judgment."],
    )


class PropertyBasis(StrEnum):
    """What the order concerns (the certificate's three options)."""

    SUM_OF_MONEY = "sum-of-money"
    SPECIFIC_ITEMS = "specific-items"
    EQUIVALENT_VALUE = "equivalent-value"


class PropertyToFreeze(RuledPart):
    """The property: a sum of money, specific items, or property of equivalent value."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        RequiredWhen("basis", ("sum-of-money", "equivalent-value"), present=("amount",)),
        RequiredWhen("basis", ("specific-items",), non_empty=("items",)),
    )

    basis: PropertyBasis = Field(
        description="What the order concerns.", examples=["specific-items"]
    )
    amount: Money | None = Field(
        default=None, description="The sum, or the value to reach with equivalent property."
    )
    items: list[Asset] = Field(
        default_factory=list,
        max_length=MAX_ASSETS,
        description="The items, with bank details, locations and wallet addresses.",
    )
    instructions: Text | None = Field(
        default=None,
        description="How to execute: e.g. freeze up to the amount across the accounts listed.",
    )


class OffenceGrounds(Part):
    """The grounds for freezing: the facts and the offence."""

    facts: LongText = Field(
        description="The circumstances: time, place, the persons' participation, and why the "
        "property is linked to the offence.",
        examples=["Between 2021 and 2024 S1, a customs officer at Durrës port, took bribes ..."],
    )
    offence: Offence = Field(description="The offence and its legal classification.")
    proceedings: Proceedings = Field(description="The proceedings in the issuing state.")


class FreezeNotice(RuledPart):
    """A freezing order for recognition and execution (Regulation (EU) 2018/1805, Annex I).

    When the header's priority is 'urgent', `urgency_grounds` must state why immediate
    freezing is needed; the executing authority then decides within 48 hours (art. 9(3)).
    """

    RULES: ClassVar[tuple[Rule, ...]] = (
        ReferencesResolve("persons", lambda notice: notice.property.items),
    )

    issuing_authority: Authority = Field(description="The authority that issued the order.")
    validating_authority: Authority | None = Field(
        default=None,
        description="The judge or court that validated it, if the issuing authority is not one "
        "(art. 2(8)(b)).",
    )
    executing_country: CountryCode = Field(
        description="The state asked to execute it.", examples=["RS"]
    )
    executing_authority: Authority | None = Field(
        default=None, description="The executing authority, if known."
    )
    contact: Contact = Field(description="Who to contact about execution.")
    legal_basis: list[LegalReference] = Field(
        min_length=1, max_length=10, description="Legal basis (the Regulation, a convention)."
    )
    order: FreezingOrder = Field(description="The freezing order.")
    urgency_grounds: Text | None = Field(
        default=None,
        description="Why immediate freezing is needed: grounds to believe the property will "
        "imminently be removed or destroyed (art. 9(3)).",
        examples=["The holder asked the bank on 2 March to transfer the balance to Dubai."],
    )
    property: PropertyToFreeze = Field(description="The property to freeze.")
    persons: list[Subject] = Field(
        min_length=1,
        max_length=MAX_SUBJECTS,
        description="Persons against whom the order is issued, owners, and third parties "
        "(role: suspect, owner, third-party ...).",
    )
    grounds: OffenceGrounds = Field(description="Facts and offence.")
    confidentiality: Text | None = Field(
        default=None,
        description="Whether and why the persons must not be informed yet (art. 32(2)).",
        examples=["Do not inform the persons before the searches of 14 April 2026."],
    )
    legal_remedies: Text | None = Field(
        default=None, description="Legal remedies available in the issuing state (art. 33)."
    )
    related_requests: list[RelatedRequest] = Field(
        default_factory=list,
        max_length=20,
        description="Related requests: EIO, EAW, mutual legal assistance, earlier notices.",
    )
