"""Value types every payload shares: IBANs, ISO codes, text, dates and times, money."""

from __future__ import annotations

import re
import time
from datetime import UTC, date, datetime
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from exchange.model.codes import COUNTRY_CODES, CURRENCY_CODES
from exchange.model.parts import Money, Period
from exchange.model.values import (
    LINE_PATTERN,
    TEXT_PATTERN,
    Date,
    Iban,
    Line,
    MessageId,
    PartialDate,
    Text,
    Timestamp,
    iban_checksum_ok,
)


class Sample(BaseModel):
    iban: Iban | None = None
    line: Line | None = None
    text: Text | None = None
    day: Date | None = None
    born: PartialDate | None = None
    at: Timestamp | None = None
    message: MessageId | None = None


def accepts(**fields: Any) -> bool:
    try:
        Sample.model_validate(fields)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(
    "iban",
    [
        "GB82WEST12345698765432",  # ISO 13616 specimen
        "DE89370400440532013000",
        "AL35202111090000000001234567",
        "RS35105008123123123173",
        "MD24AG000225100013104168",
        "KZ86125KZT5004100100",
        "ME25505000012345678951",
        "XK051212012345678906",
        "MK07250120000058984",
        "BA391990440001200279",
    ],
)
def test_real_ibans_pass_the_mod_97_check(iban: str) -> None:
    assert iban_checksum_ok(iban)
    assert accepts(iban=iban)


@pytest.mark.parametrize(
    "iban",
    [
        "GB82WEST12345698765433",  # last digit mistyped
        "GB82WEST12345698765423",  # two digits swapped
        "GB28WEST12345698765432",  # check digits swapped
        "gb82west12345698765432",  # lower case
        "GB82 WEST 1234 5698 7654 32",  # print form with spaces
        "YU12345678901234567890",  # not a country any more
    ],
)
def test_mistyped_ibans_are_refused(iban: str) -> None:
    assert not accepts(iban=iban)


def test_country_and_currency_lists_cover_the_region_and_nothing_obsolete() -> None:
    assert {"AL", "BA", "ME", "MK", "RS", "XK", "MD", "KZ", "UA", "TR"} <= COUNTRY_CODES
    assert not {"YU", "CS", "SU", "UK", "EU"} & COUNTRY_CODES
    assert {"EUR", "ALL", "BAM", "MKD", "RSD", "MDL", "KZT", "USD", "XAU"} <= CURRENCY_CODES
    assert not {"XXX", "XTS", "LEK", "BTC", "USDT"} & CURRENCY_CODES
    assert len(COUNTRY_CODES) == 250


def test_money_is_a_decimal_string_never_a_float() -> None:
    assert Money.model_validate({"amount": "1250.50", "currency": "EUR"}).amount == "1250.50"
    for amount in [1250.5, "1,250.50", "-5", "01", "1.23456", "1e6", "NaN", ""]:
        with pytest.raises(ValidationError):
            Money.model_validate({"amount": amount, "currency": "EUR"})


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("Драган Петровић", True),
        ("Nurlan Äbdıraxmanov", True),
        ("Ion Țurcanu", True),
        ("", False),
        (" leading space", False),
        ("two\nlines", False),
        ("bell\u0007", False),
        ("x" * 300, True),
        ("x" * 301, False),
    ],
)
def test_a_line_is_one_visible_line_of_bounded_length(value: str, ok: bool) -> None:
    assert accepts(line=value) is ok


def test_free_text_keeps_line_breaks_but_no_other_control_characters() -> None:
    assert accepts(text="First line.\r\n\tIndented second line.")
    assert not accepts(text="null\u0000byte")
    assert not accepts(text="\nstarts with a break")


def test_text_patterns_do_not_backtrack_on_hostile_input() -> None:
    # A partner's regex engine may backtrack; the patterns must stay linear regardless.
    hostile = "a" + " " * 200_000 + "\u0000"
    started = time.perf_counter()
    assert re.search(LINE_PATTERN, hostile) is None
    assert re.search(TEXT_PATTERN, hostile) is None
    assert time.perf_counter() - started < 0.5


def test_dates_are_iso_strings_and_real_days() -> None:
    assert Sample.model_validate({"day": "2026-03-02"}).day == date(2026, 3, 2)
    for bad in [
        "02.03.2026",
        "2026-3-2",
        "2026-02-30",
        "20260302",
        20260302,
        "2026-03-02T00:00:00Z",
    ]:
        assert not accepts(day=bad), bad


def test_a_birth_date_may_be_partial_but_must_exist() -> None:
    for good in ["1979", "1979-03", "1979-03-05", "2000-02-29"]:
        assert accepts(born=good), good
    for bad in ["1979-13", "1979-02-30", "1900-02-29", "79", "5.3.1979"]:
        assert not accepts(born=bad), bad


def test_times_need_an_offset_and_are_kept_in_utc_to_the_millisecond() -> None:
    at = Sample.model_validate({"at": "2026-03-02T16:00:00.123456+02:00"}).at
    assert at == datetime(2026, 3, 2, 14, 0, 0, 123000, tzinfo=UTC)
    for bad in ["2026-03-02T16:00:00", "2026-03-02 16:00:00Z", "1772460000", 1772460000]:
        assert not accepts(at=bad), bad


def test_message_ids_are_uuids_in_their_usual_form() -> None:
    assert accepts(message="0b6f3c1e-6a4f-4f57-9d0a-3c2f1e7d8a90")
    for bad in [
        "0b6f3c1e6a4f4f579d0a3c2f1e7d8a90",
        "urn:uuid:0b6f3c1e-6a4f-4f57-9d0a-3c2f1e7d8a90",
    ]:
        assert not accepts(message=bad), bad


def test_a_period_has_an_end_not_before_its_start() -> None:
    assert Period.model_validate({"start": "2021-01-01"}).end is None
    with pytest.raises(ValidationError, match="end 2021-01-01 is before start 2025-06-30"):
        Period.model_validate({"start": "2025-06-30", "end": "2021-01-01"})
    with pytest.raises(ValidationError, match="at least one of start, end"):
        Period.model_validate({})
