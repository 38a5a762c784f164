"""Counters a backtest accumulates: per chunk in a worker, then merged in the parent.

Everything here is a count or a bounded list of examples, so merging is order-free (workers may finish in any
order) and memory does not grow with the input. Examples are ``(line, request_id)`` pairs and only the first ``k``
by input line number are kept, so the report is the same whatever the number of workers.
"""

from __future__ import annotations

import datetime as dt
import functools
import heapq
from collections import Counter
from dataclasses import dataclass, field

from ..decision import Decision
from .history import Label
from .metrics import BAD, UNLABELLED, DatedCounts

Example = tuple[int, str]


def add_example(examples: list[Example], k: int, line: int, request_id: str) -> None:
    """Within one chunk lines only increase, so the first ``k`` seen are the ``k`` smallest."""
    if len(examples) < k:
        examples.append((line, request_id))


def merge_examples(a: list[Example], b: list[Example], k: int) -> list[Example]:
    return heapq.nsmallest(k, a + b)


@functools.lru_cache(maxsize=4096)
def _ordinal(iso_day: str) -> int:
    """A decision's ``as_of`` day as an ordinal; cached, since a history spans few days and many payments."""
    return dt.date.fromisoformat(iso_day).toordinal()


@dataclass(slots=True)
class PackTally:
    """What one pack decided. Mutable: it is an accumulator, converted to frozen results at the end."""

    decisions: Counter = field(default_factory=Counter)
    hits: Counter = field(default_factory=Counter)
    rule_examples: dict[str, list[Example]] = field(default_factory=dict)
    labelled: int = 0
    labelled_stopped: int = 0
    unlabelled: int = 0
    unlabelled_stopped: int = 0
    rule_labelled_stopped: Counter = field(default_factory=Counter)
    rule_unlabelled_stopped: Counter = field(default_factory=Counter)
    patterns: Counter = field(default_factory=Counter)  # (kind, pattern, decision) -> count
    missed: list[Example] = field(default_factory=list)  # labelled payments the pack allowed
    # the label metrics' input (see .metrics.DatedCounts): a payment's day and its label's make the keys, so
    # these grow with the days the input spans, not with its payments
    dated: Counter = field(default_factory=Counter)  # (day, label day, class, outcome) -> payments
    rule_dated: Counter = field(default_factory=Counter)  # (rule id, day, label day, class) -> payments stopped

    def add(self, line: int, request_id: str, decision: Decision, label: Label | None,
            stopping: frozenset[str], k: int) -> None:
        outcome = decision.decision.value
        self.decisions[outcome] += 1
        rule_ids = decision.rule_ids
        stopped = outcome != "allow"
        for rule_id in rule_ids:
            self.hits[rule_id] += 1
            add_example(self.rule_examples.setdefault(rule_id, []), k, line, request_id)
        day = _ordinal(decision.as_of)  # the payment's day in its PSP's timezone
        cls, known = (UNLABELLED, None) if label is None else (label.cls, label.known)
        self.dated[(day, known, cls, outcome)] += 1
        if stopped:
            self.rule_dated.update((r, day, known, cls) for r in rule_ids if r in stopping)
        # the counts below are the report's labelled (known-bad) payments against the rest, whenever known
        if label is None or label.cls != BAD:
            self.unlabelled += 1
            if stopped:
                self.unlabelled_stopped += 1
                # A rule "stopped" a payment when it fired with a non-allow outcome (report flags never stop).
                self.rule_unlabelled_stopped.update(r for r in rule_ids if r in stopping)
            return
        self.labelled += 1
        self.patterns[(label.kind, label.pattern, outcome)] += 1
        if stopped:
            self.labelled_stopped += 1
            self.rule_labelled_stopped.update(r for r in rule_ids if r in stopping)
        else:
            add_example(self.missed, k, line, request_id)

    def merge(self, other: PackTally, k: int) -> None:
        self.decisions.update(other.decisions)
        self.hits.update(other.hits)
        for rule_id, examples in other.rule_examples.items():
            self.rule_examples[rule_id] = merge_examples(self.rule_examples.get(rule_id, []), examples, k)
        self.labelled += other.labelled
        self.labelled_stopped += other.labelled_stopped
        self.unlabelled += other.unlabelled
        self.unlabelled_stopped += other.unlabelled_stopped
        self.rule_labelled_stopped.update(other.rule_labelled_stopped)
        self.rule_unlabelled_stopped.update(other.rule_unlabelled_stopped)
        self.patterns.update(other.patterns)
        self.missed = merge_examples(self.missed, other.missed, k)
        self.dated.update(other.dated)
        self.rule_dated.update(other.rule_dated)

    def dated_counts(self) -> DatedCounts:
        return DatedCounts(dict(self.dated), dict(self.rule_dated))


@dataclass(slots=True)
class Tally:
    """Everything a backtest counts over a run (or a chunk of it)."""

    k: int
    records: int = 0
    candidate: PackTally = field(default_factory=PackTally)
    baseline: PackTally | None = None
    flips: Counter = field(default_factory=Counter)        # (from, to) -> count
    flip_rules: Counter = field(default_factory=Counter)   # (from, to, side, rule_id) -> count
    flip_examples: dict[tuple[str, str], list[Example]] = field(default_factory=dict)
    bad: Counter = field(default_factory=Counter)          # error kind -> count
    bad_examples: list[tuple[int, str, str]] = field(default_factory=list)  # (line, kind, message)

    def add_bad(self, line: int, kind: str, message: str) -> None:
        self.bad[kind] += 1
        if len(self.bad_examples) < self.k:
            self.bad_examples.append((line, kind, message))

    def add_flip(self, line: int, request_id: str, before: Decision, after: Decision) -> None:
        key = (before.decision.value, after.decision.value)
        if key[0] == key[1]:
            return
        self.flips[key] += 1
        old, new = set(before.rule_ids), set(after.rule_ids)
        # The rules responsible: fired under one pack but not the other, on this flipped payment.
        self.flip_rules.update((*key, "candidate", r) for r in new - old)
        self.flip_rules.update((*key, "baseline", r) for r in old - new)
        add_example(self.flip_examples.setdefault(key, []), self.k, line, request_id)

    def merge(self, other: Tally) -> None:
        k = self.k
        self.records += other.records
        self.candidate.merge(other.candidate, k)
        if other.baseline is not None:
            if self.baseline is None:
                self.baseline = PackTally()
            self.baseline.merge(other.baseline, k)
        self.flips.update(other.flips)
        self.flip_rules.update(other.flip_rules)
        for key, examples in other.flip_examples.items():
            self.flip_examples[key] = merge_examples(self.flip_examples.get(key, []), examples, k)
        self.bad.update(other.bad)
        self.bad_examples = heapq.nsmallest(k, self.bad_examples + other.bad_examples)
