"""What a local client of a gateway sends: its bearer token's header, and request bodies for
`POST /v1/messages` built from the shared schema examples, and the `/metrics` it reads."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from exchange.network import NetworkLayout

EXAMPLES = Path(__file__).resolve().parent.parent / "schemas" / "examples"
CASE = "AL-2026-0042"


def bearer(token: str) -> dict[str, str]:
    """The `Authorization` header presenting `token` (a new dict: callers may add to it)."""
    return {"Authorization": f"Bearer {token}"}


def auth_headers(network: NetworkLayout, node: str, role: str = "contact-point") -> dict[str, str]:
    """The header presenting `node`'s token for `role`."""
    return bearer(network.nodes[node].token(role))


def example_payload(message_type: str, name: str | None = None) -> dict[str, Any]:
    """A valid payload of `message_type` from the shared schema examples (the first, or `name`)."""
    folder = EXAMPLES / message_type / "valid"
    files = sorted(folder.glob("*.json"))
    assert files, f"no valid example for {message_type}"
    if name is not None:
        files = [folder / f"{name}.json"]
    payload: dict[str, Any] = json.loads(files[0].read_text(encoding="utf-8"))
    return payload


def submission(
    message_type: str = "asset-inquiry",
    recipients: Sequence[str] = ("RS-PPO",),
    *,
    payload: dict[str, Any] | None = None,
    case: str = CASE,
    priority: str = "urgent",
    **fields: Any,
) -> dict[str, Any]:
    """A body for `POST /v1/messages`, TLP AMBER and handling code H2. The payload is the
    first valid schema example of `message_type` unless given; `fields` are added to the
    body or replace what it holds (a test of refusals sends what the API must not take)."""
    body: dict[str, Any] = {
        "type": message_type,
        "recipients": list(recipients),
        "case": case,
        "priority": priority,
        "handling": {"tlp": "AMBER", "code": "H2"},
        "payload": example_payload(message_type) if payload is None else payload,
    }
    body.update(fields)
    return body


MetricKey = tuple[str, frozenset[tuple[str, str]]]


def metric_samples(text: str) -> dict[MetricKey, float]:
    """The samples of a Prometheus text exposition, parsed by prometheus-client's own
    parser: (sample name, labels) -> value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
