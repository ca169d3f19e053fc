"""Typed keys of the gateway's application and request state (`web.AppKey`, `web.RequestKey`).

The application holds the node's long-lived resources, opened by `create_app`'s cleanup
contexts; a request carries the authenticated principal once `auth` let it through.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from exchange.config import NodeConfig
from exchange.gateway.auth import Authenticator, Principal
from exchange.metrics import Metrics
from exchange.storage.messages import MessageStore

if TYPE_CHECKING:
    from exchange.audit.log import AuditLog
    from exchange.audit.peers import PeerCheckpoints
    from exchange.crypto.signing import NodeSigner
    from exchange.crypto.verify import TrustStore
    from exchange.directory.view import NetworkView
    from exchange.gateway.refusals import RefusalAudit
    from exchange.gateway.revocation import Revocation
    from exchange.relay.relay import Relay
    from exchange.storage.sqlite_thread import SqliteThread
    from exchange.subscriptions.service import CaseUpdates
    from exchange.transport.bus import Bus

CONFIG = web.AppKey("config", NodeConfig)
METRICS = web.AppKey("metrics", Metrics)
AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
STORE = web.AppKey("store", MessageStore)
DATABASE: web.AppKey[SqliteThread] = web.AppKey("database")
SIGNER: web.AppKey[NodeSigner] = web.AppKey("signer")
TRUST: web.AppKey[TrustStore] = web.AppKey("trust")
AUDIT: web.AppKey[AuditLog] = web.AppKey("audit")
BUS: web.AppKey[Bus | None] = web.AppKey("bus")
RELAY: web.AppKey[Relay | None] = web.AppKey("relay")
PEERS: web.AppKey[PeerCheckpoints] = web.AppKey("peers")
CASE_UPDATES: web.AppKey[CaseUpdates] = web.AppKey("case_updates")
REFUSALS: web.AppKey[RefusalAudit] = web.AppKey("refusals")
REVOCATION: web.AppKey[Revocation | None] = web.AppKey("revocation")
DIRECTORY: web.AppKey[NetworkView] = web.AppKey("directory")
"""The signed network directory in use: members, roles, prosecutor networks."""

PRINCIPAL = web.RequestKey("principal", Principal)
