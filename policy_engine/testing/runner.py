"""Run a pack's YAML test cases and measure what they exercise.

Each case is decided by the pack (the chosen matcher, exactly as in production) and checked against its
expectations; a case with ``prior:`` payments is decided with the counters they make, replayed into a fresh
``memory://`` store as an engine with a store would record them. Coverage comes from the same requests:

- **rule coverage**: a rule is covered when it fired in at least one case;
- **condition coverage**: a leaf is covered when the reference evaluator saw it both true and false, counting
  only cases dated while its rule is in force (a leaf of a rule that does not exist on that date decides
  nothing), with dated list items applied as of the case's date;
- **date edges**: how many dated rules some case tests on a date outside their window.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..conditions import evaluate_leaf, leaves
from ..errors import RequestError, Violation
from ..lint import describe
from ..loader import load_ruleset
from ..pack import CompiledPack
from ..request import PreparedRequest
from ..resources import default_pack_path
from ..ruleset import RuleSet
from ..state import MemoryStore
from ..state.counters import Counters
from .casefile import Prior, RuleCase, load_cases


@dataclass(frozen=True, slots=True)
class CaseResult:
    name: str
    file: str
    line: int
    col: int
    status: str  # passed | failed | error (the request could not be decided)
    failures: tuple[str, ...]
    decision: str | None
    fired: tuple[str, ...]
    trail: tuple[str, ...]  # "RULE [outcome] reason" per fired rule, for the report
    elapsed_s: float

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "file": self.file, "line": self.line, "col": self.col, "status": self.status,
                "failures": list(self.failures), "decision": self.decision, "fired": list(self.fired),
                "trail": list(self.trail), "elapsed_s": round(self.elapsed_s, 6)}


@dataclass(frozen=True, slots=True)
class LeafCoverage:
    condition: str  # the leaf as written, e.g. "derived.amount_cny gte 5000"
    at: str  # file:line:col of the leaf
    seen_true: int  # cases (with the rule in force) where the leaf was true
    seen_false: int

    @property
    def covered(self) -> bool:
        return self.seen_true > 0 and self.seen_false > 0

    def to_dict(self) -> dict[str, Any]:
        return {"condition": self.condition, "at": self.at, "seen_true": self.seen_true,
                "seen_false": self.seen_false, "covered": self.covered}


@dataclass(frozen=True, slots=True)
class RuleCoverage:
    rule_id: str
    at: str
    fired: int  # cases in which the rule fired
    in_force: int  # cases dated inside the rule's effective window
    dated: bool  # the rule has an effective window
    leaves: tuple[LeafCoverage, ...]

    @property
    def covered(self) -> bool:
        return self.fired > 0

    def to_dict(self, cases: int) -> dict[str, Any]:
        return {"rule_id": self.rule_id, "at": self.at, "fired": self.fired, "in_force": self.in_force,
                "not_in_force": cases - self.in_force, "leaves": [leaf.to_dict() for leaf in self.leaves]}


def _percent(part: int, whole: int) -> float:
    return 100.0 if whole == 0 else round(100.0 * part / whole, 1)


@dataclass(frozen=True, slots=True)
class Coverage:
    rules: tuple[RuleCoverage, ...]
    cases: int  # cases whose request could be decided

    @property
    def never_fired(self) -> tuple[str, ...]:
        return tuple(r.rule_id for r in self.rules if not r.covered)

    @property
    def rule_percent(self) -> float:
        return _percent(sum(r.covered for r in self.rules), len(self.rules))

    @property
    def leaf_counts(self) -> tuple[int, int]:
        """(leaves seen both true and false, all leaves)."""
        all_leaves = [leaf for r in self.rules for leaf in r.leaves]
        return sum(leaf.covered for leaf in all_leaves), len(all_leaves)

    @property
    def condition_percent(self) -> float:
        return _percent(*self.leaf_counts)

    @property
    def date_edges(self) -> tuple[int, int]:
        """(dated rules some case tests outside their window, dated rules)."""
        dated = [r for r in self.rules if r.dated]
        return sum(r.in_force < self.cases for r in dated), len(dated)

    def to_dict(self) -> dict[str, Any]:
        covered, total = self.leaf_counts
        edges, dated = self.date_edges
        return {"rules_fired": len(self.rules) - len(self.never_fired), "rules_total": len(self.rules),
                "rule_percent": self.rule_percent, "never_fired": list(self.never_fired),
                "leaves_covered": covered, "leaves_total": total, "condition_percent": self.condition_percent,
                "dated_rules_tested_outside_window": edges, "dated_rules": dated,
                "rules": [r.to_dict(self.cases) for r in self.rules]}


@dataclass(frozen=True, slots=True)
class TestReport:
    """The outcome of ``run_tests``: every case's result and the coverage they reach."""

    __test__ = False  # not a pytest test class, despite the name

    pack: str
    version: str
    digest: str
    matcher: str
    files: tuple[str, ...]
    cases: tuple[CaseResult, ...]
    coverage: Coverage
    elapsed_s: float

    def count(self, status: str) -> int:
        return sum(c.status == status for c in self.cases)

    @property
    def ok(self) -> bool:
        return all(c.status == "passed" for c in self.cases)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "pack": self.pack, "version": self.version, "digest": self.digest,
                "matcher": self.matcher, "files": list(self.files),
                "summary": {"cases": len(self.cases), "passed": self.count("passed"), "failed": self.count("failed"),
                            "errors": self.count("error")},
                "elapsed_s": round(self.elapsed_s, 6), "cases": [c.to_dict() for c in self.cases],
                "coverage": self.coverage.to_dict()}


class _Tracker:
    """Counts, per rule, the cases it fired in and each leaf's true / false results while in force."""

    def __init__(self, ruleset: RuleSet):
        self.rules = ruleset.rules
        self.leaves = [tuple(leaves(r.when)) for r in self.rules]
        self.fired = [0] * len(self.rules)
        self.in_force = [0] * len(self.rules)
        self.true = [[0] * len(ls) for ls in self.leaves]
        self.false = [[0] * len(ls) for ls in self.leaves]
        self.cases = 0

    def record(self, prepared: PreparedRequest, fired: tuple[str, ...]) -> None:
        self.cases += 1
        view, day = prepared.view, prepared.day
        for i, rule in enumerate(self.rules):
            self.fired[i] += rule.id in fired
            if not rule.in_force(day):
                continue
            self.in_force[i] += 1
            for j, leaf in enumerate(self.leaves[i]):
                result = evaluate_leaf(leaf, view, day)  # unknown (None) counts as neither
                self.true[i][j] += result is True
                self.false[i][j] += result is False

    def coverage(self) -> Coverage:
        rules = []
        for i, rule in enumerate(self.rules):
            leaf_cov = tuple(
                LeafCoverage(describe(leaf), ":".join(map(str, leaf.pos)) if leaf.pos else rule.location,
                             self.true[i][j], self.false[i][j])
                for j, leaf in enumerate(self.leaves[i]))
            dated = rule.effective_from is not None or rule.effective_to is not None
            rules.append(RuleCoverage(rule.id, rule.location, self.fired[i], self.in_force[i], dated, leaf_cov))
        return Coverage(tuple(rules), self.cases)


def _trail(decision: Any) -> tuple[str, ...]:
    return tuple(f"{e.rule_id} [{e.outcome}{', report ' + e.report if e.report else ''}"
                 f"{'' if e.status == 'fired' else ', ' + e.status}] {e.reason}" for e in decision.trail)


class _PriorRequestError(RequestError):
    """A case's prior payment is not a valid request (the case is an error, naming which prior)."""

    def __init__(self, n: int, prior: Prior, exc: RequestError):
        super().__init__([Violation(f"prior {n} (line {prior.line}) {v.path}", v.message) for v in exc.violations],
                         exc.request_id)


def _replay(counters: Counters, case: RuleCase) -> tuple[PreparedRequest, tuple[str, ...]]:
    """Record the case's prior payments in order in a fresh memory store (each decided by the pack, then reported
    its status), and prepare the case with the counters they make. Returns it and the priors' failed checks."""
    pack, store = counters.pack, MemoryStore()
    failures = []
    for n, prior in enumerate(case.prior, 1):
        try:
            prepared = pack.prepare(prior.request)
        except RequestError as exc:
            raise _PriorRequestError(n, prior, exc) from exc
        with store.transaction() as txn:
            decision, payment = counters.evaluate(prior.request, prepared, txn, time.perf_counter_ns())
            txn.record(payment)
        if prior.status is not None:
            store.report(payment.request_id, prior.status)
        got = decision.decision.value
        if prior.decision is not None and got != prior.decision:
            failures.append(f"prior {n} (line {prior.line}): expected {prior.decision}, got {got} "
                            f"({', '.join(decision.rule_ids) or 'no rule fired'})")
    with store.transaction() as txn:
        prepared = counters.counted(case.request, pack.prepare(case.request), txn)
    return prepared, tuple(failures)


def _counters_shown(counters: Counters, prepared: PreparedRequest) -> str:
    """The counters the prior payments made, for a failing case's report (zero ones left out)."""
    view = prepared.view
    made = [f"{a.field} {view[a.field]}" for a in counters.aggregates if a.field in counters.read and view.get(a.field)]
    return f"counters from the prior payments: {', '.join(made) or 'all zero'}"


def _run(pack: CompiledPack, counters: Counters, case: RuleCase, tracker: _Tracker) -> CaseResult:
    start = time.perf_counter()
    where: Mapping[str, Any] = {"name": case.name, "file": case.file, "line": case.line, "col": case.col}
    prior_failures: tuple[str, ...] = ()
    try:
        if case.prior:
            prepared, prior_failures = _replay(counters, case)
        else:
            prepared = pack.prepare(case.request)  # complete: coverage reads every derived field
        decision = pack.decide(prepared)
    except RequestError as exc:
        problems = tuple(f"invalid request: {v}" for v in exc.violations)
        return CaseResult(**where, status="error", failures=problems, decision=None, fired=(), trail=(),
                          elapsed_s=time.perf_counter() - start)
    except Exception as exc:  # fail closed: an engine fault makes the case an error, never a pass
        problem = f"engine could not decide: {type(exc).__name__}: {exc}"
        return CaseResult(**where, status="error", failures=(problem,), decision=None, fired=(), trail=(),
                          elapsed_s=time.perf_counter() - start)
    failures = prior_failures + case.expect.check(decision)
    if failures and case.prior:
        failures += (_counters_shown(counters, prepared),)
    tracker.record(prepared, decision.rule_ids)
    return CaseResult(**where, status="failed" if failures else "passed", failures=failures,
                      decision=decision.decision.value, fired=decision.rule_ids, trail=_trail(decision),
                      elapsed_s=time.perf_counter() - start)


def run_tests(pack_path: str | Path | None, tests_path: str | Path | None = None,
              matcher: str | None = None) -> TestReport:
    """Load the pack (``None``: the bundled one), run its test cases (by default every ``*.yaml`` under the
    pack's ``tests/``) and measure coverage.

    Raises :class:`~policy_engine.errors.RuleSetError` for a bad pack and
    :class:`~policy_engine.testing.casefile.RuleTestError` for bad test files; failing cases are in the report.
    """
    start = time.perf_counter()
    pack = Path(pack_path) if pack_path is not None else default_pack_path()
    compiled = CompiledPack.build(load_ruleset(pack), matcher)
    try:
        ruleset = compiled.ruleset
        files, cases = load_cases(pack, Path(tests_path) if tests_path is not None else None,
                                  (r.id for r in ruleset.rules))
        tracker = _Tracker(ruleset)
        counters = Counters(compiled)
        results = tuple(_run(compiled, counters, case, tracker) for case in cases)
        return TestReport(pack=ruleset.pack, version=ruleset.version, digest=ruleset.digest,
                          matcher=compiled.matcher.name, files=files, cases=results, coverage=tracker.coverage(),
                          elapsed_s=time.perf_counter() - start)
    finally:
        compiled.close()
