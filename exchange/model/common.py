"""Types shared by the envelope and every payload: node ids, case references, UTC times.

These are the building blocks of the JSON Schemas that partner countries implement, so
each carries a description and an example.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer, WithJsonSchema

NODE_ID_PATTERN = r"^[A-Z]{2}-[A-Z0-9]{2,12}$"
CASE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
NETWORK_PATTERN = r"^[a-z0-9][a-z0-9-]{0,31}$"

NodeId = Annotated[
    str,
    Field(
        pattern=NODE_ID_PATTERN,
        description="A node's id: ISO 3166 country code, a hyphen, the agency (no dots).",
        examples=["AL-ARO", "RS-PPO"],
    ),
]

CaseRef = Annotated[
    str,
    Field(
        pattern=CASE_PATTERN,
        description="The case reference shared by the messages of one investigation "
        "(letters, digits, '-' and '_'; no dots, since it appears in routing keys).",
        examples=["AL-2026-0042"],
    ),
]

NetworkName = Annotated[
    str,
    Field(
        pattern=NETWORK_PATTERN,
        description="A cooperation network's short name (lower case, digits, '-').",
        examples=["see-arn", "pcoc"],
    ),
]


def format_utc(value: datetime) -> str:
    """RFC 3339 in UTC with millisecond precision and a 'Z': the one wire form of times."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


def _require_rfc3339(value: object) -> object:
    """Only RFC 3339 text (or a datetime built in code): never a number read as Unix time,
    which the JSON Schema partners validate against would refuse."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _RFC3339.match(value):
        return value
    raise ValueError("time must be an RFC 3339 date-time string, e.g. 2026-11-22T09:30:00Z")


def _require_aware_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("time must carry a time zone offset (use 'Z' for UTC)")
    # Truncate to milliseconds so that parse(format(t)) == t: the wire form is canonical.
    value = value.astimezone(UTC)
    return value.replace(microsecond=(value.microsecond // 1000) * 1000)


UtcDatetime = Annotated[
    datetime,
    BeforeValidator(_require_rfc3339),
    AfterValidator(_require_aware_utc),
    PlainSerializer(format_utc, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339 date-time with an explicit offset; sent as UTC with 'Z'.",
            "examples": ["2026-11-22T09:30:00.000Z"],
        }
    ),
]


def utc_now() -> datetime:
    return _require_aware_utc(datetime.now(UTC))


class MessageType(StrEnum):
    ASSET_INQUIRY = "asset-inquiry"
    ASSET_INQUIRY_RESPONSE = "asset-inquiry-response"
    FREEZE_NOTICE = "freeze-notice"
    FREEZE_DECISION = "freeze-decision"
    EXTRADITION_SUPPORT = "extradition-support"
    EXTRADITION_SUPPORT_RESPONSE = "extradition-support-response"
    CASE_UPDATE = "case-update"
    RECEIPT = "receipt"


class Priority(StrEnum):
    URGENT = "urgent"
    NORMAL = "normal"


class Tlp(StrEnum):
    """Traffic Light Protocol 2.0 labels."""

    RED = "RED"
    AMBER_STRICT = "AMBER+STRICT"
    AMBER = "AMBER"
    GREEN = "GREEN"
    CLEAR = "CLEAR"


class HandlingCode(StrEnum):
    """Handling codes for police information (H0 no restriction ... H3 originator's consent)."""

    H0 = "H0"
    H1 = "H1"
    H2 = "H2"
    H3 = "H3"
