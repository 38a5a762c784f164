"""The pack's counters as SQL window functions over a ``payments`` relation: the counters stage of the columnar
backtest, equal to what :class:`~policy_engine.backtesting.history.Replay` recomputes row by row.

The relation has ``__line`` (arrival order), ``__instant_us`` (UTC microseconds), ``__status`` and ``__decision``
(what happened to the payment, NULL when the record does not say), ``request_id``, ``psp_country`` and one column
per view key the aggregates read, named by its dotted path (:func:`columns_needed`; a counterparty's presence
marker, ``merchant``, is TRUE or FALSE). Money is DECIMAL. ``where`` and ``since`` conditions compile as the rules
do (:class:`~.sqlcompile.RuleCompiler`: one copy of the operators' semantics), reading a cross-rate amount as the
exact numerator below and the local date of ``__local``.

How Replay's semantics become frames (every frame is over one entity, ordered by (instant, line)):

- Rows are ordered by one exact key, ``instant * 2**32 + line``, so "recorded before this payment" is the frame
  ending ``1 PRECEDING``: a payment at the same instant that arrived later is not counted, one that arrived
  earlier is.
- Each window is a lower bound ``lo`` on the instant (``last``: ``t - span + 1``; ``calendar``: the start of the
  local period in the payment's own zone; ``since``: just after the latest event recorded before it), so every
  window is one RANGE frame starting at ``key - key(lo)`` preceding: a per-row offset, which also makes
  ``count_distinct`` one frame. A calendar period is per payment, not per row partition, because one entity's
  payments may be in different jurisdictions.
- A row contributes only if it is the first of its ``request_id`` (a retry is read, never recorded), its
  ``where`` is not false (unknown counts), and its recorded decision and status count (``counts:``; the final
  status is known from the start, as in Replay). A NULL entity reads no counter and records nothing.
- Sums are exact: DECIMAL, never DOUBLE. A cross-rate amount (``derived.amount_usd``: CNY over a rate, often no
  finite decimal) is carried as an exact DECIMAL numerator over a constant denominator
  (:attr:`CounterColumn.denominator`): the rules compiler compares it multiplied through.

That plan needs RANGE frames starting at a per-row offset (DuckDB has them). Spark SQL's take constant offsets
only (:attr:`.Dialect.per_row_frames`), so there the same windows are frames of constant offsets in finer
partitions, every one ordered by (instant, line):

- ``lifetime``: the entity's earlier rows (ROWS ... 1 PRECEDING), as above.
- ``last``: a RANGE frame over the instant, ``[t - span + 1, t - 1]``, plus this instant's earlier lines (a
  partition per (entity, instant)); a count or sum adds them, ``count_distinct`` unites their sets of values.
- ``calendar``: a partition per (entity, local period start) in the zone of the payment; in ``jurisdiction``
  each row's period is computed in the zone of every jurisdiction the history's payments are in
  and the payment reads its own zone's.
- ``since``: a partition per (entity, instant of the latest event recorded before the row): the rows after
  the payment's latest event are the earlier rows of its partition after that instant.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from ...aggregates import ALLOWED, ATTEMPTS, COUNT, COUNT_DISTINCT, FAILED, JURISDICTION, REVERSED, Aggregate
from ...conditions import Node, counterparty_of, leaves
from ...errors import PolicyEngineError
from ...operators import Shape
from ...request import CROSS_RATE_PATHS, DEFAULT_PSP_COUNTRY, counters_read
from ...ruleset import RuleSet
from .dialect import DecimalType, Dialect
from .sqlcompile import AMOUNT_CNY, ColumnarCompileError, Num, RuleCompiler, column_types

#: The columns every payments relation has (the relation contract).
LINE, INSTANT, STATUS, DECISION = "__line", "__instant_us", "__status", "__decision"
REQUEST_ID, PSP_COUNTRY = "request_id", "psp_country"


class CountersCompileError(PolicyEngineError, ValueError):
    """An aggregate whose counter the SQL plan cannot compute (the message names it, where it is written, and
    why); the backtest then needs the row engine's replay."""


@dataclass(frozen=True, slots=True)
class CounterColumn:
    """A counter column of :func:`counters_query`: ``name`` is its ``history.*`` path; the column holds the
    counter's value times ``denominator`` (1 but for sums of cross-rate amounts), exactly. NULL: the payment
    has no entity for it (the engine leaves the counter missing)."""

    name: str
    denominator: int = 1


@dataclass(frozen=True, slots=True)
class CountersQuery:
    """One SELECT over the payments relation giving ``__line`` and one column per counter the rules read."""

    sql: str
    columns: tuple[CounterColumn, ...]


@dataclass(frozen=True, slots=True)
class _Exact:
    """A numeric SQL value as an exact fraction: ``sql / denominator``; ``sql`` is a column times at most
    ``factor``."""

    sql: str
    denominator: int = 1
    factor: int = 1


def counters_read_by(ruleset: RuleSet) -> tuple[Aggregate, ...]:
    """The aggregates whose counters the pack's rules read, in declaration order (Replay computes only these)."""
    read = {f"history.{name}" for name in counters_read(ruleset)}
    return tuple(a for a in ruleset.aggregates.values() if a.field in read)


def columns_needed(ruleset: RuleSet) -> tuple[str, ...]:
    """The view columns the counters stage reads besides the contract's ``__`` columns: ``request_id``,
    ``psp_country``, each aggregate's entity, ``of``, ``where`` and ``since`` fields, the counterparty presence
    markers (``merchant``) its conditions need, and for cross-rate amounts (``derived.amount_usd``) the
    ``derived.amount_cny`` they are computed from exactly."""
    paths: dict[str, None] = dict.fromkeys((REQUEST_ID, PSP_COUNTRY))
    for aggregate in counters_read_by(ruleset):
        for path in aggregate.fields_read():
            if path in CROSS_RATE_PATHS.values():
                paths[AMOUNT_CNY] = None
            else:
                paths[path] = None
            party = counterparty_of(path)
            if party is not None:
                paths[party] = None
    return tuple(paths)


def counters_query(ruleset: RuleSet, dialect: Dialect, source: str = "payments",
                   jurisdictions: frozenset[str] | None = None) -> CountersQuery:
    """The SELECT computing, for every row of ``source``, each counter the pack's rules read as Replay does.
    ``jurisdictions``: the PSP countries of the rows of ``source`` (None: any of the pack's ``timezones:``); a
    dialect without per-row frames partitions a jurisdiction's calendar periods in their zones only."""
    return _Compiler(ruleset, dialect, jurisdictions).query(source)


class _Compiler:
    def __init__(self, ruleset: RuleSet, dialect: Dialect, jurisdictions: frozenset[str] | None = None):
        self.ruleset = ruleset
        self.d = dialect
        # every row reads its own jurisdiction's period: a zone no row is in needs no partitioning (each costs a
        # sort per calendar unit; the bundled pack has 16 zones, a PSP's history typically one or two)
        zones = {z for c, z in ruleset.timezones.items() if jurisdictions is None or c in jurisdictions}
        self.jurisdiction_zones = sorted(zones or set(ruleset.timezones.values()))
        self.types = column_types(ruleset)
        self.rules = RuleCompiler(dialect, self.types.kinds, self.types.numeric, self.types.rate,
                                  cross_rate=self._cross_rate, day=dialect.to_date("__local"))
        self.aggregates = counters_read_by(ruleset)
        self._zone_case = self._zones()

    # -- the query ----------------------------------------------------------------------------------------------
    def query(self, source: str) -> CountersQuery:
        q = self.d.ident
        t, line = q(INSTANT), q(LINE)
        fresh = f"ROW_NUMBER() OVER (PARTITION BY {q(REQUEST_ID)} ORDER BY {t}, {line}) = 1"
        staged = {"__line": q(LINE), "__t": t, "__zone": "__zone"}
        if self.d.per_row_frames:
            staged["__k"] = self.d.order_key(t, line)
        after: dict[str, str] = {}  # the columns of a second step: what reads a window of the first
        windows, columns = [], []
        # One column per distinct entity and per distinct window start (or period): windows over the same partition
        # and order share one sort, and a calendar period's start is computed once for every aggregate using it.
        entities: dict[str, str] = {}
        starts: dict[str, str] = {}
        for i, agg in enumerate(self.aggregates):
            screened = [leaf for node in (agg.where, agg.window.event) if node is not None
                        for leaf in leaves(node) if leaf.op.spec.shape is Shape.SCREEN]
            if screened:  # fuzzy name screening is Python code, not SQL
                raise CountersCompileError(f"{agg.file}:{agg.line}:{agg.col}: {agg.field}: operator "
                                           f"{screened[0].op} has no SQL form in the columnar counters stage; "
                                           "backtest this pack with the row engine")
            entity = entities.setdefault(agg.by, f"__e{len(entities)}")
            staged[entity] = q(agg.by)
            value, denominator = self._contribution(agg)
            where = "TRUE" if agg.where is None else f"({self._condition(agg, agg.where)}) IS NOT FALSE"
            staged[f"__v{i}"] = f"CASE WHEN __fresh AND {self._counted(agg.counts)} AND {where} THEN {value} END"
            if agg.window.kind == "since":
                assert agg.window.event is not None
                staged[f"__ev{i}"] = f"__fresh AND ({self._condition(agg, agg.window.event)}) IS TRUE"
            plan = self._per_row_frames if self.d.per_row_frames else self._constant_frames
            window = plan(i, agg, entity, staged, after, starts)
            windows.append(f"CASE WHEN {entity} IS NULL THEN NULL ELSE COALESCE({window}, 0) END AS {q(agg.field)}")
            columns.append(CounterColumn(agg.field, denominator))
        ctes = [f"__y AS (SELECT *, {fresh} AS __fresh, {self._zone_case} AS __zone FROM {source})",
                f"__z AS (SELECT *, {self.d.local_timestamp(t, '__zone')} AS __local FROM __y)",
                f"__b AS (SELECT {_select(staged)} FROM __z)"]
        if after:
            ctes.append(f"__s AS (SELECT *, {_select(after)} FROM __b)")
        select = ", ".join(["__line AS " + q(LINE), *windows])
        return CountersQuery(f"WITH {', '.join(ctes)} SELECT {select} FROM {'__s' if after else '__b'}",
                             tuple(columns))

    def _aggregate(self, agg: Aggregate, value: str, frames: list[str]) -> str:
        """The aggregate's function of ``value`` over the union of the window ``frames`` (disjoint; each the
        contents of an OVER clause); NULL or 0 when they hold no counted row."""
        if agg.function == COUNT_DISTINCT:
            return self.d.count_distinct(value, frames)
        function = "COUNT" if agg.function == COUNT else "SUM"
        return " + ".join(f"COALESCE({function}({value}) OVER ({frame}), 0)" for frame in frames)

    def _per_row_frames(self, i: int, agg: Aggregate, entity: str, staged: dict[str, str], after: dict[str, str],
                        starts: dict[str, str]) -> str:
        """The window as one frame over the exact order key ``__k``, starting at a per-row offset (DuckDB)."""
        value = f"__v{i}"
        if agg.window.kind == "lifetime":
            return self._aggregate(agg, value, [f"PARTITION BY {entity} ORDER BY __k ROWS BETWEEN UNBOUNDED "
                                                "PRECEDING AND 1 PRECEDING"])
        if agg.window.kind == "since":
            # just after the entity's latest event recorded before this payment (none: the beginning)
            lo = (f"COALESCE(MAX(CASE WHEN __ev{i} THEN __t END) OVER (PARTITION BY {entity} ORDER BY __k "
                  "ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) + 1, 0)")
            key = f"__sk{i}"
            after[key] = self.d.order_key(lo, "0")
        else:
            bound = self.d.order_key(self._lower_bound(agg), "0")
            key = starts.setdefault(bound, f"__lk{len(starts)}")
            staged[key] = bound
        # A window starting at or after the payment's own key is empty (a since window after an event at this
        # very instant; line 0 at the start of a period), and a frame cannot start after its end.
        frame = f"PARTITION BY {entity} ORDER BY __k RANGE BETWEEN GREATEST(__k - {key}, 0) PRECEDING AND 1 PRECEDING"
        return f"CASE WHEN {key} >= __k THEN 0 ELSE {self._aggregate(agg, value, [frame])} END"

    def _constant_frames(self, i: int, agg: Aggregate, entity: str, staged: dict[str, str], after: dict[str, str],
                         periods: dict[str, str]) -> str:
        """The window as frames with constant offsets only (Spark): a partition per period or since-segment, so
        that every frame starts at its partition's first row or a constant distance before the payment."""
        value, window = f"__v{i}", agg.window
        earlier = "ORDER BY __t, __line ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING"
        if window.kind == "lifetime":
            return self._aggregate(agg, value, [f"PARTITION BY {entity} {earlier}"])
        if window.kind == "last":
            # the instants [t - span + 1, t - 1], and this instant's rows recorded before this payment
            span = window.seconds * 1_000_000
            return self._aggregate(agg, value, [
                f"PARTITION BY {entity} ORDER BY __t RANGE BETWEEN {span - 1} PRECEDING AND 1 PRECEDING",
                f"PARTITION BY {entity}, __t {earlier}"])
        if window.kind == "since":
            # The window holds the rows after the instant of the latest event recorded before the payment (m; -1:
            # none). A row recorded earlier with another m is before that event (its m is smaller), so it is
            # outside; one with the same m counts if it is after that instant (not one at the event's instant).
            latest = f"__m{i}"
            after[latest] = f"COALESCE(MAX(CASE WHEN __ev{i} THEN __t END) OVER (PARTITION BY {entity} {earlier}), -1)"
            return self._aggregate(agg, f"CASE WHEN __t > {latest} THEN {value} END",
                                   [f"PARTITION BY {entity}, {latest} {earlier}"])
        # A calendar period in the payment's zone: the entity's earlier rows whose instant is in the same local
        # period of that zone (periods of one zone do not overlap). An entity's payments may be in different
        # jurisdictions, so a row's period is computed in every zone a payment of the history reads.
        zones = self.jurisdiction_zones if window.timezone == JURISDICTION else [window.timezone]
        arms = []
        for zone in zones:
            start = f"date_trunc('{window.unit}', {self.d.local_timestamp('__t', _literal(zone))})"
            period = periods.setdefault(start, f"__p{len(periods)}")
            staged[period] = start
            arms.append((zone, self._aggregate(agg, value, [f"PARTITION BY {entity}, {period} {earlier}"])))
        if window.timezone != JURISDICTION:
            return arms[0][1]
        return "CASE __zone " + " ".join(f"WHEN {_literal(zone)} THEN {arm}" for zone, arm in arms) + " END"

    def _zones(self) -> str:
        """The payment's PSP jurisdiction's zone, per row (psp_country absent: the request contract's default)."""
        whens = " ".join(f"WHEN {_literal(country)} THEN {_literal(zone)}"
                         for country, zone in sorted(self.ruleset.timezones.items()))
        return f"CASE COALESCE({self.d.ident(PSP_COUNTRY)}, {_literal(DEFAULT_PSP_COUNTRY)}) {whens} END"

    def _lower_bound(self, agg: Aggregate) -> str:
        """The first instant in the payment's window (``last`` or ``calendar``), in UTC microseconds."""
        t = self.d.ident(INSTANT)
        window = agg.window
        if window.kind == "last":
            return f"{t} - {window.seconds * 1_000_000 - 1}"
        if window.timezone == JURISDICTION:
            return self.d.period_start("__local", "__zone", window.unit)
        zone = _literal(window.timezone)
        return self.d.period_start(self.d.local_timestamp(t, zone), zone, window.unit)

    def _counted(self, counts: str) -> str:
        """Whether a row's recorded decision and status make it count (``aggregates.counted``): no decision
        recorded is not denied, no status is pending."""
        q = self.d.ident
        if counts == ATTEMPTS:
            return "TRUE"
        if counts == ALLOWED:
            return (f"COALESCE({q(DECISION)}, 'allow') <> 'deny' AND "
                    f"COALESCE({q(STATUS)}, 'pending') NOT IN ('{FAILED}', '{REVERSED}')")
        return f"COALESCE({q(DECISION)} = 'deny', FALSE)"

    def _contribution(self, agg: Aggregate) -> tuple[str, int]:
        """What a counted row adds (1 for ``count``, the exact ``of`` value otherwise) and its denominator."""
        if agg.function == COUNT:
            return "1", 1
        assert agg.of is not None
        exact = self._operand(agg.of)  # distinct numerators over one denominator are distinct values
        return exact.sql, 1 if agg.function == COUNT_DISTINCT else exact.denominator

    # -- values -------------------------------------------------------------------------------------------------
    def _operand(self, path: str) -> _Exact:
        """A field's exact value; a cross-rate amount over the lcm of its rates' numerators across FX tables."""
        q = self.d.ident
        target = next((c for c, p in CROSS_RATE_PATHS.items() if p == path), None)
        if target is None:
            return _Exact(q(path))
        ratios = [table.ratios.get(target) for table in self.ruleset.fx_tables]
        common = math.lcm(*(p for p, _ in filter(None, ratios)))
        cny = q(AMOUNT_CNY)
        # amount / (p/q) = amount * q / p = amount * (q * common / p) / common, for the payment's own FX table
        scaled = [None if r is None else f"{cny} * {r[1] * common // r[0]}" for r in ratios]
        by_table = scaled[0] or "NULL"
        if len(scaled) > 1:
            day = "CAST(__local AS DATE)"
            arms = " ".join(f"WHEN {day} >= DATE '{dt.date.fromordinal(table.as_of).isoformat()}' THEN {s or 'NULL'}"
                            for table, s in reversed(list(zip(self.ruleset.fx_tables[1:], scaled[1:], strict=True))))
            by_table = f"CASE {arms} ELSE {by_table} END"
        # A payment in the target currency itself gets its amount back exactly (cny = amount * p/q exactly), and
        # one in a currency without a rate has no CNY amount: NULL, missing, as in the view.
        return _Exact(f"({by_table})", common, max((r[1] * common // r[0] for r in filter(None, ratios)), default=1))

    def _cross_rate(self, path: str) -> Num:
        """A cross-rate field as the conditions compiler reads it: the exact numerator over its constant
        denominator (see :meth:`_operand`)."""
        exact = self._operand(path)
        value = self.types.numeric[AMOUNT_CNY].times(DecimalType.of(exact.factor))
        return Num(exact.sql, value, (self.d.decimal(exact.denominator), DecimalType.of(exact.denominator)))

    def _condition(self, agg: Aggregate, node: Node) -> str:
        """A ``where`` or ``since`` condition, TRUE / FALSE / NULL, compiled as the rules are (:mod:`.sqlcompile`)."""
        try:
            return self.rules.expression(node)
        except ColumnarCompileError as exc:
            raise CountersCompileError(f"{agg.file}:{agg.line}:{agg.col}: {agg.field}: {exc}; backtest this pack "
                                       "with the row engine") from None


def _select(columns: dict[str, str]) -> str:
    return ", ".join(f"{sql} AS {name}" for name, sql in columns.items())


def _literal(value: str | bool) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return "'" + value.replace("'", "''") + "'"
