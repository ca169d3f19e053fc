"""The one outbox publisher: requests, receipts and case updates, with confirms and backoff.

Rows are published in pipelined batches with publisher confirms; a confirm and its
`confirmed` audit entry are recorded in one transaction. An unconfirmed row is tried again
after a backoff, so a crash or a broker restart loses nothing (the receiver's dedupe absorbs
repeats). Rows sharing an order key (one sender's messages of one case) go out one after
another, each after the previous one's confirm, and none while an earlier one waits for a
retry, all in flight on one channel: a recipient reads them in the order they were
accepted (unless the broker refuses one in the middle of such a run: it then arrives after
the later ones, on its retry).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import timedelta
from uuid import uuid4

from exchange.backoff import retry_delay
from exchange.config import Limits
from exchange.log import get_logger
from exchange.metrics import Metrics
from exchange.model.common import utc_now
from exchange.storage.outbox import Outbox, OutboxItem
from exchange.tasks import cancel_and_wait
from exchange.transport.bus import Bus, Outgoing, PublishError

_log = get_logger(__name__)

IDLE_POLL_SECONDS = 1.0
"""How often the publisher looks at the outbox when nobody wakes it (for retries due)."""
DISCONNECTED_POLL_SECONDS = 0.2
MAX_BATCHES_IN_FLIGHT = 4
LOOKAHEAD = 4
"""Pending rows read per batch, as a multiple of the batch size: rows held back behind an
earlier one of their order key are passed over."""


def chains(items: list[OutboxItem]) -> list[list[OutboxItem]]:
    """Rows grouped by order key (in order); a row without a key is a chain of its own."""
    keyed: dict[str, list[OutboxItem]] = {}
    out: list[list[OutboxItem]] = []
    for item in items:
        if item.order_key is None:
            out.append([item])
        elif item.order_key in keyed:
            keyed[item.order_key].append(item)
        else:
            keyed[item.order_key] = chain = [item]
            out.append(chain)
    return out


class OutboxPublisher:
    """Publishes the node's outbox until stopped."""

    def __init__(
        self,
        *,
        node_id: str,
        outbox: Outbox,
        bus: Bus,
        limits: Limits,
        metrics: Metrics,
        headers: Callable[[], Mapping[str, str]],
    ) -> None:
        self.node_id = node_id
        self._outbox = outbox
        self._bus = bus
        self._limits = limits
        self._metrics = metrics
        self._headers = headers
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._stopping = False
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name="outbox-publisher")
        self.wake()

    async def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()
        await cancel_and_wait(self._task)
        self._task = None

    def wake(self) -> None:
        """New rows are committed: publish them now."""
        self._wakeup.set()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def publish_due(self) -> int:
        """Publish one batch of due rows; return how many the broker confirmed."""
        items = await self._due(set())
        return await self._publish(items) if items else 0

    async def _due(self, in_flight: set[int]) -> list[OutboxItem]:
        batch = self._limits.outbox_batch_size
        return await self._outbox.next_batch(
            batch, utc_now(), busy=in_flight, lookahead=batch * LOOKAHEAD
        )

    async def _loop(self) -> None:
        """Keep up to MAX_BATCHES_IN_FLIGHT batches publishing at once: the next batch goes
        out while the previous one's confirms are still being recorded."""
        in_flight: set[int] = set()
        batches: set[asyncio.Task[int]] = set()
        try:
            while not self._stopping:
                if not self._bus.connected:
                    # No broker: publishing would only fail and push the retries further out.
                    await asyncio.sleep(DISCONNECTED_POLL_SECONDS)
                    continue
                if len(batches) >= MAX_BATCHES_IN_FLIGHT:
                    await asyncio.wait(batches, return_when=asyncio.FIRST_COMPLETED)
                    continue
                self._wakeup.clear()
                try:
                    items = await self._due(in_flight)
                except Exception:  # the loop must survive anything; the rows stay due
                    _log.exception("outbox.read_failed", node=self.node_id)
                    items = []
                if items:
                    self._start_batch(items, in_flight, batches)
                    continue
                if not batches:
                    self._metrics.set_outbox_depth(await self._outbox.depth())
                waiter = asyncio.ensure_future(self._wakeup.wait())
                await asyncio.wait(
                    {waiter, *batches},
                    timeout=IDLE_POLL_SECONDS,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                waiter.cancel()
        finally:
            for task in batches:
                task.cancel()  # unconfirmed rows stay due and are published again

    def _start_batch(
        self, items: list[OutboxItem], in_flight: set[int], batches: set[asyncio.Task[int]]
    ) -> None:
        seqs = {item.seq for item in items}
        in_flight |= seqs
        task = asyncio.create_task(self._publish(items))
        batches.add(task)

        def finished(done: asyncio.Task[int]) -> None:
            in_flight.difference_update(seqs)
            batches.discard(done)
            if not done.cancelled() and done.exception() is not None:
                _log.error("outbox.publish_failed", error=repr(done.exception()))
            self._wakeup.set()  # rows may have become due meanwhile

        task.add_done_callback(finished)

    async def _publish(self, items: list[OutboxItem]) -> int:
        headers = {"x-xb-sender": self.node_id, **self._headers()}
        confirmed: list[OutboxItem] = []
        failed: list[tuple[OutboxItem, str]] = []

        async def run_chain(chain: list[OutboxItem]) -> None:
            if chain[0].order_key is None:
                try:
                    await self._bus.publish(_outgoing(chain[0], headers))
                except PublishError as err:
                    failed.append((chain[0], str(err)))
                else:
                    confirmed.append(chain[0])
                return
            # In order on one channel, all in flight: the broker keeps that order. Should
            # one in the middle fail, those after it that were confirmed are recorded as
            # such (they did arrive); the failed one follows them on its retry.
            outgoing = [_outgoing(it, headers) for it in chain]
            key = chain[0].order_key or ""
            outcomes = await self._bus.publish_sequence(outgoing, key=key)
            for item, error in zip(chain, outcomes, strict=True):
                if error is None:
                    confirmed.append(item)
                else:
                    failed.append((item, str(error)))

        started = asyncio.get_running_loop().time()
        await asyncio.gather(*(run_chain(chain) for chain in chains(items)))
        self._metrics.observe_publish(asyncio.get_running_loop().time() - started)
        if confirmed:
            confirmed.sort(key=lambda it: it.seq)
            await self._outbox.confirmed(confirmed, utc_now())
            for it in confirmed:
                if it.kind == "message":
                    self._metrics.message("out", it.type, "sent")
        if failed:
            await self._schedule_retries(failed)
        return len(confirmed)

    async def _schedule_retries(self, failed: list[tuple[OutboxItem, str]]) -> None:
        now = utc_now()
        schedule = []
        for item, error in failed:
            delay = retry_delay(
                item.attempts,
                self._limits.publish_retry_min_seconds,
                self._limits.publish_retry_max_seconds,
            )
            schedule.append((item, now + timedelta(seconds=delay)))
            _log.warning(
                "outbox.retry",
                message_id=str(item.message_id),
                recipient=item.recipient,
                kind=item.kind,
                attempts=item.attempts + 1,
                error=error,
            )
        await self._outbox.retry(schedule)


def _outgoing(item: OutboxItem, headers: Mapping[str, str]) -> Outgoing:
    return Outgoing(
        exchange=item.exchange,
        routing_key=item.routing_key,
        body=item.envelope,
        # unique per publish: returns are matched by message id
        message_id=f"{item.message_id}/{item.recipient}/{uuid4().hex[:8]}",
        headers=headers,
    )
