"""The OpenAPI 3.1 document of a node's HTTP API, generated from the route table.

Paths, parameters, security and error responses come from `ROUTES`; request and response
bodies are the JSON Schemas (2020-12, as OpenAPI 3.1 uses) of the pydantic models in
`api_models` and of the current payload models, so the document cannot describe something
the code does not do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from exchange import __version__ as package_version
from exchange.directory.view import NetworkView
from exchange.errors import ERROR_TABLE
from exchange.gateway.api_models import ProblemDetails, SubmitMessage
from exchange.gateway.params import openapi_parameters
from exchange.gateway.problems import PROBLEM_CONTENT_TYPE
from exchange.gateway.route_spec import EVENT_STREAM, EventStream, Route
from exchange.gateway.submission_schema import submission_body
from exchange.model.common import MessageType
from exchange.schemas import CURRENT_VERSIONS, model_for

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1"
REF_TEMPLATE = "#/components/schemas/{model}"

_Refs = dict[tuple[Any, JsonSchemaMode], dict[str, Any]]


def _component_schemas(
    routes: Sequence[Route], view: NetworkView
) -> tuple[_Refs, dict[str, Any], dict[Any, dict[str, Any]]]:
    """The references to each model's schema, the component schemas, and the schema of
    each request body (the model's, or what the node enforces of it)."""
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ProblemDetails, "serialization")]
    for route in routes:
        if route.request is not None:
            wanted.append((route.request, "validation"))
        if route.response is not None:
            wanted.append((route.response, "serialization"))
        if route.stream is not None:
            wanted.append((route.stream.model, "serialization"))
    payloads = _payload_models()
    wanted += [(model, "validation") for model in payloads.values()]
    refs, definitions = models_json_schema(list(dict.fromkeys(wanted)), ref_template=REF_TEMPLATE)
    schemas = dict(definitions.get("$defs", {}))
    bodies = {r.request: refs[(r.request, "validation")] for r in routes if r.request is not None}
    submit = refs.get((SubmitMessage, "validation"))
    if submit is not None:
        # The payload's schema depends on the sibling `type`: list each type's schema.
        name = submit["$ref"].rsplit("/", 1)[1]
        payload = schemas[name]["properties"]["payload"]
        schemas[name]["properties"]["payload"] = {
            "description": f"{payload.get('description', '')} One of: "
            + ", ".join(f"`{t}`: {refs[(m, 'validation')]['$ref']}" for t, m in payloads.items()),
            "anyOf": [refs[(m, "validation")] for m in payloads.values()],
        }
        payload_refs = {t: refs[(m, "validation")] for t, m in payloads.items()}
        bodies[SubmitMessage] = submission_body(schemas, name, payload_refs, view)
    return dict(refs), schemas, bodies


def _payload_models() -> dict[str, type[BaseModel]]:
    """The current payload model of each type a local client may send."""
    return {
        kind.value: model_for(kind, major)
        for kind, major in CURRENT_VERSIONS.items()
        if kind is not MessageType.RECEIPT
    }


def _error_responses(codes: Sequence[str], problem_ref: dict[str, Any]) -> dict[str, Any]:
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys(codes):
        by_status.setdefault(ERROR_TABLE[code].status, []).append(code)
    return {
        str(status): {
            "description": "; ".join(f"`{c}`: {ERROR_TABLE[c].title}" for c in status_codes),
            "content": {PROBLEM_CONTENT_TYPE: {"schema": problem_ref}},
        }
        for status, status_codes in sorted(by_status.items())
    }


def _event_schema(stream: EventStream, refs: _Refs) -> dict[str, Any]:
    """One event of the stream, as an SSE parser reads it (OpenAPI 3.1 describes each event
    of a `text/event-stream` with the media type's schema); comments are not events."""
    return {
        "type": "object",
        "description": stream.description,
        "properties": {
            "event": {"const": stream.event},
            "id": {"type": "string", "pattern": "^[0-9]+$", "description": "The cursor."},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": refs[(stream.model, "serialization")],
            },
            "retry": {"type": "integer", "minimum": 0},
        },
        "required": ["event", "id", "data"],
    }


def _operation(
    route: Route, refs: _Refs, bodies: dict[Any, dict[str, Any]], view: NetworkView
) -> dict[str, Any]:
    problem_ref = refs[(ProblemDetails, "serialization")]
    media = route.response_media
    if route.response is not None:
        schema = refs[(route.response, "serialization")]
    elif route.stream is not None:
        media, schema = EVENT_STREAM, _event_schema(route.stream, refs)
    else:
        schema = route.response_schema or {}
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": list(route.tags),
        "security": [{"bearer": []}] if route.permission is not None else [],
        "responses": {
            str(route.status): {
                "description": route.summary,
                "content": {media: {"schema": schema}},
            },
            **_error_responses(route.error_codes, problem_ref),
        },
    }
    description = route.description
    if route.permission is not None:
        description = (
            f"{description} Needs a bearer token whose role grants `{route.permission.value}`."
        ).strip()
    if description:
        operation["description"] = description
    if route.params is not None:
        operation["parameters"] = openapi_parameters(route.params, view)
    if route.request is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": bodies[route.request]}},
        }
    return operation


def build_openapi(routes: Sequence[Route], view: NetworkView) -> dict[str, Any]:
    """The complete OpenAPI 3.1 document for `routes` as the node of `view` serves them
    (its partners and networks are those of the directory in use)."""
    node_id, network = view.node_id, view.config.network
    refs, schemas, bodies = _component_schemas(routes, view)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation = _operation(route, refs, bodies, view)
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": f"Exchange gateway {node_id} ({network})",
            "version": f"{API_VERSION} ({package_version})",
            "description": "A node of the secure cross-border exchange of signed "
            "asset-recovery requests. Errors are RFC 9457 problem details with a stable "
            "`code`; the payload schemas are published as `schemas/<type>/v<major>.json`.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token configured (as its SHA-256) for this node, "
                    "with a role: contact-point, subscriber, auditor or admin.",
                }
            },
        },
    }
