"""Missing data is unknown, never a pass (DOMAIN §5.1 points 6 and 7; issue 13).

The engine sits on a default-allow path, so leaving a field out must never quietly turn a refusal into `allow`.
Removing any optional field or object from a request that was not allowed gives a request error, a decision
that is still not `allow`, or an `allow` that names what was left out: a rule the pack marks `on_unknown: skip`
(listed as skipped with the missing field) or a declared default (listed in `defaulted`).
"""

from __future__ import annotations

import pytest
from conftest import DELETE, MATCHERS, base_request, load_cases
from hypothesis import given
from hypothesis import strategies as st

from policy_engine import PolicyEngine, RequestError
from policy_engine.testing.omission import removals
from policy_engine.testing.strategies import requests

CASES = load_cases()
REFUSED = [c for c in CASES if c["expected"]["decision"] != "allow"]


def named(decision, path: str) -> bool:
    """Whether the decision names ``path`` (or a field under it) as missing in a skipped rule or defaulted."""
    def under(field: str) -> bool:
        return field == path or field.startswith(path + ".")

    skipped = any(under(f) for e in decision.trail if e.status == "skipped" for f in e.missing)
    return skipped or any(under(f) for f in decision.defaulted)


def check_removal(engine: PolicyEngine, request: dict, path: str, variant: dict) -> None:
    try:
        decision = engine.evaluate(variant)
    except RequestError:
        return  # a request the contract refuses gets no decision at all
    if decision.allowed:
        assert named(decision, path), (
            f"{request.get('request_id')}: leaving out {path} turned "
            f"{engine.evaluate(request).decision.value} into allow without naming it")


@pytest.mark.parametrize("matcher", MATCHERS)
@pytest.mark.parametrize("case", REFUSED, ids=[c["id"] for c in REFUSED])
def test_leaving_out_a_field_never_silently_allows_an_acceptance_case(matcher, case):
    engine = PolicyEngine.from_path(None, matcher=matcher)
    try:
        assert not engine.evaluate(case["request"]).allowed
        for path, variant in removals(case["request"]):
            check_removal(engine, case["request"], path, variant)
    finally:
        engine.close()


@given(request=requests(), data=st.data())
def test_leaving_out_a_field_never_silently_allows_a_generated_request(bundled_python_engine, request, data):
    engine = bundled_python_engine
    if engine.evaluate(request).allowed:
        return
    options = list(removals(request))
    path, variant = data.draw(st.sampled_from(options), label="left out")
    check_removal(engine, request, path, variant)


@pytest.fixture(scope="module")
def bundled_python_engine():
    engine = PolicyEngine.from_path(None, matcher="python")
    yield engine
    engine.close()


# -- the semantics, one behaviour each (DOMAIN §5.1 point 6) -----------------------------------------------------
def test_a_required_screening_flag_left_out_holds_the_payment(bundled_engine):
    decision = bundled_engine.evaluate(base_request(payer__sanctions_hit=DELETE))
    assert decision.decision.value == "review" and decision.rule_ids == ()
    (entry,) = decision.trail
    assert (entry.rule_id, entry.status, entry.missing) == ("CMP-001", "undecided", ("payer.sanctions_hit",))
    assert entry.to_dict()["missing"] == ["payer.sanctions_hit"] and "payer.sanctions_hit" in entry.reason


def test_an_absent_counterparty_is_not_applicable(bundled_engine):
    # no payee on a purchase: CMP-001 reads payee.sanctions_hit, but there is no payee to screen
    decision = bundled_engine.evaluate(base_request())
    assert decision.decision.value == "allow" and decision.trail == ()


def test_a_field_left_out_of_a_present_counterparty_is_unknown(bundled_engine):
    # a purchase that names a payee (the contract requires payee.sanctions_hit only for P2P transfers)
    decision = bundled_engine.evaluate(base_request(payee__id="u-2", payee__country="CN"))
    assert decision.decision.value == "review" and decision.undecided_ids == ("CMP-001",)


def test_a_missing_counter_takes_its_declared_default_and_says_so(bundled_engine):
    # CMP-010: static QR over CNY 500 a day; the counter not sent counts as 0 (no prior payments recorded)
    request = base_request(channel="qr_static", amount__value=500)
    decision = bundled_engine.evaluate(request)
    assert decision.allowed and "history.qr_static_daily_used_cny" in decision.defaulted
    assert decision.to_dict()["defaulted"] == list(decision.defaulted)
    over = bundled_engine.evaluate(base_request(channel="qr_static", amount__value="500.01", history=DELETE))
    assert over.rule_ids == ("CMP-010",)
    (entry,) = over.trail
    assert entry.defaulted == ("history.qr_static_daily_used_cny",)
    assert entry.to_dict()["defaulted"] == ["history.qr_static_daily_used_cny"]


def test_the_lifetime_count_has_no_default(bundled_engine):
    decision = bundled_engine.evaluate(base_request(history=DELETE, amount__value=6000))
    assert "history.lifetime_txn_count" not in decision.defaulted
    assert "RSK-007" in decision.skipped_ids  # first-transaction limit: skipped, naming the field
    (entry,) = [e for e in decision.trail if e.rule_id == "RSK-007"]
    assert entry.missing == ("history.lifetime_txn_count",) and entry.outcome == "allow"


def test_an_undecided_step_up_rule_asks_for_authentication(bundled_engine):
    # PSD2: `not: sca_performed == true` on an absent flag is unknown, and an unknown step-up rule steps up
    eea = {"psp_country": "DE", "payer__residence_country": "DE", "funding_source__issuer_country": "DE",
           "merchant__country": "DE", "merchant__mcc": "5732", "channel": "online", "ip_country": "DE",
           "amount__value": 300, "amount__currency": "EUR"}
    decision = bundled_engine.evaluate(base_request(**eea, auth__sca_performed=DELETE))
    assert decision.decision.value == "step_up"
    assert "CMP-023" in decision.undecided_ids


def test_an_undecided_report_rule_marks_its_obligation(bundled_engine):
    # CMP-012 (LVTR for a domestic transfer) needs cross_border; the payment is not held, the report is undecided
    request = base_request(purpose="p2p_transfer", merchant=DELETE, payee__id="u-2", payee__country="CN",
                           payee__sanctions_hit=False, payee__first_time=False, cross_border=DELETE,
                           amount__value=1000, history__transfers_today_cny=499000)
    decision = bundled_engine.evaluate(request)
    assert "CMP-012" in decision.undecided_ids
    assert {"rule_id": "CMP-012", "report": "LVTR", "status": "undecided"} in decision.obligations
    (entry,) = [e for e in decision.trail if e.rule_id == "CMP-012"]
    assert entry.outcome == "allow"  # a report rule never changes the decision, decided or not


# -- declaring defaults ------------------------------------------------------------------------------------------
RULE = """\
- id: T-1
  category: risk
  title: counter over 5
  when: {field: history.cash_today_cny, op: gt, value: 5}
  outcome: review
  reason: "over"
  source: test
  verified: false
"""


def test_a_counter_without_a_declared_default_is_unknown(make_pack):
    from conftest import PACK_HEADER

    from policy_engine import load_ruleset

    without = PolicyEngine(load_ruleset(make_pack(RULE)))
    assert without.evaluate(base_request()).undecided_ids == ("T-1",)
    header = PACK_HEADER + "defaults:\n  history.cash_today_cny: 0\n"
    declared = PolicyEngine(load_ruleset(make_pack(RULE, header=header)))
    decision = declared.evaluate(base_request())
    assert decision.allowed and "history.cash_today_cny" in decision.defaulted


@pytest.mark.parametrize(("defaults", "message"), [
    ("  history.cash_todya_cny: 0\n", "did you mean 'history.cash_today_cny'"),
    ("  derived.amount_cny: 0\n", "computed by the engine"),
    ("  history.cash_today_cny: zero\n", "is a number"),
])
def test_a_bad_default_is_a_load_error_at_its_position(make_pack, defaults, message):
    from conftest import PACK_HEADER

    from policy_engine import RuleSetError, load_ruleset

    with pytest.raises(RuleSetError) as info:
        load_ruleset(make_pack(RULE, header=PACK_HEADER + "defaults:\n" + defaults))
    (issue,) = info.value.issues
    assert message in issue.message and issue.line > 1


def test_a_default_declared_twice_names_the_first(tmp_path):
    from conftest import PACK_HEADER

    from policy_engine import RuleSetError, load_ruleset

    (tmp_path / "a.yaml").write_text(PACK_HEADER + "defaults:\n  history.cash_today_cny: 0\nrules:\n" +
                                     "".join("  " + line + "\n" for line in RULE.splitlines()), encoding="utf-8")
    (tmp_path / "b.yaml").write_text("defaults:\n  history.cash_today_cny: 1\n", encoding="utf-8")
    with pytest.raises(RuleSetError) as info:
        load_ruleset(tmp_path)
    (issue,) = info.value.issues
    assert issue.file.endswith("b.yaml") and "already set in" in issue.message and "a.yaml" in issue.message


@given(request=requests(), data=st.data())
def test_the_missing_fields_of_an_undecided_rule_are_the_reference_evaluators(bundled_python_engine, request, data):
    """The trail's ``missing`` lists are memoised by presence pattern (CompiledPack): each must still be what the
    reference evaluator names on this very request, whichever request first filled the memo."""
    from policy_engine.conditions import unknown_fields

    engine = bundled_python_engine
    options = [(None, request), *removals(request)]
    _, variant = data.draw(st.sampled_from(options), label="variant")
    try:
        decision = engine.evaluate(variant)
    except RequestError:
        return
    prepared = engine.pack.prepare(variant)
    rules = {e.rule.id: e.rule for e in engine.pack.evidence}
    for entry in decision.trail:
        if entry.status in ("undecided", "skipped"):
            assert entry.missing == unknown_fields(rules[entry.rule_id].when, prepared.view, prepared.day)
