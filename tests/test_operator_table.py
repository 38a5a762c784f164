"""The operator table: one vocabulary for the schema, the loader, the reference evaluator and both matchers."""

from __future__ import annotations

import itertools
from decimal import Decimal
from fractions import Fraction

import pytest
from conftest import DURABLE_OK, MATCHERS, base_request

from policy_engine import PolicyEngine, compiler, load_ruleset
from policy_engine.conditions import Leaf, Operand, evaluate
from policy_engine.errors import PolicyEngineError, RuleSetError
from policy_engine.operators import SPECS, Op, Shape, UnknownOperatorError
from policy_engine.resources import load_schema

#: Exact values of every type the matchers compare: present values, and thresholds beside them.
NUMBERS = [0, 1, 2, Decimal("1.5"), Decimal("2.0000"), Fraction(4, 3), Fraction(3, 2), Fraction(7, 3)]
TEXTS = ["a", "b", True, False]


def test_every_operator_has_exactly_one_spec():
    assert set(SPECS) == set(Op)


def test_the_rule_schema_lists_exactly_the_operators():
    schema = load_schema("ruleset")
    assert set(schema["$defs"]["leaf"]["properties"]["op"]["enum"]) == {op.value for op in Op}


@pytest.mark.parametrize("name", ["gtx", "GT", "", "lte ", 3, None, True, ["eq"], {"op": "eq"}])
def test_an_unknown_operator_is_an_error_not_a_default(name):
    with pytest.raises(UnknownOperatorError) as info:
        Op(name)
    assert isinstance(info.value, PolicyEngineError) and isinstance(info.value, ValueError)
    assert f"unknown operator {name!r}" in str(info.value)
    assert "operators are eq, ne, gt, gte, lt, lte, in, not_in, between, exists, missing, screen" in str(info.value)


def test_a_leaf_cannot_carry_an_unknown_operator_to_the_reference_evaluator():
    # The evaluator used to fall back to `lte`: risk_score 3 "gtx" 5 was true.
    with pytest.raises(UnknownOperatorError, match="'gtx'"):
        evaluate(Leaf(Operand(("risk_score",)), "gtx", value=5), {"risk_score": 3}, 0)  # type: ignore[arg-type]


def test_a_leaf_written_with_an_operator_name_reads_it_from_the_table():
    leaf = Leaf(Operand(("risk_score",)), "gt", value=5)  # type: ignore[arg-type]
    assert leaf.op is Op.GT
    assert [evaluate(leaf, {"risk_score": v}, 0) for v in (4, 5, 6)] == [False, False, True]


def test_the_compiler_refuses_an_unknown_or_unlowered_operator():
    with pytest.raises(UnknownOperatorError, match="'gtx'"):
        compiler.Test("f0", "gtx", 1)  # type: ignore[arg-type]
    for op in Op:
        if op.spec.primitive:
            assert compiler.Test("f0", op.value, 1).op is op  # type: ignore[arg-type]
        else:
            with pytest.raises(ValueError, match=f"`{op}` is not a primitive test"):
                compiler.Test("f0", op, 1)


def test_inverse_is_an_involution_that_negates_on_present_values():
    for op in Op:
        spec = op.spec
        assert (spec.inverse is not None) == spec.primitive, op
        if spec.inverse is None:
            continue
        assert spec.inverse.spec.inverse is op
        assert spec.inverse.spec.shape is spec.shape
        operands = [None] if spec.shape is Shape.NONE else NUMBERS
        values = [None, *NUMBERS] if spec.shape is Shape.NONE else NUMBERS
        for value, operand in itertools.product(values, operands):
            assert spec.holds(value, operand) != spec.inverse.spec.holds(value, operand), (op, value, operand)


def test_the_python_text_of_each_operator_means_what_its_reference_semantics_say():
    # The python matcher writes `python` into its generated code; the reference evaluator calls `holds`.
    for op in Op:
        spec = op.spec
        if spec.python is None:
            continue
        if spec.shape is Shape.NONE:
            pairs = [(v, None) for v in (None, *NUMBERS, *TEXTS)]
        elif spec.shape is Shape.LIST:
            pairs = [(v, members) for v in NUMBERS + TEXTS for members in ([], NUMBERS[:3], TEXTS[:2])]
        else:
            pairs = list(itertools.product(NUMBERS, NUMBERS)) if spec.numeric else \
                list(itertools.product(NUMBERS + TEXTS, NUMBERS + TEXTS))
        for value, operand in pairs:
            code = eval(f"value {spec.python} operand", {}, {"value": value, "operand": operand})
            assert code == spec.holds(value, operand), (op, value, operand)


def test_operators_restricted_to_some_kinds_are_the_orderings_of_numbers_or_name_screening():
    # The loader tells an analyst "`gt` orders numbers" for any kind an operator does not take; `screen` has its
    # own message ("`screen` compares names", tests/test_screening.py).
    for op in Op:
        assert op.spec.kinds in ({"str", "num", "bool"}, {"num"}) or (op is Op.SCREEN and op.spec.kinds == {"str"}), op


@pytest.mark.skipif(not DURABLE_OK, reason="durable-rules cannot import on this interpreter")
def test_the_durable_matcher_names_every_primitive_operator():
    from policy_engine.matchers.durable import DURABLE_OPS

    assert set(DURABLE_OPS) == {op for op in Op if op.spec.primitive}


def test_between_orders_numbers_only(make_pack):
    path = make_pack(_rule("T-1", "{field: channel, op: between, value: [a, b]}"))
    with pytest.raises(RuleSetError, match="`between` orders numbers; channel is a str field"):
        load_ruleset(path)


# -- the reference semantics agree with the matchers on exact values -----------------------------------------
def _rule(rule_id: str, when: str) -> str:
    return f"""\
- id: {rule_id}
  category: risk
  title: {rule_id}
  when: {when}
  outcome: review
  reason: "fired"
  source: test
  verified: false
"""


def _operand(op: Op, t: Decimal) -> tuple[str, object]:
    """The YAML operand of a leaf on threshold ``t`` and the operand its reference semantics take."""
    shape = op.spec.shape
    if shape is Shape.NONE:
        return "", None
    if shape is Shape.LIST:
        return f", value: [{t}, {t + 2}]", [t, t + 2]
    if shape is Shape.RANGE:
        return f", value: [{t}, {t + 1}]", (t, t + 1)
    return f", value: {t}", t


# (field, the type its value has, thresholds, requests that put the value on and beside the thresholds)
EXACT_CASES = [
    ("risk_score", int, [Decimal(65)], [{"risk_score": v} for v in (63, 64, 65, 66, 67)]),
    ("derived.amount_cny", Decimal, [Decimal("12.34")],
     [{"amount__value": v} for v in ("11.34", "12.33", "12.34", "12.35", "14.34")]),
    # CNY 100 is USD 100/7.2 = 13.8888...: exactly between two thresholds of four decimals, and never equal
    ("derived.amount_usd", Fraction, [Decimal("13.8888"), Decimal("13.8889"), Decimal("11.8889")],
     [{"amount__value": v} for v in ("100", "85.6", "99.99")]),
]


@pytest.mark.parametrize("matcher", MATCHERS)
@pytest.mark.parametrize(("field", "kind", "thresholds", "requests"), EXACT_CASES, ids=[c[0] for c in EXACT_CASES])
def test_reference_semantics_agree_with_the_matcher_on_exact_values(make_pack, matcher, field, kind, thresholds,
                                                                   requests):
    rules, expected = [], {}
    for n, t in enumerate(thresholds):
        for op in Op:
            if op is Op.SCREEN:  # names against a party list: tests/test_screening.py holds both matchers to it
                continue
            text, operand = _operand(op, t)
            rule_id = f"T{n}-{op.name.replace('_', '')}"
            rules.append(_rule(rule_id, f"{{field: {field}, op: {op}{text}}}"))
            expected[rule_id] = (op, operand)
    engine = PolicyEngine(load_ruleset(make_pack("".join(rules))), matcher=matcher)
    for overrides in requests:
        request = base_request(**overrides)
        value = engine.prepare(request).view[field]
        assert type(value) is kind
        fired = {rule_id for rule_id, (op, operand) in expected.items() if op.spec.holds(value, operand)}
        assert set(engine.evaluate(request).rule_ids) == fired, (field, value)
