"""A complete development network on disk: PKI, directory, one TOML per node, `network.json`.

`init_network_dir` writes `DIR/pki/` (the network CA, node keys and certificates, CRL, and
the signed network directory `directory.json`), `DIR/members.toml` (the secretariat's list
of members, from which the directory is built), `DIR/<NODE>.toml` (paths relative to DIR,
token hashes only; the node names its own key and certificate, the CA and the directory,
never the other nodes), `DIR/data/<NODE>/`, and `DIR/network.json` (mode 0600) with each
node's URL, config path and clear-text tokens for local clients, and the prosecutor
networks (name -> members). `NetworkLayout.load` reads that file back (the demo and tests
use it).
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exchange.config import DEFAULT_AMQP_URL, NodeConfig, Role
from exchange.crypto.enroll import request_key, sign_request
from exchange.crypto.pki import init_network
from exchange.directory.build import build_directory, next_serial, read_members
from exchange.errors import ExchangeError
from exchange.gateway.auth import hash_token
from exchange.model.common import NETWORK_PATTERN, NODE_ID_PATTERN

NETWORK_FILE = "network.json"
MEMBERS_FILE = "members.toml"
DIRECTORY_FILE = "directory.json"
PKI_DIR = "pki"
DATA_DIR = "data"
DEFAULT_NETWORK = "see-arn"
DEFAULT_BASE_PORT = 8101


@dataclass(frozen=True, slots=True)
class NodeLayout:
    """Where one node of the network listens, its configuration file, and its tokens."""

    node_id: str
    url: str
    config_path: Path
    tokens: Mapping[str, str]  # role -> clear-text bearer token

    def token(self, role: Role | str) -> str:
        return self.tokens[Role(role).value]


@dataclass(frozen=True, slots=True)
class NetworkLayout:
    directory: Path
    network: str
    nodes: Mapping[str, NodeLayout]
    networks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Prosecutor networks that follow cases: name -> member node ids."""

    @property
    def network_file(self) -> Path:
        return self.directory / NETWORK_FILE

    @property
    def pki_dir(self) -> Path:
        return self.directory / PKI_DIR

    @property
    def members_file(self) -> Path:
        return self.directory / MEMBERS_FILE

    @property
    def directory_file(self) -> Path:
        return self.directory / PKI_DIR / DIRECTORY_FILE

    def config(self, node_id: str, *, environ: Mapping[str, str] | None = None) -> NodeConfig:
        """The node's loaded configuration (`environ` overrides as in `NodeConfig.load`)."""
        return NodeConfig.load(self.nodes[node_id].config_path, environ=environ)

    def as_dict(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "nodes": {
                n.node_id: {"url": n.url, "config": str(n.config_path), "tokens": dict(n.tokens)}
                for n in self.nodes.values()
            },
            "networks": {name: list(members) for name, members in self.networks.items()},
        }

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> NetworkLayout:
        root = Path(directory)
        try:
            doc = json.loads((root / NETWORK_FILE).read_text(encoding="utf-8"))
            nodes = {
                node_id: NodeLayout(node_id, n["url"], Path(n["config"]), dict(n["tokens"]))
                for node_id, n in doc["nodes"].items()
            }
            networks = {
                str(name): tuple(str(m) for m in members)
                for name, members in doc.get("networks", {}).items()
            }
            return cls(root, doc["network"], nodes, networks)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ExchangeError(
                f"{root / NETWORK_FILE} is not a network description: {exc}", code="usage"
            ) from None


def new_token() -> str:
    """A client token of 256 random bits, URL-safe, that never starts with `-` (a command
    line would read it as an option: `exchange inbox --token -x…`)."""
    while True:
        token = secrets.token_urlsafe(32)
        if not token.startswith("-"):
            return token


def _check_networks(nodes: Sequence[str], networks: Mapping[str, Sequence[str]]) -> None:
    for name, members in networks.items():
        if not re.fullmatch(NETWORK_PATTERN, name):
            raise ExchangeError(f"{name!r} is not a network name ({NETWORK_PATTERN})", code="usage")
        if len(members) < 2 or len(set(members)) != len(members):
            raise ExchangeError(f"network {name} needs two or more distinct members", code="usage")
        strangers = [m for m in members if m not in nodes]
        if strangers:
            raise ExchangeError(
                f"network {name}: {', '.join(strangers)} are not nodes of this network",
                code="usage",
            )


def render_networks_toml(node: str, networks: Mapping[str, Sequence[str]]) -> list[str]:
    """`[[networks]]` tables (this node's own settings) for the prosecutor networks `node`
    is a member of; who the members are is the directory's to say."""
    lines: list[str] = []
    for name, members in networks.items():
        if node not in members:
            continue
        lines += ["[[networks]]", f"name = {_toml_string(name)}", ""]
    return lines


def render_member(node: str, role: str) -> str:
    """One `[[members]]` table of members.toml."""
    return "\n".join(
        [
            "[[members]]",
            f"id = {_toml_string(node)}",
            f"country = {_toml_string(node[:2])}",
            f"name = {_toml_string(node)}",
            f"role = {_toml_string(role)}",
            "",
            "",
        ]
    )


def render_members_toml(
    network: str,
    nodes: Sequence[str],
    networks: Mapping[str, Sequence[str]],
    roles: Mapping[str, str] | None = None,
) -> str:
    """The secretariat's `members.toml` for a development network (see
    `deploy/members.example.toml` for every field)."""
    roles = roles or {}
    lines = [
        "# The network's members: the secretariat's source of truth for the signed directory.",
        "# Rebuild and publish after each change: exchange directory build ... && "
        "exchange directory publish ...",
        f"network = {_toml_string(network)}",
        "validity_days = 7",
        "",
    ]
    lines += [render_member(node, roles.get(node, "authority")) for node in nodes]
    for name, members in networks.items():
        lines += [
            "[[networks]]",
            f"name = {_toml_string(name)}",
            f"members = [{', '.join(_toml_string(m) for m in members)}]",
            "",
        ]
    return "\n".join(lines)


def _check(nodes: Sequence[str], network: str, base_port: int, bus: str) -> None:
    if len(nodes) < 2:
        raise ExchangeError("a network needs at least two nodes", code="usage")
    for node in nodes:
        if not re.fullmatch(NODE_ID_PATTERN, node):
            raise ExchangeError(
                f"{node!r} is not a node id (like AL-ARO: country, '-', agency)", code="usage"
            )
    if len(set(nodes)) != len(nodes):
        raise ExchangeError("node ids must not repeat", code="usage")
    if not re.fullmatch(NETWORK_PATTERN, network):
        raise ExchangeError(f"{network!r} is not a network name ({NETWORK_PATTERN})", code="usage")
    if not 1 <= base_port <= 65535 - len(nodes) + 1:
        raise ExchangeError(f"base port {base_port} leaves no room for every node", code="usage")
    if bus not in ("amqp", "memory"):
        raise ExchangeError(f"bus must be amqp or memory, not {bus!r}", code="usage")


def _toml_string(value: str) -> str:
    # A JSON string with ASCII escapes is a valid TOML basic string.
    return json.dumps(value, ensure_ascii=True)


def render_node_toml(
    node: str,
    *,
    network: str,
    listen_host: str,
    port: int,
    amqp_url: str,
    bus: str,
    prefix: str,
    token_hashes: Mapping[str, str],
    networks: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """One node's TOML, with paths relative to the network directory."""
    lines = [
        f"# Node {node} of network {network}. Paths are relative to this file.",
        "# Tokens are stored as SHA-256 hashes; EXCHANGE_* environment variables override.",
        f"node_id = {_toml_string(node)}",
        f"network = {_toml_string(network)}",
        f"listen_host = {_toml_string(listen_host)}",
        f"listen_port = {port}",
        f"amqp_url = {_toml_string(amqp_url)}",
        f"bus = {_toml_string(bus)}",
        f"topology_prefix = {_toml_string(prefix)}",
        f"data_dir = {_toml_string(f'{DATA_DIR}/{node}')}",
        f"key_path = {_toml_string(f'{PKI_DIR}/{node}.key')}",
        f"cert_path = {_toml_string(f'{PKI_DIR}/{node}.pem')}",
        f"ca_path = {_toml_string(f'{PKI_DIR}/ca.pem')}",
        f"directory_path = {_toml_string(f'{PKI_DIR}/{DIRECTORY_FILE}')}",
        "",
    ]
    for role, digest in token_hashes.items():
        lines += [
            "[[tokens]]",
            f"id = {_toml_string(role)}",
            f"role = {_toml_string(role)}",
            f"sha256 = {_toml_string(digest)}",
            "",
        ]
    lines += ["[limits]", "max_body_bytes = 1048576", "max_skew_seconds = 300", ""]
    lines += render_networks_toml(node, networks or {})
    return "\n".join(lines)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def init_network_dir(
    directory: str | os.PathLike[str],
    nodes: Sequence[str],
    *,
    network: str = DEFAULT_NETWORK,
    amqp_url: str = DEFAULT_AMQP_URL,
    base_port: int = DEFAULT_BASE_PORT,
    bus: str = "amqp",
    prefix: str = "xb",
    listen_host: str = "127.0.0.1",
    networks: Mapping[str, Sequence[str]] | None = None,
    roles: Mapping[str, str] | None = None,
) -> NetworkLayout:
    """Write a complete network into `directory` (refused if one is already there).

    `networks`: prosecutor networks (name -> member node ids), in the directory. `roles`:
    node -> `private-sector` for members that are not authorities.
    """
    root = Path(directory).resolve()
    nodes = list(nodes)
    prosecutor_networks = {name: tuple(members) for name, members in (networks or {}).items()}
    _check(nodes, network, base_port, bus)
    _check_networks(nodes, prosecutor_networks)
    if (root / NETWORK_FILE).exists() or (root / PKI_DIR).exists():
        raise ExchangeError(f"{root} already holds a network; refusing to replace it", code="usage")
    root.mkdir(parents=True, exist_ok=True)
    init_network(root / PKI_DIR, network, nodes)
    members = render_members_toml(network, nodes, prosecutor_networks, roles)
    (root / MEMBERS_FILE).write_text(members, encoding="utf-8")
    document = build_directory(root / PKI_DIR, read_members(root / MEMBERS_FILE), serial=1)
    (root / PKI_DIR / DIRECTORY_FILE).write_bytes(document)
    layouts: dict[str, NodeLayout] = {}
    settings = _NodeSettings(network, listen_host, amqp_url, bus, prefix)
    for index, node in enumerate(nodes):
        layouts[node] = _write_node(root, node, base_port + index, settings, prosecutor_networks)
    layout = NetworkLayout(root, network, layouts, prosecutor_networks)
    _write_private(root / NETWORK_FILE, json.dumps(layout.as_dict(), indent=2) + "\n")
    return layout


@dataclass(frozen=True, slots=True)
class _NodeSettings:
    network: str
    listen_host: str
    amqp_url: str
    bus: str
    prefix: str


def _write_node(
    root: Path,
    node: str,
    port: int,
    settings: _NodeSettings,
    networks: Mapping[str, Sequence[str]],
) -> NodeLayout:
    tokens = {role.value: new_token() for role in Role}
    text = render_node_toml(
        node,
        network=settings.network,
        listen_host=settings.listen_host,
        port=port,
        amqp_url=settings.amqp_url,
        bus=settings.bus,
        prefix=settings.prefix,
        token_hashes={role: hash_token(token) for role, token in tokens.items()},
        networks=networks,
    )
    config_path = root / f"{node}.toml"
    config_path.write_text(text, encoding="utf-8")
    (root / DATA_DIR / node).mkdir(parents=True, exist_ok=True, mode=0o700)
    NodeConfig.load(config_path, environ={})  # what we wrote must load
    host = "127.0.0.1" if settings.listen_host in ("0.0.0.0", "::") else settings.listen_host
    return NodeLayout(node, f"http://{host}:{port}", config_path, tokens)


def add_node(
    layout: NetworkLayout, node: str, *, port: int, role: str = "authority"
) -> NetworkLayout:
    """Add a member to a development network, the way a new country joins a real one: its
    key and certificate, its entry in `members.toml`, a new signed directory (the next
    serial) and its configuration. The running nodes take the new member once the
    directory is published (`exchange directory publish`); none is restarted."""
    if node in layout.nodes:
        raise ExchangeError(f"{node} is already a member of {layout.network}", code="usage")
    _check([*layout.nodes, node], layout.network, port, "memory")
    first = layout.config(next(iter(layout.nodes)), environ={})
    # as a new country does it: its key made beside the request, the request signed
    _, request = request_key(layout.pki_dir, node)
    sign_request(layout.pki_dir, request, node, role=role)
    request.unlink()
    with layout.members_file.open("a", encoding="utf-8") as fh:
        fh.write(render_member(node, role))
    serial = next_serial(layout.directory_file)
    document = build_directory(layout.pki_dir, read_members(layout.members_file), serial=serial)
    layout.directory_file.write_bytes(document)
    settings = _NodeSettings(
        layout.network, first.listen_host, first.amqp_url, first.bus, first.topology_prefix
    )
    nodes = {**layout.nodes, node: _write_node(layout.directory, node, port, settings, {})}
    grown = NetworkLayout(layout.directory, layout.network, nodes, layout.networks)
    grown.network_file.write_text(json.dumps(grown.as_dict(), indent=2) + "\n")
    return grown
