"""The path, query and header parameters of a route, declared as one frozen pydantic model.

`@takes(Model)` on a handler parses its parameters with that model before it runs, and
`openapi.py` documents them from the same model, so what the document promises is what the
route enforces. Any bad parameter is a 400 `request.bad_parameter` naming each failing one
(`/query/limit`), never a 500. Integers are written with the ASCII digits 0-9 only (no sign,
no spaces, no `²`); an unknown or repeated query parameter is refused too.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Self, TypeVar, get_args, get_origin
from uuid import UUID

from aiohttp import web
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    ValidationError,
    ValidationInfo,
)
from pydantic.fields import FieldInfo
from pydantic_core import CoreSchema, ErrorDetails, PydanticCustomError, core_schema

from exchange.directory.view import NetworkView
from exchange.errors import FieldError, RequestError
from exchange.gateway import keys
from exchange.schemas import MAX_FIELD_ERRORS

MAX_DIGITS = 19
MAX_CURSOR = 2**62
"""Cursors and log sizes fit SQLite's signed 64-bit integers with room to spare."""


class In(StrEnum):
    """Where a parameter is sent; a field without one of these markers is a query parameter."""

    PATH = "path"
    QUERY = "query"
    HEADER = "header"


PATH, HEADER = In.PATH, In.HEADER


def ascii_integer(value: object) -> object:
    if not isinstance(value, str):
        return value
    if not value.isascii() or not value.isdigit():
        raise PydanticCustomError("ascii_integer", "must be a whole number written with 0-9 only")
    if len(value) > MAX_DIGITS:
        raise PydanticCustomError("ascii_integer", "is too large")
    return int(value)


AsciiInt = Annotated[int, BeforeValidator(ascii_integer)]
"""An integer as a parameter carries it: ASCII digits only, at most 19 of them."""

Cursor = Annotated[int, Field(ge=0, le=MAX_CURSOR), BeforeValidator(ascii_integer)]
"""A position in a list that only grows (inbox, case updates, audit log)."""

_UUID_TEXT = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


def _canonical_uuid(value: object) -> object:
    if isinstance(value, str) and not _UUID_TEXT.fullmatch(value):
        raise PydanticCustomError("uuid", "must be a UUID (8-4-4-4-12 hexadecimal digits)")
    return value


MessageId = Annotated[UUID, BeforeValidator(_canonical_uuid)]


@dataclass(frozen=True, slots=True)
class OneOfNode:
    """Marks a text parameter whose value must be one of `choices(view)`, names only this
    node knows (its networks); the OpenAPI document of the node lists them as the enum."""

    choices: Callable[[NetworkView], Sequence[str]]
    what: str

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.with_info_after_validator_function(self._check, handler(source))

    def _check(self, value: str, info: ValidationInfo) -> str:
        view = info.context
        if not isinstance(view, NetworkView):
            raise TypeError("parameters are validated with the node's network view as context")
        choices = self.choices(view)
        if value not in choices:
            raise PydanticCustomError(
                "one_of_node",
                "must be {what}: {choices}",
                {"what": self.what, "choices": ", ".join(choices) or "none"},
            )
        return value


def member_networks(view: NetworkView) -> tuple[str, ...]:
    return tuple(n.name for n in view.member_networks())


class RouteParams(BaseModel):
    """Base of every route's parameter model: frozen, and no parameter it does not declare."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def fields_by_location(cls) -> Iterator[tuple[str, In, FieldInfo]]:
        """(name on the wire, location, field) of each parameter, in declaration order."""
        for name, info in cls.model_fields.items():
            where = next((m for m in info.metadata if isinstance(m, In)), In.QUERY)
            yield info.alias or name, where, info

    @classmethod
    def from_request(cls, request: web.Request) -> Self:
        """The request's parameters; RequestError `request.bad_parameter` (400) otherwise."""
        raw: dict[str, str] = {}
        errors: list[FieldError] = []
        declared = {wire: where for wire, where, _ in cls.fields_by_location()}
        for name in dict.fromkeys(request.query):
            values = request.query.getall(name)
            if len(values) > 1:
                errors.append(FieldError(f"/query/{name}", "must be given at most once"))
            elif declared.get(name, In.QUERY) is not In.QUERY:
                errors.append(FieldError(f"/query/{name}", f"is sent in the {declared[name]}"))
            else:
                raw[name] = values[0]
        for wire, where, _ in cls.fields_by_location():
            if where is In.PATH:
                raw[wire] = request.match_info[wire]
            elif where is In.HEADER and wire in request.headers:
                raw[wire] = request.headers[wire].strip()  # HTTP's spaces around a value
        if errors:
            raise _bad_parameters(errors)
        try:
            return cls.model_validate(raw, context=request.app[keys.DIRECTORY])
        except ValidationError as exc:
            raise _bad_parameters(list(_parameter_errors(cls, exc))) from None


def _parameter_errors(model: type[RouteParams], exc: ValidationError) -> Iterator[FieldError]:
    where = {wire: location for wire, location, _ in model.fields_by_location()}
    for error in exc.errors(include_url=False):
        name = str(error["loc"][0]) if error["loc"] else ""
        yield FieldError(f"/{where.get(name, In.QUERY)}/{name}", _message(error, where))


def _message(error: ErrorDetails, where: dict[str, In]) -> str:
    """pydantic's complaint, phrased to follow "the parameter NAME ..."."""
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "extra_forbidden":
        known = ", ".join(w for w, loc in where.items() if loc is In.QUERY) or "none"
        return f"is not a parameter of this operation (its query parameters: {known})"
    if kind == "missing":
        return "is required"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx['pattern']}"
    if kind in ("ascii_integer", "uuid", "one_of_node"):
        return error["msg"]
    return f"is not valid: {error['msg']}"


def _bad_parameters(errors: list[FieldError]) -> RequestError:
    errors = errors[:MAX_FIELD_ERRORS]
    names = list(dict.fromkeys(e.path.rsplit("/", 1)[1] for e in errors))
    if len(errors) == 1:
        detail = f"the parameter {names[0]!r} {errors[0].message}"
    else:
        detail = f"the parameters {', '.join(repr(n) for n in names)} are not valid"
    return RequestError(detail, code="request.bad_parameter", errors=errors)


P = TypeVar("P", bound=RouteParams)
Endpoint = Callable[[web.Request, P], Awaitable[web.StreamResponse]]
RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_PARAMS = "__route_params__"


def takes(params: type[P]) -> Callable[[Endpoint[P]], RouteHandler]:
    """Decorates a handler `(request, params)`: the route's parameters are the model `params`,
    parsed before the handler runs and documented from the same model."""

    def decorate(endpoint: Endpoint[P]) -> RouteHandler:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await endpoint(request, params.from_request(request))

        functools.update_wrapper(handler, endpoint)
        handler.__dict__[_PARAMS] = params
        return handler

    return decorate


def params_of(handler: RouteHandler) -> type[RouteParams] | None:
    """The parameter model of a handler decorated with `takes`, else None."""
    found = getattr(handler, _PARAMS, None)
    return found if isinstance(found, type) and issubclass(found, RouteParams) else None


def openapi_parameters(model: type[RouteParams], view: NetworkView) -> list[dict[str, Any]]:
    """The OpenAPI Parameter Objects of `model`, as the node of `view` enforces them."""
    schema = model.model_json_schema()
    properties, required = schema["properties"], set(schema.get("required", ()))
    parameters = []
    for wire, where, info in model.fields_by_location():
        prop = _without_null(properties[wire])
        description = prop.pop("description", "")
        prop.pop("title", None)
        for marker in _markers(info):
            if isinstance(marker, OneOfNode):
                choices = list(marker.choices(view))
                prop = {**prop, "enum": choices, "examples": choices} if choices else {"not": {}}
        parameters.append(
            {
                "name": wire,
                "in": where.value,
                "description": description,
                "required": wire in required or where is In.PATH,
                "schema": prop,
            }
        )
    return parameters


def _markers(info: FieldInfo) -> Iterator[object]:
    """The field's metadata, and that of the `Annotated` types inside it (`X | None`)."""
    yield from info.metadata
    pending = [info.annotation]
    while pending:
        hint = pending.pop()
        args = get_args(hint)
        if get_origin(hint) is Annotated:
            yield from args[1:]
            args = args[:1]
        pending.extend(args)


def _without_null(prop: dict[str, Any]) -> dict[str, Any]:
    """An optional parameter is absent, never null: keep the schema of its value."""
    variants = [v for v in prop.get("anyOf", ()) if v.get("type") != "null"]
    if len(variants) != 1 or prop.get("default", 0) is not None:
        return dict(prop)
    rest = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
    return {**variants[0], **rest}
