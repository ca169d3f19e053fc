"""The administrator's page: the node's health, the other nodes' checkpoints it has seen, and
the certificates and keys that expire soon.

Health is what `/readyz` checks (broker connected and consuming, store writable) and more:
the outbox's depth (publishes waiting for a broker confirm), the CRL in use, the audit
log's size and the signed network directory's serial (`directory_serial`). Certificates are
read from the files the configuration names: the network CA, the node's own (whose key
signs its envelopes and checkpoints), the other nodes' in `certs_dir`, the HTTPS and broker
CAs; each that expires within `SOON_DAYS` is marked.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import NameOID

from exchange.audit.checkpoints import Checkpoint
from exchange.config import NodeConfig
from exchange.console.web import CONSOLE, page, render
from exchange.gateway import keys
from exchange.model.common import utc_now

SOON_DAYS = 30
PING_SECONDS = 2.0


def directory_serial(app: web.Application) -> int | None:
    """The serial of the signed network directory this node runs on (None before it has
    taken one)."""
    view = app.get(keys.DIRECTORY)
    return view.serial if view is not None else None


@dataclass(frozen=True, slots=True)
class CertificateRow:
    what: str
    path: str
    subject: str
    serial: str
    not_after: datetime
    days_left: int

    @property
    def soon(self) -> bool:
        return self.days_left <= SOON_DAYS


def _subject(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def _row(what: str, where: str, cert: x509.Certificate, now: datetime) -> CertificateRow:
    not_after = cert.not_valid_after_utc
    return CertificateRow(
        what, where, _subject(cert), f"{cert.serial_number:x}", not_after, (not_after - now).days
    )


def _certificates(
    config: NodeConfig,
    members: dict[str, tuple[x509.Certificate, ...]],
    serial: int | None,
    now: datetime,
) -> list[CertificateRow]:
    """Every certificate the configuration names and every member's in the directory,
    soonest to expire first (unreadable files are listed with what went wrong)."""
    named: list[tuple[str, Path]] = [
        ("network CA", config.ca_path),
        ("this node (its signing key)", config.cert_path),
    ]
    if config.https is not None:
        named.append(("HTTPS server", config.https.cert_path))
        if config.https.client_ca_path is not None:
            named.append(("client certificates CA", config.https.client_ca_path))
    if config.broker_ca_path is not None:
        named.append(("broker CA", config.broker_ca_path))
    rows = []
    for what, path in named:
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError) as exc:
            rows.append(CertificateRow(what, str(path), f"unreadable: {exc}", "", now, 0))
            continue
        rows.append(_row(what, str(path), cert, now))
    own = config.node_id
    for member, certificates in sorted(members.items()):
        for cert in certificates:
            if member != own:
                rows.append(
                    _row(f"member {member}", f"network directory serial {serial}", cert, now)
                )
    return sorted(rows, key=lambda r: r.not_after)


def _peers(seen: list[Checkpoint]) -> list[dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for cp in seen:
        row = latest.setdefault(cp.node, {"node": cp.node, "count": 0, "checkpoint": cp})
        row["count"] += 1
        if cp.size >= row["checkpoint"].size:
            row["checkpoint"] = cp
    return sorted(latest.values(), key=lambda r: str(r["node"]))


@page(admin=True)
async def admin(request: web.Request) -> web.StreamResponse:
    app = request.app
    config, now = app[keys.CONFIG], utc_now()
    relay, store, trust = app.get(keys.RELAY), app[keys.STORE], app[keys.TRUST]
    try:
        store_ok = await asyncio.wait_for(store.ping(), PING_SECONDS)
    except Exception:
        store_ok = False
    crl = trust.crl
    audit = app[keys.AUDIT]
    view = app.get(keys.DIRECTORY)
    latest = audit.latest_checkpoint
    health = {
        "broker": relay is not None and relay.ready,
        "case_updates": app[keys.CASE_UPDATES].ready,
        "store": store_ok,
        "outbox_depth": await store.outbox_depth(),
        "crl_number": trust.crl_number,
        "crl_next_update": crl.next_update_utc if crl is not None else None,
        "revocation": config.revocation,
        "audit_size": audit.head.size,
        "checkpoint_time": latest.time if latest is not None else None,
        "directory_serial": directory_serial(app),
        "directory_next_update": view.directory.body.next_update if view is not None else None,
        "sessions": len(app[CONSOLE].sessions),
    }
    members = dict(view.directory.certificates) if view is not None else {}
    serial = directory_serial(app)
    certificates = await asyncio.to_thread(_certificates, config, members, serial, now)
    context = {
        "title": f"Node {config.node_id}",
        "health": health,
        "peers": _peers(await app[keys.PEERS].seen()),
        "certificates": certificates,
        "soon_days": SOON_DAYS,
        "now": now,
        "config": config,
    }
    return render(request, "admin.html", context)
