"""Building blocks of the payload models: the strict base class, named types, cross-field rules.

A named type (a `TypeAliasType` over `NamedString` or `NamedType`) appears once under
`$defs` in the exported JSON Schema. A cross-field rule is declared once and enforced twice:
by the pydantic model and, rendered as `if`/`then`/`anyOf`, by any JSON Schema 2020-12
validator a partner uses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Protocol, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

JsonDict = dict[str, Any]


class NamedType:
    """Annotated marker that fixes a type's JSON Schema and adds checks JSON input needs.

    Used inside `TypeAliasType("Name", Annotated[...])`, which gives the type its own entry
    under `$defs`. `before` runs on the raw input (to refuse what JSON Schema refuses, e.g. a
    number where a date string is required); `after` runs on the parsed value (checks that a
    pattern cannot express).
    """

    def __init__(
        self,
        json_schema: Mapping[str, Any],
        *,
        before: Callable[[Any], Any] | None = None,
        after: Callable[[Any], Any] | None = None,
    ) -> None:
        self.json_schema = dict(json_schema)
        self.before = before
        self.after = after

    def inner_schema(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return handler(source)

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        schema = self.inner_schema(source, handler)
        if self.after is not None:
            schema = core_schema.no_info_after_validator_function(self.after, schema)
        if self.before is not None:
            schema = core_schema.no_info_before_validator_function(self.before, schema)
        return schema

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return dict(self.json_schema)


class NamedString(NamedType):
    """A string type with length bounds, an optional pattern and an optional list of values.

    The same parameters build the pydantic check and the JSON Schema, so they cannot drift.
    """

    def __init__(
        self,
        what: str,
        *,
        description: str,
        max_length: int,
        min_length: int = 1,
        pattern: str | None = None,
        allowed: Sequence[str] = (),
        check: Callable[[str], str] | None = None,
        format: str | None = None,
        examples: Sequence[str] = (),
    ) -> None:
        js: JsonDict = {
            "type": "string",
            "description": description,
            "minLength": min_length,
            "maxLength": max_length,
        }
        if pattern is not None:
            js["pattern"] = pattern
        if allowed:
            js["enum"] = sorted(allowed)
        if format is not None:
            js["format"] = format
        if examples:
            js["examples"] = list(examples)
        self.what = what
        self.allowed = frozenset(allowed)
        self.min_length = min_length
        self.max_length = max_length
        self.pattern = pattern
        self.extra_check = check if allowed else None
        super().__init__(js, after=self._check_allowed if allowed else check)

    def inner_schema(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.str_schema(
            min_length=self.min_length, max_length=self.max_length, pattern=self.pattern
        )

    def _check_allowed(self, value: str) -> str:
        if value not in self.allowed:
            raise ValueError(f"{value!r} is not {self.what}")
        return value if self.extra_check is None else self.extra_check(value)


class Part(BaseModel):
    """A strict, immutable part of a payload: unknown fields are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Rule(Protocol):
    """A cross-field rule: its JSON Schema form (None if inexpressible) and its check.

    `holds` is the fast check run on every validation; `violations` explains a failure.
    """

    @property
    def note(self) -> str: ...

    def json_schema(self) -> JsonDict | None: ...

    def holds(self, part: BaseModel) -> bool: ...

    def violations(self, part: BaseModel) -> list[str]: ...


def _value(part: BaseModel, field: str) -> Any:
    value = getattr(part, field)
    return value.value if isinstance(value, Enum) else value


def _present(value: Any) -> bool:
    return value is not None and value != []


def _if_one_of(field: str, values: Sequence[str]) -> JsonDict:
    return {"required": [field], "properties": {field: {"enum": list(values)}}}


@dataclass(frozen=True, slots=True)
class RequiredWhen:
    """When `field` has one of `values`, the fields in `present` must be given (not null) and
    the lists in `non_empty` must hold at least one item."""

    field: str
    values: tuple[str, ...]
    present: tuple[str, ...] = ()
    non_empty: tuple[str, ...] = ()

    @property
    def note(self) -> str:
        needed = ", ".join((*self.present, *self.non_empty))
        return f"when {self.field} is {' or '.join(self.values)}: {needed} required"

    def json_schema(self) -> JsonDict:
        properties: JsonDict = {f: {"not": {"type": "null"}} for f in self.present}
        properties.update({f: {"type": "array", "minItems": 1} for f in self.non_empty})
        then = {"required": [*self.present, *self.non_empty], "properties": properties}
        return {"if": _if_one_of(self.field, self.values), "then": then}

    def holds(self, part: BaseModel) -> bool:
        # Enum members are StrEnum: they compare equal to their string values.
        if getattr(part, self.field) not in self.values:
            return True
        return all(getattr(part, f) is not None for f in self.present) and all(
            getattr(part, f) for f in self.non_empty
        )

    def violations(self, part: BaseModel) -> list[str]:
        if self.holds(part):
            return []
        state = f"when {self.field} is {_value(part, self.field)!r}"
        missing = [f for f in (*self.present, *self.non_empty) if not _present(getattr(part, f))]
        return [f"{f} is required {state}" for f in missing]


@dataclass(frozen=True, slots=True)
class AbsentWhen:
    """When `field` has one of `values`, the fields in `absent` must be missing or null."""

    field: str
    values: tuple[str, ...]
    absent: tuple[str, ...]

    @property
    def note(self) -> str:
        return f"when {self.field} is {' or '.join(self.values)}: no {', '.join(self.absent)}"

    def json_schema(self) -> JsonDict:
        then = {"properties": {f: {"type": "null"} for f in self.absent}}
        return {"if": _if_one_of(self.field, self.values), "then": then}

    def holds(self, part: BaseModel) -> bool:
        if getattr(part, self.field) not in self.values:
            return True
        return all(getattr(part, f) is None for f in self.absent)

    def violations(self, part: BaseModel) -> list[str]:
        if self.holds(part):
            return []
        state = f"when {self.field} is {_value(part, self.field)!r}"
        return [f"{f} must be absent {state}" for f in self.absent if getattr(part, f) is not None]


@dataclass(frozen=True, slots=True)
class AnyPresent:
    """At least one of `fields` must be given (not null)."""

    fields: tuple[str, ...]

    @property
    def note(self) -> str:
        return f"at least one of {', '.join(self.fields)} required"

    def json_schema(self) -> JsonDict:
        return {
            "anyOf": [
                {"required": [f], "properties": {f: {"not": {"type": "null"}}}} for f in self.fields
            ]
        }

    def holds(self, part: BaseModel) -> bool:
        return any(_present(getattr(part, name)) for name in self.fields)

    def violations(self, part: BaseModel) -> list[str]:
        if self.holds(part):
            return []
        return [f"at least one of {', '.join(self.fields)} is required"]


@dataclass(frozen=True, slots=True)
class PatternWhen:
    """`field` (a string, or a list of strings) must match the pattern chosen by `selector`'s
    value, e.g. the address format of a blockchain. Unlisted selector values are free."""

    field: str
    selector: str
    patterns: Mapping[str, str]
    each: bool = False  # `field` is a list: every item must match

    @property
    def note(self) -> str:
        return f"{self.field} must match the pattern of its {self.selector}"

    def json_schema(self) -> JsonDict:
        clauses = []
        for value, pattern in sorted(self.patterns.items()):
            rule: JsonDict = {"pattern": pattern}
            then = {"properties": {self.field: {"items": rule} if self.each else rule}}
            clauses.append({"if": _if_one_of(self.selector, [value]), "then": then})
        return {"allOf": clauses}

    def _bad(self, part: BaseModel) -> list[str]:
        pattern = self.patterns.get(getattr(part, self.selector))
        value = getattr(part, self.field)
        if pattern is None or value is None:
            return []
        items = value if isinstance(value, list) else [value]
        return [v for v in items if re.search(pattern, v) is None]

    def holds(self, part: BaseModel) -> bool:
        return not self._bad(part)

    def violations(self, part: BaseModel) -> list[str]:
        kind = _value(part, self.selector)
        return [f"{self.field} {v!r} is not a valid {kind} value" for v in self._bad(part)]


@dataclass(frozen=True, slots=True)
class NotBefore:
    """Date `later` must not be before date `earlier`. JSON Schema cannot compare two values:
    only the reference implementation checks this (the schema's description says so)."""

    earlier: str
    later: str

    @property
    def note(self) -> str:
        return f"{self.later} must not be before {self.earlier}"

    def json_schema(self) -> None:
        return None

    def holds(self, part: BaseModel) -> bool:
        first, second = getattr(part, self.earlier), getattr(part, self.later)
        return first is None or second is None or second >= first

    def violations(self, part: BaseModel) -> list[str]:
        if self.holds(part):
            return []
        first, second = getattr(part, self.earlier), getattr(part, self.later)
        return [f"{self.later} {second} is before {self.earlier} {first}"]


def _render_rules(schema: JsonDict, cls: type[Any]) -> None:
    rules: tuple[Rule, ...] = getattr(cls, "RULES", ())
    rendered = [js for rule in rules if (js := rule.json_schema()) is not None]
    if rendered:
        schema["allOf"] = rendered
    unchecked = [rule.note for rule in rules if rule.json_schema() is None]
    if unchecked:
        note = "Not expressible in JSON Schema, checked by the reference implementation: "
        schema["description"] = f"{schema.get('description', '').rstrip()}\n\n{note}" + (
            "; ".join(unchecked) + "."
        )


class RuledPart(Part):
    """A part with cross-field `RULES`, enforced on validation and exported to JSON Schema."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_render_rules)

    RULES: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        for rule in self.RULES:
            if not rule.holds(self):
                problems = [p for rule in self.RULES for p in rule.violations(self)]
                raise ValueError("; ".join(problems))
        return self


def _unique(items: list[Any]) -> list[Any]:
    if len(set(items)) != len(items):
        raise ValueError("items must not repeat")
    return items


class UniqueItems:
    """Annotated marker for a list whose items must not repeat (JSON Schema `uniqueItems`)."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_after_validator_function(_unique, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["uniqueItems"] = True
        return json_schema
