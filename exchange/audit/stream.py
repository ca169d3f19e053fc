"""Replay the network's audit stream: every envelope the broker copied, verified again.

The broker copies every envelope that crosses the messages and cases exchanges, and every
checkpoint the nodes publish, into the audit stream. Replaying it rebuilds the timeline of
the whole network, independently of any node's own log: each envelope's signature is
checked against the network CA as of its creation time, each checkpoint's signature
against its node's certificate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from exchange.audit.checkpoints import Checkpoint, check_checkpoint
from exchange.crypto.verify import TrustStore, VerificationPolicy, verify_envelope
from exchange.errors import ExchangeError
from exchange.model.common import format_utc
from exchange.transport.amqp import AmqpBus
from exchange.transport.bus import Bus, Delivery, stream_offset
from exchange.transport.topology import Topology

CHECKPOINT_KIND = "checkpoint"
KIND_HEADER = "x-xb-kind"


@dataclass(frozen=True, slots=True)
class StreamRow:
    """One record of the stream, and whether it verified."""

    offset: int | None
    kind: str  # "envelope" | "checkpoint"
    time: str
    type: str
    sender: str
    recipients: str
    case: str
    id: str
    in_reply_to: str
    ok: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def cells(self) -> list[str]:
        status = "ok" if self.ok else f"FAILED {self.reason}"
        return [
            str(self.offset if self.offset is not None else "-"),
            self.time,
            self.type,
            f"{self.sender} -> {self.recipients}",
            self.case,
            self.id,
            status,
        ]


def check_delivery(delivery: Delivery, trust: TrustStore) -> StreamRow:
    """Verify one stream record, as of the time it claims to have been made."""
    offset = stream_offset(delivery)
    try:
        doc = orjson.loads(delivery.body)
    except orjson.JSONDecodeError:
        return _broken(offset, "not JSON")
    if not isinstance(doc, dict):
        return _broken(offset, "not a JSON object")
    if delivery.headers.get(KIND_HEADER) == CHECKPOINT_KIND or ("root" in doc and "size" in doc):
        return _check_checkpoint(offset, doc, trust)
    return _check_envelope(offset, delivery.body, doc, trust)


def _check_checkpoint(offset: int | None, doc: dict[str, Any], trust: TrustStore) -> StreamRow:
    try:
        checkpoint = Checkpoint.from_dict(doc)
        check_checkpoint(checkpoint, trust)
    except (ExchangeError, ValueError, TypeError) as err:
        return _broken(offset, f"checkpoint: {err}", kind=CHECKPOINT_KIND)
    return StreamRow(
        offset,
        CHECKPOINT_KIND,
        format_utc(checkpoint.time),
        CHECKPOINT_KIND,
        checkpoint.node,
        "-",
        "-",
        f"size {checkpoint.size} root {checkpoint.root[:16]}…",
        "",
        True,
        "",
    )


def _check_envelope(
    offset: int | None, body: bytes, doc: dict[str, Any], trust: TrustStore
) -> StreamRow:
    header = doc.get("header") if isinstance(doc.get("header"), dict) else {}
    assert isinstance(header, dict)
    created = header.get("created_at")
    try:
        when = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    except ValueError:
        when = None
    row = {
        "time": str(created),
        "type": str(header.get("type", "?")),
        "sender": str(header.get("sender", "?")),
        "recipients": ",".join(map(str, header.get("recipients") or [])),
        "case": str(header.get("case", "?")),
        "id": str(header.get("id", "?")),
        "in_reply_to": str(header.get("in_reply_to") or ""),
    }
    if when is None or when.tzinfo is None:
        return StreamRow(offset, "envelope", **row, ok=False, reason="no valid created_at")
    policy = VerificationPolicy(trust=trust, max_skew=timedelta(minutes=5))
    try:
        verify_envelope(body, policy, now=when)
    except ExchangeError as err:
        return StreamRow(offset, "envelope", **row, ok=False, reason=err.code)
    row["time"] = format_utc(when)
    return StreamRow(offset, "envelope", **row, ok=True, reason="")


def _broken(offset: int | None, reason: str, *, kind: str = "envelope") -> StreamRow:
    return StreamRow(offset, kind, "-", "?", "?", "?", "?", "?", "", False, reason)


async def replay_stream(
    url: str,
    trust: TrustStore,
    *,
    prefix: str = "xb",
    offset: str | int = "first",
    idle_timeout: float = 2.0,
    bus: Bus | None = None,
) -> AsyncIterator[StreamRow]:
    """Every record of the network's audit stream from `offset`, checked as it comes."""
    owned = bus is None
    reader: Bus = bus if bus is not None else AmqpBus(url, Topology(prefix), provisioned=True)
    if owned:
        await reader.start()
    try:
        async for delivery in reader.read_audit_stream(offset=offset, idle_timeout=idle_timeout):
            yield check_delivery(delivery, trust)
    finally:
        if owned:
            await reader.close()
