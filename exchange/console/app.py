"""Mounting the console on a gateway's application: its routes under /console, its static
files from the package, its security headers on every response under /console.

The console is pages over the node's own functions, in the gateway's process, behind the
same tokens and roles (`exchange.console.web`); nothing here is reachable without a session
but the sign-in page and the static files (a stylesheet and a script, no data).
"""

from __future__ import annotations

from aiohttp import web

from exchange.console import admin, audit_pages, compose, deadlines, feed, messages, signin
from exchange.console.sessions import Sessions
from exchange.console.web import (
    CONSOLE,
    PREFIX,
    STATIC,
    Handler,
    make_console,
    page,
    security_headers,
)
from exchange.errors import RequestError

ROUTES: tuple[tuple[str, str, Handler, str | None], ...] = (
    ("GET", PREFIX, signin.bare_prefix, None),
    ("GET", f"{PREFIX}/", signin.home, "console-home"),
    ("GET", f"{PREFIX}/login", signin.login_page, "console-login"),
    ("POST", f"{PREFIX}/login", signin.login, None),
    ("POST", f"{PREFIX}/logout", signin.logout, "console-logout"),
    ("GET", f"{PREFIX}/inbox", messages.inbox, "console-inbox"),
    ("GET", f"{PREFIX}/inbox/{{id}}", messages.inbox_message, None),
    ("GET", f"{PREFIX}/sent", messages.sent, "console-sent"),
    ("GET", f"{PREFIX}/sent/{{id}}", messages.sent_message, None),
    ("GET", f"{PREFIX}/cases", messages.cases, "console-cases"),
    ("GET", f"{PREFIX}/cases/{{case}}", messages.case_view, None),
    ("GET", f"{PREFIX}/compose", compose.choose, "console-compose"),
    ("GET", f"{PREFIX}/compose/{{type}}", compose.compose_form, None),
    ("POST", f"{PREFIX}/compose/{{type}}", compose.compose_send, None),
    ("GET", f"{PREFIX}/feed", feed.feed, "console-feed"),
    ("GET", f"{PREFIX}/feed/stream", feed.feed_stream, "console-feed-stream"),
    ("GET", f"{PREFIX}/audit", audit_pages.audit_home, "console-audit"),
    ("POST", f"{PREFIX}/audit/verify", audit_pages.verify_start, "console-verify"),
    ("GET", f"{PREFIX}/audit/verify/{{job}}", audit_pages.verify_status, None),
    ("GET", f"{PREFIX}/audit/entries", audit_pages.entries, "console-entries"),
    ("GET", f"{PREFIX}/audit/entries/{{index}}", audit_pages.entry, None),
    ("GET", f"{PREFIX}/audit/inclusion", audit_pages.inclusion, "console-inclusion"),
    ("GET", f"{PREFIX}/audit/deadlines", deadlines.deadlines, "console-deadlines"),
    ("GET", f"{PREFIX}/audit/deadlines.csv", deadlines.deadlines_csv, "console-deadlines-csv"),
    ("GET", f"{PREFIX}/admin", admin.admin, "console-admin"),
)


async def static_file(request: web.Request) -> web.StreamResponse:
    """The console's stylesheet and script, from the package (nothing else is served)."""
    found = request.app[CONSOLE].static.get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound()
    body, content_type = found
    return web.Response(body=body, content_type=content_type, charset="utf-8")


@page()
async def no_such_page(request: web.Request) -> web.StreamResponse:
    raise RequestError("there is no such page in the console", code="not_found")


def setup_console(app: web.Application, sessions: Sessions | None = None) -> None:
    """Add the console's routes and headers to a gateway's application."""
    app[CONSOLE] = make_console(sessions)
    for method, path, handler, name in ROUTES:
        app.router.add_route(method, path, handler, name=name)
    app.router.add_get(f"{STATIC}{{name}}", static_file, name="console-static")
    app.router.add_get(f"{PREFIX}/{{tail:.+}}", no_such_page)  # last: an HTML 404
    app.on_response_prepare.append(security_headers)
