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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from .conditions import All, Any_, Leaf, Node, Not, leaves
from .operators import Op, Shape
from .ruleset import Rule, RuleSet

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


class FactLayout:
    """Which fact key carries which field, sum or comparison."""

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
        #: keys holding numbers compared with numeric constants (a ``c*`` key holds a sign, compared with 0)
        self.numeric_keys = frozenset([*self.sums.values(),
                                       *(k for p, k in self.plain.items() if self.kinds[p] == "num")])
        self.all_keys = frozenset([*self.plain.values(), *self.sums.values(), *self.cmps.values(),
                                   *([DAY_KEY] if self.uses_day else [])])

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
            key = lay.sums[operand.paths]
        elif leaf.ref is not None and lay.kinds[operand.paths[0]] == "num":
            # x <op> y  <=>  sign(x - y) <op> 0, computed exactly when the facts are built
            key = lay.cmps[(operand.paths[0], leaf.ref)]
            positive = Test(key, op, 0)
            return _any([Test(key, Op.MISSING), Test(key, inverse, 0)]) if negate else positive
        else:
            key = lay.plain[operand.paths[0]]
        if shape is Shape.NONE:
            return Test(key, inverse if negate else op)
        present = Test(key, Op.EXISTS)
        absent = Test(key, Op.MISSING)
        if leaf.ref is not None:
            other = lay.plain[leaf.ref]
            if negate:
                return _any([absent, Test(other, Op.MISSING), Test(key, inverse, ref_key=other)])
            return _all([Test(other, Op.EXISTS), Test(key, op, ref_key=other)])
        if shape is Shape.RANGE:  # lo <= x < hi
            lo, hi = leaf.value  # type: ignore[misc]
            if negate:
                return _any([absent, Test(key, Op.LT, lo), Test(key, Op.GTE, hi)])
            return _all([Test(key, Op.GTE, lo), Test(key, Op.LT, hi)])
        if shape is Shape.LIST:
            member = self._membership(key, leaf)
            non_member = self._non_membership(key, leaf)
            if (op is Op.IN) != negate:  # in, or not(not_in): present and a member (missing fails eq)
                return member if not negate else _any([absent, member])
            # not_in, or not(in)
            return _all([present, non_member]) if not negate else _any([absent, non_member])
        if negate:
            return _any([absent, Test(key, inverse, leaf.value)])
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
    """A rule set lowered for matching: shared by every matcher built from it."""

    layout: FactLayout
    rules: tuple[CompiledRule, ...]  # rules whose condition can be true, in pack order
    never: tuple[str, ...]  # ids of rules whose condition is always false (e.g. `in` an empty list)
    locations: Mapping[str, tuple[str, int, int]]  # rule id -> file, line, col (for compile errors)
    label: str  # ``pack@version``, naming the code generated for it
    root: str  # where the pack was loaded from

    def position(self, rule_id: str) -> str:
        """``rules/funding_sources.yaml:12``: a rule's file (from the pack's parent directory) and line."""
        file, line, _ = self.locations[rule_id]
        return f"{Path(os.path.relpath(file, Path(self.root).parent)).as_posix()}:{line}"


def compile_program(ruleset: RuleSet, catalog_kinds: Mapping[str, str]) -> Program:
    layout = FactLayout(ruleset, catalog_kinds)
    lowerer = Lowerer(layout)
    compiled, never = [], []
    for i, rule in enumerate(ruleset.rules):
        tree = lowerer.rule(rule)
        if tree == FALSE:
            never.append(rule.id)
        else:
            compiled.append(CompiledRule(i, rule.id, tree))
    locations = {r.id: (r.file, r.line, r.col) for r in ruleset.rules}
    return Program(layout, tuple(compiled), tuple(never), locations, f"{ruleset.pack}@{ruleset.version}",
                   ruleset.path)
