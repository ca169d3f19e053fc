"""A node's configuration: TOML file, EXCHANGE_* overrides, relative paths, clear errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from exchange.config import NodeConfig, Role
from exchange.errors import ConfigError

HASH = hashlib.sha256(b"secret-token").hexdigest()

BASE_TOML = f"""
node_id = "AL-ARO"
network = "see-arn"
listen_port = 8101
amqp_url = "amqp://guest:guest@127.0.0.1:5672/"
data_dir = "data/AL-ARO"
key_path = "pki/AL-ARO.key"
cert_path = "pki/AL-ARO.pem"
ca_path = "pki/ca.pem"
directory_path = "pki/directory.json"

[[tokens]]
id = "contact-point"
role = "contact-point"
sha256 = "{HASH}"

[limits]
max_body_bytes = 65536
"""


def write(tmp_path: Path, text: str = BASE_TOML, name: str = "node.toml") -> Path:
    path = tmp_path / "conf" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_toml_file_loads_with_defaults_and_paths_relative_to_the_file(tmp_path: Path) -> None:
    path = write(tmp_path)
    config = NodeConfig.load(path, environ={})
    assert config.node_id == "AL-ARO"
    assert config.network == "see-arn"
    assert config.listen_host == "127.0.0.1"
    assert config.bus == "amqp"
    assert config.topology_prefix == "xb"
    conf_dir = path.parent.resolve()
    assert config.key_path == conf_dir / "pki" / "AL-ARO.key"
    assert config.data_dir == conf_dir / "data" / "AL-ARO"
    # one database holds every fact and the audit log, so they commit together
    assert config.database_path == conf_dir / "data" / "AL-ARO" / "node.sqlite3"
    assert config.audit_path == config.database_path
    assert config.directory_path == conf_dir / "pki" / "directory.json"
    assert config.tokens[0].role is Role.CONTACT_POINT
    assert config.limits.max_body_bytes == 65536
    assert config.limits.max_skew_seconds == 300
    assert config.checkpoint.every_entries >= 1


def test_the_config_is_frozen(tmp_path: Path) -> None:
    config = NodeConfig.load(write(tmp_path), environ={})
    with pytest.raises(ValueError, match="frozen"):
        config.listen_port = 1  # type: ignore[misc]


def test_environment_variables_override_the_file_including_nested_fields(tmp_path: Path) -> None:
    env = {
        "EXCHANGE_AMQP_URL": "amqp://u:p@10.0.0.1:5672/vh",
        "EXCHANGE_LISTEN_PORT": "9000",
        "EXCHANGE_LIMITS__PREFETCH": "8",
        "EXCHANGE_CHECKPOINT__EVERY_SECONDS": "2.5",
        "EXCHANGE_DIRECTORY_POLL_SECONDS": "0.5",
        "EXCHANGE_BUS": "memory",
        "EXCHANGE_LOG_LEVEL": "DEBUG",  # not a configuration field: left alone
        "OTHER_LISTEN_PORT": "1",
    }
    config = NodeConfig.load(write(tmp_path), environ=env)
    assert config.amqp_url == "amqp://u:p@10.0.0.1:5672/vh"
    assert config.listen_port == 9000
    assert config.limits.prefetch == 8
    assert config.limits.max_body_bytes == 65536  # the rest of the section is kept
    assert config.checkpoint.every_seconds == 2.5
    assert config.directory_poll_seconds == 0.5
    assert config.bus == "memory"


def test_a_path_given_in_the_environment_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = NodeConfig.load(write(tmp_path), environ={"EXCHANGE_DATA_DIR": "elsewhere"})
    assert config.data_dir == tmp_path / "elsewhere"


def test_tokens_can_be_given_as_json_in_the_environment(tmp_path: Path) -> None:
    env = {"EXCHANGE_TOKENS": f'[{{"id": "ops", "role": "admin", "sha256": "{HASH}"}}]'}
    config = NodeConfig.load(write(tmp_path), environ=env)
    assert [(t.id, t.role) for t in config.tokens] == [("ops", Role.ADMIN)]


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"EXCHANGE_LISTEN_PORT": "seventy"}, "listen_port"),
        ({"EXCHANGE_LISTEN_PORT": "70000"}, "listen_port"),
        ({"EXCHANGE_BUS": "kafka"}, "bus"),
        ({"EXCHANGE_LIMITS__MAX_BODY_BYTES": "-1"}, "limits.max_body_bytes"),
        ({"EXCHANGE_LIMITS__UNKNOWN": "1"}, "limits.unknown"),
        ({"EXCHANGE_AMQP_URL": "http://example"}, "amqp_url"),
        ({"EXCHANGE_NODE_ID": "al-aro"}, "node_id"),
        ({"EXCHANGE_TOPOLOGY_PREFIX": "x.b"}, "topology_prefix"),
        ({"EXCHANGE_TOKENS": "[{bad json"}, "tokens"),
    ],
)
def test_a_bad_override_is_refused_naming_the_field(
    tmp_path: Path, env: dict[str, str], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        NodeConfig.load(write(tmp_path), environ=env)
    assert info.value.code == "config.invalid"
    assert field in str(info.value)
    assert any(e.path.startswith(field) for e in info.value.errors)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (("max_body_bytes = 65536", "max_body_bytes = 65536\nsurprise = 1"), "limits.surprise"),
        (('network = "see-arn"', 'network = "see-arn"\ncolour = "blue"'), "colour"),
        (('node_id = "AL-ARO"\n', ""), "node_id"),
        ((f'sha256 = "{HASH}"', 'sha256 = "plain-secret-token"'), "tokens.0.sha256"),
        (('role = "contact-point"', 'role = "root"'), "tokens.0.role"),
        (('network = "see-arn"', 'network = "see-arn"\nnodes = ["AL-ARO"]'), "nodes"),
        (('network = "see-arn"', 'network = "see-arn"\ncerts_dir = "pki"'), "certs_dir"),
        (
            ("[limits]", '[[networks]]\nname = "pcn"\nmembers = ["AL-ARO", "RS-PPO"]\n\n[limits]'),
            "members come from the signed network directory",
        ),
    ],
)
def test_a_bad_file_is_refused_naming_the_field(
    tmp_path: Path, change: tuple[str, str], field: str
) -> None:
    old, new = change
    assert old in BASE_TOML
    with pytest.raises(ConfigError) as info:
        NodeConfig.load(write(tmp_path, BASE_TOML.replace(old, new, 1)), environ={})
    assert field in str(info.value)


def test_two_tokens_with_the_same_id_are_refused(tmp_path: Path) -> None:
    other = hashlib.sha256(b"other").hexdigest()
    text = BASE_TOML + f'\n[[tokens]]\nid = "contact-point"\nrole = "admin"\nsha256 = "{other}"\n'
    text = text.replace("[limits]\nmax_body_bytes = 65536\n", "") + (
        "\n[limits]\nmax_body_bytes = 65536\n"
    )
    with pytest.raises(ConfigError, match="token ids must not repeat"):
        NodeConfig.load(write(tmp_path, text), environ={})


def test_a_missing_or_unparsable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        NodeConfig.load(tmp_path / "absent.toml", environ={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        NodeConfig.load(write(tmp_path, "node_id = ["), environ={})


def test_failover_brokers_are_given_in_the_file_or_comma_separated_in_the_environment(
    tmp_path: Path,
) -> None:
    others = ["amqp://guest:guest@10.0.0.2:5672/", "amqp://guest:guest@10.0.0.3:5672/"]
    assert NodeConfig.load(write(tmp_path), environ={}).amqp_failover_urls == ()
    text = BASE_TOML.replace(
        'network = "see-arn"', f'network = "see-arn"\namqp_failover_urls = {others!r}'
    )
    assert NodeConfig.load(write(tmp_path, text), environ={}).amqp_failover_urls == tuple(others)
    env = {"EXCHANGE_AMQP_FAILOVER_URLS": " , ".join(others)}
    assert NodeConfig.load(write(tmp_path), environ=env).amqp_failover_urls == tuple(others)


@pytest.mark.parametrize(
    ("failover", "says"),
    [
        ("amqps://10.0.0.2:5671/", "must use the scheme of amqp_url"),
        ("amqp://guest:guest@127.0.0.1:5672/", "must not repeat"),
        ("http://10.0.0.2/", "amqp_failover_urls"),
    ],
)
def test_a_failover_broker_of_another_scheme_or_repeated_is_refused(
    tmp_path: Path, failover: str, says: str
) -> None:
    env = {"EXCHANGE_AMQP_FAILOVER_URLS": failover}
    with pytest.raises(ConfigError) as info:
        NodeConfig.load(write(tmp_path), environ=env)
    assert info.value.code == "config.invalid"
    assert says in str(info.value)


def test_the_connection_hook_that_failover_relies_on_exists_in_aio_pika() -> None:
    # FailoverConnection overrides the (name-mangled) method in which aio-pika's robust
    # connection makes each attempt; a release that renames it must fail here, loudly.
    import aio_pika

    from exchange.transport.failover import _CONNECT_ATTEMPT, FailoverConnection

    assert callable(getattr(aio_pika.RobustConnection, _CONNECT_ATTEMPT, None))
    assert _CONNECT_ATTEMPT in vars(FailoverConnection)


TOKEN_KEY = """key_uri = "pkcs11:token=AL-ARO;object=AL-ARO-2026"
pkcs11_module = "/usr/lib/softhsm/libsofthsm2.so"
pkcs11_pin_path = "pki/token.pin"
"""


def test_a_signing_key_in_a_token_replaces_the_key_file_and_its_pin_path_is_resolved(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, BASE_TOML.replace('key_path = "pki/AL-ARO.key"\n', TOKEN_KEY))
    config = NodeConfig.load(path, environ={})
    assert config.key_path is None
    assert config.key_uri == "pkcs11:token=AL-ARO;object=AL-ARO-2026"
    assert config.pkcs11_module == Path("/usr/lib/softhsm/libsofthsm2.so")
    assert config.pkcs11_pin_path == path.parent.resolve() / "pki" / "token.pin"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (BASE_TOML.replace('key_path = "pki/AL-ARO.key"\n', ""), "exactly one of key_path"),
        (
            BASE_TOML.replace('key_path = "pki/AL-ARO.key"\n', 'key_path = "k.key"\n' + TOKEN_KEY),
            "exactly one of key_path",
        ),
        (
            BASE_TOML.replace(
                'key_path = "pki/AL-ARO.key"\n', 'key_uri = "pkcs11:token=T;object=O"\n'
            ),
            "key_uri needs pkcs11_module and pkcs11_pin_path",
        ),
        (
            BASE_TOML.replace('ca_path = "pki/ca.pem"\n', 'ca_path = "c"\npkcs11_module = "m"\n'),
            "go with key_uri only",
        ),
        (
            BASE_TOML.replace('key_path = "pki/AL-ARO.key"\n', TOKEN_KEY).replace(
                "amqp://guest:guest@", "amqps://"
            ),
            "a token key signs envelopes only",
        ),
        (
            BASE_TOML.replace('key_path = "pki/AL-ARO.key"\n', TOKEN_KEY).replace(
                "object=AL-ARO-2026", "object=AL-ARO-2026?pin-value=1234"
            ),
            "key_uri",
        ),
    ],
    ids=["no-key", "both", "uri-alone", "module-alone", "amqps", "pin-in-uri"],
)
def test_the_signing_key_is_configured_once_and_completely(
    tmp_path: Path, text: str, why: str
) -> None:
    with pytest.raises(ConfigError, match=why):
        NodeConfig.load(write(tmp_path, text), environ={})
