"""Packs that cannot lie: what a pack, a rule-test file or an invariants file says is what the engine does, or
the file is refused at load with the problem's file:line:col. Never a traceback, never a per-payment failure."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import PACK_HEADER, base_request

from policy_engine import PolicyEngine, RuleSetError, load_ruleset
from policy_engine.testing import RuleTestError, run_tests
from policy_engine.testing.invariants import InvariantError, load_invariants


def rule(when: str, *, rid: str = "R-1", reason: str = "Held.", extra: str = "") -> str:
    return (f"- id: {rid}\n  category: risk\n  title: {rid} title\n  when: {when}\n  outcome: review\n"
            f"  reason: {reason}\n  source: test\n  verified: false\n{extra}")


def position(text: str, needle: str) -> tuple[int, int]:
    """1-based (line, col) of the only occurrence of ``needle`` in ``text``."""
    assert text.count(needle) == 1, f"fixture needle {needle!r} must be unique"
    index = text.index(needle)
    return text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1


def load_error(path: Path) -> tuple[list[str], list[tuple[int, int]]]:
    """The messages and positions of the pack's load errors (the load must fail)."""
    with pytest.raises(RuleSetError) as caught:
        load_ruleset(path)
    return [i.message for i in caught.value.issues], [(i.line, i.col) for i in caught.value.issues]


# -- impossible dates ------------------------------------------------------------------------------------------
IMPOSSIBLE_DATES = [
    ("rule effective, quoted", "",
     rule("{field: purpose, op: eq, value: x}", extra='  effective: {from: "2025-02-30"}\n'), '"2025-02-30"'),
    ("rule effective, plain YAML date", "", rule("{field: purpose, op: eq, value: x}",
                                                 extra="  effective: {to: 2025-13-01}\n"), "2025-13-01"),
    ("dated list item", 'l: [{value: IR, from: "2025-02-30"}]\n',
     rule("{field: payer.residence_country, op: in, list: l}"), '"2025-02-30"'),
    ("dated list item, plain", "l: [{value: IR, to: 2025-02-29}]\n",
     rule("{field: payer.residence_country, op: in, list: l}"), "2025-02-29"),
]


@pytest.mark.parametrize(("lists", "rules", "needle"), [c[1:] for c in IMPOSSIBLE_DATES],
                         ids=[c[0] for c in IMPOSSIBLE_DATES])
def test_an_impossible_date_in_a_pack_is_a_load_error_at_its_position(make_pack, lists, rules, needle):
    path = make_pack(rules, lists)
    messages, where = load_error(path)
    assert len(messages) == 1 and "not a valid date" in messages[0]
    line, col = position(path.read_text(), needle)
    assert where[0][0] == line and where[0][1] in (col, col - len("from: "), col - len("to: "))


@pytest.mark.parametrize("as_of", ['"2025-02-30"', "2025-02-30", '"0000-01-01"'])
def test_an_impossible_fx_date_is_one_load_error(make_pack, as_of):
    header = PACK_HEADER.replace("as_of: 2020-01-01", f"as_of: {as_of}")
    path = make_pack(rule("{field: purpose, op: eq, value: x}"), header=header)
    messages, where = load_error(path)
    assert len(messages) == 1 and "not a valid date" in messages[0]  # and no "no reference_fx table" besides
    assert where[0][0] == position(path.read_text(), as_of)[0]


def test_a_number_yaml_cannot_hold_is_refused_not_rounded(make_pack):
    messages, _ = load_error(make_pack(rule("{field: derived.amount_cny, op: gt, value: 0.10000000000000000001}")))
    assert "more digits than a YAML number keeps" in messages[0]
    messages, _ = load_error(make_pack(rule("{field: derived.amount_cny, op: gt, value: .nan}")))
    assert "not a finite number" in messages[0]
    messages, _ = load_error(make_pack(rule("{field: derived.amount_cny, op: gt, value: 1" + "0" * 5000 + "}")))
    assert "not a valid integer" in messages[0] and len(messages[0]) < 300


def write_tests(pack: Path, text: str, name: str = "cases.yaml") -> Path:
    tests = pack.parent / "tests"
    tests.mkdir(exist_ok=True)
    path = tests / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.mark.parametrize("stamp", ['"2025-02-30T10:00:00+08:00"', "2025-02-30T10:00:00+08:00"])
def test_an_impossible_timestamp_in_a_rule_test_file_is_refused_with_its_position(tmp_path, stamp):
    pack = tmp_path / "pack" / "pack.yaml"
    pack.parent.mkdir()
    pack.write_text(PACK_HEADER + "rules:\n" + textwrap.indent(rule("{field: purpose, op: eq, value: x}"), "  "))
    path = write_tests(pack, f"""\
        bases:
          b: {{timestamp: "2025-06-10T10:00:00+08:00", payer: {{id: u}}, funding_source: {{type: debit_card}},
              purpose: x, amount: {{value: 1, currency: CNY}}}}
        cases:
          - name: c
            base: b
            set: {{timestamp: {stamp}}}
            expect: {{decision: review}}
        """)
    with pytest.raises(RuleTestError) as caught:
        run_tests(pack.parent)
    (issue,) = caught.value.issues
    assert "2025-02-30" in issue.message and issue.line == position(path.read_text(), stamp)[0]


@pytest.mark.parametrize("day", ['"2025-02-30"', "2025-02-30"])
def test_an_impossible_date_in_an_invariants_file_is_refused_with_its_position(tmp_path, day):
    path = tmp_path / "invariants.yaml"
    path.write_text(textwrap.dedent(f"""\
        invariants:
          - id: INV-1
            title: t
            source: s
            given: {{purpose: gambling, timestamp: {{from: {day}}}}}
            expect: {{decision: review}}
        """), encoding="utf-8")
    with pytest.raises(InvariantError) as caught:
        load_invariants(path)
    (issue,) = caught.value.issues
    assert "not a valid date" in issue.message and issue.line == 5


def test_no_date_problem_reaches_an_evaluation(make_pack):
    # the fixture that the checks above refuse loads once its dates are real, and decides
    path = make_pack(rule("{field: purpose, op: eq, value: gambling}", extra='  effective: {from: "2024-02-29"}\n'))
    engine = PolicyEngine.from_path(path)
    assert engine.evaluate(base_request(purpose="gambling")).decision.value == "review"


# -- constants the request contract can hold -------------------------------------------------------------------
MISFITS = [
    ("lowercase currency", "{field: amount.currency, op: eq, value: cu}", "", "value: cu", "^[A-Z]{3}$"),
    ("3-digit MCC", '{field: merchant.mcc, op: in, value: ["7995", "799"]}', "", '"799"', "^[0-9]{4}$"),
    ("enum", "{field: payer.kyc_level, op: ne, value: gold}", "", "value: gold", "'basic'"),
    ("above the maximum", "{field: risk_score, op: gte, value: 150}", "", "value: 150", "maximum is 99"),
    ("below the minimum", "{field: payer.age, op: lt, value: -1}", "", "value: -1", "minimum is 0"),
    ("derived bound", "{field: derived.local_hour, op: between, value: [22, 25]}", "", "25", "maximum is 24"),
    ("zero-width space inline", '{field: payer.residence_country, op: in, value: [IR, "KP\\u200b"]}', "",
     '"KP\\u200b"', "U+200B ZERO WIDTH SPACE"),
]


@pytest.mark.parametrize(("when", "lists", "needle", "fragment"), [m[1:] for m in MISFITS],
                         ids=[m[0] for m in MISFITS])
def test_a_constant_no_request_can_carry_is_a_load_error_at_its_position(make_pack, when, lists, needle, fragment):
    path = make_pack(rule(when), lists)
    with pytest.raises(RuleSetError) as caught:
        load_ruleset(path)
    (issue,) = caught.value.issues
    assert fragment in issue.message and issue.rule_id == "R-1"
    assert (issue.line, issue.col) == position(path.read_text(), needle)


def test_list_values_are_checked_against_every_field_that_reads_the_list(make_pack):
    lists = 'countries: [IR, "K\\u200dP", Iran]\nunused: ["x\\ufeff"]\n'
    rules = (rule("{field: merchant.country, op: in, list: countries}")
             + rule("{field: payee.country, op: not_in, list: countries}", rid="R-2"))
    path = make_pack(rules, lists)
    with pytest.raises(RuleSetError) as caught:
        load_ruleset(path)
    found = {(i.line, i.col, i.rule_id): i.message for i in caught.value.issues}
    text = path.read_text()
    assert "U+200D ZERO WIDTH JOINER" in found[(*position(text, '"K\\u200dP"'), None)]
    assert "U+FEFF ZERO WIDTH NO-BREAK SPACE" in found[(*position(text, '"x\\ufeff"'), None)]  # in an unused list too
    iran = position(text, "Iran]")
    assert "merchant.country" in found[(*iran, "R-1")] and "payee.country" in found[(*iran, "R-2")]
    assert "list 'countries'" in found[(*iran, "R-1")]
    assert len(found) == 4


def test_open_fields_accept_any_value_and_the_default_pack_loads_clean(make_pack):
    # funding_source.type and purpose are open by design (FS-000 / FS-099 catch what the pack does not know)
    load_ruleset(make_pack(rule("{field: funding_source.type, op: eq, value: wallet_credit}")
                           + rule("{field: risk_score, op: between, value: [75, 100]}", rid="R-2")
                           + rule("{field: amount.value, op: gt, value: 0}", rid="R-3")))
    load_ruleset(None)


# -- exact rates ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("rate", "fragment"), [
    ('"123456789012345678901234567890"', "30 digits before the decimal point; the limit is 12"),
    ('"1.' + "1" * 51 + '"', "51 decimal places; the limit is 50"),
    ('"0"', "must be positive"),
])
def test_a_rate_the_exact_arithmetic_cannot_hold_is_a_load_error(make_pack, rate, fragment):
    header = PACK_HEADER.replace('USD: "7.2"', f"USD: {rate}")
    path = make_pack(rule("{field: derived.amount_cny, op: gt, value: 100}"), header=header)
    messages, where = load_error(path)
    assert len(messages) == 1 and fragment in messages[0]
    assert where[0] == position(path.read_text(), f"USD: {rate}")


@pytest.mark.parametrize("matcher", ["python", "durable"])
def test_the_longest_rate_converts_the_largest_amount_exactly(make_pack, matcher):
    # 12 integer digits and 50 places: the limits, together with the largest amount, fill the exact context
    rate = "9" * 12 + "." + "9" * 49 + "1"
    header = PACK_HEADER.replace('USD: "7.2"', f'USD: "{rate}"')
    path = make_pack(rule("{field: derived.amount_cny, op: gt, value: 99999999999}"), header=header)
    engine = PolicyEngine.from_path(path, matcher=matcher)
    request = base_request(amount__value="999999999999999.99", amount__currency="USD")
    assert engine.evaluate(request).rule_ids == ("R-1",)


# -- bounded cost ----------------------------------------------------------------------------------------------
def leaf_list(n: int, template: str) -> str:
    return ", ".join(template.format(i=i) for i in range(n))


COSTLY = [
    ("add of 33 fields", rule("{field: {add: [" + leaf_list(33, "history.cash_today_cny") + "]}, op: gt, value: 1}"),
     "`add` of 33 fields; the limit is 32"),
    ("65 placeholders", rule("{field: purpose, op: eq, value: x}", reason='"' + "{purpose} " * 65 + '"'),
     "65 placeholders; a reason renders at most 64"),
    ("1001 leaves", rule("{any: [" + leaf_list(1001, "{{field: risk_score, op: eq, value: {i}}}").replace(
        "value: 1000}", "value: 99}") + "]}"), "condition of 1,001 leaves; a rule has at most 1,000"),
    ("inline list of 100,001", rule("{field: merchant.id, op: in, value: [" + leaf_list(100_001, "m{i}") + "]}"),
     "list of 100,001 values; the limit is 100,000"),
]


@pytest.mark.parametrize(("rules", "fragment"), [c[1:] for c in COSTLY], ids=[c[0] for c in COSTLY])
def test_a_pack_whose_evaluation_cost_is_unbounded_is_refused_naming_the_limit(make_pack, rules, fragment):
    path = make_pack(rules)
    messages, _ = load_error(path)
    assert any(fragment in m for m in messages), messages
