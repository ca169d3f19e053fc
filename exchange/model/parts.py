"""Parts shared by several payloads: authorities and contacts, addresses, money, periods,
legal references, proceedings, the offence, related requests, sources, delays.

Requests and answers between authorities are built from these, so a partner implements each
part once.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import BeforeValidator, Field

from exchange.model.base import AnyPresent, NotBefore, Part, Rule, RuledPart, UniqueItems
from exchange.model.common import NodeId
from exchange.model.offences import OffenceCategory
from exchange.model.values import (
    Amount,
    CountryCode,
    CurrencyCode,
    Date,
    Email,
    LanguageCode,
    Line,
    MessageId,
    Phone,
    ShortLine,
    Text,
    json_integer,
)


class Money(Part):
    """An amount of money: a decimal string and its ISO 4217 currency (never a float)."""

    amount: Amount = Field(description="The amount, as a decimal string.", examples=["125000.00"])
    currency: CurrencyCode = Field(description="ISO 4217 currency code.", examples=["EUR", "MDL"])


class Period(RuledPart):
    """A span of days; either end may be open, not both."""

    RULES: ClassVar[tuple[Rule, ...]] = (AnyPresent(("start", "end")), NotBefore("start", "end"))

    start: Date | None = Field(default=None, description="First day.", examples=["2021-01-01"])
    end: Date | None = Field(default=None, description="Last day.", examples=["2024-06-30"])


class Address(Part):
    """A postal address or a place."""

    street: Line | None = Field(
        default=None,
        description="Street, number, building, apartment, as written locally.",
        examples=["Rruga e Kavajës 112, Ap. 7", "ул. Кнеза Милоша 14"],
    )
    locality: Line = Field(
        description="City, town or village.", examples=["Tiranë", "Chișinău", "Алматы"]
    )
    region: Line | None = Field(
        default=None, description="Region, district or province.", examples=["Qarku Durrës"]
    )
    postal_code: ShortLine | None = Field(
        default=None, description="Postal code.", examples=["1001", "MD-2001"]
    )
    country: CountryCode = Field(description="Country.", examples=["AL"])


class Contact(RuledPart):
    """A person to contact about the request; reachable by telephone or e-mail."""

    RULES: ClassVar[tuple[Rule, ...]] = (AnyPresent(("phone", "email")),)

    name: Line = Field(description="Full name.", examples=["Elira Dervishi"])
    role: Line | None = Field(
        default=None,
        description="Function or title.",
        examples=["Financial investigator", "Prosecutor"],
    )
    phone: Phone | None = Field(default=None, description="Telephone (E.164).")
    email: Email | None = Field(default=None, description="E-mail address.")
    languages: Annotated[list[LanguageCode], UniqueItems()] = Field(
        default_factory=list,
        max_length=6,
        description="Languages the contact works in (ISO 639-1).",
        examples=[["sq", "en"]],
    )


class AuthorityKind(StrEnum):
    ASSET_RECOVERY_OFFICE = "asset-recovery-office"
    ASSET_MANAGEMENT_OFFICE = "asset-management-office"
    FINANCIAL_INTELLIGENCE_UNIT = "financial-intelligence-unit"
    PROSECUTION_SERVICE = "prosecution-service"
    COURT = "court"
    POLICE = "police"
    CUSTOMS = "customs"
    TAX_AUTHORITY = "tax-authority"
    ANTI_CORRUPTION_AGENCY = "anti-corruption-agency"
    CENTRAL_AUTHORITY = "central-authority"
    MINISTRY_OF_JUSTICE = "ministry-of-justice"
    OTHER = "other"


class Authority(Part):
    """A national authority: who it is, where, and (when known) who handles the file."""

    name: Line = Field(
        description="Official name in the authority's language.",
        examples=["Prokuroria e Posaçme kundër Korrupsionit dhe Krimit të Organizuar"],
    )
    name_english: Line | None = Field(
        default=None,
        description="Name in English.",
        examples=["Special Prosecution Office against Corruption and Organised Crime"],
    )
    kind: AuthorityKind = Field(description="What kind of authority.", examples=["court"])
    country: CountryCode = Field(description="The authority's state.", examples=["AL"])
    node: NodeId | None = Field(
        default=None, max_length=15, description="Its node on this exchange, if it has one."
    )
    address: Address | None = Field(default=None, description="Postal address.")
    contact: Contact | None = Field(default=None, description="Person handling the file.")
    reference: ShortLine | None = Field(
        default=None,
        description="The authority's own file number.",
        examples=["SPAK-PP-112/2025"],
    )


class LegalReference(Part):
    """A legal instrument and, optionally, the provision meant."""

    instrument: Line = Field(
        description="The instrument: EU act, convention, treaty or national law.",
        examples=["Directive (EU) 2024/1260", "Council of Europe Convention CETS No. 198"],
    )
    provision: ShortLine | None = Field(
        default=None, description="Article, paragraph, point.", examples=["art. 9(2)"]
    )
    note: Line | None = Field(
        default=None, description="Anything the reader needs to know about it."
    )


class ProceedingsKind(StrEnum):
    ASSET_TRACING = "asset-tracing"
    CRIMINAL_INVESTIGATION = "criminal-investigation"
    PROSECUTION = "prosecution"
    TRIAL = "trial"
    CONFISCATION = "confiscation"
    NON_CONVICTION_BASED_CONFISCATION = "non-conviction-based-confiscation"
    ENFORCEMENT = "enforcement-of-judgment"


class Proceedings(Part):
    """The national proceedings a request serves."""

    kind: ProceedingsKind = Field(
        description="Nature and stage of the proceedings.", examples=["criminal-investigation"]
    )
    reference: ShortLine = Field(
        description="National file number.", examples=["Nr. 214/2025", "КТИ 123/25"]
    )
    authority: Line | None = Field(
        default=None,
        description="The authority conducting them, if not the sender.",
        examples=["Tužilaštvo za organizovani kriminal"],
    )
    opened_on: Date | None = Field(default=None, description="When they were opened.")
    description: Text | None = Field(default=None, description="Anything else about them.")


class Offence(Part):
    """The offence: listed categories, its nature and legal classification, the penalty."""

    categories: Annotated[list[OffenceCategory], UniqueItems()] = Field(
        default_factory=list,
        max_length=32,
        description="The listed offence categories that apply (FD 2002/584 art. 2(2), "
        "Reg. 2018/1805 art. 3(1)); empty when none applies.",
        examples=[["corruption", "laundering-of-the-proceeds-of-crime"]],
    )
    description: Text = Field(
        description="Nature and legal classification of the offence in free text.",
        examples=["Passive corruption of a public official and laundering of its proceeds."],
    )
    provisions: list[LegalReference] = Field(
        default_factory=list,
        max_length=10,
        description="Provisions of the issuing state's criminal law.",
    )
    maximum_penalty_years: (
        Annotated[int, Field(ge=0, le=99), BeforeValidator(json_integer)] | None
    ) = Field(
        default=None,
        description="Maximum custodial penalty in the issuing state, in years (99 for life). "
        "Listed categories bypass double criminality when it is at least 3.",
        examples=[12],
    )
    committed: Period | None = Field(default=None, description="When it was committed.")
    countries: Annotated[list[CountryCode], UniqueItems()] = Field(
        default_factory=list,
        max_length=20,
        description="Where it was committed, wholly or in part.",
        examples=[["AL", "IT"]],
    )
    estimated_proceeds: Money | None = Field(
        default=None, description="Estimated proceeds of the offence."
    )


class RelatedRequestKind(StrEnum):
    EUROPEAN_INVESTIGATION_ORDER = "european-investigation-order"
    EUROPEAN_ARREST_WARRANT = "european-arrest-warrant"
    MUTUAL_LEGAL_ASSISTANCE = "mutual-legal-assistance"
    FREEZING_ORDER = "freezing-order"
    CONFISCATION_ORDER = "confiscation-order"
    ASSET_INQUIRY = "asset-inquiry"
    JOINT_INVESTIGATION_TEAM = "joint-investigation-team"
    SIS_ALERT = "sis-alert"
    INTERPOL_NOTICE = "interpol-notice"
    OTHER = "other"


class RelatedRequest(Part):
    """Another request or instrument in the same matter (EIO, EAW, MLA, earlier inquiries)."""

    kind: RelatedRequestKind = Field(
        description="What it is.", examples=["mutual-legal-assistance"]
    )
    reference: ShortLine = Field(
        description="Its reference number.", examples=["MLA-AL-IT-2025/311"]
    )
    issued_on: Date | None = Field(default=None, description="When it was issued or sent.")
    issuing_authority: Line | None = Field(
        default=None, description="Who issued it.", examples=["Gjykata e Posaçme, Tiranë"]
    )
    country: CountryCode | None = Field(
        default=None, description="The state it was sent to.", examples=["IT"]
    )
    message_id: MessageId | None = Field(
        default=None, description="Its message id, if it travelled on this exchange."
    )


class SourceKind(StrEnum):
    BANK = "bank"
    BANK_ACCOUNT_REGISTER = "bank-account-register"
    LAND_REGISTRY = "land-registry"
    BUSINESS_REGISTER = "business-register"
    BENEFICIAL_OWNERSHIP_REGISTER = "beneficial-ownership-register"
    VEHICLE_REGISTER = "vehicle-register"
    SHIP_REGISTER = "ship-register"
    TAX_AUTHORITY = "tax-authority"
    VIRTUAL_ASSET_SERVICE_PROVIDER = "virtual-asset-service-provider"
    BLOCKCHAIN_ANALYSIS = "blockchain-analysis"
    POLICE_RECORDS = "police-records"
    CUSTOMS = "customs"
    OPEN_SOURCE = "open-source"
    OTHER = "other"


class Source(Part):
    """Where a piece of information comes from."""

    kind: SourceKind = Field(description="The kind of source.", examples=["land-registry"])
    name: Line = Field(description="Its name.", examples=["Agjencia Shtetërore e Kadastrës (ASHK)"])
    consulted_on: Date | None = Field(default=None, description="When it was consulted.")
    reference: ShortLine | None = Field(
        default=None, description="Extract or certificate number.", examples=["ASHK-2025-88412"]
    )


class Delay(Part):
    """A delayed answer: why and until when (Directive (EU) 2023/977 art. 5 requires delays
    to be announced, with their reasons and expected duration)."""

    reason: Text = Field(
        description="Why the answer is delayed.",
        examples=["Bank records requested; the bank answers within 10 working days."],
    )
    expected_by: Date = Field(description="When the answer is expected.")
