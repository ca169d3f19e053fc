"""What happens to a generated form between two renderings: the node's field errors put on
the inputs they name, and the list buttons (add an item, remove one) applied to the value
posted, when the browser runs no script."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from exchange.console.schema_form import Field


def pointer_to_path(pointer: str) -> str:
    """A JSON pointer as a form name: `/payload/subjects/0` -> `payload.subjects.0`."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.strip("/").split("/")]
    return ".".join(p for p in parts if p)


def attach_errors(
    root: Iterable[Field], errors: Iterable[tuple[str, str]]
) -> list[tuple[str, str]]:
    """Put each (path, message) on the field it names, or the nearest enclosing one shown;
    returns the pairs as placed (path of the field that shows it, message)."""
    fields: dict[str, Field] = {}
    for top in root:
        for f in top.walk():
            fields.setdefault(f.path, f)
            if f.kind == "choice":
                fields.setdefault(f"{f.path}.{f.discriminator}", f)
    placed = []
    for path, message in errors:
        target = path
        while target and target not in fields:
            target = target.rpartition(".")[0]
        if target in fields:
            fields[target].errors.append(message)
        placed.append((target, message))
    return placed


def edit_list(value: dict[str, Any], action: str) -> None:
    """Apply a form button's `add:<path>` or `remove:<path>.<index>` to the JSON `value`
    (whose top level holds `payload`); anything else changes nothing."""
    verb, _, path = action.partition(":")
    parts = path.split(".")
    if verb == "remove" and len(parts) >= 2 and parts[-1].isdigit():
        target = _at(value, parts[:-1])
        if isinstance(target, list) and int(parts[-1]) < len(target):
            del target[int(parts[-1])]
    elif verb == "add" and parts and parts != [""]:
        parent = _at(value, parts[:-1])
        if isinstance(parent, dict):
            listing = parent.setdefault(parts[-1], [])
            if isinstance(listing, list) and len(listing) < 100:
                listing.append(None)


def _at(value: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def readable(path: str) -> str:
    """A form name as a person reads where it is: `payload.subjects.1.name` ->
    "Subjects › 2 › Name" (the message's own fields by their name)."""
    parts = [p for p in path.split(".") if p and p != "payload"]
    words = [str(int(p) + 1) if p.isdigit() else p.replace("_", " ") for p in parts]
    return " › ".join(w[:1].upper() + w[1:] for w in words) or "The message"
