"""A node's case updates: the service the gateway opens once and everything else goes through.

`CaseUpdates` owns the store, the feed that wakes SSE streams and webhooks, the consumer of
`<p>.sub.<node>` (bound only to the networks this node is a member of, or to chosen cases),
the update publisher, the webhook worker and the inbox follower that emits automatic
updates for what this node receives. `accept` takes an update a local client submitted;
`emit_automatic_update` (and the `MessageHook` methods around it) one the node derives from
a freeze decision or an asset-inquiry response.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

import orjson

from exchange.audit.entries import AuditEvent, EntryFields
from exchange.audit.log import EntriesWritten
from exchange.config import AUTO_UPDATE_TYPES, NetworkConfig, NodeConfig
from exchange.crypto.canonical import sha256_hex
from exchange.crypto.signing import encode_envelope, signing_input
from exchange.gateway.peers import PeerCheckpoints
from exchange.log import get_logger
from exchange.model.case_update import CaseUpdate
from exchange.model.common import MessageType, Priority, utc_now
from exchange.model.envelope import Header
from exchange.schemas import schema_ref, validate_payload
from exchange.subscriptions.automatic import (
    Direction,
    automatic_update,
    automatic_update_id,
    should_emit,
)
from exchange.subscriptions.consumer import UpdateConsumer
from exchange.subscriptions.feed import EventFeed
from exchange.subscriptions.publisher import UpdatePublisher
from exchange.subscriptions.records import AuditIntent, NewCaseEvent, Stored
from exchange.subscriptions.store import SubscriptionStore
from exchange.subscriptions.webhooks import Webhook, WebhookWorker, load_webhooks
from exchange.transport.topology import Topology

if TYPE_CHECKING:
    from exchange.audit.log import AuditLog
    from exchange.crypto.signing import NodeSigner
    from exchange.crypto.verify import TrustStore
    from exchange.gateway.store import MessageStore
    from exchange.transport.bus import Bus, ConsumerHandle

_log = get_logger(__name__)

INBOX_CURSOR_KEY = "automatic.inbox_cursor"
INBOX_POLL_SECONDS = 0.25
INBOX_PAGE = 200
AUTOMATIC_ACTOR = "gateway"
_TRIGGERS = frozenset(t.value for t in AUTO_UPDATE_TYPES)


RECENT_SENT = 1_000
"""How many of the newest sent messages are checked for missed automatic updates."""
AUDIT_RECOVERY_ROWS = 1_000
"""Most updates whose audit entries are completed in one pass of `complete_audit`."""
AUDIT_RECOVERY_SCAN = 20_000
"""How many of the newest audit entries are searched for those already written."""


class MessageHook(Protocol):
    """What the gateway calls when it sends or receives a message (never raises)."""

    async def on_message_sent(self, envelope: Mapping[str, Any]) -> None: ...

    async def on_message_received(self, envelope: Mapping[str, Any]) -> None: ...


class CaseUpdates:
    """One node's case updates. `open`, then `start` (with a bus) and finally `close`."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        store: SubscriptionStore,
        signer: NodeSigner,
        trust: TrustStore,
        audit: AuditLog,
        webhooks: Mapping[str, Webhook],
        topology: Topology,
        peers: PeerCheckpoints | None = None,
    ) -> None:
        self.config = config
        self.node_id = config.node_id
        self.store = store
        self.feed = EventFeed()
        self.topology = topology
        self._signer = signer
        self._audit = audit
        self._webhooks = dict(webhooks)
        self._auditing: dict[UUID, asyncio.Future[None]] = {}
        self._recovery = asyncio.Lock()
        self._worker = WebhookWorker(hooks=webhooks, store=store, audit=audit, feed=self.feed)
        self._publisher: UpdatePublisher | None = None
        self._consumer: ConsumerHandle | None = None
        self._follower: asyncio.Task[None] | None = None
        self.consumer = UpdateConsumer(
            config=config,
            trust=trust,
            topology=topology,
            audit=audit,
            store_update=self.store_update,
            peers=peers,
        )

    @classmethod
    async def open(
        cls,
        config: NodeConfig,
        *,
        signer: NodeSigner,
        trust: TrustStore,
        audit: AuditLog,
        topology: Topology | None = None,
        peers: PeerCheckpoints | None = None,
    ) -> CaseUpdates:
        """Open the store and load the webhook secrets; nothing runs until `start`."""
        webhooks = await asyncio.to_thread(load_webhooks, config.member_networks())
        store = await SubscriptionStore.open(config.subscriptions_path)
        service = cls(
            config=config,
            store=store,
            signer=signer,
            trust=trust,
            audit=audit,
            webhooks=webhooks,
            topology=topology or Topology(prefix=config.topology_prefix),
            peers=peers,
        )
        service.feed.last_cursor = await store.last_cursor()
        await service.complete_audit()
        return service

    # -- life cycle ----------------------------------------------------------------------

    async def start(self, bus: Bus | None, inbox: MessageStore | None = None) -> None:
        """Webhooks always; with a bus: the subscription queue, its consumer, the publisher;
        with the message store: the inbox follower for automatic updates on receipt."""
        self._worker.start()
        if bus is not None:
            networks = self.config.member_networks()
            await bus.declare_node(self.node_id)
            for network in networks:
                cases = list(network.cases) if network.cases is not None else None
                await bus.declare_subscription(self.node_id, [network.name], cases)
            self._publisher = UpdatePublisher(
                node_id=self.node_id,
                store=self.store,
                bus=bus,
                audit=self._audit,
                limits=self.config.limits,
            )
            self._publisher.start()
            if networks:
                self._consumer = await bus.consume(
                    self.topology.subscription_queue(self.node_id),
                    self.consumer.handle_delivery,
                    prefetch=self.config.limits.prefetch,
                )
        if inbox is not None and any(n.auto_updates.enabled for n in self.config.networks):
            self._follower = asyncio.create_task(self._follow_inbox(inbox), name="inbox-follower")

    async def stop(self) -> None:
        """Stop consuming and publishing; end every SSE stream."""
        self.feed.close()
        await self.halt()

    async def halt(self) -> None:
        """Stop consuming, publishing and delivering webhooks; SSE readers stay (`start`
        may be called again, e.g. when the broker could not be reached)."""
        if self._consumer is not None:
            await self._consumer.cancel()
            self._consumer = None
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None
        if self._publisher is not None:
            await self._publisher.stop()
            self._publisher = None
        await self._worker.stop()

    async def close(self) -> None:
        await self.stop()
        await self.store.close()

    @property
    def ready(self) -> bool:
        return self._publisher is None or self._publisher.running

    # -- storing -------------------------------------------------------------------------

    async def store_update(
        self,
        event: NewCaseEvent,
        *,
        routing_key: str | None = None,
        audit: Sequence[AuditIntent] = (),
        envelope: Mapping[str, Any] | None = None,
    ) -> Stored:
        """Store an update once (queueing its publish and webhook jobs); wake the readers;
        write its `audit` entries (`envelope`: the parsed signed envelope, for the entries
        that keep it). A repeat whose entries are still owed (its first arrival was cut
        short) completes them; nothing else is written twice."""
        hooks = [k for k, h in self._webhooks.items() if h.wants(event.network, event.case)]
        stored = await self.store.record(
            event, routing_key=routing_key, webhooks=hooks, audit=audit
        )
        if stored.new:
            self.feed.publish(event.stored_as(stored.cursor))
            if routing_key is not None and self._publisher is not None:
                self._publisher.wake()
            if audit:
                doc = envelope if envelope is not None else orjson.loads(event.envelope)
                writing = asyncio.ensure_future(
                    self._write_audit(event.id, event.case, event.digest, stored.cursor, audit, doc)
                )
                self._auditing[event.id] = writing
                writing.add_done_callback(lambda _: self._auditing.pop(event.id, None))
                await asyncio.shield(writing)
        elif stored.audit_owed:
            in_progress = self._auditing.get(event.id)
            if in_progress is not None:
                await asyncio.shield(in_progress)
            else:
                await self.complete_audit()
        return stored

    async def _write_audit(
        self,
        update_id: UUID,
        case: str,
        digest: str,
        cursor: int,
        intents: Sequence[AuditIntent],
        envelope: Mapping[str, Any],
    ) -> None:
        """Write the entries (queued together, so in order and in one group commit), then
        clear them from the update's row."""
        await asyncio.gather(
            *(
                self._audit.enqueue(
                    EntryFields.build(
                        intent.event,
                        actor=intent.actor,
                        role=intent.role,
                        message_id=update_id,
                        case=case,
                        digest=digest,
                        envelope=envelope if intent.envelope else None,
                        detail={**intent.detail, "cursor": cursor},
                    )
                )
                for intent in intents
            )
        )
        await self.store.audit_written(update_id)

    async def complete_audit(self) -> int:
        """Write the audit entries that updates stored just before the node stopped still
        owe (those not found among the log's newest entries); return how many were added.

        Runs when the service opens, and when a redelivered update still owes entries.
        """
        async with self._recovery:
            owed = await self.store.audit_owed(AUDIT_RECOVERY_ROWS)
            if not owed:
                return 0
            written = EntriesWritten(self._audit, AUDIT_RECOVERY_SCAN)
            added = 0
            for record, intents in owed:
                if record.id in self._auditing:  # being written by its first arrival
                    continue
                await written.refresh()  # what its first arrival wrote is committed by now
                missing = [i for i in intents if not written.holds(i.event, record.id)]
                if missing:
                    doc = orjson.loads(record.envelope)
                    await self._write_audit(
                        record.id, record.case, record.digest, record.cursor, missing, doc
                    )
                    added += len(missing)
                else:
                    await self.store.audit_written(record.id)
            if added:
                _log.warning("audit.case_updates_recovered", node=self.node_id, entries=added)
            return added

    async def accept(
        self, envelope: Mapping[str, Any], *, actor: str | None, role: str | None
    ) -> Stored:
        """An update a local client submitted (already checked and signed): store and audit."""
        header = Header.model_validate(envelope["header"])
        update = CaseUpdate.model_validate(envelope["payload"])
        return await self._store_outgoing(
            header, update, envelope, AuditEvent.ACCEPTED, actor=actor, role=role, detail={}
        )

    async def _store_outgoing(
        self,
        header: Header,
        update: CaseUpdate,
        envelope: Mapping[str, Any],
        event: AuditEvent,
        *,
        actor: str | None,
        role: str | None,
        detail: Mapping[str, Any],
    ) -> Stored:
        digest = sha256_hex(signing_input(envelope["header"], envelope["payload"]))
        now = utc_now()
        return await self.store_update(
            NewCaseEvent(
                id=header.id,
                network=update.network,
                case=update.case,
                event=update.event.value,
                sender=self.node_id,
                direction="out",
                digest=digest,
                created_at=header.created_at,
                received_at=now,
                envelope=encode_envelope(envelope),
            ),
            routing_key=self.topology.case_routing_key(
                update.network, update.case, update.event.value
            ),
            audit=[
                AuditIntent(
                    event.value,
                    actor=actor,
                    role=role,
                    envelope=True,
                    detail={"network": update.network, **detail},
                )
            ],
            envelope=envelope,
        )

    # -- automatic updates -----------------------------------------------------------------

    async def emit_automatic_update(
        self, envelope: Mapping[str, Any], *, direction: Direction
    ) -> list[UUID]:
        """Emit the case updates a sent or received message means for this node's networks.

        Returns the ids of the updates newly stored (empty when the message type does not
        trigger updates, no network follows its case, or they were emitted before).
        """
        if envelope["header"].get("type") not in _TRIGGERS:
            return []
        header = Header.model_validate(envelope["header"])
        emitted: list[UUID] = []
        payload: Any = None
        for network in self.config.member_networks():
            if not should_emit(network, header, self.node_id, direction):
                continue
            if network.auto_updates.follow == "known" and not await self.store.knows_case(
                network.name, header.case
            ):
                continue
            if payload is None:
                payload = validate_payload(header.type.value, header.schema_, envelope["payload"])
            update = automatic_update(network, header, payload)
            if update is None:
                continue
            stored = await self._sign_and_store(network, header, update, direction)
            if stored.new:
                emitted.append(automatic_update_id(network.name, header.id))
        return emitted

    async def _sign_and_store(
        self, network: NetworkConfig, trigger: Header, update: CaseUpdate, direction: Direction
    ) -> Stored:
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
        stored = await self._store_outgoing(
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
        )
        if stored.new:
            _log.info(
                "case_update.automatic",
                message_id=str(header.id),
                case=trigger.case,
                node=self.node_id,
                network=network.name,
                trigger=str(trigger.id),
            )
        return stored

    async def on_message_sent(self, envelope: Mapping[str, Any]) -> None:
        """Hook: this node accepted `envelope` for sending (after it is durably stored)."""
        await self._hook(envelope, "sent")

    async def on_message_received(self, envelope: Mapping[str, Any]) -> None:
        """Hook: this node verified and stored the incoming `envelope`."""
        await self._hook(envelope, "received")

    async def _hook(self, envelope: Mapping[str, Any], direction: Direction) -> None:
        try:
            await self.emit_automatic_update(envelope, direction=direction)
        except Exception:  # never undo or delay what the caller already committed
            with contextlib.suppress(Exception):
                header = envelope.get("header") or {}
                _log.exception(
                    "case_update.automatic_failed",
                    message_id=str(header.get("id")),
                    node=self.node_id,
                    on=direction,
                )

    async def emit_missed_sent_updates(self, outgoing: MessageStore) -> int:
        """Emit the automatic updates of messages sent just before the node stopped.

        Sending commits the message, then emits its updates: a node killed in between never
        emitted them. The newest RECENT_SENT messages whose update ids are missing are run
        through the hook again (emitting is idempotent by id). Returns how many were emitted.
        """
        networks = [n for n in self.config.member_networks() if n.auto_updates.enabled]
        if not networks:
            return 0
        emitted = 0
        for record in await outgoing.recent_outgoing(RECENT_SENT):
            if record.type not in _TRIGGERS:
                continue
            ids = [automatic_update_id(n.name, record.id) for n in networks]
            if all([await self.store.get(update_id) is not None for update_id in ids]):
                continue
            envelope = orjson.loads(record.envelope)
            emitted += len(await self.emit_automatic_update(envelope, direction="sent"))
        if emitted:
            _log.warning("case_update.automatic_recovered", node=self.node_id, updates=emitted)
        return emitted

    async def _follow_inbox(self, inbox: MessageStore) -> None:
        """Emit the automatic updates of received messages, from a durable inbox cursor, so
        none is lost when the node stops between storing a message and emitting."""
        cursor = int(await self.store.get_meta(INBOX_CURSOR_KEY) or 0)
        while True:
            try:
                page = await inbox.inbox_page(cursor, INBOX_PAGE)
                for record in page:
                    if record.type in _TRIGGERS:
                        await self._hook(orjson.loads(record.envelope), "received")
                if page:
                    cursor = page[-1].cursor
                    await self.store.set_meta(INBOX_CURSOR_KEY, str(cursor))
                    continue
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("case_update.inbox_follower_failed", node=self.node_id)
            await asyncio.sleep(INBOX_POLL_SECONDS)
