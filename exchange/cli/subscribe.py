"""`exchange subscribe`: follow a gateway's case updates and print each as it arrives.

It reads the Server-Sent Events stream with a `subscriber` (or admin) token and resumes
after a lost connection without losing or repeating an update. The token comes from
`--token` or, better (it stays out of the process list), from `EXCHANGE_TOKEN`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from exchange.cli import EXIT_CHECK_FAILED, EXIT_OK
from exchange.cli.client import add_gateway_options, gateway_client
from exchange.client import GatewayClient, ProblemError
from exchange.errors import ExchangeError
from exchange.gateway.api_models import CaseUpdateEvent
from exchange.model.common import format_utc


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "subscribe",
        help="print a gateway's case updates as they arrive",
        description="Follows GET /v1/subscriptions/stream until interrupted (or --count).",
    )
    add_gateway_options(parser, kind="a subscriber")
    parser.add_argument("--case", help="only this case's updates")
    parser.add_argument("--network", help="only this prosecutor network's updates")
    parser.add_argument(
        "--after", type=int, default=0, metavar="CURSOR", help="start after this cursor"
    )
    parser.add_argument("--count", type=int, metavar="N", help="stop after N updates")
    parser.add_argument("--json", action="store_true", help="print each update as JSON")
    parser.set_defaults(func=run_subscribe)


def run_subscribe(args: argparse.Namespace) -> int:
    client = gateway_client(args)
    if args.count is not None and args.count < 1:
        raise ExchangeError("--count must be at least 1", code="usage")
    if args.after < 0:
        raise ExchangeError("--after must not be negative", code="usage")
    try:
        asyncio.run(_follow(args, client))
    except ProblemError as refused:
        print(f"refused: {refused}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    return EXIT_OK


async def _follow(args: argparse.Namespace, client: GatewayClient) -> None:
    def lost(cursor: int, error: BaseException) -> None:
        print(f"connection lost ({type(error).__name__}); resuming after {cursor}", file=sys.stderr)

    seen = 0
    async with client:
        # the documents as sent: --json prints each envelope as the exact signed JSON
        async for document in client.stream_case_update_documents(
            after=args.after, network=args.network, case=args.case, on_reconnect=lost
        ):
            if args.json:
                print(json.dumps(document, ensure_ascii=False), flush=True)
            else:
                print(format_update(CaseUpdateEvent.model_validate(document)), flush=True)
            seen += 1
            if args.count is not None and seen >= args.count:
                return


def format_update(item: CaseUpdateEvent) -> str:
    """One line per update: cursor, time, network, case, event, sender, summary."""
    summary = str(item.update.get("summary", ""))
    return (
        f"{item.cursor:>6}  {format_utc(item.received_at)}  {item.network:<12} {item.case:<16} "
        f"{item.event:<18} {item.sender:<10} {summary}"
    )
