"""`asset-inquiry`: a request to trace and identify assets, after Directive (EU) 2024/1260
art. 9 (exchange of information between asset recovery offices) and the time limits of
Directive (EU) 2023/977 art. 5.

It says who asks and on what legal basis, for which proceedings and offence, about whom, why
the requested state is concerned, which assets are sought and what is asked, and by when.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import Field, StrictBool

from exchange.model.assets import MAX_ASSETS, Asset, ReferencesResolve
from exchange.model.base import Part, Rule, RuledPart
from exchange.model.parts import (
    Authority,
    Contact,
    LegalReference,
    Offence,
    Proceedings,
    RelatedRequest,
)
from exchange.model.persons import MAX_SUBJECTS, Subject
from exchange.model.values import Date, Text


class QuestionTopic(StrEnum):
    OWNERSHIP = "ownership"
    BANK_ACCOUNTS = "bank-accounts"
    TRANSACTIONS = "transactions"
    REAL_ESTATE = "real-estate"
    VEHICLES = "vehicles"
    VESSELS = "vessels"
    COMPANIES = "companies"
    VIRTUAL_ASSETS = "virtual-assets"
    TAX_RECORDS = "tax-records"
    IDENTITY_AND_ADDRESS = "identity-and-address"
    OTHER = "other"


class Question(Part):
    """One question put to the requested office."""

    topic: QuestionTopic = Field(description="What the question is about.", examples=["ownership"])
    text: Text = Field(
        description="The question.",
        examples=["Which real estate is registered in the name of S1 or S2 since 2019?"],
    )


class AssetInquiry(RuledPart):
    """Asset-tracing request between asset recovery offices (Directive (EU) 2024/1260 art. 9).

    The header's priority says whether the request is urgent; `urgency_grounds` says why.
    Answers are due within the limits of Directive (EU) 2023/977 art. 5: 8 hours when urgent
    and the information is directly accessible, 3 days when urgent, 7 days otherwise.
    """

    RULES: ClassVar[tuple[Rule, ...]] = (
        ReferencesResolve("subjects", lambda inquiry: inquiry.assets_sought),
    )

    requesting_authority: Authority = Field(description="The office that asks.")
    contact: Contact = Field(description="Who handles the request at the requesting office.")
    legal_basis: list[LegalReference] = Field(
        min_length=1, max_length=10, description="Legal basis of the request."
    )
    proceedings: Proceedings = Field(description="The proceedings the request serves.")
    offence: Offence = Field(description="The offence investigated.")
    urgency_grounds: Text | None = Field(
        default=None,
        description="Why the request is urgent; required in practice when the header's "
        "priority is 'urgent'.",
        examples=["The suspect is selling the apartment; the notary deed is set for 3 April."],
    )
    directly_accessible: StrictBool = Field(
        default=False,
        description="The requesting office believes the information is directly accessible "
        "to the requested office (Directive (EU) 2023/977 art. 5(1)(a): 8 hours when urgent).",
        examples=[True],
    )
    subjects: list[Subject] = Field(
        min_length=1, max_length=MAX_SUBJECTS, description="Persons the inquiry is about."
    )
    link_to_requested_state: Text = Field(
        description="Why the requested state is believed to hold assets or information.",
        examples=["S1 made 14 transfers to an account with a bank in Chișinău in 2024."],
    )
    assets_sought: list[Asset] = Field(
        default_factory=list,
        max_length=MAX_ASSETS,
        description="Assets already known or suspected, to be confirmed or traced.",
    )
    questions: list[Question] = Field(
        min_length=1, max_length=30, description="What the requested office is asked."
    )
    requested_by: Date | None = Field(
        default=None,
        description="Date by which an answer is requested, if earlier than the legal limit.",
    )
    related_requests: Annotated[list[RelatedRequest], Field(max_length=20)] = Field(
        default_factory=list, description="Other requests in the same matter."
    )
    confidentiality: Text | None = Field(
        default=None,
        description="Confidentiality requirements, e.g. the subjects must not be alerted.",
        examples=["Do not contact the subjects or the banks' customers."],
    )
