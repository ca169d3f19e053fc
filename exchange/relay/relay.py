"""A node's link to the broker: the outbox publisher and the inbox consumer, wired.

`Relay` declares the node's queues, consumes its inbox through the inbound pipeline, runs
the outbox publisher, and publishes the audit log's checkpoints to the network's stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import uuid4

from exchange.audit.checkpoints import Checkpoint
from exchange.audit.log import AuditLog
from exchange.audit.peers import Gossip, PeerCheckpoints
from exchange.config import NodeConfig
from exchange.crypto.signing import NodeSigner
from exchange.crypto.verify import TrustStore
from exchange.directory.view import NetworkView
from exchange.log import get_logger
from exchange.metrics import Metrics
from exchange.relay.inbound import InboundPipeline, RefusalRecorder, verification_policy
from exchange.relay.inbox import AutomaticUpdates, InboxStep
from exchange.relay.outbox import OutboxPublisher
from exchange.relay.receipts import OwedReceipt, ReplyTo, sign_receipt
from exchange.storage.outbox import Outbox
from exchange.storage.sqlite_thread import SqliteThread
from exchange.transport.bus import Bus, ConsumerHandle, Outgoing, PublishError

_log = get_logger(__name__)


class Relay:
    """One node's link to the broker: the outbox publisher and the inbox consumer."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        view: NetworkView,
        db: SqliteThread,
        signer: NodeSigner,
        trust: TrustStore,
        bus: Bus,
        audit: AuditLog,
        metrics: Metrics,
        peers: PeerCheckpoints | None = None,
        updates: AutomaticUpdates | None = None,
    ) -> None:
        self.config = config
        self.view = view
        self.node_id = config.node_id
        self._bus = bus
        self._signer = signer
        self._gossip = Gossip(audit)
        self.publisher = OutboxPublisher(
            node_id=self.node_id,
            outbox=Outbox(db, audit.write),
            bus=bus,
            limits=config.limits,
            metrics=metrics,
            headers=self._gossip.headers,
        )
        refusals = RefusalRecorder(
            node_id=self.node_id,
            db=db,
            audit=audit,
            metrics=metrics,
            answer=self._negative_receipt,
            wake=self.publisher.wake,
        )
        self.inbox = InboundPipeline(
            db=db,
            policy=verification_policy(config, trust),
            step=InboxStep(
                node_id=self.node_id,
                view=view,
                signer=signer,
                topology=bus.topology,
                audit=audit,
                metrics=metrics,
                wake=self.publisher.wake,
                updates=updates,
            ),
            refusals=refusals,
            peers=peers,
        )
        self._consumer: ConsumerHandle | None = None

    # -- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        await self._bus.declare_node(self.node_id)
        self._consumer = await self._bus.consume(
            self._bus.topology.inbox_queue(self.node_id),
            self.inbox.handle,
            prefetch=self.config.limits.prefetch,
        )
        self.publisher.start()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.cancel()
            self._consumer = None
        await self.publisher.stop()

    def wake(self) -> None:
        """New outbox rows are committed: publish them now."""
        self.publisher.wake()

    async def publish_due(self) -> int:
        """Publish one batch of due outbox rows; return how many the broker confirmed."""
        return await self.publisher.publish_due()

    @property
    def ready(self) -> bool:
        return self._bus.connected and self._consumer is not None and self.publisher.running

    async def publish_checkpoint(self, checkpoint: Checkpoint) -> bool:
        """Publish a signed tree head to the network's audit stream, so that this node
        cannot later rewrite its history unnoticed. False when the broker did not confirm
        (the checkpoint stays in the local log; the next one covers it).

        It goes through the messages exchange as `checkpoint.<node>`, a key the node's
        topic permission allows only with its own id; the broker copies it into the stream
        (no node may publish to the audit exchange itself)."""
        try:
            await self._bus.publish(
                Outgoing(
                    exchange="messages",
                    routing_key=self._bus.topology.checkpoint_routing_key(self.node_id),
                    body=checkpoint.to_json(),
                    message_id=f"checkpoint-{self.node_id}-{checkpoint.size}-{uuid4().hex[:8]}",
                    headers={"x-xb-kind": "checkpoint", "x-xb-sender": self.node_id},
                )
            )
        except PublishError as err:
            _log.warning("checkpoint.publish_failed", size=checkpoint.size, error=str(err))
            return False
        return True

    def _negative_receipt(
        self, header: Mapping[str, Any], digest: str, received_at: datetime, code: str, detail: str
    ) -> OwedReceipt | None:
        original = ReplyTo.loose(header, self.view.recipients)
        if original is None:
            return None
        return sign_receipt(
            self._signer, self._bus.topology, original, digest, received_at, (code, detail)
        )
