"""The operators of rule conditions: one enum, and one table that every layer reads.

The loader checks a leaf's operand (``shape``) and its field's kind (``kinds``) against the table; the reference
evaluator computes ``holds``; the compiler lowers the operators that are not ``primitive`` (``in``, ``not_in``,
``between``; ``screen`` to a test of its screening fact) to primitive tests and negates a primitive test with its
``inverse``; the python matcher writes ``python`` into the code it generates; lint, explain and the test strategies
dispatch on ``shape``. A name outside :class:`Op` is an :class:`UnknownOperatorError` wherever it turns up, never a
default.

Messages name an operator as analysts write it in rule files (``gte``): ``str(op)`` is that name, and since
:class:`Op` is a ``str``, JSON output and comparisons with plain names are unchanged.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any, get_args

from .errors import PolicyEngineError
from .fields import Kind
from .yamlsource import shown


class UnknownOperatorError(PolicyEngineError, ValueError):
    """An operator name outside :class:`Op`. ``hint`` (e.g. "; did you mean 'gt'?") goes after the name."""

    def __init__(self, value: object, hint: str = "") -> None:
        self.value = value
        super().__init__(f"unknown operator {shown(value)}{hint}; operators are {', '.join(Op)}")


class Op(StrEnum):
    EQ = "eq"
    NE = "ne"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    IN = "in"
    NOT_IN = "not_in"
    BETWEEN = "between"
    EXISTS = "exists"
    MISSING = "missing"
    SCREEN = "screen"

    @classmethod
    def _missing_(cls, value: object) -> Op:
        raise UnknownOperatorError(value)

    @property
    def spec(self) -> OpSpec:
        return SPECS[self]


class Shape(Enum):
    """What a leaf compares its field with."""

    NONE = "none"  # nothing: the operator tests presence
    SCALAR = "scalar"  # one constant (`value:`), or another field of the same kind (`ref:`)
    LIST = "list"  # members: a `value:` list or a `list:` name; list items may be dated
    RANGE = "range"  # `value: [lo, hi]`, half-open
    SCREEN = "screen"  # a party list (`list:` naming a screening list) and a `threshold:`


ALL_KINDS: frozenset[Kind] = frozenset(get_args(Kind))
NUMBERS: frozenset[Kind] = frozenset({"num"})
TEXT: frozenset[Kind] = frozenset({"str"})


@dataclass(frozen=True, slots=True)
class OpSpec:
    shape: Shape
    kinds: frozenset[Kind]  # the field kinds the operator applies to
    #: The primitive operator that holds exactly when this one does not (on a present value, for comparisons;
    #: always, for exists / missing). None for the operators the compiler lowers to several tests.
    inverse: Op | None
    #: The Python operator with the same meaning, as ``value <python> operand`` (the operand of a presence test
    #: is None); None where Python has no binary operator for it.
    python: str | None
    #: The reference semantics: ``holds(value, operand)`` on exact values (str, bool, int, Decimal, Fraction).
    #: ``value`` is present except for presence tests; ``operand`` is the constant, the other field's value, the
    #: list members that apply on the payment's date, ``(lo, hi)``, None for presence tests, or for ``screen``
    #: whether the best match on the list at the payment's date reaches the threshold (policy_engine.screening).
    holds: Callable[[Any, Any], bool]

    @property
    def primitive(self) -> bool:
        """A matcher tests it directly; the compiler lowers the others to primitive tests."""
        return self.shape in (Shape.NONE, Shape.SCALAR)

    @property
    def numeric(self) -> bool:
        """It orders values, so it applies to numbers only."""
        return self.kinds == NUMBERS


SPECS: dict[Op, OpSpec] = {
    Op.EQ: OpSpec(Shape.SCALAR, ALL_KINDS, Op.NE, "==", operator.eq),
    Op.NE: OpSpec(Shape.SCALAR, ALL_KINDS, Op.EQ, "!=", operator.ne),
    Op.GT: OpSpec(Shape.SCALAR, NUMBERS, Op.LTE, ">", operator.gt),
    Op.GTE: OpSpec(Shape.SCALAR, NUMBERS, Op.LT, ">=", operator.ge),
    Op.LT: OpSpec(Shape.SCALAR, NUMBERS, Op.GTE, "<", operator.lt),
    Op.LTE: OpSpec(Shape.SCALAR, NUMBERS, Op.GT, "<=", operator.le),
    Op.IN: OpSpec(Shape.LIST, ALL_KINDS, None, "in", lambda value, members: value in members),
    Op.NOT_IN: OpSpec(Shape.LIST, ALL_KINDS, None, "not in", lambda value, members: value not in members),
    Op.BETWEEN: OpSpec(Shape.RANGE, NUMBERS, None, None, lambda value, bounds: bounds[0] <= value < bounds[1]),
    Op.EXISTS: OpSpec(Shape.NONE, ALL_KINDS, Op.MISSING, "is not", lambda value, _: value is not None),
    Op.MISSING: OpSpec(Shape.NONE, ALL_KINDS, Op.EXISTS, "is", lambda value, _: value is None),
    Op.SCREEN: OpSpec(Shape.SCREEN, TEXT, None, None, lambda _name, hit: hit),
}


def ops_with(shapes: tuple[Shape, ...], kind: Kind) -> str:
    """The operators of these shapes that apply to fields of ``kind``, for hints: ``eq / ne``."""
    return " / ".join(op for op in Op if op.spec.shape in shapes and kind in op.spec.kinds)
