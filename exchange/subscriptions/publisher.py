"""Publishes the case updates this node signed to the `cases` exchange, with confirms.

Rows of the update outbox are published in batches as `<network>.<case>.<event>`; an
unconfirmed publish is retried with backoff (the members' dedupe by id absorbs repeats), so
an update accepted with 202 reaches the broker even across crashes and broker restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from datetime import timedelta
from typing import TYPE_CHECKING
from uuid import uuid4

from exchange.audit.entries import AuditEvent
from exchange.gateway.peers import Gossip
from exchange.log import get_logger
from exchange.model.common import utc_now
from exchange.transport.bus import Bus, Outgoing

if TYPE_CHECKING:
    from exchange.audit.log import AuditLog
    from exchange.config import Limits
    from exchange.subscriptions.store import SubscriptionStore

_log = get_logger(__name__)

IDLE_POLL_SECONDS = 1.0


class UpdatePublisher:
    """The update outbox's publishing loop; `wake()` after committing new rows."""

    def __init__(
        self,
        *,
        node_id: str,
        store: SubscriptionStore,
        bus: Bus,
        audit: AuditLog,
        limits: Limits,
    ) -> None:
        self.node_id = node_id
        self._store = store
        self._bus = bus
        self._audit = audit
        self._gossip = Gossip(audit)
        self._limits = limits
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="update-publisher")
        self.wake()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wake(self) -> None:
        self._wakeup.set()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _loop(self) -> None:
        while True:
            self._wakeup.clear()
            try:
                published = await self.publish_due()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must survive anything; the rows stay due
                _log.exception("update_outbox.publish_failed", node=self.node_id)
                published = 0
            if published:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), IDLE_POLL_SECONDS)

    async def publish_due(self) -> int:
        """Publish one batch of due updates; return how many the broker confirmed."""
        items = await self._store.outbox_due(self._limits.outbox_batch_size, utc_now())
        if not items:
            return 0
        results = await self._bus.publish_many(
            [
                Outgoing(
                    exchange="cases",
                    routing_key=item.routing_key,
                    body=item.envelope,
                    message_id=f"{item.id}/{uuid4().hex[:8]}",
                    headers={"x-xb-sender": self.node_id, **self._gossip.headers()},
                )
                for item in items
            ]
        )
        confirmed = [it for it, err in zip(items, results, strict=True) if err is None]
        failed = [(it, err) for it, err in zip(items, results, strict=True) if err is not None]
        if confirmed:
            await self._store.outbox_confirmed([it.id for it in confirmed], utc_now())
            await asyncio.gather(
                *(
                    self._audit.append(
                        AuditEvent.CONFIRMED,
                        message_id=it.id,
                        detail={
                            "exchange": "cases",
                            "routing_key": it.routing_key,
                            "attempt": it.attempts + 1,
                        },
                    )
                    for it in confirmed
                )
            )
        for item, err in failed:
            base = self._limits.publish_retry_min_seconds * (2 ** min(item.attempts, 16))
            delay = min(self._limits.publish_retry_max_seconds, base) * random.uniform(0.8, 1.2)
            await self._store.outbox_retry([item.id], utc_now() + timedelta(seconds=delay))
            _log.warning(
                "update_outbox.retry",
                message_id=str(item.id),
                attempts=item.attempts + 1,
                error=str(err),
            )
        return len(confirmed)
