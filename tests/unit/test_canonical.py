"""RFC 8785 canonical JSON: the RFC's own examples, edge cases, and fast path == reference."""

from __future__ import annotations

import enum
import struct
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.crypto.canonical import (
    CanonicalizationError,
    _orjson_is_exact,
    canonicalize,
    canonicalize_reference,
    parse_json,
    sha256_hex,
)

SAFE = 2**53 - 1


class Colour(enum.Enum):
    RED = "red"  # orjson would write "red"; JCS knows no enums


SORTED_STRICT = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER

# RFC 8785 section 3.2.2: the sample input, and (section 3.2.4) its canonical UTF-8 bytes.
RFC_SAMPLE_INPUT = rb"""{
  "numbers": [333333333.33333329, 1E30, 4.50,
              2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"""
RFC_SAMPLE_OUTPUT_HEX = """
7b 22 6c 69 74 65 72 61 6c 73 22 3a 5b 6e 75 6c 6c 2c 74 72
75 65 2c 66 61 6c 73 65 5d 2c 22 6e 75 6d 62 65 72 73 22 3a
5b 33 33 33 33 33 33 33 33 33 2e 33 33 33 33 33 33 33 2c 31
65 2b 33 30 2c 34 2e 35 2c 30 2e 30 30 32 2c 31 65 2d 32 37
5d 2c 22 73 74 72 69 6e 67 22 3a 22 e2 82 ac 24 5c 75 30 30
30 66 5c 6e 41 27 42 5c 22 5c 5c 5c 5c 5c 22 2f 22 7d
"""

# RFC 8785 section 3.2.3: sorting by UTF-16 code units.
RFC_SORTING_INPUT = rb"""{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}"""
RFC_SORTING_OUTPUT = (
    b'{"\\r":"Carriage Return","1":"One","\xc2\x80":"Control",'
    b'"\xc3\xb6":"Latin Small Letter O With Diaeresis","\xe2\x82\xac":"Euro Sign",'
    b'"\xf0\x9f\x98\x80":"Emoji: Grinning Face","\xef\xac\xb3":"Hebrew Letter Dalet With Dagesh"}'
)

# RFC 8785 appendix B: IEEE 754 bit patterns and their JSON numbers.
RFC_NUMBERS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


def test_rfc_8785_sample_document_gives_the_published_bytes() -> None:
    expected = bytes.fromhex(RFC_SAMPLE_OUTPUT_HEX)
    assert expected == (
        b'{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        b'"string":"\xe2\x82\xac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    doc = parse_json(RFC_SAMPLE_INPUT)
    assert canonicalize(doc) == expected
    assert canonicalize_reference(doc) == expected


def test_rfc_8785_sorting_example_orders_keys_by_utf16_code_units() -> None:
    doc = parse_json(RFC_SORTING_INPUT)
    assert canonicalize(doc) == RFC_SORTING_OUTPUT
    # The emoji key is why: orjson sorts by code point and puts it after U+FB33.
    assert orjson.dumps(doc, option=SORTED_STRICT) != RFC_SORTING_OUTPUT
    assert not _orjson_is_exact(doc)


@pytest.mark.parametrize(("bits", "text"), RFC_NUMBERS)
def test_rfc_8785_appendix_b_numbers(bits: str, text: str) -> None:
    value = struct.unpack(">d", bytes.fromhex(bits))[0]
    assert canonicalize([value]) == f"[{text}]".encode()


def test_keys_sort_at_every_level_and_whitespace_disappears() -> None:
    doc = parse_json(b'{ "b" : [ { "z" : 1 , "a" : 2 } ] , "a" : { "d" : true , "c" : null } }')
    assert canonicalize(doc) == b'{"a":{"c":null,"d":true},"b":[{"a":2,"z":1}]}'
    assert _orjson_is_exact(doc)


def test_strings_escape_only_what_jcs_escapes() -> None:
    text = "".join(chr(c) for c in range(0x20)) + '"\\/\x7f\u2028\u2029é€😀'
    expected = (
        b'"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r'
        b"\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018"
        b'\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\\"\\\\/\x7f\xe2\x80\xa8\xe2\x80\xa9'
        b'\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"'
    )
    assert canonicalize(text) == expected
    assert canonicalize({"k": [text]}) == b'{"k":[' + expected + b"]}"
    assert canonicalize_reference(text) == expected


def test_cyrillic_and_albanian_names_stay_raw_utf8() -> None:
    doc = {"name": "Љубомир Јовановић", "alias": "Arbër Çela"}
    assert canonicalize(doc) == '{"alias":"Arbër Çela","name":"Љубомир Јовановић"}'.encode()


def test_integers_up_to_2_53_minus_1_and_no_further() -> None:
    assert canonicalize([SAFE, -SAFE, 0]) == b"[9007199254740991,-9007199254740991,0]"
    for bad in (SAFE + 1, -SAFE - 1, 2**64):
        with pytest.raises(CanonicalizationError):
            canonicalize({"n": bad})


def test_floats_take_the_reference_path() -> None:
    # orjson would write 1.0 and 1e+16 differently from JCS.
    assert canonicalize({"a": 1.0, "b": 1e16, "c": -0.0}) == b'{"a":1,"b":10000000000000000,"c":0}'
    assert not _orjson_is_exact({"a": 1.0})


@pytest.mark.parametrize(
    "doc",
    [
        float("nan"),
        {"x": float("inf")},
        "\ud800",
        {"\udc00": 1},
        {1: "non-string key"},
        {"id": uuid.UUID(int=1)},
        {"at": datetime(2026, 1, 1, tzinfo=UTC)},
        {"e": Colour.RED},
        {"b": b"bytes"},
        {"s": {1, 2}},
    ],
    ids=repr,
)
def test_what_has_no_canonical_form_is_refused(doc: Any) -> None:
    with pytest.raises(CanonicalizationError):
        canonicalize(doc)


def test_str_and_int_subclasses_are_serialized_by_value() -> None:
    class Code(enum.StrEnum):
        H2 = "H2"

    class Level(enum.IntEnum):
        TWO = 2

    assert canonicalize({"code": Code.H2, "level": Level.TWO}) == b'{"code":"H2","level":2}'


def test_tuples_are_arrays_and_too_deep_is_refused() -> None:
    assert canonicalize({"t": (1, "a")}) == b'{"t":[1,"a"]}'
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(CanonicalizationError):
        canonicalize(deep)


def test_parse_json_refuses_repeated_member_names() -> None:
    assert parse_json(b'{"a":1,"b":{"c":2}}') == {"a": 1, "b": {"c": 2}}
    for text in (b'{"a":1,"a":2}', b'{"x":{"a":1,"a":1}}', b'[{"a":1,"\\u0061":2}]'):
        with pytest.raises(CanonicalizationError):
            parse_json(text)
    with pytest.raises(ValueError):
        parse_json(b'{"a":')


def test_sha256_hex() -> None:
    assert sha256_hex(b"abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


# --- fast path == reference, byte for byte ------------------------------------------------

_chars = st.characters(codec="utf-8")  # every code point but lone surrogates
_tricky = st.sampled_from(
    ["", "a", "A", "é", "\x00", "\x1f", "\x7f", "\u2028", "\ue000", "\uffff", "\U00010000", "😀"]
)
_keys = st.one_of(st.text(_chars, max_size=6), _tricky)
_bmp_keys = _keys.filter(lambda k: all(ord(c) <= 0xFFFF for c in k))
_texts = st.one_of(
    st.text(_chars, max_size=12),
    st.text(st.characters(max_codepoint=0x7F), max_size=12),
    _tricky,
    st.sampled_from(["Љубомир Јовановић", "Arbër Çela", "1250000.00", "2026-03-01T10:00:00.000Z"]),
)
_ints = st.one_of(
    st.integers(-SAFE, SAFE),
    st.sampled_from([SAFE, -SAFE, SAFE - 1, SAFE + 1, -SAFE - 1, 2**63, -(2**63), 0, -1]),
)
_no_floats = st.one_of(st.none(), st.booleans(), _ints, _texts)
_scalars = st.one_of(_no_floats, st.floats(allow_nan=False, allow_infinity=False))


def _documents(scalars: st.SearchStrategy[Any], keys: st.SearchStrategy[str]) -> Any:
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=6)
        ),
        max_leaves=40,
    )


def _outcome(fn: Any, doc: Any) -> bytes | str:
    try:
        result: bytes = fn(doc)
    except CanonicalizationError:
        return "refused"
    return result


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents(_scalars, _keys))
def test_canonicalize_equals_the_reference_on_any_document(doc: Any) -> None:
    assert _outcome(canonicalize, doc) == _outcome(canonicalize_reference, doc)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents(_no_floats, _bmp_keys))
def test_the_orjson_fast_path_is_taken_and_exact_without_floats_or_astral_keys(doc: Any) -> None:
    assert _orjson_is_exact(doc)
    try:
        fast = orjson.dumps(doc, option=SORTED_STRICT)
    except orjson.JSONEncodeError:
        fast = None  # an integer beyond 2**53 - 1: the reference must refuse it too
    assert _outcome(canonicalize_reference, doc) == ("refused" if fast is None else fast)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents(_scalars, _keys))
def test_documents_read_back_from_json_canonicalize_like_the_originals(doc: Any) -> None:
    try:
        text = orjson.dumps(doc)
    except orjson.JSONEncodeError:
        return  # out-of-range integer: nothing to read back
    if isinstance(doc, dict | list):
        assert _outcome(canonicalize, parse_json(text)) == _outcome(canonicalize_reference, doc)
