"""The case-update step of the inbound pipeline, for a node's queue `<p>.sub.<node>`.

Each delivery is verified with the node's one policy (signature, certificate chain,
revocation, sender, expiry, clock skew, the same `max_age` for updates that waited in the
queue), then its payload, its routing key, and membership: the sender and this node must
both be members of the update's network, and it must be addressed to members only (else
`network.forbidden`); an update labelled TLP:RED or TLP:AMBER+STRICT is refused
(`handling.restricted`): it would reach subscribers and webhooks. An accepted update is
stored once by id with its `verified` and `stored` entries in one transaction, then acked;
a refused one is audited with its code and dead-lettered. Case updates get no receipts:
they fan out to a whole network, and the broker's confirm is the publisher's proof of
sending.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from exchange.audit.entries import AuditEvent, EntryFields
from exchange.audit.log import AuditLog
from exchange.config import NetworkConfig, NodeConfig
from exchange.crypto.verify import VerifiedEnvelope
from exchange.directory.view import NetworkView
from exchange.errors import ExchangeError, MisroutedError, VerificationError
from exchange.log import get_logger
from exchange.model.case_update import CaseUpdate
from exchange.model.common import MessageType
from exchange.relay.inbound import StepResult
from exchange.schemas import validate_payload
from exchange.storage.case_events import insert_event
from exchange.storage.case_records import CaseEventRecord, NewCaseEvent
from exchange.transport.bus import ACK, Delivery
from exchange.transport.topology import Topology, exchange_of

_log = get_logger(__name__)


def forbidden(detail: str) -> ExchangeError:
    return ExchangeError(detail, code="network.forbidden")


def check_membership(
    view: NetworkView, update: CaseUpdate, sender: str, recipients: list[str]
) -> NetworkConfig:
    """The update's network, if this node and the sender are members (in the directory in
    use) and only members are addressed; else `network.forbidden`."""
    network = view.network(update.network)
    if network is None or view.node_id not in network.members:
        raise forbidden(f"{view.node_id} is not a member of network {update.network}")
    if sender not in network.members:
        raise forbidden(f"the sender {sender} is not a member of network {update.network}")
    strangers = [r for r in recipients if r not in network.members]
    if strangers:
        raise forbidden(
            f"the update is addressed to {', '.join(strangers)}, not members of {update.network}"
        )
    return network


@dataclass(frozen=True, slots=True)
class UpdateArrival:
    verified: VerifiedEnvelope
    update: CaseUpdate
    event: NewCaseEvent
    followed: bool


class UpdateStep:
    """`InboundStep` for the case-update queue; `stored` is called once one is committed."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        view: NetworkView,
        topology: Topology,
        audit: AuditLog,
        webhooks: Callable[[str, str], list[str]],
        stored: Callable[[CaseEventRecord], None],
    ) -> None:
        self.config = config
        self.view = view
        self.node_id = config.node_id
        self._topology = topology
        self._audit = audit
        self._webhooks = webhooks
        self._stored = stored

    def prepare(
        self, delivery: Delivery, verified: VerifiedEnvelope, received_at: datetime
    ) -> UpdateArrival:
        update, network = self._check(delivery, verified)
        header = verified.envelope.header
        event = NewCaseEvent(
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
        )
        # bound before the subscription narrowed: not followed here any more
        followed = network.cases is None or update.case in network.cases
        return UpdateArrival(verified, update, event, followed)

    def store(self, conn: sqlite3.Connection, arrival: UpdateArrival) -> StepResult:
        header = arrival.verified.envelope.header
        if not arrival.followed:
            return StepResult(
                ACK,
                after=lambda: _log.info(
                    "case_update.not_followed", message_id=str(header.id), case=arrival.update.case
                ),
            )
        event = arrival.event
        stored = insert_event(conn, event, self._webhooks(event.network, event.case))
        if stored.digest != arrival.verified.digest:
            return StepResult(
                ACK,
                refusal=VerificationError(
                    f"update {header.id} was already received with different content",
                    code="message.replayed",
                ),
            )
        if not stored.new:
            return StepResult(ACK)  # a redelivery, or our own update coming back: held once
        detail = {**_detail(header.sender, arrival.update), "cursor": stored.cursor}
        for audit_event, keep in ((AuditEvent.VERIFIED, True), (AuditEvent.STORED, False)):
            self._audit.write(
                conn,
                EntryFields.build(
                    audit_event,
                    message_id=header.id,
                    case=event.case,
                    digest=event.digest,
                    envelope=arrival.verified.raw if keep else None,
                    detail=detail,
                ),
            )
        record = event.stored_as(stored.cursor)
        return StepResult(ACK, after=lambda: self._announce(record))

    def _announce(self, record: CaseEventRecord) -> None:
        self._stored(record)
        _log.info(
            "case_update.stored",
            message_id=str(record.id),
            case=record.case,
            node=self.node_id,
            sender=record.sender,
            network=record.network,
            cursor=record.cursor,
        )

    def _check(
        self, delivery: Delivery, verified: VerifiedEnvelope
    ) -> tuple[CaseUpdate, NetworkConfig]:
        header = verified.envelope.header
        home = exchange_of(header.type)
        if home != "cases":
            raise MisroutedError(
                f"a {header.type.value} travels on the {home} exchange, not on the cases "
                "exchange: only case updates travel there",
                code="exchange.mismatch",
            )
        payload = validate_payload(header.type.value, header.schema_, verified.raw["payload"])
        assert isinstance(payload, CaseUpdate)
        if payload.case != header.case:
            raise ExchangeError(
                f"the update names case {payload.case}, its header {header.case}",
                code="envelope.malformed",
            )
        network = check_membership(self.view, payload, header.sender, list(header.recipients))
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
        if header.handling.named_recipients_only:
            # It would reach this node's subscribers and webhooks: beyond its named recipients.
            raise ExchangeError(
                f"a TLP:{header.handling.tlp.value} case update: such information never goes "
                "to subscribers or webhooks",
                code="handling.restricted",
            )
        return payload, network


def _detail(sender: str, update: CaseUpdate) -> dict[str, Any]:
    """The audit detail of a received update (its `cursor` is added once it is stored)."""
    return {
        "from": sender,
        "type": MessageType.CASE_UPDATE.value,
        "network": update.network,
        "event": update.event.value,
    }
