"""Shadow packs, rollout and trace context (README "Shadow and rollout"): a shadow never changes, fails or
records the decision returned; a rollout sends a stable share of payers to the candidate and says so in every
decision; the caller's trace context reaches the decision log."""

from __future__ import annotations

import json
import math
import multiprocessing
import sys
import threading
from pathlib import Path

import jsonschema
import pytest
from conftest import PACK_HEADER, RULES, base_request
from hypothesis import HealthCheck, given, settings

from policy_engine import EvaluationError, PolicyEngine, RequestError, load_ruleset
from policy_engine.audit import AuditLog
from policy_engine.replay import replay
from policy_engine.resources import load_schema
from policy_engine.testing.strategies import requests
from policy_engine.traffic import BUCKETS, CallContext, CallContextError, DecisionEvent, Rollout, RolloutError, bucket

DECISION_SCHEMA = jsonschema.Draft202012Validator(load_schema("decision"))
DEFAULT = load_ruleset(RULES)
#: A shadow that decides differently from the default pack on ordinary payments: every payment above CNY 50 is
#: held for review.
STRICT = PACK_HEADER.replace("pack: fixture", "pack: strict") + """\
rules:
  - id: STRICT
    category: risk
    title: Everything above 50
    when: {field: amount.value, op: gt, value: 50}
    outcome: review
    reason: held
    source: test
    verified: false
"""
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def strict(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("strict") / "strict.yaml"
    path.write_text(STRICT, encoding="utf-8")
    return path


def comparable(decision) -> dict:
    out = decision.to_dict()
    out.pop("elapsed_us")
    return out


class Events:
    def __init__(self) -> None:
        self.seen: list[DecisionEvent] = []
        self.lock = threading.Lock()

    def __call__(self, event: DecisionEvent) -> None:
        with self.lock:
            self.seen.append(event)


@pytest.fixture(scope="module")
def shadowed(strict):
    """The default pack, shadowed by STRICT and by a copy of itself whose matcher raises on every request."""
    plain = PolicyEngine(DEFAULT)
    engine = PolicyEngine(DEFAULT, shadow=[strict, RULES])
    broken = engine._packs.shadow_packs[1].pack.matcher

    def fault(*args):
        raise RuntimeError("injected shadow fault")

    broken.match = fault  # type: ignore[method-assign]
    events = Events()
    engine.add_listener(events)
    yield plain, engine, events
    plain.close()
    engine.close()


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(request=requests())
def test_a_shadow_never_changes_or_fails_the_decision_returned(shadowed, request):
    plain, engine, events = shadowed
    try:
        expected = comparable(plain.evaluate(request))
    except RequestError:
        with pytest.raises(RequestError):
            engine.evaluate(request)
        return
    assert comparable(engine.evaluate(request)) == expected
    assert engine.drain(10)
    event = events.seen[-1]
    assert comparable(event.decision) == expected
    strict_result, broken_result = event.shadows
    assert broken_result.decision is None and "injected shadow fault" in broken_result.error
    assert strict_result.pack["pack"] == "strict"
    if strict_result.decision is None:  # refused as that pack would refuse it if promoted (a counter it never reads)
        assert strict_result.error.startswith("RequestError")
    assert (strict_result in event.flips) == (strict_result.outcome not in (None, expected["decision"]))


def test_flips_reach_the_decision_log_the_listeners_and_the_stats(tmp_path: Path, strict):
    log_path = tmp_path / "decisions.jsonl"
    log = AuditLog(log_path, fsync="never")
    engine = PolicyEngine(DEFAULT, audit=log, shadow=[strict, RULES])
    events = Events()
    engine.add_listener(events)
    requests_ = [base_request(request_id=f"r{n}", amount__value=amount) for n, amount in enumerate((10, 100, 200))]
    decisions = [engine.evaluate(r) for r in requests_]
    assert engine.drain(10)
    assert [d.decision for d in decisions] == ["allow"] * 3
    assert [len(e.flips) for e in events.seen] == [0, 1, 1]  # STRICT holds the two above 50; the copy agrees
    stats = engine.stats()
    assert (stats["shadow_evaluated"], stats["shadow_flips"], stats["shadow_failed"]) == (6, 2, 0)
    engine.close()
    log.close()
    records = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines()]
    shadows = [r for r in records if r.get("kind") == "shadow"]
    assert [r["request_id"] for r in records if "kind" not in r] == ["r0", "r1", "r2"]
    assert [[s["flip"] for s in r["shadows"]] for r in sorted(shadows, key=lambda r: r["request_id"])] == [
        [False, False], [True, False], [True, False]]
    assert shadows[1]["shadows"][0]["decision"]["decision"] == "review"
    assert shadows[1]["decided"] == "allow"
    # replaying the log re-decides the decisions and passes over the shadow records
    report = replay(PolicyEngine(DEFAULT), ((n, r, None) for n, r in enumerate(records, 1)))
    assert report.ok and report.records == 3


def qr(rid: str, amount: int) -> dict:
    return base_request(request_id=rid, channel="qr_static", amount__value=amount)


def test_a_shadow_with_a_state_store_reads_the_counters_and_records_nothing(strict):
    """The default pack caps static-QR payments at CNY 500 a day. Its identical shadow decides with the
    counters the primary read (never a flip), and the store holds what an engine without shadows records."""
    plain = PolicyEngine(DEFAULT, state="memory://")
    engine = PolicyEngine(DEFAULT, state="memory://", shadow=[RULES, strict])
    events = Events()
    engine.add_listener(events)
    payments = [qr(f"q{n}", amount) for n, amount in enumerate((200, 250, 100, 40, 10))]
    for payment in payments:
        assert comparable(engine.evaluate(payment)) == comparable(plain.evaluate(payment))
    assert engine.drain(10)
    outcomes = [e.decision.decision.value for e in events.seen]
    assert "allow" in outcomes and outcomes != ["allow"] * len(payments)  # the cap was reached
    assert [len([f for f in e.flips if f.pack["pack"] != "strict"]) for e in events.seen] == [0] * len(payments)
    assert [e.shadows[0].outcome for e in events.seen] == outcomes
    probe = qr("probe", 1)
    assert engine.counters(probe) == plain.counters(probe)  # nothing recorded twice, nothing for the shadows
    retry = engine.evaluate(payments[0])  # a retry returns the recorded decision; its shadows ran the first time
    assert engine.drain(10)
    assert retry.decision.value == outcomes[0] and events.seen[-1].shadows == ()
    plain.close()
    engine.close()


def test_a_full_shadow_queue_drops_shadows_never_decisions(strict):
    engine = PolicyEngine(DEFAULT, shadow=[strict], shadow_queue=1)
    release = threading.Event()
    events = Events()
    engine.add_listener(lambda event: release.wait(10))  # holds the shadow worker
    engine.add_listener(events)
    decisions = [engine.evaluate(base_request(request_id=f"r{n}")) for n in range(5)]
    assert [d.decision for d in decisions] == ["allow"] * 5
    dropped = engine.stats()["shadow_dropped"]
    assert dropped >= 2  # at most one job in the worker and one in the queue: the rest dropped
    assert sum(e.shadow_dropped for e in events.seen) == dropped
    release.set()
    assert engine.drain(10)
    assert len(events.seen) == 5  # one event per decision, dropped or not
    assert sum(len(e.shadows) for e in events.seen) == 5 - dropped == engine.stats()["shadow_evaluated"]
    engine.close()


def _child_shadows(engine: PolicyEngine, results) -> None:
    before = engine.stats()["shadow_evaluated"]
    engine.evaluate(base_request(request_id="child"))
    results.put((engine.drain(10), engine.stats()["shadow_evaluated"] - before))


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
def test_a_forked_worker_process_runs_its_own_shadow_worker(strict):
    """A pre-forking server builds the engine, then forks: the child inherits the queue but not the thread."""
    engine = PolicyEngine(DEFAULT, shadow=[strict])
    engine.evaluate(base_request())  # the parent's worker is running
    assert engine.drain(10)
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_child_shadows, args=(engine, results))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert results.get(timeout=5) == (True, 1)
    engine.close()


def test_a_listener_that_raises_is_counted_and_the_decision_stands():
    engine = PolicyEngine(DEFAULT)

    def broken(event):
        raise ValueError("listener bug")

    engine.add_listener(broken)
    events = Events()
    engine.add_listener(events)
    assert engine.evaluate(base_request()).decision == "allow"
    assert engine.stats()["listener_errors"] == 1
    assert events.seen[0].arm is None and events.seen[0].shadows == ()
    engine.remove_listener(broken)
    engine.evaluate(base_request(request_id="t-2"))
    assert engine.stats()["listener_errors"] == 1
    engine.close()


# -- rollout -------------------------------------------------------------------------------------------------
def test_the_bucket_is_stable_and_a_share_takes_about_that_share_of_payers():
    assert bucket("u-1") == bucket("u-1") and 0 <= bucket("u-1") < BUCKETS
    assert bucket("u-1") == 9129  # fixed across hosts and releases: a payer keeps its arm
    payers = [f"payer-{n}" for n in range(10_000)]
    for share in (0.05, 0.3, 0.5):
        taken = sum(bucket(p) < Rollout(RULES, share).threshold for p in payers)
        bound = 5 * math.sqrt(len(payers) * share * (1 - share))  # five standard deviations of the binomial
        assert abs(taken - share * len(payers)) < bound, (share, taken)


@pytest.mark.parametrize("share", [0, 0.0, 1, 1.0])
def test_share_zero_never_and_share_one_always_goes_to_the_candidate(strict, share):
    engine = PolicyEngine(DEFAULT, rollout=Rollout(strict, share))
    arms = {engine.evaluate(base_request(request_id=f"r{n}", payer__id=f"p{n}")).rollout["arm"]
            for n in range(300)}
    assert arms == ({"candidate"} if share == 1 else {"primary"})
    engine.close()


def test_the_candidate_decides_its_payers_and_every_decision_says_which_arm(strict):
    engine = PolicyEngine(DEFAULT, rollout=Rollout(strict, 0.4))
    events = Events()
    engine.add_listener(events)
    strict_digest = load_ruleset(strict).digest
    arms = []
    for n in range(400):
        payer = f"payer-{n}"
        decision = engine.evaluate(base_request(request_id=f"r{n}", payer__id=payer, amount__value=100))
        record = decision.to_dict()
        DECISION_SCHEMA.validate(record)
        expected = "candidate" if bucket(payer) < 4000 else "primary"
        assert record["rollout"] == {"arm": expected, "share": 0.4, "bucket": bucket(payer),
                                     "digest": record["ruleset"]["digest"]}
        assert (record["ruleset"]["digest"] == strict_digest) == (expected == "candidate")
        assert decision.decision == ("review" if expected == "candidate" else "allow")
        again = engine.evaluate(base_request(request_id=f"again{n}", payer__id=payer, amount__value=100))
        assert again.rollout["arm"] == expected  # deterministic
        arms.append(expected)
    assert 100 < arms.count("candidate") < 220
    assert [e.arm for e in events.seen[::2]] == arms
    assert engine.pack_info()["rollout"]["share"] == 0.4
    engine.close()


def test_a_retry_with_a_store_returns_the_recorded_rollout(strict):
    engine = PolicyEngine(DEFAULT, state="memory://", rollout=Rollout(strict, 1))
    first = engine.evaluate(qr("q1", 100))
    assert first.rollout["arm"] == "candidate"
    assert engine.evaluate(qr("q1", 100)).to_dict() == first.to_dict()
    engine.close()


def test_without_a_rollout_the_decision_has_no_rollout_record():
    engine = PolicyEngine(DEFAULT)
    decision = engine.evaluate(base_request())
    assert decision.rollout is None and "rollout" not in decision.to_dict()
    engine.close()


@pytest.mark.parametrize("share", [-0.1, 1.5, "0.5", True, float("nan")])
def test_a_share_outside_zero_to_one_is_refused(share):
    with pytest.raises(RolloutError, match="fraction from 0 to 1"):
        Rollout(RULES, share)


def test_an_invalid_request_is_refused_by_the_arm_and_never_allowed(strict):
    engine = PolicyEngine(DEFAULT, rollout=Rollout(strict, 1), shadow=[strict])
    with pytest.raises(RequestError):
        engine.evaluate(base_request(amount__value=-5))
    with pytest.raises(RequestError):
        engine.evaluate({"payer": "not an object"})  # no payer.id: the primary refuses it
    engine.close()


# -- trace context -----------------------------------------------------------------------------------------
def test_the_trace_context_goes_into_the_decision_log(tmp_path: Path):
    log_path = tmp_path / "decisions.jsonl"
    log = AuditLog(log_path, fsync="never")
    engine = PolicyEngine(DEFAULT, audit=log, state="memory://")
    context = CallContext.from_headers({"X-Request-Id": "req-42", "traceparent": TRACEPARENT,
                                        "TraceState": "vendor=abc"})
    engine.evaluate(base_request(), context=context)
    engine.evaluate_json(json.dumps(base_request(request_id="t-2")), context=CallContext(request_id="req-43"))
    engine.evaluate(base_request(request_id="t-3"))
    engine.close()
    log.close()
    records = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines()]
    assert records[0]["trace"] == {"request_id": "req-42", "traceparent": TRACEPARENT, "tracestate": "vendor=abc"}
    assert records[1]["trace"] == {"request_id": "req-43"}
    assert "trace" not in records[2]


@pytest.mark.parametrize("headers", [
    {"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"},  # all-zero trace id
    {"traceparent": "garbage"},
    {"traceparent": TRACEPARENT.upper()},
    {"x-request-id": "has space"},
    {"x-request-id": "x" * 201},
    {"tracestate": "bad\nline"},
])
def test_a_malformed_trace_header_is_dropped_by_from_headers_and_refused_when_built(headers):
    assert CallContext.from_headers(headers) == CallContext()
    ((name, value),) = headers.items()
    field = {"x-request-id": "request_id"}.get(name, name)
    with pytest.raises(CallContextError):
        CallContext(**{field: value})


def test_an_audit_failure_with_a_rollout_still_fails_closed(tmp_path: Path, strict):
    log = AuditLog(tmp_path / "log.jsonl", fsync="never")
    engine = PolicyEngine(DEFAULT, audit=log, rollout=Rollout(strict, 0.5))
    log.close()  # every write now fails
    with pytest.raises(EvaluationError):
        engine.evaluate(base_request())
    engine.close()
