"""Running the plan: the aggregate report in SQL, returned as the row backtest's :class:`BacktestResult`.

The per-payment results (``joined``) are materialised once; the report then takes a handful of GROUP BY queries
whose answers are a few rows (decisions by outcome, label and baseline decision, with each rule's hits summed),
so no payment passes through Python on the way. Those rows fill the row backtest's own counters
(:class:`~..tally.PackTally`), and :func:`~..result.pack_report` and :func:`~..result.flips_of` build the report,
so the text, JSON and HTML reports cannot tell the engines apart.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any, Protocol

from ...decision import Outcome
from ...pack import CompiledPack
from ...request import DEFAULT_PSP_COUNTRY
from ..history import Difference, Label, differences, read_label
from ..metrics import BAD, UNLABELLED, CostModel, label_metrics
from ..result import BacktestResult, BadLine, CounterCheck, flips_of, pack_report
from ..tally import PackTally, Tally
from .dialect import Dialect
from .layout import LINE
from .plan import CARRIED, DIFFERENCES, PackPlan, Plan, build_plan, differs_column
from .screens import SOURCE, ScreeningCost, register_screens

JOINED = "policy_engine_backtest"


class Executor(Protocol):
    """One SQL engine session: DuckDB in this process, or a SparkSession."""

    dialect: Dialect

    def materialize(self, name: str, sql: str) -> None: ...

    def materialize_plan(self, name: str, plan: Plan, select: str) -> None:
        """Materialise ``select`` (over the plan's CTEs) as the table ``name``."""
        ...

    def rows(self, sql: str) -> list[tuple[Any, ...]]: ...

    def query(self, ctes: Sequence[tuple[str, str]], select: str) -> list[tuple[Any, ...]]:
        """The rows of ``select`` over some of the plan's CTEs (:meth:`Plan.upto`)."""
        ...

    def drop(self, name: str) -> None: ...

    def register(self, name: str, columns: Sequence[tuple[str, str]], rows: list[tuple[Any, ...]]) -> None:
        """``rows`` as the relation ``name`` (the screening stage's tables, :mod:`.screens`)."""
        ...

    def unregister(self, name: str) -> None: ...


@dataclass(frozen=True, slots=True)
class PaymentResult:
    """One payment as the candidate pack decided it (for comparisons with the row engine)."""

    line: int
    decision: str
    fired: tuple[str, ...]
    undecided: tuple[str, ...]
    skipped: tuple[str, ...]


def _ids(text: str | None) -> tuple[str, ...]:
    return tuple(text.split()) if text else ()


class Run:
    """The plan materialised in one executor session; :meth:`result` and :meth:`payments` read it."""

    def __init__(self, executor: Executor, source: str, candidate: CompiledPack,
                 baseline: CompiledPack | None = None, counters: Any = None, recompute: bool = False):
        self.x = executor
        self.source = source
        self.recompute = recompute
        jurisdictions = None
        if recompute and not executor.dialect.per_row_frames:  # Spark: one window partitioning per zone used
            default = executor.dialect.string(DEFAULT_PSP_COUNTRY)
            jurisdictions = frozenset(str(c) for (c,) in executor.rows(
                f"SELECT DISTINCT COALESCE(psp_country, {default}) FROM {source}"))
        self.plan: Plan = build_plan(executor.dialect, source, candidate, baseline, counters, recompute,
                                     jurisdictions)
        self._packs: list[PackPlan] = [p for p in (self.plan.candidate, self.plan.baseline) if p is not None]
        #: the screening stage's work (names screened, seconds), for the benchmark
        self.screening = ScreeningCost()
        for pack in self._packs:
            self.screening += register_screens(executor, self.plan.upto(SOURCE.format(p=pack.prefix)), pack.prefix,
                                               pack.screens)
        executor.materialize_plan(JOINED, self.plan, "SELECT * FROM joined")

    def close(self) -> None:
        self.x.drop(JOINED)
        for pack in self._packs:
            for table in pack.screens:
                self.x.unregister(table.name)

    def payments(self, side: str = "c") -> list[PaymentResult]:
        """Every decided payment of one pack (``c`` candidate, ``b`` baseline), by line."""
        plan = self.plan.candidate if side == "c" else self.plan.baseline
        assert plan is not None, "no baseline in this run"
        d = self.x.dialect
        rows = self.x.rows(f"SELECT {LINE}, {side}_decision, {plan.ids(d, 'fired')}, {plan.ids(d, 'undecided')}, "
                           f"{plan.ids(d, 'skipped')} FROM {JOINED} WHERE __bad_kind IS NULL ORDER BY {LINE}")
        return [PaymentResult(int(line), d, _ids(f), _ids(u), _ids(s)) for line, d, f, u, s in rows]

    def counters(self, side: str = "c") -> dict[int, dict[str, Any]]:
        """The counters the rules of one pack read, per decided payment, by line: exact values (a cross-rate sum
        as a :class:`~fractions.Fraction`), None where the payment has none (no entity). For comparisons."""
        plan = self.plan.candidate if side == "c" else self.plan.baseline
        assert plan is not None, "no baseline in this run"
        stage = plan.counters
        if not stage:
            return {}
        q = self.x.dialect.ident
        rows = self.x.query(
            self.plan.upto(f"{side}_pay"),
            f"SELECT {q(LINE)}, {', '.join(q(c.column) for c in stage)} FROM {side}_pay "
            f"WHERE {q(LINE)} IN (SELECT {q(LINE)} FROM {JOINED} WHERE __bad_kind IS NULL) ORDER BY {q(LINE)}")
        return {int(line): {c.column: _exact(v, c.denominator) for c, v in zip(stage, values, strict=True)}
                for line, *values in rows}

    def tally(self, k: int) -> Tally:
        plan, x = self.plan, self.x
        c, b = plan.candidate, plan.baseline
        ok = "__bad_kind IS NULL"
        tally = Tally(k, baseline=PackTally() if b is not None else None)
        tally.records = int(x.rows(f"SELECT COUNT(*) FROM {JOINED}")[0][0])
        for kind, count in x.rows(f"SELECT __bad_kind, COUNT(*) FROM {JOINED} WHERE NOT ({ok}) GROUP BY __bad_kind"):
            tally.bad[kind] = int(count)
        tally.bad_examples = [(int(line), kind, _short(message)) for line, kind, message in x.rows(
            f"SELECT {LINE}, __bad_kind, __bad_message FROM {JOINED} WHERE NOT ({ok}) ORDER BY {LINE} LIMIT {k}")]
        # one GROUP BY for the counts: by label, candidate and baseline decision, every rule's hits summed, and
        # for flipped payments the rules that fired under one pack only
        ids = list(dict.fromkeys([*c.rule_ids, *(b.rule_ids if b else ())]))
        c_flag = dict(zip(c.rule_ids, c.fired, strict=True))
        b_flag = dict(zip(b.rule_ids, b.fired, strict=True)) if b else {}
        sums = [f"SUM(CASE WHEN c_{c_flag[r]} THEN 1 ELSE 0 END)" for r in c.rule_ids]
        if b is not None:
            sums += [f"SUM(CASE WHEN b_{b_flag[r]} THEN 1 ELSE 0 END)" for r in b.rule_ids]
            for r in ids:
                cf = f"c_{c_flag[r]}" if r in c_flag else "FALSE"
                bf = f"b_{b_flag[r]}" if r in b_flag else "FALSE"
                sums += [f"SUM(CASE WHEN {cf} AND NOT {bf} THEN 1 ELSE 0 END)",
                         f"SUM(CASE WHEN {bf} AND NOT {cf} THEN 1 ELSE 0 END)"]
        keys = ["__label", "__label_known_at", "c___day", "c_decision"]
        keys += ["b___day", "b_decision"] if b is not None else ["NULL", "NULL"]
        grouped = ", ".join(k for k in keys if k != "NULL")
        groups = x.rows(f"SELECT {', '.join(keys)}, COUNT(*), {', '.join(sums) or '0'} FROM {JOINED} "
                        f"WHERE {ok} GROUP BY {grouped}")
        c_stop = frozenset(r.id for r in c.pack.ruleset.rules if r.outcome != Outcome.ALLOW.value)
        b_stop = frozenset(r.id for r in b.pack.ruleset.rules if r.outcome != Outcome.ALLOW.value) if b else frozenset()
        nc = len(c.rule_ids)
        nb = len(b.rule_ids) if b else 0
        bad_labels: set[str] = set()  # the label texts of the bad class, for the missed examples
        for text, known_at, c_day, cd, b_day, bd, count, *hits in groups:
            label = read_label(json.loads(text, parse_float=Decimal) if text is not None else None, known_at)
            if label is not None and label.cls == BAD and text is not None:
                bad_labels.add(text)
            _count(tally.candidate, label, c_day.toordinal(), cd, int(count),
                   dict(zip(c.rule_ids, hits[:nc], strict=True)), c_stop)
            if b is not None and tally.baseline is not None:
                _count(tally.baseline, label, b_day.toordinal(), bd, int(count),
                       dict(zip(b.rule_ids, hits[nc:nc + nb], strict=True)), b_stop)
                if bd != cd:
                    tally.flips[(bd, cd)] += int(count)
                    only = hits[nc + nb:]
                    for i, r in enumerate(ids):
                        for side, n in (("candidate", only[2 * i]), ("baseline", only[2 * i + 1])):
                            if n:
                                tally.flip_rules[(bd, cd, side, r)] += int(n)
        if k > 0:
            self._examples(tally, k, ok, bad_labels)
        return tally

    def counter_check(self, k: int) -> CounterCheck | None:
        """Where the counters records carried differ from the recomputed ones, as the row backtest reports it
        (None: the counters were not recomputed). Counts in one query over ``joined``'s check columns; the first
        ``k`` differences from the text of the first differing lines, compared again by
        :func:`~..history.differences` so they read as the row engine's do."""
        checked = self.plan.candidate.checked
        if not self.recompute or checked is None:
            return None
        q = self.x.dialect.ident
        flags = [f"SUM(CASE WHEN {q(differs_column(i))} THEN 1 ELSE 0 END)" for i in range(len(checked))]
        recomputed, compared, differing, *by_field = self.x.rows(
            f"SELECT COUNT({q(CARRIED)}), SUM(CASE WHEN {q(CARRIED)} THEN 1 ELSE 0 END), "
            f"SUM(CASE WHEN {q(DIFFERENCES)} IS NULL THEN 0 ELSE 1 END){''.join(', ' + f for f in flags)} "
            f"FROM {JOINED}")[0]
        found: list[Difference] = []
        if k > 0 and differing:
            rows = self.x.rows(f"SELECT {LINE}, {q(DIFFERENCES)} FROM {JOINED} WHERE {q(DIFFERENCES)} IS NOT NULL "
                               f"ORDER BY {LINE} LIMIT {k}")
            rid = self._request_ids({int(line) for line, _ in rows})
            for line, text in rows:
                recorded, values = {}, {}
                for item in text.split(" "):
                    i, carried, value = item.split(":")
                    column = checked[int(i)]
                    recorded[column.column.split(".", 1)[1]] = Decimal(carried)
                    values[column.column] = _exact(Decimal(value), column.denominator)
                found += differences(int(line), rid[int(line)], recorded, values)
        return CounterCheck(int(recomputed), int(compared or 0), int(differing or 0),
                            dict(sorted((c.column, int(n)) for c, n in zip(checked, by_field, strict=True) if n)),
                            tuple(found[:k]))

    def _examples(self, tally: Tally, k: int, ok: str, bad_labels: set[str]) -> None:
        """The first ``k`` lines of every list of examples, in one query: a UNION ALL of one top-k per list
        (each scans one flag column; an aggregate keeping k lines per list cost more than the rest together)."""
        plan, d = self.plan, self.x.dialect
        wanted: list[tuple[Any, str]] = []  # (where the examples go, the rows they are taken from)
        # labelled payments the pack let through: labels of the bad class (read in Python, from the groups)
        bad = " OR ".join(f"__label = {d.string(text)}" for text in sorted(bad_labels)) or "FALSE"
        sides = [("c", plan.candidate, tally.candidate)]
        if plan.baseline is not None and tally.baseline is not None:
            sides.append(("b", plan.baseline, tally.baseline))
        for p, pack, pack_tally in sides:
            wanted += [((pack_tally, rule_id), f"{p}_{flag}") for rule_id, flag in zip(pack.rule_ids, pack.fired,
                                                                                       strict=True)]
            wanted.append(((pack_tally, None), f"({bad}) AND {p}_decision = 'allow'"))
        wanted += [((tally, key), f"b_decision = {d.string(key[0])} AND c_decision = {d.string(key[1])}")
                   for key in sorted(tally.flips)]
        branches = [f"SELECT {i} AS i, {LINE} FROM (SELECT {LINE} FROM {JOINED} WHERE {ok} AND ({where}) "
                    f"ORDER BY {LINE} LIMIT {k}) e{i}" for i, (_, where) in enumerate(wanted)]
        found: dict[int, list[int]] = {}
        for i, line in self.x.rows(" UNION ALL ".join(branches)):
            found.setdefault(int(i), []).append(int(line))
        rid = self._request_ids({n for lines in found.values() for n in lines})
        for i, ((target, key), _) in enumerate(wanted):
            refs = [(n, rid[n]) for n in sorted(found.get(i, ()))]
            if isinstance(target, Tally):
                tally.flip_examples[key] = refs
            elif key is None:
                target.missed = refs
            elif refs:
                target.rule_examples[key] = refs

    def _request_ids(self, lines: set[int]) -> dict[int, str]:
        if not lines:
            return {}
        wanted = ", ".join(str(n) for n in sorted(lines))
        rows = self.x.rows(f"SELECT {LINE}, request_id FROM {self.source} WHERE {LINE} IN ({wanted})")
        return {int(line): str(rid) for line, rid in rows}


def _count(pack: PackTally, label: Label | None, day: int, outcome: str, count: int, hits: dict[str, Any],
           stopping: frozenset[str]) -> None:
    """Add one group's counts as :meth:`PackTally.add` adds each of its payments (all dated ``day``)."""
    pack.decisions[outcome] += count
    stopped = outcome != Outcome.ALLOW.value
    for rule_id, n in hits.items():
        if n:
            pack.hits[rule_id] += int(n)
    fired_stopping = {r: int(n) for r, n in hits.items() if n and r in stopping} if stopped else {}
    cls, known = (UNLABELLED, None) if label is None else (label.cls, label.known)
    pack.dated[(day, known, cls, outcome)] += count
    for rule_id, n in fired_stopping.items():
        pack.rule_dated[(rule_id, day, known, cls)] += n
    if label is None or label.cls != BAD:
        pack.unlabelled += count
        if stopped:
            pack.unlabelled_stopped += count
            pack.rule_unlabelled_stopped.update(fired_stopping)
        return
    pack.labelled += count
    pack.patterns[(label.kind, label.pattern, outcome)] += count
    if stopped:
        pack.labelled_stopped += count
        pack.rule_labelled_stopped.update(fired_stopping)


def _exact(value: Any, denominator: int) -> Any:
    if value is None or denominator == 1:
        return value
    return Fraction(value) / denominator


def _short(message: str, limit: int = 300) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"


def result_of(run: Run, tally: Tally, source: str, engine: str, workers: int, started: float, *,
              labels_as_of: dt.date | None = None, label_maturity: int = 0,
              costs: CostModel | None = None) -> BacktestResult:
    """The :class:`BacktestResult` of a run, as the row backtest builds it (label metrics included)."""
    plan = run.plan
    check = run.counter_check(tally.k)
    evaluated = sum(tally.candidate.decisions.values())
    baseline = plan.baseline
    return BacktestResult(
        source=source, format="parquet", workers=workers, records=tally.records, evaluated=evaluated,
        bad=dict(sorted(tally.bad.items())), bad_lines=tuple(BadLine(*b) for b in sorted(tally.bad_examples)),
        candidate=pack_report(plan.candidate.pack.ruleset, tally.candidate),
        baseline=(pack_report(baseline.pack.ruleset, tally.baseline)
                  if baseline is not None and tally.baseline is not None else None),
        flips=flips_of(tally), elapsed_s=time.monotonic() - started, engine=engine,
        counters=check,
        metrics=label_metrics(tally.candidate.dated_counts(),
                              tally.baseline.dated_counts() if tally.baseline is not None else None,
                              as_of=labels_as_of.toordinal() if labels_as_of is not None else None,
                              maturity_days=label_maturity, costs=costs))
