"""Property: every counter the engine keeps equals a brute-force recount over the recorded history, on every
store, for generated sequences of payments with retries, conflicting retries, downstream reports, out-of-order
instants and instants on window edges (sliding hour, Beijing and New York midnights, a month and a year end).

The recount is written independently of the engine: calendar windows compare local dates, sliding windows compare
instants, ``since`` finds the latest event by a scan; outcomes are the decisions the engine handed out."""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import PACK_HEADER, base_request, fresh_redis, needs_redis
from hypothesis import given
from hypothesis import strategies as st

from policy_engine import PolicyEngine, StateError, load_ruleset

BEIJING, NEW_YORK = ZoneInfo("Asia/Shanghai"), ZoneInfo("America/New_York")
USD_RATE = Fraction("7.2")
#: 2025-12-31 15:00 UTC: Beijing's new year (and month, and day) begins an hour later, New York's five hours
#: after that; generated instants fall within two days of it.
BASE = dt.datetime(2025, 12, 31, 15, 0, tzinfo=dt.UTC)
EDGES = [60, 61, 59, 120, 300, 301, 540, 1500, 1560, 1561]  # minutes after BASE: midnights, whole hours apart

AGGREGATES = """\
aggregates:
  history.payer_txn_count_1h: {count: true, by: payer.id, window: {last: 1h}, counts: attempts}
  history.decline_count_1h: {count: true, by: payer.id, window: {last: 24h}, counts: denied}
  history.qr_static_daily_used_cny:
    sum: derived.amount_cny
    where: {field: channel, op: eq, value: qr_static}
    by: payer.id
    window: {calendar: day, timezone: jurisdiction}
    counts: allowed
  history.game_topup_month_cny:
    sum: derived.amount_cny
    by: payer.id
    window: {calendar: month, timezone: America/New_York}
    counts: allowed
  history.fx_annual_used_usd:
    sum: derived.amount_usd
    by: payer.id
    window: {calendar: year, timezone: jurisdiction}
    counts: allowed
  history.tier_used_total_cny: {sum: derived.amount_cny, by: payer.id, window: lifetime, counts: allowed}
  history.lifetime_txn_count: {count_distinct: merchant.id, by: payer.id, window: lifetime, counts: attempts}
  history.sca_exempt_count_since_sca:
    count: true
    where: {not: {field: auth.sca_performed, op: eq, value: true}}
    by: payer.id
    window: {since: {field: auth.sca_performed, op: eq, value: true}}
    counts: allowed
"""
COUNTERS = ["payer_txn_count_1h", "decline_count_1h", "qr_static_daily_used_cny", "game_topup_month_cny",
            "fx_annual_used_usd", "tier_used_total_cny", "lifetime_txn_count", "sca_exempt_count_since_sca"]
# Every counter is read by a report rule (so the engine computes it); one deny rule makes outcomes vary.
RULES = "rules:\n" + "".join(f"""\
  - id: READ-{i}
    category: risk
    title: reads {name}
    when: {{field: history.{name}, op: gte, value: 0}}
    outcome: allow
    report: R{i}
    reason: Read.
    source: test
    verified: false
""" for i, name in enumerate(COUNTERS)) + """\
  - id: BIG
    category: risk
    title: big payments are denied
    when: {field: derived.amount_cny, op: gt, value: 2000}
    outcome: deny
    reason: Too big.
    source: test
    verified: false
"""


@pytest.fixture(scope="module")
def ruleset(tmp_path_factory):
    path = tmp_path_factory.mktemp("agg") / "pack.yaml"
    path.write_text(PACK_HEADER + AGGREGATES + RULES, encoding="utf-8")
    return load_ruleset(path)


@dataclass
class Paid:
    request: dict
    when: dt.datetime
    payer: str
    cny: Fraction
    usd: Fraction
    qr: bool
    sca: bool
    merchant: str
    outcome: str
    status: str = "pending"


def recount(history: list[Paid], payer: str, t: dt.datetime) -> dict[str, Fraction]:
    mine = [p for p in history if p.payer == payer]
    allowed = [p for p in mine if p.outcome != "deny" and p.status not in ("failed", "reversed")]
    events = [p.when for p in mine if p.sca and p.when <= t]
    since = max(events) if events else None
    day, year = t.astimezone(BEIJING).date(), t.astimezone(BEIJING).year
    month = t.astimezone(NEW_YORK).strftime("%Y-%m")
    return {
        "payer_txn_count_1h": Fraction(sum(t - dt.timedelta(hours=1) < p.when <= t for p in mine)),
        "decline_count_1h": Fraction(sum(t - dt.timedelta(hours=24) < p.when <= t and p.outcome == "deny"
                                         for p in mine)),
        "qr_static_daily_used_cny": sum((p.cny for p in allowed if p.qr and p.when.astimezone(BEIJING).date() == day),
                                        Fraction(0)),
        "game_topup_month_cny": sum((p.cny for p in allowed if p.when.astimezone(NEW_YORK).strftime("%Y-%m") == month),
                                    Fraction(0)),
        "fx_annual_used_usd": sum((p.usd for p in allowed if p.when.astimezone(BEIJING).year == year), Fraction(0)),
        "tier_used_total_cny": sum((p.cny for p in allowed), Fraction(0)),
        "lifetime_txn_count": Fraction(len({p.merchant for p in mine})),
        "sca_exempt_count_since_sca": Fraction(sum(not p.sca and (since is None or p.when > since) and p.when <= t
                                                   for p in allowed)),
    }


payments = st.fixed_dictionaries({
    "payer": st.sampled_from(["a", "b"]),
    "minute": st.one_of(st.sampled_from(EDGES), st.integers(0, 2 * 24 * 60)),
    "second": st.sampled_from([0, 0, 0, 59]),
    "amount": st.one_of(st.integers(1, 2500), st.decimals("0.01", "999.99", places=2)),
    "currency": st.sampled_from(["CNY", "CNY", "USD"]),
    "qr": st.booleans(),
    "sca": st.booleans(),
    "merchant": st.sampled_from(["m-1", "m-2", "m-3"]),
})
steps = st.lists(st.one_of(
    payments.map(lambda p: ("pay", p)),
    st.tuples(st.just("retry"), st.integers(0, 30)),
    st.tuples(st.just("conflict"), st.integers(0, 30)),
    st.tuples(st.just("report"), st.integers(0, 30), st.sampled_from(["completed", "failed", "reversed"])),
), min_size=1, max_size=25)


def run(engine: PolicyEngine, plan: list) -> list[Paid]:
    history: list[Paid] = []
    for n, step in enumerate(plan):
        if step[0] == "pay":
            p = step[1]
            when = BASE + dt.timedelta(minutes=p["minute"], seconds=p["second"])
            amount = Fraction(p["amount"])
            cny = amount * USD_RATE if p["currency"] == "USD" else amount
            request = base_request(request_id=f"r{n}", timestamp=when.isoformat(), payer__id=p["payer"],
                                   amount__value=str(p["amount"]), amount__currency=p["currency"],
                                   channel="qr_static" if p["qr"] else "online", auth__sca_performed=p["sca"],
                                   merchant__id=p["merchant"])
            decision = engine.evaluate(request)
            history.append(Paid(request, when, p["payer"], cny, cny / USD_RATE, p["qr"], p["sca"], p["merchant"],
                                decision.decision.value))
        elif history:
            paid = history[step[1] % len(history)]
            if step[0] == "retry" and paid.status in ("failed", "reversed"):
                with pytest.raises(StateError, match=f"reported {paid.status}"):  # it no longer counts
                    engine.evaluate(dict(paid.request))
            elif step[0] == "retry":
                assert engine.evaluate(dict(paid.request)).decision.value == paid.outcome
            elif step[0] == "conflict":
                with pytest.raises(StateError):
                    engine.evaluate({**paid.request, "extra": {"note": "another body"}})
            else:
                engine.report(paid.request["request_id"], step[2])
                paid.status = step[2]
    return history


@pytest.mark.parametrize("store", ["memory", "sqlite", pytest.param("redis", marks=needs_redis)])
@given(plan=steps, probes=st.lists(st.one_of(st.sampled_from(EDGES), st.integers(-60, 3 * 24 * 60)), max_size=4))
def test_every_counter_equals_a_recount_of_the_recorded_history(ruleset, store, plan, probes):
    with tempfile.TemporaryDirectory() as tmp:
        url = {"memory": lambda: "memory://", "sqlite": lambda: f"sqlite:///{Path(tmp) / 'state.db'}",
               "redis": fresh_redis}[store]()
        engine = PolicyEngine(ruleset, state=url)
        try:
            history = run(engine, plan)
            # each payment's instant and the instants where it leaves the sliding windows (t + 1h, t + 24h)
            instants = [p.when + dt.timedelta(hours=h) for p in history for h in (0, 1, 24)]
            instants += [BASE + dt.timedelta(minutes=m) for m in probes]
            for payer in ("a", "b"):
                for t in instants:
                    probe = base_request(request_id="probe", timestamp=t.isoformat(), payer__id=payer)
                    got = {k.split(".", 1)[1]: Fraction(v) for k, v in engine.counters(probe).items()}
                    assert got == recount(history, payer, t), (payer, t)
        finally:
            engine.close()


def test_sums_stay_exact_across_currencies(ruleset):
    engine = PolicyEngine(ruleset, state="memory://")
    for n, value in enumerate(["0.10", "0.20"]):
        engine.evaluate(base_request(request_id=f"u{n}", amount__value=value, amount__currency="USD",
                                     timestamp=BASE.isoformat()))
    got = engine.counters(base_request(timestamp=BASE.isoformat()))
    assert got["history.fx_annual_used_usd"] == Decimal("0.30")
    assert got["history.tier_used_total_cny"] == Decimal("2.160")
