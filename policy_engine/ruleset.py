"""The loaded, validated, immutable rule pack."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .conditions import ListItem, Node
from .decision import ReasonTemplate

if TYPE_CHECKING:  # typing only: aggregates is a layer above the model
    from .aggregates import Aggregate
    from .screening.lists import PartyList

DEFAULT_DECISION_ORDER = ("deny", "review", "step_up", "allow")
SKIP = "skip"


def default_on_unknown(outcome: str) -> str:
    """An undecided rule holds the payment the way its outcome would, but never harder than review: a deny
    rule that cannot be decided sends the payment to a person, a step-up rule asks for authentication."""
    return outcome if outcome in ("step_up", "allow") else "review"



@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    category: str
    title: str
    when: Node
    outcome: str
    reason: ReasonTemplate
    source: str
    verified: bool
    file: str
    line: int
    col: int
    report: str | None = None
    effective_from: int | None = None  # date ordinal, inclusive
    effective_to: int | None = None  # date ordinal, exclusive
    reason_zh: ReasonTemplate | None = None
    tags: tuple[str, ...] = ()
    notes: str | None = None
    #: what an undecided rule (condition unknown: DOMAIN §5.1 point 6) contributes: an outcome, or "skip"
    #: (listed in the trail, contributes nothing). Report rules (outcome allow) keep the decision and mark
    #: their obligation undecided.
    on_unknown: str = "review"

    def in_force(self, day: int) -> bool:
        return (self.effective_from is None or day >= self.effective_from) and (
            self.effective_to is None or day < self.effective_to
        )

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class FxTable:
    """Reference rates in CNY per one unit, valid from ``as_of`` (a date ordinal) until the next table."""

    as_of: int
    rates: Mapping[str, Decimal]
    source: str | None = None
    as_of_iso: str = field(init=False)
    #: each rate as an exact (numerator, denominator) pair, so conversions need no Decimal division
    ratios: Mapping[str, tuple[int, int]] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "as_of_iso", dt.date.fromordinal(self.as_of).isoformat())
        object.__setattr__(self, "ratios", {c: r.as_integer_ratio() for c, r in self.rates.items()})


@dataclass(frozen=True, slots=True)
class RuleSet:
    pack: str
    version: str
    decision_order: tuple[str, ...]
    rules: tuple[Rule, ...]
    lists: Mapping[str, tuple[ListItem, ...]]
    fx_tables: tuple[FxTable, ...]  # sorted by as_of
    timezones: Mapping[str, str]  # psp_country -> IANA zone name (local hours and as-of dates)
    digest: str
    path: str
    files: tuple[str, ...]
    description: str | None = None
    #: what an absent field means, declared by the pack (caller-supplied history counters: 0); the request
    #: preparer fills these in, and the trail names the ones it filled
    defaults: Mapping[str, Any] = field(default_factory=dict)
    #: the counters the engine keeps itself when a state store is configured, by the field each defines
    aggregates: Mapping[str, Aggregate] = field(default_factory=dict)
    #: party lists for name screening (`screen` leaves), by name; the digest covers their file contents
    screening_lists: Mapping[str, PartyList] = field(default_factory=dict)

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def fx_for(self, day: int) -> FxTable:
        """The latest table dated on or before ``day``; payments older than every table use the earliest."""
        chosen = self.fx_tables[0]
        for table in self.fx_tables:
            if table.as_of <= day:
                chosen = table
        return chosen
