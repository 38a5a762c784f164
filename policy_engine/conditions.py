"""The condition tree of a rule, the fields it reads, and the plain reference evaluator.

The reference evaluator works on the normalised request (exact ``Decimal``/``Fraction`` numbers, strings,
booleans) and states the semantics directly; both matchers are property-tested against it.

Missing data: a leaf whose field (or ``ref`` field, or non-``history`` ``add`` operand) is missing is false for
every operator except ``missing``; ``not`` is plain negation, so ``not: {field: x, op: eq, value: true}`` is true
when ``x`` is absent.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any, Union

from .operators import Op, Shape

Number = int | Decimal | Fraction
Scalar = str | bool | Number

#: History aggregates are counters the caller may omit: in ``add`` they count as zero (DOMAIN §5.1.6).
ZERO_WHEN_MISSING_PREFIX = "history."


@dataclass(frozen=True, slots=True)
class Operand:
    """What a leaf reads: one field, or the exact sum of several (``add``)."""

    paths: tuple[str, ...]
    is_sum: bool = False

    @property
    def label(self) -> str:
        return " + ".join(self.paths) if self.is_sum else self.paths[0]

    def value(self, view: Mapping[str, Any]) -> Any:
        if not self.is_sum:
            return view.get(self.paths[0])
        total: Number = 0
        for path in self.paths:
            v = view.get(path)
            if v is None:
                if path.startswith(ZERO_WHEN_MISSING_PREFIX):
                    continue
                return None
            total = _exact_add(total, v)
        return total


def _exact_add(a: Number, b: Number) -> Number:
    if isinstance(a, Fraction) or isinstance(b, Fraction):
        return Fraction(a) + Fraction(b)
    return a + b


@dataclass(frozen=True, slots=True)
class ListItem:
    """A list member, optionally valid only for payments dated in ``[start, end)`` (date ordinals)."""

    value: Scalar
    start: int | None = None
    end: int | None = None

    def applies(self, day: int) -> bool:
        return (self.start is None or day >= self.start) and (self.end is None or day < self.end)


@dataclass(frozen=True, slots=True)
class Leaf:
    operand: Operand
    op: Op
    value: Scalar | tuple[Scalar, Scalar] | None = None  # comparisons; (lo, hi) for between
    items: tuple[ListItem, ...] | None = None  # in / not_in
    list_name: str | None = None  # the named list the items came from, for explain and lint
    ref: str | None = None  # comparisons against another field
    # Where the leaf was written, (file, line, col), for lint findings and coverage reports. Not part of the
    # leaf's identity: two leaves that test the same thing are equal wherever they are written.
    pos: tuple[str, int, int] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # An operator outside the vocabulary fails here, when the leaf is made, not later in some evaluator.
        object.__setattr__(self, "op", Op(self.op))

    def fields(self) -> Iterator[str]:
        yield from self.operand.paths
        if self.ref:
            yield self.ref


@dataclass(frozen=True, slots=True)
class All:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Any_:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


Node = Union[Leaf, All, Any_, Not]  # noqa: UP007 -- a runtime alias used before the classes are complete


def leaves(node: Node) -> Iterator[Leaf]:
    if isinstance(node, Leaf):
        yield node
    elif isinstance(node, All | Any_):
        for child in node.children:
            yield from leaves(child)
    else:
        yield from leaves(node.child)


def fields_read(node: Node) -> tuple[str, ...]:
    """Every field a condition reads, in first-use order, without repeats."""
    seen: dict[str, None] = {}
    for leaf in leaves(node):
        for path in leaf.fields():
            seen.setdefault(path, None)
    return tuple(seen)


def evaluate_leaf(leaf: Leaf, view: Mapping[str, Any], day: int) -> bool:
    spec = leaf.op.spec
    value = leaf.operand.value(view)
    if spec.shape is Shape.NONE:
        return spec.holds(value, None)
    if value is None:
        return False
    if leaf.ref is not None:
        other = view.get(leaf.ref)
        return other is not None and spec.holds(value, other)
    if spec.shape is Shape.LIST:
        assert leaf.items is not None
        return spec.holds(value, [item.value for item in leaf.items if item.applies(day)])
    return spec.holds(value, leaf.value)


def evaluate(node: Node, view: Mapping[str, Any], day: int) -> bool:
    """The reference semantics of a condition tree on a normalised request dated ``day`` (date ordinal)."""
    if isinstance(node, Leaf):
        return evaluate_leaf(node, view, day)
    if isinstance(node, All):
        return all(evaluate(c, view, day) for c in node.children)
    if isinstance(node, Any_):
        return any(evaluate(c, view, day) for c in node.children)
    return not evaluate(node.child, view, day)
