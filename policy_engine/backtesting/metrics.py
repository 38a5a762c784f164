"""Label metrics of a backtest: pure functions over counts, whatever engine counted them.

An engine (the row engine's tally, a columnar engine's ``GROUP BY``) fills :class:`DatedCounts`: payments by
(payment day, day the label became known, label class, outcome), and per rule the payments it stopped by the
same key. :func:`mature_counts` applies the maturity cutoff and gives :class:`LabelCounts`; :func:`label_metrics`
turns those into precision, recall, F1 with confidence intervals, friction, costs and the candidate's deltas
against the baseline. Nothing here imports an engine.

Definitions (README "Backtesting" says the same for analysts):

- **Label classes**: ``bad`` (``fraud``, ``chargeback``, or a known-bad ``{kind, pattern}`` object), ``good``
  (``legit``), ``unlabelled`` (no label, or a label not yet known as of the cutoff).
- **Stopped**: any outcome but ``allow``; ``step_up`` counts as stopped (the payment does not go through as
  asked). Every count is also split by outcome, so a reader who holds that a step-up does not catch a fraudster
  can subtract that column.
- **Caught** = bad and stopped; **missed** = bad and allowed; **friction** = good and stopped.
  Precision = caught / (caught + friction); recall = caught / bad; F1 = 2 caught / (2 caught + friction +
  missed). Unlabelled payments are in none of these (their truth is unknown); the report counts them apart.
- **A rule** stopped a payment when it fired with an outcome other than ``allow`` and the payment's decision was
  not ``allow``. Its recall is the share of all bad payments it stopped.
- **Days**: a payment's day is its date in its PSP's timezone (the decision's ``as_of``); a label's day is the
  date of ``label_known_at`` as written, or the payment's day without one.
- **Maturity**: ``as_of`` is a day (default: the latest payment or label day in the input). A payment dated
  after ``as_of - maturity_days`` is immature: left out of every metric and counted. A label that became known
  after ``as_of`` is not known yet: the payment counts as unlabelled.
- **Intervals** (95 %): Wilson score intervals for precision and recall; for F1 the delta method on the
  multinomial counts, ``Var(F1) = 4 a (b + c) (a + b + c) / (2a + b + c)^4`` with ``a`` caught, ``b``
  friction, ``c`` missed, clipped to [0, 1] (a normal approximation: it collapses to a point at F1 = 0 or 1).
- **Costs** (optional, per payment): ``deny``/``review``/``step_up`` for each good payment given that outcome,
  ``missed`` for each bad payment allowed; caught bad payments and unlabelled ones cost nothing. The totals are
  counts times costs, so no sums beyond the counts are needed.
- An undefined ratio (zero denominator) is ``None``, never NaN.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from ..errors import PolicyEngineError

BAD, GOOD, UNLABELLED = "bad", "good", "unlabelled"
#: The label strings a record may carry and their class; a ``{kind, pattern}`` object is bad.
LABEL_CLASSES = {"fraud": BAD, "chargeback": BAD, "legit": GOOD}
ALLOW = "allow"
#: Outcomes a cost model prices, besides ``missed``.
COSTED_OUTCOMES = ("deny", "review", "step_up")
#: 97.5th percentile of the standard normal: two-sided 95 % intervals.
Z95 = 1.959963984540054

#: (payment day, label day or None, class, outcome) -> payments; days are proleptic Gregorian ordinals.
DatedKey = tuple[int, "int | None", str, str]
#: (rule id, payment day, label day or None, class) -> payments the rule stopped.
DatedRuleKey = tuple[str, int, "int | None", str]


class CostModelError(PolicyEngineError, ValueError):
    """A ``--costs`` specification that does not parse (the message names the part)."""


# -- inputs -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DatedCounts:
    """One pack's payments before the maturity cutoff. ``label day`` is None for unlabelled payments; a label
    without a ``label_known_at`` is known from the payment's own day."""

    payments: Mapping[DatedKey, int]
    rules: Mapping[DatedRuleKey, int]


@dataclass(frozen=True, slots=True)
class LabelCounts:
    """One pack's mature payments: the whole input of :func:`pack_metrics`.

    ``outcomes``: (class, outcome) -> payments; ``rules``: rule id -> class -> payments it stopped;
    ``immature``: payments left out by the cutoff; ``late``: labelled payments whose label was not known yet
    as of the cutoff (counted as unlabelled)."""

    outcomes: Mapping[tuple[str, str], int]
    rules: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    immature: int = 0
    late: int = 0

    def count(self, cls: str) -> int:
        return sum(n for (c, _), n in self.outcomes.items() if c == cls)

    def stopped(self, cls: str) -> int:
        return sum(n for (c, o), n in self.outcomes.items() if c == cls and o != ALLOW)

    def by_outcome(self, cls: str) -> dict[str, int]:
        """Stopped payments of ``cls`` by outcome (every costed outcome present, then any other)."""
        split = dict.fromkeys(COSTED_OUTCOMES, 0)
        for (c, o), n in self.outcomes.items():
            if c == cls and o != ALLOW:
                split[o] = split.get(o, 0) + n
        return split


def latest_day(*counts: DatedCounts) -> int | None:
    """The default ``as_of``: the latest payment or label day in the counts (None: no payment)."""
    days = [d if k is None else max(d, k) for c in counts for (d, k, _, _) in c.payments]
    return max(days, default=None)


def mature_counts(dated: DatedCounts, as_of: int, maturity_days: int) -> LabelCounts:
    """Apply the cutoff: payments dated after ``as_of - maturity_days`` are immature; labels known after
    ``as_of`` are not known yet."""
    if maturity_days < 0:
        raise ValueError(f"maturity_days must be 0 or more, got {maturity_days}")
    cutoff = as_of - maturity_days
    outcomes: dict[tuple[str, str], int] = {}
    immature = late = 0
    for (day, known, cls, outcome), n in dated.payments.items():
        if day > cutoff:
            immature += n
            continue
        if cls != UNLABELLED and _late(day, known, as_of):
            late += n
            cls = UNLABELLED
        outcomes[(cls, outcome)] = outcomes.get((cls, outcome), 0) + n
    rules: dict[str, dict[str, int]] = {}
    for (rule_id, day, known, cls), n in dated.rules.items():
        if day > cutoff:
            continue
        if cls != UNLABELLED and _late(day, known, as_of):
            cls = UNLABELLED
        per = rules.setdefault(rule_id, {})
        per[cls] = per.get(cls, 0) + n
    return LabelCounts(outcomes, rules, immature, late)


def _late(day: int, known: int | None, as_of: int) -> bool:
    """Whether a label was not known yet as of ``as_of`` (a label with no day is known from its payment's)."""
    return (day if known is None else known) > as_of


# -- statistics -------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Estimate:
    """A ratio with its 95 % interval; all None when the ratio is undefined (a zero denominator)."""

    value: float | None
    low: float | None
    high: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"value": _round(self.value), "low": _round(self.low), "high": _round(self.high)}


UNDEFINED = Estimate(None, None, None)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def wilson(successes: int, trials: int, z: float = Z95) -> Estimate:
    """``successes / trials`` with its Wilson score interval."""
    if trials <= 0:
        return UNDEFINED
    p = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    # the interval holds p exactly; in floats, 0 successes gave a low of 5.6e-17 above the value 0
    return Estimate(p, min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half)))


def f1(caught: int, friction: int, missed: int, z: float = Z95) -> Estimate:
    """F1 = 2a / (2a + b + c) with its delta-method interval (module docstring)."""
    a, b, c = caught, friction, missed
    denominator = 2 * a + b + c
    if denominator <= 0:
        return UNDEFINED
    value = 2 * a / denominator
    sd = math.sqrt(4 * a * (b + c) * (a + b + c)) / denominator ** 2
    return Estimate(value, max(0.0, value - z * sd), min(1.0, value + z * sd))


# -- costs ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CostModel:
    """Per-payment costs: of a good payment denied, reviewed or stepped up, and of a bad payment missed."""

    deny: Decimal = Decimal(0)
    review: Decimal = Decimal(0)
    step_up: Decimal = Decimal(0)
    missed: Decimal = Decimal(0)

    @classmethod
    def parse(cls, text: str) -> CostModel:
        """``deny=25,review=4.5,step_up=0.8,missed=120``: any subset, each at most once, non-negative numbers."""
        names = (*COSTED_OUTCOMES, "missed")
        values: dict[str, Decimal] = {}
        for part in text.split(","):
            name, sep, number = (s.strip() for s in part.partition("="))
            if not sep or not name:
                raise CostModelError(f"cost {part.strip()!r} is not NAME=NUMBER (e.g. deny=25,missed=120)")
            if name not in names:
                raise CostModelError(f"unknown cost {name!r}; the costs are {', '.join(names)}")
            if name in values:
                raise CostModelError(f"cost {name!r} is given twice; keep one")
            try:
                value = Decimal(number)
            except InvalidOperation:
                raise CostModelError(f"cost {name}={number!r} is not a number") from None
            if not value.is_finite() or value < 0:
                raise CostModelError(f"cost {name}={number} must be a finite number, 0 or more")
            values[name] = value
        return cls(**values)

    def to_dict(self) -> dict[str, str]:
        return {name: str(getattr(self, name)) for name in (*COSTED_OUTCOMES, "missed")}


@dataclass(frozen=True, slots=True)
class Cost:
    total: Decimal
    friction: Mapping[str, Decimal]  # outcome -> cost of the good payments given it
    missed: Decimal

    def to_dict(self) -> dict[str, Any]:
        return {"total": str(self.total), "friction": {o: str(v) for o, v in self.friction.items()},
                "missed": str(self.missed)}


def cost_of(model: CostModel, friction: Mapping[str, int], missed: int) -> Cost:
    parts = {o: getattr(model, o) * friction.get(o, 0) for o in COSTED_OUTCOMES}
    lost = model.missed * missed
    return Cost(sum(parts.values(), Decimal(0)) + lost, parts, lost)


# -- metrics -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RuleMetrics:
    """One rule's stops by class, and its precision, recall (of all bad payments) and F1."""

    rule_id: str
    caught: int
    friction: int
    unlabelled: int
    precision: Estimate
    recall: Estimate
    f1: Estimate

    def to_dict(self) -> dict[str, Any]:
        return {"rule_id": self.rule_id, "caught": self.caught, "friction": self.friction,
                "unlabelled_stopped": self.unlabelled, "precision": self.precision.to_dict(),
                "recall": self.recall.to_dict(), "f1": self.f1.to_dict()}


@dataclass(frozen=True, slots=True)
class PackMetrics:
    """One pack over the mature payments."""

    bad: int
    good: int
    unlabelled: int
    caught: int
    caught_by_outcome: Mapping[str, int]
    missed: int
    friction: int  # good payments stopped
    friction_by_outcome: Mapping[str, int]
    unlabelled_stopped: int
    unlabelled_by_outcome: Mapping[str, int]
    precision: Estimate
    recall: Estimate
    f1: Estimate
    cost: Cost | None
    rules: tuple[RuleMetrics, ...]  # rules that stopped any mature payment, most bad caught first

    def to_dict(self) -> dict[str, Any]:
        return {"bad": self.bad, "good": self.good, "unlabelled": self.unlabelled, "caught": self.caught,
                "caught_by_outcome": dict(self.caught_by_outcome), "missed": self.missed,
                "friction": self.friction, "friction_by_outcome": dict(self.friction_by_outcome),
                "unlabelled_stopped": self.unlabelled_stopped,
                "unlabelled_stopped_by_outcome": dict(self.unlabelled_by_outcome),
                "precision": self.precision.to_dict(), "recall": self.recall.to_dict(), "f1": self.f1.to_dict(),
                "cost": self.cost.to_dict() if self.cost else None, "rules": [r.to_dict() for r in self.rules]}


def pack_metrics(counts: LabelCounts, costs: CostModel | None = None) -> PackMetrics:
    bad, good = counts.count(BAD), counts.count(GOOD)
    caught, friction = counts.stopped(BAD), counts.stopped(GOOD)
    missed = bad - caught
    friction_split = counts.by_outcome(GOOD)
    rules = []
    for rule_id, per in counts.rules.items():
        r_caught, r_friction = per.get(BAD, 0), per.get(GOOD, 0)
        rules.append(RuleMetrics(rule_id, r_caught, r_friction, per.get(UNLABELLED, 0),
                                 wilson(r_caught, r_caught + r_friction), wilson(r_caught, bad),
                                 f1(r_caught, r_friction, bad - r_caught)))
    rules.sort(key=lambda r: (-r.caught, r.friction, r.rule_id))
    return PackMetrics(
        bad, good, counts.count(UNLABELLED), caught, counts.by_outcome(BAD), missed, friction, friction_split,
        counts.stopped(UNLABELLED), counts.by_outcome(UNLABELLED), wilson(caught, caught + friction),
        wilson(caught, bad), f1(caught, friction, missed),
        cost_of(costs, friction_split, missed) if costs is not None else None, tuple(rules))


@dataclass(frozen=True, slots=True)
class Delta:
    """Candidate minus baseline (point estimates; None where either side is undefined)."""

    caught: int
    missed: int
    friction: int
    precision: float | None
    recall: float | None
    f1: float | None
    cost: Decimal | None

    def to_dict(self) -> dict[str, Any]:
        return {"caught": self.caught, "missed": self.missed, "friction": self.friction,
                "precision": _round(self.precision), "recall": _round(self.recall), "f1": _round(self.f1),
                "cost": None if self.cost is None else str(self.cost)}


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def delta(candidate: PackMetrics, baseline: PackMetrics) -> Delta:
    cost = (candidate.cost.total - baseline.cost.total
            if candidate.cost is not None and baseline.cost is not None else None)
    return Delta(candidate.caught - baseline.caught, candidate.missed - baseline.missed,
                 candidate.friction - baseline.friction,
                 _minus(candidate.precision.value, baseline.precision.value),
                 _minus(candidate.recall.value, baseline.recall.value),
                 _minus(candidate.f1.value, baseline.f1.value), cost)


@dataclass(frozen=True, slots=True)
class LabelMetrics:
    """The label metrics of a backtest: the cutoff used, and each pack's metrics over the mature payments."""

    as_of: str  # ISO day
    maturity_days: int
    immature: int
    late: int
    costs: CostModel | None
    candidate: PackMetrics
    baseline: PackMetrics | None
    delta: Delta | None  # candidate - baseline

    def to_dict(self) -> dict[str, Any]:
        return {"as_of": self.as_of, "maturity_days": self.maturity_days, "immature": self.immature,
                "late_labels": self.late, "stopped_means": "any outcome but allow (step_up included)",
                "intervals": "95%: Wilson (precision, recall), delta method (F1)",
                "costs": self.costs.to_dict() if self.costs else None, "candidate": self.candidate.to_dict(),
                "baseline": self.baseline.to_dict() if self.baseline else None,
                "delta": self.delta.to_dict() if self.delta else None}


def label_metrics(candidate: DatedCounts, baseline: DatedCounts | None = None, *, as_of: int | None = None,
                  maturity_days: int = 0, costs: CostModel | None = None) -> LabelMetrics | None:
    """The metrics of one backtest, or None when no payment carries a label. ``as_of`` (a day ordinal)
    defaults to :func:`latest_day` over both packs' counts."""
    packs = [candidate] + ([baseline] if baseline is not None else [])
    if not any(cls != UNLABELLED for c in packs for (_, _, cls, _) in c.payments):
        return None
    day = as_of if as_of is not None else latest_day(*packs)
    assert day is not None  # labelled payments exist
    mature = [mature_counts(c, day, maturity_days) for c in packs]
    metrics = [pack_metrics(m, costs) for m in mature]
    return LabelMetrics(dt.date.fromordinal(day).isoformat(), maturity_days, mature[0].immature, mature[0].late,
                        costs, metrics[0], metrics[1] if baseline is not None else None,
                        delta(metrics[0], metrics[1]) if baseline is not None else None)

