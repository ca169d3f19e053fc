"""A typed async client of a node's HTTP API, for integrators (a case-management system),
the `exchange` CLI, the demo, the benchmarks and the tests.

Every answer but 2xx raises `ProblemError`, which carries the RFC 9457 problem document;
no answer at all (refused, lost, timed out, TLS handshake failed) raises
`GatewayUnreachable`. Both are `ExchangeError`s. Typed methods parse answers into the API
models. `request` and `stream_case_update_documents` return the exact JSON the gateway
sent: verify a partner's signature against that, since a parsed `Envelope` writes times
in the one canonical form, which another implementation need not have signed.
"""

from exchange.client.gateway import SETTLED, AuditEntriesPage, GatewayClient
from exchange.client.problems import GatewayUnreachable, ProblemError

__all__ = ["SETTLED", "AuditEntriesPage", "GatewayClient", "GatewayUnreachable", "ProblemError"]
