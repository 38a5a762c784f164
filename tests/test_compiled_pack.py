"""``CompiledPack``: one immutable pack version; the engine's current pack; deciding and explaining without an
engine."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import MATCHERS, PACK_HEADER, base_request

from policy_engine import CompiledPack, Decision, Outcome, PolicyEngine, RequestError, load_ruleset
from policy_engine.explain import explain

THRESHOLD_RULE = """\
- id: BIG-1
  category: risk
  title: Large payment needs review
  when: {field: amount.value, op: gte, value: THRESHOLD}
  outcome: review
  reason: "{amount.value} is THRESHOLD or more"
  source: test
  verified: false
"""


def timeless(decision: Decision) -> Decision:
    return dataclasses.replace(decision, elapsed_us=0)


def test_the_engine_runs_a_public_compiled_pack():
    engine = PolicyEngine.from_path()
    pack = engine.pack
    assert isinstance(pack, CompiledPack)
    assert pack.ruleset is engine.ruleset and pack.matcher.name == engine.matcher == "python"
    assert engine.pack is pack  # no reload: the same snapshot


@pytest.mark.parametrize("matcher", MATCHERS)
def test_a_pack_decides_exactly_as_the_engine(cases, matcher):
    engine = PolicyEngine.from_path(None, matcher=matcher)
    pack = engine.pack
    try:
        for case in cases:
            expected = timeless(engine.evaluate(case["request"]))
            for pending in (False, True):  # a complete view or cross-rate amounts left for the rules that read them
                assert timeless(pack.decide(pack.prepare(case["request"], pending))) == expected, case["id"]
        assert {timeless(engine.evaluate(c["request"])).decision for c in cases} == set(Outcome)
    finally:
        engine.close()


def test_a_pack_refuses_an_invalid_request_as_the_engine_does():
    pack = CompiledPack.build(load_ruleset())
    with pytest.raises(RequestError) as info:
        pack.prepare(base_request(amount__value=-1))
    assert [v.path for v in info.value.violations] == ["$.amount.value"]


@pytest.mark.parametrize("matcher", MATCHERS)
def test_a_pack_taken_before_a_reload_keeps_deciding_with_its_own_version(make_pack, matcher):
    path_a = make_pack(THRESHOLD_RULE.replace("THRESHOLD", "1000"))
    path_b = make_pack(THRESHOLD_RULE.replace("THRESHOLD", "500"),
                       header=PACK_HEADER.replace('version: "1"', 'version: "2"'))
    engine = PolicyEngine.from_path(path_a, matcher=matcher)
    try:
        old = engine.pack
        engine.reload(path_b)
        assert engine.pack is not old and old.ruleset.version == "1"
        request = base_request(amount__value=700)
        for _ in range(3):  # deciding on the old pack neither fails nor drifts to the new version
            before = old.decide(old.prepare(request))
            assert (before.decision, before.ruleset["version"]) == (Outcome.ALLOW, "1")
        after = engine.evaluate(request)
        assert (after.decision, after.rule_ids, after.ruleset["version"]) == (Outcome.REVIEW, ("BIG-1",), "2")
    finally:
        engine.close()


def test_a_pack_is_immutable():
    pack = CompiledPack.build(load_ruleset())
    for field in dataclasses.fields(CompiledPack):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(pack, field.name, None)
    assert isinstance(pack.evidence, tuple)


def test_a_pack_explains_without_an_engine(cases):
    pack = CompiledPack.build(load_ruleset())
    for case in cases:
        explanation = explain(pack, case["request"])
        decision = pack.decide(pack.prepare(case["request"]))
        assert (explanation.fired, explanation.decision) == (decision.rule_ids, decision.decision.value), case["id"]
        assert explanation.ruleset == pack.ruleset_info


def test_an_undecided_rule_on_a_cross_rate_amount_shows_it_when_nothing_fired():
    """A decision that fires nothing computes no cross rate unless an undecided rule reads one: then its evidence
    shows the amount exactly as a fully prepared request does."""
    pack = CompiledPack.build(load_ruleset(None))
    request = base_request(amount__value=1000, history__fx_annual_used_usd=49990)
    request.pop("fx_purchase", None)  # CMP-015 cannot tell whether the payment counts against the FX quota
    lazy, full = (pack.decide(pack.prepare(request, pending)) for pending in (True, False))
    assert lazy.rule_ids == () and lazy.undecided_ids == ("CMP-015",)
    assert lazy.trail[0].evidence["derived.amount_usd"] is not None
    assert timeless(lazy) == timeless(full)



_ANY_CNY = """\
- id: CNY-2
  category: risk
  title: Any CNY payment
  when: {field: amount.currency, op: eq, value: CNY}
  outcome: review
  reason: "a CNY payment"
  source: test
  verified: false
"""


@pytest.mark.parametrize("shows", ["reason", "reason_zh", "evidence"])
def test_a_fired_rule_computes_a_cross_rate_amount_only_when_its_entry_shows_one(make_pack, shows):
    """The cross rates (exact Fractions) are computed for a fired rule whose entry shows one (its condition's fields
    are its evidence, its reasons render theirs), with the document of a fully prepared request; a decision that
    fires only rules on other fields leaves them pending."""
    condition = ("{all: [{field: amount.currency, op: eq, value: CNY}, {field: derived.amount_usd, op: gt, value: 0}]}"
                 if shows == "evidence" else "{field: amount.currency, op: eq, value: CNY}")
    reason = "USD {derived.amount_usd}" if shows == "reason" else "a payment"
    reason_zh = '\n  reason_zh: "USD {derived.amount_usd}"' if shows == "reason_zh" else ""
    rule = (f"- id: CNY-1\n  category: risk\n  title: A payment\n  when: {condition}\n  outcome: review\n"
            f"  reason: \"{reason}\"{reason_zh}\n  source: test\n  verified: false\n")
    pack = CompiledPack.build(load_ruleset(make_pack(rule + _ANY_CNY)))
    request = base_request(amount__value=700)
    lazy, full = (pack.decide(pack.prepare(request, pending)) for pending in (True, False))
    assert lazy.rule_ids == ("CNY-1", "CNY-2")
    entry = lazy.trail[0]
    shown = entry.evidence.get("derived.amount_usd") if shows == "evidence" else \
        (entry.reason_zh if shows == "reason_zh" else entry.reason)
    assert shown is not None and "<missing" not in str(shown), shown
    assert timeless(lazy) == timeless(full)

    bare = CompiledPack.build(load_ruleset(make_pack(_ANY_CNY)))
    prepared = bare.prepare(request, True)
    assert bare.decide(prepared).rule_ids == ("CNY-2",)
    assert "derived.amount_usd" not in prepared.view  # nothing showed it: left pending
