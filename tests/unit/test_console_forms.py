"""The forms generated from the payload schemas, and what the console shows of text.

Every valid example of every type, drawn into its form and posted back as a browser posts
it, is the same payload; field errors land on the input they name; sessions expire; text
from elsewhere is escaped and its invisible controls shown.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from http_helpers import EXAMPLES

from exchange.config import Role
from exchange.console.deadlines import _cell
from exchange.console.form_edits import attach_errors, edit_list, readable
from exchange.console.schema_form import NEW, Field, FormBuilder, payload_schema
from exchange.console.sessions import Sessions
from exchange.console.text import shown
from exchange.gateway.auth import Principal
from exchange.model.common import MessageType
from exchange.schemas import model_for

TYPES = [t.value for t in MessageType if t is not MessageType.RECEIPT]
EXAMPLE_FILES = sorted(
    (kind, path) for kind in TYPES for path in (EXAMPLES / kind / "valid").glob("*.json")
)


def posted(form: Field) -> dict[str, str]:
    """What a browser posts for a form drawn with these fields (templates are never posted)."""
    out: dict[str, str] = {}

    def walk(field: Field) -> None:
        if field.kind in ("group", "list"):
            for child in field.children:
                walk(child)
        elif field.kind == "choice":
            out[f"{field.path}.{field.discriminator}"] = str(field.value)
            for child in field.children:
                walk(child)
        elif field.kind == "checkbox":
            if field.value:
                out[field.path] = "on"
        else:
            out[field.path] = "" if field.value is None else str(field.value)

    walk(form)
    return out


@pytest.mark.parametrize(("kind", "path"), EXAMPLE_FILES, ids=lambda v: getattr(v, "stem", v))
def test_every_example_comes_back_from_its_form_unchanged(kind: str, path: Any) -> None:
    example = json.loads(path.read_text(encoding="utf-8"))
    builder = FormBuilder(payload_schema(kind))
    form = builder.form(example)
    assert not any(NEW in f.path for f in form.walk())  # templates are apart
    collected = builder.collect(posted(form))
    model = model_for(kind, 1)
    assert model.model_validate(collected) == model.model_validate(example)


def test_an_empty_form_posts_no_invented_values() -> None:
    builder = FormBuilder(payload_schema("asset-inquiry"))
    collected = builder.collect(posted(builder.form(None)))
    # required objects and lists are there to be reported, empty; nothing else
    assert collected["subjects"] == [{"kind": "natural-person", "name": {}}]
    assert "assets_sought" not in collected and "directly_accessible" not in collected
    assert collected["requesting_authority"] == {}


def test_a_field_error_lands_on_its_input_or_the_nearest_shown() -> None:
    form = FormBuilder(payload_schema("asset-inquiry")).form(None)
    placed = attach_errors(
        [form],
        [
            ("payload.subjects.0.name.family_name", "required"),
            ("payload.subjects.0.kind", "unknown kind"),
            ("payload.subjects.7.name", "no such item"),
            ("payload.contact", "at least one of phone, email is required"),
        ],
    )
    assert [p for p, _ in placed] == [
        "payload.subjects.0.name.family_name",
        "payload.subjects.0.kind",  # the select of the kind
        "payload.subjects",
        "payload.contact",
    ]
    assert readable(placed[0][0]) == "Subjects › 1 › Name › Family name"
    assert readable("recipients.0") == "Recipients › 1"
    by_path = {f.path: f for f in form.walk()}
    assert by_path["payload.subjects.0.name.family_name"].errors == ["required"]
    assert by_path["payload.subjects"].errors == ["no such item"]


def test_conditional_fields_follow_the_schema() -> None:
    form = FormBuilder(payload_schema("asset-inquiry-response")).form(None)
    when = {f.path: f.when for f in form.walk() if f.when}
    assert when["payload.findings"] == ("payload.outcome", ("found", "partial"))
    assert when["payload.refusal"] == ("payload.outcome", ("refused",))
    inquiry = FormBuilder(payload_schema("asset-inquiry")).form(None)
    assert {f.path: f.when for f in inquiry.walk() if f.when}["payload.urgency_grounds"] == (
        "priority",
        ("urgent",),
    )


def test_list_buttons_edit_the_posted_value() -> None:
    value: dict[str, Any] = {"payload": {"subjects": [{"kind": "natural-person"}]}}
    edit_list(value, "add:payload.subjects")
    edit_list(value, "add:payload.subjects.0.aliases")
    assert value["payload"]["subjects"] == [{"kind": "natural-person", "aliases": [None]}, None]
    edit_list(value, "remove:payload.subjects.0")
    edit_list(value, "remove:payload.subjects.9")
    edit_list(value, "rename:payload.subjects")
    assert value["payload"]["subjects"] == [None]


def test_reading_order_is_the_schemas() -> None:
    builder = FormBuilder(payload_schema("case-update"))
    ordered = builder.ordered({"summary": "s", "network": "n", "case": "c", "zz": 1, "event": "e"})
    assert list(ordered) == ["case", "network", "event", "summary", "zz"]


async def test_sessions_end_when_idle_old_or_dropped() -> None:
    now = [1000.0]
    sessions = Sessions(idle_seconds=60, max_age_seconds=300, max_sessions=2, clock=lambda: now[0])
    principal = Principal("contact-point", Role.CONTACT_POINT)
    first, _ = sessions.create(principal)
    now[0] += 59
    assert sessions.get(first) is not None  # a page: it is used again
    now[0] += 59
    assert sessions.get(first, touch=False) is not None
    now[0] += 2
    assert sessions.get(first) is None and sessions.peek(first) is None  # 61 s idle
    second, session = sessions.create(principal)
    for _ in range(6):
        now[0] += 49
        assert sessions.get(second) is not None
    now[0] += 6
    assert sessions.get(second) is None  # 300 s old, however busy
    third, session = sessions.create(principal)
    stream = asyncio.ensure_future(asyncio.sleep(60))
    session.streams.add(stream)
    sessions.drop(third)
    await asyncio.sleep(0)
    assert stream.cancelled() and sessions.get(third) is None
    ids = [sessions.create(principal)[0] for _ in range(3)]
    assert len(sessions) == 2 and sessions.get(ids[0]) is None  # the oldest went first
    assert sessions.get("") is None and sessions.get(None) is None


def test_text_from_elsewhere_is_escaped_and_its_controls_shown() -> None:
    assert str(shown("<script>alert(1)</script>")) == (
        "<bdi>&lt;script&gt;alert(1)&lt;/script&gt;</bdi>"
    )
    assert str(shown('"><img src=x onerror=alert(1)>')).count("<") == 2  # bdi, /bdi
    rlo = str(shown("Hoxha\u202egnp.exe"))
    assert "\u202e" not in rlo and "[U+202E]" in rlo
    forged = str(shown("\x00202E\x01"))  # cannot fake a mark
    assert forged.count("[U+") == 2 and "[U+0000]" in forged and "[U+0001]" in forged
    assert (
        str(shown("Ștefan Țurcanu, Љубомир, Arbër")) == "<bdi>Ștefan Țurcanu, Љубомир, Arbër</bdi>"
    )


def test_csv_cells_are_never_formulas() -> None:
    assert [_cell(v) for v in ("=1+1", "+1", "-1", "@SUM(A1)", "AL-1", None, 3)] == [
        "'=1+1",
        "'+1",
        "'-1",
        "'@SUM(A1)",
        "AL-1",
        "",
        "3",
    ]
