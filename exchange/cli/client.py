"""`exchange send` and `exchange inbox`: a contact point's command-line client of its gateway.

The token comes from `--token` or, better (it stays out of the process list), from the
`EXCHANGE_TOKEN` environment variable. A refusal prints the problem's code, detail and
field errors and exits 1; unreadable input exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp

from exchange.cli import EXIT_CHECK_FAILED, EXIT_OK
from exchange.errors import ExchangeError
from exchange.model.common import HandlingCode, MessageType, Priority, Tlp

TIMEOUT = aiohttp.ClientTimeout(total=60)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    send = sub.add_parser("send", help="send a message through a gateway")
    _common(send)
    send.add_argument(
        "--type",
        required=True,
        choices=[t.value for t in MessageType if t is not MessageType.RECEIPT],
    )
    send.add_argument("--to", required=True, help="recipient node ids, comma-separated")
    send.add_argument("--case", required=True, help="the case reference")
    send.add_argument("--priority", choices=[p.value for p in Priority], default="normal")
    send.add_argument("--tlp", choices=[t.value for t in Tlp], default="AMBER")
    send.add_argument("--handling-code", choices=[h.value for h in HandlingCode], default="H2")
    send.add_argument("--in-reply-to", metavar="ID", help="the message this one answers")
    send.add_argument("--expires-at", metavar="TIME", help="RFC 3339 time, e.g. ...T12:00:00Z")
    send.add_argument("file", metavar="FILE", help="the payload as a JSON file ('-': stdin)")
    send.set_defaults(func=run_send)

    inbox = sub.add_parser("inbox", help="list the verified messages a gateway received")
    _common(inbox)
    inbox.add_argument("--after", type=int, default=0, metavar="CURSOR")
    inbox.add_argument("--limit", type=int, default=100)
    inbox.add_argument("--json", action="store_true", help="print the page as JSON")
    inbox.set_defaults(func=run_inbox)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="the gateway, e.g. http://127.0.0.1:8101")
    parser.add_argument("--token", help="bearer token (default: $EXCHANGE_TOKEN)")


def _token(args: argparse.Namespace) -> str:
    token = args.token or os.environ.get("EXCHANGE_TOKEN")
    if not token:
        raise ExchangeError("give --token or set EXCHANGE_TOKEN", code="usage")
    return str(token)


def _read_payload(name: str) -> Any:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExchangeError(f"cannot read {name}: {exc}", code="usage") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ExchangeError(f"{name} is not JSON: {exc}", code="usage") from None


def _print_problem(status: int, body: Any) -> None:
    if isinstance(body, dict) and "code" in body:
        print(f"refused ({status}) {body['code']}: {body.get('detail', '')}", file=sys.stderr)
        for error in body.get("errors") or []:
            print(f"  {error.get('path', '/')}: {error.get('message', '')}", file=sys.stderr)
    else:
        print(f"refused ({status}): {body}", file=sys.stderr)


async def _call(
    method: str, url: str, token: str, body: Any = None, params: dict[str, str] | None = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        session.request(method, url, json=body, params=params, headers=headers) as response,
    ):
        text = await response.text()
        try:
            return response.status, json.loads(text) if text else None
        except ValueError:
            return response.status, text


def _run(method: str, url: str, token: str, **kwargs: Any) -> tuple[int, Any] | None:
    try:
        return asyncio.run(_call(method, url, token, **kwargs))
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        print(f"cannot reach {url}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None


def run_send(args: argparse.Namespace) -> int:
    token = _token(args)
    body: dict[str, Any] = {
        "type": args.type,
        "recipients": [n.strip() for n in args.to.split(",") if n.strip()],
        "case": args.case,
        "priority": args.priority,
        "handling": {"tlp": args.tlp, "code": args.handling_code},
        "payload": _read_payload(args.file),
    }
    if args.in_reply_to:
        body["in_reply_to"] = args.in_reply_to
    if args.expires_at:
        body["expires_at"] = args.expires_at
    result = _run("POST", f"{args.url.rstrip('/')}/v1/messages", token, body=body)
    if result is None:
        return EXIT_CHECK_FAILED
    status, answer = result
    if status != 202 or not isinstance(answer, dict):
        _print_problem(status, answer)
        return EXIT_CHECK_FAILED
    print(f"{answer['id']} {answer['status']}")
    return EXIT_OK


def run_inbox(args: argparse.Namespace) -> int:
    token = _token(args)
    params = {"after": str(args.after), "limit": str(args.limit)}
    result = _run("GET", f"{args.url.rstrip('/')}/v1/inbox", token, params=params)
    if result is None:
        return EXIT_CHECK_FAILED
    status, page = result
    if status != 200 or not isinstance(page, dict):
        _print_problem(status, page)
        return EXIT_CHECK_FAILED
    if args.json:
        print(json.dumps(page, indent=2, ensure_ascii=False))
        return EXIT_OK
    for item in page["items"]:
        reply = f" re {item['in_reply_to']}" if item.get("in_reply_to") else ""
        print(
            f"{item['cursor']:>6}  {item['received_at']}  {item['sender']:<12} "
            f"{item['type']:<30} {item['case']}  {item['id']}{reply}"
        )
    print(f"next: {page['next']}")
    return EXIT_OK
