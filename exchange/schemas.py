"""The schema registry: which payload model validates which `<type>/<major>`, field-level
errors for what fails, and the JSON Schema files in `schemas/` that partner countries
implement (exported from the models, checked for drift in CI).

A gateway accepts the current major version of each type and the one before it.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import CoreSchema, ErrorDetails

from exchange.errors import FieldError, SchemaError
from exchange.model.asset_inquiry import AssetInquiry
from exchange.model.asset_inquiry_response import AssetInquiryResponse
from exchange.model.case_update import CaseUpdate
from exchange.model.common import MessageType
from exchange.model.envelope import MAX_ENVELOPE_BYTES, Envelope
from exchange.model.extradition_support import ExtraditionSupport
from exchange.model.extradition_support_response import ExtraditionSupportResponse
from exchange.model.freeze_decision import FreezeDecision
from exchange.model.freeze_notice import FreezeNotice
from exchange.model.receipt import Receipt
from exchange.model.values import (
    AMOUNT_PATTERN,
    LINE_PATTERN,
    PARTIAL_DATE_PATTERN,
    TEXT_PATTERN,
)

SCHEMA_ID_BASE = "https://schemas.xb.example"
"""Base of every schema's `$id`: `<base>/<type>/v<major>.json`. An identifier, not a download
address: validators must load the files from `schemas/` and never fetch it."""

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
MAX_PAYLOAD_BYTES = 786_432
"""Largest payload accepted as JSON bytes (768 KiB): the envelope (1 MiB) minus room for the
header and signature. JSON Schema cannot state it, so every schema's `$comment` does."""

MAX_FIELD_ERRORS = 50
"""At most this many field errors are reported; one bad document cannot make a huge answer."""

_SCHEMA_REF = re.compile(r"^([a-z][a-z-]{2,40})/([1-9][0-9]{0,3})$")
_PATTERN_MESSAGES = {
    LINE_PATTERN: "must be one line starting with a visible character, without control characters",
    TEXT_PATTERN: "must start with a visible character and contain no control characters "
    "other than tab and line breaks",
    AMOUNT_PATTERN: "must be a decimal string such as '1250.00': no sign, no thousands "
    "separators, at most 4 decimals",
    PARTIAL_DATE_PATTERN: "must be YYYY, YYYY-MM or YYYY-MM-DD",
    r"^[A-Z]{2}$": "must be a two-letter ISO 3166-1 code in capitals",
    r"^[A-Z]{3}$": "must be a three-letter ISO 4217 code in capitals",
}

V1_MODELS: Mapping[tuple[MessageType, int], type[BaseModel]] = {
    (MessageType.ASSET_INQUIRY, 1): AssetInquiry,
    (MessageType.ASSET_INQUIRY_RESPONSE, 1): AssetInquiryResponse,
    (MessageType.FREEZE_NOTICE, 1): FreezeNotice,
    (MessageType.FREEZE_DECISION, 1): FreezeDecision,
    (MessageType.EXTRADITION_SUPPORT, 1): ExtraditionSupport,
    (MessageType.EXTRADITION_SUPPORT_RESPONSE, 1): ExtraditionSupportResponse,
    (MessageType.CASE_UPDATE, 1): CaseUpdate,
    (MessageType.RECEIPT, 1): Receipt,
}


@dataclass(frozen=True)
class SchemaRegistry:
    """Payload models by message type and major version.

    To add a version, register `(type, 2): NewModel` next to `(type, 1)`: the newest is then
    current, the one before it is still accepted, older ones are only exported.
    """

    models: Mapping[tuple[MessageType, int], type[BaseModel]]
    current_versions: Mapping[MessageType, int] = field(init=False)

    def __post_init__(self) -> None:
        current: dict[MessageType, int] = {}
        for kind, major in self.models:
            current[kind] = max(major, current.get(kind, 0))
        object.__setattr__(self, "current_versions", current)

    def accepted_majors(self, kind: MessageType) -> tuple[int, ...]:
        """The current major version of `kind` and the previous one, if registered."""
        current = self.current_versions.get(kind)
        if current is None:
            return ()
        return tuple(m for m in (current, current - 1) if (kind, m) in self.models)

    def schema_ref(self, kind: MessageType | str) -> str:
        """The header `schema` value for new messages of `kind`: '<type>/<current major>'."""
        message_type = _message_type(kind)
        if message_type not in self.current_versions:
            raise SchemaError(f"no schema for type {kind!r}", code="schema.unknown")
        return f"{message_type.value}/{self.current_versions[message_type]}"

    def model_for(self, kind: MessageType | str, major: int) -> type[BaseModel]:
        """The model validating `kind` at `major`, if that version is accepted."""
        message_type = _message_type(kind)
        if major not in self.accepted_majors(message_type):
            accepted = ", ".join(str(m) for m in self.accepted_majors(message_type)) or "none"
            raise SchemaError(
                f"schema {message_type.value}/{major} is not supported (accepted: {accepted})",
                code="schema.unknown",
            )
        return self.models[(message_type, major)]

    def resolve(self, kind: str, schema_ref: str) -> type[BaseModel]:
        """The model for a header's `type` and `schema`; they must name the same type."""
        match = _SCHEMA_REF.match(schema_ref)
        if match is None or match.group(1) != kind:
            raise SchemaError(
                f"schema {schema_ref!r} does not name a version of type {kind!r}",
                code="schema.unknown",
            )
        return self.model_for(kind, int(match.group(2)))

    def validate_payload(self, kind: str, schema_ref: str, payload: Mapping[str, Any]) -> BaseModel:
        """Validate a parsed payload; refusals carry paths like '/payload/subjects/0/name'."""
        model = self.resolve(kind, schema_ref)
        try:
            return model.model_validate(payload)
        except ValidationError as err:
            raise _schema_error(schema_ref, err, payload) from None

    def validate_payload_json(self, kind: str, schema_ref: str, data: bytes) -> BaseModel:
        """Validate a payload given as JSON bytes (the fast path), size-checked first."""
        model = self.resolve(kind, schema_ref)
        if len(data) > MAX_PAYLOAD_BYTES:
            raise SchemaError(
                f"the payload is {len(data)} bytes, more than {MAX_PAYLOAD_BYTES}",
                errors=[FieldError("/payload", f"larger than {MAX_PAYLOAD_BYTES} bytes")],
            )
        try:
            return model.model_validate_json(data)
        except ValidationError as err:
            try:
                parsed: Any = orjson.loads(data)
            except orjson.JSONDecodeError:
                parsed = None
            raise _schema_error(schema_ref, err, parsed) from None

    def documents(self) -> dict[str, dict[str, Any]]:
        """Every JSON Schema file by its path under `schemas/`, the envelope's included."""
        return copy.deepcopy(self._documents)

    @cached_property
    def _documents(self) -> dict[str, dict[str, Any]]:
        docs = {"envelope/v1.json": envelope_document()}
        for (kind, major), model in sorted(self.models.items()):
            docs[f"{kind.value}/v{major}.json"] = payload_document(kind, major, model)
        return docs


def _message_type(kind: MessageType | str) -> MessageType:
    try:
        return MessageType(kind)
    except ValueError:
        raise SchemaError(f"unknown message type {kind!r}", code="schema.unknown") from None


def _schema_error(schema_ref: str, err: ValidationError, payload: Any) -> SchemaError:
    errors = field_errors(err, payload, prefix="/payload")
    more = f" (first {MAX_FIELD_ERRORS} shown)" if err.error_count() > MAX_FIELD_ERRORS else ""
    return SchemaError(
        f"the payload does not match {schema_ref}: {err.error_count()} error(s){more}",
        errors=errors,
    )


def field_errors(err: ValidationError, document: Any, *, prefix: str = "") -> list[FieldError]:
    """The first `MAX_FIELD_ERRORS` errors of `err`, located in `document` by JSON pointer."""
    details = err.errors(include_url=False, include_context=True, include_input=False)
    return [
        FieldError(prefix + json_pointer(d["loc"], document), _message(d))
        for d in details[:MAX_FIELD_ERRORS]
    ]


def json_pointer(loc: Iterable[int | str], document: Any) -> str:
    """RFC 6901 pointer for a pydantic error location, following the document itself so
    that union tags in `loc` (e.g. 'natural-person') are left out."""
    parts: list[str] = []
    node = document
    for step in loc:
        in_object = isinstance(node, Mapping) and isinstance(step, str) and step in node
        in_array = isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node)
        if in_object or in_array:
            node = node[step]
        elif isinstance(node, Mapping) and isinstance(step, str) and not _is_union_tag(step):
            node = None  # a missing or unknown field: name it, then stop walking
        else:
            continue
        parts.append(str(step).replace("~", "~0").replace("/", "~1"))
    return "".join(f"/{p}" for p in parts)


def _is_union_tag(step: str) -> bool:
    # Field names are snake_case; union tags are kebab-case values or core schema names.
    return "-" in step or "[" in step


def _message(detail: ErrorDetails) -> str:
    kind = detail["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if kind == "string_pattern_mismatch":
        pattern = (detail.get("ctx") or {}).get("pattern")
        if pattern in _PATTERN_MESSAGES:
            return _PATTERN_MESSAGES[pattern]
    return detail["msg"].removeprefix("Value error, ")


class _DocumentGenerator(GenerateJsonSchema):
    """pydantic's generator without per-property titles (noise for a reader abroad)."""

    def field_title_should_be_set(self, schema: CoreSchema) -> bool:
        return False


def _document(schema_id: str, title: str, model: type[BaseModel], comment: str) -> dict[str, Any]:
    body = model.model_json_schema(by_alias=True, schema_generator=_DocumentGenerator)
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": schema_id,
        "$comment": comment,
        **body,
        "title": title,
    }


def payload_document(kind: MessageType, major: int, model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema 2020-12 document of one payload version."""
    return _document(
        f"{SCHEMA_ID_BASE}/{kind.value}/v{major}.json",
        f"{kind.value} payload, version {major}",
        model,
        f"Generated from {model.__module__}.{model.__name__}; do not edit. Header schema: "
        f"'{kind.value}/{major}'. Payloads larger than {MAX_PAYLOAD_BYTES} bytes of JSON are "
        "refused. Format 'iban' asserts the ISO 13616 mod-97 check digits.",
    )


def envelope_document() -> dict[str, Any]:
    """The JSON Schema of the signed envelope (header, payload, signature)."""
    return _document(
        f"{SCHEMA_ID_BASE}/envelope/v1.json",
        "Signed envelope, version 1",
        Envelope,
        "Generated from exchange.model.envelope.Envelope; do not edit. The signature is "
        'Ed25519 over the RFC 8785 canonical JSON of {"header": ..., "payload": ...}; the '
        "payload is validated separately against the schema named by header.schema. "
        f"Envelopes larger than {MAX_ENVELOPE_BYTES} bytes are refused.",
    )


def render(document: Mapping[str, Any]) -> str:
    """The one byte-stable text form of a schema file: sorted keys, 2-space indent, newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@dataclass(frozen=True, slots=True)
class SchemaDrift:
    """How the files in a schemas directory differ from the models."""

    missing: tuple[str, ...] = ()
    differing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not (self.missing or self.differing or self.extra)

    def lines(self) -> list[str]:
        return (
            [f"missing: {p}" for p in self.missing]
            + [f"differs: {p}" for p in self.differing]
            + [f"extra: {p}" for p in self.extra]
        )


def _generated_files(directory: Path) -> set[str]:
    """Schema files already in `directory` (`<type>/v<N>.json`; examples are not schemas)."""
    found = set()
    for path in directory.glob("*/v*.json"):
        if re.fullmatch(r"v[1-9][0-9]*\.json", path.name) and path.parent.name != "examples":
            found.add(path.relative_to(directory).as_posix())
    return found


def check_schemas(directory: Path, registry: SchemaRegistry | None = None) -> SchemaDrift:
    """Compare `directory` with what `export_schemas` would write."""
    expected = {p: render(d) for p, d in (registry or REGISTRY).documents().items()}
    present = _generated_files(directory)
    missing = sorted(p for p in expected if p not in present)
    differing = sorted(
        p
        for p in expected
        if p in present and (directory / p).read_text(encoding="utf-8") != expected[p]
    )
    extra = sorted(present - expected.keys())
    return SchemaDrift(tuple(missing), tuple(differing), tuple(extra))


def export_schemas(directory: Path, registry: SchemaRegistry | None = None) -> SchemaDrift:
    """Write every schema file into `directory`, remove stale ones; returns what changed."""
    drift = check_schemas(directory, registry)
    for path, document in (registry or REGISTRY).documents().items():
        target = directory / path
        if path in drift.missing or path in drift.differing:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(render(document), encoding="utf-8")
    for path in drift.extra:
        (directory / path).unlink()
    return drift


REGISTRY = SchemaRegistry(V1_MODELS)
"""The registry of this exchange's payload schemas."""

CURRENT_VERSIONS: Mapping[MessageType, int] = REGISTRY.current_versions


def schema_ref(kind: MessageType | str) -> str:
    """'<type>/<current major>', the header `schema` for new messages of `kind`."""
    return REGISTRY.schema_ref(kind)


def model_for(kind: MessageType | str, major: int) -> type[BaseModel]:
    """The payload model of `kind` at `major` (current or previous), else schema.unknown."""
    return REGISTRY.model_for(kind, major)


def validate_payload(kind: str, schema_ref: str, payload: Mapping[str, Any]) -> BaseModel:
    """Validate a payload against the schema its header names; raises `SchemaError`."""
    return REGISTRY.validate_payload(kind, schema_ref, payload)
