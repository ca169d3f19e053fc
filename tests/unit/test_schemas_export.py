"""The exported JSON Schema files: committed and current, valid JSON Schema 2020-12,
deterministic, bounded, documented; and the `exchange schemas` commands around them."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from jsonschema import Draft202012Validator
from pydantic import TypeAdapter, ValidationError

from exchange.cli import build_parser
from exchange.model.values import LINE_PATTERN, Line
from exchange.schemas import (
    JSON_SCHEMA_DIALECT,
    REGISTRY,
    SCHEMA_ID_BASE,
    check_schemas,
    export_schemas,
    render,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
EXAMPLES = SCHEMAS / "examples"
DOCUMENTS = REGISTRY.documents()
PAYLOAD_DOCUMENTS = {p: d for p, d in DOCUMENTS.items() if not p.startswith("envelope/")}


def run(*argv: str) -> int:
    """`exchange schemas ...` through the real dispatcher, without `cli.main`'s logging set-up
    (which would bind pytest's captured stderr for the rest of the session)."""
    try:
        args = build_parser().parse_args(["schemas", *argv])
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return int(args.func(args))


def nodes(schema: Any) -> Iterator[dict[str, Any]]:
    """Every subschema (and every other object) in a schema document."""
    if isinstance(schema, dict):
        yield schema
        for value in schema.values():
            yield from nodes(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from nodes(value)


def test_the_committed_schemas_match_the_models() -> None:
    drift = check_schemas(SCHEMAS)
    assert drift.ok, "\n".join(drift.lines()) + "\nrun `exchange schemas export`"


@pytest.mark.parametrize("path", sorted(DOCUMENTS))
def test_each_file_is_a_documented_json_schema_2020_12(path: str) -> None:
    document = DOCUMENTS[path]
    Draft202012Validator.check_schema(document)
    assert document["$schema"] == JSON_SCHEMA_DIALECT
    assert document["$id"] == f"{SCHEMA_ID_BASE}/{path}"
    assert document["title"]
    assert len(document["description"]) > 40
    assert document["type"] == "object"
    assert document["additionalProperties"] is False


@pytest.mark.parametrize("path", sorted(DOCUMENTS))
def test_every_reference_resolves_inside_the_document(path: str) -> None:
    document = DOCUMENTS[path]
    refs = [n["$ref"] for n in nodes(document) if isinstance(n.get("$ref"), str)]
    assert refs
    for ref in refs:
        assert ref.startswith("#/$defs/"), ref
        assert ref.removeprefix("#/$defs/") in document["$defs"], ref


@pytest.mark.parametrize("path", sorted(PAYLOAD_DOCUMENTS))
def test_every_string_and_list_is_bounded(path: str) -> None:
    # One request must not be able to exhaust memory: strings and arrays have upper bounds.
    for node in nodes(PAYLOAD_DOCUMENTS[path]):
        if node.get("type") == "string" and "enum" not in node and "const" not in node:
            assert "maxLength" in node, node
        if node.get("type") == "array" and "maxItems" not in node:
            assert node.get("minItems") == 1 and set(node) <= {"type", "minItems"}, node


@pytest.mark.parametrize("path", sorted(PAYLOAD_DOCUMENTS))
def test_every_integer_is_bounded_with_json_schema_keywords(path: str) -> None:
    # pydantic writes a bound it cannot translate as its own `ge`/`le`, which JSON Schema
    # ignores: a partner's validator would then accept any integer the reference refuses.
    for node in nodes(PAYLOAD_DOCUMENTS[path]):
        if node.get("type") == "integer":
            assert not {"ge", "le", "gt", "lt"} & set(node), node
            assert {"minimum", "maximum"} <= set(node), node


@pytest.mark.parametrize("path", sorted(DOCUMENTS))
def test_every_pattern_means_the_same_in_every_regex_dialect(path: str) -> None:
    # `\s`, `\d`, `\w` and `\b` match other characters in ECMA-262 (JSON Schema's dialect),
    # Python and Rust (pydantic's): a partner's validator would disagree with ours.
    for node in nodes(DOCUMENTS[path]):
        pattern = node.get("pattern")
        if isinstance(pattern, str):
            assert not re.search(r"\\[sdwbSDWB]", pattern), (path, pattern)


@pytest.mark.parametrize("space", ["\u0085", "\ufeff", "\u00a0", "\u2028", "\u3000", " ", "\t"])
def test_a_line_starting_with_a_space_is_refused_by_every_validator(space: str) -> None:
    # ours (pydantic, Rust regex), an ECMA-262 JSON Schema validator (schemathesis' own), and
    # Python's: all refuse the space first, and all take it inside a line.
    ecma = jsonschema_rs.validator_for({"type": "string", "pattern": LINE_PATTERN})
    for text, valid in ((f"{space}abc", False), (f"a{space}bc", space != "\t")):
        try:
            TypeAdapter(Line).validate_python(text)
            ours = True
        except ValidationError:
            ours = False
        assert ours == ecma.is_valid(text) == bool(re.search(LINE_PATTERN, text)) == valid


@pytest.mark.parametrize("path", sorted(PAYLOAD_DOCUMENTS))
def test_every_property_is_described(path: str) -> None:
    document = PAYLOAD_DOCUMENTS[path]
    for name, definition in [("(root)", document), *document["$defs"].items()]:
        for prop, schema in definition.get("properties", {}).items():
            assert schema.get("description"), f"{name}.{prop} has no description"


def test_rendering_is_byte_stable(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    export_schemas(first)
    export_schemas(second)
    for path in DOCUMENTS:
        text = (first / path).read_text(encoding="utf-8")
        assert text == (second / path).read_text(encoding="utf-8")
        assert text.endswith("}\n")
        assert text.startswith('{\n  "$comment"')  # keys sorted, two-space indent
        assert json.loads(text) == DOCUMENTS[path]
    assert render({"b": 1, "a": "Ș"}) == '{\n  "a": "Ș",\n  "b": 1\n}\n'


def test_check_reports_missing_differing_and_extra_files(tmp_path: Path) -> None:
    export_schemas(tmp_path)
    assert check_schemas(tmp_path).ok
    (tmp_path / "receipt" / "v1.json").unlink()
    changed = tmp_path / "case-update" / "v1.json"
    changed.write_text(changed.read_text(encoding="utf-8").replace("opened", "begun"), "utf-8")
    (tmp_path / "receipt" / "v7.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "examples" / "receipt").mkdir(parents=True)
    (tmp_path / "examples" / "receipt" / "v2.json").write_text("{}\n", encoding="utf-8")
    drift = check_schemas(tmp_path)
    assert drift.missing == ("receipt/v1.json",)
    assert drift.differing == ("case-update/v1.json",)
    assert drift.extra == ("receipt/v7.json",)  # examples are not schema files
    export_schemas(tmp_path)
    assert check_schemas(tmp_path).ok
    assert not (tmp_path / "receipt" / "v7.json").exists()


def test_cli_check_exits_1_and_lists_the_drift(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("export", "--dir", str(tmp_path)) == 0
    assert "9 schema files" in capsys.readouterr().out
    assert run("check", "--dir", str(tmp_path)) == 0
    (tmp_path / "freeze-notice" / "v1.json").write_text("{}\n", encoding="utf-8")
    assert run("check", "--dir", str(tmp_path)) == 1
    assert "differs: freeze-notice/v1.json" in capsys.readouterr().out
    assert run("check", "--dir", str(tmp_path / "nowhere")) == 2


def test_cli_validate_accepts_a_valid_payload(capsys: pytest.CaptureFixture[str]) -> None:
    path = EXAMPLES / "freeze-notice" / "valid" / "al-to-rs-urgent-accounts-apartment.json"
    assert run("validate", "--type", "freeze-notice", str(path)) == 0
    assert "valid freeze-notice/1" in capsys.readouterr().out


def test_cli_validate_prints_field_errors_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    path = EXAMPLES / "asset-inquiry" / "invalid" / "nationality-yu-not-iso-3166.json"
    assert run("validate", "--type", "asset-inquiry", str(path)) == 1
    out = capsys.readouterr().out
    assert "schema.invalid" in out
    assert "/payload/subjects/0/nationalities/0: 'YU' is not an ISO 3166-1" in out


@pytest.mark.parametrize(
    "args",
    [
        ["--type", "receipt", "missing.json"],  # no such file
        ["--type", "receipt", "not-json.json"],  # not JSON
        ["payload.json"],  # a bare payload needs --type
        ["--type", "receipt", "--version", "9", "payload.json"],  # unknown version
        ["--type", "wire-transfer", "payload.json"],  # unknown type (argparse)
    ],
)
def test_cli_validate_bad_usage_exits_2(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "not-json.json").write_text("{'single': 'quotes'}", encoding="utf-8")
    shutil.copy(EXAMPLES / "receipt" / "valid" / "accepted.json", tmp_path / "payload.json")
    assert run("validate", *args) == 2


def _envelope(payload: dict[str, Any], kind: str = "receipt") -> dict[str, Any]:
    return {
        "header": {
            "id": "7a0f6c1e-1b2c-4d3e-8f40-5a6b7c8d9e0f",
            "type": kind,
            "schema": f"{kind}/1",
            "sender": "RS-PPO",
            "recipients": ["AL-ARO"],
            "case": "AL-2026-0042",
            "created_at": "2026-03-02T14:03:11.500Z",
            "priority": "normal",
            "handling": {"tlp": "AMBER", "code": "H2"},
        },
        "payload": payload,
        "signature": {"alg": "Ed25519", "kid": "0" * 64, "value": "A" * 86},
    }


def test_cli_validate_reads_an_envelope_and_checks_its_payload(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    receipt = json.loads((EXAMPLES / "receipt" / "valid" / "accepted.json").read_text("utf-8"))
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(_envelope(receipt)), encoding="utf-8")
    bad.write_text(json.dumps(_envelope({**receipt, "reason": "x.y"})), encoding="utf-8")
    assert run("validate", str(good)) == 0
    assert run("validate", "--type", "receipt", str(bad)) == 1
    assert "reason must be absent" in capsys.readouterr().out
    assert run("validate", "--type", "case-update", str(good)) == 1
    broken = _envelope(receipt)
    broken["header"]["sender"] = "rs.ppo"
    broken["signature"]["kid"] = "not-hex"
    good.write_text(json.dumps(broken), encoding="utf-8")
    assert run("validate", str(good)) == 1
    out = capsys.readouterr().out
    assert "/header/sender" in out
    assert "/signature/kid" in out


def test_the_envelope_schema_accepts_a_signed_envelope_and_refuses_a_broken_one() -> None:
    receipt = json.loads((EXAMPLES / "receipt" / "valid" / "accepted.json").read_text("utf-8"))
    validator = Draft202012Validator(DOCUMENTS["envelope/v1.json"])
    assert validator.is_valid(_envelope(receipt))
    unsigned = _envelope(receipt)
    del unsigned["signature"]
    assert not validator.is_valid(unsigned)
    bad_kid = _envelope(receipt)
    bad_kid["signature"]["kid"] = "XYZ"
    assert not validator.is_valid(bad_kid)
