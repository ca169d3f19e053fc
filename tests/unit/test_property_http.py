"""Property tests of the HTTP API: whatever a client sends, the gateway never answers 5xx, and every
refusal is a problem document whose `code` is in the error table with that very status.

A generator of our own turns the served document's `SubmitMessage` schema (and the shared
payload examples) into request bodies that are mostly right and a little wrong, which reach
the deeper checks that fully random bodies never pass; random methods, paths, query strings
and headers complete it (schemathesis explores the documented operations with every role's
token in `test_property_openapi.py`). How many requests ran is printed with `-s`.
"""

from __future__ import annotations

import copy
import gzip
import json
import random
import urllib.parse
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from http_helpers import bearer
from hypothesis import given
from hypothesis import strategies as st
from live_gateway import LiveGateway, budget, check_answer

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
RUNS: Counter[str] = Counter()
STATUSES: Counter[int] = Counter()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    gateway = LiveGateway(tmp_path_factory.mktemp("property-http"))
    gateway.start()
    yield gateway
    gateway.stop()
    print(
        f"\nHTTP property requests: {dict(RUNS)} (total {sum(RUNS.values())}); "
        f"statuses {dict(sorted(STATUSES.items()))}"
    )


@pytest.fixture(scope="module")
def bodies(live: LiveGateway) -> st.SearchStrategy[dict[str, Any]]:
    """Submissions built from the served document (see `submissions`)."""
    return submissions(live.openapi)


def check_and_count(method: str, status: int, content_type: str, body: bytes) -> None:
    STATUSES[status] += 1
    check_answer(method, status, content_type, body)


# --- our own generator: submissions from the document's SubmitMessage schema --------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=10,
)


class SchemaValues:
    """Hypothesis strategies for the values a JSON Schema of the OpenAPI document describes."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.components = spec["components"]["schemas"]

    def resolve(self, node: Mapping[str, Any]) -> Mapping[str, Any]:
        while "$ref" in node:
            node = self.components[str(node["$ref"]).rsplit("/", 1)[1]]
        return node

    def strategy(self, node: Mapping[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
        node = self.resolve(node)
        if depth > 6:
            return json_scalars
        if "enum" in node:
            return st.sampled_from(node["enum"])
        if "const" in node:
            return st.just(node["const"])
        for key in ("anyOf", "oneOf"):
            if key in node:
                return st.one_of([self.strategy(n, depth + 1) for n in node[key]])
        kind = node.get("type")
        if kind == "object":
            props = node.get("properties", {})
            required = set(node.get("required", []))
            return st.fixed_dictionaries(
                {k: self.strategy(v, depth + 1) for k, v in props.items() if k in required},
                optional={
                    k: self.strategy(v, depth + 1) for k, v in props.items() if k not in required
                },
            )
        if kind == "array":
            high = min(int(node.get("maxItems", 3)), 3)
            low = min(int(node.get("minItems", 0)), high)
            return st.lists(
                self.strategy(node.get("items", {}), depth + 1), min_size=low, max_size=high
            )
        if kind == "string":
            return self._string(node)
        if kind == "integer":
            return st.integers(node.get("minimum", -(2**40)), node.get("maximum", 2**40))
        if kind == "number":
            return st.floats(allow_nan=False, allow_infinity=False)
        if kind == "boolean":
            return st.booleans()
        if kind == "null":
            return st.none()
        return json_values

    def _string(self, node: Mapping[str, Any]) -> st.SearchStrategy[str]:
        choices: list[st.SearchStrategy[str]] = []
        if node.get("examples"):
            choices.append(st.sampled_from([str(e) for e in node["examples"]]))
        fmt = node.get("format")
        if fmt == "uuid":
            choices.append(st.uuids().map(str))
        elif fmt == "date-time":
            choices.append(st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()))
        elif fmt == "date":
            choices.append(st.dates().map(str))
        if "pattern" in node:
            choices.append(st.from_regex(node["pattern"], fullmatch=True))
        if not choices:
            choices.append(st.text(min_size=node.get("minLength", 0), max_size=40))
        return st.one_of(choices)


def example_payloads() -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for folder in sorted(EXAMPLES.glob("*/valid")):
        found[folder.parent.name] = [
            json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))
        ]
    return found


def mutate(doc: Any, rng: random.Random, draw_value: Any) -> Any:
    """Delete, replace or add one member somewhere in `doc`."""
    doc = copy.deepcopy(doc)
    containers: list[Any] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict | list) and node:
            containers.append(node)
            for child in node.values() if isinstance(node, dict) else node:
                walk(child)

    walk(doc)
    if not containers:
        return doc
    target = rng.choice(containers)
    key: Any = rng.choice(list(target)) if isinstance(target, dict) else rng.randrange(len(target))
    action = rng.choice(["delete", "replace", "add"])
    if action == "delete":
        del target[key]
    elif action == "replace":
        target[key] = draw_value
    elif isinstance(target, dict):
        target[f"x-{rng.randrange(1000)}"] = draw_value
    else:
        target.append(draw_value)
    return doc


def submissions(spec: Mapping[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Bodies for POST /v1/messages: each field from its schema in `spec` (or left out when
    optional), a payload that is a shared example, generated from the payload schemas, or
    random, then up to three random edits anywhere."""
    values = SchemaValues(spec)
    submit = spec["components"]["schemas"]["SubmitMessage"]
    required = set(submit.get("required", []))
    fields = {
        n: values.strategy(node) for n, node in submit["properties"].items() if n != "payload"
    }
    from_schema = values.strategy(submit["properties"]["payload"])
    examples = example_payloads()

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        body = {n: draw(s) for n, s in fields.items() if n in required or draw(st.booleans())}
        kind = body.get("type")
        if kind not in examples:
            kind = draw(st.sampled_from(sorted(examples)))
        source = draw(st.sampled_from(["example", "example", "schema", "random"]))
        if source == "example":
            body["payload"] = draw(st.sampled_from(examples[kind]))
        elif source == "schema":
            body["payload"] = draw(from_schema)
        else:
            body["payload"] = draw(json_values)
        rng = random.Random(draw(st.integers(0, 2**32)))
        for _ in range(draw(st.integers(0, 3))):
            body = mutate(body, rng, draw(json_values))
        return body

    return build()


@budget(120)
@given(data=st.data())
def test_generated_submissions_never_get_a_5xx(
    live: LiveGateway, bodies: st.SearchStrategy[dict[str, Any]], data: st.DataObject
) -> None:
    body = data.draw(bodies)
    encoded = json.dumps(body, ensure_ascii=data.draw(st.booleans())).encode(
        "utf-8", "surrogatepass"
    )
    if data.draw(st.integers(0, 9)) == 0:  # now and then, cut it short
        encoded = encoded[: data.draw(st.integers(0, len(encoded)))]
    role = data.draw(st.sampled_from(["contact-point", "contact-point", "admin", "auditor"]))
    headers = {"Content-Type": "application/json", **bearer(live.token(role))}
    coding = data.draw(st.sampled_from([None] * 8 + ["gzip", "deflate"]))
    if coding is not None:  # compressed as announced, or only labelled so
        headers["Content-Encoding"] = coding
        if data.draw(st.booleans()):
            encoded = gzip.compress(encoded) if coding == "gzip" else zlib.compress(encoded)
    status, content_type, answer = live.request("POST", "/v1/messages", encoded, headers)
    RUNS["generated submissions"] += 1
    if status == 202:
        RUNS["generated submissions accepted"] += 1
    check_and_count("POST", status, content_type, answer)


# --- random methods, paths, query strings and headers -------------------------------------------

METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "PROPFIND"]
segment = st.text(min_size=0, max_size=24).map(lambda s: urllib.parse.quote(s, safe=""))
# Framing headers are left out: they change how HTTP reads the request, not what the API sees.
header_names = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True).filter(
    lambda n: (
        n.lower()
        not in {"content-length", "transfer-encoding", "connection", "host", "expect", "upgrade"}
    )
)
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60).map(
    str.strip
)


@st.composite
def paths(draw: st.DrawFn, spec: Mapping[str, Any]) -> str:
    template = draw(st.sampled_from([*spec["paths"], "/v1", "/", "/v1/{x}/{y}", "/{x}"]))
    parts = [draw(segment) if part.startswith("{") else part for part in template.split("/")]
    path = "/".join(parts) or "/"
    if draw(st.booleans()):
        names = ["after", "limit", "id", "case", draw(st.text(max_size=8))]
        query = draw(st.lists(st.tuples(st.sampled_from(names), st.text(max_size=30)), max_size=4))
        path += "?" + urllib.parse.urlencode(query)
    return path


@budget(150)
@given(data=st.data())
def test_random_requests_never_get_a_5xx(live: LiveGateway, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(METHODS))
    path = data.draw(paths(live.openapi))
    headers = data.draw(st.dictionaries(header_names, header_values, max_size=4))
    auth = data.draw(st.sampled_from(["none", "contact-point", "subscriber", "forged"]))
    if auth == "forged":
        headers.update(bearer(data.draw(header_values)))
    elif auth != "none":
        headers.update(bearer(live.token(auth)))
    body = None
    if method not in ("GET", "HEAD") and data.draw(st.booleans()):
        body = data.draw(
            st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode())
        )
        headers["Content-Type"] = data.draw(
            st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"])
        )
        if data.draw(st.integers(0, 3)) == 0:
            # Codings aiohttp decodes itself ("br" needs a library; without it aiohttp's own
            # parser answers a plain-text 400 before the application sees the request).
            headers["Content-Encoding"] = data.draw(
                st.sampled_from(["gzip", "deflate", "identity"])
            )
    status, content_type, answer = live.request(method, path, body, headers)
    RUNS["random requests"] += 1
    check_and_count(method, status, content_type, answer)
