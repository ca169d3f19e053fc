"""Scalar value types of the payloads: bounded text, ISO codes, dates, money, IBAN, contacts.

Each is a named type (one `$defs` entry in the exported JSON Schema) whose pydantic check and
JSON Schema are built from the same parameters. Inputs are taken as JSON gives them: a date is
a string, never a number; an integer is never a string; optional values may be null.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import BeforeValidator
from typing_extensions import TypeAliasType

from exchange.model.base import NamedString, NamedType
from exchange.model.codes import COUNTRY_CODES, CURRENCY_CODES
from exchange.model.common import UtcDatetime

AMOUNT_PATTERN = r"^(0|[1-9][0-9]{0,17})(\.[0-9]{1,4})?$"
# Unicode White_Space and the byte order mark, spelled out: `\s` means another set in each
# regex dialect (ECMA-262, which JSON Schema uses, omits U+0085 and adds U+FEFF), and a
# partner's validator must refuse exactly what this implementation refuses.
SPACES = r"\u0009-\u000D\u0020\u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\uFEFF"
# One line of text: no control characters, and it starts with a visible character. Both
# patterns match in linear time in any regex engine (no nested or overlapping repetition).
LINE_PATTERN = rf"^[^{SPACES}\u0000-\u001F\u007F][^\u0000-\u001F\u007F]*$"
# Free text: like a line, but tab, line feed and carriage return are allowed.
TEXT_PATTERN = rf"^[^{SPACES}\u0000-\u001F\u007F][^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]*$"

ShortLine = TypeAliasType(
    "ShortLine",
    Annotated[
        str,
        NamedString(
            "ShortLine",
            description="A short single line (a name, a number, a reference), "
            "up to 100 characters.",
            max_length=100,
            pattern=LINE_PATTERN,
        ),
    ],
)
Line = TypeAliasType(
    "Line",
    Annotated[
        str,
        NamedString(
            "Line",
            description="A single line of text (a name, a title, a place), up to 300 characters.",
            max_length=300,
            pattern=LINE_PATTERN,
        ),
    ],
)
Text = TypeAliasType(
    "Text",
    Annotated[
        str,
        NamedString(
            "Text",
            description="Free text (line breaks allowed), up to 4,000 characters.",
            max_length=4000,
            pattern=TEXT_PATTERN,
        ),
    ],
)
LongText = TypeAliasType(
    "LongText",
    Annotated[
        str,
        NamedString(
            "LongText",
            description="Long free text, e.g. a statement of facts, up to 20,000 characters.",
            max_length=20000,
            pattern=TEXT_PATTERN,
        ),
    ],
)
LocalRef = TypeAliasType(
    "LocalRef",
    Annotated[
        str,
        NamedString(
            "LocalRef",
            description="A label that parts of the same payload use to point at each other "
            "(e.g. an asset's holder names a subject by its ref).",
            max_length=16,
            pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,15}$",
            examples=["S1", "A2"],
        ),
    ],
)
Slug = TypeAliasType(
    "Slug",
    Annotated[
        str,
        NamedString(
            "Slug",
            description="A lower-case identifier from an open list (letters, digits, '-').",
            max_length=32,
            pattern=r"^[a-z0-9][a-z0-9-]{0,31}$",
            examples=["bitcoin", "ethereum", "tron"],
        ),
    ],
)
CountryCode = TypeAliasType(
    "CountryCode",
    Annotated[
        str,
        NamedString(
            "an ISO 3166-1 alpha-2 country code",
            description="ISO 3166-1 alpha-2 country code; XK for Kosovo.",
            min_length=2,
            max_length=2,
            pattern=r"^[A-Z]{2}$",
            allowed=sorted(COUNTRY_CODES),
        ),
    ],
)
CurrencyCode = TypeAliasType(
    "CurrencyCode",
    Annotated[
        str,
        NamedString(
            "an ISO 4217 currency code",
            description="ISO 4217 alphabetic currency code.",
            min_length=3,
            max_length=3,
            pattern=r"^[A-Z]{3}$",
            allowed=sorted(CURRENCY_CODES),
        ),
    ],
)
LanguageCode = TypeAliasType(
    "LanguageCode",
    Annotated[
        str,
        NamedString(
            "LanguageCode",
            description="ISO 639-1 two-letter language code (lower case).",
            min_length=2,
            max_length=2,
            pattern=r"^[a-z]{2}$",
            examples=["sq", "sr", "ro", "kk", "ru", "en"],
        ),
    ],
)
ScriptCode = TypeAliasType(
    "ScriptCode",
    Annotated[
        str,
        NamedString(
            "ScriptCode",
            description="ISO 15924 script code, e.g. Cyrl (Cyrillic), Latn (Latin), Arab.",
            min_length=4,
            max_length=4,
            pattern=r"^[A-Z][a-z]{3}$",
            examples=["Cyrl", "Latn"],
        ),
    ],
)
Amount = TypeAliasType(
    "Amount",
    Annotated[
        str,
        NamedString(
            "Amount",
            description="A non-negative decimal number written as a string (never a JSON number, "
            "so that no precision is lost): digits, optionally '.' and up to 4 decimals.",
            max_length=23,
            pattern=AMOUNT_PATTERN,
            examples=["125000.00", "48250.5"],
        ),
    ],
)
TokenAmount = TypeAliasType(
    "TokenAmount",
    Annotated[
        str,
        NamedString(
            "TokenAmount",
            description="A quantity of a virtual asset as a decimal string, up to 18 decimals "
            "(in the asset's display unit, e.g. BTC, not satoshi).",
            max_length=49,
            pattern=r"^(0|[1-9][0-9]{0,29})(\.[0-9]{1,18})?$",
            examples=["3.25000000", "150000"],
        ),
    ],
)


_IBAN_LETTERS = str.maketrans({chr(ord("A") + i): str(10 + i) for i in range(26)})


def iban_checksum_ok(iban: str) -> bool:
    """ISO 13616 / ISO 7064 MOD 97-10: move the first four characters to the end, turn letters
    into numbers (A=10 ... Z=35); the result modulo 97 must be 1."""
    digits = (iban[4:] + iban[:4]).translate(_IBAN_LETTERS)
    return digits.isdigit() and int(digits) % 97 == 1


def _check_iban(value: str) -> str:
    if value[:2] not in COUNTRY_CODES:
        raise ValueError(f"IBAN country {value[:2]!r} is not an ISO 3166 country")
    if not iban_checksum_ok(value):
        raise ValueError("IBAN check digits do not match (ISO 13616 mod 97)")
    return value


Iban = TypeAliasType(
    "Iban",
    Annotated[
        str,
        NamedString(
            "Iban",
            description="International Bank Account Number (ISO 13616) in electronic form: upper "
            "case, no spaces. Format 'iban' means: the country is ISO 3166 and the check digits "
            "verify (move the first 4 characters to the end, letters to 10..35, mod 97 = 1).",
            min_length=15,
            max_length=34,
            pattern=r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$",
            check=_check_iban,
            format="iban",
            examples=["AL35202111090000000001234567", "RS35105008123123123173"],
        ),
    ],
)
Bic = TypeAliasType(
    "Bic",
    Annotated[
        str,
        NamedString(
            "Bic",
            description="Business Identifier Code (ISO 9362), 8 or 11 characters.",
            min_length=8,
            max_length=11,
            pattern=r"^[A-Z]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?$",
            examples=["NCBAALTX", "AGRNMD2X"],
        ),
    ],
)
Email = TypeAliasType(
    "Email",
    Annotated[
        str,
        NamedString(
            "Email",
            description="An e-mail address.",
            min_length=3,
            max_length=254,
            pattern=rf"^[^@{SPACES}]{{1,64}}@[^@{SPACES}]{{1,189}}$",
            format="email",
            examples=["aro@pp.gov.al"],
        ),
    ],
)
Phone = TypeAliasType(
    "Phone",
    Annotated[
        str,
        NamedString(
            "Phone",
            description="A telephone number in E.164 form: '+', country code, number, no spaces.",
            min_length=8,
            max_length=16,
            pattern=r"^\+[1-9][0-9]{6,14}$",
            examples=["+35542234567", "+37322123456"],
        ),
    ],
)

_DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
PARTIAL_DATE_PATTERN = r"^[0-9]{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?)?$"
RFC3339_PATTERN = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
_RFC3339_RE = re.compile(RFC3339_PATTERN)
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_UUID_RE = re.compile(UUID_PATTERN)


def _date_text(value: Any) -> Any:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _DATE_RE.match(value):
        return value
    raise ValueError("a date must be a string YYYY-MM-DD")


def _time_text(value: Any) -> Any:
    if isinstance(value, datetime) or (isinstance(value, str) and _RFC3339_RE.match(value)):
        return value
    raise ValueError("a time must be an RFC 3339 string with an offset, e.g. 2026-11-22T09:30:00Z")


def _uuid_text(value: Any) -> Any:
    if isinstance(value, UUID) or (isinstance(value, str) and _UUID_RE.match(value)):
        return value
    raise ValueError("a message id must be a UUID string (8-4-4-4-12 hex digits)")


def _real_date(value: str) -> str:
    if len(value) == 10:
        try:
            date.fromisoformat(value)
        except ValueError:  # e.g. 2026-02-30
            raise ValueError(f"{value} is not a day of the calendar") from None
    return value


def json_integer(value: Any) -> Any:
    """Refuses what JSON does not give as a number (strings, booleans)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a JSON integer")
    return value


Date = TypeAliasType(
    "Date",
    Annotated[
        date,
        NamedType(
            {
                "type": "string",
                "format": "date",
                "pattern": _DATE_RE.pattern,
                "minLength": 10,
                "maxLength": 10,
                "description": "A calendar date, RFC 3339 full-date (YYYY-MM-DD).",
                "examples": ["2026-03-14"],
            },
            before=_date_text,
        ),
    ],
)
PartialDate = TypeAliasType(
    "PartialDate",
    Annotated[
        str,
        NamedString(
            "PartialDate",
            description="A date that may be known only in part: YYYY, YYYY-MM or YYYY-MM-DD. "
            "A full date must exist in the calendar.",
            min_length=4,
            max_length=10,
            pattern=PARTIAL_DATE_PATTERN,
            check=_real_date,
            examples=["1979-03-05", "1981"],
        ),
    ],
)
Timestamp = TypeAliasType(
    "Timestamp",
    Annotated[
        UtcDatetime,
        NamedType(
            {
                "type": "string",
                "format": "date-time",
                "pattern": RFC3339_PATTERN,
                "maxLength": 32,
                "description": "RFC 3339 date-time with 'T', an explicit offset or 'Z', and "
                "at most 6 decimals of seconds; normalised to UTC with millisecond precision.",
                "examples": ["2026-11-22T09:30:00.000Z"],
            },
            before=_time_text,
        ),
    ],
)
MessageId = TypeAliasType(
    "MessageId",
    Annotated[
        UUID,
        NamedType(
            {
                "type": "string",
                "format": "uuid",
                "pattern": UUID_PATTERN,
                "minLength": 36,
                "maxLength": 36,
                "description": "A message id: the UUID in the header of the message meant.",
                "examples": ["0b6f3c1e-6a4f-4f57-9d0a-3c2f1e7d8a90"],
            },
            before=_uuid_text,
        ),
    ],
)
Digest = TypeAliasType(
    "Digest",
    Annotated[
        str,
        NamedString(
            "Digest",
            description="A SHA-256 digest as 64 lower-case hex digits.",
            min_length=64,
            max_length=64,
            pattern=r"^[0-9a-f]{64}$",
            examples=["9f2c4b1d0e8a7f6e5d4c3b2a190817263544536271809a8b7c6d5e4f3a2b1c0d"],
        ),
    ],
)


JsonInt = Annotated[int, BeforeValidator(json_integer)]
"""An integer as JSON gives it: strings and booleans are refused (bounds go on the field).
An optional bounded one is `Annotated[int, Field(ge=.., le=..), BeforeValidator(json_integer)]
| None`: bounds placed after the validator would reach the JSON Schema as raw `ge`/`le`."""
