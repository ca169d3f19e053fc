"""Prosecutor networks in a node's configuration and in `exchange network init`; webhook
signatures as a receiver checks them; SSE frames on the wire."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

from exchange.cli import main
from exchange.config import NodeConfig
from exchange.directory.view import load_view
from exchange.errors import ConfigError, ExchangeError
from exchange.network import NetworkLayout, init_network_dir
from exchange.subscriptions import sse, webhook_signing

NODES = ["AL-ARO", "RS-PPO", "MD-ARO", "KZ-ARC"]


def test_network_init_writes_each_network_into_its_members_configs_only(tmp_path: Path) -> None:
    layout = init_network_dir(
        tmp_path / "net", NODES, networks={"see-pcn": ["AL-ARO", "RS-PPO", "MD-ARO"]}
    )
    assert NetworkLayout.load(layout.directory) == layout
    assert layout.networks == {"see-pcn": ("AL-ARO", "RS-PPO", "MD-ARO")}
    al = layout.config("AL-ARO", environ={})
    (pcn,) = load_view(al).member_networks()
    assert (pcn.name, pcn.members) == ("see-pcn", ("AL-ARO", "RS-PPO", "MD-ARO"))
    assert pcn.auto_updates.enabled and pcn.cases is None and len(pcn.events) == 15
    assert al.networks[0].members == ()  # the directory names the members, not the TOML
    kz = layout.config("KZ-ARC", environ={})
    assert kz.networks == () and load_view(kz).member_networks() == ()


def test_the_cli_takes_prosecutor_networks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["network", "init", str(tmp_path / "n"), "--nodes", "AL-ARO,RS-PPO,MD-ARO",
         "--prosecutor-network", "see-pcn=AL-ARO,RS-PPO", "--base-port", "8301"]
    )  # fmt: skip
    assert code == 0
    assert "prosecutor network see-pcn: AL-ARO, RS-PPO" in capsys.readouterr().out
    assert main(["network", "init", str(tmp_path / "m"), "--nodes", "AL-ARO,RS-PPO",
                 "--prosecutor-network", "see-pcn"]) == 2  # fmt: skip


@pytest.mark.parametrize(
    ("networks", "message"),
    [
        ({"see-pcn": ["AL-ARO"]}, "two or more"),
        ({"see-pcn": ["AL-ARO", "XX-NONE"]}, "not nodes of this network"),
        ({"See PCN": ["AL-ARO", "RS-PPO"]}, "not a network name"),
    ],
)
def test_network_init_refuses_bad_networks(
    tmp_path: Path, networks: dict[str, list[str]], message: str
) -> None:
    with pytest.raises(ExchangeError, match=message):
        init_network_dir(tmp_path, NODES, networks=networks)


def write_config(tmp_path: Path, networks: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(
        'node_id = "AL-ARO"\nnetwork = "see-arn"\ndata_dir = "data"\nkey_path = "k"\n'
        'cert_path = "c"\nca_path = "ca"\ndirectory_path = "directory.json"\n' + networks
    )
    return path


def test_webhooks_load_with_their_secret_paths_relative_to_the_file(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        '[[networks]]\nname = "see-pcn"\ncases = ["C-1"]\n'
        '[networks.auto_updates]\nfollow = "all"\n'
        '[[networks.webhooks]]\nurl = "https://hooks.example/x"\n'
        'secret_paths = ["new.secret", "/etc/old.secret"]\nmax_tries = 3\n',
    )
    config = NodeConfig.load(path, environ={})
    (hook,) = config.networks[0].webhooks
    assert hook.secret_paths == (tmp_path / "new.secret", Path("/etc/old.secret"))
    assert hook.max_tries == 3 and config.networks[0].cases == ("C-1",)
    assert config.networks[0].auto_updates.follow == "all"
    # case updates live in the node's one database, beside its messages and audit log
    assert config.database_path == tmp_path / "data" / "node.sqlite3"


@pytest.mark.parametrize(
    ("networks", "field"),
    [
        (
            '[[networks]]\nname = "see-pcn"\nmembers = ["AL-ARO", "KZ-ARC"]\n',
            "members come from the signed network directory",
        ),
        (
            '[[networks]]\nname = "x"\n[[networks]]\nname = "x"\n',
            "network names must not repeat",
        ),
        ('[[networks]]\nname = "x"\nevents = ["x"]\n', "events"),
        (
            '[[networks]]\nname = "x"\n'
            '[[networks.webhooks]]\nurl = "ftp://x"\nsecret_paths = ["s"]\n',
            "url",
        ),
        (
            '[[networks]]\nname = "x"\n'
            '[[networks.webhooks]]\nurl = "https://x.example/"\nsecret_paths = []\n',
            "secret_paths",
        ),
        (
            '[[networks]]\nname = "x"\n'
            '[[networks.webhooks]]\nurl = "https://x.example/"\nsecret_path = "s"\n',
            "secret_path became secret_paths",
        ),
    ],
)
def test_bad_networks_are_refused_naming_the_problem(
    tmp_path: Path, networks: str, field: str
) -> None:
    with pytest.raises(ConfigError, match=field):
        NodeConfig.load(write_config(tmp_path, networks), environ={})


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example/x",
        "http://10.0.0.7:8080/x",
        "http://127.0.0.1.nip.io/x",
        "http://[::ffff:10.0.0.1]/x",
    ],
)
def test_a_plain_http_webhook_outside_loopback_is_refused_at_start(
    tmp_path: Path, url: str
) -> None:
    hook = f'[[networks.webhooks]]\nurl = "{url}?token=t"\nsecret_paths = ["s"]\n'
    networks = '[[networks]]\nname = "x"\n' + hook
    with pytest.raises(ConfigError, match=r"plain http:// .* not loopback") as refused:
        NodeConfig.load(write_config(tmp_path, networks), environ={})
    assert "token=" not in str(refused.value)  # the query may carry a credential
    opted_in = write_config(tmp_path, networks + "insecure_http = true\n")
    assert NodeConfig.load(opted_in, environ={}).networks[0].webhooks[0].insecure_http


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9000/x", "http://localhost/x", "http://[::1]:80/x", "https://a.example"],
)
def test_https_and_loopback_webhooks_need_no_opt_in(tmp_path: Path, url: str) -> None:
    hook = f'[[networks.webhooks]]\nurl = "{url}"\nsecret_paths = ["s"]\n'
    networks = '[[networks]]\nname = "x"\n' + hook
    assert NodeConfig.load(write_config(tmp_path, networks), environ={}).networks[0].webhooks


def test_a_webhook_signature_verifies_only_for_its_id_body_secret_and_time() -> None:
    new, old = b"n" * 32, b"o" * 32
    body = b'{"id":"1"}'
    headers = webhook_signing.signed_headers([new, old], "msg_1", body)
    assert headers[webhook_signing.SIGNATURE_HEADER].count("v1,") == 2  # one per secret
    assert webhook_signing.verify(new, body, headers)
    assert webhook_signing.verify(old, body, headers)  # a receiver not rotated yet
    assert not webhook_signing.verify(new, body + b" ", headers)  # altered body
    assert not webhook_signing.verify(b"t" * 32, body, headers)  # another secret
    assert not webhook_signing.verify(new, body, {**headers, "webhook-id": "msg_2"})  # other id
    later = time.time() + 3600
    assert not webhook_signing.verify(new, body, headers, now=later)  # replayed an hour later
    assert not webhook_signing.verify(new, body, {**headers, "webhook-timestamp": "x"})


def test_a_webhook_secret_must_be_a_standard_webhooks_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        webhook_signing.read_secret(tmp_path / "missing")
    bad = {
        "hex": ("0123456789abcdef" * 4, "does not start with whsec_"),
        "short": ("whsec_" + base64.b64encode(b"x" * 16).decode(), "holds 16 bytes"),
        "junk": ("whsec_not base64!", "not base64"),
        "binary": ("\xff\xfe", "does not start with whsec_"),
    }
    for name, (text, message) in bad.items():
        (tmp_path / name).write_text(text, encoding="latin-1")
        with pytest.raises(ConfigError, match=message):
            webhook_signing.read_secret(tmp_path / name)
    secret = webhook_signing.new_secret()
    (tmp_path / "ok").write_text(secret + "\n")
    assert webhook_signing.read_secret(tmp_path / "ok") == base64.b64decode(secret[6:])


async def test_sse_frames_round_trip_through_the_parser() -> None:
    async def lines():  # type: ignore[no-untyped-def]
        wire = sse.retry_frame(2000) + sse.HEARTBEAT + sse.frame(7, b'{"a":1}')
        wire += sse.frame(8, b'{"b":2}')
        for line in wire.splitlines(keepends=True):
            yield line

    events = [e async for e in sse.parse_events(lines())]
    assert [(e.id, e.event, e.data) for e in events] == [
        ("7", "case-update", '{"a":1}'),
        ("8", "case-update", '{"b":2}'),
    ]
    with pytest.raises(ValueError, match="single line"):
        sse.frame(1, b"a\nb")
