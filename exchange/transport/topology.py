"""The network's RabbitMQ topology: every exchange, queue, binding and permission, in one place.

Both buses declare from these frozen value objects, and `Topology.render_definitions` turns
the same objects into a RabbitMQ definitions document (users, permissions, topic permissions,
the policy that bounds each node's queues).
"""

from __future__ import annotations

import re
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
CHECKPOINT_WORD = "checkpoint"
DIRECTORY_STREAM_BYTES = 256 * 1024**2
"""First word of a checkpoint's routing key on the messages exchange: `checkpoint.<node>`
(node ids are upper case, so no inbox binding `<node>.#` ever matches it)."""

LOGICAL_EXCHANGES = ("messages", "cases", "audit", "dead")

_WORD = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_REASON = re.compile(r"^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,4}$")


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
class QueueBounds:
    """The most one queue holds: messages and bytes of message bodies. Past either bound the
    broker refuses new publishes to it (`reject-publish`: the publisher gets a nack), so a
    flood fills one node's queue, never the broker's disk."""

    max_length: int
    max_bytes: int

    def __post_init__(self) -> None:
        if self.max_length < 1 or self.max_bytes < 1:
            raise ValueError("queue bounds must be at least 1 message and 1 byte")


INBOX_BOUNDS = QueueBounds(max_length=50_000, max_bytes=1024**3)
"""Default for each inbox and subscription queue: days of ordinary traffic, and at most
1 GiB (a message is at most ~1.1 MiB)."""
DEAD_BOUNDS = QueueBounds(max_length=10_000, max_bytes=256 * 1024**2)
"""Default for each dead-letter queue: an operator reads it; it is no archive."""


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
    inbox_bounds: QueueBounds = INBOX_BOUNDS
    """Of each node's inbox and subscription queue (a policy, see `definitions`)."""
    dead_bounds: QueueBounds = DEAD_BOUNDS
    """Of each node's dead-letter queue."""

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
        """Fanout into the audit stream. Only the broker's own bindings write to it: no node
        may publish there (a fanout exchange has no routing key to confine a node by)."""
        return ExchangeSpec(f"{self.prefix}.audit", ExchangeKind.FANOUT)

    @property
    def dead(self) -> ExchangeSpec:
        """Rejected and poison messages; routing key `<node>.<reason>`."""
        return ExchangeSpec(f"{self.prefix}.dead", ExchangeKind.TOPIC)

    def exchanges(self) -> tuple[ExchangeSpec, ...]:
        return (self.messages, self.cases, self.audit, self.dead)

    @property
    def directory(self) -> ExchangeSpec:
        """Fanout into the directory stream: only the secretariat may publish there."""
        return ExchangeSpec(f"{self.prefix}.directory", ExchangeKind.FANOUT)

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

    @property
    def directory_stream_queue(self) -> str:
        return f"{self.prefix}.directory.stream"

    def node_of_queue(self, queue: str) -> str | None:
        """The node owning an inbox, dead or subscription queue; None for other queues."""
        parts = queue.split(".")
        if len(parts) == 3 and parts[0] == self.prefix and parts[1] in ("inbox", "dead", "sub"):
            return parts[2]
        return None

    def bounds_of(self, queue: str) -> QueueBounds | None:
        """The bounds of a node's queue; None for the audit stream and other queues."""
        if self.node_of_queue(queue) is None:
            return None
        return self.dead_bounds if queue.split(".")[1] == "dead" else self.inbox_bounds

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

    @property
    def directory_stream(self) -> QueueSpec:
        """Every signed network directory published, kept a year: a node that starts reads
        them all and keeps the newest that verifies."""
        return QueueSpec(
            self.directory_stream_queue,
            QueueKind.STREAM,
            (("x-max-age", "365D"), ("x-max-length-bytes", DIRECTORY_STREAM_BYTES)),
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

    def checkpoint_routing_key(self, node: str) -> str:
        """`checkpoint.<node>` on the messages exchange: a node's signed tree head, copied by
        the broker into the audit stream (the node's topic permission names itself)."""
        return f"{CHECKPOINT_WORD}.{routing_word(node, 'node id')}"

    def dead_letter_routing_key(self, node: str, reason: str) -> str:
        """`<node>.<reason>`; a reason is an error code such as `signature.invalid`."""
        if not _REASON.fullmatch(reason):
            raise InvalidName(f"dead-letter reason {reason!r} is not a dotted error code")
        return f"{routing_word(node, 'node id')}.{reason}"

    # -- bindings and declaration groups -------------------------------------------------------
    def node_bindings(
        self, node: str, receives: Sequence[str] | None = None
    ) -> tuple[BindingSpec, ...]:
        """Inbox and dead queue bindings, and the audit copy of messages to `node`.

        The audit copy is bound per recipient rather than with `#`: a `#` binding would make
        every message routable, so a message to a node without an inbox would vanish into
        the audit stream instead of being returned to its publisher as unroutable.
        `receives`: only these message types (and receipts) reach the node, for a member
        whose role allows no more (a private-sector member); None: every type.
        """
        word = routing_word(node, "node id")
        own = f"{word}.#"
        keys = [own] if receives is None else [f"{word}.{routing_word(t)}.*" for t in receives]
        return (
            *(BindingSpec(self.messages.name, self.inbox_queue(node), k) for k in keys),
            *(
                BindingSpec(self.messages.name, self.audit.name, k, DestinationKind.EXCHANGE)
                for k in keys
            ),
            BindingSpec(self.dead.name, self.dead_queue(node), own),
        )

    def audit_bindings(self) -> tuple[BindingSpec, ...]:
        """The stream behind the audit fanout, and every case update and checkpoint copied
        into it."""
        checkpoints = f"{CHECKPOINT_WORD}.*"
        return (
            BindingSpec(self.audit.name, self.audit_stream_queue, ""),
            BindingSpec(self.cases.name, self.audit.name, "#", DestinationKind.EXCHANGE),
            BindingSpec(self.messages.name, self.audit.name, checkpoints, DestinationKind.EXCHANGE),
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

    def directory_declarations(self) -> Declarations:
        """The directory's exchange and stream: declared by whoever publishes the first
        directory (`exchange directory publish`) or by the rendered definitions; a node
        only reads the stream, and finds nothing to read until then."""
        binding = BindingSpec(self.directory.name, self.directory_stream_queue, "")
        return Declarations((self.directory,), (self.directory_stream,), (binding,))

    def for_node(self, node: str, receives: Sequence[str] | None = None) -> Declarations:
        """Everything a node needs to send and receive: `shared()` plus its own queues."""
        own = Declarations(
            (), (self.inbox(node), self.dead_letters(node)), self.node_bindings(node, receives)
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
        node_bounds: Mapping[str, QueueBounds] | None = None,
        roles: Mapping[str, Sequence[Sequence[str]]] | None = None,
        directory_publishers: Sequence[str] = (),
    ) -> dict[str, Any]:
        """A RabbitMQ definitions document for one network's virtual host (see
        `exchange.transport.definitions`)."""
        from exchange.transport.definitions import render_definitions

        return render_definitions(
            self,
            vhost,
            nodes,
            networks,
            passwords=passwords,
            auditors=auditors,
            node_bounds=node_bounds,
            roles=roles,
            directory_publishers=directory_publishers,
        )
