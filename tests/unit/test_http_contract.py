"""The HTTP contract as a client sees it: on every route that has parameters, a bad one is a
400 `request.bad_parameter` problem naming it (never a 500), integers are ASCII digits only,
and the node's OpenAPI document describes what it enforces: the parameters each route parses,
the submissions it takes, the events of its stream.

The parameter cases are generated from the route table, so a route that gains one is tested.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from http_helpers import bearer

from exchange.gateway import keys
from exchange.gateway.api_models import ProblemDetails
from exchange.gateway.app import create_app
from exchange.gateway.params import MAX_CURSOR, In
from exchange.gateway.route_spec import Route
from exchange.gateway.routes import ROUTES
from exchange.network import NetworkLayout, init_network_dir

NODES = ["AL-ARO", "RS-PPO", "MD-ARO"]
NETWORK = "see-pcn"
ROUTES_WITH_PARAMS = [r for r in ROUTES if r.params is not None]

NOT_INTEGERS = {
    "superscript two": "²",
    "Arabic-Indic three": "٣",
    "full-width one": "１",
    "negative": "-1",
    "signed": "+1",
    "spaced": " 1",
    "underscored": "1_0",
    "exponent": "1e3",
    "hexadecimal": "0x1",
    "decimal": "1.0",
    "word": "ten",
    "empty": "",
    "huge": "9" * 40,
    "over the cursor range": str(MAX_CURSOR + 1),
}
NOT_UUIDS = {"word": "not-a-uuid", "no hyphens": "0" * 32, "URN": f"urn:uuid:{uuid4()}"}
BAD_TEXT = {
    "network": {"unknown network": "see-arn", "upper case": "SEE-PCN", "empty": ""},
    "case": {"dotted": "a.b", "empty": "", "too long": "a" * 65},
    "node": {"quoted": "x'--", "lower case": "rs-ppo", "empty": ""},
}


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> NetworkLayout:
    return init_network_dir(
        tmp_path_factory.mktemp("net"), NODES, bus="memory", networks={NETWORK: NODES}
    )


@dataclass
class Gateway:
    client: TestClient[web.Request, web.Application]
    app: web.Application
    admin: dict[str, str]

    async def get(self, url: str, headers: dict[str, str] | None = None) -> Any:
        return await self.client.get(url, headers={**self.admin, **(headers or {})})


@pytest.fixture
async def gateway(network: NetworkLayout, tmp_path: Path) -> AsyncIterator[Gateway]:
    config = network.config("AL-ARO", environ={"EXCHANGE_DATA_DIR": str(tmp_path / "data")})
    app = create_app(config, start_relay=False)
    admin = bearer(network.nodes["AL-ARO"].tokens["admin"])
    async with TestClient(TestServer(app)) as client:
        yield Gateway(client, app, admin)


def good_values(route: Route, spec: dict[str, Any]) -> dict[str, str]:
    """A valid value for each parameter of `route`, by its documented schema."""
    values = {}
    for param in spec["paths"][route.path][route.method.lower()]["parameters"]:
        schema = param["schema"]
        if schema.get("format") == "uuid":
            values[param["name"]] = str(uuid4())
        elif "enum" in schema:
            values[param["name"]] = schema["enum"][0]
        elif "examples" in schema:
            values[param["name"]] = schema["examples"][0]
        else:
            values[param["name"]] = str(schema.get("minimum", 0))
    return values


def request_with(route: Route, where: In, values: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The URL and headers of `route` with `values` at their places (see `where_of`)."""
    assert route.params is not None
    located = {wire: loc for wire, loc, _ in route.params.fields_by_location()}
    path = route.path
    query: list[tuple[str, str]] = []
    headers: dict[str, str] = {}
    for name, value in values.items():
        loc = located.get(name, where)
        if loc is In.PATH:
            path = path.replace(f"{{{name}}}", urllib.parse.quote(value, safe="") or "%20")
        elif loc is In.HEADER:
            headers[name] = value
        else:
            query.append((name, value))
    return (f"{path}?{urllib.parse.urlencode(query)}" if query else path), headers


def bad_values(route: Route) -> Iterator[tuple[str, In, str, str]]:
    """(parameter, where, label, value) of every bad value to try on `route`."""
    assert route.params is not None
    properties = route.params.model_json_schema()["properties"]
    for wire, where, _ in route.params.fields_by_location():
        schema = json.dumps(properties[wire])
        if '"integer"' in schema:
            bad = NOT_INTEGERS
        elif '"uuid"' in schema:
            bad = NOT_UUIDS
        else:
            bad = BAD_TEXT[wire]
        for label, value in bad.items():
            if where is In.HEADER and value != value.strip():
                continue  # spaces around a header's value are not part of it
            if where is In.PATH and value == "":
                continue  # an empty segment is another path
            yield wire, where, label, value


async def problem_of(response: Any, path: str, case: str = "") -> dict[str, Any]:
    assert response.status == 400, (case, await response.text())
    assert response.content_type == "application/problem+json"
    problem: dict[str, Any] = await response.json()
    ProblemDetails.model_validate(problem)
    assert problem["code"] == "request.bad_parameter"
    assert path in [e["path"] for e in problem["errors"]], problem
    return problem


@pytest.mark.parametrize("route", ROUTES_WITH_PARAMS, ids=lambda r: r.operation_id)
async def test_a_bad_parameter_is_a_400_problem_that_names_it(
    gateway: Gateway, route: Route
) -> None:
    spec = await (await gateway.client.get("/openapi.json")).json()
    tried = 0
    for name, where, label, value in bad_values(route):
        url, headers = request_with(route, where, {**good_values(route, spec), name: value})
        response = await gateway.get(url, headers)
        problem = await problem_of(response, f"/{where}/{name}", f"{name} {label}")
        assert name in problem["detail"]
        tried += 1
    assert tried


@pytest.mark.parametrize("route", ROUTES_WITH_PARAMS, ids=lambda r: r.operation_id)
async def test_an_unknown_or_repeated_query_parameter_is_refused(
    gateway: Gateway, route: Route
) -> None:
    spec = await (await gateway.client.get("/openapi.json")).json()
    url, headers = request_with(route, In.QUERY, {**good_values(route, spec), "limt": "5"})
    problem = await problem_of(await gateway.get(url, headers), "/query/limt")
    assert "not a parameter" in problem["errors"][0]["message"]
    assert route.params is not None
    queried = [w for w, loc, _ in route.params.fields_by_location() if loc is In.QUERY]
    if queried:
        url, headers = request_with(route, In.QUERY, good_values(route, spec))
        twice = f"{url}{'&' if '?' in url else '?'}{queried[0]}=1"
        await problem_of(await gateway.get(twice, headers), f"/query/{queried[0]}")


async def test_the_issue_s_superscript_two_is_a_400_not_a_500(gateway: Gateway) -> None:
    problem = await problem_of(await gateway.get("/v1/audit/entries?from=%C2%B2"), "/query/from")
    assert problem["errors"] == [
        {"path": "/query/from", "message": "must be a whole number written with 0-9 only"}
    ]


async def test_well_formed_parameters_are_taken_as_written(gateway: Gateway) -> None:
    page = await gateway.get("/v1/audit/entries?from=007&limit=1")
    assert page.status == 200
    assert (await page.json())["next"] in (7, 8)
    assert (
        await gateway.get(f"/v1/subscriptions/events?network={NETWORK}&case=AL-1")
    ).status == 200
    assert (await gateway.get("/v1/audit/peers?node=RS-PPO")).status == 200


async def test_sizes_that_name_no_proof_are_not_found(gateway: Gateway) -> None:
    """Any pair of sizes the schemas allow gets its proof or a 404, never a 400."""
    await gateway.app[keys.AUDIT].append("refused", code="auth.missing")
    await gateway.app[keys.AUDIT].append("refused", code="auth.missing")
    size = gateway.app[keys.AUDIT].head.size
    for url in (
        f"/v1/audit/proof/inclusion?index={size}",
        f"/v1/audit/proof/inclusion?index=0&size={size + 1}",
        f"/v1/audit/proof/inclusion?index={size - 1}&size=1",
        f"/v1/audit/proof/consistency?from={size + 1}",
        f"/v1/audit/proof/consistency?from=1&to={size + 1}",
        f"/v1/audit/proof/consistency?from={size}&to=1",
    ):
        response = await gateway.get(url)
        assert response.status == 404, url
        problem = await response.json()
        assert (problem["code"], problem["detail"][:14]) == ("not_found", "no such proof:")
    assert (await gateway.get(f"/v1/audit/proof/inclusion?index=0&size={size}")).status == 200
    assert (await gateway.get(f"/v1/audit/proof/consistency?from=1&to={size}")).status == 200
    assert (await gateway.get(f"/v1/audit/proof/consistency?from={size}")).status == 200


async def test_the_document_lists_each_route_s_parameters_as_its_model_parses_them(
    gateway: Gateway,
) -> None:
    spec = await (await gateway.client.get("/openapi.json")).json()
    for route in ROUTES:
        documented = spec["paths"][route.path][route.method.lower()].get("parameters", [])
        parsed = [] if route.params is None else list(route.params.fields_by_location())
        assert [(p["name"], p["in"]) for p in documented] == [(w, str(loc)) for w, loc, _ in parsed]
        for param in documented:
            assert param["schema"].get("default", 0) is not None  # absent, never null
    stream = spec["paths"]["/v1/subscriptions/stream"]["get"]["parameters"]
    network = next(p for p in stream if p["name"] == "network")
    assert network["schema"]["enum"] == [NETWORK]  # this node's networks only


async def test_the_document_offers_the_submissions_this_node_takes(gateway: Gateway) -> None:
    spec = await (await gateway.client.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    body = spec["paths"]["/v1/messages"]["post"]["requestBody"]["content"]["application/json"]
    variants = [schemas[ref["$ref"].rsplit("/", 1)[1]] for ref in body["schema"]["oneOf"]]
    types = [v["properties"]["type"]["const"] for v in variants]
    assert "receipt" not in types  # nodes send those themselves
    assert len(types) == len(set(types)) == 7  # one a type (a case update: one a network)
    for variant in variants:
        recipients = variant["properties"]["recipients"]
        assert recipients["uniqueItems"] is True
        assert sorted(recipients["items"]["enum"]) == ["MD-ARO", "RS-PPO"]  # never itself
        assert "must lie in the future" in variant["description"]
    update = next(v for v in variants if v["properties"]["type"]["const"] == "case-update")
    assert update["properties"]["recipients"]["minItems"] == 2  # every other member
    assert update["properties"]["payload"]["allOf"][1]["properties"]["network"] == {
        "const": NETWORK
    }
    assert "`payload.case` must be the message's `case`" in update["description"]
    # A body the document offers is taken.
    case_update = {
        "type": "case-update",
        "recipients": ["RS-PPO", "MD-ARO"],
        "case": "AL-2026-0042",
        "priority": "normal",
        "handling": {"tlp": "AMBER", "code": "H2"},
        "payload": {"case": "AL-2026-0042", "network": NETWORK, "event": "opened", "summary": "x"},
    }
    answer = await gateway.client.post("/v1/messages", json=case_update, headers=gateway.admin)
    assert answer.status == 202, await answer.text()


async def test_the_stream_documents_each_event_and_its_data(gateway: Gateway) -> None:
    spec = await (await gateway.client.get("/openapi.json")).json()
    ok = spec["paths"]["/v1/subscriptions/stream"]["get"]["responses"]["200"]["content"]
    event = ok["text/event-stream"]["schema"]
    assert event["properties"]["event"] == {"const": "case-update"}
    assert event["properties"]["data"]["contentMediaType"] == "application/json"
    assert event["properties"]["data"]["contentSchema"] == {
        "$ref": "#/components/schemas/CaseUpdateEvent"
    }
