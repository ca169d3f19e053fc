"""The network's RabbitMQ topology: every exchange, queue, binding and permission, in one place.

Both buses declare from these frozen value objects, and `Topology.render_definitions` turns
the same objects into a RabbitMQ definitions document (users, permissions, topic permissions).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from exchange.errors import ExchangeValueError

_T = TypeVar("_T")
ArgValue = str | int | bool
Arguments = tuple[tuple[str, ArgValue], ...]

MAX_ROUTING_KEY_BYTES = 255
POISON_REASON = "delivery-limit"
"""Routing-key word of a message the broker dead-lettered after too many deliveries."""

LOGICAL_EXCHANGES = ("messages", "cases", "audit", "dead")

_WORD = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_REASON = re.compile(r"^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,4}$")
_NEVER = "(?!)"  # a regex that matches nothing: topic permissions are opt-in, so deny explicitly


CASE_UPDATE_TYPE = "case-update"


def exchange_of(message_type: str) -> str:
    """The logical exchange a message type travels on: a case update on `cases` (fanned out
    to a prosecutor network, whose membership its receivers check), every other type on
    `messages` (node to node). A receiver refuses a type that came on the other one."""
    return "cases" if message_type == CASE_UPDATE_TYPE else "messages"


class InvalidName(ExchangeValueError):
    """A name that cannot appear in a routing key: empty, too long, a dot or a wildcard."""

    code = "config.invalid"


def routing_word(value: str, what: str = "name") -> str:
    """`value` if it is one routing-key word (letters, digits, '-', '_'), else InvalidName."""
    if not _WORD.fullmatch(value):
        raise InvalidName(f"{what} {value!r} is not one routing-key word ([A-Za-z0-9_-]{{1,64}})")
    return value


class ExchangeKind(StrEnum):
    TOPIC = "topic"
    FANOUT = "fanout"


class QueueKind(StrEnum):
    QUORUM = "quorum"
    STREAM = "stream"


class DestinationKind(StrEnum):
    QUEUE = "queue"
    EXCHANGE = "exchange"


@dataclass(frozen=True, slots=True)
class ExchangeSpec:
    """A durable exchange."""

    name: str
    kind: ExchangeKind

    def as_definition(self, vhost: str) -> dict[str, Any]:
        return {
            "name": self.name,
            "vhost": vhost,
            "type": self.kind.value,
            "durable": True,
            "auto_delete": False,
            "internal": False,
            "arguments": {},
        }


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A durable queue; `arguments` are pairs so the spec stays hashable."""

    name: str
    kind: QueueKind
    arguments: Arguments = ()

    @property
    def argument_map(self) -> dict[str, ArgValue]:
        """The declaration arguments, `x-queue-type` included."""
        return {"x-queue-type": self.kind.value, **dict(self.arguments)}

    def argument(self, key: str) -> ArgValue | None:
        return self.argument_map.get(key)

    def as_definition(self, vhost: str) -> dict[str, Any]:
        return {
            "name": self.name,
            "vhost": vhost,
            "durable": True,
            "auto_delete": False,
            "arguments": self.argument_map,
        }


@dataclass(frozen=True, slots=True)
class BindingSpec:
    """A binding from an exchange to a queue or to another exchange."""

    source: str
    destination: str
    routing_key: str = ""
    destination_kind: DestinationKind = DestinationKind.QUEUE

    def as_definition(self, vhost: str) -> dict[str, Any]:
        return {
            "source": self.source,
            "vhost": vhost,
            "destination": self.destination,
            "destination_type": self.destination_kind.value,
            "routing_key": self.routing_key,
            "arguments": {},
        }


@dataclass(frozen=True, slots=True)
class Declarations:
    """What to declare, in dependency order: exchanges, then queues, then bindings."""

    exchanges: tuple[ExchangeSpec, ...] = ()
    queues: tuple[QueueSpec, ...] = ()
    bindings: tuple[BindingSpec, ...] = ()

    def __add__(self, other: Declarations) -> Declarations:
        return Declarations(
            _unique((*self.exchanges, *other.exchanges)),
            _unique((*self.queues, *other.queues)),
            _unique((*self.bindings, *other.bindings)),
        )


def _unique(items: Iterable[_T]) -> tuple[_T, ...]:
    return tuple(dict.fromkeys(items))


@dataclass(frozen=True, slots=True)
class Topology:
    """Names under `prefix` (tests use a unique one), queue arguments and bindings."""

    prefix: str = "xb"
    delivery_limit: int = 5
    stream_max_age: str = "7D"
    stream_max_bytes: int = 20 * 1024**3

    def __post_init__(self) -> None:
        routing_word(self.prefix, "prefix")
        if self.delivery_limit < 1:
            raise ValueError("delivery_limit must be at least 1")
        if not re.fullmatch(r"\d+[YMDhms]", self.stream_max_age):
            raise ValueError(f"stream_max_age {self.stream_max_age!r} is not like '7D' or '12h'")

    # -- exchanges -----------------------------------------------------------------------
    @property
    def messages(self) -> ExchangeSpec:
        """Node-to-node traffic; routing key `<recipient>.<type>.<sender>`."""
        return ExchangeSpec(f"{self.prefix}.messages", ExchangeKind.TOPIC)

    @property
    def cases(self) -> ExchangeSpec:
        """Case updates; routing key `<network>.<case>.<event>`."""
        return ExchangeSpec(f"{self.prefix}.cases", ExchangeKind.TOPIC)

    @property
    def audit(self) -> ExchangeSpec:
        """Fanout into the audit stream."""
        return ExchangeSpec(f"{self.prefix}.audit", ExchangeKind.FANOUT)

    @property
    def dead(self) -> ExchangeSpec:
        """Rejected and poison messages; routing key `<node>.<reason>`."""
        return ExchangeSpec(f"{self.prefix}.dead", ExchangeKind.TOPIC)

    def exchanges(self) -> tuple[ExchangeSpec, ...]:
        return (self.messages, self.cases, self.audit, self.dead)

    def exchange_name(self, logical: str) -> str:
        """`"messages"` -> `"xb.messages"`; KeyError for a name outside the topology."""
        if logical not in LOGICAL_EXCHANGES:
            raise KeyError(f"unknown exchange {logical!r}; use one of {LOGICAL_EXCHANGES}")
        return f"{self.prefix}.{logical}"

    def physical_name(self, exchange: str) -> str:
        """`"messages"` -> `"xb.messages"`; other names are returned unchanged."""
        return f"{self.prefix}.{exchange}" if exchange in LOGICAL_EXCHANGES else exchange

    def logical_name(self, exchange: str) -> str:
        """`"xb.messages"` -> `"messages"`; other names are returned unchanged."""
        head, _, tail = exchange.partition(".")
        return tail if head == self.prefix and tail in LOGICAL_EXCHANGES else exchange

    # -- queues ----------------------------------------------------------------------------
    def inbox_queue(self, node: str) -> str:
        return f"{self.prefix}.inbox.{routing_word(node, 'node id')}"

    def dead_queue(self, node: str) -> str:
        return f"{self.prefix}.dead.{routing_word(node, 'node id')}"

    def subscription_queue(self, node: str) -> str:
        return f"{self.prefix}.sub.{routing_word(node, 'node id')}"

    @property
    def audit_stream_queue(self) -> str:
        return f"{self.prefix}.audit.stream"

    def node_of_queue(self, queue: str) -> str | None:
        """The node owning an inbox, dead or subscription queue; None for other queues."""
        parts = queue.split(".")
        if len(parts) == 3 and parts[0] == self.prefix and parts[1] in ("inbox", "dead", "sub"):
            return parts[2]
        return None

    def _work_queue(self, name: str, node: str) -> QueueSpec:
        # Poison messages go to the node's own dead queue, whatever their routing key was;
        # at-least-once dead-lettering keeps them in the source queue until the dead queue
        # confirms, which RabbitMQ allows only with reject-publish overflow.
        return QueueSpec(
            name,
            QueueKind.QUORUM,
            (
                ("x-dead-letter-exchange", self.dead.name),
                ("x-dead-letter-routing-key", self.dead_letter_routing_key(node, POISON_REASON)),
                ("x-dead-letter-strategy", "at-least-once"),
                ("x-overflow", "reject-publish"),
                ("x-delivery-limit", self.delivery_limit),
            ),
        )

    def inbox(self, node: str) -> QueueSpec:
        """The node's inbox: quorum, delivery limit, dead-lettered to `<p>.dead.<node>`."""
        return self._work_queue(self.inbox_queue(node), node)

    def subscription(self, node: str) -> QueueSpec:
        """The node's case-update queue, with the same dead-lettering as its inbox."""
        return self._work_queue(self.subscription_queue(node), node)

    def dead_letters(self, node: str) -> QueueSpec:
        return QueueSpec(self.dead_queue(node), QueueKind.QUORUM)

    @property
    def audit_stream(self) -> QueueSpec:
        return QueueSpec(
            self.audit_stream_queue,
            QueueKind.STREAM,
            (("x-max-age", self.stream_max_age), ("x-max-length-bytes", self.stream_max_bytes)),
        )

    # -- routing keys ------------------------------------------------------------------------
    def routing_key(self, recipient: str, type: str, sender: str) -> str:
        """`<recipient>.<type>.<sender>` for the messages exchange; each part one word."""
        return ".".join(
            (
                routing_word(recipient, "recipient"),
                routing_word(type, "message type"),
                routing_word(sender, "sender"),
            )
        )

    def case_routing_key(self, network: str, case: str, event: str) -> str:
        """`<network>.<case>.<event>` for the cases exchange."""
        return ".".join(
            (
                routing_word(network, "network"),
                routing_word(case, "case"),
                routing_word(event, "event"),
            )
        )

    def dead_letter_routing_key(self, node: str, reason: str) -> str:
        """`<node>.<reason>`; a reason is an error code such as `signature.invalid`."""
        if not _REASON.fullmatch(reason):
            raise InvalidName(f"dead-letter reason {reason!r} is not a dotted error code")
        return f"{routing_word(node, 'node id')}.{reason}"

    # -- bindings and declaration groups -------------------------------------------------------
    def node_bindings(self, node: str) -> tuple[BindingSpec, ...]:
        """Inbox and dead queue bindings, and the audit copy of messages to `node`.

        The audit copy is bound per recipient rather than with `#`: a `#` binding would make
        every message routable, so a message to a node without an inbox would vanish into
        the audit stream instead of being returned to its publisher as unroutable.
        """
        own = f"{routing_word(node, 'node id')}.#"
        return (
            BindingSpec(self.messages.name, self.inbox_queue(node), own),
            BindingSpec(self.messages.name, self.audit.name, own, DestinationKind.EXCHANGE),
            BindingSpec(self.dead.name, self.dead_queue(node), own),
        )

    def audit_bindings(self) -> tuple[BindingSpec, ...]:
        """The stream behind the audit fanout, and every case update copied into it."""
        return (
            BindingSpec(self.audit.name, self.audit_stream_queue, ""),
            BindingSpec(self.cases.name, self.audit.name, "#", DestinationKind.EXCHANGE),
        )

    def subscription_bindings(
        self, node: str, networks: Sequence[str], cases: Sequence[str] | None = None
    ) -> tuple[BindingSpec, ...]:
        """Bind `<p>.sub.<node>` to whole networks, or to the given cases of those networks."""
        queue = self.subscription_queue(node)
        keys: list[str] = []
        for network in networks:
            routing_word(network, "network")
            if cases is None:
                keys.append(f"{network}.#")
            else:
                keys.extend(f"{network}.{routing_word(case, 'case')}.*" for case in cases)
        return tuple(BindingSpec(self.cases.name, queue, key) for key in _unique(keys))

    def shared(self) -> Declarations:
        """What every node relies on: the four exchanges, the audit stream and its bindings."""
        return Declarations(self.exchanges(), (self.audit_stream,), self.audit_bindings())

    def for_node(self, node: str) -> Declarations:
        """Everything a node needs to send and receive: `shared()` plus its own queues."""
        own = Declarations(
            (), (self.inbox(node), self.dead_letters(node)), self.node_bindings(node)
        )
        return self.shared() + own

    def for_subscriber(
        self, node: str, networks: Sequence[str], cases: Sequence[str] | None = None
    ) -> Declarations:
        return Declarations(
            (self.cases,),
            (self.subscription(node), self.dead_letters(node)),
            self.subscription_bindings(node, networks, cases),
        )

    # -- definitions ------------------------------------------------------------------------------
    def render_definitions(
        self,
        vhost: str,
        nodes: Sequence[str],
        networks: Mapping[str, Sequence[str]] | None = None,
        *,
        passwords: Mapping[str, str] | None = None,
        auditors: Sequence[str] = (),
    ) -> dict[str, Any]:
        """A RabbitMQ definitions document for one network's virtual host.

        One user per node, named by the node id (= its certificate's CN, for x509 login);
        `passwords` gives development users a password. Permissions confine each node to
        its own queues; topic permissions let it publish only as itself and bind only what
        is addressed to it or to the networks it belongs to. `auditors` may read the audit
        stream and nothing else.
        """
        networks = dict(networks or {})
        passwords = dict(passwords or {})
        all_nodes = _unique([*nodes, *(n for members in networks.values() for n in members)])
        for node in (*all_nodes, *auditors):
            routing_word(node, "user name")
        for network in networks:
            routing_word(network, "network")
        membership = {
            node: sorted(net for net, members in networks.items() if node in members)
            for node in all_nodes
        }
        decl = self.shared()
        for node in all_nodes:
            decl = decl + self.for_node(node)
            if membership[node]:
                decl = decl + self.for_subscriber(node, membership[node])
        users = [_user(name, passwords.get(name)) for name in (*all_nodes, *auditors)]
        permissions = [self._node_permission(vhost, node) for node in all_nodes]
        permissions += [self._auditor_permission(vhost, name) for name in auditors]
        topic_permissions = [
            tp
            for node in all_nodes
            for tp in self._topic_permissions(vhost, node, membership[node])
        ]
        return {
            "vhosts": [{"name": vhost}],
            "users": users,
            "permissions": permissions,
            "topic_permissions": topic_permissions,
            "exchanges": [e.as_definition(vhost) for e in decl.exchanges],
            "queues": [q.as_definition(vhost) for q in decl.queues],
            "bindings": [b.as_definition(vhost) for b in decl.bindings],
            # Queue arguments carry delivery limit, dead-lettering and retention; a policy
            # would be a second source of truth that the arguments silently override.
            "policies": [],
            "parameters": [],
            "global_parameters": [],
        }

    def _node_permission(self, vhost: str, node: str) -> dict[str, str]:
        # prefix, node ids and network names are routing words: no regex metacharacters
        p, n = self.prefix, node
        own = rf"{p}\.(inbox|dead|sub)\.{n}"
        return {
            "user": node,
            "vhost": vhost,
            "configure": rf"^{own}$",
            "write": rf"^({p}\.(messages|cases|audit|dead)|{own})$",
            "read": rf"^({p}\.(messages|cases|dead)|{own})$",
        }

    def _auditor_permission(self, vhost: str, name: str) -> dict[str, str]:
        return {
            "user": name,
            "vhost": vhost,
            "configure": "^$",
            "write": "^$",
            "read": rf"^{self.prefix}\.audit\.stream$",
        }

    def _topic_permissions(
        self, vhost: str, node: str, member_of: Sequence[str]
    ) -> list[dict[str, str]]:
        nets = "|".join(member_of)
        network_keys = rf"^({nets})\." if member_of else _NEVER

        def entry(exchange: str, write: str, read: str) -> dict[str, str]:
            return {
                "user": node,
                "vhost": vhost,
                "exchange": exchange,
                "write": write,
                "read": read,
            }

        return [
            # publish only with itself as sender; bind only keys addressed to itself
            entry(self.messages.name, r"^[^.]+\.[^.]+\.{username}$", r"^{username}\."),
            entry(self.cases.name, network_keys, network_keys),
            entry(self.dead.name, r"^{username}\.", r"^{username}\."),
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
