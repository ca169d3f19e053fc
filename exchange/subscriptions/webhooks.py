"""Webhooks: each case update POSTed to the URLs a network configures, signed as the
Standard Webhooks specification says (`webhook_signing`).

The body is the update's JSON view. Delivery is at least once: `webhook-id` (the update's
id) lets the receiver drop repeats. A failed attempt (no 2xx, timeout, connection error) is
retried with exponential backoff and given up after `max_tries`; every attempt's outcome is
audited. An update labelled TLP:RED or TLP:AMBER+STRICT (none is stored any more; one kept
from before would be) is given up without being sent. Of the target's answer only the
status and at most `MAX_REPLY_BYTES` are read: a target that answers with an endless body
costs a few KiB, never the node's memory.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

import aiohttp
import orjson

from exchange.audit.entries import AuditEvent, EntryFields
from exchange.backoff import retry_delay
from exchange.config import NetworkConfig, WebhookConfig
from exchange.log import get_logger
from exchange.model.common import utc_now
from exchange.storage import case_events
from exchange.storage.case_records import CaseEventRecord, WebhookJob, named_recipients_only
from exchange.subscriptions.feed import EventFeed
from exchange.subscriptions.webhook_signing import read_secret, signed_headers
from exchange.tasks import cancel_and_wait

if TYPE_CHECKING:
    from exchange.storage.case_events import CaseEventStore

_log = get_logger(__name__)

IDLE_POLL_SECONDS = 1.0
BATCH = 64
MAX_REPLY_BYTES = 4096
"""The most of a target's reply that is read (the rest is never taken off the socket)."""

Outcome = Literal["delivered", "retry", "gave-up"]


def webhook_key(network: str, url: str) -> str:
    """A stable name for a webhook in the job table and the audit log."""
    return f"{network}:{hashlib.sha256(url.encode()).hexdigest()[:16]}"


@dataclass(frozen=True, slots=True)
class Webhook:
    """A configured webhook with its secrets loaded, newest first."""

    key: str
    network: str
    config: WebhookConfig
    secrets: tuple[bytes, ...]

    def wants(self, network: str, case: str) -> bool:
        return network == self.network and (not self.config.cases or case in self.config.cases)

    def retry_delay(self, attempts: int) -> float:
        return retry_delay(attempts, self.config.retry_min_seconds, self.config.retry_max_seconds)


def load_webhooks(networks: Sequence[NetworkConfig]) -> dict[str, Webhook]:
    """Every webhook of the given networks, keyed; reads the secrets (blocking: use a thread)."""
    hooks: dict[str, Webhook] = {}
    for network in networks:
        for config in network.webhooks:
            key = webhook_key(network.name, config.url)
            keys = tuple(read_secret(path) for path in config.secret_paths)
            hooks[key] = Webhook(key, network.name, config, keys)
    return hooks


async def read_reply(response: aiohttp.ClientResponse, limit: int = MAX_REPLY_BYTES) -> bytes:
    """At most `limit` bytes of the reply's body. Leaving the rest unread makes aiohttp close
    the connection instead of reusing it, so a huge reply is never taken off the socket."""
    taken = bytearray()
    while len(taken) < limit:
        chunk = await response.content.read(limit - len(taken))
        if not chunk:
            break
        taken += chunk
    return bytes(taken)


def _public_url(url: str) -> str:
    """The URL without query or fragment (they may carry credentials): for the audit log."""
    return url.split("?", 1)[0].split("#", 1)[0]


class WebhookWorker:
    """Delivers due webhook jobs; wakes on new updates (the feed) and when retries fall due."""

    def __init__(
        self,
        *,
        hooks: Mapping[str, Webhook],
        store: CaseEventStore,
        feed: EventFeed,
    ) -> None:
        self.hooks = dict(hooks)
        self._store = store
        self._feed = feed
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        """Start delivering; without webhooks there is nothing to do (jobs wait in the store)."""
        if not self.hooks:
            return
        self._session = aiohttp.ClientSession()
        self._task = asyncio.create_task(self._loop(), name="webhook-worker")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _loop(self) -> None:
        while not self._feed.closed:  # closed: the node is stopping
            token = self._feed.token()
            try:
                done = await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception:  # the worker must survive anything; the jobs stay due
                _log.exception("webhook.worker_failed")
                done = 0
            if not done:
                await self._feed.wait(token, await self._idle_seconds())

    async def _idle_seconds(self) -> float:
        """Until the next retry falls due, at most IDLE_POLL_SECONDS."""
        due = await self._store.webhook_next_due()
        if due is None:
            return IDLE_POLL_SECONDS
        return min(IDLE_POLL_SECONDS, max(0.0, (due - utc_now()).total_seconds()) + 0.005)

    async def deliver_due(self) -> int:
        """Attempt every due job once (concurrently); return how many were attempted."""
        jobs = await self._store.webhook_due(BATCH, utc_now())
        await asyncio.gather(*(self._attempt(job) for job in jobs))
        return len(jobs)

    async def _attempt(self, job: WebhookJob) -> None:
        hook = self.hooks.get(job.webhook)
        now = utc_now()
        if hook is None:
            await self._settle(job, None, "gave-up", "the webhook is no longer configured", now)
            return
        if named_recipients_only(job.record.envelope):
            # Stored before such updates were refused at the door: never sent out.
            reason = "handling.restricted: a TLP:RED or TLP:AMBER+STRICT update is not sent"
            await self._settle(job, hook, "gave-up", reason, now)
            return
        error = await self._post(hook, job.record)
        if error is None:
            await self._settle(job, hook, "delivered", None, utc_now())
        elif job.attempts + 1 >= hook.config.max_tries:
            await self._settle(job, hook, "gave-up", error, utc_now())
        else:
            await self._settle(job, hook, "retry", error, utc_now())

    async def _post(self, hook: Webhook, record: CaseEventRecord) -> str | None:
        """None when the target answered 2xx, else why not."""
        assert self._session is not None
        body = orjson.dumps(record.view())
        headers = {
            "Content-Type": "application/json",
            **signed_headers(hook.secrets, str(record.id), body),
        }
        try:
            async with self._session.post(
                hook.config.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=hook.config.timeout_seconds),
                allow_redirects=False,
            ) as response:
                await read_reply(response)
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"[:300]

    async def _settle(
        self,
        job: WebhookJob,
        hook: Webhook | None,
        outcome: Outcome,
        error: str | None,
        now: datetime,
    ) -> None:
        record = job.record
        attempt = job.attempts + 1
        if outcome == "delivered":
            change = case_events.webhook_delivered(now)
        elif outcome == "retry":
            assert hook is not None and error is not None
            due = now + timedelta(seconds=hook.retry_delay(job.attempts))
            change = case_events.webhook_retry(due, error)
        else:
            change = case_events.webhook_gave_up(now, error or "")
        detail: dict[str, object] = {
            "channel": "webhook",
            "webhook": job.webhook,
            "outcome": outcome,
            "attempt": attempt,
            "cursor": record.cursor,
            "network": record.network,
        }
        if hook is not None:
            detail["url"] = _public_url(hook.config.url)
        if error is not None:
            detail["error"] = error
        # The log has one delivery event; failed attempts carry a code and their outcome.
        entry = EntryFields.build(
            AuditEvent.SUBSCRIPTION_DELIVERED,
            actor=f"webhook:{job.webhook}",
            message_id=record.id,
            case=record.case,
            digest=record.digest,
            code=None if outcome == "delivered" else f"webhook.{outcome}",
            detail=detail,
        )
        await self._store.webhook_settled(job.webhook, record.cursor, change, entry)
        log = _log.info if outcome == "delivered" else _log.warning
        log(
            f"webhook.{outcome}",
            message_id=str(record.id),
            case=record.case,
            webhook=job.webhook,
            attempt=attempt,
            error=error,
        )
