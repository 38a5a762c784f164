"""The benchmark's inputs are sound: its generated packs load, and both matchers decide them identically on its
corpus (the scaling rows compare like with like). Nothing here is timed; the benchmark itself is
``python -m benchmarks.run``."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import MATCHERS, REPO

from policy_engine import PolicyEngine, load_ruleset
from policy_engine.jsonio import parse_json

# The benchmark is a script beside the package, not part of it: load it from the checkout.
_spec = importlib.util.spec_from_file_location("benchmark_run", REPO / "benchmarks" / "run.py")
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)
corpus, generated_pack, for_pack = bench.corpus, bench.generated_pack, bench.for_pack


@pytest.fixture(scope="module")
def requests() -> list[dict]:
    return [parse_json(text) for text in corpus(300)]


@pytest.mark.parametrize("size", [10, 1000])
def test_generated_packs_load_and_the_matchers_agree_on_the_corpus(tmp_path, requests, size):
    path = tmp_path / f"g{size}.yaml"
    path.write_text(generated_pack(size), encoding="utf-8")
    ruleset = load_ruleset(path)
    assert len(ruleset.rules) == size
    engines = [PolicyEngine(ruleset, matcher=m) for m in MATCHERS]
    try:
        sent = for_pack(requests, ruleset)
        answers = [[(d.decision, d.rule_ids) for d in map(engine.evaluate, sent)] for engine in engines]
        assert all(a == answers[0] for a in answers[1:])
        assert sum(bool(ids) for _, ids in answers[0]) >= (1 if size == 10 else len(requests) // 10)  # rules fire
    finally:
        for engine in engines:
            engine.close()


def test_the_acceptance_corpus_is_valid():
    engine = PolicyEngine.from_path(matcher="python")
    decisions = [engine.evaluate(parse_json(text)) for text in corpus(100, kind="cases")]
    assert sum(bool(d.trail) for d in decisions) > len(decisions) // 2  # mostly requests that fire rules
