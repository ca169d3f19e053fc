"""A node's case updates: the service the gateway opens once and everything else goes through.

`CaseUpdates` owns the case-event store, the feed that wakes SSE streams and webhooks, the
consumer of `<p>.sub.<node>` (bound only to the networks this node is a member of, or to
chosen cases) and the webhook worker. The node's one outbox publisher sends its updates.
`accept` stores an update a local client submitted; `prepare_automatic` and
`store_automatic` make the updates a freeze decision or an asset-inquiry response means,
inside the transaction that stores the message itself, so none is lost in between. A
trigger labelled TLP:RED or TLP:AMBER+STRICT makes no update: the update it would have been
is withheld, logged (`case_update.withheld`) and audited as `refused`, code
`handling.restricted`, under the id the update would have had.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from exchange.audit.entries import AuditEvent, EntryFields
from exchange.audit.log import AuditLog
from exchange.audit.peers import PeerCheckpoints
from exchange.config import AUTO_UPDATE_TYPES, NetworkConfig, NodeConfig
from exchange.crypto.canonical import sha256_hex
from exchange.crypto.signing import NodeSigner, encode_envelope, signing_input
from exchange.crypto.verify import TrustStore
from exchange.directory.view import NetworkView
from exchange.log import get_logger
from exchange.metrics import Metrics
from exchange.model.case_update import CaseUpdate
from exchange.model.common import MessageType, Priority, utc_now
from exchange.model.envelope import Header
from exchange.relay.inbound import InboundPipeline, RefusalRecorder, verification_policy
from exchange.schemas import schema_ref, validate_payload
from exchange.storage import outbox
from exchange.storage.case_events import CaseEventStore, insert_event, knows_case
from exchange.storage.case_records import CaseEventRecord, NewCaseEvent
from exchange.storage.outbox import Publish
from exchange.storage.sqlite_thread import SqliteThread
from exchange.subscriptions.automatic import (
    Direction,
    automatic_update,
    automatic_update_id,
    should_emit,
)
from exchange.subscriptions.consumer import UpdateStep
from exchange.subscriptions.feed import EventFeed
from exchange.subscriptions.webhooks import Webhook, WebhookWorker, load_webhooks
from exchange.transport.bus import Bus, ConsumerHandle
from exchange.transport.topology import Topology

_log = get_logger(__name__)

AUTOMATIC_ACTOR = "gateway"
_TRIGGERS = frozenset(t.value for t in AUTO_UPDATE_TYPES)


@dataclass(frozen=True, slots=True)
class PreparedUpdate:
    """A signed case update, ready to be stored in its trigger's transaction."""

    event: NewCaseEvent
    publish: Publish
    entry: EntryFields
    known_cases_only: bool
    """Emit only when the network already follows the case (`follow = "known"`)."""


@dataclass(frozen=True, slots=True)
class WithheldUpdate:
    """An automatic update not made (its trigger's label forbids passing it on): only its
    audit entry is stored, in the trigger's transaction."""

    network: str
    case: str
    entry: EntryFields
    known_cases_only: bool


Automatic = PreparedUpdate | WithheldUpdate


class CaseUpdates:
    """One node's case updates. Construct, then `start` (with a bus) and finally `stop`."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        view: NetworkView,
        db: SqliteThread,
        signer: NodeSigner,
        trust: TrustStore,
        audit: AuditLog,
        metrics: Metrics,
        webhooks: Mapping[str, Webhook],
        topology: Topology,
        peers: PeerCheckpoints | None = None,
    ) -> None:
        self.config = config
        self.view = view
        self.subscribed: set[str] = set()
        """The prosecutor networks whose updates the subscription queue is bound to."""
        self.node_id = config.node_id
        self.store = CaseEventStore(db, audit.write)
        self.feed = EventFeed()
        self.topology = topology
        self.wake: Callable[[], None] = lambda: None
        """Set by the node: wakes the outbox publisher once updates are committed."""
        self._db = db
        self._signer = signer
        self._audit = audit
        self._webhooks = dict(webhooks)
        self._worker = WebhookWorker(hooks=webhooks, store=self.store, feed=self.feed)
        self._consumer: ConsumerHandle | None = None
        self.consumer = InboundPipeline(
            db=db,
            policy=verification_policy(config, trust),
            step=UpdateStep(
                config=config,
                view=view,
                topology=topology,
                audit=audit,
                webhooks=self.webhooks_for,
                stored=lambda record: self.feed.publish(record),
            ),
            refusals=RefusalRecorder(node_id=self.node_id, db=db, audit=audit, metrics=metrics),
            peers=peers,
        )

    @classmethod
    async def open(
        cls,
        config: NodeConfig,
        *,
        view: NetworkView,
        db: SqliteThread,
        signer: NodeSigner,
        trust: TrustStore,
        audit: AuditLog,
        metrics: Metrics | None = None,
        topology: Topology | None = None,
        peers: PeerCheckpoints | None = None,
    ) -> CaseUpdates:
        """Load the webhook secrets and the feed's position; nothing runs until `start`."""
        webhooks = await asyncio.to_thread(load_webhooks, view.member_networks())
        service = cls(
            config=config,
            view=view,
            db=db,
            signer=signer,
            trust=trust,
            audit=audit,
            metrics=metrics or Metrics(),
            webhooks=webhooks,
            topology=topology or Topology(prefix=config.topology_prefix),
            peers=peers,
        )
        service.feed.last_cursor = await service.store.last_cursor()
        return service

    # -- life cycle ----------------------------------------------------------------------

    async def start(self, bus: Bus | None) -> None:
        """Webhooks always; with a bus, the subscription queues and their consumer."""
        self._worker.start()
        if bus is None:
            return
        await bus.declare_node(self.node_id)
        await self.follow_networks(bus)

    async def follow_networks(self, bus: Bus) -> None:
        """Bind the subscription queue to every prosecutor network the directory in use
        makes this node a member of, and consume it once there is one: at start, and when
        a newer directory adds the node to a network. (A network it leaves keeps its
        binding until the operator removes it; the consumer refuses that network's updates
        from then on: `network.forbidden`.)"""
        networks = self.view.member_networks()
        for network in networks:
            cases = list(network.cases) if network.cases is not None else None
            await bus.declare_subscription(self.node_id, [network.name], cases)
            self.subscribed.add(network.name)
        if networks and self._consumer is None:
            self._consumer = await bus.consume(
                self.topology.subscription_queue(self.node_id),
                self.consumer.handle,
                prefetch=self.config.limits.prefetch,
            )

    async def stop(self) -> None:
        """Stop consuming and delivering; end every SSE stream."""
        self.feed.close()
        await self.halt()

    async def halt(self) -> None:
        """Stop consuming and delivering webhooks; SSE readers stay (`start` may be called
        again, e.g. when the broker could not be reached)."""
        if self._consumer is not None:
            await self._consumer.cancel()
            self._consumer = None
        await self._worker.stop()

    async def close(self) -> None:
        await self.stop()

    @property
    def ready(self) -> bool:
        return True

    def webhooks_for(self, network: str, case: str) -> list[str]:
        return [k for k, h in self._webhooks.items() if h.wants(network, case)]

    # -- storing -------------------------------------------------------------------------

    async def accept(
        self, envelope: Mapping[str, Any], *, actor: str | None, role: str | None
    ) -> CaseEventRecord:
        """An update a local client submitted (already checked and signed): store it, owe
        its publish and audit it, in one transaction."""
        header = Header.model_validate(envelope["header"])
        update = CaseUpdate.model_validate(envelope["payload"])
        prepared = self._prepare(
            header, update, envelope, AuditEvent.ACCEPTED, actor=actor, role=role, detail={}
        )
        stored = await self._db.call(lambda conn: self._store(conn, prepared))
        assert stored is not None  # a fresh id
        self.announce([stored])
        return stored

    def _prepare(
        self,
        header: Header,
        update: CaseUpdate,
        envelope: Mapping[str, Any],
        event: AuditEvent,
        *,
        actor: str | None,
        role: str | None,
        detail: Mapping[str, Any],
        known_cases_only: bool = False,
    ) -> PreparedUpdate:
        digest = sha256_hex(signing_input(envelope["header"], envelope["payload"]))
        routing_key = self.topology.case_routing_key(
            update.network, update.case, update.event.value
        )
        new = NewCaseEvent(
            id=header.id,
            network=update.network,
            case=update.case,
            event=update.event.value,
            sender=self.node_id,
            direction="out",
            digest=digest,
            created_at=header.created_at,
            received_at=utc_now(),
            envelope=encode_envelope(envelope),
        )
        publish = Publish(
            message_id=header.id,
            recipient=outbox.FANOUT,
            kind="case-update",
            type=MessageType.CASE_UPDATE.value,
            exchange="cases",
            routing_key=routing_key,
            order_key=f"cases:{update.network}:{update.case}",
            body=new.envelope,
        )
        entry = EntryFields.build(
            event,
            actor=actor,
            role=role,
            message_id=header.id,
            case=update.case,
            digest=digest,
            envelope=envelope,
            detail={"network": update.network, **detail},
        )
        return PreparedUpdate(new, publish, entry, known_cases_only)

    def _store(self, conn: sqlite3.Connection, prepared: Automatic) -> CaseEventRecord | None:
        """Inside the caller's transaction: the update, its publish and its entry (the
        entry's detail gains the update's cursor). None when it was stored before, or
        withheld (then only its entry is written)."""
        if isinstance(prepared, WithheldUpdate):
            if not prepared.known_cases_only or knows_case(conn, prepared.network, prepared.case):
                self._audit.write(conn, prepared.entry)
            return None
        event = prepared.event
        if prepared.known_cases_only and not knows_case(conn, event.network, event.case):
            return None
        stored = insert_event(conn, event, self.webhooks_for(event.network, event.case))
        if not stored.new:
            return None
        outbox.add(conn, [prepared.publish], event.received_at)
        entry = prepared.entry
        detail = {**(entry.detail or {}), "cursor": stored.cursor}
        self._audit.write(conn, dataclasses.replace(entry, detail=detail))
        return event.stored_as(stored.cursor)

    def announce(self, stored: Sequence[CaseEventRecord]) -> None:
        """Updates are committed: wake the SSE streams, the webhooks and the publisher."""
        for record in stored:
            self.feed.publish(record)
        if stored:
            self.wake()

    # -- automatic updates -----------------------------------------------------------------

    def prepare_automatic(
        self,
        envelope: Mapping[str, Any],
        header: Header,
        payload: BaseModel | None,
        direction: str,
    ) -> list[Automatic]:
        """Sign the case updates a sent or received message means for this node's networks
        (empty when its type triggers none or no network follows its case); withhold them
        when the message is for its named recipients only (TLP:RED, TLP:AMBER+STRICT).

        Never raises: a failure here must not stop the message itself; it is logged as an
        error (`case_update.automatic_failed`) and the message goes without its updates.
        """
        if header.type.value not in _TRIGGERS:
            return []
        side: Direction = "sent" if direction == "sent" else "received"
        prepared: list[Automatic] = []
        try:
            for network in self.view.member_networks():
                if not should_emit(network, header, self.node_id, side):
                    continue
                if header.handling.named_recipients_only:
                    prepared.append(self._withhold(network, header, side))
                    continue
                if payload is None:
                    payload = validate_payload(
                        header.type.value, header.schema_, envelope["payload"]
                    )
                update = automatic_update(network, header, payload)
                if update is not None:
                    prepared.append(self._sign_automatic(network, header, update, side))
        except Exception:
            _log.exception(
                "case_update.automatic_failed", message_id=str(header.id), node=self.node_id
            )
            return []
        return prepared

    def store_automatic(
        self, conn: sqlite3.Connection, prepared: Sequence[Automatic]
    ) -> list[CaseEventRecord]:
        """Store prepared updates inside the trigger's transaction; returns those stored."""
        stored = [self._store(conn, p) for p in prepared]
        return [record for record in stored if record is not None]

    def _withhold(
        self, network: NetworkConfig, trigger: Header, direction: Direction
    ) -> WithheldUpdate:
        update_id = automatic_update_id(network.name, trigger.id)
        tlp = trigger.handling.tlp.value
        _log.info(
            "case_update.withheld",
            message_id=str(trigger.id),
            case=trigger.case,
            node=self.node_id,
            network=network.name,
            tlp=tlp,
        )
        entry = EntryFields.build(
            AuditEvent.REFUSED,
            actor=AUTOMATIC_ACTOR,
            message_id=update_id,
            case=trigger.case,
            code="handling.restricted",
            detail={
                "network": network.name,
                "trigger": str(trigger.id),
                "trigger_type": trigger.type.value,
                "on": direction,
                "tlp": tlp,
            },
        )
        known_only = network.auto_updates.follow == "known"
        return WithheldUpdate(network.name, trigger.case, entry, known_only)

    def _sign_automatic(
        self, network: NetworkConfig, trigger: Header, update: CaseUpdate, direction: Direction
    ) -> PreparedUpdate:
        header = Header.model_validate(
            {
                "id": automatic_update_id(network.name, trigger.id),
                "type": MessageType.CASE_UPDATE,
                "schema": schema_ref(MessageType.CASE_UPDATE),
                "sender": self.node_id,
                "recipients": [m for m in network.members if m != self.node_id],
                "case": trigger.case,
                "in_reply_to": None,
                "created_at": utc_now(),
                "priority": Priority.NORMAL,
                "handling": trigger.handling,
            }
        )
        payload = update.model_dump(mode="json", exclude_none=True)
        envelope = self._signer.sign_envelope(header, payload)
        return self._prepare(
            header,
            update,
            envelope,
            AuditEvent.SIGNED,
            actor=AUTOMATIC_ACTOR,
            role=None,
            detail={
                "trigger": str(trigger.id),
                "trigger_type": trigger.type.value,
                "on": direction,
            },
            known_cases_only=network.auto_updates.follow == "known",
        )
