"""`exchange node run --config FILE`: run one node (HTTP gateway and relay) in the foreground.

SIGINT and SIGTERM shut it down gracefully: the HTTP server stops accepting, the relay
stops, and the stores close after their last commit. With an `[https]` section the
gateway listens with TLS only (and, with `client_ca_path`, demands client certificates).
"""

from __future__ import annotations

import argparse
import sys

from aiohttp import web

from exchange.cli import EXIT_CHECK_FAILED, EXIT_OK
from exchange.config import NodeConfig
from exchange.errors import ExchangeError
from exchange.gateway.app import create_app
from exchange.log import get_logger
from exchange.transport.bus import BusError
from exchange.transport.tls import https_server_context

SHUTDOWN_TIMEOUT_SECONDS = 10.0

_log = get_logger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("node", help="run a node")
    actions = parser.add_subparsers(dest="node_command", metavar="ACTION", required=True)
    run = actions.add_parser("run", help="run one node in the foreground until SIGINT/SIGTERM")
    run.add_argument("--config", required=True, metavar="FILE", help="the node's TOML file")
    run.set_defaults(func=run_node)


def run_node(args: argparse.Namespace) -> int:
    config = NodeConfig.load(args.config)
    app = create_app(config)
    https = config.https
    ssl_context = (
        https_server_context(https.cert_path, https.key_path, https.client_ca_path)
        if https is not None
        else None
    )
    _log.info(
        "node.listening",
        node=config.node_id,
        network=config.network,
        host=config.listen_host,
        port=config.listen_port,
        bus=config.bus,
        scheme="https" if https is not None else "http",
        client_certificates=https is not None and https.client_ca_path is not None,
    )
    try:
        web.run_app(
            app,
            host=config.listen_host,
            port=config.listen_port,
            ssl_context=ssl_context,
            shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
            print=None,
            access_log=None,
            handle_signals=True,
        )
    except BusError as exc:  # a broker failure is a failed run, not bad input
        return _failed(config.node_id, exc)
    except ExchangeError:
        raise
    except Exception as exc:  # the port is taken, the broker is unreachable, ...
        return _failed(config.node_id, exc)
    _log.info("node.stopped", node=config.node_id)
    return EXIT_OK


def _failed(node_id: str, exc: Exception) -> int:
    _log.error("node.failed", node=node_id, error=f"{type(exc).__name__}: {exc}")
    print(f"node {node_id} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    return EXIT_CHECK_FAILED
