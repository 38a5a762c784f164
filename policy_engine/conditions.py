"""The condition tree of a rule, the fields it reads, and the plain reference evaluator.

The reference evaluator works on the normalised request (exact ``Decimal``/``Fraction`` numbers, strings,
booleans) and states the semantics directly; both matchers are property-tested against it.

Missing data is unknown, never a pass (DOMAIN §5.1 point 6): a condition has three values, true, false and
unknown (``None`` here).

- A leaf on a field under an absent counterparty object (:data:`NOT_APPLICABLE_WHEN_ABSENT`: no ``merchant`` on
  a P2P transfer, no ``payee`` on a purchase) is false: the counterparty does not exist, so nothing about it holds.
- Otherwise a leaf whose field (or ``ref`` field, or ``add`` operand) is missing is unknown, for every operator
  but ``exists``/``missing``, which are two-valued. Fields whose absence has a defined meaning (caller-supplied
  history counters: 0) are given their declared default by the request preparer before any rule reads them.
- ``all``/``any``/``not`` follow Kleene's logic: false AND unknown = false, true OR unknown = true, NOT unknown =
  unknown.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Union

from .operators import Op, Shape

if TYPE_CHECKING:  # the screening package imports rapidfuzz only when a pack screens names
    from .screening import Screening

Number = int | Decimal | Fraction
Scalar = str | bool | Number

#: Objects whose absence means "not applicable" rather than "unknown" (DOMAIN §5.1 point 6). The request
#: preparer puts a presence marker for each (the object's own path, ``True``) into the view, so the reference
#: evaluator and both matchers can tell an absent counterparty from an absent field of a present one.
NOT_APPLICABLE_WHEN_ABSENT = ("merchant", "payee")

#: Truth values of the three-valued logic: ``True``, ``False`` and ``UNKNOWN``.
UNKNOWN = None


def counterparty_of(path: str) -> str | None:
    """The counterparty object a field belongs to (``merchant.mcc`` -> ``merchant``), else ``None``."""
    head = path.split(".", 1)[0]
    return head if head in NOT_APPLICABLE_WHEN_ABSENT and head != path else None


@dataclass(frozen=True, slots=True)
class Operand:
    """What a leaf reads: one field, or the exact sum of several (``add``)."""

    paths: tuple[str, ...]
    is_sum: bool = False

    @property
    def label(self) -> str:
        return " + ".join(self.paths) if self.is_sum else self.paths[0]

    def value(self, view: Mapping[str, Any]) -> Any:
        """The operand's exact value, or ``None`` when a field it reads is missing (declared defaults are already
        in the view)."""
        if not self.is_sum:
            return view.get(self.paths[0])
        total: Number = 0
        for path in self.paths:
            v = view.get(path)
            if v is None:
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
    screen: Screening | None = None  # `screen`: the list, threshold and secondary key
    # Where the leaf was written, (file, line, col), for lint findings and coverage reports. Not part of the
    # leaf's identity: two leaves that test the same thing are equal wherever they are written.
    pos: tuple[str, int, int] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # An operator outside the vocabulary fails here, when the leaf is made, not later in some evaluator.
        object.__setattr__(self, "op", Op(self.op))

    def fields(self) -> Iterator[str]:
        yield from self.deciding_fields()
        if self.screen is not None and self.screen.country_field is not None:
            yield self.screen.country_field  # read when present; its absence leaves the leaf decided

    def deciding_fields(self) -> Iterator[str]:
        """The fields whose absence makes the leaf unknown."""
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


def not_applicable(leaf: Leaf, view: Mapping[str, Any]) -> bool:
    """Whether the leaf reads a field of a counterparty the request does not have (the leaf is then false)."""
    for path in leaf.fields():
        party = counterparty_of(path)
        if party is not None and party not in view:
            return True
    return False


def evaluate_leaf(leaf: Leaf, view: Mapping[str, Any], day: int) -> bool | None:
    """True, false, or ``None`` (unknown: a field the leaf needs is missing). Presence operators are two-valued;
    every other operator's meaning on present values is its table entry (``Op.spec.holds``)."""
    spec = leaf.op.spec
    value = leaf.operand.value(view)
    if spec.shape is Shape.NONE:
        return spec.holds(value, None)
    if not_applicable(leaf, view):
        return False
    if value is None:
        return UNKNOWN
    if leaf.ref is not None:
        other = view.get(leaf.ref)
        return UNKNOWN if other is None else spec.holds(value, other)
    if spec.shape is Shape.LIST:
        assert leaf.items is not None
        return spec.holds(value, [item.value for item in leaf.items if item.applies(day)])
    if spec.shape is Shape.SCREEN:
        assert leaf.screen is not None
        return spec.holds(value, leaf.screen.hit(view, day))  # type: ignore[arg-type]
    return spec.holds(value, leaf.value)


def kleene_all(values: Iterable[bool | None]) -> bool | None:
    result: bool | None = True
    for v in values:
        if v is False:
            return False
        if v is UNKNOWN:
            result = UNKNOWN
    return result


def kleene_any(values: Iterable[bool | None]) -> bool | None:
    result: bool | None = False
    for v in values:
        if v is True:
            return True
        if v is UNKNOWN:
            result = UNKNOWN
    return result


def kleene_not(value: bool | None) -> bool | None:
    return UNKNOWN if value is UNKNOWN else not value


def evaluate(node: Node, view: Mapping[str, Any], day: int) -> bool | None:
    """The reference semantics of a condition tree on a normalised request dated ``day`` (date ordinal): true,
    false or ``None`` (unknown)."""
    if isinstance(node, Leaf):
        return evaluate_leaf(node, view, day)
    if isinstance(node, All):
        return kleene_all([evaluate(c, view, day) for c in node.children])
    if isinstance(node, Any_):
        return kleene_any([evaluate(c, view, day) for c in node.children])
    return kleene_not(evaluate(node.child, view, day))


def unknown_depends_on(node: Node) -> tuple[str, ...]:
    """The view keys whose presence alone decides :func:`unknown_fields` on any request: each leaf's deciding
    fields and the presence markers of the counterparties its fields belong to. A leaf with a deciding field
    absent is unknown unless its counterparty is absent or it is a presence test, whatever the other values are,
    so requests with the same presence pattern have the same unknown fields (callers may memoise on it)."""
    seen: dict[str, None] = {}
    for leaf in leaves(node):
        for path in leaf.deciding_fields():
            seen.setdefault(path, None)
        for path in leaf.fields():
            party = counterparty_of(path)
            if party is not None:
                seen.setdefault(party, None)
    return tuple(seen)


def unknown_fields(node: Node, view: Mapping[str, Any], day: int) -> tuple[str, ...]:
    """The missing fields of the leaves that are unknown on this request, in first-use order: what a caller would
    have to send for the condition to be decided."""
    seen: dict[str, None] = {}
    for leaf in leaves(node):
        absent = [path for path in leaf.deciding_fields() if view.get(path) is None]
        if absent and evaluate_leaf(leaf, view, day) is UNKNOWN:  # a leaf with every field present is decided
            for path in absent:
                seen.setdefault(path, None)
    return tuple(seen)
