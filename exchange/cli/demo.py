"""`exchange demo`: run a demo network of four nodes through one case, checking every step."""

from __future__ import annotations

import argparse
from pathlib import Path

from exchange import log
from exchange.demo.runner import main as run_main


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "demo",
        help="run a demo network of four nodes exchanging real signed requests",
        description="Create a network (CA, certificates, directory, configurations), start "
        "the authorities AL-ARO, RS-PPO and MD-ARO and the crypto exchange EE-VASP (a "
        "private-sector member), and play a case: asset inquiry, findings, freeze notice, "
        "decision, extradition support; then EE-VASP's inquiry, answer, freeze notice and "
        "freeze. Exit 0 only if every step verified.",
    )
    parser.add_argument(
        "--bus",
        choices=("auto", "amqp", "memory"),
        default="auto",
        help="auto (default): RabbitMQ at EXCHANGE_AMQP_URL when it answers, else in-memory",
    )
    parser.add_argument("--serve", action="store_true", help="keep the nodes running afterwards")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="write the network here, keep it")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.log_level is None:
        log.configure("WARNING")  # the demo's own lines tell the story; logs only for trouble
    return run_main(args.bus, args.keep, args.serve)
