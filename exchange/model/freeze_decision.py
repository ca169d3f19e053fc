"""`freeze-decision`: the executing authority's answer to a freeze notice.

Recognised, refused (grounds of Regulation (EU) 2018/1805 art. 8), executed (what was frozen,
for how much, when), postponed (art. 10), or impossible to execute (art. 13); always with the
time of the decision, so that auditors can check the 48-hour limit of art. 9(3).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import Field, StrictBool

from exchange.model.assets import MAX_ASSETS, Asset
from exchange.model.base import AbsentWhen, Part, RequiredWhen, Rule, RuledPart, UniqueItems
from exchange.model.parts import Authority, Contact, Money
from exchange.model.values import Date, Line, LocalRef, ShortLine, Text, Timestamp


class FreezeStatus(StrEnum):
    RECOGNISED = "recognised"
    REFUSED = "refused"
    EXECUTED = "executed"
    POSTPONED = "postponed"
    IMPOSSIBLE = "impossible"


class FreezeRefusalGround(StrEnum):
    """Grounds for non-recognition (Regulation (EU) 2018/1805 art. 8(1))."""

    NE_BIS_IN_IDEM = "ne-bis-in-idem"
    PRIVILEGE_OR_IMMUNITY = "privilege-or-immunity"
    INCOMPLETE_CERTIFICATE = "incomplete-certificate"
    NO_DOUBLE_CRIMINALITY = "no-double-criminality"
    TERRITORIALITY = "territoriality"
    FUNDAMENTAL_RIGHTS = "fundamental-rights"
    OTHER = "other"


class FreezeRefusal(Part):
    """Why the order is not recognised."""

    grounds: Annotated[list[FreezeRefusalGround], UniqueItems()] = Field(
        min_length=1, max_length=7, description="The grounds.", examples=[["ne-bis-in-idem"]]
    )
    explanation: Text = Field(
        description="The reasons, after consulting the issuing authority (art. 8(2)).",
        examples=["The same property is frozen in domestic case KTI 44/25 for the same acts."],
    )


class PostponementGround(StrEnum):
    """Grounds for postponing execution (Regulation (EU) 2018/1805 art. 10(1))."""

    PREJUDICES_INVESTIGATION = "prejudices-ongoing-investigation"
    ALREADY_FROZEN = "already-frozen-in-domestic-proceedings"
    ALREADY_SUBJECT_OF_ORDER = "already-subject-of-another-order"


class Postponement(Part):
    """Why and until when execution is postponed."""

    ground: PostponementGround = Field(
        description="The ground.", examples=["prejudices-ongoing-investigation"]
    )
    until: Date | None = Field(default=None, description="Expected end of the postponement.")
    explanation: Text = Field(description="The reasons.")


class FrozenItem(Part):
    """One item frozen, and how much."""

    notice_ref: LocalRef | None = Field(
        default=None, description="Ref of the item in the notice, if it had one.", examples=["A1"]
    )
    asset: Asset = Field(description="The asset frozen (holders by name).")
    amount: Money | None = Field(default=None, description="Amount or value frozen.")
    frozen_at: Timestamp = Field(description="When it was frozen.")
    custodian: Line | None = Field(
        default=None, description="Who holds it now.", examples=["AKSHK, Tiranë"]
    )


class FreezeDecision(RuledPart):
    """The executing authority's decision on a freeze notice (header.in_reply_to names it)."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        RequiredWhen("status", ("refused",), present=("refusal",)),
        RequiredWhen("status", ("executed",), non_empty=("frozen",)),
        RequiredWhen("status", ("postponed",), present=("postponement",)),
        RequiredWhen("status", ("impossible",), present=("remarks",)),
        AbsentWhen("status", ("recognised", "executed", "postponed", "impossible"), ("refusal",)),
    )

    executing_authority: Authority = Field(description="The authority that decided.")
    contact: Contact | None = Field(default=None, description="Who handles execution.")
    order_reference: ShortLine = Field(
        description="Reference of the freezing order decided on.", examples=["Nr. 87/2026 Vendim"]
    )
    status: FreezeStatus = Field(description="The decision.", examples=["executed"])
    decided_at: Timestamp = Field(description="When the decision was taken.")
    refusal: FreezeRefusal | None = Field(default=None, description="Grounds, when refused.")
    postponement: Postponement | None = Field(
        default=None, description="Grounds and end, when postponed."
    )
    frozen: list[FrozenItem] = Field(
        default_factory=list, max_length=MAX_ASSETS, description="What was frozen."
    )
    total_frozen: Money | None = Field(default=None, description="Total amount or value frozen.")
    persons_informed: StrictBool | None = Field(
        default=None,
        description="Whether the affected persons have been informed (art. 32).",
        examples=[False],
    )
    remarks: Text | None = Field(
        default=None,
        description="Anything else; why execution is impossible when it is (art. 13).",
        examples=["The account was closed on 12 January 2026; the balance went to MD."],
    )
