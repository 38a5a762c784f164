"""YAML rule tests: the default pack's own tests pass with full coverage; a failing case is reported with
expected vs got and its trail; JUnit XML; coverage (rules, leaves, effective dates, dated lists); every mistake
in a test file is refused at its file:line:col."""

from __future__ import annotations

import io
import json
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import MATCHERS, PACK_HEADER, RULES
from test_loader_errors import at, rule

import policy_engine.testing as testing
from policy_engine.cli import main
from policy_engine.testing import RuleTestError, run_tests, to_junit
from policy_engine.testing.runner import TestReport

# ---------------------------------------------------------------------------------------------------------------
# The default pack's tests (rules/tests/*.yaml).


@pytest.fixture(scope="module", params=MATCHERS)
def default_report(request) -> TestReport:
    return run_tests(RULES, matcher=request.param)


def test_default_pack_tests_pass_with_full_rule_coverage(default_report):
    failing = [f"{c.location} {c.name}: {c.failures}" for c in default_report.cases if c.status != "passed"]
    assert failing == []
    assert default_report.coverage.rule_percent == 100.0 and default_report.coverage.never_fired == ()
    assert len(default_report.coverage.rules) == 59
    assert len(default_report.files) >= 8  # several files, by area


def test_every_rule_has_a_firing_case_and_a_case_at_its_edge(default_report):
    for rule_cov in default_report.coverage.rules:
        named = [c for c in default_report.cases if rule_cov.rule_id in c.name]
        assert any(rule_cov.rule_id in c.fired for c in named), rule_cov.rule_id
        assert any(rule_cov.rule_id not in c.fired for c in named), rule_cov.rule_id


def test_invariants_file_beside_the_cases_is_not_a_rule_test_file(default_report):
    assert (RULES / "tests" / "invariants.yaml").exists()
    assert all(not f.endswith("invariants.yaml") for f in default_report.files)


def test_cli_on_the_default_pack(tmp_path):
    out, junit = io.StringIO(), tmp_path / "junit.xml"
    assert main(["test", str(RULES), "--min-coverage", "100", "--junit", str(junit)], out=out,
                err=io.StringIO()) == 0
    text = out.getvalue()
    assert "0 failed, 0 error(s)" in text and "rule coverage: 59/59 rules fired" in text and "(100.0%)" in text
    suites = ET.parse(junit).getroot()
    assert suites.tag == "testsuites" and int(suites.get("failures")) == 0
    assert int(suites.get("tests")) == sum(int(s.get("tests")) for s in suites.iter("testsuite")) > 100


# ---------------------------------------------------------------------------------------------------------------
# A small pack of our own with its tests.

LISTS = """\
lists:
  embargo:
    - IR
    - {value: SY, to: 2025-07-01}
"""

PACK_RULES = "rules:\n" + "".join([
    rule("GAMBLE", "{field: purpose, op: eq, value: gambling}", outcome="deny", reason='"No gambling ({purpose})."'),
    rule("NIGHT", "\n      all:\n        - {field: derived.local_hour, op: lt, value: 6}\n"
                  "        - {field: purpose, op: eq, value: p2p_transfer}"),
    rule("EMBARGO", "{field: merchant.country, op: in, list: embargo}", outcome="deny",
         extra="    effective: {from: 2024-01-01}\n"),
    rule("CASH", "{field: purpose, op: eq, value: cash_withdrawal}", outcome="allow", extra="    report: LVTR\n"),
])

BASES = """\
bases:
  purchase:
    timestamp: "2025-06-10T14:30:00+08:00"
    payer: {id: u-1}
    funding_source: {type: debit_card}
    purpose: merchant_purchase
    merchant: {mcc: "5411", country: CN}
    amount: {value: 100, currency: CNY}
"""


def write(tmp_path: Path, cases: str, bases: str = BASES, name: str = "cases.yaml") -> Path:
    """A one-file pack in tmp_path and a test file ``tests/<name>``; returns the pack path."""
    pack = tmp_path / "pack.yaml"
    pack.write_text(PACK_HEADER + LISTS + PACK_RULES, encoding="utf-8")
    tests = tmp_path / "tests"
    tests.mkdir(exist_ok=True)
    (tests / name).write_text(bases + "cases:\n" + textwrap.indent(textwrap.dedent(cases), "  "), encoding="utf-8")
    return pack


PASSING = """\
- name: gambling is refused
  base: purchase
  set: {purpose: gambling}
  expect: {decision: deny, rules: [GAMBLE], reason_contains: [NO GAMBLING]}
- name: night transfer at 05:00 local
  base: purchase
  set: {purpose: p2p_transfer, timestamp: "2025-06-10T05:00:00+08:00", payee: {country: CN, sanctions_hit: false}}
  unset: [merchant]
  expect: {decision: review, includes: [NIGHT], excludes: [GAMBLE]}
- name: cash withdrawal is reported
  base: purchase
  set: {purpose: cash_withdrawal}
  expect: {decision: allow, reports: [LVTR], obligations: [{rule_id: CASH, report: LVTR}]}
"""

FAILING = """\
- name: wrong expectation
  base: purchase
  set: {purpose: gambling}
  expect: {decision: allow, rules: [NIGHT], reason_contains: [casino], reports: [CTR]}
"""


def test_passing_cases(tmp_path):
    report = run_tests(write(tmp_path, PASSING))
    assert [(c.name, c.status) for c in report.cases] == [
        ("gambling is refused", "passed"), ("night transfer at 05:00 local", "passed"),
        ("cash withdrawal is reported", "passed")]
    assert report.ok and report.to_dict()["summary"] == {"cases": 3, "passed": 3, "failed": 0, "errors": 0}


def test_an_engine_fault_makes_a_case_an_error_never_a_pass(tmp_path, monkeypatch):
    from policy_engine.matchers.python import PythonMatcher

    def broken(self, prepared):
        raise RuntimeError("injected matcher fault")

    monkeypatch.setattr(PythonMatcher, "match", broken)
    report = run_tests(write(tmp_path, PASSING), matcher="python")
    assert not report.ok and [c.status for c in report.cases] == ["error"] * 3
    assert report.cases[0].failures == ("engine could not decide: RuntimeError: injected matcher fault",)


def test_failing_case_reports_expected_vs_got_and_the_trail(tmp_path):
    pack = write(tmp_path, FAILING)
    report = run_tests(pack)
    (case,) = report.cases
    assert not report.ok and case.status == "failed"
    assert case.failures == (
        "decision: expected allow, got deny",
        "rules: expected [NIGHT], got [GAMBLE] (missing NIGHT; unexpected GAMBLE)",
        "reason_contains: no fired rule's reason contains 'casino'",
        "reports: expected [CTR], got []")
    assert case.trail == ("GAMBLE [deny] No gambling (gambling).",)
    line, col = at((tmp_path / "tests" / "cases.yaml").read_text(), "- name: wrong", 2)
    assert (case.file, case.line, case.col) == (str(tmp_path / "tests" / "cases.yaml"), line, col)

    out = io.StringIO()
    assert main(["test", str(pack)], out=out, err=io.StringIO()) == 1
    text = out.getvalue()
    assert f"FAILED {case.location} wrong expectation" in text
    assert "decision: expected allow, got deny" in text and "GAMBLE [deny] No gambling (gambling)." in text
    assert "0 passed, 1 failed" in text


def test_failing_case_in_json_and_junit(tmp_path):
    pack = write(tmp_path, PASSING + FAILING)
    out, junit = io.StringIO(), tmp_path / "out.xml"
    assert main(["test", "--json", "--junit", str(junit), str(pack)], out=out, err=io.StringIO()) == 1
    report = json.loads(out.getvalue())
    assert report["ok"] is False and report["summary"] == {"cases": 4, "passed": 3, "failed": 1, "errors": 0}
    assert report["cases"][3]["failures"][0] == "decision: expected allow, got deny"
    suite = ET.parse(junit).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("4", "1")
    failures = [(tc.get("name"), f) for tc in suite.iter("testcase") for f in tc.iter("failure")]
    assert len(failures) == 1 and failures[0][0] == "wrong expectation"
    assert failures[0][1].get("message") == "decision: expected allow, got deny"
    assert "trail: GAMBLE [deny]" in failures[0][1].text


def test_invalid_request_is_an_error_case(tmp_path):
    report = run_tests(write(tmp_path, """\
        - name: negative amount
          base: purchase
          set: {amount.value: -5}
          expect: {decision: allow}
        """))
    (case,) = report.cases
    assert case.status == "error" and case.decision is None
    assert any(f.startswith("invalid request: $.amount.value") for f in case.failures)
    (error,) = ET.fromstring(to_junit(report)).iter("error")
    assert error.get("message").startswith("invalid request: $.amount.value")


def test_request_id_defaults_to_the_case_name_and_inline_requests_work(tmp_path):
    report = run_tests(write(tmp_path, """\
        - name: inline
          request:
            timestamp: "2025-06-10T14:30:00+08:00"
            payer: {id: u-1}
            funding_source: {type: debit_card}
            purpose: gambling
            merchant: {mcc: "7995", country: CN}
            amount: {value: 1, currency: CNY}
          expect: {rules: [GAMBLE]}
        """))
    assert report.ok and report.cases[0].fired == ("GAMBLE",)


# ---------------------------------------------------------------------------------------------------------------
# Coverage.

COVERAGE_CASES = """\
- name: gambling
  base: purchase
  set: {purpose: gambling}
  expect: {rules: [GAMBLE]}
- name: Iran before EMBARGO was in force (the leaf would be true; it does not count)
  base: purchase
  set: {merchant.country: IR, timestamp: "2023-06-01T12:00:00+08:00"}
  expect: {rules: []}
- name: Syria after its list item ended
  base: purchase
  set: {merchant.country: SY, timestamp: "2025-07-01T12:00:00+08:00"}
  expect: {rules: []}
"""


def test_rule_and_condition_coverage(tmp_path):
    coverage = run_tests(write(tmp_path, COVERAGE_CASES)).coverage
    by_id = {r.rule_id: r for r in coverage.rules}
    assert coverage.never_fired == ("NIGHT", "EMBARGO", "CASH") and coverage.rule_percent == 25.0
    assert (by_id["GAMBLE"].fired, by_id["GAMBLE"].leaves[0].seen_true, by_id["GAMBLE"].leaves[0].seen_false) == (
        1, 1, 2)
    # EMBARGO is in force for two cases only; in the third, Iran would match but the rule did not exist.
    (embargo,) = by_id["EMBARGO"].leaves
    assert (by_id["EMBARGO"].in_force, embargo.seen_true, embargo.seen_false) == (2, 0, 2)
    assert not embargo.covered and embargo.condition == "merchant.country in list embargo"
    # A leaf written as the value of `when:` is positioned at that key.
    line, col = at((tmp_path / "pack.yaml").read_text(), "when: {field: merchant.country")
    assert embargo.at == f"{tmp_path / 'pack.yaml'}:{line}:{col}"
    assert coverage.leaf_counts == (1, 5) and coverage.condition_percent == 20.0
    assert coverage.date_edges == (1, 1)


@pytest.mark.parametrize(("minimum", "status"), [("25", 0), ("25.1", 1)])
def test_min_coverage(tmp_path, minimum, status):
    out = io.StringIO()
    assert main(["test", "--min-coverage", minimum, str(write(tmp_path, COVERAGE_CASES))], out=out,
                err=io.StringIO()) == status
    assert ("below --min-coverage" in out.getvalue()) == bool(status)


def test_verbose_lists_uncovered_leaves(tmp_path):
    out = io.StringIO()
    main(["test", "-v", str(write(tmp_path, COVERAGE_CASES))], out=out, err=io.StringIO())
    assert "EMBARGO `merchant.country in list embargo` never true" in out.getvalue()
    assert "PASS  " in out.getvalue()


# ---------------------------------------------------------------------------------------------------------------
# Mistakes in test files: each refused once, at its position, before any case runs.

MISTAKES = [
    ("- name: a\n  base: purchase\n  expct: {decision: deny}\n", "expct:", ["unknown key 'expct'"]),
    ("- name: a\n  base: purchas\n  expect: {decision: deny}\n", "base: purchas",
     ["unknown base 'purchas'", "did you mean 'purchase'"]),
    ("- name: a\n  base: purchase\n  expect: {rules: [GAMBEL]}\n", "GAMBEL", ["unknown rule id 'GAMBEL'",
                                                                          "did you mean 'GAMBLE'"]),
    ("- name: a\n  base: purchase\n  set: {merchant.countyr: IR}\n  expect: {decision: deny}\n", "merchant.countyr",
     ["unknown request field 'merchant.countyr'", "did you mean 'merchant.country'"]),
    ("- name: a\n  base: purchase\n  unset: [merchant.region]\n  expect: {decision: deny}\n", "merchant.region",
     ["cannot unset merchant.region", "base request does not have it"]),
    ("- name: a\n  base: purchase\n  expect: {decision: allow}\n- name: a  # again\n  base: purchase\n"
     "  expect: {decision: deny}\n", "name: a  # again", ["duplicate case name 'a'"]),
    ("- name: a\n  base: purchase\n  request: {}\n  expect: {decision: deny}\n", "name: a", ["not both"]),
    ("- name: a\n  expect: {decision: deny}\n", "name: a", ["needs `request:`"]),
    ("- name: a\n  base: purchase\n  expect: {rules: [GAMBLE], includes: [NIGHT]}\n", "includes",
     ["`rules:` is already the exact set"]),
    ("- name: a\n  base: purchase\n  expect: {decision: refuse}\n", "decision: refuse", ["'refuse' is not one of"]),
]


@pytest.mark.parametrize(("cases", "needle", "fragments"), MISTAKES, ids=[m[2][0][:30] for m in MISTAKES])
def test_each_test_file_mistake_is_reported_at_its_position(tmp_path, cases, needle, fragments):
    pack = write(tmp_path, cases)
    with pytest.raises(RuleTestError) as info:
        run_tests(pack)
    (issue,) = info.value.issues
    path = tmp_path / "tests" / "cases.yaml"
    text = path.read_text()
    line, col = at(text, needle)
    assert (issue.file, issue.line, issue.col) == (str(path), line, col), str(issue)
    for fragment in fragments:
        assert fragment in issue.message, str(issue)


def test_bad_test_file_exits_2_and_runs_nothing(tmp_path):
    pack = write(tmp_path, MISTAKES[1][0])
    out, err = io.StringIO(), io.StringIO()
    assert main(["test", str(pack)], out=out, err=err) == 2
    assert "unknown base 'purchas'" in err.getvalue() and "no case was run" in err.getvalue()
    assert out.getvalue() == ""


def test_unknown_field_in_a_base_is_refused(tmp_path):
    pack = write(tmp_path, PASSING, bases=BASES.replace("purpose: merchant_purchase", "purpos: merchant_purchase"))
    with pytest.raises(RuleTestError) as info:
        run_tests(pack)
    assert [i.message for i in info.value.issues] == [
        "unknown request field 'purpos': the request schema does not define it; did you mean 'purpose'?"]


def test_no_test_files(tmp_path):
    pack = tmp_path / "pack.yaml"
    pack.write_text(PACK_HEADER + LISTS + PACK_RULES, encoding="utf-8")
    with pytest.raises(RuleTestError, match="no rule test cases here"):
        run_tests(pack)


def test_lazy_exports():
    from policy_engine.testing import runner

    assert testing.run_tests is runner.run_tests and testing.TestReport is TestReport
    with pytest.raises(AttributeError, match="no_such_thing"):
        testing.no_such_thing  # noqa: B018
