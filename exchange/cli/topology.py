"""`exchange topology render | apply | asyncapi`: a network's RabbitMQ definitions (users,
permissions, topic permissions, exchanges, queues, bindings), imported into a broker, and
its AsyncAPI document, all from the same module the gateways declare from.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from exchange.directory.document import MemberRole, parse_directory
from exchange.errors import ConfigError, ExchangeError
from exchange.model.common import NETWORK_PATTERN, NODE_ID_PATTERN
from exchange.transport.asyncapi import asyncapi_document
from exchange.transport.provision import (
    IMPORT_TIMEOUT_SECONDS,
    import_with_management_api,
    import_with_rabbitmqctl,
)
from exchange.transport.tls import https_client_context
from exchange.transport.topology import QueueBounds, Topology


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("topology", help="the network's RabbitMQ topology")
    actions = parser.add_subparsers(dest="topology_command", metavar="ACTION", required=True)
    render = actions.add_parser(
        "render",
        help="print RabbitMQ definitions JSON (import with `exchange topology apply`)",
    )
    _network_arguments(render)
    render.add_argument(
        "--auditor", action="append", default=[], help="a user that may read the audit stream"
    )
    render.set_defaults(func=run_render)

    apply = actions.add_parser(
        "apply",
        help="import the definitions into a running broker and wait until they are in place",
        description="With rabbitmqctl (default; run it on a broker host, as root or the "
        "rabbitmq user) or, with --management-url, the management HTTP API.",
    )
    _network_arguments(apply)
    apply.add_argument(
        "--auditor", action="append", default=[], help="a user that may read the audit stream"
    )
    apply.add_argument("--rabbitmqctl", default="rabbitmqctl", help="path of rabbitmqctl")
    apply.add_argument("--node", help="the broker node for rabbitmqctl -n, e.g. rabbit@b1")
    apply.add_argument("--management-url", help="e.g. https://b1.see-arn.example:15671")
    apply.add_argument("--management-user", help="an administrator of the broker")
    apply.add_argument(
        "--management-password-file", type=Path, help="a file holding that user's password"
    )
    apply.add_argument("--management-ca", type=Path, help="CA of the management HTTPS listener")
    apply.add_argument("--timeout", type=float, default=IMPORT_TIMEOUT_SECONDS, help="seconds")
    apply.set_defaults(func=run_apply)

    asyncapi = actions.add_parser(
        "asyncapi", help="write the network's AsyncAPI 3.0 document (channels, messages)"
    )
    _network_arguments(asyncapi)
    asyncapi.add_argument(
        "--server",
        help="the broker URL nodes connect to (default amqps://localhost:5671/<vhost>)",
    )
    asyncapi.add_argument("--doc-version", default="1.0.0", help="info.version of the document")
    asyncapi.add_argument("--output", "-o", type=Path, help="write here instead of standard output")
    asyncapi.set_defaults(func=run_asyncapi)


def _network_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", default="", help="comma-separated node ids, e.g. AL-ARO,RS-PPO")
    parser.add_argument(
        "--network",
        type=Path,
        help='network.json ({"network": NAME, "nodes": {ID: {...}}, "networks": {...}}): '
        "its nodes are members of NAME and of the prosecutor networks listed",
    )
    parser.add_argument(
        "--directory",
        type=Path,
        help="a signed network directory (directory.json): its members, prosecutor networks "
        "and roles; private-sector members may publish and bind only what their role allows",
    )
    parser.add_argument(
        "--directory-publisher",
        action="append",
        default=[],
        help="a user that may publish directories to <prefix>.directory (the secretariat)",
    )
    parser.add_argument("--vhost", help="virtual host (default: the network's name, else '/')")
    parser.add_argument("--prefix", default="xb", help="name prefix (default: xb)")
    parser.add_argument("--delivery-limit", type=int, default=5, help="deliveries before poison")
    parser.add_argument("--stream-max-age", default="7D", help="audit stream retention, e.g. 7D")
    parser.add_argument(
        "--stream-max-bytes", type=int, default=Topology().stream_max_bytes, help="stream size cap"
    )
    default = Topology()
    for queues, bounds in (("inbox", default.inbox_bounds), ("dead", default.dead_bounds)):
        what = "each inbox and subscription queue" if queues == "inbox" else "each dead queue"
        parser.add_argument(
            f"--{queues}-max-length",
            type=int,
            default=bounds.max_length,
            help=f"messages {what} holds before the broker refuses more ({bounds.max_length})",
        )
        parser.add_argument(
            f"--{queues}-max-bytes",
            type=int,
            default=bounds.max_bytes,
            help=f"bytes of bodies {what} holds before the broker refuses more "
            f"({bounds.max_bytes})",
        )


class _Network:
    """What the command line names: the topology, the nodes, the networks, the vhost."""

    def __init__(self, args: argparse.Namespace) -> None:
        nodes = [n.strip() for n in args.nodes.split(",") if n.strip()]
        networks: dict[str, list[str]] = {}
        vhost = args.vhost
        name = None
        self.node_bounds: dict[str, QueueBounds] = {}
        self.roles: dict[str, tuple[list[str], list[str]]] = {}
        self.publishers: list[str] = list(args.directory_publisher)
        if args.directory is not None:
            name, members, prosecutor_networks, self.roles = read_directory(args.directory)
            networks.update(prosecutor_networks)
            nodes += [n for n in members if n not in nodes]
            vhost = vhost or name
        if args.network is not None:
            name, members, prosecutor_networks = read_network(args.network)
            networks[name] = members
            networks.update(prosecutor_networks)
            self.node_bounds = read_node_bounds(args.network)
            nodes += [n for n in members if n not in nodes]
            vhost = vhost or name
        if not nodes:
            raise ExchangeError("give --nodes or --network", code="usage")
        for node in nodes:
            if not re.fullmatch(NODE_ID_PATTERN, node):
                raise ExchangeError(f"{node!r} is not a node id ({NODE_ID_PATTERN})", code="usage")
        try:
            self.topology = Topology(
                prefix=args.prefix,
                delivery_limit=args.delivery_limit,
                stream_max_age=args.stream_max_age,
                stream_max_bytes=args.stream_max_bytes,
                inbox_bounds=QueueBounds(args.inbox_max_length, args.inbox_max_bytes),
                dead_bounds=QueueBounds(args.dead_max_length, args.dead_max_bytes),
            )
        except ValueError as err:
            raise ExchangeError(str(err), code="usage") from err
        self.nodes, self.networks = nodes, networks
        self.vhost: str = vhost or "/"
        self.name: str = name or (vhost if vhost and vhost != "/" else "network")

    def definitions(self, auditors: list[str]) -> dict[str, Any]:
        try:
            return self.topology.render_definitions(
                self.vhost,
                self.nodes,
                self.networks,
                auditors=auditors,
                node_bounds=self.node_bounds,
                roles=self.roles,
                directory_publishers=self.publishers,
            )
        except ValueError as err:
            raise ExchangeError(str(err), code="usage") from err


def run_render(args: argparse.Namespace) -> int:
    definitions = _Network(args).definitions(args.auditor)
    json.dump(definitions, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def run_apply(args: argparse.Namespace) -> int:
    network = _Network(args)
    definitions = network.definitions(args.auditor)
    if args.management_url:
        if not args.management_user or args.management_password_file is None:
            raise ExchangeError(
                "--management-url needs --management-user and --management-password-file",
                code="usage",
            )
        password = _read_secret(args.management_password_file)
        context = https_client_context(args.management_ca) if args.management_ca else None
        import_with_management_api(
            definitions,
            args.management_url,
            user=args.management_user,
            password=password,
            ssl_context=context,
            timeout=args.timeout,
        )
    else:
        ctl = [args.rabbitmqctl, *(["-n", args.node] if args.node else [])]
        import_with_rabbitmqctl(definitions, ctl=ctl, env=os.environ, timeout=args.timeout)
    print(
        f"applied: virtual host {network.vhost}, {len(definitions['users'])} users, "
        f"{len(definitions['queues'])} queues, {len(definitions['bindings'])} bindings"
    )
    return 0


def run_asyncapi(args: argparse.Namespace) -> int:
    network = _Network(args)
    server = args.server or f"amqps://localhost:5671/{network.vhost.lstrip('/')}"
    try:
        document = asyncapi_document(
            network.topology,
            network=network.name,
            nodes=network.nodes,
            networks=network.networks,
            server_url=server,
            version=args.doc_version,
        )
    except ValueError as err:
        raise ExchangeError(str(err), code="usage") from err
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        print(f"AsyncAPI {document['asyncapi']} document written to {args.output}")
    return 0


def read_directory(
    path: Path,
) -> tuple[str, list[str], dict[str, list[str]], dict[str, tuple[list[str], list[str]]]]:
    """A directory's network name, members, prosecutor networks, and (send, receive) types of
    each member whose role is not an authority's. Its signature is not checked here: the
    broker's rules come from what the secretariat signed (check it with `directory verify`)."""
    try:
        body = parse_directory(path.read_bytes()).directory
    except OSError as err:
        raise ExchangeError(f"cannot read {path}: {err.strerror}", code="usage") from None
    roles = {
        m.id: (
            [t.value for t in body.permissions[m.role].send],
            [t.value for t in body.permissions[m.role].receive],
        )
        for m in body.members
        if m.role is not MemberRole.AUTHORITY
    }
    networks = {n.name: list(n.members) for n in body.networks}
    return body.network, [m.id for m in body.members], networks, roles


def read_network(path: Path) -> tuple[str, list[str], dict[str, list[str]]]:
    """A network.json's name, member node ids, and prosecutor networks (name -> members)."""
    try:
        doc: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read {path}: {err}") from err
    name = doc.get("network") if isinstance(doc, Mapping) else None
    members = doc.get("nodes") if isinstance(doc, Mapping) else None
    if not isinstance(name, str) or not re.fullmatch(NETWORK_PATTERN, name):
        raise ConfigError(f"{path}: 'network' must be a network name ({NETWORK_PATTERN})")
    if not isinstance(members, Mapping) or not members:
        raise ConfigError(f"{path}: 'nodes' must map node ids to their settings")
    nodes = [str(n) for n in members]
    extra = doc.get("networks", {})
    if not isinstance(extra, Mapping) or not all(
        isinstance(k, str) and re.fullmatch(NETWORK_PATTERN, k) and isinstance(v, list)
        for k, v in extra.items()
    ):
        raise ConfigError(f"{path}: 'networks' must map network names to member lists")
    strangers = sorted({str(m) for v in extra.values() for m in v} - set(nodes))
    if strangers:
        raise ConfigError(f"{path}: network members {', '.join(strangers)} are not nodes")
    return name, nodes, {str(k): [str(m) for m in v] for k, v in extra.items()}


def read_node_bounds(path: Path) -> dict[str, QueueBounds]:
    """Per-node queue bounds from network.json: a node's `inbox_max_length` and
    `inbox_max_bytes` (both, or neither) replace the network's for its inbox and
    subscription queues."""
    doc: Any = json.loads(path.read_text(encoding="utf-8"))  # read_network checked it
    bounds: dict[str, QueueBounds] = {}
    for node, settings in doc["nodes"].items():
        if not isinstance(settings, Mapping):
            continue
        length, size = settings.get("inbox_max_length"), settings.get("inbox_max_bytes")
        if length is None and size is None:
            continue
        if not isinstance(length, int) or not isinstance(size, int) or length < 1 or size < 1:
            raise ConfigError(
                f"{path}: node {node} needs both inbox_max_length and inbox_max_bytes, "
                "positive integers"
            )
        bounds[str(node)] = QueueBounds(length, size)
    return bounds


def _read_secret(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from None
