"""Throwaway PKI fixtures: a network CA with three nodes, signers, a trust store, headers;
and each module's test network of nodes (`network`).

`pki_dir` is made once per session: treat it as read-only. A test that revokes or rotates
takes `fresh_pki_dir`, its own copy. `foreign_pki_dir` is another CA with the same network
name and node ids, so only the CA's signature tells the two apart.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from exchange.crypto.pki import init_network
from exchange.crypto.signing import NodeSigner
from exchange.crypto.verify import TrustStore, VerificationPolicy
from exchange.model.common import utc_now
from exchange.model.envelope import Header
from exchange.network import NetworkLayout, init_network_dir

TEST_NETWORK = "test-net"
TEST_NODES = ("AL-ARO", "RS-PPO", "MD-ARO")

SignerFactory = Callable[..., NodeSigner]
HeaderFactory = Callable[..., Header]


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A network directory (ca.pem/.key, <NODE>.pem/.key, crl.pem) for TEST_NODES. Read-only."""
    directory = tmp_path_factory.mktemp("pki") / "network"
    init_network(directory, TEST_NETWORK, TEST_NODES)
    return directory


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "network(nodes=..., networks=...): the nodes and prosecutor networks of the module's "
        "`network` fixture",
    )


@pytest.fixture(scope="module")
def network(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> NetworkLayout:
    """This module's test network on the in-memory bus: a CA, each node's key, certificate,
    TOML and tokens. Nodes TEST_NODES and no prosecutor network, unless the module says
    otherwise: `pytestmark = pytest.mark.network(nodes=[...], networks={name: members})`.

    Made once per module, so its tests share it and must not change it: a node's data goes
    where the test says (`network.config(node, environ={"EXCHANGE_DATA_DIR": ...})`).
    """
    marker = request.node.get_closest_marker("network")
    options = dict(marker.kwargs) if marker else {}
    nodes = options.pop("nodes", TEST_NODES)
    return init_network_dir(tmp_path_factory.mktemp("net"), nodes, bus="memory", **options)


@pytest.fixture
def fresh_pki_dir(pki_dir: Path, tmp_path: Path) -> Path:
    """A private copy of `pki_dir`, for tests that issue or revoke certificates."""
    return Path(shutil.copytree(pki_dir, tmp_path / "network"))


@pytest.fixture(scope="session")
def foreign_pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another CA that names itself exactly like ours, with the same node ids."""
    directory = tmp_path_factory.mktemp("foreign-pki") / "network"
    init_network(directory, TEST_NETWORK, TEST_NODES)
    return directory


@pytest.fixture(scope="session")
def signer(pki_dir: Path) -> SignerFactory:
    """`signer("RS-PPO")` is that node's NodeSigner from `pki_dir` (default AL-ARO)."""
    cache: dict[tuple[Path, str], NodeSigner] = {}

    def make(node: str = "AL-ARO", directory: Path | None = None) -> NodeSigner:
        root = directory or pki_dir
        if (root, node) not in cache:
            cache[root, node] = NodeSigner.from_files(root / f"{node}.key", root / f"{node}.pem")
        return cache[root, node]

    return make


@pytest.fixture
def trust_store(pki_dir: Path) -> TrustStore:
    """A trust store of `pki_dir`: its CA, CRL and every node certificate (fresh per test)."""
    return TrustStore.from_directory(pki_dir)


@pytest.fixture
def policy(trust_store: TrustStore) -> VerificationPolicy:
    """The default policy over `trust_store` (5 minutes skew, no replay guard)."""
    return VerificationPolicy(trust=trust_store)


@pytest.fixture
def make_header() -> HeaderFactory:
    """`make_header(sender=..., created_at=..., ...)`: a valid asset-inquiry header, now."""

    def make(**fields: Any) -> Header:
        created_at: datetime = fields.pop("created_at", None) or utc_now()
        values: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "type": "asset-inquiry",
            "schema": "asset-inquiry/1",
            "sender": "AL-ARO",
            "recipients": ["RS-PPO"],
            "case": "AL-2026-0042",
            "created_at": created_at,
            "priority": "urgent",
            "handling": {"tlp": "AMBER", "code": "H2"},
        }
        values.update(fields)
        return Header.model_validate(values)

    return make


@pytest.fixture
def sample_payload() -> dict[str, Any]:
    """A payload with Cyrillic and Albanian names, amounts as decimal strings, nesting."""
    return {
        "subject": {
            "name": "Љубомир Јовановић",
            "aliases": ["Arbër Çela", "Ljubomir Jovanović"],
            "born": "1971-04-12",
        },
        "assets": [
            {
                "kind": "bank-account",
                "iban": "AL47212110090000000235698741",
                "amount": "1250000.00",
            },
            {"kind": "vehicle", "registration": "TR 4521 K", "value": "38500.00"},
        ],
        "reference_count": 9007199254740991,
        "urgent": True,
        "note": None,
    }
