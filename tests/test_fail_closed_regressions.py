"""Holes an attack review of the fail-closed work found, each held closed (issue 13).

Every test here once ended in a silent `allow`, a traceback or an engine failure the caller controlled.
"""

from __future__ import annotations

import io
import json

import pytest
from conftest import MATCHERS, PACK_HEADER, base_request

from policy_engine import PolicyEngine, RequestError, RuleSetError, load_ruleset
from policy_engine.cli import main

# A US cash withdrawal just below the CTR line after earlier near-threshold payments: RSK-011 (structuring) reviews
# it on New York's clock. Left without psp_country it would be read as a CN payment.
US_STRUCTURING = base_request(psp_country="US", timestamp="2025-06-10T14:30:00-04:00", purpose="cash_withdrawal",
                              channel="atm", amount__value="9500", amount__currency="USD",
                              payer__residence_country="US", funding_source__issuer_country="US", ip_country="US",
                              history={"near_threshold_count_7d": 3})


@pytest.mark.parametrize("matcher", MATCHERS)
def test_a_psp_country_left_out_is_named_as_a_default(matcher):
    engine = PolicyEngine.from_path(None, matcher=matcher)
    assert engine.evaluate(US_STRUCTURING).decision.value == "review"
    without = {k: v for k, v in US_STRUCTURING.items() if k != "psp_country"}
    decision = engine.evaluate(without)
    # the contract's default (CN) applies, and the decision says it rested on it
    assert decision.defaulted[0] == "psp_country"
    assert "psp_country" not in engine.evaluate(US_STRUCTURING).defaulted


def test_a_psp_country_of_the_wrong_type_is_a_request_error(bundled_engine):
    with pytest.raises(RequestError) as info:
        bundled_engine.evaluate(base_request(psp_country=["CN"]))
    assert [v.path for v in info.value.violations] == ["$.psp_country"]


@pytest.mark.parametrize("extra", [{"\ud800": 1}, {1: 2}, {"a": [10**16]}, {"a": {"\ud800": 1}}])
def test_extra_is_bounded_in_keys_and_list_items(bundled_engine, extra):
    with pytest.raises(RequestError) as info:
        bundled_engine.evaluate(base_request(extra=extra))
    assert all(v.path.startswith("$.extra") for v in info.value.violations)


def test_a_sum_compared_with_a_ref_is_a_load_error(make_pack):
    rule = """\
- id: R-1
  category: risk
  title: t
  when: {field: {add: [payer.age, payer.age]}, op: gt, ref: payer.account_age_days}
  outcome: review
  reason: r
  source: s
  verified: false
"""
    with pytest.raises(RuleSetError) as info:
        load_ruleset(make_pack(rule))
    (issue,) = info.value.issues
    assert "compared with a value, not a ref" in issue.message and issue.rule_id == "R-1"


@pytest.mark.skipif("durable" not in MATCHERS, reason="durable-rules cannot import here")
def test_a_pack_that_expands_past_the_durable_shard_limit_is_refused(make_pack):
    branches = "\n".join(f"        - any: [{{field: risk_score, op: eq, value: {2 * i}}}, "
                         f"{{field: payer.age, op: eq, value: {i}}}]" for i in range(10))
    rules = "".join(f"""\
- id: R-{n}
  category: risk
  title: t
  when:
    all:
{branches}
  outcome: review
  reason: r
  source: s
  verified: false
""" for n in range(3))
    ruleset = load_ruleset(make_pack(rules))  # the python matcher runs it
    PolicyEngine(ruleset, matcher="python").close()
    with pytest.raises(RuleSetError) as info:
        PolicyEngine(ruleset, matcher="durable")
    assert "durable rulesets" in str(info.value) and "allows 256" in str(info.value)


def test_a_lone_surrogate_request_id_is_an_error_record_and_the_stream_goes_on(tmp_path):
    bad = json.dumps(base_request(request_id="AC\ud800"))  # json.dumps escapes it: valid JSON text
    good = json.dumps(base_request(request_id="ok"))
    stream = tmp_path / "s.jsonl"
    stream.write_text(bad + "\n" + good + "\n", encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    assert main(["evaluate", "--json", str(stream)], out=out, err=err) == 2
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["error"] == "invalid_request" and first["request_id"] == "AC\\ud800"
    assert second["decision"] == "allow" and "internal error" not in err.getvalue()


@pytest.mark.parametrize("zone", ["localtime", "Factory", "posixrules", "posix/Asia/Shanghai"])
def test_a_host_dependent_timezone_is_a_load_error(make_pack, zone):
    header = PACK_HEADER.replace("timezones: {", f"timezones: {{ZZ: {zone}, ")
    assert header != PACK_HEADER
    with pytest.raises(RuleSetError) as info:
        load_ruleset(make_pack("[]\n", header=header))
    assert any("civil time" in issue.message for issue in info.value.issues)
