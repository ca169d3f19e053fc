"""`exchange` command line: one subcommand module per concern, found automatically.

Each module in this package exposes `register(subparsers)`, which adds its subcommands
and sets `func` (returning the exit code). Exit codes: 0 success, 1 a check failed,
2 bad usage or input.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from exchange import log
from exchange.errors import ExchangeError

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2

_USAGE_CODES = frozenset(
    {
        "usage",
        "config.invalid",
        "envelope.malformed",
        "request.invalid",
        # the node's own key, as configured: a setup to fix, not a check that failed
        "key.mismatch",
        "pkcs11.uri",
        "pkcs11.token",
        "pkcs11.pin",
        "pkcs11.key",
    }
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exchange",
        description="Secure cross-border exchange of signed asset-recovery requests.",
    )
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    log.configure(args.log_level)
    try:
        code: int = args.func(args)
    except ExchangeError as err:
        print(err.diagnostics(), file=sys.stderr)
        return EXIT_USAGE if err.code in _USAGE_CODES else EXIT_CHECK_FAILED
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
