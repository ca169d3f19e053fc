"""`extradition-support`: a request to help bring a wanted person to justice: locate them,
arrest them provisionally, confirm their identity, serve or obtain documents, allow transit.

Its content follows the European arrest warrant (Framework Decision 2002/584/JHA art. 8(1)):
the person's identity, the enforceable decision and who issued it, the offence and its legal
classification, the circumstances (time, place, degree of participation), the penalty imposed
or its range, and other consequences of the offence.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import Field, StrictBool

from exchange.model.base import AnyPresent, Part, Rule, RuledPart, UniqueItems
from exchange.model.parts import Authority, Contact, LegalReference, Offence, RelatedRequest
from exchange.model.persons import NaturalPerson
from exchange.model.values import Date, JsonInt, Line, LongText, ShortLine, Text


class DecisionKind(StrEnum):
    EUROPEAN_ARREST_WARRANT = "european-arrest-warrant"
    NATIONAL_ARREST_WARRANT = "national-arrest-warrant"
    DETENTION_ORDER = "detention-order"
    ENFORCEABLE_JUDGMENT = "enforceable-judgment"
    OTHER = "other"


class JudicialDecision(Part):
    """The enforceable decision the request rests on (art. 8(1)(c))."""

    kind: DecisionKind = Field(description="What it is.", examples=["national-arrest-warrant"])
    reference: ShortLine = Field(description="Its reference.", examples=["K.br. 112/2025"])
    issued_on: Date = Field(description="When it was issued.")
    issued_by: Line = Field(
        description="The judicial authority that issued it.",
        examples=["Viši sud u Beogradu, Posebno odeljenje za organizovani kriminal"],
    )
    final: StrictBool = Field(
        default=False, description="Whether it is final (not open to appeal).", examples=[True]
    )


class AlertSystem(StrEnum):
    SIS = "sis"
    INTERPOL_RED_NOTICE = "interpol-red-notice"
    INTERPOL_DIFFUSION = "interpol-diffusion"
    NATIONAL = "national"


class Alert(Part):
    """A wanted-person alert already issued."""

    system: AlertSystem = Field(description="Where.", examples=["interpol-red-notice"])
    reference: ShortLine = Field(description="Its reference.", examples=["A-3127/4-2025"])


class Participation(StrEnum):
    PERPETRATOR = "perpetrator"
    CO_PERPETRATOR = "co-perpetrator"
    ORGANISER = "organiser"
    INSTIGATOR = "instigator"
    ACCOMPLICE = "accomplice"
    MEMBER = "member"
    OTHER = "other"


class Circumstances(Part):
    """How the offence was committed (art. 8(1)(e))."""

    description: LongText = Field(
        description="The facts: time, place, what the person did.",
        examples=["On 14 May 2024 at the Batrovci border crossing the person ..."],
    )
    place: Line | None = Field(
        default=None, description="Main place of commission.", examples=["Batrovci, Šid"]
    )
    participation: Participation = Field(
        description="The person's degree of participation.", examples=["organiser"]
    )


class SentenceLength(Part):
    """A length of custodial sentence."""

    years: JsonInt = Field(default=0, ge=0, le=99, description="Years.", examples=[8])
    months: JsonInt = Field(default=0, ge=0, le=11, description="Months.", examples=[6])
    days: JsonInt = Field(default=0, ge=0, le=30, description="Days.", examples=[0])


class Penalty(RuledPart):
    """The penalty imposed by a final judgment, or the range the law prescribes (art. 8(1)(f))."""

    RULES: ClassVar[tuple[Rule, ...]] = (AnyPresent(("imposed", "maximum", "life_imprisonment")),)

    imposed: SentenceLength | None = Field(default=None, description="Sentence imposed.")
    remaining: SentenceLength | None = Field(default=None, description="Part still to serve.")
    minimum: SentenceLength | None = Field(default=None, description="Prescribed minimum.")
    maximum: SentenceLength | None = Field(default=None, description="Prescribed maximum.")
    life_imprisonment: StrictBool | None = Field(
        default=None, description="Life imprisonment imposed or prescribed.", examples=[False]
    )


class SupportKind(StrEnum):
    LOCATE = "locate"
    PROVISIONAL_ARREST = "provisional-arrest"
    CONFIRM_IDENTITY = "confirm-identity"
    SERVE_DOCUMENTS = "serve-documents"
    OBTAIN_DOCUMENTS = "obtain-documents"
    TRANSIT = "transit"
    SURRENDER = "surrender"


class ExtraditionSupport(RuledPart):
    """A request for support in extradition or surrender (content after FD 2002/584 art. 8(1))."""

    issuing_authority: Authority = Field(description="The judicial authority that asks (8(1)(b)).")
    contact: Contact = Field(description="Who handles the request.")
    legal_basis: list[LegalReference] = Field(
        min_length=1,
        max_length=10,
        description="Legal basis: a framework decision, the European Convention on Extradition, "
        "a bilateral treaty.",
    )
    person: NaturalPerson = Field(description="The wanted person: identity, aliases, marks.")
    decision: JudicialDecision = Field(description="The enforceable decision.")
    alerts: list[Alert] = Field(
        default_factory=list, max_length=10, description="Alerts already issued."
    )
    offence: Offence = Field(description="Nature and legal classification of the offence.")
    circumstances: Circumstances = Field(description="Time, place, degree of participation.")
    penalty: Penalty = Field(description="Penalty imposed or prescribed.")
    other_consequences: Text | None = Field(
        default=None,
        description="Other consequences of the offence, if possible (art. 8(1)(g)).",
        examples=["Confiscation of EUR 2.1 million ordered against the person."],
    )
    support_requested: Annotated[list[SupportKind], UniqueItems()] = Field(
        min_length=1,
        max_length=7,
        description="What the requested authority is asked to do.",
        examples=[["locate", "provisional-arrest"]],
    )
    whereabouts: Text | None = Field(
        default=None,
        description="What is known of the person's whereabouts and travel.",
        examples=["Believed to live with his sister in Bălți since January 2026."],
    )
    warnings: Text | None = Field(
        default=None,
        description="Risks for officers: weapons, violence, risk of flight or suicide.",
        examples=["Known to carry a firearm."],
    )
    related_requests: list[RelatedRequest] = Field(
        default_factory=list, max_length=20, description="Related requests."
    )
