"""Every operator, its missing-field behaviour and `not`, on both matchers and the reference evaluator."""

from __future__ import annotations

import pytest
from conftest import DELETE, MATCHERS, PACK_HEADER, base_request

from policy_engine import PolicyEngine, load_ruleset
from policy_engine.conditions import evaluate

LISTS = """\
risky: [KP, IR]
small_numbers: [1, 2, 3]
"""

U = None  # unknown: the condition cannot be decided from the request (a field it needs is missing)
D = DELETE
#: the pack's declared default for caller-supplied counters, as in the default pack (DOMAIN 5.1 point 7)
DEFAULTS = "defaults:\n  history.cash_today_cny: 0\n"

# (condition, request overrides, value: True / False / U). base_request() states every field, so each "missing"
# row deletes what it leaves out. A rule fires when its condition is true and is undecided when it is unknown.
CASES = [
    # eq / ne on strings, numbers, booleans; a missing field is unknown for both
    ("{field: channel, op: eq, value: pos}", {"channel": "pos"}, True),
    ("{field: channel, op: eq, value: pos}", {"channel": "online"}, False),
    ("{field: channel, op: eq, value: pos}", {"channel": D}, U),
    ("{field: channel, op: ne, value: pos}", {"channel": "online"}, True),
    ("{field: channel, op: ne, value: pos}", {"channel": "pos"}, False),
    ("{field: channel, op: ne, value: pos}", {"channel": D}, U),
    ("{field: payer.age, op: eq, value: 18}", {"payer__age": 18}, True),
    ("{field: payer.age, op: ne, value: 18}", {"payer__age": 17}, True),
    ("{field: payer.sanctions_hit, op: eq, value: true}", {"payer__sanctions_hit": True}, True),
    ("{field: payer.sanctions_hit, op: eq, value: true}", {"payer__sanctions_hit": False}, False),
    ("{field: payer.sanctions_hit, op: ne, value: true}", {"payer__sanctions_hit": False}, True),
    ("{field: payer.sanctions_hit, op: eq, value: true}", {"payer__sanctions_hit": D}, U),
    # ordering, both sides of each edge
    ("{field: risk_score, op: gt, value: 65}", {"risk_score": 66}, True),
    ("{field: risk_score, op: gt, value: 65}", {"risk_score": 65}, False),
    ("{field: risk_score, op: gte, value: 65}", {"risk_score": 65}, True),
    ("{field: risk_score, op: gte, value: 65}", {"risk_score": 64}, False),
    ("{field: risk_score, op: lt, value: 65}", {"risk_score": 64}, True),
    ("{field: risk_score, op: lt, value: 65}", {"risk_score": 65}, False),
    ("{field: risk_score, op: lte, value: 65}", {"risk_score": 65}, True),
    ("{field: risk_score, op: lte, value: 65}", {"risk_score": 66}, False),
    ("{field: risk_score, op: lt, value: 65}", {"risk_score": D}, U),
    ("{field: risk_score, op: gte, value: 0}", {"risk_score": D}, U),
    # a required field is never unknown
    ("{field: amount.value, op: gte, value: 100}", {}, True),
    # in / not_in with literal lists and named lists; a missing field is unknown for both
    ("{field: ip_country, op: in, list: risky}", {"ip_country": "KP"}, True),
    ("{field: ip_country, op: in, list: risky}", {"ip_country": "CN"}, False),
    ("{field: ip_country, op: in, list: risky}", {"ip_country": D}, U),
    ("{field: ip_country, op: not_in, list: risky}", {"ip_country": "CN"}, True),
    ("{field: ip_country, op: not_in, list: risky}", {"ip_country": "IR"}, False),
    ("{field: ip_country, op: not_in, list: risky}", {"ip_country": D}, U),
    ("{field: channel, op: in, value: [pos, atm]}", {"channel": "atm"}, True),
    ("{field: payer.age, op: in, list: small_numbers}", {"payer__age": 2}, True),
    ("{field: payer.age, op: not_in, list: small_numbers}", {"payer__age": 4}, True),
    # between is half-open [lo, hi)
    ("{field: amount.value, op: between, value: [100, 200]}", {"amount__value": 100}, True),
    ("{field: amount.value, op: between, value: [100, 200]}", {"amount__value": "199.99"}, True),
    ("{field: amount.value, op: between, value: [100, 200]}", {"amount__value": 200}, False),
    ("{field: amount.value, op: between, value: [100, 200]}", {"amount__value": "99.99"}, False),
    ("{field: risk_score, op: between, value: [10, 20]}", {"risk_score": D}, U),
    # exists / missing are two-valued; JSON null counts as missing
    ("{field: risk_score, op: exists}", {"risk_score": 0}, True),
    ("{field: risk_score, op: exists}", {"risk_score": D}, False),
    ("{field: risk_score, op: missing}", {"risk_score": D}, True),
    ("{field: risk_score, op: missing}", {"risk_score": 3}, False),
    ("{field: merchant.region, op: missing}", {}, True),
    ("{field: ip_country, op: missing}", {"ip_country": None}, True),
    ("{field: ip_country, op: eq, value: CN}", {"ip_country": None}, U),
    # an absent counterparty (merchant, payee) is "not applicable": leaves under it are false, whatever the op
    # (a cash withdrawal has no merchant; a payment to a merchant must name one)
    ("{field: merchant.country, op: ne, value: CN}", {"purpose": "cash_withdrawal", "merchant": D}, False),
    ("{field: merchant.mcc, op: not_in, value: [\"7995\"]}", {"purpose": "cash_withdrawal", "merchant": D}, False),
    ("{not: {field: merchant.country, op: eq, value: CN}}", {"purpose": "cash_withdrawal", "merchant": D}, True),
    ("{field: merchant.mcc, op: missing}", {"purpose": "cash_withdrawal", "merchant": D}, True),
    ("{field: merchant.mcc, op: missing}", {"purpose": "cash_withdrawal", "merchant": {"id": "m"}}, True),
    # ... but a field left out of a present counterparty is unknown
    ("{field: merchant.region, op: eq, value: UA-43}", {}, U),
    ("{field: merchant.in_issuer_network, op: eq, value: false}", {"merchant__mcc": "5411"}, U),
    # ref: field-to-field; a missing side is unknown
    ("{field: funding_source.issuer_country, op: ne, ref: ip_country}",
     {"funding_source__issuer_country": "US", "ip_country": "CN"}, True),
    ("{field: funding_source.issuer_country, op: ne, ref: ip_country}",
     {"funding_source__issuer_country": "CN", "ip_country": "CN"}, False),
    ("{field: funding_source.issuer_country, op: ne, ref: ip_country}",
     {"funding_source__issuer_country": "US", "ip_country": D}, U),
    ("{field: funding_source.issuer_country, op: eq, ref: ip_country}",
     {"funding_source__issuer_country": "CN", "ip_country": "CN"}, True),
    ("{field: derived.amount_cny, op: gt, ref: funding_source.available_credit_cny}",
     {"funding_source__available_credit_cny": 99.99}, True),
    ("{field: derived.amount_cny, op: gt, ref: funding_source.available_credit_cny}",
     {"funding_source__available_credit_cny": 100}, False),
    ("{field: derived.amount_cny, op: gte, ref: funding_source.available_credit_cny}",
     {"funding_source__available_credit_cny": 100}, True),
    ("{field: derived.amount_cny, op: gt, ref: funding_source.available_credit_cny}", {}, U),
    # add: a declared default stands in for a missing operand; any other missing operand makes the sum unknown
    ("{field: {add: [history.cash_today_cny, derived.amount_cny]}, op: gt, value: 150}",
     {"history__cash_today_cny": 50.01}, True),
    ("{field: {add: [history.cash_today_cny, derived.amount_cny]}, op: gt, value: 150}",
     {"history__cash_today_cny": 50}, False),
    ("{field: {add: [history.cash_today_cny, derived.amount_cny]}, op: gte, value: 100}", {}, True),
    ("{field: {add: [history.cash_today_cny, derived.amount_cny]}, op: gte, value: 100}", {"history": D}, True),
    ("{field: {add: [history.cash_today_cny, risk_score]}, op: gte, value: 0}", {"risk_score": D}, U),
    ("{field: {add: [history.cash_today_cny, risk_score]}, op: gte, value: 5}", {"risk_score": 5}, True),
    ("{field: {add: [history.fx_annual_used_usd, derived.amount_usd]}, op: gte, value: 0}", {}, U),  # no default
    # not: unknown stays unknown, so an absent flag is not "not true"
    ("{not: {field: auth.sca_performed, op: eq, value: true}}", {"auth": D}, U),
    ("{not: {field: auth.sca_performed, op: eq, value: true}}", {"auth__sca_performed": False}, True),
    ("{not: {field: auth.sca_performed, op: eq, value: true}}", {"auth__sca_performed": True}, False),
    ("{not: {field: ip_country, op: in, list: risky}}", {"ip_country": D}, U),
    ("{not: {field: ip_country, op: in, list: risky}}", {"ip_country": "KP"}, False),
    ("{not: {field: ip_country, op: not_in, list: risky}}", {"ip_country": D}, U),
    ("{not: {field: ip_country, op: not_in, list: risky}}", {"ip_country": "KP"}, True),
    ("{not: {field: ip_country, op: not_in, list: risky}}", {"ip_country": "CN"}, False),
    ("{not: {field: risk_score, op: between, value: [10, 20]}}", {"risk_score": 20}, True),
    ("{not: {field: risk_score, op: between, value: [10, 20]}}", {"risk_score": 10}, False),
    ("{not: {field: risk_score, op: exists}}", {"risk_score": D}, True),
    ("{not: {field: funding_source.issuer_country, op: ne, ref: ip_country}}", {"ip_country": "CN"}, True),
    ("{not: {field: funding_source.issuer_country, op: ne, ref: ip_country}}", {"ip_country": D}, U),
    ("{not: {not: {field: channel, op: eq, value: pos}}}", {"channel": "pos"}, True),
    # all / any / nested follow Kleene: false AND unknown = false, true OR unknown = true
    ("{all: [{field: channel, op: eq, value: pos}, {field: risk_score, op: gte, value: 5}]}",
     {"channel": "pos", "risk_score": 5}, True),
    ("{all: [{field: channel, op: eq, value: pos}, {field: risk_score, op: gte, value: 5}]}",
     {"channel": "pos", "risk_score": D}, U),
    ("{all: [{field: channel, op: eq, value: pos}, {field: risk_score, op: gte, value: 5}]}",
     {"channel": "online", "risk_score": D}, False),
    ("{any: [{field: channel, op: eq, value: pos}, {field: risk_score, op: gte, value: 5}]}",
     {"channel": D, "risk_score": 9}, True),
    ("{any: [{field: channel, op: eq, value: pos}, {field: risk_score, op: gte, value: 5}]}",
     {"channel": D, "risk_score": 1}, U),
    ("{not: {any: [{field: channel, op: eq, value: pos}, {field: risk_score, op: gte, value: 5}]}}",
     {"channel": "online", "risk_score": 1}, True),
    ("{not: {any: [{field: channel, op: eq, value: pos}, {field: risk_score, op: gte, value: 5}]}}",
     {"channel": D, "risk_score": D}, U),
    ("{not: {all: [{field: channel, op: eq, value: pos}, {field: risk_score, op: gte, value: 5}]}}",
     {"channel": "pos", "risk_score": 1}, True),
    ("{not: {all: [{field: channel, op: eq, value: pos}, {field: risk_score, op: gte, value: 5}]}}",
     {"channel": "atm", "risk_score": D}, True),
    ("{any: [{all: [{field: channel, op: eq, value: pos}, {field: ip_country, op: in, list: risky}]},"
     " {not: {field: payer.age, op: lt, value: 18}}]}", {"channel": "pos", "ip_country": D, "payer__age": 12}, U),
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
@pytest.mark.parametrize(("when", "overrides", "value"), CASES, ids=[f"{i}" for i in range(len(CASES))])
def test_operator(make_pack, matcher, when, overrides, value):
    path = make_pack(_rule(when), LISTS, header=PACK_HEADER + DEFAULTS)
    engine = PolicyEngine(load_ruleset(path), matcher=matcher)
    request = base_request(**overrides)
    decision = engine.evaluate(request)
    assert (decision.rule_ids == ("T-1",)) is (value is True)
    assert (decision.undecided_ids == ("T-1",)) is (value is U)
    assert decision.decision.value == ("allow" if value is False else "review")  # on_unknown of a review rule
    # the reference evaluator states the semantics directly and must agree
    prepared = engine.prepare(request)
    assert evaluate(engine.ruleset.rules[0].when, prepared.view, prepared.day) is value
