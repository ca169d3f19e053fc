"""The wall around the demo's private-sector member: what EE-VASP may not receive or see.

AL-ARO tries to pass Chișinău's extradition-support request on to EE-VASP: its own gateway
refuses it (403 `role.forbidden`) before anything is signed or sent. EE-VASP's subscriber
sees none of the case updates the prosecutor network `see-pcn` shared, and its gateway
refuses to serve that network at all (400 `request.bad_parameter`: not one of its networks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from exchange.demo.evidence import CASE
from exchange.demo.scenario import PROSECUTOR_NETWORK, VASP, load_payload

if TYPE_CHECKING:
    from exchange.demo.runner import DemoNetwork, DemoResult, Printer

INTRODUCTION = (
    f"{VASP} is a private-sector member (virtual-asset service provider): it answers "
    "inquiries and freeze notices addressed to it, and nothing else"
)


async def the_wall(network: DemoNetwork, result: DemoResult, out: Printer) -> None:
    out("")
    out(f"The wall: what {VASP} may not receive or see")
    body: dict[str, Any] = {
        "type": "extradition-support",
        "recipients": [VASP],
        "case": CASE,
        "priority": "urgent",
        "handling": {"tlp": "RED", "code": "H3"},
        "payload": load_payload("05-extradition-support.json"),
    }
    status, problem = await network.call("AL-ARO", "POST", "/v1/messages", body)
    refused = status == 403 and _field(problem, "code") == "role.forbidden"
    details = "; ".join(
        f"{e.get('path', '')}: {e.get('message', '')}"
        for e in (_field(problem, "errors") or [])
        if isinstance(e, dict)
    )
    out(f"  AL-ARO -> {VASP}: extradition-support: HTTP {status} {_field(problem, 'code')}")
    out(f"    {_field(problem, 'detail')}" + (f" ({details})" if details else ""))
    result.checks.append((f"AL-ARO's gateway refuses extradition-support to {VASP}", refused))

    status, page = await network.call(VASP, "GET", "/v1/subscriptions/events", role="subscriber")
    items = _field(page, "items")
    none_seen = status == 200 and items == []
    out(
        f"  {VASP}'s subscriber, all its networks: HTTP {status}, "
        f"{len(items) if isinstance(items, list) else '?'} case updates"
    )
    path = f"/v1/subscriptions/events?network={PROSECUTOR_NETWORK}"
    status, problem = await network.call(VASP, "GET", path, role="subscriber")
    not_served = status == 400 and _field(problem, "code") == "request.bad_parameter"
    out(
        f"  {VASP}'s subscriber asks for {PROSECUTOR_NETWORK!r}: HTTP {status} "
        f"{_field(problem, 'code')} ({_field(problem, 'detail')})"
    )
    result.checks.append(
        (
            f"{VASP}'s subscriber sees no case updates of {PROSECUTOR_NETWORK}",
            none_seen and not_served,
        )
    )


def _field(document: Any, name: str) -> Any:
    return document.get(name) if isinstance(document, dict) else None
