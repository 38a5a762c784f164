"""Attacks on the engine-owned counters and their stores (session 23's fail-closed sweep): a caller, an operator or
a failing store must never make the engine count less than it should, decide without the counters, or raise
anything but the package's own errors."""

from __future__ import annotations

import datetime as dt
import os
import re
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import test_state
from conftest import fresh_redis, needs_redis
from test_state import _free_port, fired, qr

from policy_engine import PolicyEngine, StateError
from policy_engine.errors import StoreUnavailableError
from policy_engine.state import SQLiteStore, StoreURLError, open_store

#: A factory of engines on one store, for memory, SQLite and Redis (test_state's fixture).
engines = test_state.engines


@pytest.mark.parametrize("status", ["failed", "reversed"])
def test_a_retry_of_a_payment_reported_failed_or_reversed_is_refused_not_allowed_uncounted(engines, status):
    """Reported failed, a payment stops counting; a retry under its id must not get its recorded allow back, or the
    payment goes ahead uncounted: CNY 400 allowed, reported failed, retried (allow), then CNY 400 more fits the
    CNY 500 static-QR day, CNY 800 paid."""
    assert fired(engines().evaluate(qr("p", 400))) == ("allow", ())
    engines().report("p", status)
    with pytest.raises(StateError, match=f"reported {status}.*new request_id") as refused:
        engines().evaluate(qr("p", 400))
    assert (refused.value.code, refused.value.request_id) == ("conflict", "p")
    assert fired(engines().evaluate(qr("q", 400))) == ("allow", ())  # p still does not count: it failed
    engines().report("q", "completed")
    assert fired(engines().evaluate(qr("q", 400))) == ("allow", ())  # a completed payment's retry: its decision


def test_a_future_dated_payment_does_not_prune_the_rows_todays_windows_need(engines):
    """Retention prunes rows older than a payment's windows reach; counted back from a payment dated 2099, that was
    every row of the payer, so one future-dated payment reset today's CNY 500 static-QR cap (today: the real one,
    as retention can only trust the clock)."""
    now = dt.datetime.now(dt.UTC).isoformat()
    assert fired(engines().evaluate(qr("a", 500) | {"timestamp": now})) == ("allow", ())
    future = qr("f", 1) | {"timestamp": "2099-06-10T14:30:00+08:00"}
    assert fired(engines().evaluate(future)) == ("allow", ())  # its own day is empty (DESIGN §4: known)
    assert fired(engines().evaluate(qr("b", 500) | {"timestamp": now})) == ("deny", ("CMP-010",))
    assert engines().counters(qr("z", 1) | {"timestamp": now})["history.qr_static_daily_used_cny"] == 500


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_sqlite_file_deleted_or_replaced_while_open_is_unavailable_not_a_second_set_of_counters(tmp_path: Path,
                                                                                                  how: str):
    """The open connection kept writing to the deleted file while an engine opened afterwards counted in a new one:
    CNY 400 in each, CNY 800 on a CNY 500 day."""
    path = tmp_path / "state.db"
    store = open_store(f"sqlite:///{path}")
    first = PolicyEngine.from_path(state=store)
    assert fired(first.evaluate(qr("a", 400))) == ("allow", ())
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    if how == "replaced":
        PolicyEngine.from_path(state=f"sqlite:///{tmp_path / 'other.db'}").close()
        (tmp_path / "other.db").rename(path)
    second = PolicyEngine.from_path(state=f"sqlite:///{path}")
    assert fired(second.evaluate(qr("b", 400))) == ("allow", ())
    for call in (lambda: first.evaluate(qr("c", 400)), lambda: first.report("a", "completed"),
                 lambda: first.counters(qr("c", 400)), store.ping):
        with pytest.raises(StoreUnavailableError, match="deleted or replaced after this engine opened it"):
            call()
    assert fired(second.evaluate(qr("c", 400))) == ("deny", ("CMP-010",))
    first.close()
    second.close()


@needs_redis
def test_a_redis_that_lost_its_data_under_a_running_engine_is_unavailable_not_empty_counters():
    """Redis restarted without persistence (here: flushed) read as a store where nobody ever paid: CNY 400 before,
    CNY 400 after, both allowed. A restarted engine accepts what the store holds now."""
    url = fresh_redis()
    store = open_store(url)
    engine = PolicyEngine.from_path(state=store)
    assert fired(engine.evaluate(qr("a", 400))) == ("allow", ())
    fresh_redis()
    for call in (lambda: engine.evaluate(qr("b", 400)), lambda: engine.report("a", "completed"),
                 lambda: engine.counters(qr("b", 400)), store.ping):
        with pytest.raises(StoreUnavailableError, match="lost its data since this engine opened it"):
            call()
    engine.close()
    restarted = PolicyEngine.from_path(state=url)
    assert fired(restarted.evaluate(qr("b", 400))) == ("allow", ())
    assert fired(restarted.evaluate(qr("c", 400))) == ("deny", ("CMP-010",))
    restarted.close()


def test_a_redis_password_never_appears_in_a_stores_errors():
    """The store's errors named it by its URL, password included: in the service's 503 bodies, its readiness
    answer and the command line's messages."""
    pytest.importorskip("redis")
    url = f"redis://:s3cret-pw@127.0.0.1:{_free_port()}/0"  # nothing listens there
    with pytest.raises(StoreUnavailableError) as unreachable:
        PolicyEngine.from_path(state=url)
    with pytest.raises(StoreURLError) as unsupported:
        open_store("postgres://admin:s3cret-pw@db/payments")
    for error in (unreachable, unsupported):
        assert "s3cret-pw" not in str(error.value) and ":***@" in str(error.value)


def test_threads_waiting_on_a_sqlite_database_another_process_holds_each_wait_the_busy_timeout_not_in_turn(
        tmp_path: Path):
    """Each waiting thread waited its whole busy timeout (30 s) in turn behind the store's lock: the eighth 240 s,
    and a readiness probe behind them all. Now every call gives up within twice the timeout; once the database is
    free a retry decides and counts once."""
    path = tmp_path / "state.db"
    store = SQLiteStore(str(path), busy_timeout=0.5)
    engine = PolicyEngine.from_path(state=store)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")

    def attempt(i: int) -> float:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match=r"busy|locked"):
            engine.evaluate(qr(f"t{i}", 100))
        return time.monotonic() - started

    with ThreadPoolExecutor(8) as pool:
        waited = list(pool.map(attempt, range(8)))
    assert max(waited) < 2.5, waited  # in turn: 0.5, 1.0, ... 4.0 s
    holder.execute("ROLLBACK")
    holder.close()
    assert [fired(engine.evaluate(qr("t0", 100))) for _ in range(2)] == [("allow", ())] * 2
    assert engine.counters(qr("z", 1))["history.qr_static_daily_used_cny"] == 100
    engine.close()


@pytest.mark.parametrize("request_id", [5, None, ["p"]])
def test_a_report_for_an_id_that_is_not_a_string_is_an_unknown_request_in_every_store(engines, request_id):
    """Redis raised a TypeError wrapped as an evaluation fault and SQLite called itself unreachable or corrupt."""
    with pytest.raises(StateError, match="is not a string") as refused:
        engines().report(request_id, "failed")
    assert refused.value.code == "unknown_request"


def test_a_sqlite_file_corrupted_while_open_is_unavailable_naming_the_store(tmp_path: Path):
    """A malformed page read inside the transaction was a generic evaluation fault (a service's 500) that did not
    name the store; it is the store's failure (503, retry later) like any other."""
    path = tmp_path / "state.db"
    engine = PolicyEngine.from_path(state=f"sqlite:///{path}")
    for i in range(30):
        engine.evaluate(qr(f"x{i}", 1, payer=f"p{i}"))
    engine.close()
    engine = PolicyEngine.from_path(state=f"sqlite:///{path}")
    with path.open("r+b") as fh:
        fh.seek(4096)
        fh.write(bytes(range(256)) * 32)
    with pytest.raises(StoreUnavailableError, match=f"{path} is unreachable or corrupt .*malformed"):
        engine.evaluate(qr("y", 1, payer="p3"))
    engine.close()


@needs_redis
@pytest.mark.parametrize("planted", ["not json", "[1, 2]", None])
def test_a_redis_entry_this_engine_did_not_write_is_unavailable_naming_the_key(planted):
    """An entry that is not this engine's JSON was a generic evaluation fault (JSONDecodeError, TypeError)."""
    redis = pytest.importorskip("redis")
    url = fresh_redis()
    engine = PolicyEngine.from_path(state=url)
    engine.evaluate(qr("a", 100))
    key = "pe:e:{u-1}:h:history.qr_static_daily_used_cny"
    with redis.Redis.from_url(url) as db:
        if planted is None:
            db.hdel(key, "a")  # the window index names an entry that is not there
        else:
            db.hset(key, "a", planted)
    with pytest.raises(StoreUnavailableError, match=f"is corrupt: {re.escape(key)} holds"):
        engine.evaluate(qr("b", 100))
    engine.close()


_DISK_FULL = """
import os, resource, signal, sys
from test_state import qr
from policy_engine import PolicyEngine
from policy_engine.errors import StoreUnavailableError
path = sys.argv[1]
engine = PolicyEngine.from_path(state=f"sqlite:///{path}")
engine.evaluate(qr("warm", 1, payer="w"))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
limit = max(os.path.getsize(path), os.path.getsize(path + "-wal")) + 4096
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
for i in range(50):
    try:
        engine.evaluate(qr(f"p{i}", 100, payer=f"u{i}"))
    except StoreUnavailableError as exc:
        print("full", i, exc, file=sys.stderr)
        break
else:
    sys.exit("the disk never filled")
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
print(engine.evaluate(qr(f"p{i}", 100, payer=f"u{i}")).decision.value)
print(engine.evaluate(qr(f"p{i}", 100, payer=f"u{i}")).decision.value)
print(engine.counters(qr("z", 1, payer=f"u{i}"))["history.qr_static_daily_used_cny"])
"""


def test_a_full_disk_is_unavailable_and_a_retry_after_it_decides_and_counts_once(tmp_path: Path):
    """The file size limit (RLIMIT_FSIZE, in a child process) stands in for a full disk."""
    done = subprocess.run([sys.executable, "-c", _DISK_FULL, str(tmp_path / "state.db")], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    assert "is unreachable or corrupt" in done.stderr
    assert done.stdout.split() == ["allow", "allow", "100"]
