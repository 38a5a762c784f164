"""Engine-owned counters (DESIGN.md §10): a state store keeps the payments, the engine computes the pack's
history.* counters from them, records each payment with its decision idempotently by request_id, and fails
closed when the store cannot be used."""

from __future__ import annotations

import io
import json
import multiprocessing
import multiprocessing.synchronize
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import base_request, decision_json_lines, fresh_redis, needs_redis

from policy_engine import EvaluationError, PolicyEngine, RequestError, StateError
from policy_engine.aggregates import FOREVER
from policy_engine.cli import main
from policy_engine.state import StoreURLError, open_store

BEIJING_DAY = "2025-06-10T{}+08:00"


def qr(rid: str, amount: int | str, at: str = "14:30:00", payer: str = "u-1") -> dict:
    return base_request(request_id=rid, channel="qr_static", amount__value=amount, timestamp=BEIJING_DAY.format(at),
                        payer__id=payer)


def fired(decision) -> tuple[str, tuple[str, ...]]:
    return decision.decision.value, decision.rule_ids


@pytest.fixture(params=["memory", "sqlite-restarted", pytest.param("redis-restarted", marks=needs_redis)])
def engines(request, tmp_path: Path):
    """A factory of engines on one store: memory keeps one engine; SQLite and Redis open a new engine (a restart,
    or another instance) on the same store for every payment."""
    if request.param == "memory":
        engine = PolicyEngine.from_path(state="memory://")
        yield lambda: engine
        engine.close()
        return
    url = fresh_redis() if request.param == "redis-restarted" else f"sqlite:///{tmp_path / 'state.db'}"
    opened: list[PolicyEngine] = []

    def restart() -> PolicyEngine:
        if opened:
            opened[-1].close()
        opened.append(PolicyEngine.from_path(state=url))
        return opened[-1]

    yield restart
    opened[-1].close()


def test_static_qr_daily_cap_done_means(engines):
    """CNY 200, 200, 200, 100, 1 on one Beijing day: allow, allow, deny (CMP-010), allow, deny; a retry of the
    second does not count; after it is reported reversed CNY 200 more is allowed; the next day starts at zero."""
    results = [fired(engines().evaluate(qr(f"p{i}", amount, f"1{i}:00:00")))
               for i, amount in enumerate([200, 200, 200, 100, 1])]
    assert results == [("allow", ()), ("allow", ()), ("deny", ("CMP-010",)), ("allow", ()), ("deny", ("CMP-010",))]
    retry = engines().evaluate(qr("p1", 200, "11:00:00"))
    assert fired(retry) == ("allow", ())
    assert fired(engines().evaluate(qr("p5", 1, "15:00:00"))) == ("deny", ("CMP-010",))  # the retry added nothing
    engines().report("p1", "reversed")
    assert fired(engines().evaluate(qr("p6", 200, "16:00:00"))) == ("allow", ())
    assert fired(engines().evaluate(qr("p7", 1, "16:30:00"))) == ("deny", ("CMP-010",))
    # 00:00 in Beijing is the next calendar day although it is still 2025-06-10 in UTC
    next_day = base_request(request_id="p8", channel="qr_static", amount__value=500,
                            timestamp="2025-06-10T16:00:00Z")
    assert fired(engines().evaluate(next_day)) == ("allow", ())
    assert engines().counters(qr("probe", 1, "23:59:59"))["history.qr_static_daily_used_cny"] == 500


def test_a_calendar_day_counts_late_arrivals_and_other_payers_do_not_count(engines):
    engines().evaluate(qr("late", 400, "23:00:00"))  # arrives first, happened later the same day
    assert fired(engines().evaluate(qr("early", 200, "08:00:00"))) == ("deny", ("CMP-010",))
    assert fired(engines().evaluate(qr("other", 500, "09:00:00", payer="u-2"))) == ("allow", ())


def test_the_evidence_shows_the_engines_counter_and_no_default(engines):
    engines().evaluate(qr("a", 450))
    decision = engines().evaluate(qr("b", 100, "15:00:00"))
    (entry,) = decision.trail
    assert entry.evidence["history.qr_static_daily_used_cny"] == 450
    assert entry.defaulted == ()
    assert not [p for p in decision.defaulted if p.startswith("history.")]


@pytest.mark.parametrize("store", ["memory", "sqlite", pytest.param("redis", marks=needs_redis)])
def test_rows_no_window_needs_are_pruned_and_lifetime_rows_are_kept(tmp_path: Path, store: str):
    """A payment 40 days after another prunes the earlier one's rows for the daily and hourly counters (past
    their reach and a week for late arrivals) but not for the lifetime ones, and the counters stay right."""
    url = {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path / 'state.db'}"}.get(store) or fresh_redis()
    state = open_store(url)
    engine = PolicyEngine.from_path(state=state)
    engine.evaluate(base_request(request_id="old", channel="qr_static", amount__value=100,
                                 timestamp="2025-05-01T10:00:00+08:00"))
    engine.evaluate(base_request(request_id="week-later", channel="qr_static", amount__value=100,
                                 timestamp="2025-05-08T10:00:00+08:00"))

    def instants(aggregate: str) -> int:
        with state.transaction() as txn:
            return len(txn.rows(aggregate, "u-1", *FOREVER))

    assert instants("history.qr_static_daily_used_cny") == 2  # within a week of late arrivals: kept
    engine.evaluate(qr("new", 100))  # 2025-06-10
    for daily in ("history.qr_static_daily_used_cny", "history.payer_txn_count_1h"):
        assert instants(daily) == 1, daily
    assert instants("history.lifetime_txn_count") == 3
    counters = engine.counters(qr("probe", 1, "23:00:00"))
    assert counters["history.qr_static_daily_used_cny"] == 100
    assert counters["history.payer_txn_count_1h"] == 0
    engine.close()


def test_velocity_counts_attempts_in_a_sliding_hour():
    engine = PolicyEngine.from_path(state="memory://")
    for minute in range(10):
        engine.evaluate(base_request(request_id=f"v{minute}", timestamp=BEIJING_DAY.format(f"14:{minute:02}:00")))
    probe = base_request(timestamp=BEIJING_DAY.format("15:00:00"))
    assert engine.counters(probe)["history.payer_txn_count_1h"] == 9  # (14:00, 15:00]: 14:00 itself is out
    decision = engine.evaluate(base_request(request_id="v10", timestamp=BEIJING_DAY.format("14:59:59")))
    assert "RSK-003" in decision.rule_ids


def test_retry_with_another_body_is_a_conflict_and_changes_nothing(engines):
    engines().evaluate(qr("p", 400))
    with pytest.raises(StateError) as info:
        engines().evaluate(qr("p", 100))
    assert info.value.code == "conflict" and "different body" in str(info.value)
    assert engines().counters(qr("probe", 1))["history.qr_static_daily_used_cny"] == 400


def test_report_needs_a_known_payment_and_a_known_status(engines):
    with pytest.raises(StateError, match="no payment 'ghost'"):
        engines().report("ghost", "completed")
    engines().evaluate(qr("p", 100))
    with pytest.raises(StateError, match="not one of completed, failed, reversed"):
        engines().report("p", "refunded")
    engines().report("p", "failed")
    assert engines().counters(qr("probe", 1))["history.qr_static_daily_used_cny"] == 0


def test_a_request_carrying_history_is_refused_with_a_store():
    engine = PolicyEngine.from_path(state="memory://")
    with pytest.raises(RequestError) as info:
        engine.evaluate(base_request(history={"qr_static_daily_used_cny": 0}))
    assert info.value.violations[0].path == "$.history"


def test_without_a_store_nothing_changes():
    engine = PolicyEngine.from_path()
    request = qr("p", 400) | {"history": {"qr_static_daily_used_cny": 200}}
    assert fired(engine.evaluate(request)) == ("deny", ("CMP-010",))
    assert fired(engine.evaluate(request)) == ("deny", ("CMP-010",))  # nothing recorded, nothing counted twice
    with pytest.raises(StateError, match="needs a state store"):
        engine.report("p", "completed")


def test_a_corrupt_or_unreachable_store_is_an_evaluation_error(tmp_path: Path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database" * 512)
    with pytest.raises(EvaluationError, match="unreachable or corrupt"):
        PolicyEngine.from_path(state=f"sqlite:///{garbage}")
    with pytest.raises(EvaluationError, match="unreachable or corrupt"):
        PolicyEngine.from_path(state=f"sqlite:///{tmp_path / 'no-such-dir' / 'state.db'}")
    path = tmp_path / "state.db"
    engine = PolicyEngine.from_path(state=f"sqlite:///{path}")
    with sqlite3.connect(path) as other:
        other.execute("DROP TABLE entries")
    with pytest.raises(EvaluationError):
        engine.evaluate(qr("p", 100))
    engine.close()


def test_an_unknown_state_url_is_refused():
    with pytest.raises(StoreURLError, match=r"memory:// .* sqlite:///path or redis://host:port/db"):
        PolicyEngine.from_path(state="postgres://db")


def _free_port() -> int:
    """A loopback port nobody listens on (once the probing socket is closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_redis_is_an_evaluation_error_within_the_connect_timeout():
    port = _free_port()
    started = time.monotonic()
    with pytest.raises(EvaluationError, match=f"redis://127.0.0.1:{port}/0 is unreachable or corrupt"):
        PolicyEngine.from_path(state=f"redis://127.0.0.1:{port}/0")
    assert time.monotonic() - started < 5


@pytest.mark.skipif(not shutil.which("redis-server"), reason="no redis-server binary to start and stop")
def test_redis_going_away_after_opening_is_an_evaluation_error_never_an_allow():
    port = _free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                engine = PolicyEngine.from_path(state=f"redis://127.0.0.1:{port}/0")
                break
            except EvaluationError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        engine.evaluate(qr("p", 100))
    finally:
        server.terminate()
        server.wait(timeout=10)
    with pytest.raises(EvaluationError, match="unreachable or corrupt"):
        engine.evaluate(qr("q", 100))
    with pytest.raises(EvaluationError, match="unreachable or corrupt"):
        engine.report("p", "completed")
    engine.close()


def test_importing_the_engine_does_not_import_the_redis_client():
    code = ("import sys, policy_engine; policy_engine.PolicyEngine.from_path(state='memory://'); "
            "assert 'redis' not in sys.modules, 'redis imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_state_applies_a_stream_in_order(tmp_path: Path):
    stream = tmp_path / "payments.jsonl"
    lines = [qr(f"p{i}", amount, f"1{i}:00:00") for i, amount in enumerate([200, 200, 200, 100, 1])]
    lines.append(qr("p1", 300, "11:00:00"))  # same id, another body
    stream.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'state.db'}"
    out = io.StringIO()
    assert main(["evaluate", "--json", "--state", url, str(stream)], out=out, err=io.StringIO()) == 2
    records = decision_json_lines(out.getvalue())
    assert [r.get("decision") for r in records[:5]] == ["allow", "allow", "deny", "allow", "deny"]
    assert (records[5]["error"], records[5]["line"]) == ("conflict", 6)
    # a second run over the same store: every payment is a retry and gets its recorded decision
    out = io.StringIO()
    stream.write_text("".join(json.dumps(r) + "\n" for r in lines[:5]), encoding="utf-8")
    assert main(["evaluate", "--json", "--state", url, str(stream)], out=out, err=io.StringIO()) == 0
    assert [r["decision"] for r in decision_json_lines(out.getvalue())] == ["allow", "allow", "deny", "allow", "deny"]
    err = io.StringIO()
    assert main(["evaluate", "--state", f"sqlite:///{tmp_path}", str(stream)], out=io.StringIO(), err=err) == 3
    assert "unreachable or corrupt" in err.getvalue()


def test_a_batch_yields_a_conflict_in_its_place_and_goes_on():
    engine = PolicyEngine.from_path(state="memory://")
    results = list(engine.evaluate_many([qr("p", 100), qr("p", 200), qr("q", 450)]))
    assert isinstance(results[1], StateError) and results[1].request_id == "p"
    assert fired(results[2]) == ("deny", ("CMP-010",))  # 100 + 450 > 500: the conflicting body was not counted


PAYERS = 20


def _race(url: str, worker: int, start: multiprocessing.synchronize.Event, results: multiprocessing.Queue) -> None:
    engine = PolicyEngine.from_path(state=url)
    start.wait()
    try:
        results.put([engine.evaluate(qr(f"w{worker}-{payer}-{i}", 100, f"14:{i:02}:00", payer=f"u-{payer}")).decision
                     .value for payer in range(PAYERS) for i in range(10)])
    finally:
        engine.close()


@pytest.mark.parametrize("store", ["sqlite", pytest.param("redis", marks=needs_redis)])
def test_two_processes_racing_on_one_payers_limit_never_both_get_under_it(tmp_path: Path, store: str):
    """Twenty CNY 100 static-QR payments for one payer from two processes on one SQLite file or one Redis: the
    cap of CNY 500 a day lets exactly five through, however the two interleave (for twenty payers in turn, so
    they do)."""
    url = fresh_redis() if store == "redis" else f"sqlite:///{tmp_path / 'state.db'}"
    PolicyEngine.from_path(state=url).close()  # create the file before the race
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=_race, args=(url, w, start, results)) for w in range(2)]
    for w in workers:
        w.start()
    start.set()
    answers = [results.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    for payer in range(PAYERS):
        outcomes = [o for a in answers for o in a[payer * 10:(payer + 1) * 10]]
        assert sorted(outcomes) == ["allow"] * 5 + ["deny"] * 15, payer


def test_threads_sharing_one_engine_never_both_get_under_a_limit():
    engine = PolicyEngine.from_path(state="memory://")
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(lambda i: engine.evaluate(qr(f"t{i}", 100)).decision.value, range(20)))
    assert sorted(outcomes) == ["allow"] * 5 + ["deny"] * 15
