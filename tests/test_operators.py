"""Every operator, its missing-field behaviour and `not`, on both matchers and the reference evaluator."""

from __future__ import annotations

import pytest
from conftest import DELETE, MATCHERS, base_request

from policy_engine import PolicyEngine, load_ruleset
from policy_engine.conditions import evaluate

LISTS = """\
risky: [KP, IR]
small_numbers: [1, 2, 3]
"""

# (condition, request overrides, fires?)
CASES = [
    # eq / ne on strings, numbers, booleans; missing is false for both
    ("{field: channel, op: eq, value: pos}", {"channel": "pos"}, True),
    ("{field: channel, op: eq, value: pos}", {"channel": "online"}, False),
    ("{field: channel, op: eq, value: pos}", {}, False),
    ("{field: channel, op: ne, value: pos}", {"channel": "online"}, True),
    ("{field: channel, op: ne, value: pos}", {"channel": "pos"}, False),
    ("{field: channel, op: ne, value: pos}", {}, False),
    ("{field: payer.age, op: eq, value: 18}", {"payer__age": 18}, True),
    ("{field: payer.age, op: ne, value: 18}", {"payer__age": 17}, True),
    ("{field: payer.sanctions_hit, op: eq, value: true}", {"payer__sanctions_hit": True}, True),
    ("{field: payer.sanctions_hit, op: eq, value: true}", {"payer__sanctions_hit": False}, False),
    ("{field: payer.sanctions_hit, op: ne, value: true}", {"payer__sanctions_hit": False}, True),
    # ordering, both sides of each edge
    ("{field: risk_score, op: gt, value: 65}", {"risk_score": 66}, True),
    ("{field: risk_score, op: gt, value: 65}", {"risk_score": 65}, False),
    ("{field: risk_score, op: gte, value: 65}", {"risk_score": 65}, True),
    ("{field: risk_score, op: gte, value: 65}", {"risk_score": 64}, False),
    ("{field: risk_score, op: lt, value: 65}", {"risk_score": 64}, True),
    ("{field: risk_score, op: lt, value: 65}", {"risk_score": 65}, False),
    ("{field: risk_score, op: lte, value: 65}", {"risk_score": 65}, True),
    ("{field: risk_score, op: lte, value: 65}", {"risk_score": 66}, False),
    ("{field: risk_score, op: lt, value: 65}", {}, False),
    ("{field: risk_score, op: gte, value: 0}", {}, False),
    # in / not_in with literal lists and named lists; missing is false for both
    ("{field: ip_country, op: in, list: risky}", {"ip_country": "KP"}, True),
    ("{field: ip_country, op: in, list: risky}", {"ip_country": "CN"}, False),
    ("{field: ip_country, op: in, list: risky}", {}, False),
    ("{field: ip_country, op: not_in, list: risky}", {"ip_country": "CN"}, True),
    ("{field: ip_country, op: not_in, list: risky}", {"ip_country": "IR"}, False),
    ("{field: ip_country, op: not_in, list: risky}", {}, False),
    ("{field: channel, op: in, value: [pos, atm]}", {"channel": "atm"}, True),
    ("{field: payer.age, op: in, list: small_numbers}", {"payer__age": 2}, True),
    ("{field: payer.age, op: not_in, list: small_numbers}", {"payer__age": 4}, True),
    # between is half-open [lo, hi)
    ("{field: amount.value, op: between, value: [100, 200]}", {"amount__value": 100}, True),
    ("{field: amount.value, op: between, value: [100, 200]}", {"amount__value": "199.99"}, True),
    ("{field: amount.value, op: between, value: [100, 200]}", {"amount__value": 200}, False),
    ("{field: amount.value, op: between, value: [100, 200]}", {"amount__value": "99.99"}, False),
    ("{field: risk_score, op: between, value: [10, 20]}", {}, False),
    # exists / missing; JSON null counts as missing
    ("{field: risk_score, op: exists}", {"risk_score": 0}, True),
    ("{field: risk_score, op: exists}", {}, False),
    ("{field: risk_score, op: missing}", {}, True),
    ("{field: risk_score, op: missing}", {"risk_score": 3}, False),
    ("{field: merchant.mcc, op: missing}", {"purpose": "cash_withdrawal", "merchant": {"id": "m"}}, True),
    ("{field: ip_country, op: missing}", {"ip_country": None}, True),
    ("{field: ip_country, op: eq, value: CN}", {"ip_country": None}, False),
    # ref: field-to-field; a missing side is false for every operator
    ("{field: funding_source.issuer_country, op: ne, ref: ip_country}",
     {"funding_source__issuer_country": "US", "ip_country": "CN"}, True),
    ("{field: funding_source.issuer_country, op: ne, ref: ip_country}",
     {"funding_source__issuer_country": "CN", "ip_country": "CN"}, False),
    ("{field: funding_source.issuer_country, op: ne, ref: ip_country}", {"funding_source__issuer_country": "US"},
     False),
    ("{field: funding_source.issuer_country, op: eq, ref: ip_country}",
     {"funding_source__issuer_country": "CN", "ip_country": "CN"}, True),
    ("{field: derived.amount_cny, op: gt, ref: funding_source.available_credit_cny}",
     {"funding_source__available_credit_cny": 99.99}, True),
    ("{field: derived.amount_cny, op: gt, ref: funding_source.available_credit_cny}",
     {"funding_source__available_credit_cny": 100}, False),
    ("{field: derived.amount_cny, op: gte, ref: funding_source.available_credit_cny}",
     {"funding_source__available_credit_cny": 100}, True),
    ("{field: derived.amount_cny, op: gt, ref: funding_source.available_credit_cny}", {}, False),
    # add: missing history.* operands count as 0, any other missing operand makes the sum missing
    ("{field: {add: [history.cash_today_cny, derived.amount_cny]}, op: gt, value: 150}",
     {"history__cash_today_cny": 50.01}, True),
    ("{field: {add: [history.cash_today_cny, derived.amount_cny]}, op: gt, value: 150}",
     {"history__cash_today_cny": 50}, False),
    ("{field: {add: [history.cash_today_cny, derived.amount_cny]}, op: gte, value: 100}", {}, True),
    ("{field: {add: [history.cash_today_cny, risk_score]}, op: gte, value: 0}", {}, False),
    ("{field: {add: [history.cash_today_cny, risk_score]}, op: gte, value: 5}", {"risk_score": 5}, True),
    # not: plain negation, so an absent flag counts as "not true"
    ("{not: {field: auth.sca_performed, op: eq, value: true}}", {}, True),
    ("{not: {field: auth.sca_performed, op: eq, value: true}}", {"auth__sca_performed": False}, True),
    ("{not: {field: auth.sca_performed, op: eq, value: true}}", {"auth__sca_performed": True}, False),
    ("{not: {field: ip_country, op: in, list: risky}}", {}, True),
    ("{not: {field: ip_country, op: in, list: risky}}", {"ip_country": "KP"}, False),
    ("{not: {field: ip_country, op: not_in, list: risky}}", {}, True),
    ("{not: {field: ip_country, op: not_in, list: risky}}", {"ip_country": "KP"}, True),
    ("{not: {field: ip_country, op: not_in, list: risky}}", {"ip_country": "CN"}, False),
    ("{not: {field: risk_score, op: between, value: [10, 20]}}", {"risk_score": 20}, True),
    ("{not: {field: risk_score, op: between, value: [10, 20]}}", {"risk_score": 10}, False),
    ("{not: {field: risk_score, op: exists}}", {}, True),
    ("{not: {field: funding_source.issuer_country, op: ne, ref: ip_country}}", {"ip_country": "CN"}, True),
    ("{not: {not: {field: channel, op: eq, value: pos}}}", {"channel": "pos"}, True),
    # all / any / nested, De Morgan through not
    ("{all: [{field: channel, op: eq, value: pos}, {field: risk_score, op: gte, value: 5}]}",
     {"channel": "pos", "risk_score": 5}, True),
    ("{all: [{field: channel, op: eq, value: pos}, {field: risk_score, op: gte, value: 5}]}", {"channel": "pos"},
     False),
    ("{any: [{field: channel, op: eq, value: pos}, {field: risk_score, op: gte, value: 5}]}", {"risk_score": 9},
     True),
    ("{not: {any: [{field: channel, op: eq, value: pos}, {field: risk_score, op: gte, value: 5}]}}", {}, True),
    ("{not: {all: [{field: channel, op: eq, value: pos}, {field: risk_score, op: gte, value: 5}]}}",
     {"channel": "pos", "risk_score": 1}, True),
]


def _rule(when: str) -> str:
    return f"""\
- id: T-1
  category: risk
  title: test rule
  when: {when}
  outcome: review
  reason: "fired"
  source: test
  verified: false
"""


@pytest.mark.parametrize("matcher", MATCHERS)
@pytest.mark.parametrize(("when", "overrides", "fires"), CASES, ids=[f"{i}" for i in range(len(CASES))])
def test_operator(make_pack, matcher, when, overrides, fires):
    path = make_pack(_rule(when), LISTS)
    engine = PolicyEngine(load_ruleset(path), matcher=matcher)
    request = base_request(**overrides)
    decision = engine.evaluate(request)
    assert (decision.rule_ids == ("T-1",)) is fires
    assert decision.decision.value == ("review" if fires else "allow")
    # the reference evaluator states the semantics directly and must agree
    prepared = engine.prepare(request)
    assert evaluate(engine.ruleset.rules[0].when, prepared.view, prepared.day) is fires


def test_missing_optional_objects_never_fire_a_comparison(make_pack):
    path = make_pack(_rule("{field: merchant.country, op: ne, value: CN}"))
    engine = PolicyEngine(load_ruleset(path))
    # a cash withdrawal has no merchant (a payment to a merchant must name one)
    assert engine.evaluate(base_request(purpose="cash_withdrawal", merchant=DELETE)).rule_ids == ()
