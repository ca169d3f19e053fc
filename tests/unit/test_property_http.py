"""Property tests of the HTTP API: whatever a client sends, the gateway never answers 5xx, every
refusal is a problem document whose `code` is in the error table with that very status, and
the served `/openapi.json` describes what the gateway enforces.

Schemathesis, as an outside client with each role's token in turn, explores every documented
operation (schema-conforming and schema-violating parameters and bodies) with its checks on:
documented statuses, content types, headers and response schemas (each event of the event
stream included), schema-violating requests refused, schema-conforming ones accepted (save for
the rules JSON Schema cannot state, listed in UNSTATED_RULES and in the document), and
authentication not ignored. A generator of our own turns the document's `SubmitMessage` schema
(and the shared payload examples) into request bodies that are mostly right and a little
wrong, which reach the deeper checks that fully random bodies never pass. Random methods,
paths, query strings and headers complete it. The gateway runs in this process, on the
loopback interface, with its relay on an in-memory broker. How many requests ran is printed
with `-s`.
"""

from __future__ import annotations

import asyncio
import copy
import gzip
import http.client
import json
import random
import re
import threading
import urllib.parse
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, CheckContext, load_all_checks
from schemathesis.specs.openapi.checks import positive_data_acceptance

from exchange.config import Role
from exchange.errors import ERROR_TABLE
from exchange.gateway.app import create_app
from exchange.gateway.auth import PERMISSIONS
from exchange.gateway.routes import ROUTES
from exchange.network import NetworkLayout, init_network_dir
from exchange.transport.memory import MemoryBroker, MemoryBus
from exchange.transport.topology import Topology

NODE = "AL-ARO"
PARTNERS = ("RS-PPO", "MD-ARO")
NETWORK = "see-pcn"
CASE = "AL-2026-0042"
STOP_SECONDS = 10.0
JSON = "application/json"
STREAM = "/v1/subscriptions/stream"
EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
RUNS: Counter[str] = Counter()
STATUSES: Counter[int] = Counter()


def budget(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


# --- the gateway, served on loopback from a thread of its own -----------------------------------


class LiveGateway:
    """AL-ARO's gateway in a background event loop, reachable at `host:port`, with its relay
    on an in-memory broker where its partners' queues exist (so it is ready, and what it
    accepts is published)."""

    def __init__(self, root: Path) -> None:
        self.network: NetworkLayout = init_network_dir(
            root / "net", [NODE, *PARTNERS], bus="memory", networks={NETWORK: [NODE, *PARTNERS]}
        )
        config = self.network.config(NODE, environ={"EXCHANGE_DATA_DIR": str(root / "data")})
        topology = Topology(prefix=config.topology_prefix)
        broker = MemoryBroker(topology)
        self.bus = MemoryBus(topology, broker=broker, node_id=NODE)
        self.partners = MemoryBus(topology, broker=broker, node_id=PARTNERS[0])
        # Short shutdown: a client that left a stream open must not hold the teardown.
        self.runner = web.AppRunner(create_app(config, bus=self.bus), shutdown_timeout=1.0)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.host, self.port = "127.0.0.1", 0
        self.openapi: dict[str, Any] = {}
        self.submissions: st.SearchStrategy[dict[str, Any]] = st.nothing()

    def start(self) -> None:
        self.thread.start()

        async def serve() -> int:
            await self.bus.start()
            await self.partners.start()
            for node in PARTNERS:
                await self.partners.declare_node(node)
            await self.runner.setup()
            site = web.TCPSite(self.runner, self.host, 0)
            await site.start()
            return int(self.runner.addresses[0][1])

        self.port = asyncio.run_coroutine_threadsafe(serve(), self.loop).result(30)
        status, _, body = self.request("GET", "/openapi.json")
        assert status == 200
        self.openapi = json.loads(body)
        self.submissions = submissions(self.openapi)
        for event in ("opened", "note", "frozen"):  # so that streams have events to check
            update = {
                "type": "case-update",
                "recipients": list(PARTNERS),
                "case": CASE,
                "priority": "normal",
                "handling": {"tlp": "AMBER", "code": "H2"},
                "payload": {"case": CASE, "network": NETWORK, "event": event, "summary": event},
            }
            headers = {"Authorization": f"Bearer {self.token()}", "Content-Type": JSON}
            status, _, answer = self.request(
                "POST", "/v1/messages", json.dumps(update).encode(), headers
            )
            assert status == 202, answer

    def stop(self) -> None:
        async def close() -> None:
            await self.runner.cleanup()
            await self.bus.close()
            await self.partners.close()

        stopping = asyncio.run_coroutine_threadsafe(close(), self.loop)
        try:
            stopping.result(STOP_SECONDS)
        except TimeoutError:
            tasks = asyncio.run_coroutine_threadsafe(_task_names(), self.loop).result(5)
            raise AssertionError(
                f"the gateway did not stop within {STOP_SECONDS} s; still running: {tasks}"
            ) from None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def token(self, role: str = "contact-point") -> str:
        return self.network.nodes[NODE].tokens[role]

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, str, bytes]:
        """One request on a fresh connection: (status, content type, body).

        An event stream's body is not read (it never ends): only its status counts.
        """
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            response = conn.getresponse()
            content_type = response.getheader("Content-Type", "")
            if content_type.startswith("text/event-stream"):
                return response.status, content_type, b""
            return response.status, content_type, response.read()
        finally:
            conn.close()


async def _task_names() -> list[str]:
    current = asyncio.current_task()
    return sorted(t.get_name() for t in asyncio.all_tasks() if t is not current)


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


def check_answer(method: str, status: int, content_type: str, body: bytes) -> None:
    """No 5xx; a refusal is a problem document with a known code and its table status."""
    STATUSES[status] += 1
    assert status < 500, f"{status}: {body[:500]!r}"
    if status < 400 or method == "HEAD":
        return
    assert content_type.startswith("application/problem+json"), (status, content_type, body[:200])
    problem = json.loads(body)
    assert problem["code"] in ERROR_TABLE, problem
    assert ERROR_TABLE[problem["code"]].status == status == problem["status"], problem
    assert problem["type"] == f"urn:xb:error:{problem['code']}"


# --- schemathesis, operation by operation and role by role -------------------------------------

OPERATIONS = [(route.method, route.path) for route in ROUTES]
ROLES = [role.value for role in Role]
SSE_SECONDS = 0.5  # a stream is read this long (or for MAX_STREAM_EVENTS events)
MAX_STREAM_EVENTS = 2
load_all_checks()
BUILT_IN_CHECKS = CHECKS.get_by_names(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "missing_required_header",
        "unsupported_method",
        "allow_header_conformance",
        "ignored_auth",
    ]
)
UNSTATED_RULES = (
    # Refusals of a request body that is valid against the document, for rules that JSON Schema
    # cannot state and the document describes instead: (field, message).
    ("/expires_at", re.compile(r"must be in the future")),  # compared with the time of arrival
    ("/payload/case", re.compile(r"must be the message's case")),  # two fields equal
    # a payload part's rules, listed as "Not expressible in JSON Schema" in its description
    ("/payload", re.compile(r"\S+ \S+ is before \S+ \S+")),  # NotBefore
    ("/payload", re.compile(r"names no subject|ref '[^']*' is used twice")),  # ReferencesResolve
)


def problem_documents(ctx: CheckContext, response: schemathesis.Response, case: Any) -> None:
    """Our own check: no 5xx, and a refusal is a problem document with its table status."""
    content_type = response.headers.get("content-type", [""])[0]
    check_answer(case.method, response.status_code, content_type, response.content)


def positive_data_acceptance_but_for_unstated_rules(
    ctx: CheckContext, response: schemathesis.Response, case: Any
) -> None:
    """Schemathesis' positive_data_acceptance, except for a 422 that names only rules of
    UNSTATED_RULES (each of those refusals is counted, so the run shows how often)."""
    try:
        positive_data_acceptance(ctx, response, case)
    except AssertionError:
        problem = json.loads(response.content) if response.status_code == 422 else {}
        if not _only_unstated(problem):
            raise
        for path in sorted({e["path"] for e in problem["errors"]}):
            RUNS[f"schemathesis positive refused by an unstated rule at {path}"] += 1


def _only_unstated(problem: dict[str, Any]) -> bool:
    errors = problem.get("errors") or []
    return bool(errors) and all(
        any(
            e["path"].startswith(prefix) and all(rule.search(m) for m in e["message"].split("; "))
            for prefix, rule in UNSTATED_RULES
        )
        for e in errors
    )


CONTRACT_CHECKS = [
    *BUILT_IN_CHECKS,
    positive_data_acceptance_but_for_unstated_rules,
    problem_documents,
]


def may(role: str, method: str, path: str) -> bool:
    route = next(r for r in ROUTES if (r.method, r.path) == (method, path))
    return route.permission is None or route.permission in PERMISSIONS[Role(role)]


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [(m, p, role) for m, p in OPERATIONS for role in ROLES],
    ids=[f"{r.operation_id}-{role}" for r in ROUTES for role in ROLES],
)
def test_every_operation_keeps_its_documented_contract_for_every_role(
    live: LiveGateway, method: str, path: str, role: str
) -> None:
    """Schemathesis, as an outside client with this role's token: what the document allows is
    accepted (or refused for a documented reason), what it does not allow is refused, and
    every answer, event streams' events included, matches its documented status and schema."""
    # The token as the document's bearer scheme: negative cases may then leave it out.
    config = {
        "auth": {"openapi": {"bearer": {"bearer": live.token(role)}}},
        "max-stream-events": MAX_STREAM_EVENTS,
    }
    schema = schemathesis.openapi.from_dict(
        live.openapi, config=schemathesis.Config.from_dict(config)
    )
    operation = schema[path][method]
    allowed = may(role, method, path)
    # A role without the permission gets 403 whatever it sends: a few requests show it.
    examples = 6 if allowed else 2
    modes = [GenerationMode.POSITIVE]
    if _has_inputs(live.openapi, method, path):  # otherwise there is nothing to violate
        modes.append(GenerationMode.NEGATIVE)
    if method == "POST" and allowed:
        examples = 5  # generating from the submission's large schema costs ~0.3 s a case
    for mode in modes:
        _explore(live, operation, method, mode, examples, allowed)()


def _explore(
    live: LiveGateway,
    operation: Any,
    method: str,
    mode: GenerationMode,
    examples: int,
    allowed: bool,
) -> Any:
    """A hypothesis test that sends `examples` generated cases of `operation` in `mode` and
    runs CONTRACT_CHECKS on each answer; a role that is not `allowed` never succeeds. An
    event stream is read for at most SSE_SECONDS."""
    timeout = SSE_SECONDS if operation.path.endswith("/stream") else 30

    @budget(examples)
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = case.call_and_validate(
            base_url=live.base_url, timeout=timeout, checks=CONTRACT_CHECKS
        )
        RUNS[f"schemathesis {mode.value}"] += 1
        assert allowed or response.status_code in (401, 403, 404), response.status_code
        if response.status_code < 300 and operation.path.endswith("/stream"):
            RUNS["schemathesis stream events"] += response.content.count(b"\nevent: ")
        if response.status_code < 300 and mode is GenerationMode.POSITIVE and method == "POST":
            RUNS["schemathesis positive submissions accepted"] += 1

    return run


def test_each_event_of_the_stream_is_checked_against_its_documented_schema(
    live: LiveGateway,
) -> None:
    config = schemathesis.Config.from_dict({"max-stream-events": 3})
    operation = schemathesis.openapi.from_dict(live.openapi, config=config)[STREAM]["GET"]
    auth = {"Authorization": f"Bearer {live.token('subscriber')}"}
    response = operation.Case(query={"after": 0}).call_and_validate(
        base_url=live.base_url, headers=auth, timeout=5, checks=CONTRACT_CHECKS
    )
    assert response.content.count(b"\nevent: case-update\n") == 3
    # As the document described the stream before (a plain string), each event was refused.
    before = copy.deepcopy(live.openapi)
    media = before["paths"][STREAM]["get"]["responses"]["200"]["content"]["text/event-stream"]
    media["schema"] = {"type": "string"}
    operation = schemathesis.openapi.from_dict(before, config=config)[STREAM]["GET"]
    with pytest.raises(BaseExceptionGroup, match="SSE event violates schema"):
        operation.Case(query={"after": 0}).call_and_validate(
            base_url=live.base_url, headers=auth, timeout=5, checks=CONTRACT_CHECKS
        )


def _has_inputs(spec: Mapping[str, Any], method: str, path: str) -> bool:
    operation = spec["paths"][path][method.lower()]
    return bool(operation.get("parameters") or operation.get("requestBody"))


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
def test_generated_submissions_never_get_a_5xx(live: LiveGateway, data: st.DataObject) -> None:
    body = data.draw(live.submissions)
    encoded = json.dumps(body, ensure_ascii=data.draw(st.booleans())).encode(
        "utf-8", "surrogatepass"
    )
    if data.draw(st.integers(0, 9)) == 0:  # now and then, cut it short
        encoded = encoded[: data.draw(st.integers(0, len(encoded)))]
    role = data.draw(st.sampled_from(["contact-point", "contact-point", "admin", "auditor"]))
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {live.token(role)}"}
    coding = data.draw(st.sampled_from([None] * 8 + ["gzip", "deflate"]))
    if coding is not None:  # compressed as announced, or only labelled so
        headers["Content-Encoding"] = coding
        if data.draw(st.booleans()):
            encoded = gzip.compress(encoded) if coding == "gzip" else zlib.compress(encoded)
    status, content_type, answer = live.request("POST", "/v1/messages", encoded, headers)
    RUNS["generated submissions"] += 1
    if status == 202:
        RUNS["generated submissions accepted"] += 1
    check_answer("POST", status, content_type, answer)


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
        headers["Authorization"] = "Bearer " + data.draw(header_values)
    elif auth != "none":
        headers["Authorization"] = f"Bearer {live.token(auth)}"
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
    check_answer(method, status, content_type, answer)
