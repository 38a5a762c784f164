"""The columnar backtest as one SQL plan: a chain of CTEs over the converted history (:mod:`.layout`).

Per pack (candidate ``c``, baseline ``b``), over the source relation ``src``:

1. ``{p}_view0``: the ``payments`` relation's plain columns: ``__line``, ``__instant_us``, ``__label``,
   ``__label_known_at``, ``__status``, ``__decision``, one column per request field named by its dotted path
   (contract defaults, e.g. ``psp_country``, and the pack's ``defaults:`` filled in, as the request preparer
   does), the presence markers ``merchant`` / ``payee`` (BOOLEAN) and ``__local`` (the wall-clock time of the
   instant in the PSP's timezone, from the pack's ``timezones:``).
2. ``{p}_view``: derived fields: ``__day`` (the local date, for as-of rules and dated lists),
   ``derived.local_hour``, ``derived.amount_cny`` (amount times the day's reference rate, exact),
   ``__fx.USD`` / ``__fx.EUR`` (the day's rates of the cross-rate targets: ``derived.amount_usd`` is
   ``derived.amount_cny / __fx.USD``, a fraction, never stored), and the checks that make a row a bad line.
3. ``{p}_pay``: the counters stage: :class:`CounterColumn` expressions replace (or add) ``history.*`` columns;
   without any, each record's own counters (or the pack's defaults) stand, as in the row backtest. Recomputed
   counters (``recompute``) are :mod:`.windows`' window functions over ``{p}_cnt_in`` (the view's valid rows,
   the columns they read), ``{p}_cnt``, joined back by ``__line``.
4. ``{p}_scr`` (packs that screen names): the screening stage's tables (:mod:`.screens`, registered before the
   plan runs) LEFT JOINed to ``{p}_pay``; ``{p}_k``: each rule's condition, TRUE / FALSE / NULL
   (:mod:`.sqlcompile`), and whether it is in force.
5. ``{p}_r``: per rule ``f{i}`` (fired) and ``u{i}`` (undecided); then ``{p}_out``: the decision (the most severe
   outcome of the fired rules and the undecided rules' ``on_unknown``, skipped rules aside). The rule ids
   (:meth:`PackPlan.ids`) are spelled out only when asked for: the report needs the flags alone.

With recomputed counters, the candidate's ``{p}_pay`` also checks them against the counters each record carried
(its own ``history``, read from ``src`` as written: no default fills one in), as the row backtest's
:class:`~..result.CounterCheck` does: ``__carried`` (NULL for a record the replay leaves out, a bad line; else
whether it carried ``history``), per compared counter ``__cd{i}`` (it carried that counter and it differs from
the recomputed one, exactly: a cross-rate sum's numerator against the carried value multiplied through; a
counter left out or not recomputed, no entity, is no difference) and ``__cdiff`` (NULL unless one differs: the
differing counters as ``i:recorded:recomputed`` text, for the report's examples). ``joined`` carries them.

``joined`` puts the packs side by side by ``__line``. Everything is plain SQL but for the :class:`.Dialect`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ...aggregates import COUNT, COUNT_DISTINCT, REPORTED_STATUSES
from ...conditions import NOT_APPLICABLE_WHEN_ABSENT
from ...decision import Outcome
from ...errors import RequestError
from ...pack import CompiledPack
from ...request import DEFAULT_PSP_COUNTRY, EARLIEST, LATEST, MAX_AMOUNT, MINOR_UNITS, money_places
from ...resources import load_schema
from ...ruleset import SKIP, FxTable
from .dialect import DecimalType, Dialect
from .layout import INSTANT, INTEGER, LINE, MONEY, Field, request_fields
from .screens import ScreenTable, screen_tables
from .sqlcompile import (
    AMOUNT_CNY,
    CROSS_TARGETS,
    DAY,
    HOUR,
    ColumnarCompileError,
    RuleCompiler,
    column_types,
    fx_column,
)
from .windows import columns_needed, counters_query, counters_read_by

LOCAL = "__local"
RATE = "__rate"
BAD_REQUEST = "__bad_request"
BAD_RECORD = "__bad_record"
UNREAD = "__unread_counters"
RECORD_COLUMNS = {"__label": "label", "__label_known_at": "label_known_at", "__status": "status",
                  "__decision": "decision"}


@dataclass(frozen=True, slots=True)
class CounterColumn:
    """A column the counters stage sets: ``sql`` over the pack's view columns (window functions welcome).
    ``type``: its exact DECIMAL type, when it is not the contract's (a recomputed sum of CNY amounts may have more
    decimals than a caller-supplied counter); ``denominator``: rules compare the column multiplied through by it."""

    column: str
    sql: str
    type: DecimalType | None = None
    #: the column holds the counter times this (a recomputed sum of cross-rate amounts, an exact numerator)
    denominator: int = 1


@dataclass(frozen=True, slots=True)
class PackPlan:
    """One pack compiled against the layout: its CTEs and the columns of ``{prefix}_out``."""

    pack: CompiledPack
    prefix: str
    ctes: tuple[tuple[str, str], ...]
    fired: tuple[str, ...]  # per rule in pack order, the column of ``{prefix}_out`` that says it fired
    undecided: tuple[str, ...]  # ... that says its condition is unknown (in force)
    rule_ids: tuple[str, ...]
    screens: tuple[ScreenTable, ...] = ()  # the screening stage's tables ``{p}_k`` joins (register them first)
    counters: tuple[CounterColumn, ...] = ()  # the counters stage's columns of ``{prefix}_pay``
    #: the recomputed counters checked against the carried ones (``__cd{i}`` in this order); None: no check
    checked: tuple[CounterColumn, ...] | None = None

    def ids(self, dialect: Dialect, status: str) -> str:
        """The ids of the rules ``fired``, ``undecided`` or ``skipped`` on a row of ``joined``, space-separated."""
        parts = []
        for rule, f, u in zip(self.pack.ruleset.rules, self.fired, self.undecided, strict=True):
            flag = {"fired": f, "undecided": u if rule.on_unknown != SKIP else None,
                    "skipped": u if rule.on_unknown == SKIP else None}[status]
            if flag is not None:
                parts.append(f"CASE WHEN {self.prefix}_{flag} THEN {dialect.string(rule.id)} END")
        return f"CONCAT_WS(' ', {', '.join(parts)})" if parts else "''"


@dataclass(frozen=True, slots=True)
class Plan:
    """The whole plan: ``ctes`` end in ``joined``, whose columns ``__line``, ``__label``, ``__label_known_at``,
    ``__bad_kind``, ``__bad_message``, and per pack ``{p}_decision``, ``{p}___day`` (the payment's local date),
    ``{p}_f{i}`` and ``{p}_u{i}``; with recomputed counters, the candidate's check columns (the module doc)."""

    dialect: Dialect
    candidate: PackPlan
    baseline: PackPlan | None
    ctes: tuple[tuple[str, str], ...] = field(default=())

    def query(self, select: str) -> str:
        """``WITH <every CTE> <select>``: ``select`` reads ``joined`` (or any CTE)."""
        return with_ctes(self.ctes, select)

    def upto(self, name: str) -> tuple[tuple[str, str], ...]:
        """The CTEs ``name`` reads: ``src`` and its own pack's up to ``name`` itself."""
        prefix = name.split("_", 1)[0] + "_"
        names = [n for n, _ in self.ctes]
        return tuple((n, sql) for n, sql in self.ctes[: names.index(name) + 1] if n == "src" or n.startswith(prefix))


def with_ctes(ctes: Sequence[tuple[str, str]], select: str) -> str:
    """``WITH <ctes> <select>``."""
    return "WITH " + ",\n".join(f"{name} AS ({sql})" for name, sql in ctes) + "\n" + select


#: The check of recomputed counters against carried ones (see the module doc): the columns ``joined`` carries.
CARRIED, DIFFERENCES = "__carried", "__cdiff"
HAS_HISTORY = "__has_history"
RECORDED = "__recorded."


def differs_column(i: int) -> str:
    return f"__cd{i}"


def check_columns(checked: Sequence[CounterColumn] | None) -> list[str]:
    """The check's columns of ``{p}_pay`` and ``joined``, for the counters ``checked`` (None: no check)."""
    if checked is None:
        return []
    return [CARRIED, *(differs_column(i) for i in range(len(checked))), DIFFERENCES]


#: The digits a recomputed sum is kept to (cast, so an overflow is an error, never a rounding): room for the
#: pack's constants multiplied through within the engines' 38 digits.
SUM_PRECISION = 30


class _PackCompiler:
    def __init__(self, pack: CompiledPack, prefix: str, d: Dialect, counters: Sequence[CounterColumn],
                 recompute: bool = False, check: bool = False,
                 jurisdictions: frozenset[str] | None = None):
        self.pack, self.p, self.d = pack, prefix, d
        self.jurisdictions = jurisdictions
        self.recompute = recompute
        self.fields = request_fields()
        types = column_types(pack.ruleset)
        self.rate = types.rate
        self.numeric = dict(types.numeric)
        self.recomputed: tuple[tuple[str, str], ...] = ()
        #: with ``check``, the recomputed counters compared with the carried ones (see the module doc)
        self.checked: tuple[CounterColumn, ...] | None = None
        if recompute:
            self.recomputed, stage = self._recomputed()
            given = {c.column for c in counters}  # a caller's own stage for a counter stands
            counters = [*(c for c in stage if c.column not in given), *counters]
            if check:
                self.checked = tuple(c for c in stage if c.column not in given)
        for c in counters:
            if c.type is not None:
                self.numeric[c.column] = c.type
        self.counters = counters
        self.screens = screen_tables(pack, prefix)
        self.rules = RuleCompiler(d, types.kinds, self.numeric, self.rate,
                                  {c.column: c.denominator for c in counters if c.denominator != 1})

    def _recomputed(self) -> tuple[tuple[tuple[str, str], ...], list[CounterColumn]]:
        """The CTEs recomputing the counters the rules read from the history (:mod:`.windows`, as the row
        backtest's replay does), and the counter columns reading them."""
        q, p, ruleset = self.q, self.p, self.pack.ruleset
        if not counters_read_by(ruleset):
            return (), []
        available = {f.path for f in self.fields} | {AMOUNT_CNY, *NOT_APPLICABLE_WHEN_ABSENT}
        needed = columns_needed(ruleset)
        unknown = [c for c in needed if c not in available]
        if unknown:
            raise ColumnarCompileError(f"the counters read {', '.join(unknown)}, which the columnar view does not "
                                       "have; recompute the counters with --engine row")
        cols = [q(c) for c in (LINE, INSTANT, "__status", "__decision", *needed)]
        # a record the row backtest reports as bad is never replayed: it counts for no other payment
        source = (f"SELECT {', '.join(cols)} FROM {p}_view "
                  f"WHERE {q(BAD_REQUEST)} = '' AND {q(BAD_RECORD)} = ''")
        query = counters_query(ruleset, self.d, f"{p}_cnt_in", self.jurisdictions)
        of = {a.field: a for a in counters_read_by(ruleset)}
        stage = []
        for column in query.columns:
            aggregate = of[column.name]
            if aggregate.function in (COUNT, COUNT_DISTINCT):
                stage.append(CounterColumn(column.name, f"{p}_cnt.{q(column.name)}", INTEGER))
                continue
            assert aggregate.of is not None
            scale = self.numeric[AMOUNT_CNY if aggregate.of in CROSS_TARGETS else aggregate.of].scale
            t = DecimalType(SUM_PRECISION - scale, scale)
            stage.append(CounterColumn(column.name, self.d.cast_decimal(f"{p}_cnt.{q(column.name)}", t), t,
                                       column.denominator))
        return ((f"{p}_cnt_in", source), (f"{p}_cnt", query.sql)), stage

    def q(self, name: str) -> str:
        return self.d.ident(name)

    def source(self, f: Field) -> str:
        return self.q(f.path) if f.parent is None else f"{self.q(f.parent)}.{self.q(f.name)}"

    def _default(self, f: Field, value: object) -> str:
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        if isinstance(value, str):
            return self.d.string(value)
        t = INTEGER if f.kind == "int" else MONEY
        return self.d.cast_decimal(self.d.string(str(value)), t) if f.kind == "num" else f"CAST({value} AS BIGINT)"

    def view0(self) -> str:
        contract = _contract_defaults()
        pack_defaults = self.pack.ruleset.defaults
        cols = [f"{self.q(LINE)}", f"{self.q(INSTANT)}"]
        cols += [f"{self.q(src)} AS {self.q(name)}" for name, src in RECORD_COLUMNS.items()]
        for f in self.fields:
            expr = self.source(f)
            if f.path in pack_defaults:
                expr = f"COALESCE({expr}, {self._default(f, pack_defaults[f.path])})"
            elif f.path in contract:
                filled = f"COALESCE({expr}, {self._default(f, contract[f.path])})"
                # a contract default is filled in only inside an object the request has
                expr = filled if f.parent is None else \
                    f"(CASE WHEN {self.q(f.parent)} IS NULL THEN NULL ELSE {filled} END)"
            cols.append(f"{expr} AS {self.q(f.path)}")
        cols += [f"({self.q(party)} IS NOT NULL) AS {self.q(party)}" for party in NOT_APPLICABLE_WHEN_ABSENT]
        by_path = {f.path: f for f in self.fields}
        if self.checked is not None:  # the record's own counters, as written
            cols.append(f"({self.q('history')} IS NOT NULL) AS {self.q(HAS_HISTORY)}")
            cols += [f"{self.source(by_path[c.column])} AS {self.q(RECORDED + c.column)}" for c in self.checked]
        # a counter the record carries that this pack does not read: the engine refuses it (a misspelling, or a
        # history converted for another pack), so a candidate or baseline reading fewer counters than the pack
        # the history was converted with must not decide those records either; read as written (no default).
        # Recomputed counters set every record's own aside, unread ones included, as the row engine does.
        unread = [f"CASE WHEN {self.source(by_path[path])} IS NOT NULL THEN {self.d.string(message)} END"
                  for path, message in (() if self.recompute else self._unread_counters())]
        cols.append(f"CONCAT_WS('; ', {', '.join(unread)}) AS {self.q(UNREAD)}" if unread else
                    f"'' AS {self.q(UNREAD)}")
        country = f"COALESCE({self.q('psp_country')}, {self.d.string(DEFAULT_PSP_COUNTRY)})"
        zones = " ".join(f"WHEN {self.d.string(c)} THEN {self.d.local_time(self.q(INSTANT), z)}"
                         for c, z in sorted(self.pack.ruleset.timezones.items()))
        cols.append(f"(CASE {country} {zones} END) AS {self.q(LOCAL)}" if zones else f"NULL AS {self.q(LOCAL)}")
        return "SELECT " + ", ".join(cols) + " FROM src"

    def _by_day(self, per_table: Callable[[FxTable], str]) -> str:
        """``per_table(table)`` for the FX table of the payment's day: the latest dated on or before it; payments
        older than every table use the earliest (``RuleSet.fx_for``)."""
        tables = self.pack.ruleset.fx_tables
        if len(tables) == 1:
            return per_table(tables[0])
        branches = " ".join(f"WHEN {self.q(DAY)} >= {self.d.date(t.as_of)} THEN {per_table(t)}"
                            for t in reversed(tables))
        return f"(CASE {branches} ELSE {per_table(tables[0])} END)"

    def _payment_rate(self, table: FxTable) -> str:
        """The table's rate of the payment's currency, NULL if it has none."""
        cases = " ".join(f"WHEN {self.d.string(c)} THEN {self.d.decimal(r, self.rate)}"
                         for c, r in sorted(table.rates.items()))
        return f"(CASE {self.q('amount.currency')} {cases} END)"

    def _target_rate(self, currency: str) -> Callable[[FxTable], str]:
        def rate(table: FxTable) -> str:
            value = table.rates.get(currency)
            if value is None:
                return f"CAST(NULL AS {self.d.decimal_type(self.rate)})"
            return self.d.decimal(value, self.rate)

        return rate

    def view(self) -> str:
        d, q = self.d, self.q
        cols = [f"{self.p}_view0.*",
                f"{d.to_date(q(LOCAL))} AS {q(DAY)}", f"{d.hour(q(LOCAL))} AS {q(HOUR)}"]
        return f"SELECT {', '.join(cols)} FROM {self.p}_view0"

    def view2(self) -> str:
        """Rates and amounts need ``__day``: a second step, as Spark reads no alias of the same SELECT."""
        q = self.q
        cols = [f"{self.p}_viewd.*", f"{self._by_day(self._payment_rate)} AS {q(RATE)}"]
        for currency in CROSS_TARGETS.values():
            cols.append(f"{self._by_day(self._target_rate(currency))} AS {q(fx_column(currency))}")
        return f"SELECT {', '.join(cols)} FROM {self.p}_viewd"

    def view3(self) -> str:
        d, q = self.d, self.q
        cny = d.multiply(q("amount.value"), MONEY, q(RATE), self.rate)
        cols = [f"{self.p}_viewr.*", f"{cny} AS {q(AMOUNT_CNY)}",
                f"{self._bad_request()} AS {q(BAD_REQUEST)}", f"{self._bad_record()} AS {q(BAD_RECORD)}"]
        return f"SELECT {', '.join(cols)} FROM {self.p}_viewr"

    def _bad_request(self) -> str:
        """Why the row is no valid request, as the engine's own checks say (empty if it is): ``convert`` has
        validated everything, these catch a file edited or written by other tools."""
        d, q = self.d, self.q
        checks: list[tuple[str, str]] = []
        for path in ("request_id", "timestamp", "payer.id", "funding_source.type", "purpose", "amount.value",
                     "amount.currency"):
            checks.append((f"{q(path)} IS NULL", d.string(f"$.{path}: required, missing")))
        checks.append((f"{q(UNREAD)} <> ''", q(UNREAD)))
        amount = q("amount.value")
        checks.append((f"{amount} <= 0", d.string("$.amount.value: amount must be a positive decimal")))
        checks.append((f"{amount} >= {d.decimal(MAX_AMOUNT)}",
                       d.string(f"$.amount.value: amount is beyond the supported {MAX_AMOUNT:,}")))
        for places in sorted(set(MINOR_UNITS.values()) | {2}):
            listed = [c for c, p in MINOR_UNITS.items() if p == places]
            if places == 2:
                which = f"{q('amount.currency')} NOT IN ({', '.join(d.string(c) for c in MINOR_UNITS)})"
            else:
                which = f"{q('amount.currency')} IN ({', '.join(d.string(c) for c in listed)})"
            checks.append((f"{which} AND {self._too_precise(amount, places)}",
                           f"CONCAT('$.amount.value: ', {d.text(amount)}, ' has more decimal places "
                           f"than ', {q('amount.currency')}, ' has ({places})')"))
        for path, places in sorted(money_places(load_schema("payment_request")).items()):
            checks.append((f"{q(path)} IS NOT NULL AND {self._too_precise(q(path), places)}",
                           d.string(f"$.{path}: more than {places} decimal places")))
        early, late = (int(t.timestamp()) * 1_000_000 for t in (EARLIEST, LATEST))
        checks.append((f"{q(INSTANT)} < {early} OR {q(INSTANT)} >= {late}",
                       d.string(f"$.timestamp: outside the supported window [{EARLIEST:%Y-%m-%d}, {LATEST:%Y-%m-%d})")))
        checks.append((f"{q(LOCAL)} IS NULL AND {q(INSTANT)} IS NOT NULL",
                       f"CONCAT('$.psp_country: pack declares no timezone for psp_country ', {q('psp_country')})"))
        # the messages are built only for a row that fails a check: nearly every row passes them all
        any_fails = " OR ".join(f"({c})" for c, _ in checks)
        messages = "CONCAT_WS('; ', " + ", ".join(f"CASE WHEN {c} THEN {m} END" for c, m in checks) + ")"
        return f"(CASE WHEN {any_fails} THEN {messages} ELSE '' END)"

    def _unread_counters(self) -> list[tuple[str, str]]:
        """The layout's ``history`` counters this pack's requests may not carry, each with the engine's own
        violation for it (asked of the pack, so the message is the row engine's)."""
        probe = {"history": {f.name: 0 for f in self.fields if f.parent == "history"}}
        try:
            self.pack.prepare(probe)
        except RequestError as exc:
            return [(v.path.removeprefix("$."), str(v)) for v in exc.violations if v.path.startswith("$.history.")]
        raise AssertionError("a probe without the required fields is never a valid request")

    def _too_precise(self, value: str, places: int) -> str:
        return f"({value} <> {self.d.cast_decimal(value, DecimalType(MONEY.digits + 1, places))})"

    def _bad_record(self) -> str:
        d, q = self.d, self.q
        statuses = ", ".join(d.string(s) for s in REPORTED_STATUSES)
        outcomes = ", ".join(d.string(o.value) for o in Outcome)
        return ("CONCAT_WS('; ', "
                f"CASE WHEN {q('__status')} NOT IN ({statuses}) THEN CONCAT('status ', {q('__status')}, "
                f"{d.string(' is not one of ' + ', '.join(REPORTED_STATUSES))}) END, "
                f"CASE WHEN {q('__decision')} NOT IN ({outcomes}) THEN CONCAT('decision ', {q('__decision')}, "
                f"{d.string(' is not one of ' + ', '.join(o.value for o in Outcome))}) END)")

    def _check(self) -> list[str]:
        """The check columns of ``{p}_pay`` (see the module doc), from the view and the recomputed counters."""
        if self.checked is None:
            return []
        d, q, view = self.d, self.q, f"{self.p}_view"
        valid = f"{view}.{q(BAD_REQUEST)} = '' AND {view}.{q(BAD_RECORD)} = ''"
        kinds = {f.path: f.kind for f in self.fields}
        flags, texts = [], []
        for i, c in enumerate(self.checked):
            recorded = f"{view}.{q(RECORDED + c.column)}"
            scaled = recorded if c.denominator == 1 else d.multiply(
                recorded, INTEGER if kinds[c.column] == "int" else MONEY, d.decimal(c.denominator),
                DecimalType.of(c.denominator))
            differs = f"COALESCE({scaled} <> {c.sql}, FALSE)"  # NULL: not carried, or no entity to count
            flags.append(f"{differs} AS {q(differs_column(i))}")
            texts.append(f"CASE WHEN {differs} THEN CONCAT('{i}:', {d.text(recorded)}, ':', {d.text(c.sql)}) END")
        text = f"NULLIF(CONCAT_WS(' ', {', '.join(texts)}), '')" if texts else "CAST(NULL AS STRING)"
        return [f"(CASE WHEN {valid} THEN {view}.{q(HAS_HISTORY)} END) AS {q(CARRIED)}", *flags,
                f"{text} AS {q(DIFFERENCES)}"]

    def counters_stage(self) -> str:
        replaced = {c.column for c in self.counters}
        if not replaced:
            return f"SELECT {', '.join([f'{self.p}_view.*', *self._check()])} FROM {self.p}_view"
        view = f"{self.p}_view"
        kept = [f"{view}.{self.q(f.path)}" for f in self.fields if f.path not in replaced]
        kept += [f"{view}.{self.q(c)}" for c in (LINE, INSTANT, *RECORD_COLUMNS, *NOT_APPLICABLE_WHEN_ABSENT, LOCAL,
                                                 DAY, HOUR, RATE, *(fx_column(t) for t in CROSS_TARGETS.values()),
                                                 AMOUNT_CNY, BAD_REQUEST, BAD_RECORD) if c not in replaced]
        # a bad line has no recomputed counters (NULL); it is reported, never decided
        join = (f" LEFT JOIN {self.p}_cnt ON {self.p}_cnt.{self.q(LINE)} = {view}.{self.q(LINE)}"
                if self.recomputed else "")
        return (f"SELECT {', '.join(kept)}, "
                + ", ".join([*(f"{c.sql} AS {self.q(c.column)}" for c in self.counters), *self._check()])
                + f" FROM {view}{join}")

    def conditions(self) -> tuple[str, str, str]:
        """The SELECTs of ``{p}_k`` (conditions), ``{p}_r`` (fired/undecided) and ``{p}_out`` (the decision)."""
        rules = self.pack.ruleset.rules
        keep = [self.q(c) for c in (LINE, "__label", "__label_known_at", DAY, BAD_REQUEST, BAD_RECORD,
                                    *check_columns(self.checked))]
        conds, flags = [], []
        for i, rule in enumerate(rules):
            conds.append(f"{self.rules.condition(rule, self.pack.program.position(rule.id))} AS k{i}")
            in_force = self.rules.in_force(rule)
            guard = f" AND {in_force}" if in_force else ""
            flags.append(f"(COALESCE(k{i}, FALSE){guard}) AS f{i}")
            flags.append(f"(k{i} IS NULL{guard}) AS u{i}")
        k = f"SELECT {', '.join(keep + conds)} FROM {self.p}_scr" if self.screens else \
            f"SELECT {', '.join(keep + conds)} FROM {self.p}_pay"
        r = f"SELECT {', '.join(keep + flags)} FROM {self.p}_k"
        order = list(self.pack.ruleset.decision_order)
        contributes: dict[str, list[str]] = {o: [] for o in order}
        for i, rule in enumerate(rules):
            contributes.setdefault(str(rule.outcome), []).append(f"f{i}")
            if rule.on_unknown != SKIP:
                contributes.setdefault(str(rule.on_unknown), []).append(f"u{i}")
        whens = " ".join(f"WHEN {' OR '.join(cols)} THEN {self.d.string(o)}"
                         for o in order if (cols := contributes.get(o)))
        decision = f"(CASE {whens} ELSE {self.d.string(Outcome.ALLOW.value)} END)" if whens else \
            self.d.string(Outcome.ALLOW.value)

        out = [*keep, *(f"f{i}" for i in range(len(rules))), *(f"u{i}" for i in range(len(rules))),
               f"{decision} AS decision"]
        return k, r, f"SELECT {', '.join(out)} FROM {self.p}_r"

    def screened(self) -> tuple[tuple[str, str], ...]:
        """``{p}_scr``: the payments with the screening stage's hit columns, LEFT JOINed (none without screens)."""
        if not self.screens:
            return ()
        pay = f"{self.p}_pay"
        hits = [f"{t.name}.{self.q(column)}" for t in self.screens for column, kind in t.columns() if kind == "boolean"]
        joins = "".join(t.join(self.d, pay) for t in self.screens)
        return ((f"{self.p}_scr", f"SELECT {pay}.*, {', '.join(hits)} FROM {pay}{joins}"),)

    def build(self) -> PackPlan:
        p = self.p
        k, r, out = self.conditions()
        ctes = ((f"{p}_view0", self.view0()), (f"{p}_viewd", self.view()), (f"{p}_viewr", self.view2()),
                (f"{p}_view", self.view3()), *self.recomputed, (f"{p}_pay", self.counters_stage()),
                *self.screened(), (f"{p}_k", k), (f"{p}_r", r), (f"{p}_out", out))
        rules = self.pack.ruleset.rules
        return PackPlan(self.pack, p, ctes, tuple(f"f{i}" for i in range(len(rules))),
                        tuple(f"u{i}" for i in range(len(rules))), tuple(r.id for r in rules),
                        screens=self.screens, counters=tuple(self.counters), checked=self.checked)


def _contract_defaults() -> dict[str, object]:
    out: dict[str, object] = {}

    def walk(schema: dict, prefix: str) -> None:
        for name, sub in schema.get("properties", {}).items():
            if "default" in sub:
                out[prefix + name] = sub["default"]
            walk(sub, f"{prefix}{name}.")

    walk(load_schema("payment_request"), "")
    return out


def build_plan(dialect: Dialect, source: str, candidate: CompiledPack, baseline: CompiledPack | None = None,
               counters: Mapping[str, Sequence[CounterColumn]] | None = None, recompute: bool = False,
               jurisdictions: frozenset[str] | None = None) -> Plan:
    """The plan over ``source`` (a relation or table function with the :mod:`.layout` columns); ``counters``
    maps ``"candidate"`` / ``"baseline"`` to the pack's counters stage; ``recompute``: every counter the rules
    read is recomputed from the history (:mod:`.windows`), each record's own ``history`` set aside and checked
    against the recomputed ones (the candidate's: ``joined``'s check columns); ``jurisdictions``: the PSP countries of
    the history's payments, if known (:func:`.windows.counters_query`)."""
    counters = counters or {}
    c = _PackCompiler(candidate, "c", dialect, counters.get("candidate", ()), recompute, check=True,
                      jurisdictions=jurisdictions).build()
    b = (_PackCompiler(baseline, "b", dialect, counters.get("baseline", ()), recompute,
                       jurisdictions=jurisdictions).build()
         if baseline else None)
    q = dialect.ident
    ctes: list[tuple[str, str]] = [("src", f"SELECT * FROM {source}"), *c.ctes, *(b.ctes if b else ())]

    def side(plan: PackPlan) -> list[str]:
        p = plan.prefix
        return [f"{p}.decision AS {p}_decision", f"{p}.{q(DAY)} AS {p}___day",
                *(f"{p}.{f} AS {p}_{f}" for f in (*plan.fired, *plan.undecided))]

    bad = [f"c.{q(BAD_RECORD)}", f"c.{q(BAD_REQUEST)}"]
    if b is not None:
        bad += [f"b.{q(BAD_RECORD)}", f"b.{q(BAD_REQUEST)}"]
    # the row backtest checks the record fields first, then the candidate's request, then the baseline's
    kind = " ".join(f"WHEN {col} <> '' THEN '{'invalid_record' if BAD_RECORD in col else 'invalid_request'}'"
                    for col in bad)
    message = " ".join(f"WHEN {col} <> '' THEN {col}" for col in bad)
    cols = [f"c.{q(LINE)} AS {q(LINE)}", f"c.{q('__label')} AS {q('__label')}",
            f"c.{q('__label_known_at')} AS {q('__label_known_at')}",
            f"(CASE {kind} ELSE NULL END) AS __bad_kind", f"(CASE {message} ELSE NULL END) AS __bad_message",
            *side(c), *(side(b) if b else ()),
            *(f"c.{q(name)} AS {q(name)}" for name in check_columns(c.checked))]
    join = f" JOIN b_out b ON b.{q(LINE)} = c.{q(LINE)}" if b else ""
    ctes.append(("joined", f"SELECT {', '.join(cols)} FROM c_out c{join}"))
    return Plan(dialect, c, b, tuple(ctes))
