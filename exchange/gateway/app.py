"""The gateway's aiohttp application: one node's HTTP API wired to its database and relay.

`create_app(config)` registers the route table behind bearer-token authentication and the
problem-details middleware. Its cleanup contexts open, in order, the node's identity (key,
certificate, the network CA), its database (messages, case updates, peers and the audit log
in one file), the audit log, the summaries of the refusals it counts instead of writing each
(`refusals`), the signed network directory (members, their certificates, roles, networks,
the CRL; followed on the broker), the watch on the CRL, the bus, the case updates
(`exchange.subscriptions`) and the relay, and close each one only if it was opened.
"""

from __future__ import annotations

import asyncio
import sqlite3
import ssl
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from aiormq.exceptions import ProbableAuthenticationError

from exchange.audit.checkpoints import Checkpoint, CheckpointPolicy
from exchange.audit.log import AuditLog
from exchange.audit.peers import PeerCheckpoints
from exchange.audit.peers import setup_schema as setup_peers_schema
from exchange.audit.store import setup_schema as setup_audit_schema
from exchange.backoff import retry_delay
from exchange.config import EARLIER_FILES, NodeConfig
from exchange.crypto.pki import load_certificate
from exchange.crypto.revocation import CrlFile
from exchange.crypto.signing import NodeSigner
from exchange.crypto.verify import TrustStore
from exchange.directory.document import VerifiedDirectory
from exchange.directory.follow import DirectoryFollower, DirectoryKeeper
from exchange.directory.view import NetworkView
from exchange.errors import ConfigError
from exchange.gateway import keys
from exchange.gateway.auth import Authenticator
from exchange.gateway.keys import CASE_UPDATES
from exchange.gateway.problems import problem_middleware
from exchange.gateway.refusals import RefusalAudit
from exchange.gateway.revocation import Revocation
from exchange.gateway.route_spec import Route, RouteHandler
from exchange.gateway.routes import ROUTES
from exchange.log import get_logger
from exchange.metrics import Metrics
from exchange.relay.relay import Relay
from exchange.storage.messages import MessageStore
from exchange.storage.schema import setup_schema as setup_node_schema
from exchange.storage.sqlite_thread import SqliteThread
from exchange.subscriptions.service import CaseUpdates
from exchange.tasks import cancel_and_wait
from exchange.transport.amqp import AmqpBus
from exchange.transport.bus import Bus
from exchange.transport.memory import MemoryBus
from exchange.transport.tls import broker_client_context, external_login_url, is_tls_url
from exchange.transport.topology import Topology

_log = get_logger(__name__)


def _guarded(route: Route, authenticator: Authenticator) -> RouteHandler:
    """The route's handler behind authentication (401) and its permission check (403)."""
    permission = route.permission
    if permission is None:
        return route.handler
    handler = route.handler

    async def guarded(request: web.Request) -> web.StreamResponse:
        principal = authenticator.authenticate(request.headers.get("Authorization"))
        request[keys.PRINCIPAL] = principal  # known to the audit even when refused below
        authenticator.authorize(principal, permission)
        return await handler(request)

    return guarded


def load_identity(config: NodeConfig) -> tuple[NodeSigner, TrustStore]:
    """The node's signer (its key file, or its key in a PKCS#11 token, which must be the
    certificate's) and the network's trust store (the CA, and the CRL file if one is
    configured); the members' certificates come from the network directory."""
    signer = _load_signer(config)
    try:
        if signer.node_id != config.node_id:
            raise ConfigError(
                f"the certificate at {config.cert_path} names {signer.node_id}, "
                f"not this node {config.node_id}"
            )
        crl = CrlFile(config.crl_path).read() if config.crl_path is not None else None
        trust = TrustStore(load_certificate(config.ca_path), crl)
    except BaseException:
        signer.close()  # a token key is let go of
        raise
    return signer, trust


def _load_signer(config: NodeConfig) -> NodeSigner:
    if config.key_uri is not None:
        assert config.pkcs11_module is not None and config.pkcs11_pin_path is not None
        return NodeSigner.from_token(
            config.pkcs11_module, config.key_uri, config.pkcs11_pin_path, config.cert_path
        )
    assert config.key_path is not None  # NodeConfig sets exactly one of the two
    return NodeSigner.from_files(config.key_path, config.cert_path)


def build_bus(config: NodeConfig) -> Bus:
    """The bus the configuration names: RabbitMQ, or a private in-memory broker.

    For `amqps://` the node logs in with its own certificate (x509, user = its node id),
    verifying the broker against `broker_ca_path` (default: the network CA). Reads files:
    call it off the event loop.
    """
    topology = Topology(prefix=config.topology_prefix)
    if config.bus == "memory":
        return MemoryBus(topology, node_id=config.node_id)
    ssl_context = None
    if is_tls_url(config.amqp_url):
        assert config.key_path is not None  # NodeConfig refuses amqps:// with a token key
        ssl_context = broker_client_context(
            config.broker_ca_path or config.ca_path, config.cert_path, config.key_path
        )
    return AmqpBus(
        external_login_url(config.amqp_url),
        topology,
        node_id=config.node_id,
        provisioned=config.amqp_provisioned,
        ssl_context=ssl_context,
        failover_urls=[external_login_url(url) for url in config.amqp_failover_urls],
    )


async def _identity_ctx(app: web.Application) -> AsyncIterator[None]:
    signer, trust = await asyncio.to_thread(load_identity, app[keys.CONFIG])
    app[keys.SIGNER], app[keys.TRUST] = signer, trust
    try:
        yield
    finally:
        signer.close()


def _setup_database(conn: sqlite3.Connection) -> None:
    setup_audit_schema(conn)
    setup_node_schema(conn)
    setup_peers_schema(conn)


def open_database(config: NodeConfig) -> SqliteThread:
    """The node's one database (not started). Refuses a data directory of the earlier
    layout (four files), whose history a new database would silently leave behind."""
    earlier = [name for name in EARLIER_FILES if (config.data_dir / name).exists()]
    if earlier and not config.database_path.exists():
        raise ConfigError(
            f"{config.data_dir} holds {', '.join(earlier)}: the layout before the node's "
            f"database became one file ({config.database_path.name}); verify and archive "
            "their audit log, then start with an empty data directory"
        )
    return SqliteThread(config.database_path, _setup_database)


async def _database_ctx(app: web.Application) -> AsyncIterator[None]:
    db = open_database(app[keys.CONFIG])
    await db.start()
    app[keys.DATABASE] = db
    app[keys.STORE] = MessageStore(db)
    yield
    await db.close()


async def _audit_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[keys.CONFIG]

    async def publish_checkpoint(checkpoint: Checkpoint) -> None:
        # Published to the network's audit stream once the relay runs; before that (and if
        # the broker does not confirm) the checkpoint is kept locally and the next covers it.
        relay = app.get(keys.RELAY)
        if relay is not None:
            await relay.publish_checkpoint(checkpoint)

    audit = await AuditLog.attach(
        app[keys.DATABASE],
        app[keys.SIGNER],
        checkpoints=CheckpointPolicy(
            every_entries=config.checkpoint.every_entries,
            every_seconds=config.checkpoint.every_seconds,
        ),
        on_checkpoint=publish_checkpoint,
    )
    app[keys.AUDIT] = audit
    try:
        yield
    finally:
        await audit.close()


async def _refusals_ctx(app: web.Application) -> AsyncIterator[None]:
    """Summaries of the counted refusals: at the end of each interval, and a last one
    before the audit log closes."""
    refusals, audit = app[keys.REFUSALS], app[keys.AUDIT]
    timer = asyncio.create_task(refusals.run(audit), name="refusal-summaries")
    try:
        yield
    finally:
        await cancel_and_wait(timer)
        await refusals.flush(audit)


async def _directory_ctx(app: web.Application) -> AsyncIterator[None]:
    """The network directory to start from, then the broker's directory stream followed
    (see `exchange.directory.follow`)."""
    config, trust = app[keys.CONFIG], app[keys.TRUST]

    async def taken(directory: VerifiedDirectory) -> None:
        revocation = app.get(keys.REVOCATION)
        held = trust.crl_number
        if revocation is not None and (held is None or trust.crl_number_of(directory.crl) > held):
            await revocation.offer(directory.crl)
        bus, updates = app.get(keys.BUS), app.get(CASE_UPDATES)
        if bus is not None and bus.connected and updates is not None:
            await updates.follow_networks(bus)

    keeper = DirectoryKeeper(
        ca=trust.ca,
        db=app[keys.DATABASE],
        audit=app[keys.AUDIT],
        node_id=config.node_id,
        on_taken=taken,
    )
    directory = await keeper.settle(config.directory_path)
    keeper.view = app[keys.DIRECTORY] = NetworkView(config, trust, directory)
    if config.revocation == "on":
        held = trust.crl_number
        if held is None or trust.crl_number_of(directory.crl) > held:
            trust.set_crl(directory.crl)
    follower = DirectoryFollower(keeper, lambda: app.get(keys.BUS), config.directory_poll_seconds)
    follower.start()
    try:
        yield
    finally:
        await follower.stop()


async def _revocation_ctx(app: web.Application) -> AsyncIterator[None]:
    """Keep the CRL current and never older (see `gateway.revocation`), or say loudly that
    revocation is off."""
    config = app[keys.CONFIG]
    if config.revocation == "off":
        _log.warning(
            "revocation.off",
            node=config.node_id,
            detail="no CRL: certificates the network revoked are still accepted",
        )
        app[keys.REVOCATION] = None
        yield
        return
    revocation = Revocation(
        trust=app[keys.TRUST],
        crl_file=CrlFile(config.crl_path) if config.crl_path is not None else None,
        db=app[keys.DATABASE],
        audit=app[keys.AUDIT],
        node_id=config.node_id,
    )
    await revocation.start()
    app[keys.REVOCATION] = revocation
    try:
        yield
    finally:
        await revocation.stop()


async def _peers_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[keys.CONFIG]
    app[keys.PEERS] = PeerCheckpoints(
        app[keys.DATABASE], app[keys.AUDIT], app[keys.TRUST], config.node_id
    )
    yield


def _bus_ctx(
    given: Bus | None, start_relay: bool
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if given is not None or not start_relay:
            # A bus handed in belongs to the caller, who starts and closes it.
            app[keys.BUS] = given
            yield
            return
        bus = await asyncio.to_thread(build_bus, app[keys.CONFIG])
        app[keys.BUS] = bus
        app[_OWN_BUS] = True
        try:
            yield
        finally:
            await bus.close()

    return ctx


async def _case_updates_ctx(app: web.Application) -> AsyncIterator[None]:
    config, bus = app[keys.CONFIG], app[keys.BUS]
    service = await CaseUpdates.open(
        config,
        view=app[keys.DIRECTORY],
        db=app[keys.DATABASE],
        signer=app[keys.SIGNER],
        trust=app[keys.TRUST],
        audit=app[keys.AUDIT],
        metrics=app[keys.METRICS],
        topology=bus.topology if bus is not None else None,
        peers=app[keys.PEERS],
    )
    app[CASE_UPDATES] = service
    try:
        if bus is None:
            await service.start(None)  # webhooks only; started with the bus otherwise
        yield
    finally:
        await service.close()


async def _end_streams(app: web.Application) -> None:
    """Shutdown: end the SSE streams, so the server need not wait out its timeout for them."""
    service = app.get(CASE_UPDATES)
    if service is not None:
        service.feed.close()


def _relay_ctx(start_relay: bool) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        bus = app[keys.BUS]
        if not start_relay or bus is None:
            app[keys.RELAY] = None
            yield
            return
        service = app[CASE_UPDATES]
        relay = Relay(
            config=app[keys.CONFIG],
            view=app[keys.DIRECTORY],
            db=app[keys.DATABASE],
            signer=app[keys.SIGNER],
            trust=app[keys.TRUST],
            bus=bus,
            audit=app[keys.AUDIT],
            metrics=app[keys.METRICS],
            peers=app[keys.PEERS],
            updates=service,
        )
        service.wake = relay.wake
        app[keys.RELAY] = relay
        starter: asyncio.Task[None] | None = None
        try:
            if not await _connect_and_start(app, bus, relay, first=True):
                # The broker is unreachable: serve HTTP now (the outbox accepts, /readyz
                # says 503) and connect in the background; the outbox drains once it is up.
                starter = asyncio.create_task(_keep_connecting(app, bus, relay), name="connect")
            yield
        finally:
            await cancel_and_wait(starter)
            await relay.stop()

    return ctx


_OWN_BUS = web.AppKey("own_bus", bool)
FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 5.0


async def _connect_and_start(app: web.Application, bus: Bus, relay: Relay, *, first: bool) -> bool:
    """Connect the bus (when the app owns it), then start the case updates and the relay.
    True once running; False when the broker cannot be reached (try again later). The first
    attempt raises what a retry cannot fix: refused credentials or certificates."""
    node = app[keys.CONFIG].node_id
    service = app[CASE_UPDATES]
    try:
        if app.get(_OWN_BUS, False) and not bus.connected:
            await bus.start()
        await service.start(bus)
        await relay.start()
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if first and isinstance(exc, (ssl.SSLError, ProbableAuthenticationError)):
            raise
        _log.warning("node.broker_unavailable", node=node, error=f"{type(exc).__name__}: {exc}")
        await service.halt()
        await relay.stop()
        return False
    _log.info("node.started", node=node)
    return True


async def _keep_connecting(app: web.Application, bus: Bus, relay: Relay) -> None:
    attempts = 0
    while True:
        await asyncio.sleep(retry_delay(attempts, FIRST_RETRY_SECONDS, MAX_RETRY_SECONDS))
        if await _connect_and_start(app, bus, relay, first=False):
            return
        attempts += 1


def create_app(
    config: NodeConfig, *, bus: Bus | None = None, start_relay: bool = True
) -> web.Application:
    """The node's web application; its resources open when the app starts.

    `bus`: use this bus instead of building one from the configuration (the caller owns
    it: starts and closes it). `start_relay=False`: no bus, no relay (HTTP-only tests);
    `/readyz` then reports the broker as not ready.
    """
    app = web.Application(
        middlewares=[problem_middleware],
        client_max_size=config.limits.max_body_bytes,
        # Bodies are taken identity-encoded only (see read_json_object): decompressing
        # in the parser would answer bad encodings outside our problem documents.
        handler_args={"auto_decompress": False},
    )
    authenticator = Authenticator.from_config(config)
    app[keys.CONFIG] = config
    app[keys.METRICS] = Metrics()
    app[keys.AUTHENTICATOR] = authenticator
    app[keys.REFUSALS] = RefusalAudit()
    for route in ROUTES:
        app.router.add_route(route.method, route.path, _guarded(route, authenticator))
    from exchange.console.app import setup_console  # imports this module's helpers

    setup_console(app)
    app.cleanup_ctx.extend(
        [
            _identity_ctx,
            _database_ctx,
            _audit_ctx,
            _refusals_ctx,
            _directory_ctx,
            _revocation_ctx,
            _peers_ctx,
            _bus_ctx(bus, start_relay),
            _case_updates_ctx,
            _relay_ctx(start_relay),
        ]
    )
    app.on_shutdown.append(_end_streams)
    return app
