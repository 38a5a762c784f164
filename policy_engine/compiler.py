"""Lowering a :class:`RuleSet` to what the matchers run: flat facts and primitive tests.

Both matchers see the same thing: a flat dict of *facts* (one short key per field the rules read, per ``add``
sum and per numeric ``ref`` comparison, plus the payment's local date) and, per rule, a tree of primitive
tests on those keys with negation already pushed down to the leaves (durable-rules has no ``not``).

Constants stay exact (``Decimal`` thresholds, strings, booleans, date ordinals): how a matcher represents
numbers is its own business (the durable matcher's integer encoding lives in
:mod:`policy_engine.matchers.durable`; the python matcher compares the exact values themselves).
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from .conditions import NOT_APPLICABLE_WHEN_ABSENT, All, Any_, Leaf, Node, Not, counterparty_of, fields_read, leaves
from .operators import Op, Shape
from .request import CROSS_RATE_PATHS
from .ruleset import Rule, RuleSet
from .screening import Screening

DAY_KEY = "d"


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
    #: for an "undecided" entry: the fields whose absence can leave the rule unknown. The tree can only hold when
    #: one of them is missing, so a matcher may test that first: a cheap, nearly always false pre-filter.
    missing_any: tuple[str, ...] = ()


class FactLayout:
    """Which fact key carries which field, sum or comparison."""

    def __init__(self, ruleset: RuleSet, catalog_kinds: Mapping[str, str]):
        # a counterparty's presence marker (see conditions.NOT_APPLICABLE_WHEN_ABSENT) is a boolean fact
        self.kinds = {**catalog_kinds, **{party: "bool" for party in NOT_APPLICABLE_WHEN_ABSENT}}
        self.plain: dict[str, str] = {}
        self.sums: dict[tuple[str, ...], str] = {}
        self.cmps: dict[tuple[str, str], str] = {}
        #: a `screen` leaf's result (True / False; missing when the name is): computed by the matcher, not read
        self.screens: dict[Screening, str] = {}
        self.uses_day = False
        for rule in ruleset.rules:
            for leaf in leaves(rule.when):
                self._register(leaf)
            if rule.effective_from is not None or rule.effective_to is not None:
                self.uses_day = True
        #: keys holding numbers compared with numeric constants (a ``c*`` key holds a sign, compared with 0)
        self.numeric_keys = frozenset([*self.sums.values(),
                                       *(k for p, k in self.plain.items() if self.kinds[p] == "num")])
        self.all_keys = frozenset([*self.plain.values(), *self.sums.values(), *self.cmps.values(),
                                   *self.screens.values(), *([DAY_KEY] if self.uses_day else [])])

    def _register(self, leaf: Leaf) -> None:
        for party in _parents(leaf):
            self.key_for(party)
        if leaf.screen is not None:
            self.key_for(leaf.operand.paths[0])  # its absence is what leaves the leaf unknown
            self.screens.setdefault(leaf.screen, f"k{len(self.screens)}")
        elif leaf.operand.is_sum:
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

def _parents(leaf: Leaf) -> tuple[str, ...]:
    """The counterparty objects whose fields the leaf reads (their absence makes the leaf false)."""
    out: dict[str, None] = {}
    for path in leaf.fields():
        party = counterparty_of(path)
        if party is not None:
            out.setdefault(party, None)
    return tuple(out)


class Lowerer:
    """Lowers condition trees with Kleene's three-valued logic into positive trees of tests.

    ``node(n, negate=False)`` is true exactly when ``n`` is true, ``node(n, negate=True)`` exactly when ``n`` is
    false, and :meth:`unknown` exactly when ``n`` is unknown (DOMAIN §5.1 point 6). A test on a missing key is
    false, so "unknown" is written with ``missing`` tests; a leaf under an absent counterparty is false. Fields in
    ``never_missing`` (required by the request contract, or given a declared default) are never unknown, which
    keeps the unknown trees of most rules empty."""

    def __init__(self, layout: FactLayout, never_missing: frozenset[str] = frozenset()):
        self.layout = layout
        self.never_missing = never_missing

    @staticmethod
    def _dates(rule: Rule) -> list[LNode]:
        dates: list[LNode] = []
        if rule.effective_from is not None:
            dates.append(Test(DAY_KEY, Op.GTE, rule.effective_from))
        if rule.effective_to is not None:
            dates.append(Test(DAY_KEY, Op.LT, rule.effective_to))
        return dates

    def rule(self, rule: Rule) -> LNode:
        """When the rule fires: in force and its condition true."""
        return _all([*self._dates(rule), self.node(rule.when, negate=False)])

    def rule_unknown(self, rule: Rule) -> LNode:
        """When the rule is undecided: in force and its condition unknown."""
        unknown = self.unknown(rule.when)
        return FALSE if unknown == FALSE else _all([*self._dates(rule), unknown])

    def node(self, node: Node, negate: bool) -> LNode:
        if isinstance(node, Not):
            return self.node(node.child, not negate)
        if isinstance(node, All | Any_):
            kids = [self.node(c, negate) for c in node.children]
            conj = isinstance(node, All) != negate  # De Morgan
            return _all(kids) if conj else _any(kids)
        return self.leaf(node, negate)

    def unknown(self, node: Node) -> LNode:
        if isinstance(node, Not):
            return self.unknown(node.child)
        if isinstance(node, Leaf):
            return self.leaf_unknown(node)
        # all: no child false (each true or unknown) and some child unknown; any: no child true, some unknown
        settled = isinstance(node, Any_)  # a child of `any` must not be true, a child of `all` not false
        results = [(self.node(child, negate=settled), self.unknown(child)) for child in node.children]
        unknowns = [u for _, u in results if u != FALSE]
        if not unknowns:
            return FALSE
        if len(unknowns) == 1:  # that child being unknown already says it is "true or unknown"
            return _all([other for other, u in results if u == FALSE] + unknowns)
        return _all([other if u == FALSE else _any([other, u]) for other, u in results] + [_any(unknowns)])

    def leaf_unknown(self, leaf: Leaf) -> LNode:
        if leaf.op.spec.shape is Shape.NONE or all(p in self.never_missing for p in leaf.deciding_fields()):
            return FALSE  # presence tests are two-valued; required and defaulted fields are never unknown
        lay = self.layout
        operand = leaf.operand
        if operand.is_sum:
            keys = [lay.sums[operand.paths]]
        elif leaf.ref is not None and lay.kinds[operand.paths[0]] == "num":
            keys = [lay.cmps[(operand.paths[0], leaf.ref)]]
        else:
            keys = [lay.plain[p] for p in leaf.deciding_fields() if p not in self.never_missing]
        present = [Test(lay.plain[party], Op.EXISTS) for party in _parents(leaf)]
        return _all([*present, _any([Test(k, Op.MISSING) for k in keys])])

    def leaf(self, leaf: Leaf, negate: bool) -> LNode:
        lay = self.layout
        operand = leaf.operand
        op = leaf.op
        shape, inverse = op.spec.shape, op.spec.inverse
        # when negated (the leaf is false): an absent counterparty makes it false, whatever else holds; a test on
        # a missing key is false, so a missing field makes neither the leaf nor its negation true (unknown)
        na: list[LNode] = [Test(lay.plain[party], Op.MISSING) for party in _parents(leaf)] if negate else []
        if leaf.screen is not None:  # the matcher computes the hit (missing when the name is)
            key = lay.screens[leaf.screen]
            return _any([*na, Test(key, Op.EQ, False)]) if negate else Test(key, Op.EQ, True)
        if operand.is_sum:
            key = lay.sums[operand.paths]
        elif leaf.ref is not None and lay.kinds[operand.paths[0]] == "num":
            # x <op> y  <=>  sign(x - y) <op> 0, computed exactly when the facts are built
            key = lay.cmps[(operand.paths[0], leaf.ref)]
            return _any([*na, Test(key, inverse, 0)]) if negate else Test(key, op, 0)
        else:
            key = lay.plain[operand.paths[0]]
        if shape is Shape.NONE:  # two-valued
            return Test(key, inverse if negate else op)
        if leaf.ref is not None:
            other = lay.plain[leaf.ref]
            if negate:
                return _any([*na, Test(key, inverse, ref_key=other)])
            return _all([Test(other, Op.EXISTS), Test(key, op, ref_key=other)])
        if shape is Shape.RANGE:  # lo <= x < hi
            lo, hi = leaf.value  # type: ignore[misc]
            if negate:
                return _any([*na, Test(key, Op.LT, lo), Test(key, Op.GTE, hi)])
            return _all([Test(key, Op.GTE, lo), Test(key, Op.LT, hi)])
        if shape is Shape.LIST:
            member = self._membership(key, leaf)
            non_member = _all([Test(key, Op.EXISTS), self._non_membership(key, leaf)])
            holds, fails = (member, non_member) if op is Op.IN else (non_member, member)
            return _any([*na, fails]) if negate else holds
        if negate:
            return _any([*na, Test(key, inverse, leaf.value)])
        return Test(key, op, leaf.value)

    @staticmethod
    def _membership(key: str, leaf: Leaf) -> LNode:
        seen: set = set()
        alts: list[LNode] = []
        for item in leaf.items or ():
            v = item.value
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
    def _non_membership(key: str, leaf: Leaf) -> LNode:
        parts: list[LNode] = []
        seen: set = set()
        for item in leaf.items or ():
            v = item.value
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
    """A rule set lowered for matching: shared by every matcher built from it.

    Rule ``i`` of the pack *fires* when its entry in ``rules`` (index ``i``) matches, and is *undecided* (its
    condition unknown) when its entry in ``unknown`` (index ``size + i``) matches; the two never match together.
    A matcher answers with one sorted list of both kinds of index; :meth:`split` separates them."""

    layout: FactLayout
    rules: tuple[CompiledRule, ...]  # when each rule fires (rules whose condition can be true), in pack order
    never: tuple[str, ...]  # ids of rules whose condition is never true (e.g. `in` an empty list)
    locations: Mapping[str, tuple[str, int, int]]  # rule id -> file, line, col (for compile errors)
    label: str  # ``pack@version``, naming the code generated for it
    root: str  # where the pack was loaded from
    size: int = 0  # rules in the pack
    unknown: tuple[CompiledRule, ...] = ()  # when each rule is undecided (rules that can be), in pack order
    only_undecided: tuple[str, ...] = ()  # ids of rules that can never fire but can be undecided

    def split(self, matched: list[int]) -> tuple[list[int], list[int]]:
        """(fired, undecided) pack indexes from a matcher's sorted answer."""
        n = self.size
        cut = bisect_left(matched, n)  # fired indexes are below ``size``, undecided ones from it: one search in C
        rest = len(matched) - cut
        if rest == 0:
            return matched, []
        if rest == 1:  # nearly every request (the skipped screening rule): no comprehension (a call in 3.11)
            return matched[:cut], [matched[cut] - n]
        return matched[:cut], [m - n for m in matched[cut:]]

    def position(self, rule_id: str) -> str:
        """``rules/funding_sources.yaml:12``: a rule's file (from the pack's parent directory) and line."""
        file, line, _ = self.locations[rule_id]
        return f"{Path(os.path.relpath(file, Path(self.root).parent)).as_posix()}:{line}"


def compile_program(ruleset: RuleSet, catalog_kinds: Mapping[str, str],
                    never_missing: frozenset[str] = frozenset()) -> Program:
    """Lower ``ruleset``; ``never_missing`` names the fields every valid request has (required, defaulted)."""
    layout = FactLayout(ruleset, catalog_kinds)
    lowerer = Lowerer(layout, never_missing)
    size = len(ruleset.rules)
    # A cross-rate amount is missing only when the CNY amount is (no rate for the payment's currency), if every FX
    # table has the target currency: the CNY amount, computed eagerly, then stands in for it in pre-filters.
    stand_in = {path: "derived.amount_cny" for currency, path in CROSS_RATE_PATHS.items()
                if ruleset.fx_tables and all(currency in table.rates for table in ruleset.fx_tables)}
    firing, undecided, never, only_undecided = [], [], [], []
    for i, rule in enumerate(ruleset.rules):
        tree = lowerer.rule(rule)
        unknown = lowerer.rule_unknown(rule)
        if tree == FALSE:
            never.append(rule.id)
            if unknown != FALSE:
                only_undecided.append(rule.id)
        else:
            firing.append(CompiledRule(i, rule.id, tree))
        if unknown != FALSE:
            maybe = tuple(dict.fromkeys(stand_in.get(p, p) for p in fields_read(rule.when) if p not in never_missing))
            undecided.append(CompiledRule(size + i, rule.id, unknown, maybe))
    locations = {r.id: (r.file, r.line, r.col) for r in ruleset.rules}
    return Program(layout, tuple(firing), tuple(never), locations, f"{ruleset.pack}@{ruleset.version}",
                   ruleset.path, size, tuple(undecided), tuple(only_undecided))
