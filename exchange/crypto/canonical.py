"""RFC 8785 (JCS) canonical JSON: the exact bytes that signatures and digests cover.

`canonicalize` serializes with orjson when one walk over the document proves that orjson
yields the same bytes as the reference implementation (`rfc8785`), else with the reference.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson
import rfc8785

from exchange.errors import ExchangeValueError

__all__ = [
    "CanonicalizationError",
    "canonicalize",
    "canonicalize_reference",
    "parse_json",
    "sha256_hex",
]

# OPT_STRICT_INTEGER makes orjson refuse integers outside ±(2**53 - 1), the range in which
# JCS writes integers digit for digit; outside it the reference decides (it refuses too).
_FAST_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
_BMP_MAX = "\uffff"


class CanonicalizationError(ExchangeValueError):
    """The document has no RFC 8785 form: NaN or infinity, an integer beyond ±(2**53 - 1),
    a lone surrogate, a non-string object key, a value that is not JSON, or too deep."""

    code = "json.not_canonical"


def canonicalize(doc: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON document (dicts, lists, str, int, ...)."""
    if _orjson_is_exact(doc):
        try:
            return orjson.dumps(doc, option=_FAST_OPTIONS)
        except orjson.JSONEncodeError:
            pass  # lone surrogate, integer out of range, too deep: the reference decides
    return canonicalize_reference(doc)


def canonicalize_reference(doc: Any) -> bytes:
    """RFC 8785 through the reference implementation, for any document and as an oracle."""
    try:
        result: bytes = rfc8785.dumps(doc)
    except (rfc8785.CanonicalizationError, UnicodeError, RecursionError) as err:
        raise CanonicalizationError(f"no RFC 8785 form: {err}") from err
    return result


def parse_json(data: bytes) -> Any:
    """Parse JSON text as RFC 8785 requires of what gets signed (I-JSON): a member name that
    repeats within an object is refused, since parsers disagree on which value wins.

    Raises ValueError: orjson.JSONDecodeError for invalid JSON, CanonicalizationError for
    repeated names.
    """
    doc = orjson.loads(data)
    # Text that orjson writes back byte for byte has no repeated names (orjson never writes
    # any), which spares the slower check for our own compact encoding.
    if type(doc) in (dict, list) and orjson.dumps(doc) != data and _has_repeated_names(data):
        raise CanonicalizationError("a member name repeats within an object")
    return doc


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256, the digest that receipts and the audit log name."""
    return hashlib.sha256(data).hexdigest()


def _has_repeated_names(data: bytes) -> bool:
    repeated = False

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeated
        obj = dict(pairs)
        repeated = repeated or len(obj) != len(pairs)
        return obj

    try:
        json.loads(data, object_pairs_hook=pairs_hook)
    except (ValueError, RecursionError):
        return True  # orjson read it and json cannot (too deep): refuse what is unchecked
    return repeated


def _orjson_is_exact(doc: Any) -> bool:
    """True when orjson's sorted output provably equals the JCS bytes of `doc`.

    orjson sorts object keys by UTF-8 bytes, which is code point order; JCS sorts by UTF-16
    code units. The two orders agree unless a key holds a character beyond U+FFFF (a
    surrogate pair in UTF-16 sorts below U+E000..U+FFFF), so such keys take the reference.
    String escaping agrees everywhere: both write '"', '\\', \\b \\t \\n \\f \\r and other
    characters below U+0020 as \\u00xx (lower-case hex), and everything else, U+007F and
    U+2028/U+2029 included, as raw UTF-8. Lone surrogates make orjson raise.
    Only exact str, int, bool, None, dict, list and tuple qualify: floats differ (orjson
    writes 1.0 and 1e21 where JCS writes 1 and 1e+21), and orjson would serialize types the
    reference refuses (UUID, datetime, Enum, dataclasses, subclasses).
    """
    try:
        return _exact(doc)
    except RecursionError:
        return False


def _exact(doc: Any) -> bool:
    # One pass without allocation: this walk is most of the fast path's cost.
    kind = type(doc)
    if kind is dict:
        for key, value in doc.items():
            if type(key) is not str or (not key.isascii() and max(key) > _BMP_MAX):
                return False
            kind = type(value)
            if kind is str or kind is int or kind is bool or value is None:
                continue
            if (kind is dict or kind is list or kind is tuple) and _exact(value):
                continue
            return False
        return True
    if kind is list or kind is tuple:
        for value in doc:
            kind = type(value)
            if kind is str or kind is int or kind is bool or value is None:
                continue
            if (kind is dict or kind is list or kind is tuple) and _exact(value):
                continue
            return False
        return True
    return kind is str or kind is int or kind is bool or doc is None
