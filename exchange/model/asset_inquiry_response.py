"""`asset-inquiry-response`: the answer to an asset inquiry.

The outcome is found, not-found, partial, refused (with grounds, Directive (EU) 2023/977
art. 6) or delayed (with the reason and the expected date, which art. 5 requires to be
announced). Findings give each asset with its value and the sources consulted.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import Field, StrictBool

from exchange.model.assets import MAX_ASSETS, Asset, ReferencesResolve
from exchange.model.base import AbsentWhen, Part, RequiredWhen, Rule, RuledPart, UniqueItems
from exchange.model.parts import Authority, Contact, Delay, Money, Source
from exchange.model.persons import MAX_SUBJECTS, Subject
from exchange.model.values import Date, LocalRef, Text


class InquiryOutcome(StrEnum):
    FOUND = "found"
    NOT_FOUND = "not-found"
    PARTIAL = "partial"
    REFUSED = "refused"
    DELAYED = "delayed"


class InquiryRefusalGround(StrEnum):
    """Grounds to refuse information (after Directive (EU) 2023/977 art. 6(1))."""

    NOT_AVAILABLE = "information-not-available"
    NOT_COMPETENT = "not-competent"
    JUDICIAL_AUTHORISATION_REFUSED = "judicial-authorisation-refused"
    NATIONAL_SECURITY = "national-security"
    JEOPARDISES_INVESTIGATION = "jeopardises-investigation"
    ENDANGERS_PERSON = "endangers-a-person"
    DISPROPORTIONATE = "disproportionate"
    MINOR_OFFENCE = "minor-offence"
    THIRD_PARTY_CONSENT_REFUSED = "originator-consent-refused"
    INCOMPLETE_REQUEST = "incomplete-request"
    OTHER = "other"


class InquiryRefusal(Part):
    """Why the information is not given."""

    grounds: Annotated[list[InquiryRefusalGround], UniqueItems()] = Field(
        min_length=1, max_length=11, description="The grounds.", examples=[["national-security"]]
    )
    explanation: Text = Field(
        description="The reasons in the requested office's words.",
        examples=["The account is subject to a domestic investigation under seal."],
    )


class FindingStatus(StrEnum):
    IDENTIFIED = "identified"
    NOT_FOUND = "not-found"
    ALREADY_FROZEN = "already-frozen"
    ALREADY_CONFISCATED = "already-confiscated"
    TRANSFERRED = "transferred"
    ENCUMBERED = "encumbered"


class Finding(Part):
    """What was found about one asset."""

    status: FindingStatus = Field(description="What was found.", examples=["identified"])
    sought_ref: LocalRef | None = Field(
        default=None,
        description="Ref of the asset in the inquiry's assets_sought that this answers.",
        examples=["A1"],
    )
    asset: Asset = Field(description="The asset as identified (holders refer to subjects).")
    value: Money | None = Field(default=None, description="Value or balance found.")
    valued_on: Date | None = Field(default=None, description="Date of the value or balance.")
    sources: list[Source] = Field(
        min_length=1, max_length=10, description="Where the information comes from."
    )
    remarks: Text | None = Field(default=None, description="Anything else about the finding.")


class AssetInquiryResponse(RuledPart):
    """The requested office's answer to an asset inquiry (header.in_reply_to names it)."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        RequiredWhen("outcome", ("found", "partial"), non_empty=("findings",)),
        RequiredWhen("outcome", ("refused",), present=("refusal",)),
        RequiredWhen("outcome", ("delayed",), present=("delay",)),
        AbsentWhen("outcome", ("found", "not-found", "partial", "delayed"), ("refusal",)),
        ReferencesResolve("subjects", lambda answer: (f.asset for f in answer.findings)),
    )

    responding_authority: Authority = Field(description="The office that answers.")
    contact: Contact | None = Field(default=None, description="Who handled the inquiry.")
    outcome: InquiryOutcome = Field(description="The overall outcome.", examples=["partial"])
    refusal: InquiryRefusal | None = Field(
        default=None, description="Grounds, when the outcome is refused."
    )
    delay: Delay | None = Field(
        default=None, description="Reason and expected date, when the outcome is delayed."
    )
    subjects: list[Subject] = Field(
        default_factory=list,
        max_length=MAX_SUBJECTS,
        description="Subjects as identified by the requested office (new addresses, "
        "documents, companies); findings name their holders by these refs.",
    )
    findings: list[Finding] = Field(
        default_factory=list, max_length=MAX_ASSETS * 2, description="Assets found or checked."
    )
    total_value: Money | None = Field(
        default=None, description="Total estimated value of the assets identified."
    )
    usable_as_evidence: StrictBool = Field(
        default=False,
        description="Whether the information may be used as evidence without a further "
        "request for mutual legal assistance.",
        examples=[False],
    )
    further_steps: Text | None = Field(
        default=None,
        description="What the requesting office should do next (e.g. send a freezing order).",
        examples=["Send a freezing certificate to freeze the account before 30 April."],
    )
    remarks: Text | None = Field(default=None, description="Anything else.")
