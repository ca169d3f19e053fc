"""The bad-input corpus on disk: loading case files and turning their declarative bodies into bytes.

Each case is one JSON file under `cases/http/` or `cases/broker/` whose name is its id. A
body is described, never stored as a blob: `{"json": ...}`, `{"text": ...}`,
`{"base64": ...}`, `{"repeat": [...]}` (a large body made of repeated pieces), or, for
documents built from a valid one, edits by JSON pointer (`set`, `delete`, `raw`).
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CASES_DIR = HERE / "cases"

_SENTINEL = "\u0000raw-{}\u0000"


@dataclass(frozen=True)
class Case:
    """One corpus case: its id (the file name), what it is about, and its raw document."""

    id: str
    kind: str
    category: str
    description: str
    doc: dict[str, Any]
    path: Path

    @property
    def expect(self) -> dict[str, Any]:
        expect: dict[str, Any] = self.doc["expect"]
        return expect


def load_cases(kind: str) -> list[Case]:
    """Every case of `kind` ("http" or "broker"), sorted by id."""
    cases = []
    for path in sorted((CASES_DIR / kind).glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        cases.append(
            Case(
                id=path.stem,
                kind=kind,
                category=str(doc.get("category", "")),
                description=str(doc.get("description", "")),
                doc=doc,
                path=path,
            )
        )
    return cases


# --- bodies -----------------------------------------------------------------------------------


def body_bytes(spec: Mapping[str, Any] | None, base: Any = None) -> bytes | None:
    """The bytes a body spec describes; `base` is the valid document that edits start from."""
    if spec is None:
        return None
    if "json" in spec:
        return _dumps(spec["json"])
    if "text" in spec:
        return str(spec["text"]).encode("utf-8")
    if "base64" in spec:
        return base64.b64decode(spec["base64"])
    if "repeat" in spec:
        return b"".join(
            (body_bytes(part, base) or b"") * int(part.get("times", 1)) for part in spec["repeat"]
        )
    if "edit" in spec:
        return edited_document_bytes(base, spec["edit"])
    if "reformat" in spec:
        return reformatted(base, spec["reformat"])
    raise ValueError(f"unknown body spec {sorted(spec)}")


def edited_document_bytes(base: Any, edit: Mapping[str, Any]) -> bytes:
    """`base` after `delete`, `set` and `raw` edits, serialized; `append_raw` text goes just
    before the closing brace of the top-level object (duplicate keys, trailing junk)."""
    doc, raws = apply_edits(base, edit)
    data = _dumps(doc)
    for index, raw_spec in enumerate(raws):
        marker = _dumps(_SENTINEL.format(index))
        if data.count(marker) != 1:
            raise ValueError("a raw edit's placeholder is not in the document exactly once")
        data = data.replace(marker, body_bytes(raw_spec) or b"")
    extra = edit.get("append_raw")
    if extra is not None:
        if not data.endswith(b"}"):
            raise ValueError("append_raw needs an object document")
        data = data[:-1] + str(extra).encode("utf-8") + b"}"
    return data


def reformatted(doc: Any, options: Mapping[str, Any]) -> bytes:
    """`doc` serialized another way: indented, keys in reverse order, non-ASCII escaped."""

    def reorder(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: reorder(node[k]) for k in reversed(list(node))}
        if isinstance(node, list):
            return [reorder(v) for v in node]
        return node

    if options.get("reverse_keys", False):
        doc = reorder(doc)
    text = json.dumps(
        doc, indent=options.get("indent"), ensure_ascii=options.get("ensure_ascii", False)
    )
    return text.encode("utf-8")


def apply_edits(base: Any, edit: Mapping[str, Any]) -> tuple[Any, list[Mapping[str, Any]]]:
    """A deep copy of `base` with the edits applied, and the raw bodies still to splice in."""
    doc = copy.deepcopy(base)
    for first, second in edit.get("swap", []):
        a, b = get(doc, first), get(doc, second)
        doc = put(put(doc, first, b), second, a)
    for pointer in edit.get("delete", []):
        doc = delete(doc, pointer)
    for pointer, value in edit.get("set", {}).items():
        doc = put(doc, pointer, value)
    raws: list[Mapping[str, Any]] = []
    for pointer, raw_spec in edit.get("raw", {}).items():
        doc = put(doc, pointer, _SENTINEL.format(len(raws)))
        raws.append(raw_spec)
    return doc, raws


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


# --- JSON pointers (RFC 6901, with "-" to append to an array) ---------------------------------


def _parts(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise ValueError(f"not a JSON pointer: {pointer!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/")]


def _index(container: Any, part: str) -> Any:
    if isinstance(container, list):
        return len(container) if part == "-" else int(part)
    return part


def get(doc: Any, pointer: str) -> Any:
    node = doc
    for part in _parts(pointer):
        node = node[_index(node, part)]
    return node


def put(doc: Any, pointer: str, value: Any) -> Any:
    """Set (or add) the value at `pointer`; the root pointer replaces the whole document."""
    parts = _parts(pointer)
    if not parts:
        return copy.deepcopy(value)
    parent = get(doc, "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts[:-1]))
    key = _index(parent, parts[-1])
    if isinstance(parent, list) and key == len(parent):
        parent.append(copy.deepcopy(value))
    else:
        parent[key] = copy.deepcopy(value)
    return doc


def delete(doc: Any, pointer: str) -> Any:
    parts = _parts(pointer)
    parent = get(doc, "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts[:-1]))
    del parent[_index(parent, parts[-1])]
    return doc
