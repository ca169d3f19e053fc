"""What a local client of a gateway sends: its bearer token's header."""

from __future__ import annotations

from exchange.network import NetworkLayout


def bearer(token: str) -> dict[str, str]:
    """The `Authorization` header presenting `token` (a new dict: callers may add to it)."""
    return {"Authorization": f"Bearer {token}"}


def auth_headers(network: NetworkLayout, node: str, role: str = "contact-point") -> dict[str, str]:
    """The header presenting `node`'s token for `role`."""
    return bearer(network.nodes[node].token(role))
