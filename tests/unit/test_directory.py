"""The signed network directory: built from members.toml, verified against the network CA,
refused with a code for each way it can be wrong, and a node on an expired one degraded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.serialization import Encoding
from directories import expired, resign
from http_helpers import submission

from exchange.cli import main
from exchange.crypto.pki import (
    create_ca,
    create_node_certificate,
    init_network,
    load_certificate,
    load_private_key,
    role_of,
)
from exchange.demo.runner import DemoNetwork, free_base_port
from exchange.directory.build import build_directory, read_members
from exchange.directory.document import (
    DirectoryBody,
    der_b64,
    sign_directory,
    verify_directory,
)
from exchange.errors import ConfigError, ExchangeError, VerificationError
from exchange.gateway import keys
from exchange.gateway.app import create_app
from exchange.network import NetworkLayout, add_node, init_network_dir
from exchange.transport.memory import MemoryBus
from exchange.transport.topology import Topology

pytestmark = pytest.mark.network(
    nodes=["AL-ARO", "RS-PPO", "LT-VASP"],
    networks={"see-pcn": ["AL-ARO", "RS-PPO"]},
    roles={"LT-VASP": "private-sector"},
)


def ca_of(network: NetworkLayout) -> Any:
    return load_certificate(network.pki_dir / "ca.pem")


def body_of(document: bytes) -> dict[str, Any]:
    return dict(json.loads(document)["directory"])


def test_the_directory_names_members_roles_networks_and_permissions(
    network: NetworkLayout,
) -> None:
    directory = verify_directory(network.directory_file.read_bytes(), ca_of(network))
    body = directory.body
    assert (body.network, body.serial) == (network.network, 1)
    assert {m.id: m.role.value for m in body.members} == {
        "AL-ARO": "authority",
        "RS-PPO": "authority",
        "LT-VASP": "private-sector",
    }
    assert [(n.name, n.members) for n in body.networks] == [("see-pcn", ("AL-ARO", "RS-PPO"))]
    sector = {role.value: rule for role, rule in body.permissions.items()}["private-sector"]
    assert [t.value for t in sector.send] == ["asset-inquiry-response", "freeze-decision"]
    assert [t.value for t in sector.receive] == ["asset-inquiry", "freeze-notice"]
    assert body.next_update > body.issued_at and not directory.expired()
    assert set(directory.certificates) == {"AL-ARO", "RS-PPO", "LT-VASP"}


def tampered(document: bytes, change: Any) -> bytes:
    doc = json.loads(document)
    change(doc["directory"])
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("attack", "code"),
    [
        ("a member added after signing", "directory.untrusted"),
        ("a role changed after signing", "directory.untrusted"),
        ("the serial raised after signing", "directory.untrusted"),
        ("not JSON", "directory.malformed"),
        ("a field the format does not know", "directory.malformed"),
        ("signed by another CA of the same name", "directory.untrusted"),
        ("a certificate of another node under a member", "directory.invalid"),
        ("a certificate of another CA", "directory.invalid"),
        ("a private-sector member in a prosecutor network", "directory.invalid"),
        ("another network's directory", "directory.invalid"),
        ("past its next update", "directory.expired"),
    ],
)
def test_each_bad_directory_is_refused_with_its_code(
    network: NetworkLayout, tmp_path: Path, attack: str, code: str
) -> None:
    good = network.directory_file.read_bytes()
    ca = ca_of(network)
    foreign_key, foreign_ca = create_ca(network.network)
    al = load_certificate(network.pki_dir / "AL-ARO.pem")

    def signed(change: Any, key: Any = None, issuer: Any = None) -> bytes:
        body = body_of(good)
        change(body)
        ca_key = key or load_private_key(network.pki_dir / "ca.key")
        return sign_directory(DirectoryBody.model_validate(body), ca_key, issuer or ca)

    def add_foreign_cert(body: dict[str, Any]) -> None:
        _, cert = create_node_certificate(foreign_key, foreign_ca, "RS-PPO")
        body["members"][1]["certificates"] = [der_b64(cert.public_bytes(Encoding.DER))]

    documents = {
        "a member added after signing": tampered(
            good, lambda b: b["members"].append({**b["members"][0], "id": "KZ-ARC"})
        ),
        "a role changed after signing": tampered(
            good, lambda b: b["members"][2].update(role="authority")
        ),
        "the serial raised after signing": tampered(good, lambda b: b.update(serial=99)),
        "not JSON": b"{not json",
        "a field the format does not know": tampered(good, lambda b: b.update(extra=1)),
        "signed by another CA of the same name": signed(lambda b: None, foreign_key, foreign_ca),
        "a certificate of another node under a member": signed(
            lambda b: b["members"][1].update(certificates=[der_b64(al.public_bytes(Encoding.DER))])
        ),
        "a certificate of another CA": signed(add_foreign_cert),
        "a private-sector member in a prosecutor network": signed(
            lambda b: b["networks"][0]["members"].append("LT-VASP")
        ),
        "another network's directory": signed(lambda b: b.update(network="other-net")),
        "past its next update": signed(expired),
    }
    with pytest.raises(VerificationError) as refused:
        verify_directory(documents[attack], ca)
    assert refused.value.code == code, refused.value.detail


def test_build_refuses_duplicate_members_and_a_member_without_a_certificate(
    network: NetworkLayout,
) -> None:
    members = read_members(network.members_file)
    twice = {**members, "members": [*members["members"], members["members"][0]]}
    with pytest.raises(ExchangeError, match="member ids repeat: AL-ARO"):
        build_directory(network.pki_dir, twice, serial=2)
    stranger = {**members, "members": [*members["members"], {"id": "KZ-ARC"}]}
    with pytest.raises(ConfigError, match="KZ-ARC has no valid certificate"):
        build_directory(network.pki_dir, stranger, serial=2)


def test_the_cli_builds_verifies_and_shows_with_exit_codes(
    network: NetworkLayout, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "directory.json"
    out.write_bytes(network.directory_file.read_bytes())
    ca = str(network.pki_dir / "ca.pem")
    build = ["directory", "build", "--ca-dir", str(network.pki_dir), "--members"]
    assert main([*build, str(network.members_file), "--out", str(out)]) == 0
    assert "directory serial 2" in capsys.readouterr().out  # the next serial
    assert main([*build, str(network.members_file), "--out", str(out), "--serial", "2"]) == 2
    assert main(["directory", "verify", str(out), "--ca", ca]) == 0
    assert main(["directory", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "LT-VASP" in shown and "private-sector" in shown and "see-pcn" in shown
    out.write_bytes(tampered(out.read_bytes(), lambda b: b.update(serial=7)))
    assert main(["directory", "verify", str(out), "--ca", ca]) == 1
    assert "INVALID directory.untrusted" in capsys.readouterr().err


async def test_a_node_on_an_expired_directory_serves_and_says_it_is_degraded(
    tmp_path: Path,
) -> None:
    nodes = ["AL-ARO", "RS-PPO"]
    layout = init_network_dir(
        tmp_path / "net", nodes, bus="memory", base_port=free_base_port(2), prefix="xbexp"
    )
    resign(layout, expired)
    network = DemoNetwork(layout, MemoryBus(Topology("xbexp")))
    await network.start()  # it starts: the expired directory is the last good one
    try:
        ready = await network.client("AL-ARO").wait_ready(within=10)
        assert ready.status == "degraded" and ready.checks["directory"] is False
        assert ready.detail is not None and "expired" in ready.detail
        accepted = await network.client("AL-ARO").submit(submission(recipients=["RS-PPO"]))
        assert (await network.wait_settled("AL-ARO", accepted.id)).status == "delivered"
    finally:
        await network.stop()


async def test_the_newest_directory_kept_wins_over_an_older_file_across_a_restart(
    tmp_path: Path,
) -> None:
    layout = init_network_dir(tmp_path / "net", ["AL-ARO", "RS-PPO"], bus="memory")
    first = layout.directory_file.read_bytes()
    resign(layout, lambda body: None)
    config = layout.config("AL-ARO", environ={})
    async with TestClient(TestServer(create_app(config, start_relay=False))) as client:
        assert client.server.app[keys.DIRECTORY].serial == 2
    layout.directory_file.write_bytes(first)  # an old file put back
    async with TestClient(TestServer(create_app(config, start_relay=False))) as client:
        assert client.server.app[keys.DIRECTORY].serial == 2
    layout.directory_file.write_bytes(b"garbage")  # a broken file: the kept one, audited
    async with TestClient(TestServer(create_app(config, start_relay=False))) as client:
        app = client.server.app
        assert app[keys.DIRECTORY].serial == 2
        entries = await app[keys.AUDIT].entries(0, 100)
        assert ("rejected", "directory.malformed") in [(e.event, e.code) for e in entries]


def test_the_operators_example_members_file_builds_a_valid_directory(tmp_path: Path) -> None:
    example = Path(__file__).parents[2] / "deploy" / "members.example.toml"
    members = read_members(example)
    ids = [m["id"] for m in members["members"]]
    pki = tmp_path / "pki"
    init_network(pki, members["network"], ids)
    document = build_directory(pki, members, serial=1)
    directory = verify_directory(document, load_certificate(pki / "ca.pem"))
    roles = {m.id: m.role.value for m in directory.body.members}
    assert roles["EE-VASP"] == "private-sector" and roles["AL-ARO"] == "authority"


def test_topology_rendered_from_the_directory_confines_the_private_sector_member(
    network: NetworkLayout, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--directory", str(network.directory_file), "--directory-publisher", "secretariat"]
    assert main(["topology", "render", *args]) == 0
    definitions = json.loads(capsys.readouterr().out)
    topic = {(p["user"], p["exchange"]): p for p in definitions["topic_permissions"]}
    vasp = topic["LT-VASP", "xb.messages"]
    assert vasp["write"] == (
        r"^([^.]+\.(asset-inquiry-response|freeze-decision|receipt)\.{username}"
        r"|checkpoint\.{username})$"
    )
    assert vasp["read"] == r"^{username}\.(asset-inquiry|freeze-notice|receipt)\."
    assert topic["LT-VASP", "xb.cases"]["write"] == "(?!)"  # no case updates at all
    assert topic["AL-ARO", "xb.cases"]["write"] == r"^(see-pcn)\."

    def bound(queue: str) -> list[str]:
        keys = [b["routing_key"] for b in definitions["bindings"] if b["destination"] == queue]
        return sorted(keys)

    assert bound("xb.inbox.LT-VASP") == [
        "LT-VASP.asset-inquiry.*",
        "LT-VASP.freeze-notice.*",
        "LT-VASP.receipt.*",
    ]
    assert bound("xb.inbox.AL-ARO") == ["AL-ARO.#"]
    assert "xb.sub.LT-VASP" not in {q["name"] for q in definitions["queues"]}
    (publisher,) = [p for p in definitions["permissions"] if p["user"] == "secretariat"]
    assert (publisher["write"], publisher["read"]) == (r"^xb\.directory$", "^$")


def test_a_member_added_to_a_development_network_gets_the_next_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = init_network_dir(tmp_path / "net", ["AL-ARO", "RS-PPO"], bus="memory")
    args = ["--node", "EE-VASP", "--port", "8199", "--role", "private-sector"]
    assert main(["network", "add-node", str(layout.directory), *args]) == 0
    directory = verify_directory(layout.directory_file.read_bytes(), ca_of(layout))
    assert directory.serial == 2
    assert {m.id: m.role.value for m in directory.body.members}["EE-VASP"] == "private-sector"
    grown = NetworkLayout.load(layout.directory)
    assert grown.config("EE-VASP", environ={}).directory_path == layout.directory_file
    assert main(["network", "add-node", str(layout.directory), *args]) == 2  # already a member


def test_a_directory_cannot_make_a_private_sector_certificate_an_authority(
    tmp_path: Path,
) -> None:
    layout = init_network_dir(tmp_path / "net", ["AL-ARO", "RS-PPO"], bus="memory")
    grown = add_node(layout, "EE-VASP", port=8199, role="private-sector")
    cert = load_certificate(grown.pki_dir / "EE-VASP.pem")
    assert role_of(cert) == "private-sector"  # the CA certified the role

    def promoted(body: dict[str, Any]) -> None:
        next(m for m in body["members"] if m["id"] == "EE-VASP")["role"] = "authority"

    with pytest.raises(VerificationError, match="certified private-sector") as refused:
        verify_directory(resign(grown, promoted, write=False), ca_of(grown))
    assert refused.value.code == "directory.invalid"


def test_a_refused_directorys_chosen_field_name_is_cut_before_logs_and_audit(
    network: NetworkLayout,
) -> None:
    doc = json.loads(network.directory_file.read_bytes())
    doc["directory"]["x" * 10_000] = 1  # a field name the publisher chose, 10,000 long
    with pytest.raises(VerificationError) as refused:
        verify_directory(json.dumps(doc).encode(), ca_of(network))
    assert refused.value.code == "directory.malformed"
    assert len(refused.value.detail) < 300
