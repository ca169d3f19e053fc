"""A node's configuration: one TOML file per node, `EXCHANGE_*` environment variables on top.

`NodeConfig.load(path)` reads the file, applies overrides such as `EXCHANGE_AMQP_URL` or
`EXCHANGE_LIMITS__MAX_BODY_BYTES` (nested fields joined by `__`), resolves relative paths
(against the TOML's directory; an override's against the working directory) and refuses
anything unknown or invalid with a `ConfigError` that names the field. Secrets are never
inline: keys are paths and client tokens are stored as SHA-256 hashes.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from exchange.errors import ConfigError, FieldError
from exchange.model.case_update import CaseEvent
from exchange.model.common import CaseRef, MessageType, NetworkName, NodeId

ENV_PREFIX = "EXCHANGE_"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
PREFIX_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
TOKEN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # noqa: S105 (a pattern, not a secret)
SHA256_HEX_PATTERN = r"^[0-9a-f]{64}$"
AmqpUrl = Annotated[str, Field(pattern=r"^amqps?://")]
DATABASE_FILE = "node.sqlite3"
"""The node's one database: messages, outbox, inbox, case updates, peers and the audit log."""
EARLIER_FILES = ("store.sqlite3", "audit.sqlite3", "peers.sqlite3", "subscriptions.sqlite3")
"""The four files of the layout before the node's database was one file."""
MAX_WEBHOOK_SECRETS = 4


class Role(StrEnum):
    """What a local client may do: send and read, follow cases, audit, or everything."""

    CONTACT_POINT = "contact-point"
    SUBSCRIBER = "subscriber"
    AUDITOR = "auditor"
    ADMIN = "admin"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TokenConfig(_Section):
    """A local client's bearer token: its id (the audit actor), role and SHA-256 (hex)."""

    id: str = Field(pattern=TOKEN_ID_PATTERN)
    role: Role
    sha256: str = Field(
        pattern=SHA256_HEX_PATTERN,
        description="Hex SHA-256 of the token; the token itself is never stored.",
    )


class Limits(_Section):
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=16 * 1_048_576)
    max_skew_seconds: int = Field(default=300, ge=1, le=86_400)
    prefetch: int = Field(default=64, ge=1, le=2000)
    outbox_batch_size: int = Field(default=256, ge=1, le=10_000)
    publish_retry_min_seconds: float = Field(default=0.2, gt=0, le=3600)
    publish_retry_max_seconds: float = Field(default=30.0, gt=0, le=86_400)

    @model_validator(mode="after")
    def _backoff_ordered(self) -> Limits:
        if self.publish_retry_max_seconds < self.publish_retry_min_seconds:
            raise ValueError("publish_retry_max_seconds must be >= publish_retry_min_seconds")
        return self


class CheckpointSettings(_Section):
    every_entries: int = Field(default=1000, ge=1)
    every_seconds: float = Field(default=60.0, gt=0)


AUTO_UPDATE_TYPES = (MessageType.FREEZE_DECISION, MessageType.ASSET_INQUIRY_RESPONSE)
"""Messages that may trigger an automatic case update when sent or received."""


class WebhookConfig(_Section):
    """A URL that receives each case update of the network as a signed POST (Standard
    Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`)."""

    url: str = Field(pattern=r"^https?://[^\s]+$", max_length=2000)
    secret_paths: tuple[Path, ...] = Field(
        min_length=1,
        max_length=MAX_WEBHOOK_SECRETS,
        description="Files each holding a Standard Webhooks secret (`whsec_` + base64 of 24 to "
        "64 random bytes), newest first. Each delivery carries one signature per secret, so "
        "during a rotation the receiver may check either the new or the old one.",
    )
    insecure_http: bool = Field(
        default=False,
        description="Allow an http:// URL outside loopback: the updates then cross the network "
        "in clear. Without it such a URL is refused at start.",
    )
    max_tries: int = Field(default=8, ge=1, le=100)
    retry_min_seconds: float = Field(default=1.0, gt=0, le=3600)
    retry_max_seconds: float = Field(default=300.0, gt=0, le=86_400)
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    cases: tuple[CaseRef, ...] = Field(default=(), description="Only these cases (empty: all).")

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "secret_path" in data:
            raise ValueError(
                "secret_path became secret_paths, a list of secret files, newest first "
                '(e.g. secret_paths = ["hook.secret"])'
            )
        return data

    @model_validator(mode="after")
    def _backoff_ordered(self) -> WebhookConfig:
        if self.retry_max_seconds < self.retry_min_seconds:
            raise ValueError("retry_max_seconds must be >= retry_min_seconds")
        return self

    @model_validator(mode="after")
    def _tls_unless_loopback(self) -> WebhookConfig:
        if self.url.startswith("http://") and not self.insecure_http:
            host = urlsplit(self.url).hostname or ""
            if not is_loopback_host(host):
                raise ValueError(
                    f"{_without_query(self.url)} is plain http:// to {host or 'no host'}, not "
                    "loopback: use https://, or set insecure_http = true to send case updates "
                    "in clear"
                )
        return self


def is_loopback_host(host: str) -> bool:
    """Whether a URL's host is this machine: `localhost`, 127.0.0.0/8 or ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _without_query(url: str) -> str:
    """The URL without query or fragment (they may carry credentials)."""
    return url.split("?", 1)[0].split("#", 1)[0]


class AutoUpdates(_Section):
    """When this node emits a case update by itself (for a message it sends or receives)."""

    enabled: bool = True
    message_types: tuple[MessageType, ...] = AUTO_UPDATE_TYPES
    follow: Literal["known", "all"] = Field(
        default="known",
        description="known: cases that already have an update in the network; all: every case.",
    )

    @field_validator("message_types")
    @classmethod
    def _supported(cls, value: tuple[MessageType, ...]) -> tuple[MessageType, ...]:
        for kind in value:
            if kind not in AUTO_UPDATE_TYPES:
                allowed = ", ".join(t.value for t in AUTO_UPDATE_TYPES)
                raise ValueError(f"{kind.value} cannot trigger updates (only {allowed})")
        return value


class NetworkConfig(_Section):
    """This node's settings for a prosecutor network: the events it follows, its webhooks and
    automatic updates. Who belongs to the network is the signed directory's to say: the
    node fills `members` from it."""

    name: NetworkName
    members: tuple[NodeId, ...] = Field(
        default=(),
        description="Filled from the network directory; never set in the configuration.",
    )
    events: tuple[CaseEvent, ...] = Field(default=tuple(CaseEvent), min_length=1)
    cases: tuple[CaseRef, ...] | None = Field(
        default=None, description="Receive only these cases' updates (default: every case)."
    )
    auto_updates: AutoUpdates = AutoUpdates()
    webhooks: tuple[WebhookConfig, ...] = ()


class HttpsSettings(_Section):
    """HTTPS for local users: a server certificate (`exchange pki server`) and, optionally,
    the CA whose client certificates local users must present (mutual TLS)."""

    cert_path: Path = Field(description="The gateway's TLS server certificate (PEM).")
    key_path: Path = Field(description="Its private key (PEM, mode 0600).")
    client_ca_path: Path | None = Field(
        default=None,
        description="When set, a client without a certificate from this CA is refused.",
    )


class NodeConfig(BaseModel):
    """Everything one node needs to run; immutable once loaded."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    node_id: NodeId
    network: NetworkName
    listen_host: str = Field(default="127.0.0.1", min_length=1)
    listen_port: int = Field(default=8101, ge=0, le=65535)
    amqp_url: str = Field(default=DEFAULT_AMQP_URL, pattern=r"^amqps?://")
    amqp_failover_urls: tuple[AmqpUrl, ...] = Field(
        default=(),
        description="Other nodes of the broker's cluster, same scheme as amqp_url: tried in "
        "turn when amqp_url does not answer at start-up, and one after the other after a "
        "lost connection (EXCHANGE_AMQP_FAILOVER_URLS: comma-separated).",
    )
    bus: Literal["amqp", "memory"] = "amqp"
    topology_prefix: str = Field(default="xb", pattern=PREFIX_PATTERN)
    data_dir: Path
    key_path: Path | None = Field(
        default=None,
        description="The node's signing key (PEM, mode 0600), made on the node by `exchange "
        "pki request`. Either this or key_uri.",
    )
    key_uri: str | None = Field(
        default=None,
        pattern=r"^pkcs11:[^?]*$",
        max_length=1000,
        description="The signing key in a PKCS#11 token, as an RFC 7512 URI "
        "(pkcs11:token=LABEL;object=LABEL): it signs there (CKM_EDDSA) and never leaves the "
        "token. Needs pkcs11_module and pkcs11_pin_path. Either this or key_path.",
    )
    pkcs11_module: Path | None = Field(
        default=None, description="The token's PKCS#11 module (a shared library)."
    )
    pkcs11_pin_path: Path | None = Field(
        default=None, description="A file holding the token's user PIN (mode 0600)."
    )
    cert_path: Path
    ca_path: Path
    crl_path: Path | None = Field(
        default=None,
        description="A CRL file (PEM) to watch besides the directory's: re-read when it "
        "changes, and never replaced by an older one. The directory carries the network's "
        "CRL, so this is only for revoking faster than the directory is re-issued.",
    )
    revocation: Literal["on", "off"] = Field(
        default="on",
        description="off: run without a CRL, accepting revoked certificates (a warning at "
        "every start). Never in production.",
    )
    directory_path: Path | None = Field(
        default=None,
        description="A signed network directory to start from (`exchange directory build`). "
        "The node then follows the directory stream on the broker and keeps the newest it "
        "verified in its database; this file is read only at start.",
    )
    directory_poll_seconds: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="How often the node reads the broker's directory stream for a newer one.",
    )
    tokens: tuple[TokenConfig, ...] = ()
    limits: Limits = Limits()
    checkpoint: CheckpointSettings = CheckpointSettings()
    networks: tuple[NetworkConfig, ...] = ()
    broker_ca_path: Path | None = Field(
        default=None,
        description="CA of the broker's TLS certificate for amqps:// (default: ca_path); "
        "the node's certificate and key log it in (x509).",
    )
    amqp_provisioned: bool = Field(
        default=False,
        description="The virtual host was set up by `exchange topology apply`: only check "
        "that the node's queues exist (a node's broker user may not declare them).",
    )
    https: HttpsSettings | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_static_membership(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and ("nodes" in data or "certs_dir" in data):
            raise ValueError(
                "nodes and certs_dir are gone: the network's members and their certificates "
                "come from the signed network directory (set directory_path to the file "
                "`exchange directory build` wrote)"
            )
        return data

    @field_validator("tokens")
    @classmethod
    def _tokens_unique(cls, value: tuple[TokenConfig, ...]) -> tuple[TokenConfig, ...]:
        ids = [t.id for t in value]
        if len(set(ids)) != len(ids):
            raise ValueError("token ids must not repeat")
        if len({t.sha256 for t in value}) != len(value):
            raise ValueError("two tokens have the same hash")
        return value

    @model_validator(mode="after")
    def _failover_same_scheme(self) -> NodeConfig:
        tls = self.amqp_url.startswith("amqps://")
        odd = [u for u in self.amqp_failover_urls if u.startswith("amqps://") != tls]
        if odd:
            raise ValueError(
                "amqp_failover_urls must use the scheme of amqp_url "
                f"({'amqps' if tls else 'amqp'}://), not: {', '.join(odd)}"
            )
        if len(set((self.amqp_url, *self.amqp_failover_urls))) != 1 + len(self.amqp_failover_urls):
            raise ValueError("amqp_failover_urls must not repeat amqp_url or each other")
        return self

    @model_validator(mode="after")
    def _one_signing_key(self) -> NodeConfig:
        if (self.key_path is None) == (self.key_uri is None):
            raise ValueError("set exactly one of key_path (a key file) and key_uri (a token key)")
        token = {"pkcs11_module": self.pkcs11_module, "pkcs11_pin_path": self.pkcs11_pin_path}
        if self.key_uri is not None:
            missing = [name for name, value in token.items() if value is None]
            if missing:
                raise ValueError(f"key_uri needs {' and '.join(missing)}")
            if self.amqp_url.startswith("amqps://"):
                raise ValueError(
                    "amqps:// logs in to the broker with the node's key as a file (TLS client "
                    "certificate); a token key signs envelopes only: use key_path, or amqp://"
                )
        elif any(value is not None for value in token.values()):
            raise ValueError("pkcs11_module and pkcs11_pin_path go with key_uri only")
        return self

    @model_validator(mode="after")
    def _revocation_needs_a_crl(self) -> NodeConfig:
        if self.revocation == "off" and self.crl_path is not None:
            raise ValueError('revocation = "off" and a crl_path: remove one of them')
        return self

    @model_validator(mode="after")
    def _networks_valid(self) -> NodeConfig:
        names = [n.name for n in self.networks]
        if len(set(names)) != len(names):
            raise ValueError("network names must not repeat")
        for network in self.networks:
            if network.members:
                raise ValueError(
                    f"network {network.name}: members come from the signed network directory; "
                    "remove them here"
                )
        return self

    @property
    def database_path(self) -> Path:
        """The node's SQLite database: every fact it keeps and its audit log, so that a fact
        and the audit entries it owes commit in one transaction."""
        return self.data_dir / DATABASE_FILE

    @property
    def audit_path(self) -> Path:
        """Where `exchange audit verify` finds the node's audit log (its database)."""
        return self.database_path

    @classmethod
    def load(cls, path: str | Path, *, environ: Mapping[str, str] | None = None) -> NodeConfig:
        """Read `path` (TOML), apply `EXCHANGE_*` overrides from `environ` (default: os.environ)."""
        path = Path(path)
        try:
            with path.open("rb") as fh:
                document = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"configuration file {path} does not exist") from None
        except OSError as exc:
            raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
        base = path.resolve().parent
        _resolve_paths(document, base)
        overrides = _env_overrides(os.environ if environ is None else environ)
        _resolve_paths(overrides, Path.cwd())
        merged = _merge(document, overrides)
        return cls.from_mapping(merged, source=str(path))

    @classmethod
    def from_mapping(
        cls, document: Mapping[str, Any], *, source: str = "configuration"
    ) -> NodeConfig:
        """Validate an already-parsed document; errors name each failing field."""
        try:
            return cls.model_validate(document)
        except ValidationError as exc:
            errors = [
                FieldError(".".join(str(p) for p in e["loc"]) or "(root)", e["msg"])
                for e in exc.errors(include_url=False)
            ]
            summary = "; ".join(f"{e.path}: {e.message}" for e in errors)
            raise ConfigError(f"invalid {source}: {summary}", errors=errors) from None


_PATH_FIELDS = (
    "data_dir",
    "key_path",
    "pkcs11_module",
    "pkcs11_pin_path",
    "cert_path",
    "ca_path",
    "crl_path",
    "directory_path",
    "broker_ca_path",
)
_HTTPS_PATH_FIELDS = ("cert_path", "key_path", "client_ca_path")


def _resolve_paths(document: dict[str, Any], base: Path) -> None:
    for name in _PATH_FIELDS:
        _resolve(document, name, base)
    https = document.get("https")
    if isinstance(https, dict):
        for name in _HTTPS_PATH_FIELDS:
            _resolve(https, name, base)
    networks = document.get("networks")
    for network in networks if isinstance(networks, list) else ():
        hooks = network.get("webhooks") if isinstance(network, dict) else None
        for hook in hooks if isinstance(hooks, list) else ():
            paths = hook.get("secret_paths") if isinstance(hook, dict) else None
            if isinstance(paths, list):
                hook["secret_paths"] = [_resolved(p, base) for p in paths]


def _resolve(document: dict[str, Any], name: str, base: Path) -> None:
    if name in document:
        document[name] = _resolved(document[name], base)


def _resolved(value: Any, base: Path) -> Any:
    if isinstance(value, str) and value:
        candidate = Path(value).expanduser()
        return str(candidate if candidate.is_absolute() else base / candidate)
    return value


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """`EXCHANGE_FOO__BAR=1` -> {"foo": {"bar": "1"}} for known top-level fields only.

    Other `EXCHANGE_*` variables (the log level, the test suite's broker URL for tools) are
    not configuration fields and are left alone; unknown nested names are refused.
    """
    known = NodeConfig.model_fields
    out: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        parts = key[len(ENV_PREFIX) :].lower().split("__")
        if parts[0] not in known:
            continue
        value: Any = raw
        if raw.lstrip().startswith(("[", "{")):
            try:
                value = json.loads(raw)
            except ValueError:
                raise ConfigError(
                    f"environment variable {key} ({'.'.join(parts)}) is not valid JSON",
                    errors=[FieldError(".".join(parts), "not valid JSON")],
                ) from None
        elif parts == ["amqp_failover_urls"]:
            value = [n.strip() for n in raw.split(",") if n.strip()]
        target = out
        for part in parts[:-1]:
            nested = target.setdefault(part, {})
            if not isinstance(nested, dict):
                raise ConfigError(f"environment variable {key} conflicts with another override")
            target = nested
        target[parts[-1]] = value
    return out


def _merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = _merge(current, value)
        else:
            merged[key] = value
    return merged
