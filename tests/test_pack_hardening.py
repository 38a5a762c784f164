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
