"""Engine properties over requests from the property-test strategies (valid, realistic, on the pack's edges):
determinism, matcher agreement, independence from rule order, the decision contract, and the error path."""

from __future__ import annotations

import json
import shutil

import jsonschema
import pytest
import yaml
from conftest import DURABLE_OK, RULES, needs_durable
from hypothesis import given, settings
from hypothesis import strategies as st

from policy_engine import EvaluationError, PolicyEngine, RequestError, load_ruleset
from policy_engine.conditions import evaluate
from policy_engine.jsonio import dumps
from policy_engine.resources import load_schema
from policy_engine.testing.strategies import invalid_requests, near_thresholds, requests

PACK = load_ruleset(RULES)
PAYMENTS = st.one_of(requests(), near_thresholds(PACK))
DECISION_SCHEMA = jsonschema.Draft202012Validator(load_schema("decision"))


@pytest.fixture(scope="module")
def engines():
    names = ["python", "durable"] if DURABLE_OK else ["python"]
    built = [PolicyEngine(PACK, matcher=n) for n in names]
    yield built
    for engine in built:
        engine.close()


@given(request=PAYMENTS)
def test_evaluation_is_deterministic(engines, request):
    engine = engines[0]
    first, second = engine.evaluate(request).to_dict(), engine.evaluate(request).to_dict()
    first.pop("elapsed_us"), second.pop("elapsed_us")
    assert first == second


@given(request=PAYMENTS)
def test_matchers_agree_with_the_reference_evaluator(engines, request):
    prepared = engines[0].prepare(request)
    expected = tuple(r.id for r in PACK.rules if r.in_force(prepared.day) and evaluate(r.when, prepared.view,
                                                                                     prepared.day))
    decisions = [e.evaluate(request) for e in engines]
    assert all(d.rule_ids == expected for d in decisions), [(e.matcher, d.rule_ids) for e, d in
                                                            zip(engines, decisions, strict=True)]
    assert len({d.decision for d in decisions}) == 1


@given(request=PAYMENTS)
def test_the_decision_json_always_follows_its_schema(engines, request):
    for engine in engines:
        decision = engine.evaluate(request)
        document = json.loads(dumps(decision.to_dict()))  # what `evaluate --json` prints
        DECISION_SCHEMA.validate(document)
        assert document["allowed"] is (document["decision"] == "allow")
        assert [e["rule_id"] for e in document["trail"] if e["status"] == "fired"] == list(decision.rule_ids)
        for entry in document["trail"]:  # only fired entries have no `missing`; the others name what was left out
            assert ("missing" in entry) == (entry["status"] != "fired")
            assert entry["status"] == "fired" or entry["missing"]


@given(request=invalid_requests())
def test_an_invalid_request_always_raises_request_error(engines, request):
    for engine in engines:
        with pytest.raises(RequestError) as info:
            engine.evaluate(request)
        assert not isinstance(info.value, EvaluationError) and info.value.violations


def _one_file_pack(order: list[int]) -> str:
    """The default pack as one YAML file with its rules in ``order`` (manifest, lists and rates unchanged)."""
    merged: dict = {"rules": []}
    for path in sorted(p for p in RULES.rglob("*.yaml") if "tests" not in p.relative_to(RULES).parts[:-1]):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        merged["rules"] += data.pop("rules", [])
        for key, value in data.items():
            merged.setdefault(key, value)
    merged["rules"] = [merged["rules"][i] for i in order]
    return yaml.safe_dump(merged, allow_unicode=True, sort_keys=False)


@settings(max_examples=max(3, settings().max_examples // 10))
@given(order=st.permutations(range(len(PACK.rules))), batch=st.lists(PAYMENTS, min_size=10, max_size=10))
def test_rule_order_never_changes_the_decision(tmp_path_factory, engines, order, batch):
    path = tmp_path_factory.mktemp("shuffled") / "pack.yaml"
    path.write_text(_one_file_pack(order), encoding="utf-8")
    shutil.copytree(RULES / "lists", path.parent / "lists")  # the party list the pack names
    shuffled = PolicyEngine.from_path(path, matcher=engines[-1].matcher)
    try:
        assert [r.id for r in shuffled.ruleset.rules] == [PACK.rules[i].id for i in order]
        for request in batch:
            original, reordered = engines[0].evaluate(request), shuffled.evaluate(request)
            assert original.decision == reordered.decision
            assert set(original.rule_ids) == set(reordered.rule_ids)
            # The trail follows the new pack order: same rules, listed as the shuffled file has them.
            position = {rule_id: n for n, rule_id in enumerate(r.id for r in shuffled.ruleset.rules)}
            assert list(reordered.rule_ids) == sorted(reordered.rule_ids, key=position.__getitem__)
    finally:
        shuffled.close()


@needs_durable
def test_the_durable_matcher_is_in_the_comparison(engines):
    assert [e.matcher for e in engines] == ["python", "durable"]
