"""Subjects of a request: natural persons (names in Latin letters and in the original script,
aliases, birth, nationality, identity documents) and legal persons (register data, seat).

A subject may carry a `ref` (e.g. "S1") by which assets name their holders.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from exchange.model.base import NotBefore, Part, Rule, RuledPart, UniqueItems
from exchange.model.parts import Address
from exchange.model.values import (
    CountryCode,
    Date,
    Line,
    LocalRef,
    PartialDate,
    ScriptCode,
    ShortLine,
    Text,
)

MAX_SUBJECTS = 50


class SubjectRole(StrEnum):
    SUSPECT = "suspect"
    ACCUSED = "accused"
    CONVICTED = "convicted"
    OWNER = "owner"
    BENEFICIAL_OWNER = "beneficial-owner"
    NOMINEE = "nominee"
    THIRD_PARTY = "third-party"
    ASSOCIATE = "associate"


class Sex(StrEnum):
    FEMALE = "female"
    MALE = "male"
    UNKNOWN = "unknown"


class PersonName(Part):
    """A person's name in Latin letters, as in the passport or the transliteration used."""

    family_name: Line = Field(
        description="Family name(s) (surname).",
        examples=["Petrović", "Țurcanu", "Abdirakhmanov"],
    )
    given_names: Line = Field(description="Given name(s).", examples=["Dragan", "Ion", "Nurlan"])
    patronymic: Line | None = Field(
        default=None,
        description="Patronymic or father's name, where the naming custom has one.",
        examples=["Serikovich"],
    )


class ScriptName(PersonName):
    """A person's name as written in its original script (e.g. Cyrillic)."""

    script: ScriptCode = Field(description="ISO 15924 script.", examples=["Cyrl"])


class NameKind(StrEnum):
    ALIAS = "alias"
    MAIDEN_NAME = "maiden-name"
    FORMER_NAME = "former-name"
    NICKNAME = "nickname"
    OTHER_SPELLING = "other-spelling"


class AliasName(PersonName):
    """Another name the person uses or used."""

    kind: NameKind = Field(description="What kind of other name.", examples=["other-spelling"])
    script: ScriptCode = Field(
        default="Latn", description="ISO 15924 script of this name.", examples=["Latn", "Cyrl"]
    )


class IdentityDocumentKind(StrEnum):
    PASSPORT = "passport"
    NATIONAL_ID_CARD = "national-id-card"
    RESIDENCE_PERMIT = "residence-permit"
    DRIVING_LICENCE = "driving-licence"
    PERSONAL_NUMBER = "personal-number"
    TAX_NUMBER = "tax-number"
    OTHER = "other"


class IdentityDocument(RuledPart):
    """An identity document or a personal identification number (e.g. JMBG, IDNP, IIN)."""

    RULES: ClassVar[tuple[Rule, ...]] = (NotBefore("issued_on", "expires_on"),)

    kind: IdentityDocumentKind = Field(description="What it is.", examples=["passport"])
    number: ShortLine = Field(
        description="Its number, as printed.", examples=["BA1234567", "790305300123"]
    )
    issuing_country: CountryCode = Field(description="Issuing state.", examples=["MD"])
    issuing_authority: Line | None = Field(
        default=None, description="Issuing authority.", examples=["ASP, Chișinău"]
    )
    issued_on: Date | None = Field(default=None, description="Date of issue.")
    expires_on: Date | None = Field(default=None, description="Date of expiry.")


class BirthPlace(Part):
    """Where a person was born."""

    locality: Line = Field(description="City, town or village.", examples=["Shkodër", "Бельцы"])
    region: Line | None = Field(default=None, description="Region or district.")
    country: CountryCode = Field(description="Country (as it is today).", examples=["AL"])


class NaturalPerson(Part):
    """A natural person concerned by the request."""

    kind: Literal["natural-person"] = Field(description="Always 'natural-person'.")
    ref: LocalRef | None = Field(default=None, description="Label for references, e.g. 'S1'.")
    role: SubjectRole = Field(description="The person's role in the matter.", examples=["suspect"])
    name: PersonName = Field(description="Name in Latin letters.")
    name_original: ScriptName | None = Field(
        default=None, description="Name in the original script, if not Latin."
    )
    aliases: list[AliasName] = Field(
        default_factory=list, max_length=20, description="Other names and spellings."
    )
    sex: Sex | None = Field(default=None, description="Sex.", examples=["male"])
    date_of_birth: PartialDate | None = Field(default=None, description="Date of birth.")
    place_of_birth: BirthPlace | None = Field(default=None, description="Place of birth.")
    nationalities: Annotated[list[CountryCode], UniqueItems()] = Field(
        default_factory=list,
        max_length=5,
        description="Nationalities.",
        examples=[["MD", "RO"]],
    )
    identity_documents: list[IdentityDocument] = Field(
        default_factory=list, max_length=10, description="Identity documents and numbers."
    )
    addresses: list[Address] = Field(
        default_factory=list, max_length=5, description="Known addresses, most recent first."
    )
    occupation: Line | None = Field(
        default=None, description="Occupation or position.", examples=["Customs officer"]
    )
    distinctive_marks: Text | None = Field(
        default=None,
        description="Physical description and distinctive marks.",
        examples=["Scar above the left eyebrow; tattoo of an eagle on the right forearm."],
    )
    remarks: Text | None = Field(default=None, description="Anything else about the person.")


class OriginalName(Part):
    """A name as written in its original script."""

    script: ScriptCode = Field(description="ISO 15924 script.", examples=["Cyrl"])
    text: Line = Field(description="The name.", examples=["ТОО «Дала Капитал»"])


class LegalPerson(Part):
    """A company, foundation or other legal person concerned by the request."""

    kind: Literal["legal-person"] = Field(description="Always 'legal-person'.")
    ref: LocalRef | None = Field(default=None, description="Label for references, e.g. 'S2'.")
    role: SubjectRole = Field(description="Its role in the matter.", examples=["owner"])
    name: Line = Field(
        description="Registered name, in Latin letters.", examples=["Adriatik Invest SH.P.K."]
    )
    name_original: OriginalName | None = Field(
        default=None, description="Registered name in the original script, if not Latin."
    )
    legal_form: ShortLine | None = Field(
        default=None, description="Legal form.", examples=["SH.P.K.", "d.o.o.", "S.R.L.", "ТОО"]
    )
    registration_number: ShortLine | None = Field(
        default=None,
        description="Number in the business register (NUIS, matični broj, IDNO, BIN ...).",
        examples=["L81712033K", "1012600012345"],
    )
    registration_country: CountryCode = Field(description="State of registration.", examples=["AL"])
    business_register: Line | None = Field(
        default=None,
        description="The register.",
        examples=["Qendra Kombëtare e Biznesit", "Agenția Servicii Publice"],
    )
    tax_number: ShortLine | None = Field(
        default=None, description="Tax identification number.", examples=["108765432"]
    )
    seat: Address | None = Field(default=None, description="Registered seat.")
    incorporated_on: Date | None = Field(default=None, description="Date of incorporation.")
    beneficial_owners: Annotated[list[LocalRef], UniqueItems()] = Field(
        default_factory=list,
        max_length=20,
        description="Refs of the subjects known to be its beneficial owners.",
        examples=[["S1"]],
    )
    remarks: Text | None = Field(default=None, description="Anything else about it.")


Subject = Annotated[NaturalPerson | LegalPerson, Field(discriminator="kind")]
"""A natural or a legal person, told apart by `kind`."""
