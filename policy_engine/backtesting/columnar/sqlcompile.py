"""A pack's condition trees as SQL boolean expressions with the engine's three-valued semantics.

SQL's NULL logic is Kleene's, which is the engine's (conditions.py): a condition compiles to an expression that is
TRUE, FALSE or NULL (unknown) exactly when the reference evaluator says true, false or unknown. A leaf is

    (<each counterparty it reads is present> AND <the operator>)

A present counterparty's marker is TRUE and leaves the operator's value as it is; an absent one's is FALSE, which
makes the leaf false whatever the rest (not applicable). The operator is NULL when a field it reads is missing: by
SQL's own NULL propagation where the expression is a comparison, arithmetic or ``IN`` over constants (NULL in,
NULL out), and stated outright, ``CASE WHEN <a field is missing> THEN NULL ELSE ... END``, where the expression
could be decided without the value (dated list items, an empty list).

``exists`` / ``missing`` are two-valued (``IS [NOT] NULL``). ``all`` / ``any`` / ``not`` are SQL's AND / OR / NOT.
``screen`` (fuzzy name screening, no SQL form) reads the hit column the screening stage joins in
(:mod:`.screens`): NULL when the name is missing, like any other operator on a missing field.

Numbers are exact. Every number is a DECIMAL whose width the compiler tracks (:class:`Num`); a cross-rate amount
(``derived.amount_usd``: the CNY amount over the USD rate, a fraction) is kept as numerator and denominator, and a
comparison multiplies through by the (positive) denominators, so nothing is ever divided, rounded or a DOUBLE. A
rule whose arithmetic would need more than 38 digits, or whose operator has no SQL here, is refused with a
:class:`ColumnarCompileError` naming the rule, never skipped.

The columns the expressions read are those of the ``payments`` relation (see :mod:`.plan`): one per view key named
by its dotted path, ``__day`` (the payment's local date in its PSP's timezone) and ``__fx.USD`` / ``__fx.EUR`` (the
day's reference rate of a cross-rate target, CNY per unit).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from ...conditions import All, Any_, Leaf, ListItem, Node, Not, counterparty_of
from ...errors import PolicyEngineError
from ...operators import Op, Shape
from ...request import CROSS_RATE_PATHS
from ...ruleset import Rule, RuleSet
from ...screening import Screening
from .dialect import MAX_PRECISION, DecimalType, Dialect
from .layout import INTEGER, MONEY, request_fields

DAY = "__day"
AMOUNT_CNY = "derived.amount_cny"
HOUR = "derived.local_hour"


def screen_column(screening: Screening) -> str:
    """The column of the screening stage (:mod:`.screens`) holding a ``screen`` leaf's hit: NULL when the name is
    missing, else whether the best match scores at least the threshold."""
    return f"{screening.path}>={screening.threshold!r}"


def fx_column(currency: str) -> str:
    """The column holding the day's reference rate (CNY per unit) of a cross-rate target currency."""
    return f"__fx.{currency}"


#: cross-rate field -> its target currency
CROSS_TARGETS = {path: currency for currency, path in CROSS_RATE_PATHS.items()}

_SQL_OPS = {Op.EQ: "=", Op.NE: "<>", Op.GT: ">", Op.GTE: ">=", Op.LT: "<", Op.LTE: "<="}


class ColumnarCompileError(PolicyEngineError):
    """A rule the columnar engine cannot compile exactly (the message names the rule and why)."""


@dataclass(frozen=True, slots=True)
class ColumnTypes:
    """The ``payments`` columns as the compiler reads them: every field's kind (str/num/bool), each numeric
    column's exact DECIMAL type (wide enough for every value it holds), and the type of the pack's FX rates."""

    kinds: Mapping[str, str]
    numeric: Mapping[str, DecimalType]
    rate: DecimalType


def column_types(ruleset: RuleSet) -> ColumnTypes:
    """The column types of a pack's ``payments`` relation (the :mod:`.layout` fields and the derived columns)."""
    digits = scale = 1
    for table in ruleset.fx_tables:
        for value in table.rates.values():
            t = DecimalType.of(value)
            digits, scale = max(digits, t.digits), max(scale, t.scale)
    rate = DecimalType(digits, scale)
    fields = request_fields()
    numeric = {f.path: INTEGER if f.kind == "int" else MONEY for f in fields if f.kind in ("int", "num")}
    numeric[HOUR] = DecimalType(2, 0)
    numeric[AMOUNT_CNY] = MONEY.times(rate)
    kinds = {f.path: ("num" if f.kind == "int" else f.kind) for f in fields}
    kinds.update({HOUR: "num", AMOUNT_CNY: "num", **{p: "num" for p in CROSS_TARGETS}})
    return ColumnTypes(kinds, numeric, rate)


@dataclass(frozen=True, slots=True)
class Num:
    """An exact number in SQL: ``sql`` (of type ``t``), over ``den`` (a positive DECIMAL, with its type) if given."""

    sql: str
    t: DecimalType
    den: tuple[str, DecimalType] | None = None


class _Refused(Exception):
    """Raised inside the compiler; :meth:`RuleCompiler.rule` turns it into a ColumnarCompileError naming the rule."""


class RuleCompiler:
    """Compiles conditions for one pack against the ``payments`` columns.

    ``numeric`` maps each numeric column to its DECIMAL type, ``kinds`` every field to its kind (str/num/bool),
    ``fractions`` a column holding a value times a constant (a recomputed cross-rate sum) to that constant.
    A relation without the ``__day`` and ``__fx.*`` columns (the counters stage's) gives ``day``, the SQL of the
    payment's local date, and ``cross_rate``, a cross-rate field's exact value (NULL when it is missing)."""

    def __init__(self, dialect: Dialect, kinds: Mapping[str, str], numeric: Mapping[str, DecimalType],
                 rate: DecimalType, fractions: Mapping[str, int] | None = None,
                 cross_rate: Callable[[str], Num] | None = None, day: str | None = None):
        self.d = dialect
        self.kinds = kinds
        self.numeric = numeric
        self.rate = rate
        self.fractions = fractions or {}
        self.cross_rate = cross_rate
        self.day = day or self.col(DAY)

    # -- rules -----------------------------------------------------------------------------------------
    def condition(self, rule: Rule, where: str) -> str:
        """The rule's condition: TRUE, FALSE or NULL (unknown). ``where`` names the rule in errors."""
        try:
            return self.node(rule.when)
        except _Refused as exc:
            raise ColumnarCompileError(f"rule {rule.id} ({where}) cannot run on the columnar engine: {exc}; "
                                       "use --engine row") from None

    def expression(self, node: Node) -> str:
        """A condition outside a rule (an aggregate's ``where`` or ``since``); raises ColumnarCompileError."""
        try:
            return self.node(node)
        except _Refused as exc:
            raise ColumnarCompileError(str(exc)) from None

    def in_force(self, rule: Rule) -> str | None:
        parts = []
        if rule.effective_from is not None:
            parts.append(f"{self.day} >= {self.d.date(rule.effective_from)}")
        if rule.effective_to is not None:
            parts.append(f"{self.day} < {self.d.date(rule.effective_to)}")
        return " AND ".join(parts) or None

    def node(self, node: Node) -> str:
        if isinstance(node, Leaf):
            return self.leaf(node)
        if isinstance(node, Not):
            return f"(NOT {self.node(node.child)})"
        if isinstance(node, All | Any_):
            if not node.children:
                return "TRUE" if isinstance(node, All) else "FALSE"
            joiner = " AND " if isinstance(node, All) else " OR "
            return "(" + joiner.join(self.node(c) for c in node.children) + ")"
        raise _Refused(f"condition node {type(node).__name__} has no SQL form")

    # -- leaves ----------------------------------------------------------------------------------------
    def col(self, path: str) -> str:
        return self.d.ident(path)

    def _read(self, path: str) -> list[str]:
        """The SQL values a field is read from, each NULL when it is missing (a cross-rate amount: the CNY amount
        and the rate)."""
        if path not in CROSS_TARGETS:
            return [self.col(path)]
        if self.cross_rate is not None:
            return [self.cross_rate(path).sql]
        return [self.col(AMOUNT_CNY), self.col(fx_column(CROSS_TARGETS[path]))]

    def leaf(self, leaf: Leaf) -> str:
        spec = leaf.op.spec
        paths = list(leaf.fields())
        columns = [c for p in paths for c in self._read(p)]
        if spec.shape is Shape.NONE:  # two-valued; a sum is missing when any operand is
            if leaf.op is Op.EXISTS:
                return "(" + " AND ".join(f"{c} IS NOT NULL" for c in columns) + ")"
            if leaf.op is Op.MISSING:
                return "(" + " OR ".join(f"{c} IS NULL" for c in columns) + ")"
            raise _Refused(f"operator `{leaf.op}` has no SQL form")
        parties = dict.fromkeys(p for p in map(counterparty_of, paths) if p is not None)
        body = self._holds(leaf)
        if not self._propagates_null(leaf):
            missing = " OR ".join(f"{c} IS NULL" for c in dict.fromkeys(columns))
            body = f"(CASE WHEN {missing} THEN NULL ELSE {body} END)"
        return "(" + " AND ".join([*(self.col(p) for p in parties), body]) + ")" if parties else body

    @staticmethod
    def _propagates_null(leaf: Leaf) -> bool:
        """Whether SQL's NULL propagation alone makes the operator NULL when a field it reads is missing: true of
        comparisons, ranges and membership in constants, not of a list with dated items (an item out of force
        is FALSE whatever the value) or with none (FALSE)."""
        if leaf.op.spec.shape is not Shape.LIST:
            return True
        items = leaf.items or ()
        return bool(items) and all(i.start is None and i.end is None for i in items)

    def _holds(self, leaf: Leaf) -> str:
        """The operator on present values: a two-valued SQL expression."""
        op, shape = leaf.op, leaf.op.spec.shape
        numeric = leaf.operand.is_sum or self.kinds.get(leaf.operand.paths[0]) == "num"
        if shape is Shape.SCALAR and op in _SQL_OPS:
            if leaf.ref is not None:
                if numeric:
                    return self.compare(self.operand(leaf), op, self.field(leaf.ref))
                return f"({self.col(leaf.operand.paths[0])} {_SQL_OPS[op]} {self.col(leaf.ref)})"
            return self._against(leaf, op, leaf.value, numeric)
        if shape is Shape.RANGE and op is Op.BETWEEN:
            lo, hi = leaf.value  # type: ignore[misc]
            return f"({self._against(leaf, Op.GTE, lo, True)} AND {self._against(leaf, Op.LT, hi, True)})"
        if shape is Shape.LIST and op in (Op.IN, Op.NOT_IN):
            member = self._membership(leaf, numeric)
            return member if op is Op.IN else f"(NOT {member})"
        if shape is Shape.SCREEN and leaf.screen is not None:  # decided by the screening stage, joined in
            return self.col(screen_column(leaf.screen))
        raise _Refused(f"operator `{op}` has no SQL form")

    def _against(self, leaf: Leaf, op: Op, value: object, numeric: bool) -> str:
        if numeric:
            return self.compare(self.operand(leaf), op, self.constant(value))
        return f"({self.col(leaf.operand.paths[0])} {_SQL_OPS[op]} {self.literal(value)})"

    def _membership(self, leaf: Leaf, numeric: bool) -> str:
        """Whether the value is one of the list items that apply on the payment's date."""
        undated: list[object] = []
        dated: list[str] = []
        for item in dict.fromkeys(leaf.items or ()):
            if item.start is None and item.end is None:
                undated.append(item.value)
            else:
                dated.append(f"({self._against(leaf, Op.EQ, item.value, numeric)} AND {self._applies(item)})")
        alternatives = dated
        if undated and not numeric:
            values = ", ".join(self.literal(v) for v in dict.fromkeys(undated))
            alternatives = [f"({self.col(leaf.operand.paths[0])} IN ({values}))", *dated]
        elif undated:
            alternatives = [self._against(leaf, Op.EQ, v, True) for v in dict.fromkeys(undated)] + dated
        return "(" + " OR ".join(alternatives) + ")" if alternatives else "FALSE"

    def _applies(self, item: ListItem) -> str:
        parts = []
        if item.start is not None:
            parts.append(f"{self.day} >= {self.d.date(item.start)}")
        if item.end is not None:
            parts.append(f"{self.day} < {self.d.date(item.end)}")
        return " AND ".join(parts)

    def literal(self, value: object) -> str:
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        if isinstance(value, str):
            return self.d.string(value)
        raise _Refused(f"constant {value!r} has no SQL form for a non-numeric field")

    # -- exact numbers ---------------------------------------------------------------------------------
    def constant(self, value: object) -> Num:
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            raise _Refused(f"constant {value!r} is not an exact number")
        return Num(self.d.decimal(value), DecimalType.of(value))

    def field(self, path: str) -> Num:
        if path in CROSS_TARGETS and self.cross_rate is not None:
            return self.cross_rate(path)
        if path in CROSS_TARGETS:
            return Num(self.col(AMOUNT_CNY), self.numeric[AMOUNT_CNY], (self.col(fx_column(CROSS_TARGETS[path])),
                                                                        self.rate))
        t = self.numeric.get(path)
        if t is None:
            raise _Refused(f"field {path} is not numeric here")
        den = self.fractions.get(path)
        return Num(self.col(path), t, None if den is None else (self.d.decimal(den), DecimalType.of(den)))

    def operand(self, leaf: Leaf) -> Num:
        nums = [self.field(p) for p in leaf.operand.paths]
        total = nums[0]
        for n in nums[1:]:
            total = self.add(total, n)
        return total

    def _times(self, a: Num, den: tuple[str, DecimalType]) -> Num:
        t = a.t.times(den[1])
        self._fits(t)
        return Num(self.d.multiply(a.sql, a.t, den[0], den[1]), t, a.den)

    def add(self, a: Num, b: Num) -> Num:
        """a + b, exactly: over a common denominator when either has one."""
        if a.den is not None and b.den is not None and a.den != b.den:
            a2, b2 = self._times(Num(a.sql, a.t), b.den), self._times(Num(b.sql, b.t), a.den)
            den_t = a.den[1].times(b.den[1])
            self._fits(den_t)
            den = (self.d.multiply(a.den[0], a.den[1], b.den[0], b.den[1]), den_t)
            return self._sum(a2, b2, den)
        if a.den is not None and b.den is None:
            return self._sum(Num(a.sql, a.t), self._times(b, a.den), a.den)
        if b.den is not None and a.den is None:
            return self._sum(self._times(a, b.den), Num(b.sql, b.t), b.den)
        return self._sum(a, b, a.den)

    def _sum(self, a: Num, b: Num, den: tuple[str, DecimalType] | None) -> Num:
        t = a.t.plus(b.t)
        self._fits(t)
        return Num(f"({self.d.cast_decimal(a.sql, t)} + {self.d.cast_decimal(b.sql, t)})", t, den)

    def compare(self, a: Num, op: Op, b: Num) -> str:
        """``a <op> b`` exactly: a/da <op> b/db  <=>  a*db <op> b*da, the denominators being positive."""
        left = self._times(Num(a.sql, a.t), b.den) if b.den is not None else Num(a.sql, a.t)
        right = self._times(Num(b.sql, b.t), a.den) if a.den is not None else Num(b.sql, b.t)
        self._fits(DecimalType(max(left.t.digits, right.t.digits), max(left.t.scale, right.t.scale)))
        return f"({left.sql} {_SQL_OPS[op]} {right.sql})"

    @staticmethod
    def _fits(t: DecimalType) -> None:
        # one digit of headroom: Spark types a product one digit wider than its operands
        if t.precision + 1 > MAX_PRECISION:
            raise _Refused(f"exact arithmetic needs {t.precision} decimal digits, more than the {MAX_PRECISION - 1} "
                           "the SQL engines keep exactly")
