"""`exchange network init`: a complete development network whose secrets stay out of configs."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from exchange.cli import main
from exchange.config import Role
from exchange.crypto.pki import load_certificate
from exchange.directory.document import verify_directory
from exchange.directory.view import load_view
from exchange.errors import ExchangeError
from exchange.gateway.auth import Authenticator
from exchange.network import NetworkLayout, init_network_dir

NODES = ["AL-ARO", "RS-PPO", "MD-ARO"]


def test_init_writes_pki_configs_data_dirs_and_a_private_network_file(tmp_path: Path) -> None:
    layout = init_network_dir(tmp_path / "net", NODES, network="see-arn", base_port=8201)
    root = (tmp_path / "net").resolve()
    for name in ("ca.pem", "crl.pem", *(f"{n}.pem" for n in NODES), *(f"{n}.key" for n in NODES)):
        assert (root / "pki" / name).is_file(), name
    # the secretariat's members.toml, and the directory signed from it that nodes start on
    assert "[[members]]" in (root / "members.toml").read_text()
    directory = verify_directory(
        layout.directory_file.read_bytes(), load_certificate(root / "pki" / "ca.pem")
    )
    assert [m.id for m in directory.body.members] == NODES and directory.serial == 1
    doc = json.loads((root / "network.json").read_text())
    assert doc["network"] == "see-arn"
    assert list(doc["nodes"]) == NODES
    assert doc["nodes"]["RS-PPO"]["url"] == "http://127.0.0.1:8202"
    assert set(doc["nodes"]["AL-ARO"]["tokens"]) == {r.value for r in Role}
    assert stat.S_IMODE((root / "network.json").stat().st_mode) == 0o600
    assert NetworkLayout.load(root) == layout

    for node in NODES:
        config = layout.config(node, environ={})
        assert config.node_id == node and config.directory_path == layout.directory_file
        assert load_view(config).recipients == set(NODES) - {node}
        assert config.key_path == root / "pki" / f"{node}.key"
        assert config.data_dir.is_dir()
        toml = layout.nodes[node].config_path.read_text()
        assert all(other not in toml for other in NODES if other != node)  # never the others
        # Only hashes are configured; every clear-text token authenticates with its role.
        authenticator = Authenticator.from_config(config)
        for role, token in layout.nodes[node].tokens.items():
            assert token not in toml
            assert authenticator.authenticate(f"Bearer {token}").role.value == role
    all_tokens = [t for n in layout.nodes.values() for t in n.tokens.values()]
    assert len(set(all_tokens)) == len(all_tokens)


def test_init_refuses_to_overwrite_an_existing_network(tmp_path: Path) -> None:
    init_network_dir(tmp_path, NODES[:2])
    with pytest.raises(ExchangeError, match="already holds a network"):
        init_network_dir(tmp_path, NODES[:2])


@pytest.mark.parametrize(
    ("nodes", "kwargs", "message"),
    [
        (["AL-ARO"], {}, "at least two"),
        (["AL-ARO", "al-aro"], {}, "not a node id"),
        (["AL-ARO", "AL-ARO"], {}, "must not repeat"),
        (["AL-ARO", "RS.PPO"], {}, "not a node id"),
        (NODES, {"network": "Bad Name"}, "not a network name"),
        (NODES, {"base_port": 65534}, "no room"),
    ],
)
def test_init_refuses_bad_input_before_writing_anything(
    tmp_path: Path, nodes: list[str], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ExchangeError, match=message) as info:
        init_network_dir(tmp_path / "net", nodes, **kwargs)  # type: ignore[arg-type]
    assert info.value.code == "usage"
    assert not (tmp_path / "net").exists()


def test_the_cli_writes_a_memory_bus_network_and_exits_2_on_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "cli-net"
    code = main(
        ["network", "init", str(target), "--nodes", "AL-ARO,RS-PPO", "--bus", "memory",
         "--prefix", "tdemo", "--network", "pcoc", "--amqp-url", "amqp://u:p@127.0.0.1:5673/v"]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "AL-ARO" in out and "network.json" in out
    config = NetworkLayout.load(target).config("RS-PPO", environ={})
    assert (config.bus, config.topology_prefix, config.network) == ("memory", "tdemo", "pcoc")
    assert config.amqp_url == "amqp://u:p@127.0.0.1:5673/v"
    assert main(["network", "init", str(tmp_path / "x"), "--nodes", "AL-ARO,bad"]) == 2


def test_a_new_token_never_starts_with_a_dash_a_command_line_would_take_it_for_an_option() -> None:
    from exchange.network import new_token

    tokens = [new_token() for _ in range(2000)]
    assert not any(t.startswith("-") for t in tokens)
    assert len(set(tokens)) == len(tokens) and all(len(t) == 43 for t in tokens)
