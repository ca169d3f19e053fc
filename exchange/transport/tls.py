"""TLS for the exchange's links: a gateway's AMQPS connection, logged in by its node
certificate (x509, SASL EXTERNAL), and its HTTPS listener for local users (optionally
mutual TLS).

Every certificate of the network is Ed25519. Erlang/OTP 25's TLS (RabbitMQ 3.10) accepts
Ed25519 certificates in TLS 1.3 only (a TLS 1.2 handshake fails), so every context here
insists on TLS 1.3.
"""

from __future__ import annotations

import os
import ssl
import urllib.parse

from exchange.errors import ConfigError

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_3

PathLike = str | os.PathLike[str]


def is_tls_url(url: str) -> bool:
    """True for an `amqps://` URL."""
    return urllib.parse.urlsplit(url).scheme.lower() == "amqps"


def external_login_url(url: str) -> str:
    """`url`, asking for x509 login (`auth=external`) when it is `amqps://` without a user.

    The broker then takes the user name from the client certificate's CN (the node id);
    a URL that names a user, or a plain `amqp://` one, is returned unchanged.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() != "amqps" or parts.username:
        return url
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if any(k == "auth" for k, _ in query):
        return url
    query.append(("auth", "external"))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def broker_client_context(
    ca_path: PathLike, cert_path: PathLike, key_path: PathLike
) -> ssl.SSLContext:
    """A client context for AMQPS: verifies the broker against `ca_path` (and its host
    name), presents the node's certificate and key."""
    context = _context(ssl.Purpose.SERVER_AUTH, ca_path)
    _load_chain(context, cert_path, key_path)
    return context


def https_server_context(
    cert_path: PathLike, key_path: PathLike, client_ca_path: PathLike | None = None
) -> ssl.SSLContext:
    """A server context for the gateway's HTTPS; with `client_ca_path`, a client must
    present a certificate issued by that CA or the handshake fails (mutual TLS)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    _load_chain(context, cert_path, key_path)
    if client_ca_path is not None:
        _load_ca(context, client_ca_path)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def https_client_context(
    ca_path: PathLike, cert_path: PathLike | None = None, key_path: PathLike | None = None
) -> ssl.SSLContext:
    """A client context for a gateway's HTTPS (local tools), with a client certificate
    when the gateway asks for one."""
    context = _context(ssl.Purpose.SERVER_AUTH, ca_path)
    if cert_path is not None:
        _load_chain(context, cert_path, key_path)
    return context


def _context(purpose: ssl.Purpose, ca_path: PathLike) -> ssl.SSLContext:
    """Host name checked, certificate required; only `ca_path` is trusted (no system CAs)."""
    try:
        context = ssl.create_default_context(purpose, cafile=os.fspath(ca_path))
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(f"cannot load CA certificate {ca_path}: {err}") from None
    context.minimum_version = MINIMUM_VERSION
    return context


def _load_ca(context: ssl.SSLContext, ca_path: PathLike) -> None:
    try:
        context.load_verify_locations(cafile=os.fspath(ca_path))
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(f"cannot load CA certificate {ca_path}: {err}") from None


def _load_chain(context: ssl.SSLContext, cert_path: PathLike, key_path: PathLike | None) -> None:
    try:
        context.load_cert_chain(
            os.fspath(cert_path), os.fspath(key_path) if key_path is not None else None
        )
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(f"cannot load certificate {cert_path} and its key: {err}") from None
