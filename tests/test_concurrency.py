"""One engine shared by threads, reloaded under load, and inherited by forked worker processes: every decision
must be the one a single thread gets from the same pack version."""

from __future__ import annotations

import multiprocessing
import os
import random
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import pytest
from conftest import MATCHERS, PACK_HEADER, base_request

from policy_engine import PolicyEngine
from policy_engine.errors import RuleSetError

Answer = tuple[str, tuple[str, ...]]


def answer(engine: PolicyEngine, request: dict) -> Answer:
    d = engine.evaluate(request)
    return d.decision, tuple(e.rule_id for e in d.trail)


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads every 10 µs instead of 5 ms, so evaluations interleave inside the engine."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(before)


def run_threads(targets: list, timeout: float = 60) -> None:
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "a thread did not finish"


# -- many threads, one engine --------------------------------------------------------------------------------
@pytest.mark.parametrize("matcher", MATCHERS)
def test_threads_sharing_one_engine_decide_as_one_thread(cases, matcher, fast_switching):
    engine = PolicyEngine.from_path(None, matcher=matcher)
    try:
        expected = {c["id"]: answer(engine, c["request"]) for c in cases}
        assert len({d for d, _ in expected.values()}) == 4  # every outcome is exercised
        n_threads, per_thread = 4, 2000
        start = threading.Barrier(n_threads)
        wrong: list[tuple] = []
        errors: list[BaseException] = []
        done = [0] * n_threads

        def worker(t: int) -> None:
            rng = random.Random(t)
            try:
                start.wait()
                for n in range(per_thread):
                    case = rng.choice(cases)
                    rid = f"{case['id']}/{t}/{n}"
                    d = engine.evaluate(dict(case["request"], request_id=rid))
                    got = (d.decision, tuple(e.rule_id for e in d.trail))
                    if d.request_id != rid or got != expected[case["id"]]:
                        wrong.append((rid, d.request_id, got, expected[case["id"]]))
                    done[t] += 1
            except BaseException as exc:
                errors.append(exc)

        run_threads([lambda t=t: worker(t) for t in range(n_threads)])
        assert errors == []
        assert wrong == []
        assert done == [per_thread] * n_threads
    finally:
        engine.close()


# -- reload under load -----------------------------------------------------------------------------------------
def rule(rule_id: str, when: str, outcome: str) -> str:
    return (f"- id: {rule_id}\n  category: risk\n  title: {rule_id}\n  when: {when}\n  outcome: {outcome}\n"
            f"  reason: {rule_id} fired\n  source: test\n  verified: false\n")


PACK_A = (rule("BIG", "{field: amount.value, op: gte, value: 1000}", "deny")
          + rule("P2P", "{field: purpose, op: eq, value: p2p_transfer}", "step_up"))
PACK_B = (rule("BIG", "{field: amount.value, op: gte, value: 1000}", "review")
          + rule("USD", "{field: amount.currency, op: eq, value: USD}", "step_up"))
RELOAD_REQUESTS = [base_request(request_id=f"r{n}", amount={"value": v, "currency": c}, purpose=p,
                                payee={"country": "CN", "sanctions_hit": False})
                   for n, (v, c, p) in enumerate((v, c, p) for v in (100, 5000) for c in ("CNY", "USD")
                                                 for p in ("merchant_purchase", "p2p_transfer"))]


def header(version: str) -> str:
    assert 'version: "1"' in PACK_HEADER
    return PACK_HEADER.replace('version: "1"', f'version: "{version}"')


@pytest.mark.parametrize("matcher", MATCHERS)
def test_reload_under_load_never_mixes_packs(make_pack, tmp_path, matcher, fast_switching):
    path_a = make_pack(PACK_A, header=header("A"))
    path_b = make_pack(PACK_B, header=header("B"))
    digests, expected = {}, {}
    for version, path in (("A", path_a), ("B", path_b)):
        single = PolicyEngine.from_path(path, matcher=matcher)
        digests[version] = single.ruleset.digest
        expected[version] = [answer(single, r) for r in RELOAD_REQUESTS]
        single.close()
    assert expected["A"] != expected["B"]

    engine = PolicyEngine.from_path(path_a, matcher=matcher)
    matchers = [engine.pack.matcher]
    stop = threading.Event()
    errors: list[BaseException] = []
    wrong: list[tuple] = []
    seen = {"A": 0, "B": 0}
    reloads = 60

    def evaluator(t: int) -> None:
        rng = random.Random(t)
        try:
            while not stop.is_set():
                n = rng.randrange(len(RELOAD_REQUESTS))
                d = engine.evaluate(RELOAD_REQUESTS[n])
                version = d.ruleset["version"]
                got = (d.decision, tuple(e.rule_id for e in d.trail))
                if d.ruleset["digest"] != digests[version] or got != expected[version][n]:
                    wrong.append((version, n, got))
                seen[version] += 1
        except BaseException as exc:
            errors.append(exc)

    def reloader() -> None:
        try:
            for k in range(reloads):
                engine.reload(path_b if k % 2 == 0 else path_a)
                matchers.append(engine.pack.matcher)
        except BaseException as exc:
            errors.append(exc)
        finally:
            stop.set()

    run_threads([lambda t=t: evaluator(t) for t in range(4)] + [reloader])
    assert errors == []
    assert wrong == []
    assert seen["A"] > 0 and seen["B"] > 0
    assert len(set(map(id, matchers))) == reloads + 1
    assert engine.ruleset.version == "A"  # an even number of reloads ends on A

    # A pack that fails to load changes nothing.
    current = engine.pack.matcher
    broken = tmp_path / "broken.yaml"
    broken.write_text(header("C") + "rules:\n  - id: X\n    when: {all: [\n", encoding="utf-8")
    with pytest.raises(RuleSetError):
        engine.reload(broken)
    assert engine.ruleset.digest == digests["A"]
    assert engine.pack.matcher is current
    assert [answer(engine, r) for r in RELOAD_REQUESTS] == expected["A"]

    if matcher == "durable":
        assert [m.handle_sets for m in matchers[:-1]] == [0] * reloads
        assert current.handle_sets >= 1
    engine.close()
    if matcher == "durable":
        assert current.handle_sets == 0


# -- forked worker processes ----------------------------------------------------------------------------------
_POOL_ENGINE: PolicyEngine | None = None  # set in the parent before the pool forks; workers inherit it


def _pool_evaluate(request: dict) -> tuple[int, str, str, tuple[str, ...], str]:
    assert _POOL_ENGINE is not None
    d = _POOL_ENGINE.evaluate(request)
    return os.getpid(), d.request_id, d.decision, tuple(e.rule_id for e in d.trail), d.engine["matcher"]


@pytest.mark.parametrize("matcher", MATCHERS)
def test_forked_workers_decide_as_the_parent(cases, matcher):
    global _POOL_ENGINE
    _POOL_ENGINE = PolicyEngine.from_path(None, matcher=matcher)
    try:
        requests = [c["request"] for c in cases]
        local = [(r["request_id"], *answer(_POOL_ENGINE, r), matcher) for r in requests]
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
            remote = list(pool.map(_pool_evaluate, requests * 3))
        assert os.getpid() not in {pid for pid, *_ in remote}
        assert [tuple(r[1:]) for r in remote] == local * 3
    finally:
        _POOL_ENGINE.close()
        _POOL_ENGINE = None
