"""Aggregates declared in a pack (``aggregates:``): loading, load errors at file:line:col, and lint (W160 an
aggregate no rule reads, W161 a rule reading a counter no aggregate defines)."""

from __future__ import annotations

import pytest
from conftest import PACK_HEADER

from policy_engine import RuleSetError, load_ruleset
from policy_engine.lint import lint

QR_RULE = """\
rules:
  - id: QR-1
    category: compliance
    title: Static QR cap
    when:
      all:
        - {field: channel, op: eq, value: qr_static}
        - {field: {add: [history.qr_static_daily_used_cny, derived.amount_cny]}, op: gt, value: 500}
    outcome: deny
    reason: Over the daily static QR cap.
    source: test
    verified: false
"""

QR_AGGREGATE = """\
aggregates:
  history.qr_static_daily_used_cny:
    sum: derived.amount_cny
    where: {field: channel, op: eq, value: qr_static}
    by: payer.id
    window: {calendar: day, timezone: jurisdiction}
    counts: allowed
"""


def write(tmp_path, text: str):
    path = tmp_path / "pack.yaml"
    path.write_text(PACK_HEADER + text, encoding="utf-8")
    return path


def position(text: str, needle: str) -> tuple[int, int]:
    full = PACK_HEADER + text
    index = full.index(needle)
    return full.count("\n", 0, index) + 1, index - (full.rfind("\n", 0, index) + 1) + 1


def test_the_default_pack_defines_every_counter_its_rules_read():
    ruleset = load_ruleset()
    qr = ruleset.aggregates["history.qr_static_daily_used_cny"]
    assert (qr.function, qr.of, qr.by, qr.counts) == ("sum", "derived.amount_cny", "payer.id", "allowed")
    assert (qr.window.kind, qr.window.unit, qr.window.timezone) == ("calendar", "day", "jurisdiction")
    assert ruleset.aggregates["history.payer_txn_count_1h"].window.seconds == 3600
    assert ruleset.aggregates["history.sca_exempt_count_since_sca"].window.kind == "since"
    assert not [f for f in lint(ruleset) if f.code in ("W160", "W161")]


@pytest.mark.parametrize(("aggregate", "needle", "fragment"), [
    ("    sum: channel\n    by: payer.id\n    window: lifetime\n    counts: allowed\n",
     "sum: channel", "not a number"),
    ("    count: true\n    by: payer.idd\n    window: lifetime\n    counts: allowed\n",
     "by: payer.idd", "unknown field 'payer.idd'"),
    ("    count: true\n    by: payer.id\n    window: {calendar: day, timezone: Mars/Olympus}\n    counts: attempts\n",
     "timezone: Mars", "Mars/Olympus"),
    ("    count: true\n    by: payer.id\n    window: {calendar: day, timezone: localtime}\n    counts: attempts\n",
     "timezone: localtime", "civil time"),
    ("    count: true\n    by: payer.id\n    window: {last: 1w}\n    counts: attempts\n",
     "{last: 1w}", "window"),
    ("    count: true\n    by: payer.id\n    window: lifetime\n    counts: everything\n",
     "counts: everything", "attempts"),
    ("    count: true\n    where: {field: chanel, op: eq, value: qr_static}\n    by: payer.id\n    window: lifetime\n"
     "    counts: allowed\n", "field: chanel", "unknown field 'chanel'"),
])
def test_a_bad_aggregate_is_a_load_error_at_its_position(tmp_path, aggregate, needle, fragment):
    text = "aggregates:\n  history.payer_txn_count_1h:\n" + aggregate
    with pytest.raises(RuleSetError) as info:
        load_ruleset(write(tmp_path, text))
    (issue,) = info.value.issues
    assert issue.line == position(text, needle)[0]
    assert fragment in issue.message
    assert str(issue).startswith(f"{tmp_path / 'pack.yaml'}:{issue.line}:{issue.col}")


def test_an_aggregate_must_define_a_history_field(tmp_path):
    text = QR_AGGREGATE.replace("history.qr_static_daily_used_cny", "history.qr_static_daily_used")
    with pytest.raises(RuleSetError, match=r"history\.qr_static_daily_used\b"):
        load_ruleset(write(tmp_path, text))


def test_lint_flags_an_unread_aggregate_and_an_undefined_counter(tmp_path):
    unread = QR_AGGREGATE.replace("history.qr_static_daily_used_cny", "history.cash_today_cny")
    ruleset = load_ruleset(write(tmp_path, unread + QR_RULE))
    codes = {f.code: f for f in lint(ruleset)}
    assert codes["W160"].line == position(unread + QR_RULE, "history.cash_today_cny")[0]
    assert "history.cash_today_cny" in codes["W160"].message
    assert codes["W161"].rule_id == "QR-1" and "history.qr_static_daily_used_cny" in codes["W161"].message
    clean = load_ruleset(write(tmp_path, QR_AGGREGATE + QR_RULE))
    assert not [f for f in lint(clean) if f.code in ("W160", "W161")]


def test_a_pack_without_aggregates_is_not_held_to_define_its_counters(tmp_path):
    ruleset = load_ruleset(write(tmp_path, QR_RULE))
    assert ruleset.aggregates == {}
    assert not [f for f in lint(ruleset) if f.code == "W161"]
