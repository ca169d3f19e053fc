"""Forms generated from a payload's JSON Schema, and the JSON read back from what was posted.

`FormBuilder(document)` turns the schema of one message type (`schemas/<type>/v1.json`, as
the registry exports it) into a tree of `Field`s, filled with a JSON value: objects become
fieldsets (optional ones collapsed in `<details>`), arrays lists whose items can be added
and removed, `oneOf` with a discriminator a choice whose fields follow the chosen kind,
enums selects, booleans checkboxes, long text areas. Form names are the JSON paths joined
by dots (`payload.subjects.0.name.family_name`), so the server's field errors, which name
JSON pointers (`/payload/subjects/0/name/family_name`), land next to their input.
`FormBuilder.collect` reads a posted form back into JSON by walking the same schema: empty
inputs are absent, an optional object with nothing filled in is absent, list items keep
their order (gaps left by removed items close up). It never validates: the gateway does,
and its refusal is what the form shows.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from exchange.model.common import MessageType
from exchange.schemas import model_for, payload_document, schema_ref

NEW = "__new__"
"""The index of a list item template, replaced by the next index when an item is added."""
LONG_TEXT = 300
"""Strings allowed to be longer than this get a text area."""
MAX_SELECT = 24
"""Enumerations longer than this (countries, currencies, languages) are typed, with their
values offered from a `<datalist>` written once per page, rather than a select each."""
MISSING: Any = object()
WHEN = {
    "urgency_grounds": ("priority", ("urgent",)),
    "directly_accessible": ("priority", ("urgent",)),
}
"""Payload fields shown only when a field of the message has a value (they apply to urgent
requests only). Fields a schema requires `if` another has some values (`allOf` of
`if`/`then`) are shown only then as well. Without script every field is shown."""
SINGULAR = {
    "assets_sought": "asset",
    "assets": "asset",
    "legal_basis": "legal basis",
    "aliases": "alias",
    "addresses": "address",
    "tx_hashes": "transaction hash",
    "categories": "category",
    "countries": "country",
    "nationalities": "nationality",
    "beneficial_owners": "beneficial owner",
    "properties": "property",
}


@dataclass
class Field:
    """One element of a generated form (see the module for the kinds)."""

    kind: str  # text, textarea, date, number, select, checkbox, group, list, choice
    path: str
    label: str
    hint: str | None = None
    required: bool = False
    value: Any = None
    options: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()  # select: what each option says, when not its value
    maxlength: int | None = None
    placeholder: str | None = None
    datalist: str | None = None  # text: the id of the datalist of its values
    errors: list[str] = field(default_factory=list)
    children: list[Field] = field(default_factory=list)
    template: Field | None = None  # list: a new item
    item_label: str = "item"  # list: what one item is called
    number: int = 0  # list item: its position, from 1
    in_list: bool = False  # an item of a list
    discriminator: str = "kind"  # choice
    variants: dict[str, list[Field]] = field(default_factory=dict)  # choice: other kinds
    when: tuple[str, tuple[str, ...]] | None = None  # shown when this field has these values
    min_items: int = 0
    max_items: int | None = None

    @property
    def id(self) -> str:
        return f"f.{self.path}"

    @property
    def open(self) -> bool:
        """An optional group starts expanded when something in it is filled in or wrong."""
        return bool(self.errors) or any(
            c.open if c.kind in ("group", "list", "choice") else _filled(c.value)
            for c in self.children
        )

    def walk(self) -> Iterable[Field]:
        yield self
        for child in self.children:
            yield from child.walk()


def _filled(value: Any) -> bool:
    return value not in (None, "", False, [], {})


ALWAYS_SHOWN = frozenset({"remarks"})
"""Fields a schema requires for some values of another that are useful with any value."""


def conditional(schema: Mapping[str, Any]) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Properties an object's schema requires only when one of its properties has certain
    values (`allOf: [{if: {properties: {P: {enum: [...]}}}, then: {required: [...]}}]`):
    property -> (P, the values). `ALWAYS_SHOWN` fields are not conditional."""
    found: dict[str, tuple[str, tuple[str, ...]]] = {}
    for rule in schema.get("allOf", ()):
        condition, then = rule.get("if", {}), rule.get("then", {})
        tested = condition.get("properties", {})
        if len(tested) != 1 or not then.get("required"):
            continue
        ((control, test),) = tested.items()
        allowed = tuple(str(v) for v in test.get("enum", ()))
        for name in then["required"]:
            if name != control and allowed and name not in ALWAYS_SHOWN:
                known = found.get(name, (control, ()))[1]
                found[name] = (control, known + tuple(v for v in allowed if v not in known))
    return found


def singular(name: str) -> str:
    if name in SINGULAR:
        return SINGULAR[name]
    words = name.replace("_", " ")
    if words.endswith("ies"):
        return words[:-3] + "y"
    if words.endswith("s") and not words.endswith("ss"):
        return words[:-1]
    return f"{words} item"


def _label(name: str) -> str:
    text = name.replace("_", " ")
    return text[:1].upper() + text[1:]


@functools.cache
def payload_schema(kind: str) -> dict[str, Any]:
    """The current JSON Schema of `kind`'s payload (a copy callers may keep)."""
    message_type = MessageType(kind)
    major = int(schema_ref(message_type).rsplit("/", 1)[1])
    return payload_document(message_type, major, model_for(message_type, major))


class FormBuilder:
    """Fields from one payload schema, and the JSON of a posted form."""

    def __init__(self, document: Mapping[str, Any], prefix: str = "payload") -> None:
        self.document = copy.deepcopy(dict(document))
        self.defs: dict[str, Any] = self.document.get("$defs", {})
        self.prefix = prefix
        self.datalists: dict[str, tuple[str, ...]] = {}
        self._lists: dict[tuple[str, ...], str] = {}

    # -- schema ---------------------------------------------------------------------------

    def resolve(self, schema: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """The schema behind references and `anyOf [X, null]`, and whether null is allowed."""
        nullable = False
        current = dict(schema)
        for _ in range(32):
            if "$ref" in current:
                target = self.defs[current["$ref"].rsplit("/", 1)[1]]
                outer = {k: v for k, v in current.items() if k != "$ref"}
                current = {**target, **outer}
                continue
            alternatives = current.get("anyOf")
            if isinstance(alternatives, list):
                real = [a for a in alternatives if a.get("type") != "null"]
                if len(real) == 1 and len(real) < len(alternatives):
                    nullable = True
                    outer = {k: v for k, v in current.items() if k not in ("anyOf", "default")}
                    current = {**real[0], **outer}
                    continue
            break
        return current, nullable

    def variants(self, schema: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """A discriminated `oneOf`: each kind's object schema."""
        mapping = schema.get("discriminator", {}).get("mapping", {})
        order = [option.get("$ref") for option in schema.get("oneOf", ())]
        tags = sorted(mapping, key=lambda t: order.index(mapping[t]) if mapping[t] in order else 99)
        return {tag: self.resolve({"$ref": mapping[tag]})[0] for tag in tags}

    # -- building -------------------------------------------------------------------------

    def form(self, value: Any) -> Field:
        """The payload's fields, filled with `value` (a JSON object, or None for empty)."""
        return self.build(self.document, self.prefix, "Payload", True, value)

    def build(
        self, schema: Mapping[str, Any], path: str, name: str, required: bool, value: Any
    ) -> Field:
        resolved, nullable = self.resolve(schema)
        required = required and not nullable
        hint = resolved.get("description")
        label = _label(name)
        if "oneOf" in resolved and "discriminator" in resolved:
            return self._choice(resolved, path, label, hint, required, value)
        kind = resolved.get("type")
        if kind == "object":
            return self._group(resolved, path, label, hint, required, value)
        if kind == "array":
            return self._list(resolved, path, name, label, hint, required, value)
        return self._scalar(resolved, path, label, hint, required, value, nullable)

    def _group(
        self,
        schema: Mapping[str, Any],
        path: str,
        label: str,
        hint: str | None,
        required: bool,
        value: Any,
        skip: str | None = None,
    ) -> Field:
        values = value if isinstance(value, dict) else {}
        needed = set(schema.get("required", ()))
        conditions = conditional(schema)
        group = Field("group", path, label, hint, required)
        for name, prop in schema.get("properties", {}).items():
            if name == skip or "const" in prop:
                continue
            child = self.build(prop, f"{path}.{name}", name, name in needed, values.get(name))
            if path == self.prefix and name in WHEN:
                child.when = WHEN[name]
            elif name in conditions:
                control, allowed = conditions[name]
                child.when = (f"{path}.{control}", allowed)
            group.children.append(child)
        return group

    def _choice(
        self,
        schema: Mapping[str, Any],
        path: str,
        label: str,
        hint: str | None,
        required: bool,
        value: Any,
    ) -> Field:
        kinds = self.variants(schema)
        tag_name = schema.get("discriminator", {}).get("propertyName", "kind")
        values = value if isinstance(value, dict) else {}
        chosen = values.get(tag_name)
        selected = chosen if isinstance(chosen, str) and chosen in kinds else next(iter(kinds))
        choice = Field("choice", path, label, hint, required, value=selected, options=tuple(kinds))
        choice.discriminator = tag_name
        for tag, variant in kinds.items():
            filled = values if tag == selected else None
            group = self._group(variant, path, label, None, True, filled, skip=tag_name)
            if tag == selected:
                choice.children = group.children
            else:
                choice.variants[tag] = group.children
        return choice

    def _list(
        self,
        schema: Mapping[str, Any],
        path: str,
        name: str,
        label: str,
        hint: str | None,
        required: bool,
        value: Any,
    ) -> Field:
        items_schema = schema.get("items", {})
        minimum = int(schema.get("minItems", 0))
        values = list(value) if isinstance(value, list) else []
        if not values and value is None and required:
            values = [None] * max(minimum, 1)
        listing = Field("list", path, label, hint, required and minimum > 0)
        listing.item_label = singular(name)
        listing.min_items, listing.max_items = minimum, schema.get("maxItems")
        label_of_item = _label(listing.item_label)
        for index, item in enumerate(values):
            child = self.build(items_schema, f"{path}.{index}", name, True, item)
            child.label, child.number, child.in_list = label_of_item, index + 1, True
            listing.children.append(child)
        template = self.build(items_schema, f"{path}.{NEW}", name, True, None)
        template.label, template.in_list = label_of_item, True
        listing.template = template
        return listing

    def _scalar(
        self,
        schema: Mapping[str, Any],
        path: str,
        label: str,
        hint: str | None,
        required: bool,
        value: Any,
        nullable: bool = False,
    ) -> Field:
        kind = schema.get("type")
        text = None if value is None else value
        scalar = Field("text", path, label, hint, required, value=text)
        if "enum" in schema:
            options = tuple(str(o) for o in schema["enum"])
            if len(options) > MAX_SELECT:
                name = self._lists.setdefault(options, f"values-{len(self._lists) + 1}")
                self.datalists[name] = options
                scalar.datalist = name
                scalar.maxlength = max(len(o) for o in options)
                return scalar
            scalar.kind, scalar.options = "select", options
        elif kind == "boolean" and nullable:  # yes, no, or not said
            scalar.kind, scalar.options, scalar.labels = "select", ("true", "false"), ("yes", "no")
            scalar.value = None if value is None else ("true" if value is True else "false")
        elif kind == "boolean":
            scalar.kind = "checkbox"
            scalar.value = value is True or (value is None and schema.get("default") is True)
        elif kind in ("integer", "number"):
            scalar.kind = "number"
        elif schema.get("format") == "date":
            scalar.kind = "date"
        elif int(schema.get("maxLength", 0)) > LONG_TEXT:
            scalar.kind = "textarea"
        if "maxLength" in schema:
            scalar.maxlength = int(schema["maxLength"])
        examples = schema.get("examples")
        if scalar.kind in ("text", "textarea") and isinstance(examples, list) and examples:
            scalar.placeholder = f"e.g. {examples[0]}"
        return scalar

    # -- reading order ---------------------------------------------------------------------

    def ordered(self, value: Any, schema: Mapping[str, Any] | None = None, depth: int = 0) -> Any:
        """`value` (a payload, or part of one) with each object's keys in the order of its
        schema's properties, the order of the form; keys the schema does not know last."""
        if depth > 64:
            return value
        resolved, _ = self.resolve(self.document if schema is None else schema)
        if isinstance(value, list):
            items = resolved.get("items", {})
            return [self.ordered(v, items, depth + 1) for v in value]
        if not isinstance(value, dict):
            return value
        if "oneOf" in resolved and "discriminator" in resolved:
            tag_name = resolved["discriminator"].get("propertyName", "kind")
            resolved = self.variants(resolved).get(str(value.get(tag_name)), {})
        properties = resolved.get("properties", {})
        known = [k for k in properties if k in value]
        rest = sorted(k for k in value if k not in properties)
        return {k: self.ordered(value[k], properties.get(k, {}), depth + 1) for k in known + rest}

    # -- reading a posted form ------------------------------------------------------------

    def collect(self, form: Mapping[str, str]) -> dict[str, Any]:
        """The payload a posted form describes (never MISSING: at least an empty object)."""
        posted = _Posted(form)
        value = self._collect(self.document, self.prefix, posted, True)
        return value if isinstance(value, dict) else {}

    def _collect(
        self, schema: Mapping[str, Any], path: str, posted: _Posted, required: bool
    ) -> Any:
        resolved, nullable = self.resolve(schema)
        required = required and not nullable
        if "oneOf" in resolved and "discriminator" in resolved:
            kinds = self.variants(resolved)
            tag_name = resolved["discriminator"].get("propertyName", "kind")
            tag = posted.get(f"{path}.{tag_name}")
            if tag not in kinds:
                return {} if required or posted.has(path) else MISSING
            value = self._object(kinds[tag], path, posted, True, skip=tag_name)
            return {tag_name: tag, **value}
        kind = resolved.get("type")
        if kind == "object":
            return self._object(resolved, path, posted, required)
        if kind == "array":
            items = resolved.get("items", {})
            values = [
                self._collect(items, f"{path}.{i}", posted, True) for i in posted.indices(path)
            ]
            values = [v for v in values if v is not MISSING]
            return values if values or required else MISSING
        raw = posted.get(path)
        if kind == "boolean":
            if raw is None:  # an unchecked box: false, said only where it is not the default
                return False if required or resolved.get("default") is True else MISSING
            if raw == "":  # a yes-or-no select left at "not said"
                return MISSING
            return raw in ("on", "true", "1")
        if raw is None or raw == "":
            return MISSING
        if kind == "integer" and re.fullmatch(r"-?[0-9]{1,18}", raw.strip()):
            return int(raw.strip())
        return raw.replace("\r\n", "\n")

    def _object(
        self,
        schema: Mapping[str, Any],
        path: str,
        posted: _Posted,
        required: bool,
        skip: str | None = None,
    ) -> Any:
        needed = set(schema.get("required", ()))
        value: dict[str, Any] = {}
        constants: dict[str, Any] = {}
        for name, prop in schema.get("properties", {}).items():
            if name == skip:
                continue
            if "const" in prop:
                constants[name] = prop["const"]
                continue
            got = self._collect(prop, f"{path}.{name}", posted, name in needed)
            if got is not MISSING:
                value[name] = got
        meaningful = any(not (v is False or v == [] or v == {}) for v in value.values())
        return {**constants, **value} if meaningful or required else MISSING


class _Posted:
    """A posted form, with the list indices present under each name."""

    def __init__(self, form: Mapping[str, str]) -> None:
        self.form = form
        self._indices: dict[str, set[int]] = {}
        self._prefixes: set[str] = set()
        for name in form:
            parts = name.split(".")
            for i in range(1, len(parts)):
                parent = ".".join(parts[:i])
                self._prefixes.add(parent)
                if parts[i].isdigit() and len(parts[i]) <= 4:
                    self._indices.setdefault(parent, set()).add(int(parts[i]))

    def get(self, name: str) -> str | None:
        value = self.form.get(name)
        return value if isinstance(value, str) else None

    def has(self, prefix: str) -> bool:
        return prefix in self._prefixes

    def indices(self, path: str) -> list[int]:
        return sorted(self._indices.get(path, ()))
