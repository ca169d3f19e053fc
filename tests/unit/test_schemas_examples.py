"""The shared examples, judged by two independent validators: the pydantic models and the
`jsonschema` package reading the exported files. Their verdicts must agree on every example
and on mutations of every valid example (a required field removed, a wrong type, an unknown
field, a value out of range or too long): a partner's validator refuses what we refuse.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator, FormatChecker

from exchange.errors import SchemaError
from exchange.model.common import MessageType
from exchange.schemas import validate_payload

ROOT = Path(__file__).resolve().parents[2] / "schemas"
EXAMPLES = ROOT / "examples"

# Rules that JSON Schema cannot express: only the models check them (each schema's description
# says so). For these examples the test asserts exactly that gap: the model refuses, the JSON
# Schema accepts. If a future schema learns the rule, move the example out of this list.
MODEL_ONLY = {
    "asset-inquiry/invalid/holder-ref-names-no-subject.json": "JSON Schema cannot follow a "
    "reference from an asset's holders to the ref of a subject",
    "freeze-notice/invalid/offence-committed-ends-before-it-starts.json": "JSON Schema cannot "
    "compare two dates",
}


def _iban_is_valid(value: object) -> bool:
    # Written here independently of exchange.model.values: ISO 13616 mod 97-10.
    if not isinstance(value, str):
        return True
    digits = "".join(str(int(ch, 36)) for ch in value[4:] + value[:4])
    return int(digits) % 97 == 1


def _format_checker() -> FormatChecker:
    checker = FormatChecker()
    for name, (func, raises) in Draft202012Validator.FORMAT_CHECKER.checkers.items():
        checker.checks(name, raises)(func)
    checker.checks("iban")(_iban_is_valid)
    return checker


@cache
def json_schema_validator(kind: str) -> Draft202012Validator:
    schema = json.loads((ROOT / kind / "v1.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=_format_checker())


def model_accepts(kind: str, document: Any) -> bool:
    try:
        validate_payload(kind, f"{kind}/1", document)
    except SchemaError:
        return False
    return True


def schema_accepts(kind: str, document: Any) -> bool:
    return bool(json_schema_validator(kind).is_valid(document))


def _example_files(verdict: str) -> list[Path]:
    return sorted(EXAMPLES.glob(f"*/{verdict}/*.json"))


def _label(path: Path) -> str:
    return path.relative_to(EXAMPLES).as_posix()


def test_the_format_checker_really_checks_dates_times_and_ibans() -> None:
    # Without rfc3339-validator, jsonschema silently skips "date-time": guard against that.
    checker = _format_checker()
    assert not checker.conforms("2026-11-22T09:30:00", "date-time")
    assert checker.conforms("2026-11-22T09:30:00Z", "date-time")
    assert not checker.conforms("2026-02-30", "date")
    assert not checker.conforms("AL36202111090000000001234567", "iban")
    assert checker.conforms("AL35202111090000000001234567", "iban")


@pytest.mark.parametrize("kind", [t.value for t in MessageType])
def test_every_type_has_valid_and_invalid_examples(kind: str) -> None:
    assert len(list((EXAMPLES / kind / "valid").glob("*.json"))) >= 2
    assert len(list((EXAMPLES / kind / "invalid").glob("*.json"))) >= 4


@pytest.mark.parametrize("path", _example_files("valid"), ids=_label)
def test_valid_examples_are_accepted_by_both_validators(path: Path) -> None:
    kind = path.parents[1].name
    document = json.loads(path.read_text(encoding="utf-8"))
    assert model_accepts(kind, document)
    assert schema_accepts(kind, document), list(json_schema_validator(kind).iter_errors(document))


@pytest.mark.parametrize("path", _example_files("invalid"), ids=_label)
def test_invalid_examples_are_refused_by_both_validators(path: Path) -> None:
    kind = path.parents[1].name
    document = json.loads(path.read_text(encoding="utf-8"))
    assert not model_accepts(kind, document)
    if _label(path) in MODEL_ONLY:
        assert schema_accepts(kind, document), "the schema now checks this: update MODEL_ONLY"
    else:
        assert not schema_accepts(kind, document)


def test_model_only_exceptions_exist_and_are_few() -> None:
    for label in MODEL_ONLY:
        assert (EXAMPLES / label).is_file()
    assert len(MODEL_ONLY) <= 2


# Mutations -------------------------------------------------------------------------------


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        target = root["$defs"][schema["$ref"].removeprefix("#/$defs/")]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _schema_for(instance: Any, schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """The schema that governs `instance`: through $ref, nullable anyOf, discriminated oneOf."""
    schema = _resolve(schema, root)
    if "anyOf" in schema and "properties" not in schema:
        branches = [_resolve(b, root) for b in schema["anyOf"]]
        schema = next(b for b in branches if b.get("type") != "null")
    if "oneOf" in schema:
        tag = schema["discriminator"]["propertyName"]
        target = schema["discriminator"]["mapping"][instance[tag]]
        schema = _resolve({"$ref": target}, root)
    return schema


def _walk(
    instance: Any, schema: dict[str, Any], root: dict[str, Any], path: tuple[Any, ...] = ()
) -> Iterator[tuple[tuple[Any, ...], Any, dict[str, Any]]]:
    schema = _schema_for(instance, schema, root)
    yield path, instance, schema
    if isinstance(instance, dict):
        for key, value in instance.items():
            if value is not None:
                yield from _walk(value, schema["properties"][key], root, (*path, key))
    elif isinstance(instance, list):
        for index, value in enumerate(instance):
            yield from _walk(value, schema["items"], root, (*path, index))


def _shape(document: Any, path: tuple[Any, ...]) -> str:
    """The path with list positions replaced by the item's kind: items of one kind in one
    list share a schema, so mutating one of them covers the others."""
    steps, node = [], document
    for step in path:
        node = node[step]
        if isinstance(step, int):
            steps.append(f"*{node.get('kind', '')}" if isinstance(node, dict) else "*")
        else:
            steps.append(step)
    return "/".join(steps)


def _copy(document: Any) -> Any:
    return orjson.loads(orjson.dumps(document))  # a deep copy, several times faster


def _replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    mutated = _copy(document)
    if not path:
        return value
    node = mutated
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return mutated


def _removed(document: Any, path: tuple[Any, ...]) -> Any:
    mutated = _copy(document)
    node = mutated
    for step in path[:-1]:
        node = node[step]
    del node[path[-1]]
    return mutated


def mutations(document: Any, root: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Broken copies of a valid document, each with one defect every validator must see.

    Every field is mutated once per kind of defect (repeated list items of the same kind only
    once), which keeps the run to seconds while covering each schema location."""
    seen: set[str] = set()
    for path, value, schema in _walk(document, root, root):
        shape = _shape(document, path)
        if shape in seen:
            continue
        seen.add(shape)
        where = "/" + "/".join(str(p) for p in path)
        yield from _defects(document, path, where, value, schema)


def _defects(
    document: Any, path: tuple[Any, ...], where: str, value: Any, schema: dict[str, Any]
) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key in schema.get("required", []):
            yield f"{where}: required {key!r} removed", _removed(document, (*path, key))
        yield f"{where}: unknown field", _replaced(document, (*path, "unexpected"), "x")
        if path:
            yield f"{where}: object replaced by a string", _replaced(document, path, "x")
    elif isinstance(value, list):
        yield f"{where}: list replaced by an object", _replaced(document, path, {"0": 1})
        if value and "maxItems" in schema:
            longer = value + [value[0]] * (schema["maxItems"] + 1 - len(value))
            yield f"{where}: more than maxItems", _replaced(document, path, longer)
    elif isinstance(value, bool):
        yield f"{where}: boolean as a string", _replaced(document, path, str(value).lower())
    elif isinstance(value, int):
        yield f"{where}: integer as a string", _replaced(document, path, str(value))
        if "maximum" in schema:
            yield f"{where}: above maximum", _replaced(document, path, schema["maximum"] + 1)
        if "minimum" in schema:
            yield f"{where}: below minimum", _replaced(document, path, schema["minimum"] - 1)
    elif isinstance(value, str):
        yield f"{where}: string as a number", _replaced(document, path, 12345)
        if "maxLength" in schema:
            too_long = "7" * (schema["maxLength"] + 1)
            yield f"{where}: longer than maxLength", _replaced(document, path, too_long)
        if "enum" in schema or "const" in schema:
            yield f"{where}: value outside the list", _replaced(document, path, "zz-unknown")


@pytest.mark.parametrize("path", _example_files("valid"), ids=_label)
def test_mutations_of_valid_examples_are_refused_by_both(path: Path) -> None:
    kind = path.parents[1].name
    document = json.loads(path.read_text(encoding="utf-8"))
    root = json_schema_validator(kind).schema
    accepted = []
    count = 0
    for label, mutated in mutations(document, root):
        count += 1
        verdicts = (model_accepts(kind, mutated), schema_accepts(kind, mutated))
        if verdicts != (False, False):
            accepted.append(f"{label}: model={verdicts[0]} schema={verdicts[1]}")
    assert count >= 8
    assert accepted == []
