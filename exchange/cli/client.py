"""`exchange send` and `exchange inbox`: a contact point's command-line client of its gateway.

The token comes from `--token` or, better (it stays out of the process list), from the
`EXCHANGE_TOKEN` environment variable; an HTTPS gateway needs `--ca` (and `--cert`,
`--key` where it asks for client certificates). A refusal prints the problem's code,
detail and field errors and exits 1; unreadable input exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from exchange.cli import EXIT_CHECK_FAILED, EXIT_OK
from exchange.client import GatewayClient, GatewayUnreachable, ProblemError
from exchange.errors import ExchangeError
from exchange.model.common import HandlingCode, MessageType, Priority, Tlp, format_utc

TIMEOUT_SECONDS = 60.0
_T = TypeVar("_T")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    send = sub.add_parser("send", help="send a message through a gateway")
    add_gateway_options(send)
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
    add_gateway_options(inbox)
    inbox.add_argument("--after", type=int, default=0, metavar="CURSOR")
    inbox.add_argument("--limit", type=int, default=100)
    inbox.add_argument("--json", action="store_true", help="print the page as JSON")
    inbox.set_defaults(func=run_inbox)


def add_gateway_options(parser: argparse.ArgumentParser, kind: str = "bearer") -> None:
    """--url, --token and the HTTPS options of a command that talks to a gateway."""
    parser.add_argument("--url", required=True, help="the gateway, e.g. http://127.0.0.1:8101")
    parser.add_argument("--token", help=f"{kind} token (default: $EXCHANGE_TOKEN)")
    parser.add_argument("--ca", type=Path, help="HTTPS: the CA of the gateway's certificate")
    parser.add_argument("--cert", type=Path, help="HTTPS: a client certificate, if asked for")
    parser.add_argument("--key", type=Path, help="HTTPS: the client certificate's key")


def gateway_client(args: argparse.Namespace) -> GatewayClient:
    """The client of `--url`, with the token of `--token` or `$EXCHANGE_TOKEN`."""
    token = args.token or os.environ.get("EXCHANGE_TOKEN")
    if not token:
        raise ExchangeError("give --token or set EXCHANGE_TOKEN", code="usage")
    return GatewayClient(
        args.url,
        str(token),
        ca_file=args.ca,
        cert_file=args.cert,
        key_file=args.key,
        timeout=TIMEOUT_SECONDS,
    )


def _read_payload(name: str) -> Any:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExchangeError(f"cannot read {name}: {exc}", code="usage") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ExchangeError(f"{name} is not JSON: {exc}", code="usage") from None


def _print_problem(err: ProblemError) -> None:
    if isinstance(err.body, dict) and "code" in err.body:
        print(f"refused ({err.status}) {err.code}: {err.detail}", file=sys.stderr)
        for error in err.errors:
            print(f"  {error.path}: {error.message}", file=sys.stderr)
    else:
        print(f"refused ({err.status}): {err.body}", file=sys.stderr)


def _run(client: GatewayClient, call: Callable[[GatewayClient], Awaitable[_T]]) -> _T | None:
    """`call(client)`; None once a refusal or an unreachable gateway has been reported."""

    async def main() -> _T:
        async with client:
            return await call(client)

    try:
        return asyncio.run(main())
    except ProblemError as err:
        _print_problem(err)
    except GatewayUnreachable as err:
        print(f"cannot reach {err.url}: {err.detail}", file=sys.stderr)
    return None


def run_send(args: argparse.Namespace) -> int:
    client = gateway_client(args)
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
    accepted = _run(client, lambda gateway: gateway.submit(body))
    if accepted is None:
        return EXIT_CHECK_FAILED
    print(f"{accepted.id} {accepted.status}")
    return EXIT_OK


def run_inbox(args: argparse.Namespace) -> int:
    client = gateway_client(args)
    if args.json:  # the page as sent: its envelopes are the exact signed JSON
        params = {"after": args.after, "limit": args.limit}
        answer = _run(client, lambda gateway: gateway.request("GET", "/v1/inbox", params=params))
        if answer is None:
            return EXIT_CHECK_FAILED
        print(json.dumps(answer[1], indent=2, ensure_ascii=False))
        return EXIT_OK
    page = _run(client, lambda gateway: gateway.inbox(after=args.after, limit=args.limit))
    if page is None:
        return EXIT_CHECK_FAILED
    for item in page.items:
        reply = f" re {item.in_reply_to}" if item.in_reply_to else ""
        print(
            f"{item.cursor:>6}  {format_utc(item.received_at)}  {item.sender:<12} "
            f"{item.type:<30} {item.case}  {item.id}{reply}"
        )
    print(f"next: {page.next}")
    return EXIT_OK
