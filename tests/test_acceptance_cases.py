"""The 40 acceptance examples of the specification (tests/data/cases.jsonl), via the library and the CLI."""

from __future__ import annotations

import io
import json

import pytest
from conftest import MATCHERS, RULES, load_cases

from policy_engine import PolicyEngine
from policy_engine.cli import main

CASES = load_cases()

# The revised spec (2026-12) expects AC-34 (required fields only) to be `review`: KYC level unknown. That needs
# three-valued evaluation of missing data, issue 13; until it lands the case is a strict expected failure, so the
# day it passes the marker must go.
AWAITING_THREE_VALUED = {"AC-34"}
_XFAIL_13 = pytest.mark.xfail(strict=True, reason="issue 13: missing data is unknown (DOMAIN 5.1 point 6)")


def _params(cases):
    return [pytest.param(c, id=c["id"], marks=[_XFAIL_13] if c["id"] in AWAITING_THREE_VALUED else []) for c in cases]


@pytest.mark.parametrize("case", _params(CASES))
def test_case_through_library(bundled_engine, case):
    engine = bundled_engine
    decision = engine.evaluate(case["request"])
    expected = case["expected"]
    assert decision.decision.value == expected["decision"]
    assert set(decision.rule_ids) == set(expected["rules"])
    assert decision.allowed == (expected["decision"] == "allow")
    reports = {o["report"] for o in decision.obligations}
    assert reports == set(expected.get("reports") or [])
    text = " ".join(e.reason for e in decision.trail).lower()
    for fragment in expected.get("reason_contains") or []:
        assert fragment.lower() in text


def test_bundled_pack_is_the_repository_pack():
    engine = PolicyEngine.from_path(None)
    assert engine.ruleset.digest == PolicyEngine.from_path(RULES).ruleset.digest


def _stream(tmp_path, matcher) -> list[dict]:
    stream = tmp_path / "cases.jsonl"
    stream.write_text("\n".join(json.dumps(c["request"], default=str) for c in CASES) + "\n", encoding="utf-8")
    out = io.StringIO()
    assert main(["evaluate", "--json", "--matcher", matcher, str(stream)], out=out, err=io.StringIO()) == 0
    decisions = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(decisions) == len(CASES)
    return decisions


@pytest.mark.parametrize("matcher", MATCHERS)
def test_all_cases_through_cli_stream(tmp_path, matcher):
    for case, got in zip(CASES, _stream(tmp_path, matcher), strict=True):
        assert got["request_id"] == case["id"]
        if case["id"] in AWAITING_THREE_VALUED:
            continue  # held to its expectation by the strict xfail below
        assert got["decision"] == case["expected"]["decision"], case["id"]
        assert {t["rule_id"] for t in got["trail"]} == set(case["expected"]["rules"]), case["id"]


@_XFAIL_13
@pytest.mark.parametrize("matcher", MATCHERS)
def test_awaiting_cases_through_cli_stream(tmp_path, matcher):
    for case, got in zip(CASES, _stream(tmp_path, matcher), strict=True):
        if case["id"] in AWAITING_THREE_VALUED:
            assert got["decision"] == case["expected"]["decision"], case["id"]


def test_trail_is_in_pack_order_and_decision_is_most_severe():
    engine = PolicyEngine.from_path(None)
    order = [r.id for r in engine.ruleset.rules]
    for case in CASES:
        d = engine.evaluate(case["request"])
        ids = list(d.rule_ids)
        assert ids == sorted(ids, key=order.index)
        severities = [e.outcome for e in d.trail]
        if severities:
            rank = engine.ruleset.decision_order.index
            assert d.decision.value == min(severities, key=rank)
