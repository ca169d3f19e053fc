"""Assets sought, found, or to be frozen: bank accounts (IBAN), virtual assets (chain, address,
custodian, transactions), real estate, vehicles, vessels, company interests, other property.

Every asset may carry a `ref` (e.g. "A1") and names its holders by the `ref` of a subject of
the same payload; `ReferencesResolve` checks that those references point somewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, Field
from typing_extensions import TypeAliasType

from exchange.model.base import (
    AnyPresent,
    NamedString,
    NotBefore,
    Part,
    PatternWhen,
    Rule,
    RuledPart,
    UniqueItems,
)
from exchange.model.parts import Address, Money, Period
from exchange.model.persons import LegalPerson, NaturalPerson
from exchange.model.values import (
    Amount,
    Bic,
    CountryCode,
    CurrencyCode,
    Date,
    Iban,
    Line,
    LocalRef,
    ShortLine,
    Slug,
    Text,
    TokenAmount,
    json_integer,
)

MAX_ASSETS = 100

_BASE58 = "1-9A-HJ-NP-Za-km-z"
_BECH32 = "02-9ac-hj-np-z"
_EVM_ADDRESS = r"^0x[0-9a-fA-F]{40}$"
_EVM_TX = r"^0x[0-9a-fA-F]{64}$"
_HEX_TX = r"^[0-9a-fA-F]{64}$"

ADDRESS_PATTERNS = {
    "bitcoin": rf"^(bc1[{_BECH32}]{{11,71}}|[13][{_BASE58}]{{25,34}})$",
    "litecoin": rf"^(ltc1[{_BECH32}]{{11,71}}|[LM3][{_BASE58}]{{26,33}})$",
    "ethereum": _EVM_ADDRESS,
    "bnb-smart-chain": _EVM_ADDRESS,
    "polygon": _EVM_ADDRESS,
    "arbitrum": _EVM_ADDRESS,
    "tron": rf"^T[{_BASE58}]{{33}}$",
    "solana": rf"^[{_BASE58}]{{32,44}}$",
}
"""Address formats of common chains; other chains are checked only by the generic pattern."""

TX_HASH_PATTERNS = {
    "bitcoin": _HEX_TX,
    "litecoin": _HEX_TX,
    "tron": _HEX_TX,
    "ethereum": _EVM_TX,
    "bnb-smart-chain": _EVM_TX,
    "polygon": _EVM_TX,
    "arbitrum": _EVM_TX,
    "solana": rf"^[{_BASE58}]{{64,88}}$",
}

WalletAddress = TypeAliasType(
    "WalletAddress",
    Annotated[
        str,
        NamedString(
            "WalletAddress",
            description="An address on a blockchain, as the chain writes it.",
            min_length=20,
            max_length=128,
            pattern=r"^[A-Za-z0-9:]{20,128}$",
            examples=["bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"],
        ),
    ],
)
TxHash = TypeAliasType(
    "TxHash",
    Annotated[
        str,
        NamedString(
            "TxHash",
            description="A transaction hash or signature, as the chain's explorers show it.",
            min_length=32,
            max_length=130,
            pattern=r"^[A-Za-z0-9]{32,130}$",
        ),
    ],
)
TokenSymbol = TypeAliasType(
    "TokenSymbol",
    Annotated[
        str,
        NamedString(
            "TokenSymbol",
            description="The asset's ticker symbol.",
            max_length=16,
            pattern=r"^[A-Z0-9][A-Za-z0-9.-]{0,15}$",
            examples=["BTC", "USDT", "ETH"],
        ),
    ],
)


class AssetBase(RuledPart):
    """What every asset says: a label, its holders, a description, an estimated value."""

    ref: LocalRef | None = Field(default=None, description="Label for references, e.g. 'A1'.")
    holders: Annotated[list[LocalRef], UniqueItems()] = Field(
        default_factory=list,
        max_length=20,
        description="Refs of the subjects (of this payload) who hold or control it.",
        examples=[["S1"]],
    )
    holder_names: list[Line] = Field(
        default_factory=list,
        max_length=20,
        description="Holders who are not among the subjects, by name.",
        examples=[["Sokol Hoxha"]],
    )
    description: Text | None = Field(default=None, description="Anything else about it.")
    estimated_value: Money | None = Field(default=None, description="Estimated value.")


class BankAccount(AssetBase):
    """A bank or payment account: IBAN, or a national account number with the bank."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        AnyPresent(("iban", "account_number")),
        NotBefore("opened_on", "closed_on"),
    )

    kind: Literal["bank-account"] = Field(description="Always 'bank-account'.")
    iban: Iban | None = Field(default=None, description="IBAN, electronic form.")
    account_number: ShortLine | None = Field(
        default=None, description="Account number where there is no IBAN.", examples=["40817810"]
    )
    bic: Bic | None = Field(default=None, description="The bank's BIC.")
    bank_name: Line | None = Field(
        default=None, description="The bank.", examples=["Banca Kombëtare Tregtare"]
    )
    bank_country: CountryCode | None = Field(default=None, description="The bank's state.")
    currency: CurrencyCode | None = Field(
        default=None, description="Currency of the account.", examples=["EUR"]
    )
    opened_on: Date | None = Field(default=None, description="When it was opened.")
    closed_on: Date | None = Field(default=None, description="When it was closed.")
    statement_period: Period | None = Field(
        default=None, description="Period for which transactions are sought or given."
    )


class CustodianKind(StrEnum):
    EXCHANGE = "exchange"
    CUSTODIAL_WALLET = "custodial-wallet"
    PAYMENT_PROVIDER = "payment-provider"
    OTHER = "other"


class Custodian(Part):
    """A virtual-asset service provider holding assets for a customer."""

    name: Line = Field(description="Its name.", examples=["Binance"])
    kind: CustodianKind = Field(description="What kind of provider.", examples=["exchange"])
    country: CountryCode | None = Field(default=None, description="Where it is established.")
    account_id: ShortLine | None = Field(
        default=None, description="The customer's account or user id there.", examples=["38117724"]
    )


class VirtualAsset(AssetBase):
    """Crypto-assets: where they are on a chain, who holds them, which transactions matter."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        AnyPresent(("address", "custodian")),
        PatternWhen("address", "chain", ADDRESS_PATTERNS),
        PatternWhen("tx_hashes", "chain", TX_HASH_PATTERNS, each=True),
    )

    kind: Literal["virtual-asset"] = Field(description="Always 'virtual-asset'.")
    chain: Slug = Field(
        description="The blockchain (bitcoin, ethereum, tron, solana, litecoin, polygon, "
        "bnb-smart-chain, arbitrum, or another chain's lower-case name).",
        examples=["tron"],
    )
    symbol: TokenSymbol | None = Field(default=None, description="The asset, e.g. USDT.")
    token_contract: WalletAddress | None = Field(
        default=None,
        description="Contract address of a token (e.g. USDT on Tron).",
        examples=["TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"],
    )
    address: WalletAddress | None = Field(default=None, description="The wallet address.")
    custodian: Custodian | None = Field(default=None, description="The provider holding it.")
    quantity: TokenAmount | None = Field(default=None, description="How much of the asset.")
    tx_hashes: Annotated[list[TxHash], UniqueItems()] = Field(
        default_factory=list, max_length=100, description="Transactions of interest."
    )


class PropertyType(StrEnum):
    APARTMENT = "apartment"
    HOUSE = "house"
    LAND = "land"
    AGRICULTURAL_LAND = "agricultural-land"
    COMMERCIAL = "commercial"
    GARAGE = "garage"
    OTHER = "other"


class RealEstate(AssetBase):
    """Land or buildings, found by address or cadastral reference."""

    RULES: ClassVar[tuple[Rule, ...]] = (AnyPresent(("address", "cadastral_reference")),)

    kind: Literal["real-estate"] = Field(description="Always 'real-estate'.")
    property_type: PropertyType = Field(description="What it is.", examples=["apartment"])
    address: Address | None = Field(default=None, description="Where it is.")
    cadastral_reference: ShortLine | None = Field(
        default=None,
        description="Cadastral zone and parcel or property number.",
        examples=["ZK 8150, nr. pasurie 12/45"],
    )
    land_register: Line | None = Field(
        default=None, description="The land register keeping it.", examples=["ASHK Durrës"]
    )
    area_m2: Amount | None = Field(default=None, description="Area in square metres.")
    share: ShortLine | None = Field(
        default=None, description="Share held, as a fraction.", examples=["1/2"]
    )


class Vehicle(AssetBase):
    """A road vehicle, found by VIN or registration number."""

    RULES: ClassVar[tuple[Rule, ...]] = (AnyPresent(("vin", "registration_number")),)

    kind: Literal["vehicle"] = Field(description="Always 'vehicle'.")
    make: ShortLine | None = Field(default=None, description="Make.", examples=["Mercedes-Benz"])
    model: ShortLine | None = Field(default=None, description="Model.", examples=["GLE 350d"])
    vin: ShortLine | None = Field(
        default=None,
        description="Vehicle identification number (ISO 3779, 17 characters for modern cars).",
        examples=["WDC1671231A123456"],
    )
    registration_number: ShortLine | None = Field(
        default=None, description="Number plate.", examples=["BG 1234 AB"]
    )
    registration_country: CountryCode | None = Field(default=None, description="Where registered.")
    year: Annotated[int, Field(ge=1900, le=2100), BeforeValidator(json_integer)] | None = Field(
        default=None, description="Year of manufacture.", examples=[2021]
    )
    colour: ShortLine | None = Field(default=None, description="Colour.", examples=["black"])
    location: Address | None = Field(default=None, description="Where it is kept.")


class Vessel(AssetBase):
    """A ship or yacht, found by IMO number, MMSI or name."""

    RULES: ClassVar[tuple[Rule, ...]] = (AnyPresent(("imo_number", "mmsi", "name")),)

    kind: Literal["vessel"] = Field(description="Always 'vessel'.")
    name: Line | None = Field(default=None, description="Name.", examples=["Bora e Jugut"])
    imo_number: Annotated[str, Field(pattern=r"^[0-9]{7}$", max_length=7)] | None = Field(
        default=None, description="IMO ship identification number.", examples=["9412345"]
    )
    mmsi: Annotated[str, Field(pattern=r"^[0-9]{9}$", max_length=9)] | None = Field(
        default=None, description="Maritime Mobile Service Identity.", examples=["201234567"]
    )
    flag: CountryCode | None = Field(default=None, description="Flag state.", examples=["MT"])
    port_of_registry: Line | None = Field(default=None, description="Port of registry.")
    vessel_type: ShortLine | None = Field(default=None, description="Type.", examples=["yacht"])
    length_m: Amount | None = Field(default=None, description="Length overall, metres.")
    location: Address | None = Field(default=None, description="Where it lies.")


class InterestKind(StrEnum):
    SHARES = "shares"
    PARTNERSHIP_INTEREST = "partnership-interest"
    DIRECTORSHIP = "directorship"
    BENEFICIAL_OWNERSHIP = "beneficial-ownership"


class CompanyInterest(AssetBase):
    """An interest in a company: shares, a partnership interest, control."""

    kind: Literal["company-interest"] = Field(description="Always 'company-interest'.")
    company: Line = Field(description="The company's name.", examples=["Agroprim-Nord S.R.L."])
    registration_number: ShortLine | None = Field(default=None, description="Register number.")
    country: CountryCode = Field(description="Where the company is registered.", examples=["MD"])
    interest: InterestKind = Field(description="What kind of interest.", examples=["shares"])
    share_percent: (
        Annotated[str, Field(pattern=r"^(100(\.0{1,4})?|[0-9]{1,2}(\.[0-9]{1,4})?)$", max_length=8)]
        | None
    ) = Field(default=None, description="Share of the capital, percent.", examples=["51"])


class OtherAsset(AssetBase):
    """Any other property: cash, jewellery, art, aircraft, claims, insurance policies."""

    kind: Literal["other"] = Field(description="Always 'other'.")
    category: ShortLine = Field(description="What it is.", examples=["cash", "jewellery"])
    location: Address | None = Field(default=None, description="Where it is.")


Asset = TypeAliasType(
    "Asset",
    Annotated[
        BankAccount | VirtualAsset | RealEstate | Vehicle | Vessel | CompanyInterest | OtherAsset,
        Field(discriminator="kind"),
    ],
)
"""One asset, told apart by `kind`."""


@dataclass(frozen=True, slots=True)
class ReferencesResolve:
    """Subject refs and asset refs do not repeat, and every holder or beneficial owner named
    by ref is a subject of the same payload. JSON Schema cannot follow references."""

    subjects: str
    assets: Callable[[Any], Iterable[AssetBase]]

    @property
    def note(self) -> str:
        return "refs are unique; holders and beneficial owners name subjects by their ref"

    def json_schema(self) -> None:
        return None

    def holds(self, part: BaseModel) -> bool:
        return not self.violations(part)

    def violations(self, part: BaseModel) -> list[str]:
        subjects: Sequence[NaturalPerson | LegalPerson] = getattr(part, self.subjects)
        assets = list(self.assets(part))
        subject_refs = [s.ref for s in subjects if s.ref]
        asset_refs = [a.ref for a in assets if a.ref]
        named = [r for a in assets for r in a.holders]
        named += [r for s in subjects if isinstance(s, LegalPerson) for r in s.beneficial_owners]
        known = set(subject_refs)
        unique = len(known) == len(subject_refs) and len(set(asset_refs)) == len(asset_refs)
        if unique and known.issuperset(named):
            return []
        problems = _repeated("subject", subject_refs) + _repeated("asset", asset_refs)
        problems += [f"ref {r!r} names no subject" for r in dict.fromkeys(named) if r not in known]
        return problems


def _repeated(what: str, refs: list[str]) -> list[str]:
    return [f"{what} ref {r!r} is used twice" for r in dict.fromkeys(refs) if refs.count(r) > 1]
