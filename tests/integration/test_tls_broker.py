"""A broker configured as deployed: TLS 1.3 only, client certificates, x509 login.

The test boots its own RabbitMQ node with `deploy/rabbitmq/rabbitmq.conf` (paths and port
replaced), the development PKI (`exchange pki init`, `exchange pki server`) and the
network's definitions imported as `exchange topology apply` does. A gateway connects with
its node certificate and nothing else; whoever has no valid certificate of the network is
refused at the door, and a node is held by the broker to its own identity and queues. The
gateway's own HTTPS listener, with client certificates for local users, is checked too.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aio_pika
import aiormq
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID
from http_helpers import auth_headers, submission
from private_broker import PrivateBroker, free_port

from exchange.client import GatewayClient, GatewayUnreachable, ProblemError
from exchange.config import NodeConfig
from exchange.crypto.pki import (
    create_ca,
    create_node_certificate,
    init_network,
    load_certificate,
    load_private_key,
)
from exchange.crypto.server_certs import issue_server_certificate
from exchange.crypto.verify import TrustStore
from exchange.demo.scenario import load_payload
from exchange.errors import VerificationError
from exchange.gateway.app import build_bus, create_app
from exchange.network import NetworkLayout, init_network_dir
from exchange.transport.amqp import AmqpBus
from exchange.transport.bus import ACK, ConsumeError, Delivery, Outgoing, PublishError, Verdict
from exchange.transport.tls import (
    broker_client_context,
    external_login_url,
    https_client_context,
    https_server_context,
)
from exchange.transport.topology import Topology

pytestmark = pytest.mark.slow

NETWORK = "see-arn"
NODES = ("AL-ARO", "RS-PPO", "MD-ARO")
REPO = Path(__file__).resolve().parents[2]
DEPLOY_CONF = REPO / "deploy" / "rabbitmq" / "rabbitmq.conf"
DEPLOY_PLUGINS = REPO / "deploy" / "rabbitmq" / "enabled_plugins"


def deployed_config(pki: Path, server: str) -> str:
    """deploy/rabbitmq/rabbitmq.conf with this test's certificates; the port is filled in
    by `broker_config`."""
    text = DEPLOY_CONF.read_text(encoding="utf-8")
    tls = pki / "tls"
    for deployed, here in (
        ("/etc/rabbitmq/tls/ca.pem", pki / "ca.pem"),
        ("/etc/rabbitmq/tls/server.pem", tls / f"{server}.pem"),
        ("/etc/rabbitmq/tls/server.key", tls / f"{server}.key"),
    ):
        assert deployed in text
        text = text.replace(deployed, str(here))
    assert "listeners.ssl.default = 5671" in text
    # the test runs alongside other brokers: a spare port, on the loopback interface only
    return text.replace("listeners.ssl.default = 5671", "listeners.ssl.1 = 127.0.0.1:{port}")


@dataclass
class TlsNetwork:
    layout: NetworkLayout
    broker: PrivateBroker
    topology: Topology

    @property
    def pki(self) -> Path:
        return self.layout.directory / "pki"

    @property
    def amqps_url(self) -> str:
        return f"amqps://localhost:{self.broker.port}/{NETWORK}"

    def config(self, node: str, **extra: str) -> NodeConfig:
        """The node's own TOML, pointed at this broker as an operator would (environment)."""
        environ = {
            "EXCHANGE_AMQP_URL": self.amqps_url,
            "EXCHANGE_AMQP_PROVISIONED": "true",
            **extra,
        }
        return self.layout.config(node, environ=environ)

    def context(self, node: str) -> ssl.SSLContext:
        return broker_client_context(
            self.pki / "ca.pem", self.pki / f"{node}.pem", self.pki / f"{node}.key"
        )


@pytest.fixture(scope="module")
def tls_network() -> Iterator[TlsNetwork]:
    base = Path(tempfile.mkdtemp(prefix="xbtls-"))
    layout = init_network_dir(base / "net", NODES, network=NETWORK, prefix="xb")
    pki = layout.directory / "pki"
    issue_server_certificate(pki, "localhost", alt_names=["127.0.0.1"])
    template = deployed_config(pki, "localhost")
    probe = broker_client_context(pki / "ca.pem", pki / "AL-ARO.pem", pki / "AL-ARO.key")
    broker = PrivateBroker(
        base / "broker",
        name="xbtls",
        config=lambda b: template.replace("{port}", str(b.port)),
        plugins=["rabbitmq_auth_mechanism_ssl"],
        probe_tls=probe,
    )
    try:
        seconds = broker.start()
        print(f"\nTLS broker {broker.nodename} on {broker.port}: booted in {seconds:.1f}s")
        # as an operator would, on the broker's host: `exchange topology apply`
        command = [
            str(Path(sys.executable).parent / "exchange"),
            *("topology", "apply", "--network", str(layout.network_file)),
            *("--rabbitmqctl", broker.ctl_command[0], "--node", broker.nodename),
        ]
        applied = subprocess.run(
            command,
            env=broker.ctl_env,  # HOME: the private broker's Erlang cookie
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert applied.returncode == 0, applied.stderr
        assert "applied: virtual host see-arn, 3 users" in applied.stdout
        yield TlsNetwork(layout, broker, Topology(prefix="xb"))
    finally:
        broker.close()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
async def bus_al(tls_network: TlsNetwork) -> AsyncIterator[AmqpBus]:
    bus = await asyncio.to_thread(build_bus, tls_network.config("AL-ARO"))
    assert isinstance(bus, AmqpBus)
    await bus.start()
    await bus.declare_node("AL-ARO")  # passive: the definitions made everything
    yield bus
    await bus.close()


def inquiry(topology: Topology, recipient: str, sender: str) -> Outgoing:
    key = topology.routing_key(recipient, "asset-inquiry", sender)
    return Outgoing("messages", key, b"{}", str(uuid.uuid4()))


async def test_the_deployed_configuration_demands_tls_13_client_certificates() -> None:
    conf = DEPLOY_CONF.read_text(encoding="utf-8")
    for line in (
        "listeners.tcp = none",
        "ssl_options.verify = verify_peer",
        "ssl_options.fail_if_no_peer_cert = true",
        "ssl_options.versions.1 = tlsv1.3",
        "auth_mechanisms.1 = EXTERNAL",
        "ssl_cert_login_from = common_name",
    ):
        assert re.search(rf"^{re.escape(line)}$", conf, re.MULTILINE), line
    assert "rabbitmq_auth_mechanism_ssl" in DEPLOY_PLUGINS.read_text(encoding="utf-8")


async def test_a_gateway_connects_over_tls_with_its_node_certificate(
    tls_network: TlsNetwork, bus_al: AmqpBus
) -> None:
    sent = inquiry(tls_network.topology, "RS-PPO", "AL-ARO")
    await bus_al.publish(sent)
    bus_rs = await asyncio.to_thread(build_bus, tls_network.config("RS-PPO"))
    await bus_rs.start()
    try:
        got: list[Delivery] = []

        async def handler(delivery: Delivery) -> Verdict:
            got.append(delivery)
            return ACK

        await bus_rs.consume(tls_network.topology.inbox_queue("RS-PPO"), handler)
        for _ in range(250):
            if any(d.message_id == sent.message_id for d in got):
                break
            await asyncio.sleep(0.02)
        assert [d.message_id for d in got] == [sent.message_id]
    finally:
        await bus_rs.close()
    # the broker saw both nodes log in by certificate, over TLS 1.3, as their node ids
    listing = await asyncio.to_thread(
        tls_network.broker.ctl,
        "list_connections",
        "user",
        "auth_mechanism",
        "ssl",
        "ssl_protocol",
        "peer_cert_subject",
    )
    rows = [line.split("\t") for line in listing.splitlines()]
    mine = [row for row in rows if row[0] == "AL-ARO"]
    assert mine, listing
    _, mechanism, tls, protocol, subject = mine[0]
    assert (mechanism, tls, protocol) == ("EXTERNAL", "true", "tlsv1.3")
    assert "CN=AL-ARO" in subject


REFUSED = (ConnectionError, ssl.SSLError, aiormq.exceptions.AMQPError, OSError)
"""What a refused connection raises: a failed handshake, a closed socket, or a refusal."""


async def _connect(url: str, context: ssl.SSLContext | None) -> None:
    async with asyncio.timeout(20):
        connection = await aio_pika.connect(url, ssl_context=context, timeout=10)
        await connection.close()


def _context_with(
    ca: Path, directory: Path, name: str, key: Ed25519PrivateKey, cert: x509.Certificate
) -> ssl.SSLContext:
    """A client context presenting `cert` (written to `directory`), trusting `ca`."""
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return broker_client_context(ca, cert_path, key_path)


async def test_a_client_without_a_valid_certificate_is_refused(
    tls_network: TlsNetwork, tmp_path: Path
) -> None:
    url = f"{tls_network.amqps_url}?auth=external"
    pki = tls_network.pki
    # no client certificate at all: the TLS handshake fails
    bare = https_client_context(pki / "ca.pem")
    with pytest.raises(REFUSED):
        await _connect(url, bare)
    # plain AMQP to the TLS port: nothing answers as AMQP
    with pytest.raises((ConnectionError, aiormq.exceptions.AMQPError, OSError)):
        await _connect(f"amqp://guest:guest@localhost:{tls_network.broker.port}/", None)
    # guest with a password over TLS: PLAIN is not offered at all
    with pytest.raises(aiormq.exceptions.AMQPError):
        await _connect(
            f"amqps://guest:guest@localhost:{tls_network.broker.port}/",
            https_client_context(pki / "ca.pem", pki / "RS-PPO.pem", pki / "RS-PPO.key"),
        )
    # a certificate naming AL-ARO, from another CA
    ca = pki / "ca.pem"
    other_key, other_ca = create_ca(NETWORK)
    key, cert = create_node_certificate(other_key, other_ca, "AL-ARO")
    with pytest.raises(REFUSED):
        await _connect(url, _context_with(ca, tmp_path, "foreign-AL-ARO", key, cert))
    # the network's CA, but expired
    ca_key, ca_cert = load_private_key(pki / "ca.key"), load_certificate(ca)
    past = datetime.now(UTC) - timedelta(days=30)
    key, cert = create_node_certificate(
        ca_key, ca_cert, "AL-ARO", not_before=past, not_after=past + timedelta(days=1)
    )
    with pytest.raises(REFUSED):
        await _connect(url, _context_with(ca, tmp_path, "expired-AL-ARO", key, cert))
    # the network's CA and valid, but the broker knows no such user (a node not provisioned)
    key, cert = create_node_certificate(ca_key, ca_cert, "KZ-ARC")
    with pytest.raises(aiormq.exceptions.AMQPError):
        await _connect(url, _context_with(ca, tmp_path, "KZ-ARC", key, cert))
    # the broker's own server certificate (serverAuth only) cannot log in as a client
    tls = pki / "tls"
    server_as_client = broker_client_context(ca, tls / "localhost.pem", tls / "localhost.key")
    with pytest.raises(REFUSED):
        await _connect(url, server_as_client)
    # and the real node certificate still gets in
    await _connect(url, tls_network.context("AL-ARO"))


async def test_al_aro_publishing_as_rs_ppo_is_refused_by_the_broker(
    tls_network: TlsNetwork, bus_al: AmqpBus
) -> None:
    forged = inquiry(tls_network.topology, "MD-ARO", "RS-PPO")  # AL-ARO claims to be RS-PPO
    with pytest.raises(PublishError, match="ACCESS_REFUSED - access to topic") as refused:
        await bus_al.publish(forged)
    assert forged.routing_key in str(refused.value)
    await bus_al.publish(inquiry(tls_network.topology, "MD-ARO", "AL-ARO"))  # honest use works


async def test_a_node_cannot_read_another_nodes_inbox(
    tls_network: TlsNetwork, bus_al: AmqpBus
) -> None:
    async def never(delivery: Delivery) -> Verdict:
        raise AssertionError(f"AL-ARO must not receive {delivery.message_id}")

    for queue in (
        tls_network.topology.inbox_queue("RS-PPO"),
        tls_network.topology.dead_queue("RS-PPO"),
    ):
        with pytest.raises(ConsumeError, match="ACCESS_REFUSED"):
            await bus_al.consume(queue, never)


async def test_a_node_whose_broker_user_is_deleted_is_refused_at_once(
    tls_network: TlsNetwork,
) -> None:
    """Revoking a node at the broker: its certificate is still valid, but it has no user."""
    url = f"{tls_network.amqps_url}?auth=external"
    await _connect(url, tls_network.context("MD-ARO"))
    await asyncio.to_thread(tls_network.broker.ctl, "delete_user", "MD-ARO")
    with pytest.raises(aiormq.exceptions.AMQPError):
        await _connect(url, tls_network.context("MD-ARO"))


# -- the gateway's HTTPS ---------------------------------------------------------------------


@pytest.fixture
async def https_gateway(tls_network: TlsNetwork) -> AsyncIterator[tuple[str, NodeConfig]]:
    """AL-ARO's HTTP API over HTTPS, local users needing a certificate of the network CA."""
    pki = tls_network.pki
    if not (pki / "tls" / "al-aro.localhost.pem").exists():
        issue_server_certificate(pki, "al-aro.localhost", alt_names=["127.0.0.1"])
    config = tls_network.config(
        "AL-ARO",
        EXCHANGE_HTTPS__CERT_PATH=str(pki / "tls" / "al-aro.localhost.pem"),
        EXCHANGE_HTTPS__KEY_PATH=str(pki / "tls" / "al-aro.localhost.key"),
        EXCHANGE_HTTPS__CLIENT_CA_PATH=str(pki / "ca.pem"),
    )
    assert config.https is not None and config.https.client_ca_path is not None
    app = create_app(config, start_relay=False)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    context = https_server_context(
        config.https.cert_path, config.https.key_path, config.https.client_ca_path
    )
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=context)
    await site.start()
    try:
        yield f"https://127.0.0.1:{port}", config
    finally:
        await runner.cleanup()


async def test_local_users_need_both_a_client_certificate_and_a_token(
    tls_network: TlsNetwork, https_gateway: tuple[str, NodeConfig]
) -> None:
    base, _ = https_gateway
    pki = tls_network.pki
    token = tls_network.layout.nodes["AL-ARO"].token("contact-point")
    ca = pki / "ca.pem"
    cert = {"cert_file": pki / "AL-ARO.pem", "key_file": pki / "AL-ARO.key"}
    async with asyncio.timeout(20), GatewayClient(base, token, ca_file=ca, **cert) as client:
        assert (await client.inbox()).items == []
    async with asyncio.timeout(20), GatewayClient(base, ca_file=ca, **cert) as anonymous:
        with pytest.raises(ProblemError) as refused:
            await anonymous.inbox()
        assert (refused.value.status, refused.value.code) == (401, "auth.missing")
    # a stolen token without a client certificate does not get past the TLS handshake
    async with asyncio.timeout(20), GatewayClient(base, token, ca_file=ca) as thief:
        with pytest.raises(GatewayUnreachable):
            await thief.inbox()
    # nor does a client that does not trust the network CA reach the API in clear text
    clear = base.replace("https", "http")
    async with asyncio.timeout(20), GatewayClient(clear, token, ca_file=ca, **cert) as client:
        with pytest.raises(GatewayUnreachable):
            await client.inbox()


def test_definitions_for_x509_users_carry_no_password(tls_network: TlsNetwork) -> None:
    definitions = tls_network.topology.render_definitions(NETWORK, NODES)
    assert all("password_hash" not in u for u in definitions["users"])
    assert json.dumps(definitions).count("password") == 0


def test_a_server_certificate_names_its_hosts_and_can_never_sign_an_envelope(
    tmp_path: Path,
) -> None:
    init_network(tmp_path, NETWORK, ["AL-ARO"])
    path = issue_server_certificate(tmp_path, "B1.see-arn.example", alt_names=["10.0.0.5"])
    assert path == tmp_path / "tls" / "b1.see-arn.example.pem"
    assert (path.with_suffix(".key").stat().st_mode & 0o777) == 0o600
    cert = load_certificate(path)
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["b1.see-arn.example"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == []
    trust = TrustStore.from_directory(tmp_path)  # tls/ is not where node certificates live
    assert len(trust) == 1
    with pytest.raises(VerificationError) as refused:
        trust.add_certificate(cert)
    assert refused.value.code == "cert.untrusted"


def test_an_amqps_url_without_a_user_asks_for_x509_login() -> None:
    assert external_login_url("amqps://b1:5671/see-arn") == "amqps://b1:5671/see-arn?auth=external"
    for unchanged in (
        "amqp://guest:guest@127.0.0.1:5672/",
        "amqps://admin:secret@b1:5671/see-arn",
        "amqps://b1:5671/see-arn?auth=plain",
    ):
        assert external_login_url(unchanged) == unchanged


async def test_two_gateways_exchange_a_request_and_its_receipt_over_the_tls_broker(
    tls_network: TlsNetwork,
) -> None:
    """The whole relay under the broker's walls: x509 login, provisioned topology only."""
    clients: dict[str, TestClient[web.Request, web.Application]] = {}
    try:
        for node in ("AL-ARO", "RS-PPO"):
            client = TestClient(TestServer(create_app(tls_network.config(node))))
            await client.start_server()
            clients[node] = client
        headers = auth_headers(tls_network.layout, "AL-ARO")
        body = submission(priority="normal", payload=load_payload("01-asset-inquiry.json"))
        response = await clients["AL-ARO"].post("/v1/messages", json=body, headers=headers)
        assert response.status == 202, await response.text()
        message_id = (await response.json())["id"]
        status = None
        async with asyncio.timeout(30):
            while status != "delivered":  # RS-PPO verified it and its signed receipt came back
                await asyncio.sleep(0.1)
                view = await clients["AL-ARO"].get(f"/v1/messages/{message_id}", headers=headers)
                status = (await view.json())["status"]
        inbox = await clients["RS-PPO"].get(
            "/v1/inbox", headers=auth_headers(tls_network.layout, "RS-PPO")
        )
        assert message_id in [item["id"] for item in (await inbox.json())["items"]]
    finally:
        for client in clients.values():
            await client.close()
