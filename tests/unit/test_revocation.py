"""Revocation never stops silently: a node uses the CRL of the signed directory, and of a CRL
file when one is configured (missing, it does not start); `revocation = "off"` warns at every
start; a CRL replaced on disk is used within
about a second; and an older CRL put back, while running or across a restart, is refused
(logged as an error, audited `crl.rollback`) while the newer one stays in force."""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from directories import resign, use_crl_file

from exchange.config import NodeConfig
from exchange.crypto.pki import revoke_node
from exchange.crypto.signing import NodeSigner, encode_envelope
from exchange.crypto.verify import VerificationPolicy, verify_envelope
from exchange.errors import ConfigError, VerificationError
from exchange.gateway import keys
from exchange.gateway.app import create_app
from exchange.model.envelope import Header
from exchange.network import NetworkLayout
from exchange.storage import node_meta

NODES = ["AL-ARO", "RS-PPO", "MD-ARO"]
NetworkFactory = Callable[..., NetworkLayout]


@pytest.fixture
def layout(make_network: NetworkFactory) -> NetworkLayout:
    return make_network(NODES)


def config_of(layout: NetworkLayout, **environ: str) -> NodeConfig:
    """AL-ARO's configuration with a CRL file to watch (beside the directory's CRL)."""
    environ.setdefault("crl_path", str(layout.pki_dir / "crl.pem"))
    return layout.config("AL-ARO", environ={f"EXCHANGE_{k.upper()}": v for k, v in environ.items()})


@asynccontextmanager
async def running(config: NodeConfig) -> AsyncIterator[web.Application]:
    app = create_app(config, start_relay=False)
    server = TestServer(app)
    await server.start_server()
    try:
        yield app
    finally:
        await server.close()


def md_aro_envelope(layout: NetworkLayout, make_header: Any) -> bytes:
    pki = layout.directory / "pki"
    signer = NodeSigner.from_files(pki / "MD-ARO.key", pki / "MD-ARO.pem")
    header: Header = make_header(sender="MD-ARO", recipients=["AL-ARO"])
    return encode_envelope(signer.sign_envelope(header, {"n": 1}))


def refusal_of(app: web.Application, envelope: bytes) -> str | None:
    """The code with which the running node's trust store refuses `envelope` (None: valid)."""
    try:
        verify_envelope(envelope, VerificationPolicy(trust=app[keys.TRUST]))
    except VerificationError as err:
        return err.code
    return None


async def eventually(check: Callable[[], Any], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.05)):
        result = check()
        if await result if inspect.isawaitable(result) else result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not within the time allowed")


def put_back(path: Path, older: bytes) -> None:
    """Replace the CRL file as an attacker with write access would: an older, genuine CRL."""
    path.write_bytes(older)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


async def crl_rollbacks(app: web.Application) -> list[dict[str, Any]]:
    return [
        dict(e.detail or {})
        for e in await app[keys.AUDIT].entries(0, 1000)
        if (e.event, e.code) == ("rejected", "crl.rollback")
    ]


# --- no CRL, no start ---------------------------------------------------------------------


def without_crl(layout: NetworkLayout, extra: str = "") -> Path:
    """AL-ARO's configuration file without its crl_path line, plus `extra`."""
    text = layout.nodes["AL-ARO"].config_path.read_text()
    kept = [line for line in text.splitlines() if not line.startswith("crl_path")]
    path = layout.nodes["AL-ARO"].config_path.with_name("no-crl.toml")
    # top-level keys must come before the first table
    path.write_text(extra + "\n".join(kept) + "\n")
    return path


async def test_without_a_crl_file_the_directorys_crl_is_in_force(
    layout: NetworkLayout, make_header: Any
) -> None:
    envelope = md_aro_envelope(layout, make_header)
    revoke_node(layout.pki_dir, "MD-ARO")  # the secretariat revokes, then re-issues the directory
    resign(layout, use_crl_file(layout))
    config = NodeConfig.load(without_crl(layout), environ={})
    assert (config.revocation, config.crl_path) == ("on", None)
    async with running(config) as app:
        assert app[keys.TRUST].crl_number == 2
        assert refusal_of(app, envelope) == "cert.revoked"


def test_revocation_off_and_a_crl_file_at_once_are_refused(layout: NetworkLayout) -> None:
    path = without_crl(layout, 'revocation = "off"\n')
    assert NodeConfig.load(path, environ={}).revocation == "off"
    text = layout.nodes["AL-ARO"].config_path.read_text()
    path.write_text('revocation = "off"\ncrl_path = "pki/crl.pem"\n' + text)  # which is meant?
    with pytest.raises(ConfigError, match="remove one of them"):
        NodeConfig.load(path, environ={})


async def test_a_node_whose_crl_file_is_missing_does_not_start(layout: NetworkLayout) -> None:
    (layout.directory / "pki" / "crl.pem").unlink()
    with pytest.raises(ConfigError, match="refuses to start without the network's CRL"):
        async with running(config_of(layout)):
            pass


async def test_revocation_off_starts_with_a_warning_every_time(layout: NetworkLayout) -> None:
    config = NodeConfig.load(without_crl(layout, 'revocation = "off"\n'), environ={})
    assert (config.revocation, config.crl_path) == ("off", None)
    for _ in range(2):
        with structlog.testing.capture_logs() as logs:
            async with running(config) as app:
                assert app[keys.TRUST].crl is None
        warned = [e for e in logs if e["event"] == "revocation.off"]
        assert len(warned) == 1 and warned[0]["log_level"] == "warning"


# --- a new CRL is used, an older one never comes back ---------------------------------------


async def test_a_crl_replaced_on_disk_is_used_within_seconds(
    layout: NetworkLayout, make_header: Any
) -> None:
    envelope = md_aro_envelope(layout, make_header)
    async with running(config_of(layout)) as app:
        assert refusal_of(app, envelope) is None
        revoke_node(layout.directory / "pki", "MD-ARO")  # the operator installs the new CRL
        await eventually(lambda: refusal_of(app, envelope) == "cert.revoked")
        held = await app[keys.DATABASE].call(lambda c: node_meta.get(c, node_meta.CRL))
        assert held["number"] == 2 == app[keys.TRUST].crl_number


async def test_an_older_crl_put_back_while_running_is_refused_logged_and_audited(
    layout: NetworkLayout, make_header: Any
) -> None:
    crl_path = layout.directory / "pki" / "crl.pem"
    older = crl_path.read_bytes()
    envelope = md_aro_envelope(layout, make_header)
    async with running(config_of(layout)) as app:
        revoke_node(layout.directory / "pki", "MD-ARO")
        await eventually(lambda: refusal_of(app, envelope) == "cert.revoked")
        with structlog.testing.capture_logs() as logs:
            put_back(crl_path, older)
            await eventually(lambda: crl_rollbacks(app))
        assert refusal_of(app, envelope) == "cert.revoked"  # the newer CRL stays in force
        assert app[keys.TRUST].crl_number == 2
        (detail,) = await crl_rollbacks(app)
        assert (detail["number"], detail["in_use"]) == (1, 2)
        (error,) = [e for e in logs if e["event"] == "crl.rollback.refused"]
        assert error["log_level"] == "error" and "older CRL" in error["reason"]


async def test_an_older_crl_put_back_across_a_restart_is_refused_and_the_newer_kept(
    layout: NetworkLayout, make_header: Any
) -> None:
    crl_path = layout.directory / "pki" / "crl.pem"
    older = crl_path.read_bytes()
    envelope = md_aro_envelope(layout, make_header)
    config = config_of(layout)
    revoke_node(layout.directory / "pki", "MD-ARO")
    async with running(config) as app:
        assert refusal_of(app, envelope) == "cert.revoked"
    shutil.copyfile(crl_path, layout.directory / "newer-crl.bak")
    put_back(crl_path, older)  # the node is down: swap the file, hope it forgets
    with structlog.testing.capture_logs() as logs:
        async with running(config) as app:
            assert refusal_of(app, envelope) == "cert.revoked"
            assert app[keys.TRUST].crl_number == 2
            (detail,) = await crl_rollbacks(app)
            assert (detail["number"], detail["in_use"]) == (1, 2)
    assert any(e["event"] == "crl.rollback.refused" for e in logs)
    # the newest CRL put back in place is accepted again without a word
    shutil.copyfile(layout.directory / "newer-crl.bak", crl_path)
    async with running(config) as app:
        assert refusal_of(app, envelope) == "cert.revoked"
        assert len(await crl_rollbacks(app)) == 1  # only the earlier refusal


async def test_a_crl_file_that_goes_bad_is_refused_and_the_crl_in_use_stays(
    layout: NetworkLayout, make_header: Any, foreign_pki_dir: Path
) -> None:
    crl_path = layout.directory / "pki" / "crl.pem"
    envelope = md_aro_envelope(layout, make_header)
    async with running(config_of(layout)) as app:
        revoke_node(layout.directory / "pki", "MD-ARO")
        await eventually(lambda: refusal_of(app, envelope) == "cert.revoked")
        audit = app[keys.AUDIT]

        async def invalid() -> int:
            entries = await audit.entries(0, 1000)
            return sum(1 for e in entries if e.code == "crl.invalid")

        for n, bad in enumerate([b"not a CRL", (foreign_pki_dir / "crl.pem").read_bytes()], 1):
            put_back(crl_path, bad)  # garbage, then a CRL of another CA
            await eventually(lambda n=n: invalid_count_is(invalid, n))
        crl_path.unlink()
        await eventually(lambda: invalid_count_is(invalid, 3))
        assert refusal_of(app, envelope) == "cert.revoked"


async def invalid_count_is(count: Callable[[], Any], n: int) -> bool:
    return bool(await count() == n)
