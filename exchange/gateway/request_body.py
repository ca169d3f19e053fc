"""Reading a local client's JSON request body, refusing anything ambiguous before it is parsed.

Wrong media type 415, over the size limit 413 (announced by Content-Length or discovered
while reading, never buffered past the cap), malformed JSON 400. JSON is strict: duplicate
keys, NaN and Infinity, integers outside I-JSON's exact range (RFC 7493: ±(2**53-1)), and
unpaired surrogates are refused, since they would make the signed bytes ambiguous.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from exchange.errors import ExchangeValueError, FieldError, RequestError
from exchange.schemas import MAX_FIELD_ERRORS

JSON_TYPE = "application/json"
MAX_SAFE_INTEGER = 2**53 - 1
_CHUNK = 65536


class _Refused(ExchangeValueError):
    """A JSON value the strict parser refuses (raised from inside `json.loads`'s hooks)."""

    code = "request.malformed_json"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"duplicate key {key!r}")
            seen.add(key)
    return doc


def _no_constants(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number")


def _exact_int(text: str) -> int:
    value = int(text)
    if abs(value) > MAX_SAFE_INTEGER:
        raise _Refused(f"integer {text[:20]} is outside the exact range ±(2**53-1)")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"number {text[:20]} is too large")
    return value


def parse_json(body: bytes) -> Any:
    """Strictly parse a UTF-8 JSON document; RequestError `request.malformed_json` otherwise."""
    try:
        text = body.decode("utf-8")
        doc = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constants,
            parse_int=_exact_int,
            parse_float=_finite_float,
        )
        orjson.dumps(doc)  # refuses unpaired surrogates, which no signature can cover
    except UnicodeDecodeError:
        raise RequestError("the body is not UTF-8", code="request.malformed_json") from None
    except _Refused as exc:
        raise RequestError(
            f"the body is not valid JSON: {exc}", code="request.malformed_json"
        ) from None
    except json.JSONDecodeError as exc:
        raise RequestError(
            f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            code="request.malformed_json",
        ) from None
    except (ValueError, RecursionError, orjson.JSONEncodeError):
        raise RequestError(
            "the body is not valid JSON (too deeply nested, or an invalid string)",
            code="request.malformed_json",
        ) from None
    return doc


async def read_json_object(request: web.Request, max_bytes: int) -> dict[str, Any]:
    """The request's JSON object body, after media type, size and syntax checks."""
    if request.content_type != JSON_TYPE or (request.charset or "utf-8").lower() not in (
        "utf-8",
        "utf8",
    ):
        raise RequestError(
            f"send the body as {JSON_TYPE} (UTF-8); got {request.headers.get('Content-Type')!r}",
            code="request.unsupported_media_type",
        )
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise RequestError(
            f"send the body without Content-Encoding; got {encoding[:40]!r}",
            code="request.unsupported_media_type",
        )
    too_large = RequestError(f"the body is larger than {max_bytes} bytes", code="request.too_large")
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large
    body = bytearray()
    try:
        while chunk := await request.content.read(_CHUNK):
            body += chunk
            if len(body) > max_bytes:
                raise too_large
    except (web.HTTPException, RequestError):
        raise
    except Exception as exc:  # a body its Content-Encoding cannot decode (aiohttp's errors)
        raise RequestError(
            f"the body cannot be decoded as its Content-Encoding says: {type(exc).__name__}",
            code="request.malformed_json",
        ) from None
    doc = parse_json(bytes(body))
    if not isinstance(doc, dict):
        raise RequestError(
            "the body must be a JSON object", errors=[FieldError("/", "must be an object")]
        )
    return doc


def field_errors(exc: ValidationError, prefix: str = "") -> list[FieldError]:
    """pydantic's errors as JSON-pointer-like field paths (`/recipients/0`)."""
    out = []
    errors = exc.errors(include_url=False)
    for error in errors[:MAX_FIELD_ERRORS]:
        path = prefix + "".join(f"/{part}" for part in error["loc"])
        out.append(FieldError(path or "/", error["msg"]))
    return out
