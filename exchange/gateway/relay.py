"""The relay: publishes the outbox to the broker and verifies what arrives in the inbox.

Outbox: rows committed by the HTTP layer are published in pipelined batches with publisher
confirms; unconfirmed rows are retried with backoff, so a crash or a broker restart loses
nothing (the receiver's dedupe absorbs repeats). Inbox: each delivery is verified (the
fail-closed policy, then the payload schema), stored durably, audited and answered with a
signed receipt, and only then acked. A refused delivery gets a signed negative receipt when
its sender can be named, is audited with its code, and is dead-lettered with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import orjson
from pydantic import BaseModel

from exchange.audit.entries import AuditEvent, EntryFields
from exchange.audit.log import EntriesWritten
from exchange.crypto.canonical import canonicalize, sha256_hex
from exchange.crypto.signing import encode_envelope
from exchange.crypto.verify import VerificationPolicy, VerifiedEnvelope, verify_envelope
from exchange.errors import ExchangeError, VerificationError
from exchange.gateway.peers import Gossip, PeerCheckpoints
from exchange.log import get_logger
from exchange.model.common import HandlingCode, MessageType, Tlp, utc_now
from exchange.model.deadlines import respond_by
from exchange.model.envelope import Handling, Header
from exchange.model.receipt import Receipt
from exchange.schemas import schema_ref, validate_payload
from exchange.transport.bus import (
    ACK,
    REQUEUE,
    Bus,
    ConsumerHandle,
    Delivery,
    Outgoing,
    PublishError,
    Verdict,
    dead_letter,
)

if TYPE_CHECKING:
    from exchange.audit.checkpoints import Checkpoint
    from exchange.audit.log import AuditLog
    from exchange.config import NodeConfig
    from exchange.crypto.signing import NodeSigner
    from exchange.crypto.verify import TrustStore
    from exchange.gateway.metrics import Metrics
    from exchange.gateway.records import OutboxItem
    from exchange.gateway.store import MessageStore

_log = get_logger(__name__)

MAX_QUEUED_AGE = timedelta(days=14)
"""How old a message may be when it is consumed. Longer than the clock skew on purpose: a
message waits in the broker while its recipient is down, and must not be lost for that;
a second copy is refused by the durable inbox, not by a time window."""

RECOVERY_SCAN_ENTRIES = 20_000
"""How far back from the audit log's end to look for a crashed message's entries."""

IDLE_POLL_SECONDS = 1.0
MAX_BATCHES_IN_FLIGHT = 4
DISCONNECTED_POLL_SECONDS = 0.2
"""How often the publisher looks at the outbox when nobody wakes it (for retries due)."""


class Relay:
    """One node's link to the broker: the outbox publisher and the inbox consumer."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        store: MessageStore,
        signer: NodeSigner,
        trust: TrustStore,
        bus: Bus,
        audit: AuditLog,
        metrics: Metrics,
        peers: PeerCheckpoints | None = None,
    ) -> None:
        self.config = config
        self._peers = peers
        self._gossip = Gossip(audit)
        self.node_id = config.node_id
        self._store = store
        self._signer = signer
        self._bus = bus
        self._audit = audit
        self._metrics = metrics
        self._policy = VerificationPolicy(
            trust=trust,
            max_skew=timedelta(seconds=config.limits.max_skew_seconds),
            max_bytes=config.limits.max_body_bytes + 65_536,
            max_age=max(MAX_QUEUED_AGE, timedelta(seconds=config.limits.max_skew_seconds)),
        )
        self._wakeup = asyncio.Event()
        self._recovery = asyncio.Lock()
        # messages whose `verified`/`stored` entries are being written right now: a
        # redelivery meanwhile (e.g. after a broker restart) waits for them, never
        # writes them a second time
        self._recording: dict[UUID, asyncio.Future[None]] = {}
        self._stopping = False
        self._publisher: asyncio.Task[None] | None = None
        self._consumer: ConsumerHandle | None = None

    # -- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping = False
        await self.recover_audit()
        await self._bus.declare_node(self.node_id)
        self._consumer = await self._bus.consume(
            self._bus.topology.inbox_queue(self.node_id),
            self.handle_delivery,
            prefetch=self.config.limits.prefetch,
        )
        self._publisher = asyncio.create_task(self._publish_loop(), name="outbox-publisher")
        self.wake()

    async def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()
        if self._consumer is not None:
            await self._consumer.cancel()
            self._consumer = None
        if self._publisher is not None:
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher
            self._publisher = None

    async def publish_checkpoint(self, checkpoint: Checkpoint) -> bool:
        """Publish a signed tree head to the network's audit stream, so that this node
        cannot later rewrite its history unnoticed. False when the broker did not confirm
        (the checkpoint stays in the local log; the next one covers it)."""
        try:
            await self._bus.publish(
                Outgoing(
                    exchange="audit",
                    routing_key=f"checkpoint.{self.node_id}",
                    body=checkpoint.to_json(),
                    message_id=f"checkpoint-{self.node_id}-{checkpoint.size}-{uuid4().hex[:8]}",
                    headers={"x-xb-kind": "checkpoint", "x-xb-sender": self.node_id},
                )
            )
        except PublishError as err:
            _log.warning("checkpoint.publish_failed", size=checkpoint.size, error=str(err))
            return False
        return True

    def wake(self) -> None:
        """New outbox rows are committed: publish them now."""
        self._wakeup.set()

    @property
    def ready(self) -> bool:
        return (
            self._bus.connected
            and self._consumer is not None
            and self._publisher is not None
            and not self._publisher.done()
        )

    # -- outbox --------------------------------------------------------------------------

    async def _publish_loop(self) -> None:
        """Keep up to MAX_BATCHES_IN_FLIGHT batches publishing at once: the next batch
        goes out while the previous one's confirms are still being recorded."""
        in_flight: set[tuple[UUID, str]] = set()
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
                    items = await self._due_items(in_flight)
                except Exception:  # the loop must survive anything; the rows stay due
                    _log.exception("outbox.read_failed")
                    items = []
                if items:
                    self._start_batch(items, in_flight, batches)
                    continue
                if not batches:
                    self._metrics.set_outbox_depth(await self._store.outbox_depth())
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
        self,
        items: list[OutboxItem],
        in_flight: set[tuple[UUID, str]],
        batches: set[asyncio.Task[int]],
    ) -> None:
        keys = {(item.message_id, item.recipient) for item in items}
        in_flight |= keys
        task = asyncio.create_task(self._publish_items(items))
        batches.add(task)

        def finished(done: asyncio.Task[int]) -> None:
            in_flight.difference_update(keys)
            batches.discard(done)
            if not done.cancelled() and done.exception() is not None:
                _log.error("outbox.publish_failed", error=repr(done.exception()))
            self._wakeup.set()  # rows may have become due meanwhile

        task.add_done_callback(finished)

    async def _due_items(self, exclude: set[tuple[UUID, str]]) -> list[OutboxItem]:
        batch = self.config.limits.outbox_batch_size
        items = await self._store.outbox_due(batch + len(exclude), utc_now())
        return [i for i in items if (i.message_id, i.recipient) not in exclude][:batch]

    async def publish_due(self) -> int:
        """Publish one batch of due outbox rows; return how many the broker confirmed."""
        items = await self._due_items(set())
        if not items:
            self._metrics.set_outbox_depth(0)
            return 0
        return await self._publish_items(items)

    async def _publish_items(self, items: list[OutboxItem]) -> int:
        outgoing = [
            Outgoing(
                exchange="messages",
                routing_key=self._bus.topology.routing_key(item.recipient, item.type, self.node_id),
                body=item.envelope,
                # unique per publish: returns are matched by message id
                message_id=f"{item.message_id}/{item.recipient}/{uuid4().hex[:8]}",
                headers={"x-xb-sender": self.node_id, **self._gossip.headers()},
            )
            for item in items
        ]
        started = asyncio.get_running_loop().time()
        results = await self._bus.publish_many(outgoing)
        self._metrics.observe_publish(asyncio.get_running_loop().time() - started)
        now = utc_now()
        confirmed = [it for it, err in zip(items, results, strict=True) if err is None]
        failed = [(it, err) for it, err in zip(items, results, strict=True) if err is not None]
        if confirmed:
            # Audit first: a crash before the row is marked only republishes (the
            # receiver dedupes); the other order could leave a confirm unrecorded.
            await asyncio.gather(
                *(
                    self._audit.append(
                        AuditEvent.CONFIRMED,
                        message_id=it.message_id,
                        detail={"recipient": it.recipient, "attempt": it.attempts + 1},
                    )
                    for it in confirmed
                )
            )
            await self._store.outbox_confirmed(
                [(it.message_id, it.recipient) for it in confirmed], now
            )
            for it in confirmed:
                self._metrics.message("out", it.type, "sent")
        if failed:
            await self._schedule_retries(failed)
        return len(confirmed)

    async def _schedule_retries(self, failed: list[tuple[OutboxItem, PublishError]]) -> None:
        limits = self.config.limits
        by_delay: dict[datetime, list[tuple[UUID, str]]] = {}
        now = utc_now()
        for item, err in failed:
            base = limits.publish_retry_min_seconds * (2 ** min(item.attempts, 16))
            delay = min(limits.publish_retry_max_seconds, base) * random.uniform(0.8, 1.2)
            due = now + timedelta(seconds=delay)
            by_delay.setdefault(due, []).append((item.message_id, item.recipient))
            _log.warning(
                "outbox.retry",
                message_id=str(item.message_id),
                recipient=item.recipient,
                attempts=item.attempts + 1,
                error=str(err),
            )
        for due, keys in by_delay.items():
            await self._store.outbox_retry(keys, due)

    # -- inbox ---------------------------------------------------------------------------

    async def handle_delivery(self, delivery: Delivery) -> Verdict:
        """Verify, store, audit and answer one delivery from this node's inbox queue."""
        received_at = utc_now()
        verified: VerifiedEnvelope | None = None
        try:
            verified = verify_envelope(delivery.body, self._policy, now=received_at)
            header = verified.envelope.header
            self._check_routing(delivery, header)
            if self._peers is not None:  # evidence about the sender; never refuses
                await self._peers.observe_headers(delivery.headers, header.sender)
            payload = validate_payload(header.type.value, header.schema_, verified.raw["payload"])
            if header.type is MessageType.RECEIPT:
                return await self._accept_receipt(verified, payload, delivery.body, received_at)
            deadline = respond_by(
                header.type, header.priority, header.created_at, **_deadline_hints(payload)
            )
            arrival = await self._store.inbox_receive(
                header.id,
                header.type.value,
                header.case,
                header.sender,
                header.in_reply_to,
                verified.digest,
                delivery.body,
                received_at,
                deadline,
            )
            if not arrival.new and arrival.digest != verified.digest:
                raise VerificationError(
                    f"message {header.id} was already received with different content",
                    code="message.replayed",
                )
        except ExchangeError as err:
            if verified is not None:
                # Refused after the signature checked out: name what was signed, so the
                # sender can match the negative receipt to its message.
                err.extra.setdefault("digest", verified.digest)
            return await self._refuse(delivery, err, received_at)

        if not arrival.new:
            # A redelivery of what we already hold: answer again, change nothing, but
            # finish the audit record if the node stopped before writing it.
            in_progress = self._recording.get(header.id)
            if in_progress is not None:
                await asyncio.shield(in_progress)
            elif not arrival.audited:
                await self.recover_audit()
            self._metrics.message("in", header.type.value, "duplicate")
            return await self._send_receipt(header, verified.digest, received_at, None)
        self._metrics.message("in", header.type.value, "received")
        _log.info(
            "inbox.stored",
            message_id=str(header.id),
            case=header.case,
            node=self.node_id,
            sender=header.sender,
            type=header.type.value,
        )
        # The row is committed: `verified` and `stored` are queued on the audit log while
        # the receipt is signed and published; `receipt_sent` is queued after them, so the
        # log keeps its order, and nothing is acked before all three are durable.
        recorded = self._audit_stored(verified)
        self._recording[header.id] = recorded
        recorded.add_done_callback(lambda _: self._recording.pop(header.id, None))
        return await self._send_receipt(
            header, verified.digest, received_at, None, recorded=recorded
        )

    async def recover_audit(self) -> int:
        """Complete the audit record of messages stored just before the node stopped.

        The inbox and the audit log are two files: a node killed between committing a
        message and marking it audited leaves the row unmarked. Their entries are looked
        for near the log's end (where they would be); those written are not written again,
        those missing are written now. Returns how many entries were added.
        """
        async with self._recovery:
            pending = await self._store.inbox_unaudited()
            if not pending:
                return 0
            written = EntriesWritten(self._audit, RECOVERY_SCAN_ENTRIES)
            added = 0
            for record in pending:
                if record.id in self._recording:  # being written by its first delivery
                    continue
                # Not being written now: whatever its first delivery wrote is committed (it
                # may have finished while earlier records were being completed).
                await written.refresh()
                try:
                    verified = verify_envelope(
                        record.envelope, self._policy, now=record.received_at
                    )
                except ExchangeError as err:  # e.g. its certificate was revoked since
                    _log.error("audit.recovery_failed", message_id=str(record.id), code=err.code)
                    continue
                if not written.holds(AuditEvent.VERIFIED, record.id):
                    await self._audit_incoming(AuditEvent.VERIFIED, verified, envelope=True)
                    added += 1
                if not written.holds(AuditEvent.STORED, record.id):
                    await self._audit_incoming(AuditEvent.STORED, verified)
                    added += 1
                await self._store.inbox_mark_audited(record.id)
            _log.info("audit.recovered", node=self.node_id, messages=len(pending), added=added)
            return added

    def _audit_stored(self, verified: VerifiedEnvelope) -> asyncio.Task[None]:
        """Queue now the entries that say a message was verified and stored (so that its
        receipt's entry, queued later, follows them); the task ends once both are durable.

        Never acked before the entries are durable, so a node killed half-way gets the
        message again and completes the record then.
        """
        queued = (
            self._enqueue_incoming(AuditEvent.VERIFIED, verified, envelope=True),
            self._enqueue_incoming(AuditEvent.STORED, verified),
        )
        for future in queued:
            future.add_done_callback(_retrieve)
        task = asyncio.ensure_future(self._recorded(queued, verified.envelope.header.id))
        task.add_done_callback(_retrieve)
        return task

    async def _recorded(self, queued: tuple[asyncio.Future[int], ...], message_id: UUID) -> None:
        await asyncio.gather(*queued)
        # The inbox row's flag only spares `recover_audit` a look at the log: the delivery
        # is not held for it.
        mark = asyncio.ensure_future(self._store.inbox_mark_audited(message_id))
        mark.add_done_callback(_retrieve)

    def _check_routing(self, delivery: Delivery, header: Header) -> None:
        """The broker-authenticated routing key must agree with the signed header."""
        if self.node_id not in header.recipients:
            raise VerificationError(
                f"the message is addressed to {', '.join(header.recipients)}, not {self.node_id}",
                code="recipient.mismatch",
            )
        expected = self._bus.topology.routing_key(self.node_id, header.type.value, header.sender)
        if delivery.routing_key != expected:
            raise VerificationError(
                f"routing key {delivery.routing_key!r} does not match the signed header "
                f"(expected {expected!r})",
                code="sender.mismatch",
            )

    async def _accept_receipt(
        self,
        verified: VerifiedEnvelope,
        payload: BaseModel,
        body: bytes,
        received_at: datetime,
    ) -> Verdict:
        header = verified.envelope.header
        receipt = (
            payload
            if isinstance(payload, Receipt)
            else Receipt.model_validate(verified.raw["payload"])
        )
        # The receipt must come from a recipient of a message we sent, and acknowledge the
        # bytes we signed (else it is no proof of delivery): checked as it is recorded.
        outcome = await self._store.record_receipt_checked(
            receipt.message_id,
            header.sender,
            receipt.digest,
            receipt.outcome,
            receipt.reason,
            receipt.detail,
            received_at,
            body,
        )
        if outcome.refusal is not None:
            # Kept as evidence; nothing changes.
            await self._audit_incoming(
                AuditEvent.REJECTED, verified, envelope=True, code=outcome.refusal
            )
            if outcome.refusal == "receipt.mismatch":
                _log.warning(
                    "receipt.digest_mismatch",
                    message_id=str(receipt.message_id),
                    node=self.node_id,
                    sender=header.sender,
                )
            return dead_letter(outcome.refusal)
        status = outcome.status
        await self._audit.append(
            AuditEvent.RECEIPT_RECEIVED,
            message_id=receipt.message_id,
            case=header.case,
            digest=receipt.digest,
            code=receipt.reason,
            envelope=verified.raw,
            detail={"from": header.sender, "outcome": receipt.outcome, "status": status},
        )
        self._metrics.receipt("received", receipt.outcome)
        if status in ("delivered", "rejected") and outcome.created_at is not None:
            self._metrics.message("out", outcome.type or "unknown", status)
            self._metrics.observe_end_to_end((received_at - outcome.created_at).total_seconds())
        return ACK

    async def _refuse(
        self, delivery: Delivery, err: ExchangeError, received_at: datetime
    ) -> Verdict:
        """Audit, answer with a negative receipt where possible, and dead-letter."""
        code = err.code if err.code in _RECEIPT_CODES else "envelope.malformed"
        raw = _loose_json(delivery.body)
        header = _loose_header(raw)
        message_id = _uuid_or_none(header.get("id"))
        # The digest of the canonical signed bytes when verification got that far.
        digest = err.extra.get("digest") or sha256_hex(delivery.body)
        case = header.get("case") if isinstance(header.get("case"), str) else None
        detail = {
            "routing_key": delivery.routing_key[:255],
            "reason": err.detail[:500],
            "claimed_id": str(header.get("id"))[:100] if message_id is None else None,
        }
        evidence = raw if isinstance(raw, dict) and _canonicalizable(raw) else None
        try:
            await self._audit.append(
                AuditEvent.REJECTED,
                message_id=message_id,
                case=case[:64] if case else None,
                digest=digest,
                code=code,
                envelope=evidence,
                detail=detail,
            )
        except Exception:  # the refusal must be recorded even if its evidence cannot be
            _log.exception("audit.refusal_evidence_failed", code=code)
            await self._audit.append(
                AuditEvent.REJECTED, digest=sha256_hex(delivery.body), code=code
            )
        self._metrics.message("in", str(header.get("type", "unknown"))[:40], "refused")
        _log.warning(
            "inbox.refused",
            code=code,
            message_id=str(message_id),
            node=self.node_id,
            routing_key=delivery.routing_key[:255],
        )
        if header.get("type") != MessageType.RECEIPT.value:
            answered = await self._negative_receipt(header, digest, received_at, err, code)
            if answered is not None and answered.disposition is not ACK.disposition:
                return answered
        return dead_letter(code)

    async def _negative_receipt(
        self,
        header: Mapping[str, Any],
        digest: str,
        received_at: datetime,
        err: ExchangeError,
        code: str,
    ) -> Verdict | None:
        """Answer the named sender, if it is a node of this network and the id is a UUID."""
        sender = header.get("sender")
        if not isinstance(sender, str) or sender not in self.config.nodes or sender == self.node_id:
            return None
        message_id = _uuid_or_none(header.get("id"))
        if message_id is None:
            return None
        case = header.get("case") if isinstance(header.get("case"), str) else None
        try:
            original = Header.model_validate({**header, "case": case or "unknown"})
        except ValueError:
            original = None
        reply_header = _ReplyTo(
            id=message_id,
            sender=sender,
            case=original.case if original is not None else "unknown",
            priority=original.priority.value if original is not None else "normal",
            handling=original.handling if original is not None else None,
        )
        return await self._send_receipt(reply_header, digest, received_at, (code, err.detail))

    async def _send_receipt(
        self,
        original: Header | _ReplyTo,
        digest: str,
        received_at: datetime,
        refusal: tuple[str, str] | None,
        *,
        recorded: asyncio.Future[None] | None = None,
    ) -> Verdict:
        """Sign and publish a receipt, then audit it. `recorded` (the audit of the message
        itself, running meanwhile) is awaited before the receipt's entry and the verdict."""
        payload = Receipt(
            message_id=original.id,
            digest=digest,
            outcome="accepted" if refusal is None else "rejected",
            reason=None if refusal is None else refusal[0],
            detail=None if refusal is None else refusal[1][:1000],
            received_at=received_at,
        ).model_dump(mode="json")
        now = utc_now()
        handling = original.handling or Handling(tlp=Tlp.AMBER, code=HandlingCode.H0)
        header = Header.model_validate(
            {
                "id": str(uuid4()),
                "type": MessageType.RECEIPT.value,
                "schema": schema_ref(MessageType.RECEIPT),
                "sender": self.node_id,
                "recipients": [original.sender],
                "case": original.case,
                "in_reply_to": str(original.id),
                "created_at": now,
                "priority": original.priority,
                "handling": handling.model_dump(mode="json"),
            }
        )
        envelope = self._signer.sign_envelope(header, payload)
        body = encode_envelope(envelope)
        try:
            await self._bus.publish(
                Outgoing(
                    exchange="messages",
                    routing_key=self._bus.topology.routing_key(
                        original.sender, MessageType.RECEIPT.value, self.node_id
                    ),
                    body=body,
                    message_id=str(header.id),
                    headers={"x-xb-sender": self.node_id, **self._gossip.headers()},
                )
            )
        except PublishError as err:
            _log.warning("receipt.publish_failed", message_id=str(original.id), error=str(err))
            if recorded is not None:
                await asyncio.shield(recorded)
            # Accepted messages are already stored: requeue so the receipt is sent again.
            return REQUEUE if refusal is None else dead_letter(refusal[0])
        # Queued after the message's own entries (if any), so written after them.
        sent = self._audit.enqueue(
            EntryFields.build(
                AuditEvent.RECEIPT_SENT,
                message_id=original.id,
                case=original.case,
                digest=digest,
                code=None if refusal is None else refusal[0],
                envelope=envelope,
                detail={"to": original.sender, "receipt_id": str(header.id)},
            )
        )
        sent.add_done_callback(_retrieve)
        if recorded is not None:
            # Shielded: a handler cancelled here (its channel closed) must not give up the
            # record, or a redelivery would find nothing in progress and write it again.
            await asyncio.shield(recorded)
        await sent
        self._metrics.receipt("sent", "accepted" if refusal is None else "rejected")
        return ACK

    async def _audit_incoming(
        self,
        event: AuditEvent,
        verified: VerifiedEnvelope,
        *,
        envelope: bool = False,
        code: str | None = None,
    ) -> int:
        return await self._enqueue_incoming(event, verified, envelope=envelope, code=code)

    def _enqueue_incoming(
        self,
        event: AuditEvent,
        verified: VerifiedEnvelope,
        *,
        envelope: bool = False,
        code: str | None = None,
    ) -> asyncio.Future[int]:
        header = verified.envelope.header
        return self._audit.enqueue(
            EntryFields.build(
                event,
                message_id=header.id,
                case=header.case,
                digest=verified.digest,
                code=code,
                envelope=verified.raw if envelope else None,
                detail={"from": header.sender, "type": header.type.value},
            )
        )


class _ReplyTo:
    """The little a negative receipt needs to know about a message it refuses."""

    def __init__(
        self,
        *,
        id: UUID,
        sender: str,
        case: str,
        priority: str,
        handling: Handling | None,
    ) -> None:
        self.id = id
        self.sender = sender
        self.case = case
        self.priority = priority
        self.handling = handling


_RECEIPT_CODES = frozenset(
    code
    for code in (
        "envelope.malformed",
        "envelope.too_large",
        "cert.untrusted",
        "cert.unknown",
        "cert.expired",
        "cert.revoked",
        "sender.mismatch",
        "signature.invalid",
        "message.expired",
        "clock.skew",
        "message.replayed",
        "recipient.mismatch",
        "schema.invalid",
        "schema.unknown",
        "network.forbidden",
    )
)


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a background step's failure as seen (its awaiting caller reports it)."""
    if not task.cancelled():
        task.exception()


def _uuid_or_none(value: Any) -> UUID | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return UUID(value)
    except ValueError:
        return None


def _canonicalizable(doc: Any) -> bool:
    try:
        canonicalize(doc)
    except Exception:  # floats, huge integers, lone surrogates, deep nesting ...
        return False
    return True


def _loose_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _loose_header(raw: Any) -> dict[str, Any]:
    """The header of an envelope that failed verification, as far as it can be read."""
    if isinstance(raw, dict) and isinstance(raw.get("header"), dict):
        return dict(raw["header"])
    return {}


def _deadline_hints(payload: Any) -> dict[str, Any]:
    """Extra inputs of the deadline table that a payload may carry."""
    value = getattr(payload, "directly_accessible", None)
    return {"directly_accessible": bool(value)} if value is not None else {}
