"""What a route is: its method, path, handler, the permission it needs, and its documentation.

The route table built from these is the single source of both the aiohttp router (with
authentication in front of every guarded handler) and the served OpenAPI document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from exchange.gateway.auth import Permission
from exchange.gateway.params import RouteHandler as RouteHandler
from exchange.gateway.params import RouteParams, params_of

AUTH_CODES = ("auth.missing", "auth.invalid", "auth.forbidden")
EVENT_STREAM = "text/event-stream"


@dataclass(frozen=True, slots=True)
class EventStream:
    """A Server-Sent Events response: events named `event`, whose `id` is a cursor and whose
    `data` is one line of JSON, a document of `model`."""

    event: str
    model: type[BaseModel]
    description: str


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: RouteHandler
    operation_id: str
    summary: str
    permission: Permission | None  # None: no token needed
    status: int = 200
    response: type[BaseModel] | None = None
    response_media: str = "application/json"
    response_schema: dict[str, Any] | None = None  # when there is no model
    request: type[BaseModel] | None = None
    stream: EventStream | None = None  # the response is text/event-stream
    errors: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    description: str = ""

    @property
    def params(self) -> type[RouteParams] | None:
        """The model of the route's parameters, declared on its handler with `takes`."""
        return params_of(self.handler)

    @property
    def error_codes(self) -> tuple[str, ...]:
        """Every error code this route may answer, authentication included."""
        auth = AUTH_CODES if self.permission is not None else ()
        params = ("request.bad_parameter",) if self.params is not None else ()
        return (*auth, *params, *self.errors, "internal")
