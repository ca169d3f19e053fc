"""The demo's network and the case it plays: who the members are, and each request in turn.

Three authorities (AL-ARO, RS-PPO, MD-ARO) form the prosecutor network that follows the
case. EE-VASP, a virtual-asset service provider licensed in Estonia, is a private-sector
member: it may receive only asset inquiries and freeze notices, send only their answers,
and belongs to no prosecutor network. The payloads are in `payloads/` (see its README).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

NODES = ("AL-ARO", "RS-PPO", "MD-ARO")
"""The authorities of the demo: every one is a member of the prosecutor network."""
VASP = "EE-VASP"
"""The demo's virtual-asset service provider, a private-sector member."""
DEMO_NODES = (*NODES, VASP)
"""Every member of the demo network."""
ROLES = {VASP: "private-sector"}
"""Roles other than `authority`, as `init_network_dir` takes them."""
NETWORK = "see-arn"
PROSECUTOR_NETWORK = "see-pcn"
"""The prosecutor network that follows the demo's case: the three authorities, not EE-VASP."""


@dataclass(frozen=True, slots=True)
class Step:
    """One request of the scenario: who sends what to whom, and what it answers."""

    title: str
    sender: str
    recipients: tuple[str, ...]
    type: str
    payload_file: str
    priority: str = "normal"
    replies_to: int | None = None  # index of an earlier step
    tlp: str = "AMBER"
    handling_code: str = "H2"


AUTHORITY_STEPS: tuple[Step, ...] = (
    Step(
        "Tirana asks Belgrade to trace assets, a crypto wallet among them (urgent)",
        "AL-ARO",
        ("RS-PPO",),
        "asset-inquiry",
        "01-asset-inquiry.json",
        priority="urgent",
    ),
    Step(
        "Belgrade answers with its findings",
        "RS-PPO",
        ("AL-ARO",),
        "asset-inquiry-response",
        "02-asset-inquiry-response.json",
        replies_to=0,
    ),
    Step(
        "Tirana sends a freeze notice for what was found (urgent)",
        "AL-ARO",
        ("RS-PPO",),
        "freeze-notice",
        "03-freeze-notice.json",
        priority="urgent",
        tlp="AMBER+STRICT",
    ),
    Step(
        "Belgrade decides: the freeze is executed",
        "RS-PPO",
        ("AL-ARO",),
        "freeze-decision",
        "04-freeze-decision.json",
        replies_to=2,
    ),
    Step(
        "Chișinău asks Tirana and Belgrade to help locate and arrest a suspect",
        "MD-ARO",
        ("AL-ARO", "RS-PPO"),
        "extradition-support",
        "05-extradition-support.json",
        priority="urgent",
        tlp="RED",
        handling_code="H3",
    ),
)

VASP_STEPS: tuple[Step, ...] = (
    Step(
        "Tirana asks EE-VASP who holds the Tron deposit address the USDT from Belgrade "
        "went to (urgent)",
        "AL-ARO",
        (VASP,),
        "asset-inquiry",
        "07-vasp-asset-inquiry.json",
        priority="urgent",
    ),
    Step(
        "EE-VASP answers: the account holder, the balance, the identity documents it holds",
        VASP,
        ("AL-ARO",),
        "asset-inquiry-response",
        "08-vasp-asset-inquiry-response.json",
        replies_to=5,
    ),
    Step(
        "Tirana sends EE-VASP a freeze notice for the wallet (urgent)",
        "AL-ARO",
        (VASP,),
        "freeze-notice",
        "09-vasp-freeze-notice.json",
        priority="urgent",
        tlp="AMBER+STRICT",
    ),
    Step(
        "EE-VASP executes the freeze",
        VASP,
        ("AL-ARO",),
        "freeze-decision",
        "10-vasp-freeze-decision.json",
        replies_to=7,
    ),
)

SCENARIO: tuple[Step, ...] = AUTHORITY_STEPS + VASP_STEPS
"""Every request of the demo, in order (`replies_to` indexes this tuple)."""

CASE_EVENTS = ("opened", "assets-identified", "frozen", "assets-identified", "frozen")
"""The case updates a member of the prosecutor network sees, in order: the case opened
(AL-ARO), Belgrade's findings and freeze (sent by RS-PPO, a member), then EE-VASP's answer
and freeze. EE-VASP is no member and may not publish to the network, so AL-ARO, the member
that received them, publishes those two: one update per message, whoever emits it."""


def load_payload(name: str) -> dict[str, Any]:
    text = resources.files("exchange.demo").joinpath("payloads", name).read_text("utf-8")
    payload: dict[str, Any] = json.loads(text)
    return payload
