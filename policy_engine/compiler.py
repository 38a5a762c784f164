"""Lowering a :class:`RuleSet` to what the matchers run: flat facts and primitive tests.

Both matchers see the same thing: a flat dict of *facts* (one short key per field the rules read, per ``add``
sum and per numeric ``ref`` comparison, plus the payment's local date) and, per rule, a tree of primitive
tests on those keys with negation already pushed down to the leaves (durable-rules has no ``not``).

Numbers are exact. For durable-rules, whose C core compares doubles, a value ``x`` is handed over as the
integer ``2*floor(x*S) + (0 if x*S is whole else 1)``
with ``S = 10**SCALE_DIGITS``; thresholds (which the loader restricts to multiples of ``1/S``) become ``2*t*S``.
Every comparison of ``x`` with ``t`` then has the same answer on the encodings, for decimals and for the
rationals that cross-rate conversions produce, so ``0.1 + 0.2 > 0.3`` is false here as it is in arithmetic.
Values beyond the largest allowed threshold saturate, which keeps every comparison right and keeps the
integers inside the 53 bits durable-rules compares exactly. The python matcher decodes the thresholds and
compares the exact values themselves (see :mod:`policy_engine.matchers.python`): the same answers, cheaper.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Union

from .conditions import ZERO_WHEN_MISSING_PREFIX, All, Any_, Leaf, Node, Not, leaves
from .loader import SCALE_DIGITS
from .operators import Op, Shape
from .ruleset import Rule, RuleSet

SCALE = 10**SCALE_DIGITS
_SATURATE = 2**51 + 1  # odd, beyond 2 * MAX_CONSTANT * SCALE: compares right with every threshold
DAY_KEY = "d"


def encode_ratio(num: int, den: int) -> int:
    """The exact order-preserving integer encoding of ``num / den`` described in the module docstring."""
    q, r = divmod(num * SCALE, den)
    enc = 2 * q + (1 if r else 0)
    if enc > _SATURATE:
        return _SATURATE
    if enc < -_SATURATE:
        return -_SATURATE
    return enc


def encode_constant(x: Decimal | int) -> int:
    return 2 * int(Decimal(x).scaleb(SCALE_DIGITS))


# -- the lowered tree --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Test:
    """``facts[key] <op> const`` (or ``<op> facts[ref_key]``); a test on a missing key is false except
    ``missing``."""

    key: str
    op: Op  # a primitive operator: eq ne gt gte lt lte exists missing
    const: Any = None
    ref_key: str | None = None

    def __post_init__(self) -> None:
        op = Op(self.op)
        if not op.spec.primitive:
            raise ValueError(f"`{op}` is not a primitive test; the compiler lowers it to primitive tests")
        object.__setattr__(self, "op", op)


@dataclass(frozen=True, slots=True)
class LAll:
    children: tuple[LNode, ...]


@dataclass(frozen=True, slots=True)
class LAny:
    children: tuple[LNode, ...]


LNode = Union[Test, LAll, LAny]  # noqa: UP007 -- runtime alias
TRUE = LAll(())
FALSE = LAny(())


def _all(children: list[LNode]) -> LNode:
    flat: list[LNode] = []
    for c in children:
        if c == FALSE:
            return FALSE
        if isinstance(c, LAll):
            flat.extend(c.children)
        else:
            flat.append(c)
    return flat[0] if len(flat) == 1 else LAll(tuple(flat))


def _any(children: list[LNode]) -> LNode:
    flat: list[LNode] = []
    for c in children:
        if c == TRUE:
            return TRUE
        if isinstance(c, LAny):
            flat.extend(c.children)
        else:
            flat.append(c)
    return flat[0] if len(flat) == 1 else LAny(tuple(flat))


@dataclass(frozen=True, slots=True)
class CompiledRule:
    index: int  # position in pack order
    rule_id: str
    tree: LNode


class FactLayout:
    """Which fact key carries which field, sum or comparison; encodes a normalised request into facts."""

    def __init__(self, ruleset: RuleSet, catalog_kinds: Mapping[str, str]):
        self.kinds = catalog_kinds
        self.plain: dict[str, str] = {}
        self.sums: dict[tuple[str, ...], str] = {}
        self.cmps: dict[tuple[str, str], str] = {}
        self.uses_day = False
        for rule in ruleset.rules:
            for leaf in leaves(rule.when):
                self._register(leaf)
            if rule.effective_from is not None or rule.effective_to is not None:
                self.uses_day = True

    def _register(self, leaf: Leaf) -> None:
        if leaf.operand.is_sum:
            self.sums.setdefault(leaf.operand.paths, f"s{len(self.sums)}")
        elif leaf.ref is not None and self.kinds[leaf.operand.paths[0]] == "num":
            self.cmps.setdefault((leaf.operand.paths[0], leaf.ref), f"c{len(self.cmps)}")
        else:
            self.key_for(leaf.operand.paths[0])
            if leaf.ref is not None:
                self.key_for(leaf.ref)
        if leaf.items and any(i.start is not None or i.end is not None for i in leaf.items):
            self.uses_day = True

    def key_for(self, path: str) -> str:
        return self.plain.setdefault(path, f"f{len(self.plain)}")

    def encode(self, view: Mapping[str, Any], day: int, want: frozenset[str] | None = None) -> dict[str, Any]:
        """Facts for one request (only the keys in ``want``, when given). Missing fields are simply absent."""
        return self._encode(view, day, self.all_keys if want is None else want)

    def freeze(self) -> None:
        """Generate the encoder once every key is registered.

        The encoder is straight-line generated code: one guarded block per fact key, so a caller that needs a
        few keys pays for those; each number's exact ratio is taken at most once (the amount appears in a
        dozen cumulative sums); no loops over the layout on the hot path."""
        numeric = [p for p in self.plain if self.kinds[p] == "num"]
        for paths in self.sums:
            numeric += [p for p in paths if p not in numeric]
        ratio_var = {p: f"r{i}" for i, p in enumerate(numeric)}

        def ratio(path: str) -> str:  # the ratio of a numeric field, computed on first use
            r = ratio_var[path]
            return f"({r} if {r} is not _UNSET else ({r} := _ratio(g({path!r}))))"

        lines = ["def encode(view, day, want):", "    g = view.get", "    facts = {}"]
        lines += [f"    {r} = _UNSET" for r in ratio_var.values()]
        for path, key in self.plain.items():
            lines.append(f"    if {key!r} in want:")
            if path in ratio_var:
                lines.append(f"        r = {ratio(path)}")
                lines.append(f"        if r is not None: facts[{key!r}] = _enc(*r)")
            else:
                lines.append(f"        v = g({path!r})")
                lines.append(f"        if v is not None: facts[{key!r}] = v")
        for paths, key in self.sums.items():
            terms = ", ".join(f"({ratio(p)}, {p.startswith(ZERO_WHEN_MISSING_PREFIX)})" for p in paths)
            lines.append(f"    if {key!r} in want:")
            lines.append(f"        t = _sum(({terms},))")
            lines.append(f"        if t is not None: facts[{key!r}] = _enc(*t)")
        for (left, right), key in self.cmps.items():
            lines.append(f"    if {key!r} in want:")
            lines.append(f"        a, b = g({left!r}), g({right!r})")
            lines.append(f"        if a is not None and b is not None: facts[{key!r}] = (a > b) - (a < b)")
        if self.uses_day:
            lines.append(f"    if {DAY_KEY!r} in want: facts[{DAY_KEY!r}] = day")
        lines.append("    return facts")
        namespace: dict[str, Any] = {"_enc": encode_ratio, "_sum": _sum_ratios, "_ratio": _ratio, "_UNSET": _UNSET}
        exec(compile("\n".join(lines) + "\n", "<policy_engine.fact_encoder>", "exec"), namespace)
        self._encode = namespace["encode"]
        self.all_keys = frozenset([*self.plain.values(), *self.sums.values(), *self.cmps.values(),
                                   *([DAY_KEY] if self.uses_day else [])])


_UNSET = object()


def _ratio(value: Any) -> tuple[int, int] | None:
    return None if value is None else value.as_integer_ratio()


def _sum_ratios(terms: tuple[tuple[tuple[int, int] | None, bool], ...]) -> tuple[int, int] | None:
    """The exact sum of (ratio, zero_if_missing) terms as (numerator, denominator), with ``add`` semantics:
    a missing ``history.*`` operand counts as 0, any other missing operand makes the sum missing.

    Integer arithmetic on ``as_integer_ratio`` pairs: exact for Decimals and Fractions alike, and several times
    faster than summing ``Fraction`` objects on the hot path."""
    num, den = 0, 1
    for ratio, zero_if_missing in terms:
        if ratio is None:
            if zero_if_missing:
                continue
            return None
        n, d = ratio
        if d == den:
            num += n
        else:
            num, den = num * d + n * den, den * d
    return num, den


class Lowerer:
    def __init__(self, layout: FactLayout):
        self.layout = layout

    def rule(self, rule: Rule) -> LNode:
        tree = self.node(rule.when, negate=False)
        dates: list[LNode] = []
        if rule.effective_from is not None:
            dates.append(Test(DAY_KEY, Op.GTE, rule.effective_from))
        if rule.effective_to is not None:
            dates.append(Test(DAY_KEY, Op.LT, rule.effective_to))
        return _all([*dates, tree])

    def node(self, node: Node, negate: bool) -> LNode:
        if isinstance(node, Not):
            return self.node(node.child, not negate)
        if isinstance(node, All | Any_):
            kids = [self.node(c, negate) for c in node.children]
            conj = isinstance(node, All) != negate  # De Morgan
            return _all(kids) if conj else _any(kids)
        return self.leaf(node, negate)

    def leaf(self, leaf: Leaf, negate: bool) -> LNode:
        lay = self.layout
        operand = leaf.operand
        op = leaf.op
        shape, inverse = op.spec.shape, op.spec.inverse
        if operand.is_sum:
            key, numeric = lay.sums[operand.paths], True
        elif leaf.ref is not None and lay.kinds[operand.paths[0]] == "num":
            # x <op> y  <=>  sign(x - y) <op> 0, computed exactly when the facts are built
            key = lay.cmps[(operand.paths[0], leaf.ref)]
            positive = Test(key, op, 0)
            return _any([Test(key, Op.MISSING), Test(key, inverse, 0)]) if negate else positive
        else:
            key, numeric = lay.plain[operand.paths[0]], lay.kinds[operand.paths[0]] == "num"
        if shape is Shape.NONE:
            return Test(key, inverse if negate else op)
        present = Test(key, Op.EXISTS)
        absent = Test(key, Op.MISSING)
        if leaf.ref is not None:
            other = lay.plain[leaf.ref]
            if negate:
                return _any([absent, Test(other, Op.MISSING), Test(key, inverse, ref_key=other)])
            return _all([Test(other, Op.EXISTS), Test(key, op, ref_key=other)])
        enc = encode_constant if numeric else (lambda v: v)
        if shape is Shape.RANGE:  # lo <= x < hi
            lo, hi = (enc(v) for v in leaf.value)  # type: ignore[union-attr]
            if negate:
                return _any([absent, Test(key, Op.LT, lo), Test(key, Op.GTE, hi)])
            return _all([Test(key, Op.GTE, lo), Test(key, Op.LT, hi)])
        if shape is Shape.LIST:
            member = self._membership(key, leaf, enc)
            non_member = self._non_membership(key, leaf, enc)
            if (op is Op.IN) != negate:  # in, or not(not_in): present and a member (missing fails eq)
                return member if not negate else _any([absent, member])
            # not_in, or not(in)
            return _all([present, non_member]) if not negate else _any([absent, non_member])
        if negate:
            return _any([absent, Test(key, inverse, enc(leaf.value))])
        return Test(key, op, enc(leaf.value))

    @staticmethod
    def _membership(key: str, leaf: Leaf, enc) -> LNode:
        seen: set = set()
        alts: list[LNode] = []
        for item in leaf.items or ():
            v = enc(item.value)
            test = Test(key, Op.EQ, v)
            dated = [Test(DAY_KEY, Op.GTE, item.start)] if item.start is not None else []
            dated += [Test(DAY_KEY, Op.LT, item.end)] if item.end is not None else []
            marker = (type(v), v, item.start, item.end)
            if marker in seen:
                continue
            seen.add(marker)
            alts.append(_all([test, *dated]))
        return _any(alts)

    @staticmethod
    def _non_membership(key: str, leaf: Leaf, enc) -> LNode:
        parts: list[LNode] = []
        seen: set = set()
        for item in leaf.items or ():
            v = enc(item.value)
            marker = (type(v), v, item.start, item.end)
            if marker in seen:
                continue
            seen.add(marker)
            alts: list[LNode] = [Test(key, Op.NE, v)]
            if item.start is not None:
                alts.append(Test(DAY_KEY, Op.LT, item.start))
            if item.end is not None:
                alts.append(Test(DAY_KEY, Op.GTE, item.end))
            parts.append(_any(alts))
        return _all(parts) if parts else TRUE


@dataclass(frozen=True, slots=True)
class Program:
    """A rule set lowered for matching: shared by every matcher built from it."""

    layout: FactLayout
    rules: tuple[CompiledRule, ...]  # rules whose condition can be true, in pack order
    never: tuple[str, ...]  # ids of rules whose condition is always false (e.g. `in` an empty list)
    locations: Mapping[str, tuple[str, int, int]]  # rule id -> file, line, col (for compile errors)


def compile_program(ruleset: RuleSet, catalog_kinds: Mapping[str, str]) -> Program:
    layout = FactLayout(ruleset, catalog_kinds)
    layout.freeze()
    lowerer = Lowerer(layout)
    compiled, never = [], []
    for i, rule in enumerate(ruleset.rules):
        tree = lowerer.rule(rule)
        if tree == FALSE:
            never.append(rule.id)
        else:
            compiled.append(CompiledRule(i, rule.id, tree))
    locations = {r.id: (r.file, r.line, r.col) for r in ruleset.rules}
    return Program(layout, tuple(compiled), tuple(never), locations)
