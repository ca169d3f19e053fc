"""Under mutual TLS, a client certificate whose subject CN is a token's id signs in as that
token, without typing it; any other certificate the CA issued gets the token form only."""

from __future__ import annotations

import re
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exchange.crypto.pki import load_certificate, load_private_key
from exchange.crypto.server_certs import issue_server_certificate
from exchange.gateway.app import create_app
from exchange.network import NetworkLayout
from exchange.transport.tls import https_client_context, https_server_context

pytestmark = pytest.mark.network(nodes=["AL-ARO", "RS-PPO"])

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def client_certificate(pki: Path, common_name: str, folder: Path) -> tuple[Path, Path]:
    """A TLS client certificate for `common_name`, issued by the network CA."""
    ca_key, ca = load_private_key(pki / "ca.key"), load_certificate(pki / "ca.pem")
    key = Ed25519PrivateKey.generate()
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, algorithm=None)
    )
    cert_path, key_path = folder / f"{common_name}.pem", folder / f"{common_name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_a_client_certificate_named_for_a_token_signs_in(
    network: NetworkLayout, tmp_path: Path
) -> None:
    pki = network.directory / "pki"
    server_cert = issue_server_certificate(pki, "localhost", alt_names=["127.0.0.1"])
    server = https_server_context(server_cert, server_cert.with_suffix(".key"), pki / "ca.pem")
    config = network.config("AL-ARO", environ={"EXCHANGE_DATA_DIR": str(tmp_path / "data")})
    runner = web.AppRunner(create_app(config, start_relay=False))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server)
    await site.start()
    base = f"https://127.0.0.1:{runner.addresses[0][1]}"
    try:
        for name, signs_in in (("auditor", True), ("somebody", False)):
            cert, key = client_certificate(pki, name, tmp_path)
            context: ssl.SSLContext = https_client_context(pki / "ca.pem", cert, key)
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=context),
                cookie_jar=aiohttp.CookieJar(unsafe=True),
            ) as browser:
                page = await (await browser.get(f"{base}/console/login")).text()
                assert ("Sign in with the certificate" in page) is signs_in, name
                token = CSRF.search(page)
                assert token is not None
                answer = await browser.post(
                    f"{base}/console/login",
                    data={"csrf": token.group(1), "certificate": "1", "next": "/console/audit"},
                    allow_redirects=False,
                )
                if not signs_in:
                    assert answer.status == 401  # no certificate sign-in: a token is needed
                    continue
                assert answer.status == 303
                cookie = answer.headers["Set-Cookie"]
                assert cookie.startswith("__Host-xb-console=")
                assert all(part in cookie for part in ("Secure", "HttpOnly", "SameSite=Strict"))
                audit = await browser.get(f"{base}/console/audit")
                assert audit.status == 200
                assert "Signed in as auditor (auditor)" in await audit.text()
                assert audit.headers["Strict-Transport-Security"].startswith("max-age=")
    finally:
        await runner.cleanup()
