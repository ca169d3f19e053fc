"""How the console writes values on a page: escaped, bidi-isolated, with controls made visible.

Everything a page shows from a message came from another node and is treated as hostile:
it is escaped (the templates autoescape; `shown` escapes itself before marking anything
safe), wrapped in `<bdi>` so that right-to-left text cannot reorder what surrounds it, and
the Unicode controls that reorder or hide text (embeddings, overrides, isolates, zero-width
characters) are written out as visible marks such as `[U+202E]` instead of being obeyed.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup, escape

from exchange.model.common import format_utc

INVISIBLE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
    "\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ufff9-\ufffb]"
)
"""Control characters (but tab and line breaks), and the characters that change how the text
around them is ordered or that cannot be seen."""

TLP_TEXT = {
    "RED": "For the eyes and ears of individual recipients only, no further disclosure.",
    "AMBER+STRICT": "Limited disclosure, restricted to the recipient's organisation only.",
    "AMBER": "Limited disclosure, restricted to the recipient's organisation and its clients "
    "on a need-to-know basis.",
    "GREEN": "Limited disclosure, restricted to the community.",
    "CLEAR": "Disclosure is not limited.",
}
HANDLING_TEXT = {
    "H0": "H0: no restriction on use.",
    "H1": "H1: not to be used as evidence without the originator's consent.",
    "H2": "H2: not to be disseminated without the originator's consent.",
    "H3": "H3: other restrictions, see the message.",
}


def _mark(match: re.Match[str]) -> str:
    return f"\x00{ord(match.group(0)):04X}\x01"


def shown(value: Any) -> Markup:
    """`value` as text, escaped, isolated in `<bdi>`, its hidden controls made visible."""
    if value is None:
        return Markup('<span class="none">none</span>')
    if isinstance(value, bool):
        return escape("yes" if value else "no")
    text = INVISIBLE.sub(_mark, str(value))
    escaped = str(escape(text))
    if "\x00" in escaped:
        escaped = re.sub(
            "\x00([0-9A-F]{4})\x01",
            r'<span class="ctl" title="invisible character U+\1">[U+\1]</span>',
            escaped,
        )
    return Markup(f"<bdi>{escaped}</bdi>")  # noqa: S704 (escaped above; only our spans added)


def label(key: Any) -> str:
    """A field name as a person reads it: `given_names` -> "Given names"."""
    text = str(key).replace("_", " ").replace("-", " ").strip()
    return text[:1].upper() + text[1:] if text else "(unnamed)"


def _as_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else None
    return None


def when(value: Any) -> Markup:
    """A time as `<time>`: "2026-03-07 14:05:09 UTC" (or the raw text when it is none)."""
    moment = _as_time(value)
    if moment is None:
        return shown(value) if value is not None else Markup("")
    moment = moment.astimezone(UTC)
    return Markup('<time datetime="{}">{}</time>').format(
        format_utc(moment), moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    )


def span(seconds: float) -> str:
    """A duration in the largest sensible unit: "45 min", "7 h 30 min", "3 days"."""
    seconds = abs(int(seconds))
    if seconds < 90:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days"


def relative(value: Any, now: datetime | None = None) -> str:
    """ "in 7 h" or "3 h ago" from now."""
    moment = _as_time(value)
    if moment is None:
        return ""
    delta = (moment - (now or datetime.now(UTC))).total_seconds()
    return f"in {span(delta)}" if delta >= 0 else f"{span(delta)} ago"


def tlp_class(tlp: Any) -> str:
    """The CSS class of a TLP label's banner (the standard TLP 2.0 colours)."""
    names = {"RED": "red", "AMBER+STRICT": "amber", "AMBER": "amber", "GREEN": "green"}
    return f"tlp-{names.get(str(tlp), 'clear')}"


FIRST_KEYS = (
    "kind",
    "ref",
    "role",
    "name",
    "family_name",
    "given_names",
    "title",
    "event",
    "outcome",
    "status",
    "summary",
)


def keyorder(mapping: Any) -> list[str]:
    """A payload object's keys as a person reads them: what it is and its name first, then
    the rest alphabetically (signed payloads are canonical, keys sorted)."""
    keys = [str(k) for k in mapping]
    first = [k for k in FIRST_KEYS if k in mapping]
    return first + sorted(k for k in keys if k not in FIRST_KEYS)


def all_scalars(values: Any) -> bool:
    return all(not isinstance(v, (dict, list)) for v in values)


def tlp_text(tlp: Any) -> str:
    return TLP_TEXT.get(str(tlp), "An unknown label: handle as TLP:RED.")


def handling_text(code: Any) -> str:
    return HANDLING_TEXT.get(str(code), f"{code}: an unknown handling code.")


FILTERS = {
    "keyorder": keyorder,
    "all_scalars": all_scalars,
    "tlp_text": tlp_text,
    "handling_text": handling_text,
    "shown": shown,
    "label": label,
    "when": when,
    "relative": relative,
    "tlp_class": tlp_class,
    "span": span,
}
