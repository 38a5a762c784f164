"""`engine.explain` and `policy-engine explain`: each rule's condition tree with every leaf's value and result,
in agreement with what the engine decides."""

from __future__ import annotations

import dataclasses
import functools
import io
import json

import pytest
from conftest import DELETE, EXAMPLES, base_request, load_cases

from policy_engine import PolicyEngine, RequestError
from policy_engine.cli import main
from policy_engine.explain import GroupResult, LeafResult, UnknownRuleError, render

CASES = load_cases()
SEED = EXAMPLES / "baitiao_credit_card_repayment.json"


@functools.cache
def default() -> PolicyEngine:
    return PolicyEngine.from_path(None)  # the python matcher: explain never uses the matcher


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_explanation_agrees_with_the_decision(bundled_engine, case):
    engine = bundled_engine
    decision = engine.evaluate(case["request"])
    explanation = engine.explain(case["request"])
    assert explanation.fired == decision.rule_ids
    assert explanation.decision == decision.decision.value
    assert {r.rule_id for r in explanation.rules if r.fired} == set(decision.rule_ids)
    # the reference evaluator and the matchers agree on what is undecided and skipped, and on what is missing
    assert explanation.undecided == decision.undecided_ids
    assert explanation.skipped == decision.skipped_ids
    missing = {e.rule_id: e.missing for e in decision.trail if e.status != "fired"}
    assert {r.rule_id: r.missing for r in explanation.rules if r.status in ("undecided", "skipped")} == missing
    assert len(explanation.rules) == len(engine.ruleset.rules)


def _leaves(node):
    if isinstance(node, LeafResult):
        yield node
    else:
        for child in node.children:
            yield from _leaves(child)


def test_seed_case_fs001_leaves_are_true_with_their_values():
    engine = default()
    (fs001,) = engine.explain(json.loads(SEED.read_text()), "FS-001").rules
    assert fs001.fired and fs001.in_force
    assert isinstance(fs001.condition, GroupResult) and fs001.condition.kind == "all"
    assert [(leaf.field, leaf.op, leaf.expected, leaf.value, leaf.result) for leaf in _leaves(fs001.condition)] == [
        ("funding_source.type", "eq", "bnpl", "bnpl", True),
        ("purpose", "eq", "credit_card_repayment", "credit_card_repayment", True)]


def test_cli_seed_example_shows_fs001_fired_with_both_leaves_true():
    out = io.StringIO()
    assert main(["explain", str(SEED)], out=out, err=io.StringIO()) == 0
    text = out.getvalue()
    assert text.startswith("AC-01: deny (pack default-cn-intl")
    assert "fired: FS-001\n" in text
    block = text.split("\nFS-001 [deny]")[1].split("\n\n")[0]
    assert "— FIRED" in block.splitlines()[0]
    assert '    ✓ funding_source.type eq "bnpl"   — value "bnpl"' in block
    assert '    ✓ purpose eq "credit_card_repayment"   — value "credit_card_repayment"' in block
    assert "\nFS-002 [deny] Credit card or consumer loan cannot repay a credit card — not fired" in text
    assert '✗ funding_source.type in ["credit_card", "consumer_loan"]   — value "bnpl"' in text


def test_cli_one_rule_as_json():
    out = io.StringIO()
    assert main(["explain", "--json", "--rule", "FS-001", str(SEED)], out=out, err=io.StringIO()) == 0
    data = json.loads(out.getvalue())
    assert (data["request_id"], data["decision"], data["fired"]) == ("AC-01", "deny", ["FS-001"])
    (rule,) = data["rules"]
    assert (rule["rule_id"], rule["fired"], rule["in_force"]) == ("FS-001", True, True)
    leaves = rule["condition"]["children"]
    assert [(x["field"], x["value"], x["expected"], x["result"]) for x in leaves] == [
        ("funding_source.type", "bnpl", "bnpl", True), ("purpose", "credit_card_repayment", "credit_card_repayment",
                                                        True)]
    assert all(x["at"].rsplit(":", 2)[0].endswith("funding_sources.yaml") for x in leaves)


def test_unknown_rule_id():
    engine = default()
    with pytest.raises(UnknownRuleError, match="did you mean 'RSK-012'"):
        engine.explain(base_request(), "RSK-12")
    err = io.StringIO()
    assert main(["explain", "--rule", "RSK-12", str(SEED)], out=io.StringIO(), err=err) == 2
    assert "no rule 'RSK-12'" in err.getvalue()


def test_missing_values_and_sums():
    engine = default()
    request = base_request(purpose="cash_withdrawal", amount__value="50000", channel="counter")
    (lvtr,) = engine.explain(request, "CMP-011").rules
    assert lvtr.fired
    cny_sum = next(leaf for leaf in _leaves(lvtr.condition) if leaf.field.startswith("history.cash_today_cny"))
    # the pack declares history counters 0 when not sent; the explanation says the default was used
    assert cny_sum.parts == (("history.cash_today_cny", 0), ("derived.amount_cny", 50000))
    assert cny_sum.value == 50000 and cny_sum.result is True
    assert cny_sum.defaulted == ("history.cash_today_cny",)
    assert cny_sum.to_dict()["defaulted"] == ["history.cash_today_cny"]
    (fs013,) = engine.explain(request, "FS-013").rules
    network = next(leaf for leaf in _leaves(fs013.condition) if leaf.field == "merchant.in_issuer_network")
    assert network.value is None and network.result is None  # a field of a present merchant: unknown
    assert network.to_dict()["missing"] is True and network.to_dict()["result"] is None
    assert fs013.status is None  # debit card: the BNPL conjunct is false, so the rule is decided (false)
    text = engine_text(request, "CMP-011")
    assert "history.cash_today_cny + derived.amount_cny gte 50000   — value 50000 (history.cash_today_cny 0 " \
           "(default: not sent), derived.amount_cny 50000)" in text
    assert "? merchant.in_issuer_network eq false   — value missing — unknown" in engine_text(request, "FS-013")


def test_undecided_rules_name_what_is_missing():
    engine = default()
    request = base_request(payer__kyc_level=DELETE)
    explanation = engine.explain(request)
    assert explanation.decision == "review" and "CMP-019" in explanation.undecided
    (cmp019,) = [r for r in explanation.rules if r.rule_id == "CMP-019"]
    assert cmp019.status == "undecided" and cmp019.missing == ("payer.kyc_level",)
    assert cmp019.to_dict()["missing"] == ["payer.kyc_level"]
    text = render(explanation)
    assert "undecided (a field they need is missing): CMP-019" in text
    assert "UNDECIDED: missing payer.kyc_level (held for review)" in text
    skipped = engine.explain(base_request(risk_score=DELETE))
    assert {"RSK-001", "RSK-002"} <= set(skipped.skipped) and skipped.decision == "allow"


def engine_text(request: dict, rule_id: str) -> str:
    return render(default().explain(request, rule_id))


def test_rule_not_in_force_says_so():
    request = base_request(funding_source__type="consumer_loan", purpose="loan_repayment",
                           timestamp="2021-03-01T10:00:00+08:00")
    (fs003,) = default().explain(request, "FS-003").rules
    assert (fs003.in_force, fs003.condition.result, fs003.fired) == (False, True, False)
    assert fs003.effective_from == "2022-07-07"
    assert "FS-003 [deny] Credit line cannot repay another loan — not in force on 2021-03-01 (effective from " \
           "2022-07-07), so it does not fire" in engine_text(request, "FS-003")


def test_dated_list_item_that_no_longer_applies():
    request = base_request(merchant__country="SY", timestamp="2025-07-01T12:00:00+08:00")
    (cmp002,) = default().explain(request, "CMP-002").rules
    country = next(iter(_leaves(cmp002.condition)))
    assert (country.value, country.result, country.matched_applies) == ("SY", False, False)
    assert "SY" not in country.expected and "IR" in country.expected
    assert 'value "SY"; listed only to 2025-07-01, not on this date' in engine_text(request, "CMP-002")
    assert country.to_dict()["matched_item"] == {"value": "SY", "from": None, "to": "2025-07-01", "applies": False}


def test_ref_leaf_shows_both_values():
    request = base_request(funding_source__issuer_country="US", ip_country="CN", amount__value="1000")
    text = engine_text(request, "RSK-008")
    assert '✓ funding_source.issuer_country ne ip_country   — value "US", ip_country "CN"' in text
    assert "— FIRED" in text


def test_invalid_request(tmp_path):
    engine = default()
    with pytest.raises(RequestError):
        engine.explain({"request_id": "x"})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(base_request(amount__value=-5)), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    assert main(["explain", str(bad)], out=out, err=err) == 2
    assert "$.amount.value" in err.getvalue() and out.getvalue() == ""


def test_json_lines_input_gives_one_explanation_per_line(tmp_path):
    batch = tmp_path / "two.jsonl"
    batch.write_text(json.dumps(base_request(request_id="a")) + "\n" +
                     json.dumps(base_request(request_id="b", risk_score=80)) + "\n", encoding="utf-8")
    out = io.StringIO()
    assert main(["explain", "--json", "--rule", "RSK-001", str(batch)], out=out, err=io.StringIO()) == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(x["request_id"], x["rules"][0]["fired"]) for x in lines] == [("a", False), ("b", True)]


def test_explanation_is_frozen():
    explanation = default().explain(base_request())
    with pytest.raises(dataclasses.FrozenInstanceError):
        explanation.decision = "deny"  # type: ignore[misc]
    assert explanation.to_dict()["fired"] == []
