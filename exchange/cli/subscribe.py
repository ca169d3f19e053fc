"""`exchange subscribe`: follow a gateway's case updates and print each as it arrives.

It reads the Server-Sent Events stream with a `subscriber` (or admin) token and resumes
after a lost connection without losing or repeating an update. The token comes from
`--token` or, better (it stays out of the process list), from `EXCHANGE_TOKEN`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

import aiohttp

from exchange.cli import EXIT_CHECK_FAILED, EXIT_OK
from exchange.errors import ExchangeError
from exchange.subscriptions.client import SubscriptionRefused, format_update, stream_updates


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "subscribe",
        help="print a gateway's case updates as they arrive",
        description="Follows GET /v1/subscriptions/stream until interrupted (or --count).",
    )
    parser.add_argument("--url", required=True, help="the gateway, e.g. http://127.0.0.1:8101")
    parser.add_argument("--token", help="a subscriber token (default: $EXCHANGE_TOKEN)")
    parser.add_argument("--case", help="only this case's updates")
    parser.add_argument("--network", help="only this prosecutor network's updates")
    parser.add_argument(
        "--after", type=int, default=0, metavar="CURSOR", help="start after this cursor"
    )
    parser.add_argument("--count", type=int, metavar="N", help="stop after N updates")
    parser.add_argument("--json", action="store_true", help="print each update as JSON")
    parser.set_defaults(func=run_subscribe)


def run_subscribe(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("EXCHANGE_TOKEN")
    if not token:
        raise ExchangeError("give --token or set EXCHANGE_TOKEN", code="usage")
    if args.count is not None and args.count < 1:
        raise ExchangeError("--count must be at least 1", code="usage")
    if args.after < 0:
        raise ExchangeError("--after must not be negative", code="usage")
    try:
        asyncio.run(_follow(args, str(token)))
    except SubscriptionRefused as refused:
        print(f"refused: {refused}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    return EXIT_OK


async def _follow(args: argparse.Namespace, token: str) -> None:
    def lost(cursor: int, error: BaseException) -> None:
        print(f"connection lost ({type(error).__name__}); resuming after {cursor}", file=sys.stderr)

    seen = 0
    async with aiohttp.ClientSession() as session:
        async for item in stream_updates(
            session,
            args.url,
            token,
            after=args.after,
            network=args.network,
            case=args.case,
            on_reconnect=lost,
        ):
            if args.json:
                print(json.dumps(item, ensure_ascii=False), flush=True)
            else:
                print(format_update(item), flush=True)
            seen += 1
            if args.count is not None and seen >= args.count:
                return
