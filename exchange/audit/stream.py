"""Replay the network's audit stream: every record the broker copied into it, checked again.

Only the broker's own bindings write to the stream (no node may publish to the audit
exchange), so each record carries the exchange and routing key its publisher used, and
the broker allowed a routing key only with the publisher's own id in it. Each record is
held against that, and against the broker's clock:

- its signature: an envelope's against the network CA (as at its `created_at`), a
  checkpoint's against its node's certificate;
- its route matches what is signed: `<recipient>.<type>.<sender>` on the messages exchange
  for a recipient the header names, the signed update's `<network>.<case>.<event>` on the
  cases exchange, `checkpoint.<node>` for a node's checkpoint (`route.mismatch`); a record
  published straight into the audit exchange is `route.direct`;
- its signed time lies within the allowed skew of when the broker wrote it
  (`BrokerClock`): a backdated envelope, or one dated ahead, is `clock.skew`;
- its signer's certificate was not revoked before the broker wrote it (`cert.revoked`,
  with a CRL);
- a second copy of an envelope (same id and digest: one per recipient, or published
  again) is folded into the first; another envelope under an id already shown is
  `message.conflict`, another tree head for a size already shown `checkpoint.conflict`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from exchange.audit.broker_clock import BrokerClock, ceil_time, floor_time
from exchange.audit.checkpoints import Checkpoint, check_checkpoint
from exchange.audit.revocations import Revocations
from exchange.crypto.verify import TrustStore, VerificationPolicy, verify_envelope
from exchange.errors import ExchangeError
from exchange.model.common import MessageType, format_utc
from exchange.model.envelope import Header
from exchange.transport.amqp import AmqpBus
from exchange.transport.bus import Bus, Delivery, stream_offset
from exchange.transport.topology import InvalidName, Topology

CHECKPOINT_KIND = "checkpoint"
ENVELOPE_KIND = "envelope"
DEFAULT_MAX_SKEW = timedelta(minutes=5)
MAX_CELL = 240
"""Characters of a table cell; longer values (from envelopes that did not verify) are cut."""
CLOCK_RESOLUTION = timedelta(minutes=1)
"""Step of the times the broker's clock is asked about: a signed time is flagged when it
lies more than the skew from when the broker wrote the record, and surely so beyond the
skew plus this step. Finer costs more questions to the broker (about one per step of the
stream's history)."""


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
    route: str = ""
    """The exchange and routing key the broker recorded, e.g. `messages RS-PPO.receipt.AL-ARO`."""
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def cells(self) -> list[str]:
        """The table view's cells: what a node wrote in an envelope that did not verify is
        shown escaped and cut, never as raw terminal input."""
        status = "ok" if self.ok else f"FAILED {self.reason}"
        if self.detail:
            status += f" ({self.detail})"
        cells = [
            str(self.offset if self.offset is not None else "-"),
            self.time,
            self.type,
            f"{self.sender} -> {self.recipients}",
            self.case,
            self.id,
            status,
        ]
        return [_printable(cell) for cell in cells]


Problem = tuple[str, str]
"""Why a record that verifies does not hold up against the stream: (code, detail)."""


class StreamAuditor:
    """Checks the stream's records in order, and remembers what it showed to fold copies."""

    def __init__(
        self,
        trust: TrustStore,
        clock: BrokerClock,
        topology: Topology,
        *,
        revocations: Revocations | None = None,
        max_skew: timedelta = DEFAULT_MAX_SKEW,
        resolution: timedelta = CLOCK_RESOLUTION,
    ) -> None:
        if resolution < timedelta(seconds=1):
            raise ValueError("the broker's clock is read to the second at best")
        self._trust, self._clock, self._topology = trust, clock, topology
        self._revocations = revocations
        self._skew, self._resolution = max_skew, resolution
        self._policy = VerificationPolicy(trust=trust, max_skew=max_skew)
        self._digests: dict[str, str] = {}
        self._roots: dict[tuple[str, int], str] = {}
        self.duplicates = 0
        """Copies folded into a row shown earlier."""

    async def check(self, delivery: Delivery) -> StreamRow | None:
        """The record's row; None for a copy of an envelope or checkpoint already shown."""
        offset = stream_offset(delivery)
        route = f"{delivery.exchange} {delivery.routing_key}"
        try:
            doc = orjson.loads(delivery.body)
        except orjson.JSONDecodeError:
            return _broken(offset, route, "envelope.malformed", "not JSON")
        if not isinstance(doc, dict):
            return _broken(offset, route, "envelope.malformed", "not a JSON object")
        if "header" not in doc and "root" in doc and "size" in doc:
            return await self._checkpoint(offset, route, delivery, doc)
        return await self._envelope(offset, route, delivery, doc)

    async def _envelope(
        self, offset: int | None, route: str, delivery: Delivery, doc: dict[str, Any]
    ) -> StreamRow | None:
        raw = doc.get("header") if isinstance(doc.get("header"), dict) else {}
        assert isinstance(raw, dict)
        shown = {
            "time": str(raw.get("created_at")),
            "type": str(raw.get("type", "?")),
            "sender": str(raw.get("sender", "?")),
            "recipients": ",".join(map(str, raw.get("recipients") or [])),
            "case": str(raw.get("case", "?")),
            "id": str(raw.get("id", "?")),
            "in_reply_to": str(raw.get("in_reply_to") or ""),
        }

        def row(reason: str = "", detail: str = "") -> StreamRow:
            return _row(offset, ENVELOPE_KIND, shown, route, reason, detail)

        when = _utc(raw.get("created_at"))
        if when is None:
            return row("envelope.malformed", "no valid created_at")
        shown["time"] = format_utc(when)
        try:
            verified = verify_envelope(delivery.body, self._policy, now=when)
        except ExchangeError as err:
            return row(err.code, err.detail)
        header = verified.envelope.header
        problem = (
            self._route_problem(delivery, header, verified.payload)
            or await self._time_problem(offset, header.created_at, "created_at")
            or await self._revocation_problem(offset, verified.envelope.signature.kid)
        )
        if problem is not None:
            return row(*problem)
        earlier = self._digests.get(str(header.id))
        if earlier == verified.digest:
            self.duplicates += 1
            return None
        if earlier is not None:
            return row("message.conflict", f"another envelope with this id came first ({earlier})")
        self._digests[str(header.id)] = verified.digest
        return row()

    async def _checkpoint(
        self, offset: int | None, route: str, delivery: Delivery, doc: dict[str, Any]
    ) -> StreamRow | None:
        try:
            cp = Checkpoint.from_dict(doc)
            check_checkpoint(cp, self._trust)
        except (ExchangeError, ValueError, TypeError) as err:
            detail = err.detail if isinstance(err, ExchangeError) else str(err)
            return _broken(offset, route, "checkpoint.invalid", detail, kind=CHECKPOINT_KIND)

        shown = {
            "time": format_utc(cp.time),
            "type": CHECKPOINT_KIND,
            "sender": cp.node,
            "recipients": "-",
            "case": "-",
            "id": f"size {cp.size} root {cp.root[:16]}…",
            "in_reply_to": "",
        }

        def row(reason: str = "", detail: str = "") -> StreamRow:
            return _row(offset, CHECKPOINT_KIND, shown, route, reason, detail)

        problem = (
            self._checkpoint_route_problem(delivery, cp.node)
            or await self._time_problem(offset, cp.time, "time")
            or await self._revocation_problem(offset, cp.kid)
        )
        if problem is not None:
            return row(*problem)
        earlier = self._roots.get((cp.node, cp.size))
        if earlier == cp.root:
            self.duplicates += 1
            return None
        if earlier is not None:
            return row("checkpoint.conflict", f"another root for size {cp.size} came first")
        self._roots[cp.node, cp.size] = cp.root
        return row()

    def _route_problem(
        self, delivery: Delivery, header: Header, payload: Mapping[str, Any] | None
    ) -> Problem | None:
        """The exchange and routing key the broker recorded are those of the signed header
        (and of a case update's payload; of a sealed one, only the case can be checked)."""
        key, kind = delivery.routing_key, header.type
        if delivery.exchange == "messages":
            if kind is MessageType.CASE_UPDATE:
                return "route.mismatch", "a case update on the messages exchange"
            words = key.split(".")
            if words[0] not in header.recipients:
                return "route.mismatch", f"{key!r} names no recipient of the header"
            if words[1:] != [kind.value, header.sender]:
                return "route.mismatch", f"{key!r} is not <recipient>.{kind.value}.{header.sender}"
            return None
        if delivery.exchange == "cases":
            if kind is not MessageType.CASE_UPDATE:
                return "route.mismatch", f"a {kind.value} on the cases exchange"
            if payload is None:
                words = key.split(".")
                payload = {"network": words[0], "case": header.case, "event": words[-1]}
            parts = [str(payload.get(name)) for name in ("network", "case", "event")]
            try:
                expected = self._topology.case_routing_key(*parts)
            except InvalidName as err:
                return "route.mismatch", str(err)
            if key != expected or payload.get("case") != header.case:
                return "route.mismatch", f"{key!r} is not the signed update's {expected!r}"
            return None
        return _direct(delivery.exchange)

    def _checkpoint_route_problem(self, delivery: Delivery, node: str) -> Problem | None:
        if delivery.exchange != "messages":
            return _direct(delivery.exchange)
        try:
            expected = self._topology.checkpoint_routing_key(node)
        except InvalidName as err:
            return "route.mismatch", str(err)
        if delivery.routing_key != expected:
            return "route.mismatch", f"not {expected}, the key of {node}'s checkpoints"
        return None

    async def _time_problem(
        self, offset: int | None, signed: datetime, what: str
    ) -> Problem | None:
        """The broker wrote the record within the skew of its signed time."""
        if offset is None:
            return "clock.skew", "the record has no stream offset: when it was written is unknown"
        late = ceil_time(signed + self._skew, self._resolution)
        if not await self._clock.written_before(offset, late):
            return (
                "clock.skew",
                f"the broker wrote it after {format_utc(late)}, more than {self._skew} after "
                f"its {what} {format_utc(signed)}: backdated",
            )
        early = floor_time(signed - self._skew, self._resolution)
        if await self._clock.written_before(offset, early):
            return (
                "clock.skew",
                f"the broker wrote it before {format_utc(early)}, more than {self._skew} "
                f"before its {what} {format_utc(signed)}: dated ahead",
            )
        return None

    async def _revocation_problem(self, offset: int | None, kid: str) -> Problem | None:
        """The signer's certificate was not revoked when the broker wrote the record."""
        trusted = self._trust.get(kid)
        if self._revocations is None or trusted is None or offset is None:
            return None
        since = self._revocations.since(trusted.serial)
        if since is None:
            return None
        if await self._clock.written_before(offset, ceil_time(since, timedelta(seconds=1))):
            return None
        return (
            "cert.revoked",
            f"certificate {trusted.serial:x} of {trusted.node_id} was revoked at "
            f"{format_utc(since)}, before the broker wrote this",
        )


def _direct(exchange: str) -> Problem:
    return (
        "route.direct",
        f"published to the {exchange} exchange, not copied by the broker from messages or cases",
    )


def _printable(text: str, limit: int = MAX_CELL) -> str:
    escaped = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
    return escaped if len(escaped) <= limit else escaped[: limit - 1] + "…"


def _utc(value: object) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


_UNREADABLE = dict.fromkeys(("type", "sender", "recipients", "case", "id"), "?")


def _row(
    offset: int | None,
    kind: str,
    shown: Mapping[str, str],
    route: str,
    reason: str = "",
    detail: str = "",
) -> StreamRow:
    return StreamRow(
        offset=offset, kind=kind, ok=not reason, reason=reason, route=route, detail=detail, **shown
    )


def _broken(
    offset: int | None, route: str, reason: str, detail: str, *, kind: str = ENVELOPE_KIND
) -> StreamRow:
    shown = {"time": "-", **_UNREADABLE, "in_reply_to": ""}
    return _row(offset, kind, shown, route, reason, detail)


class StreamReplay:
    """Every record of the network's audit stream from `offset`, checked as it comes.

    Iterate it once. `duplicates` then counts the copies folded into an earlier row.
    `bus` reads from an open bus instead of connecting to `url`.
    """

    def __init__(
        self,
        url: str,
        trust: TrustStore,
        *,
        prefix: str = "xb",
        offset: str | int = "first",
        idle_timeout: float = 2.0,
        bus: Bus | None = None,
        revocations: Revocations | None = None,
        max_skew: timedelta = DEFAULT_MAX_SKEW,
        resolution: timedelta = CLOCK_RESOLUTION,
    ) -> None:
        self._url, self._trust, self._prefix, self._bus = url, trust, prefix, bus
        self._offset, self._idle = offset, idle_timeout
        self._revocations, self._skew, self._resolution = revocations, max_skew, resolution
        self._auditor: StreamAuditor | None = None

    @property
    def duplicates(self) -> int:
        return self._auditor.duplicates if self._auditor is not None else 0

    def __aiter__(self) -> AsyncIterator[StreamRow]:
        return self._rows()

    async def _rows(self) -> AsyncIterator[StreamRow]:
        owned = self._bus is None
        reader: Bus = self._bus or AmqpBus(self._url, Topology(self._prefix), provisioned=True)
        if owned:
            await reader.start()
        try:

            def probe(when: datetime) -> Awaitable[int | None]:
                return reader.audit_stream_offset_at(when, idle_timeout=self._idle)

            self._auditor = StreamAuditor(
                self._trust,
                BrokerClock(probe),
                reader.topology,
                revocations=self._revocations,
                max_skew=self._skew,
                resolution=self._resolution,
            )
            stream = reader.read_audit_stream(offset=self._offset, idle_timeout=self._idle)
            async for delivery in stream:
                row = await self._auditor.check(delivery)
                if row is not None:
                    yield row
        finally:
            if owned:
                await reader.close()
