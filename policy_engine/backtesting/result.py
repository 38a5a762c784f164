"""The outcome of a backtest: frozen, JSON-ready (``to_dict``), built once from the merged counters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..ruleset import RuleSet
from .history import Difference
from .metrics import LabelMetrics
from .tally import Example, PackTally, Tally


@dataclass(frozen=True, slots=True)
class ExampleRef:
    """A payment by input line number and request id."""

    line: int
    request_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "request_id": self.request_id}


def _refs(examples: list[Example]) -> tuple[ExampleRef, ...]:
    return tuple(ExampleRef(line, rid) for line, rid in examples)


@dataclass(frozen=True, slots=True)
class RuleReport:
    """One rule of a pack: how often it fired, and how many labelled / unlabelled payments it stopped."""

    rule_id: str
    title: str
    outcome: str
    hits: int
    labelled_stopped: int
    unlabelled_stopped: int
    examples: tuple[ExampleRef, ...]  # the first payments (by line) it fired on

    def to_dict(self) -> dict[str, Any]:
        return {"rule_id": self.rule_id, "title": self.title, "outcome": self.outcome, "hits": self.hits,
                "labelled_stopped": self.labelled_stopped, "unlabelled_stopped": self.unlabelled_stopped,
                "examples": [e.to_dict() for e in self.examples]}


@dataclass(frozen=True, slots=True)
class PatternReport:
    """Labelled payments of one kind and pattern (e.g. violation ``bnpl->credit_card_repayment``)."""

    kind: str
    pattern: str
    count: int
    decisions: Mapping[str, int]

    @property
    def stopped(self) -> int:
        return self.count - self.decisions.get("allow", 0)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "pattern": self.pattern, "count": self.count, "stopped": self.stopped,
                "decisions": dict(self.decisions)}


@dataclass(frozen=True, slots=True)
class LabelReport:
    """Payments with a known-bad ``label`` (fraud, chargeback, violations, known-bad patterns), whenever it became
    known, against the rest (``legit`` or no label). A stopped payment is one whose decision is not ``allow``; a
    stopped payment of the rest is a false positive. The label metrics (:mod:`.metrics`) refine this with good
    labels and the maturity cutoff."""

    labelled: int
    labelled_stopped: int
    unlabelled: int
    unlabelled_stopped: int
    patterns: tuple[PatternReport, ...]
    missed: tuple[ExampleRef, ...]  # the first labelled payments the pack let through

    def to_dict(self) -> dict[str, Any]:
        return {"labelled": self.labelled, "labelled_stopped": self.labelled_stopped,
                "unlabelled": self.unlabelled, "unlabelled_stopped": self.unlabelled_stopped,
                "patterns": [p.to_dict() for p in self.patterns], "missed": [e.to_dict() for e in self.missed]}


@dataclass(frozen=True, slots=True)
class PackReport:
    """What one pack decided over the whole input."""

    pack: str
    version: str
    digest: str
    path: str
    decisions: Mapping[str, int]  # every outcome of the pack's decision order, most severe first
    rules: tuple[RuleReport, ...]  # every rule, in pack order (a rule with 0 hits never fired)
    labels: LabelReport | None  # None when the input has no labelled payment

    def rule(self, rule_id: str) -> RuleReport:
        for report in self.rules:
            if report.rule_id == rule_id:
                return report
        raise KeyError(rule_id)

    def to_dict(self) -> dict[str, Any]:
        return {"pack": self.pack, "version": self.version, "digest": self.digest, "path": self.path,
                "decisions": dict(self.decisions), "rules": [r.to_dict() for r in self.rules],
                "labels": self.labels.to_dict() if self.labels else None}


@dataclass(frozen=True, slots=True)
class Flip:
    """Payments whose decision changed from the baseline pack (``from_``) to the candidate pack (``to``)."""

    from_: str
    to: str
    count: int
    fired_only_in_candidate: Mapping[str, int]  # rule id -> flipped payments it fired on under the candidate only
    fired_only_in_baseline: Mapping[str, int]
    examples: tuple[ExampleRef, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.from_, "to": self.to, "count": self.count,
                "fired_only_in_candidate": dict(self.fired_only_in_candidate),
                "fired_only_in_baseline": dict(self.fired_only_in_baseline),
                "examples": [e.to_dict() for e in self.examples]}


@dataclass(frozen=True, slots=True)
class BadLine:
    line: int
    error: str  # invalid_json | invalid_csv | invalid_request | invalid_record | evaluation_failed
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "error": self.error, "message": self.message}


@dataclass(frozen=True, slots=True)
class CounterCheck:
    """Counters recomputed from the history (see :mod:`.history`) and, for records that carried their own
    ``history``, where those differ from the recomputed ones (the recorded counters are a check, not an input)."""

    recomputed: int  # records decided with recomputed counters
    compared: int  # of those, records that carried counters of their own
    differing: int  # records with at least one carried counter unlike the recomputed one
    by_field: Mapping[str, int]  # counter -> records where it differs
    examples: tuple[Difference, ...]  # the first differences, by line

    def to_dict(self) -> dict[str, Any]:
        return {"recomputed": self.recomputed, "compared": self.compared, "differing": self.differing,
                "by_field": dict(self.by_field), "examples": [d.to_dict() for d in self.examples]}


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """A replay of payments against a candidate pack (``--rules``) and optionally a baseline pack."""

    source: str
    format: str  # jsonl | csv
    workers: int
    records: int  # non-blank input records
    evaluated: int  # records every pack decided
    bad: Mapping[str, int]  # error kind -> count
    bad_lines: tuple[BadLine, ...]  # the first bad lines, by line number
    candidate: PackReport
    baseline: PackReport | None
    flips: tuple[Flip, ...]  # most frequent first; empty without a baseline
    elapsed_s: float
    counters: CounterCheck | None = None  # None: each record's own counters (or the pack's defaults) were used
    metrics: LabelMetrics | None = None  # None: no payment carries a label
    engine: str = "row"  # row | columnar | spark: which engine decided (every engine reports the same)

    @property
    def bad_count(self) -> int:
        return sum(self.bad.values())

    @property
    def flipped(self) -> int:
        return sum(f.count for f in self.flips)

    @property
    def rate(self) -> float:
        """Payments per second, wall clock, pack loading included; each payment is decided by every pack."""
        return self.evaluated / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def flip(self, from_: str, to: str) -> Flip | None:
        return next((f for f in self.flips if f.from_ == from_ and f.to == to), None)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "format": self.format, "workers": self.workers, "records": self.records,
                "evaluated": self.evaluated, "bad": {"count": self.bad_count, "by_error": dict(self.bad),
                                                     "lines": [b.to_dict() for b in self.bad_lines]},
                "candidate": self.candidate.to_dict(),
                "baseline": self.baseline.to_dict() if self.baseline else None,
                "flips": [f.to_dict() for f in self.flips], "flipped": self.flipped,
                "counters": self.counters.to_dict() if self.counters else None,
                "metrics": self.metrics.to_dict() if self.metrics else None,
                "engine": self.engine, "elapsed_s": round(self.elapsed_s, 3), "payments_per_s": round(self.rate, 1)}


# -- building ------------------------------------------------------------------------------------------------------
def pack_report(ruleset: RuleSet, tally: PackTally) -> PackReport:
    decisions = {outcome: tally.decisions.get(outcome, 0) for outcome in ruleset.decision_order}
    rules = tuple(
        RuleReport(rule.id, rule.title, str(rule.outcome), tally.hits.get(rule.id, 0),
                   tally.rule_labelled_stopped.get(rule.id, 0), tally.rule_unlabelled_stopped.get(rule.id, 0),
                   _refs(tally.rule_examples.get(rule.id, [])))
        for rule in ruleset.rules)
    labels = None
    if tally.labelled:
        grouped: dict[tuple[str, str], dict[str, int]] = {}
        for (kind, pattern, outcome), count in tally.patterns.items():
            grouped.setdefault((kind, pattern), {})[outcome] = count
        patterns = tuple(sorted(
            (PatternReport(kind, pattern, sum(d.values()),
                           {o: d.get(o, 0) for o in ruleset.decision_order})
             for (kind, pattern), d in grouped.items()),
            key=lambda p: (p.kind, -p.count, p.pattern)))
        labels = LabelReport(tally.labelled, tally.labelled_stopped, tally.unlabelled, tally.unlabelled_stopped,
                             patterns, _refs(tally.missed))
    return PackReport(ruleset.pack, ruleset.version, ruleset.digest, str(ruleset.path), decisions, rules, labels)


def flips_of(tally: Tally) -> tuple[Flip, ...]:
    def rules(key: tuple[str, str], side: str) -> dict[str, int]:
        counts = {r: c for (f, t, s, r), c in tally.flip_rules.items() if (f, t) == key and s == side}
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    flips = [Flip(f, t, count, rules((f, t), "candidate"), rules((f, t), "baseline"),
                  _refs(tally.flip_examples.get((f, t), [])))
             for (f, t), count in tally.flips.items()]
    return tuple(sorted(flips, key=lambda flip: (-flip.count, flip.from_, flip.to)))
