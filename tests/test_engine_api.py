"""Library API behaviour: batches, fail-closed evaluation, decision order, the decision contract."""

from __future__ import annotations

import io
import json

import jsonschema
import pytest
from conftest import DURABLE_OK, MATCHERS, PACK_HEADER, base_request

from policy_engine import (
    EvaluationError,
    MatcherUnavailableError,
    Outcome,
    PolicyEngine,
    RequestError,
    RuleSetError,
    load_ruleset,
)
from policy_engine.cli import main
from policy_engine.resources import load_schema

TWO_RULES = """\
- id: A-1
  category: risk
  title: big
  when: {field: amount.value, op: gte, value: 1000}
  outcome: deny
  reason: "amount {amount.value} {amount.currency} is 1,000 or more"
  source: test
  verified: false
- id: A-2
  category: risk
  title: review everything over 10
  when: {field: derived.amount_cny, op: gt, value: 10}
  outcome: review
  reason: "over 10"
  source: test
  verified: false
- id: A-3
  category: compliance
  title: report
  when: {field: derived.amount_cny, op: gte, value: 500}
  outcome: allow
  report: LVTR
  reason: "report {payer.id}"
  source: test
  verified: true
"""


@pytest.mark.parametrize("matcher", MATCHERS)
def test_decision_combines_most_severe_and_reports_do_not_change_it(make_pack, matcher):
    engine = PolicyEngine(load_ruleset(make_pack(TWO_RULES)), matcher=matcher)
    d = engine.evaluate(base_request(amount__value=600))
    assert d.decision is Outcome.REVIEW and d.rule_ids == ("A-2", "A-3")
    assert d.obligations == ({"rule_id": "A-3", "report": "LVTR"},)
    assert d.trail[1].reason == "report u-1"
    d = engine.evaluate(base_request(amount__value=1000))
    assert d.decision is Outcome.DENY and d.rule_ids == ("A-1", "A-2", "A-3")
    assert d.trail[0].reason == "amount 1,000 CNY is 1,000 or more"
    assert d.trail[0].evidence == {"amount.value": 1000}
    d = engine.evaluate(base_request(amount__value=5))
    assert d.decision is Outcome.ALLOW and d.trail == () and d.allowed


def test_pack_decision_order_is_respected(make_pack):
    header = PACK_HEADER + "decision_order: [review, deny, step_up, allow]\n"
    engine = PolicyEngine(load_ruleset(make_pack(TWO_RULES, header=header)))
    assert engine.evaluate(base_request(amount__value=1000)).decision is Outcome.REVIEW


def test_allow_must_rank_last(make_pack):
    header = PACK_HEADER + "decision_order: [deny, allow, review, step_up]\n"
    with pytest.raises(RuleSetError, match="allow` must be last"):
        load_ruleset(make_pack(TWO_RULES, header=header))


def test_reason_renders_missing_fields_visibly(make_pack):
    rules = TWO_RULES.replace('"over 10"', '"product {funding_source.product}"')
    d = PolicyEngine(load_ruleset(make_pack(rules))).evaluate(base_request(amount__value=20))
    assert d.trail[0].reason == "product <missing funding_source.product>"


def test_evaluate_many_keeps_going_past_bad_requests(make_pack):
    engine = PolicyEngine(load_ruleset(make_pack(TWO_RULES)))
    batch = [base_request(amount__value=5), {"request_id": "bad"}, "not a dict", base_request(amount__value=1000)]
    results = list(engine.evaluate_many(batch))
    assert [type(r).__name__ for r in results] == ["Decision", "RequestError", "RequestError", "Decision"]
    assert results[1].request_id == "bad" and results[3].decision is Outcome.DENY


@pytest.mark.parametrize("matcher", MATCHERS)
def test_matcher_failure_fails_closed(make_pack, matcher, monkeypatch):
    engine = PolicyEngine(load_ruleset(make_pack(TWO_RULES)), matcher=matcher)

    def broken(facts):
        raise RuntimeError("injected matcher fault")

    monkeypatch.setattr(engine.pack.matcher, "match", broken)
    with pytest.raises(EvaluationError, match="injected matcher fault") as info:
        engine.evaluate(base_request(amount__value=5))
    assert info.value.request_id == "t-1"
    results = list(engine.evaluate_many([base_request()]))
    assert isinstance(results[0], EvaluationError)
    # and the text path, which writes the decision without making it when nothing else takes it
    with pytest.raises(EvaluationError, match="injected matcher fault") as info:
        engine.evaluate_json(json.dumps(base_request(amount__value=5)))
    assert info.value.request_id == "t-1"


def test_cli_reports_engine_failure_with_exit_3_and_no_decision(make_pack, tmp_path, monkeypatch):
    from policy_engine.matchers.python import PythonMatcher

    def broken(self, facts):
        raise RuntimeError("injected")

    monkeypatch.setattr(PythonMatcher, "match", broken)
    req = tmp_path / "r.json"
    req.write_text(json.dumps(base_request()), encoding="utf-8")
    out = io.StringIO()
    code = main(["evaluate", "--json", "--rules", str(make_pack(TWO_RULES)), str(req)], out=out, err=io.StringIO())
    assert code == 3
    record = json.loads(out.getvalue())
    assert record["error"] == "evaluation_failed" and "decision" not in record


@pytest.mark.parametrize("matcher", MATCHERS)
def test_decision_json_matches_schema(make_pack, matcher, cases):
    validator = jsonschema.Draft202012Validator(load_schema("decision"))
    fixture = PolicyEngine(load_ruleset(make_pack(TWO_RULES)), matcher=matcher)
    bundled = PolicyEngine.from_path(None, matcher=matcher)
    for case in cases:
        # the fixture pack reads no history counter, so its callers send none (it would refuse them)
        plain = {k: v for k, v in case["request"].items() if k != "history"}
        for engine, request in ((fixture, plain), (bundled, case["request"])):
            data = json.loads(json.dumps(engine.evaluate(request).to_dict()))
            validator.validate(data)
            assert data["engine"]["matcher"] == matcher


def test_invalid_request_is_not_a_decision(make_pack):
    engine = PolicyEngine(load_ruleset(make_pack(TWO_RULES)))
    with pytest.raises(RequestError) as info:
        engine.evaluate(base_request(amount__value=-1, channel="teleport"))
    paths = {v.path for v in info.value.violations}
    assert paths == {"$.amount.value", "$.channel"}


@pytest.mark.skipif(DURABLE_OK, reason="only where durable-rules cannot import (Python 3.13)")
def test_without_durable_the_engine_runs_python_and_says_so():
    engine = PolicyEngine.from_path(None)
    d = engine.evaluate(base_request())
    assert d.engine["matcher"] == "python" and "durable-rules" in d.engine["note"]
    with pytest.raises(MatcherUnavailableError):
        PolicyEngine.from_path(None, matcher="durable")
