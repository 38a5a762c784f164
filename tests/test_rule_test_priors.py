"""Rule tests with prior payments (issue 14): a case's `prior:` payments are replayed into a fresh state store and
the case is decided with the counters the pack's aggregates compute from them; mistakes are refused at their
file:line:col before anything runs."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pytest
from conftest import PACK_HEADER
from test_loader_errors import at, rule

from policy_engine.cli import main
from policy_engine.testing import RuleTestError, run_tests

# Velocity on a sliding hour: two attempts in (t - 1h, t] are held for review.
PACK = PACK_HEADER + """\
aggregates:
  history.payer_txn_count_1h:
    count: true
    by: payer.id
    window: {last: 1h}
    counts: attempts
  history.qr_static_daily_used_cny:
    sum: derived.amount_cny
    where: {field: channel, op: eq, value: qr_static}
    by: payer.id
    window: {calendar: day, timezone: jurisdiction}
    counts: allowed
rules:
""" + rule("VELOCITY", "{field: history.payer_txn_count_1h, op: gte, value: 2}") + rule(
    "QR-CAP", "\n      all:\n        - {field: channel, op: eq, value: qr_static}\n"
              "        - {field: {add: [history.qr_static_daily_used_cny, derived.amount_cny]}, op: gt, value: 500}",
    outcome="deny")

BASES = """\
bases:
  qr:
    timestamp: "2025-06-10T14:30:00+08:00"
    psp_country: CN
    payer: {id: u-1}
    funding_source: {type: debit_card}
    purpose: merchant_purchase
    merchant: {mcc: "5411", country: CN}
    channel: qr_static
    amount: {value: 100, currency: CNY}
  qr_with_history:
    timestamp: "2025-06-10T14:30:00+08:00"
    payer: {id: u-1}
    funding_source: {type: debit_card}
    purpose: merchant_purchase
    merchant: {mcc: "5411", country: CN}
    amount: {value: 100, currency: CNY}
    history: {payer_txn_count_1h: 0}
"""


def write(tmp_path: Path, cases: str) -> Path:
    pack = tmp_path / "pack.yaml"
    pack.write_text(PACK, encoding="utf-8")
    tests = tmp_path / "tests"
    tests.mkdir(exist_ok=True)
    (tests / "cases.yaml").write_text(BASES + "cases:\n" + textwrap.indent(textwrap.dedent(cases), "  "),
                                      encoding="utf-8")
    return pack


def statuses(report) -> list[tuple[str, str]]:
    return [(c.name, c.status) for c in report.cases]


WINDOWS = """\
- name: one attempt in the hour
  base: qr
  prior: [{set: {timestamp: "2025-06-10T13:30:00+08:00"}}]
  expect: {decision: allow, rules: []}
- name: two attempts in the hour, a denied one counts as an attempt
  base: qr
  prior:
    - {set: {timestamp: "2025-06-10T13:40:00+08:00", amount.value: 900}, decision: deny}
    - {set: {timestamp: "2025-06-10T14:00:00+08:00"}, decision: allow}
  expect: {decision: review, rules: [VELOCITY]}
- name: an attempt exactly an hour before is outside (t - 1h, t]
  base: qr
  prior:
    - {set: {timestamp: "2025-06-10T13:30:00+08:00"}}
    - {set: {timestamp: "2025-06-10T14:29:59+08:00"}}
  expect: {decision: allow, rules: []}
- name: each case starts from an empty store (the previous cases' payments are not in it)
  base: qr
  prior: [{set: {timestamp: "2025-06-10T14:00:00+08:00"}}]
  expect: {decision: allow, rules: []}
- name: a failed prior stops counting against the cap but still counts as an attempt
  base: qr
  set: {amount.value: 400}
  prior:
    - {set: {amount.value: 400, timestamp: "2025-06-10T14:00:00+08:00"}, status: failed}
    - {set: {amount.value: 100, timestamp: "2025-06-10T14:10:00+08:00", payer.id: u-2}}
  expect: {decision: allow, rules: []}
- name: an inline request with priors
  request: {timestamp: "2025-06-10T14:30:00+08:00", payer: {id: u-3}, funding_source: {type: debit_card},
            purpose: merchant_purchase, merchant: {mcc: "5411", country: CN}, channel: qr_static,
            amount: {value: 300, currency: CNY}}
  prior: [{set: {timestamp: "2025-06-10T08:00:00+08:00"}}]
  expect: {decision: deny, rules: [QR-CAP]}
"""


def test_prior_payments_make_the_counters_a_case_is_decided_with(tmp_path):
    report = run_tests(write(tmp_path, WINDOWS))
    assert [c.status for c in report.cases] == ["passed"] * 6, [c.failures for c in report.cases]
    velocity = next(r for r in report.coverage.rules if r.rule_id == "VELOCITY")
    assert velocity.fired == 1 and velocity.leaves[0].covered  # coverage sees the replayed counters


def test_a_case_whose_counters_differ_fails_and_shows_them(tmp_path):
    cases = """\
    - name: expects the wrong thing
      base: qr
      prior:
        - {set: {amount.value: 450, timestamp: "2025-06-10T09:00:00+08:00"}}
      expect: {decision: allow}
    """
    (case,) = run_tests(write(tmp_path, cases)).cases
    assert case.status == "failed" and case.fired == ("QR-CAP",)
    assert case.failures == ("decision: expected allow, got deny",
                             "counters from the prior payments: history.qr_static_daily_used_cny 450")


def test_a_prior_with_another_decision_than_stated_fails_the_case(tmp_path):
    cases = """\
    - name: the prior was not denied
      base: qr
      prior:
        - {set: {timestamp: "2025-06-10T09:00:00+08:00"}, decision: deny}
      expect: {decision: allow}
    """
    pack = write(tmp_path, cases)
    (case,) = run_tests(pack).cases
    line = at((tmp_path / "tests" / "cases.yaml").read_text(), "- {set:")[0]
    assert case.status == "failed"
    assert case.failures[0] == f"prior 1 (line {line}): expected deny, got allow (no rule fired)"
    out = io.StringIO()
    assert main(["test", str(pack)], out=out, err=io.StringIO()) == 1
    assert f"prior 1 (line {line}): expected deny" in out.getvalue()


def test_an_invalid_prior_request_makes_the_case_an_error_naming_it(tmp_path):
    cases = """\
    - name: the prior pays a negative amount
      base: qr
      prior:
        - {set: {timestamp: "2025-06-10T09:00:00+08:00"}}
        - {set: {amount.value: -5}}
      expect: {decision: allow}
    """
    (case,) = run_tests(write(tmp_path, cases)).cases
    line = at((tmp_path / "tests" / "cases.yaml").read_text(), "- {set: {amount.value: -5}}")[0]
    assert case.status == "error"
    assert case.failures and all(f.startswith(f"invalid request: prior 2 (line {line}) $.amount.value")
                                 for f in case.failures), case.failures


MISTAKES = [
    ("- name: a\n  base: qr\n  prior: [{set: {amount.vaule: 1}}]\n  expect: {decision: allow}\n", "amount.vaule",
     ["unknown request field 'amount.vaule'", "did you mean 'amount.value'"]),
    ("- name: a\n  base: qr\n  prior: [{unset: [ip_country]}]\n  expect: {decision: allow}\n", "ip_country",
     ["cannot unset ip_country"]),
    ("- name: a\n  base: qr\n  prior: [{status: refunded}]\n  expect: {decision: allow}\n", "status: refunded",
     ["'refunded' is not one of ['completed', 'failed', 'reversed']"]),
    ("- name: a\n  base: qr\n  prior: [{stauts: failed}]\n  expect: {decision: allow}\n", "stauts",
     ["unknown key 'stauts'"]),
    ("- name: a\n  base: qr\n  prior: []\n  expect: {decision: allow}\n", "prior: []", ["should be non-empty"]),
    ("- name: a\n  base: qr_with_history\n  prior: [{set: {timestamp: \"2025-06-10T09:00:00+08:00\"}}]\n"
     "  expect: {decision: allow}\n", "prior:", ["neither its base (or request) nor its `set:` may carry `history`"]),
    ("- name: a\n  base: qr\n  set: {history.payer_txn_count_1h: 3}\n  prior: [{set: {amount.value: 1}}]\n"
     "  expect: {decision: allow}\n", "prior:", ["may carry `history`"]),
    ("- name: a\n  base: qr\n  prior: [{set: {history.payer_txn_count_1h: 3}}]\n  expect: {decision: allow}\n",
     "set: {history", ["a prior payment may not carry `history`"]),
    ("- name: a\n  base: qr\n  prior: [{set: {request_id: x}}]\n  expect: {decision: allow}\n", "request_id",
     ["a prior payment's request_id is the case's followed by /prior-N"]),
]


@pytest.mark.parametrize(("cases", "needle", "fragments"), MISTAKES, ids=[m[2][0][:40] for m in MISTAKES])
def test_each_prior_mistake_is_reported_at_its_position(tmp_path, cases, needle, fragments):
    pack = write(tmp_path, cases)
    with pytest.raises(RuleTestError) as info:
        run_tests(pack)
    (issue,) = info.value.issues
    path = tmp_path / "tests" / "cases.yaml"
    line, col = at(path.read_text(), needle)
    assert (issue.file, issue.line, issue.col) == (str(path), line, col), str(issue)
    for fragment in fragments:
        assert fragment in issue.message, str(issue)
