"""A network's RabbitMQ definitions document, rendered from its `Topology`.

One user per node, confined by permissions to its own queues, and by topic permissions to
routing keys that name itself as sender; auditors that may only read the audit stream; and
the policy that bounds every node's queues. No user may write to the audit exchange: the
broker's own bindings are the only way in, so the stream holds only what crossed the
messages and cases exchanges, under the routing key each publisher was allowed.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from exchange.transport.topology import (
    CHECKPOINT_WORD,
    QueueBounds,
    Topology,
    routing_word,
)

NEVER = "(?!)"
"""A regex that matches nothing: topic permissions are opt-in, so deny explicitly."""
OVERFLOW = "reject-publish"
"""What a full queue does: refuse new publishes (the publisher gets a nack); never drop."""


def render_definitions(
    topology: Topology,
    vhost: str,
    nodes: Sequence[str],
    networks: Mapping[str, Sequence[str]] | None = None,
    *,
    passwords: Mapping[str, str] | None = None,
    auditors: Sequence[str] = (),
    node_bounds: Mapping[str, QueueBounds] | None = None,
    roles: Mapping[str, Sequence[Sequence[str]]] | None = None,
    directory_publishers: Sequence[str] = (),
) -> dict[str, Any]:
    """A RabbitMQ definitions document for one network's virtual host.

    One user per node, named by the node id (= its certificate's CN, for x509 login);
    `passwords` gives development users a password. Permissions confine each node to its
    own queues; topic permissions let it publish only as itself and bind only what is
    addressed to it or to the networks it belongs to. `auditors` may read the audit stream
    and nothing else. `node_bounds` gives some nodes' inbox and subscription queues other
    bounds than the topology's. `roles`: node -> (types it may send, types it may receive)
    for members confined to fewer types than all (private-sector members): their topic
    permissions name only those types, and their inbox is bound to them only.
    `directory_publishers` may publish signed directories (the secretariat) and nothing else.
    """
    roles = dict(roles or {})
    networks = dict(networks or {})
    passwords = dict(passwords or {})
    node_bounds = dict(node_bounds or {})
    all_nodes = list(dict.fromkeys([*nodes, *(n for m in networks.values() for n in m)]))
    for node in (*all_nodes, *auditors, *directory_publishers):
        routing_word(node, "user name")
    for network in networks:
        routing_word(network, "network")
    strangers = sorted(set(node_bounds) - set(all_nodes))
    if strangers:
        raise ValueError(f"queue bounds for nodes outside the network: {', '.join(strangers)}")
    membership = {
        node: sorted(net for net, members in networks.items() if node in members)
        for node in all_nodes
    }
    decl = topology.shared() + topology.directory_declarations()
    for node in all_nodes:
        receives = [*roles[node][1], "receipt"] if node in roles else None
        decl = decl + topology.for_node(node, receives)
        if membership[node]:
            decl = decl + topology.for_subscriber(node, membership[node])
    users = [
        _user(name, passwords.get(name)) for name in (*all_nodes, *auditors, *directory_publishers)
    ]
    permissions = [_node_permission(topology, vhost, node) for node in all_nodes]
    permissions += [_auditor_permission(topology, vhost, name) for name in auditors]
    permissions += [_publisher_permission(topology, vhost, name) for name in directory_publishers]
    topic_permissions = [
        tp
        for node in all_nodes
        for tp in _topic_permissions(topology, vhost, node, membership[node], roles.get(node))
    ]
    return {
        "vhosts": [{"name": vhost}],
        "users": users,
        "permissions": permissions,
        "topic_permissions": topic_permissions,
        "exchanges": [e.as_definition(vhost) for e in decl.exchanges],
        "queues": [q.as_definition(vhost) for q in decl.queues],
        "bindings": [b.as_definition(vhost) for b in decl.bindings],
        "policies": queue_bound_policies(topology, vhost, node_bounds),
        "parameters": [],
        "global_parameters": [],
    }


def queue_bound_policies(
    topology: Topology, vhost: str, node_bounds: Mapping[str, QueueBounds] | None = None
) -> list[dict[str, Any]]:
    """Policies that bound every node's queues, and some nodes' otherwise.

    Bounds are a policy rather than queue arguments: a policy applies to queues that
    already exist (re-declaring a queue with other arguments is refused, PRECONDITION_FAILED),
    and an operator can change it at any time. Delivery limit, dead-lettering and the
    stream's retention stay queue arguments, fixed for the queue's life.
    """
    p = topology.prefix
    policies = [
        _bound_policy(vhost, f"{p}-work-queues", rf"^{p}\.(inbox|sub)\.", topology.inbox_bounds),
        _bound_policy(vhost, f"{p}-dead-queues", rf"^{p}\.dead\.", topology.dead_bounds),
    ]
    for node, bounds in sorted((node_bounds or {}).items()):
        name, pattern = f"{p}-work-queues-{node}", rf"^{p}\.(inbox|sub)\.{node}$"
        policies.append(_bound_policy(vhost, name, pattern, bounds, priority=1))
    return policies


def _bound_policy(
    vhost: str, name: str, pattern: str, bounds: QueueBounds, *, priority: int = 0
) -> dict[str, Any]:
    return {
        "vhost": vhost,
        "name": name,
        "pattern": pattern,
        "apply-to": "queues",
        "priority": priority,
        "definition": {
            "max-length": bounds.max_length,
            "max-length-bytes": bounds.max_bytes,
            "overflow": OVERFLOW,
        },
    }


def _node_permission(topology: Topology, vhost: str, node: str) -> dict[str, str]:
    # prefix, node ids and network names are routing words: no regex metacharacters.
    # No write on the audit exchange: only the broker's bindings copy into it.
    p, n = topology.prefix, node
    own = rf"{p}\.(inbox|dead|sub)\.{n}"
    return {
        "user": node,
        "vhost": vhost,
        "configure": rf"^{own}$",
        "write": rf"^({p}\.(messages|cases|dead)|{own})$",
        "read": rf"^({p}\.(messages|cases|dead)|{own}|{p}\.directory\.stream)$",
    }


def _publisher_permission(topology: Topology, vhost: str, name: str) -> dict[str, str]:
    return {
        "user": name,
        "vhost": vhost,
        "configure": "^$",
        "write": rf"^{topology.prefix}\.directory$",
        "read": "^$",
    }


def _auditor_permission(topology: Topology, vhost: str, name: str) -> dict[str, str]:
    return {
        "user": name,
        "vhost": vhost,
        "configure": "^$",
        "write": "^$",
        "read": rf"^{topology.prefix}\.audit\.stream$",
    }


def _topic_permissions(
    topology: Topology,
    vhost: str,
    node: str,
    member_of: Sequence[str],
    role: Sequence[Sequence[str]] | None = None,
) -> list[dict[str, str]]:
    nets = "|".join(member_of)
    network_keys = rf"^({nets})\." if member_of else NEVER
    sends = r"[^.]+"
    binds = r"^{username}\."
    if role is not None:
        # a confined member: publish only the types it may send, bind only what it receives
        sends = "({})".format("|".join([*(routing_word(t) for t in role[0]), "receipt"]))
        binds = r"^{{username}}\.({})\.".format(
            "|".join([*(routing_word(t) for t in role[1]), "receipt"])
        )

    def entry(exchange: str, write: str, read: str) -> dict[str, str]:
        return {"user": node, "vhost": vhost, "exchange": exchange, "write": write, "read": read}

    return [
        # publish only with itself as sender (a message, or its own checkpoint);
        # bind only keys addressed to itself
        entry(
            topology.messages.name,
            rf"^([^.]+\.{sends}\.{{username}}|{CHECKPOINT_WORD}\.{{username}})$",
            binds,
        ),
        entry(topology.cases.name, network_keys, network_keys),
        entry(topology.dead.name, r"^{username}\.", r"^{username}\."),
    ]


def _user(name: str, password: str | None) -> dict[str, Any]:
    user: dict[str, Any] = {"name": name, "tags": ""}
    if password is not None:
        user["password_hash"] = rabbit_password_hash(password)
        user["hashing_algorithm"] = "rabbit_password_hashing_sha256"
    return user


def rabbit_password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's salted SHA-256 password hash: base64(salt ‖ sha256(salt ‖ password))."""
    salt = secrets.token_bytes(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()
