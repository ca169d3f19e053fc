"""`exchange network init | add-node`: a development network (PKI, members.toml, the signed
directory, node TOMLs, tokens), and a member added to it later."""

from __future__ import annotations

import argparse
import os

from exchange.cli import EXIT_OK
from exchange.config import DEFAULT_AMQP_URL
from exchange.errors import ExchangeError
from exchange.network import (
    DEFAULT_BASE_PORT,
    DEFAULT_NETWORK,
    NETWORK_FILE,
    NetworkLayout,
    add_node,
    init_network_dir,
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("network", help="create a network of nodes for development")
    actions = parser.add_subparsers(dest="network_command", metavar="ACTION", required=True)
    init = actions.add_parser(
        "init",
        help="write the PKI, one TOML per node and network.json into DIR",
        description="Writes DIR/pki (CA, node keys and certificates, CRL), DIR/<NODE>.toml, "
        "DIR/data/<NODE>/ and DIR/network.json (mode 0600: URLs, config paths and the "
        "clear-text tokens of each node's local clients).",
    )
    init.add_argument("directory", metavar="DIR")
    init.add_argument("--nodes", required=True, help="comma-separated node ids, e.g. AL-ARO,RS-PPO")
    init.add_argument(
        "--network", default=DEFAULT_NETWORK, help="network name (default %(default)s)"
    )
    init.add_argument(
        "--amqp-url",
        default=os.environ.get("EXCHANGE_AMQP_URL", DEFAULT_AMQP_URL),
        help="RabbitMQ URL written into each node's TOML (default: $EXCHANGE_AMQP_URL or local)",
    )
    init.add_argument(
        "--base-port", type=int, default=DEFAULT_BASE_PORT, help="first node's HTTP port"
    )
    init.add_argument("--bus", choices=("amqp", "memory"), default="amqp")
    init.add_argument("--prefix", default="xb", help="topology name prefix (default xb)")
    init.add_argument(
        "--prosecutor-network",
        action="append",
        default=[],
        metavar="NAME=NODE,NODE,...",
        help="a prosecutor network following shared cases, e.g. see-pcn=AL-ARO,RS-PPO "
        "(repeatable; written into members.toml and the signed directory)",
    )
    init.add_argument(
        "--private-sector",
        action="append",
        default=[],
        metavar="NODE",
        help="a node that is a private-sector member (a bank, a virtual-asset service "
        "provider): it answers inquiries and freeze notices, nothing more (repeatable)",
    )
    init.set_defaults(func=run_init)

    add = actions.add_parser(
        "add-node",
        help="add a member to a development network: key, certificate, members.toml, the "
        "next signed directory and its TOML (publish the directory for running nodes)",
    )
    add.add_argument("directory", metavar="DIR")
    add.add_argument("--node", required=True, help="the new node's id, e.g. KZ-ARC")
    add.add_argument("--port", type=int, required=True, help="its HTTP port")
    add.add_argument("--role", choices=("authority", "private-sector"), default="authority")
    add.set_defaults(func=run_add_node)


def parse_prosecutor_networks(values: list[str]) -> dict[str, list[str]]:
    """`["see-pcn=AL-ARO,RS-PPO"]` -> {"see-pcn": ["AL-ARO", "RS-PPO"]}."""
    networks: dict[str, list[str]] = {}
    for value in values:
        name, sep, members = value.partition("=")
        if not sep or not name.strip() or name.strip() in networks:
            raise ExchangeError(
                f"--prosecutor-network {value!r}: give NAME=NODE,NODE,... once per name",
                code="usage",
            )
        networks[name.strip()] = [m.strip() for m in members.split(",") if m.strip()]
    return networks


def run_init(args: argparse.Namespace) -> int:
    nodes = [n.strip() for n in args.nodes.split(",") if n.strip()]
    layout = init_network_dir(
        args.directory,
        nodes,
        network=args.network,
        amqp_url=args.amqp_url,
        base_port=args.base_port,
        bus=args.bus,
        prefix=args.prefix,
        networks=parse_prosecutor_networks(args.prosecutor_network),
        roles=dict.fromkeys(args.private_sector, "private-sector"),
    )
    print(f"network {layout.network} in {layout.directory}")
    for node in layout.nodes.values():
        print(f"  {node.node_id:<14} {node.url:<24} {node.config_path}")
    for name, members in layout.networks.items():
        print(f"  prosecutor network {name}: {', '.join(members)}")
    print(f"members: {layout.members_file}; signed directory: {layout.directory_file}")
    print(f"tokens: {layout.directory / NETWORK_FILE} (mode 0600)")
    print(f"run a node: exchange node run --config {next(iter(layout.nodes.values())).config_path}")
    return EXIT_OK


def run_add_node(args: argparse.Namespace) -> int:
    layout = add_node(NetworkLayout.load(args.directory), args.node, port=args.port, role=args.role)
    info = layout.nodes[args.node]
    print(f"{args.node} ({args.role}) added: {info.url}, {info.config_path}")
    print(f"directory: {layout.directory_file}; publish it for the running nodes:")
    print(f"  exchange directory publish {layout.directory_file} --ca {layout.pki_dir / 'ca.pem'}")
    return EXIT_OK
