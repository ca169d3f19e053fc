"""The network as this node sees it now: the directory in use, and what it allows.

`NetworkView` holds the verified directory the node runs on and answers what the gateway,
the relay and the case-update service ask: who is a member, which prosecutor networks this
node belongs to (the directory's membership with this node's own settings for each), and
what each member's role may send and receive. `replace` swaps in a newer directory and
brings the trust store along (certificates, members and CRL), so that a member removed from
the directory is refused from that serial on.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from exchange.config import NetworkConfig, NodeConfig
from exchange.crypto.pki import load_certificate
from exchange.crypto.verify import TrustStore
from exchange.directory.document import MemberRole, VerifiedDirectory, verify_directory
from exchange.errors import ExchangeError
from exchange.model.common import MessageType


class NetworkView:
    """The current directory, for one node. Replaced as a whole, never edited."""

    def __init__(self, config: NodeConfig, trust: TrustStore, directory: VerifiedDirectory) -> None:
        self.config = config
        self.node_id = config.node_id
        self.trust = trust
        self._listeners: list[Callable[[VerifiedDirectory], None]] = []
        self._directory = directory
        self._apply(directory)

    @property
    def directory(self) -> VerifiedDirectory:
        return self._directory

    @property
    def serial(self) -> int:
        return self._directory.serial

    def expired(self, now: datetime | None = None) -> bool:
        return self._directory.expired(now)

    def on_replace(self, listener: Callable[[VerifiedDirectory], None]) -> None:
        self._listeners.append(listener)

    def check_fits(self, directory: VerifiedDirectory) -> None:
        """`directory.invalid` for a directory this node cannot run on: one that does not
        list it (removal is the secretariat's to do by stopping the node, not by surprise)."""
        if not any(m.id == self.node_id for m in directory.body.members):
            raise ExchangeError(
                f"directory serial {directory.serial} does not list this node {self.node_id}",
                code="directory.invalid",
            )

    def replace(self, directory: VerifiedDirectory) -> None:
        """Use `directory` from now on (the caller checked that its serial is higher)."""
        self._apply(directory)
        self._directory = directory
        for listener in self._listeners:
            listener(directory)

    def _apply(self, directory: VerifiedDirectory) -> None:
        body = directory.body
        own = next((m for m in body.members if m.id == self.node_id), None)
        if own is None:
            raise ExchangeError(
                f"directory serial {body.serial} does not list this node {self.node_id}",
                code="directory.invalid",
            )
        self._roles = {m.id: m.role for m in body.members}
        self._members = frozenset(self._roles)
        self._send = {role: frozenset(rule.send) for role, rule in body.permissions.items()}
        self._receive = {role: frozenset(rule.receive) for role, rule in body.permissions.items()}
        local = {n.name: n for n in self.config.networks}
        self._networks = {
            n.name: local.get(n.name, NetworkConfig(name=n.name)).model_copy(
                update={"members": n.members}
            )
            for n in body.networks
        }
        self.trust.use_members(directory.certificates)

    # -- membership ------------------------------------------------------------------------
    @property
    def members(self) -> frozenset[str]:
        return self._members

    @property
    def recipients(self) -> frozenset[str]:
        """The members this node may address: every member but itself."""
        return self._members - {self.node_id}

    def role_of(self, node: str) -> MemberRole | None:
        return self._roles.get(node)

    def member_networks(self) -> tuple[NetworkConfig, ...]:
        """The prosecutor networks this node belongs to, with its settings for each."""
        return tuple(n for n in self._networks.values() if self.node_id in n.members)

    def network(self, name: str) -> NetworkConfig | None:
        return self._networks.get(name)

    # -- roles -----------------------------------------------------------------------------
    def may_send(self, node: str, kind: MessageType | str) -> bool:
        role = self._roles.get(node)
        return kind == MessageType.RECEIPT or (role is not None and kind in self._send[role])

    def may_receive(self, node: str, kind: MessageType | str) -> bool:
        role = self._roles.get(node)
        return kind == MessageType.RECEIPT or (role is not None and kind in self._receive[role])

    def check_exchange(self, sender: str, recipient: str, kind: MessageType | str) -> None:
        """`role.forbidden` unless `sender`'s role may send `kind` and `recipient`'s may
        receive it; `sender.unknown` for a sender outside the directory."""
        if sender not in self._roles:
            raise ExchangeError(
                f"{sender} is not a member of the network (directory serial {self.serial})",
                code="sender.unknown",
            )
        if not self.may_send(sender, kind):
            raise ExchangeError(
                f"{sender} is {self._roles[sender].value}: it may not send {kind}",
                code="role.forbidden",
            )
        if not self.may_receive(recipient, kind):
            role = self._roles.get(recipient)
            what = role.value if role is not None else "not a member"
            raise ExchangeError(
                f"{recipient} is {what}: it may not receive {kind}", code="role.forbidden"
            )


def load_view(config: NodeConfig) -> NetworkView:
    """The view of the directory file the configuration names (`directory_path`), with a
    trust store of the network CA, the directory's members and its CRL: for tools and tests
    that check what a node signed without running it. Refused if the file does not verify
    (an expired one is accepted: what it vouched for is still what it was)."""
    if config.directory_path is None:
        raise ExchangeError("the configuration names no directory_path", code="config.invalid")
    ca = load_certificate(config.ca_path)
    directory = verify_directory(config.directory_path.read_bytes(), ca, allow_expired=True)
    return NetworkView(config, TrustStore(ca, directory.crl), directory)
