"""The request body of `POST /v1/messages` as a node enforces it, for its OpenAPI document.

The model `SubmitMessage` takes any type with any object as its payload. The node takes a
payload only if it is valid against its type's current schema, recipients only among its
partners, and a case update only for a network it belongs to, addressed to every other
member, with an event that network shares and a TLP label that allows passing it on. So
the document offers one variant per type (`Submit<Payload>`), and one per network for case
updates, with those rules written in.
Two rules that JSON Schema cannot state are in the descriptions instead: `expires_at` must
lie in the future, and a case update's `payload.case` must be its `case`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from exchange.config import NetworkConfig
from exchange.directory.view import NetworkView
from exchange.model.common import MessageType, Tlp
from exchange.model.envelope import NAMED_RECIPIENTS_ONLY

FAR_FUTURE = "2099-12-31T23:59:59.000Z"
FUTURE_EXPIRY = "`expires_at`, when given, must lie in the future."
SAME_CASE = "`payload.case` must be the message's `case`."


def submission_body(
    schemas: dict[str, Any],
    submit: str,
    payloads: Mapping[str, dict[str, Any]],
    view: NetworkView,
) -> dict[str, Any]:
    """Adds a variant of the component `submit` for each payload type (references in
    `payloads`) to `schemas`, and returns the request body's schema: one of them."""
    base = schemas[submit]
    partners = sorted(view.recipients)
    names: list[str] = []
    for kind, payload in payloads.items():
        title = f"Submit{payload['$ref'].rsplit('/', 1)[1]}"
        if kind != MessageType.CASE_UPDATE.value:
            schemas[title] = _variant(base, kind, payload, partners, exact=False)
            names.append(title)
            continue
        for network in view.member_networks():
            name = f"{title}.{network.name}"
            others = [m for m in network.members if m != view.node_id]
            schemas[name] = _case_update(_variant(base, kind, payload, others, exact=True), network)
            names.append(name)
    return {"oneOf": [{"$ref": f"#/components/schemas/{name}"} for name in names]}


def _variant(
    base: dict[str, Any],
    kind: str,
    payload: dict[str, Any],
    recipients: Sequence[str],
    *,
    exact: bool,
) -> dict[str, Any]:
    """`base` for messages of type `kind` to some (or, `exact`, all) of `recipients`."""
    variant = copy.deepcopy(base)
    properties = variant["properties"]
    properties["type"] = {"const": kind, "description": "The message type."}
    addressed = properties["recipients"]
    addressed["items"] = {**addressed["items"], "enum": list(recipients)}
    addressed["items"]["examples"] = list(recipients[:2])
    addressed["uniqueItems"] = True
    if exact:
        addressed["minItems"] = addressed["maxItems"] = len(recipients)
        addressed["description"] = "Every other member of the network, each once."
    else:
        addressed["maxItems"] = min(addressed["maxItems"], len(recipients))
        addressed["description"] = "Partner nodes of this network, each at most once."
    for expiry in properties["expires_at"].get("anyOf", ()):
        if "examples" in expiry:
            expiry["examples"] = [FAR_FUTURE]
    properties["payload"] = {
        "allOf": [payload],
        "description": f"The `{kind}` payload, valid against its current schema.",
    }
    variant["title"] = f"{base.get('title', 'Submit')} ({kind})"
    variant["description"] = f"{base.get('description', '')} {FUTURE_EXPIRY}".strip()
    return variant


def _case_update(variant: dict[str, Any], network: NetworkConfig) -> dict[str, Any]:
    """A case update for `network`: its name and one of its events in the payload."""
    variant["properties"]["payload"]["allOf"].append(
        {
            "properties": {
                "network": {"const": network.name},
                "event": {"enum": [event.value for event in network.events]},
            }
        }
    )
    handling = variant["properties"]["handling"]
    shareable = [tlp.value for tlp in Tlp if tlp not in NAMED_RECIPIENTS_ONLY]
    variant["properties"]["handling"] = {
        "allOf": [handling, {"properties": {"tlp": {"enum": shareable}}}],
        "description": "A case update reaches every member's subscribers and webhooks: never "
        "TLP:RED or TLP:AMBER+STRICT (422 `handling.restricted`).",
    }
    variant["title"] = f"{variant['title'][:-1]}, {network.name})"
    variant["description"] = f"{variant['description']} {SAME_CASE}"
    return variant
