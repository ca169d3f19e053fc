"""The verifying consumer of a node's case-update queue `<p>.sub.<node>`.

Each delivery is verified with the relay's policy (signature, certificate chain,
revocation, sender, expiry, clock skew, the same `max_age` for updates that waited in the
queue), then its payload, its routing key, and membership: the sender and this node must
both be members of the update's network, and it must be addressed to members only (else
`network.forbidden`). Accepted updates are stored once by id, audited and acked; refused
ones are audited with their code and dead-lettered. Case updates get no receipts: they fan
out to a whole network, and the broker's confirm is the publisher's proof of sending.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

import orjson

from exchange.audit.entries import AuditEvent
from exchange.config import NetworkConfig, NodeConfig
from exchange.crypto.canonical import sha256_hex
from exchange.crypto.verify import VerificationPolicy, VerifiedEnvelope, verify_envelope
from exchange.errors import ExchangeError, VerificationError
from exchange.gateway.peers import PeerCheckpoints
from exchange.gateway.relay import MAX_QUEUED_AGE
from exchange.log import get_logger
from exchange.model.case_update import CaseUpdate
from exchange.model.common import MessageType, utc_now
from exchange.schemas import validate_payload
from exchange.subscriptions.records import AuditIntent, NewCaseEvent, Stored
from exchange.transport.bus import ACK, Delivery, Verdict, dead_letter
from exchange.transport.topology import Topology

if TYPE_CHECKING:
    from exchange.audit.log import AuditLog
    from exchange.crypto.verify import TrustStore

_log = get_logger(__name__)


class StoreUpdate(Protocol):
    """`CaseUpdates.store_update`: store once, then write the audit entries it owes."""

    def __call__(
        self,
        event: NewCaseEvent,
        *,
        audit: Sequence[AuditIntent] = ...,
        envelope: Mapping[str, Any] | None = ...,
    ) -> Awaitable[Stored]: ...


def update_policy(config: NodeConfig, trust: TrustStore) -> VerificationPolicy:
    """The relay's verification policy, for case updates."""
    return VerificationPolicy(
        trust=trust,
        max_skew=timedelta(seconds=config.limits.max_skew_seconds),
        max_bytes=config.limits.max_body_bytes + 65_536,
        max_age=max(MAX_QUEUED_AGE, timedelta(seconds=config.limits.max_skew_seconds)),
    )


def forbidden(detail: str) -> ExchangeError:
    return ExchangeError(detail, code="network.forbidden")


def check_membership(
    config: NodeConfig, update: CaseUpdate, sender: str, recipients: list[str]
) -> NetworkConfig:
    """The update's network, if this node and the sender are members and only members are
    addressed; else `network.forbidden`."""
    network = next((n for n in config.networks if n.name == update.network), None)
    if network is None or config.node_id not in network.members:
        raise forbidden(f"{config.node_id} is not a member of network {update.network}")
    if sender not in network.members:
        raise forbidden(f"the sender {sender} is not a member of network {update.network}")
    strangers = [r for r in recipients if r not in network.members]
    if strangers:
        raise forbidden(
            f"the update is addressed to {', '.join(strangers)}, not members of {update.network}"
        )
    return network


class UpdateConsumer:
    """Handles deliveries from `<p>.sub.<node>`; `handle_delivery` is the bus handler."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        trust: TrustStore,
        topology: Topology,
        audit: AuditLog,
        store_update: StoreUpdate,
        peers: PeerCheckpoints | None = None,
    ) -> None:
        self._peers = peers
        self.config = config
        self.node_id = config.node_id
        self._policy = update_policy(config, trust)
        self._topology = topology
        self._audit = audit
        self._store_update = store_update

    async def handle_delivery(self, delivery: Delivery) -> Verdict:
        received_at = utc_now()
        verified = None
        try:
            verified = verify_envelope(delivery.body, self._policy, now=received_at)
            update, network = self._check(delivery, verified)
        except ExchangeError as err:
            if verified is not None:  # refused after the signature checked out
                err.extra.setdefault("digest", verified.digest)
            return await self._refuse(delivery, err)
        header = verified.envelope.header
        if network.cases is not None and update.case not in network.cases:
            # bound before the subscription narrowed: not followed here any more
            _log.info("case_update.not_followed", message_id=str(header.id), case=update.case)
            return ACK
        # A redelivery whose first arrival was cut short before its audit entries were
        # durable completes them here; a fresh one writes them before it is acked.
        detail = _detail(header.sender, update)
        stored = await self._store_update(
            NewCaseEvent(
                id=header.id,
                network=update.network,
                case=update.case,
                event=update.event.value,
                sender=header.sender,
                direction="out" if header.sender == self.node_id else "in",
                digest=verified.digest,
                created_at=header.created_at,
                received_at=received_at,
                envelope=delivery.body,
            ),
            audit=[
                AuditIntent(AuditEvent.VERIFIED.value, envelope=True, detail=detail),
                AuditIntent(AuditEvent.STORED.value, detail=detail),
            ],
            envelope=verified.raw,
        )
        if stored.digest != verified.digest:
            replayed = VerificationError(
                f"update {header.id} was already received with different content",
                code="message.replayed",
            )
            return await self._refuse(delivery, replayed)
        if self._peers is not None and header.sender != self.node_id:
            await self._peers.observe_headers(delivery.headers, header.sender)
        if not stored.new:
            return ACK  # a redelivery, or our own update coming back: held once already
        _log.info(
            "case_update.stored",
            message_id=str(header.id),
            case=update.case,
            node=self.node_id,
            sender=header.sender,
            network=update.network,
            cursor=stored.cursor,
        )
        return ACK

    def _check(
        self, delivery: Delivery, verified: VerifiedEnvelope
    ) -> tuple[CaseUpdate, NetworkConfig]:
        header = verified.envelope.header
        if header.type is not MessageType.CASE_UPDATE:
            raise ExchangeError(
                f"a {header.type.value} on the cases exchange: only case updates travel there",
                code="envelope.malformed",
            )
        payload = validate_payload(header.type.value, header.schema_, verified.raw["payload"])
        assert isinstance(payload, CaseUpdate)
        if payload.case != header.case:
            raise ExchangeError(
                f"the update names case {payload.case}, its header {header.case}",
                code="envelope.malformed",
            )
        network = check_membership(self.config, payload, header.sender, list(header.recipients))
        expected = self._topology.case_routing_key(
            payload.network, payload.case, payload.event.value
        )
        if delivery.routing_key != expected:
            # The broker authorised the routing key's network for the publisher, not the payload's.
            raise forbidden(
                f"routing key {delivery.routing_key!r} does not match the signed update "
                f"(expected {expected!r})"
            )
        if header.sender != self.node_id and self.node_id not in header.recipients:
            raise VerificationError(
                f"the update is addressed to {', '.join(header.recipients)}, not {self.node_id}",
                code="recipient.mismatch",
            )
        return payload, network

    async def _refuse(self, delivery: Delivery, err: ExchangeError) -> Verdict:
        raw = _loose_json(delivery.body)
        header = raw.get("header") if isinstance(raw, dict) else None
        header = header if isinstance(header, dict) else {}
        await self._audit.append(
            AuditEvent.REJECTED,
            message_id=_uuid_or_none(header.get("id")),
            case=header.get("case") if isinstance(header.get("case"), str) else None,
            # the canonical signed bytes' digest when verification got that far
            digest=err.extra.get("digest") or sha256_hex(delivery.body),
            code=err.code,
            envelope=raw if isinstance(raw, dict) else None,
            detail={
                "exchange": "cases",
                "routing_key": delivery.routing_key,
                "reason": err.detail[:500],
            },
        )
        _log.warning(
            "case_update.refused",
            code=err.code,
            message_id=str(header.get("id")),
            node=self.node_id,
            routing_key=delivery.routing_key,
        )
        return dead_letter(err.code)


def _detail(sender: str, update: CaseUpdate) -> dict[str, Any]:
    """The audit detail of a received update (its `cursor` is added once it is stored)."""
    return {
        "from": sender,
        "type": MessageType.CASE_UPDATE.value,
        "network": update.network,
        "event": update.event.value,
    }


def _loose_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _uuid_or_none(value: Any) -> UUID | None:
    try:
        return UUID(str(value)) if isinstance(value, str) else None
    except ValueError:
        return None
