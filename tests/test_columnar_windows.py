"""The columnar backtest's counters stage (policy_engine.backtesting.columnar.windows) equals Replay, the row-by-row
oracle, on every row and every counter: window edges, same-instant ties, statuses and decisions, retries,
missing entities, unknown ``where``, cross-rate sums over dated FX tables, and every aggregate of the default
pack. The large sample is ``python -m benchmarks.columnar_counters --check N``."""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
from decimal import Decimal
from fractions import Fraction

import pytest
from conftest import DELETE, REPO, base_request
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("duckdb")
pytest.importorskip("pyarrow")

import duckdb

from policy_engine import load_ruleset
from policy_engine.backtesting.columnar.dialect import Dialect
from policy_engine.backtesting.columnar.windows import counters_query
from policy_engine.pack import CompiledPack

# The relation builder and the comparison live in the benchmark script beside the package: load it from the checkout.
_spec = importlib.util.spec_from_file_location("columnar_counters", REPO / "benchmarks" / "columnar_counters.py")
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # its dataclasses look their module up
_spec.loader.exec_module(bench)

FIXTURE = """\
pack: windows
version: "1"
reference_fx:
  - as_of: 2020-01-01
    rates: {CNY: "1", USD: "7.2", EUR: "7.8", GBP: "9.1", JPY: "0.048"}
  - as_of: 2025-06-10
    rates: {CNY: "1", USD: "7.1", EUR: "7.75", GBP: "9.1"}
timezones: {CN: Asia/Shanghai, US: America/New_York, GB: Europe/London}
lists:
  game_mcc:
    values: ["5816", {value: "5411", from: 2025-06-10, to: 2025-07-01}]
aggregates:
  history.payer_txn_count_1h:
    count_distinct: device.id
    by: payer.id
    window: {calendar: month, timezone: America/New_York}
    counts: attempts
  history.decline_count_1h:
    count: true
    where: {field: merchant.mcc, op: not_in, list: game_mcc}
    by: merchant.id
    window: {last: 90m}
    counts: denied
  history.lifetime_txn_count:
    count: true
    where: {field: channel, op: ne, value: pos}
    by: device.id
    window: {since: {field: auth.sca_performed, op: eq, value: true}}
    counts: attempts
  history.cash_today_usd:
    sum: derived.amount_usd
    where: {field: derived.amount_usd, op: between, value: [10, 5000]}
    by: payer.id
    window: {calendar: day, timezone: jurisdiction}
    counts: allowed
  history.fx_annual_used_usd:
    sum: derived.amount_eur
    where:
      any:
        - {field: {add: [derived.amount_usd, derived.amount_eur]}, op: gte, value: 20}
        - {field: risk_score, op: lte, ref: payer.age}
    by: payer.id
    window: lifetime
    counts: allowed
  history.near_threshold_count_7d:
    count_distinct: amount.currency
    by: payer.id
    window: {last: 7d}
    counts: allowed
  history.tier_used_year_cny:
    sum: derived.amount_cny
    where:
      all:
        - {field: payee.first_time, op: eq, value: true}
        - {field: merchant.country, op: missing}
    by: payer.id
    window: {calendar: year, timezone: jurisdiction}
    counts: allowed
rules:
  - id: READS-ALL
    category: risk
    title: Reads every counter
    when:
      any:
        - {field: history.payer_txn_count_1h, op: gt, value: 100}
        - {field: history.decline_count_1h, op: gt, value: 100}
        - {field: history.lifetime_txn_count, op: gt, value: 100}
        - {field: history.cash_today_usd, op: gt, value: 100000}
        - {field: history.fx_annual_used_usd, op: gt, value: 100000}
        - {field: history.near_threshold_count_7d, op: gt, value: 100}
        - {field: history.tier_used_year_cny, op: gt, value: 100000}
    outcome: review
    reason: Counters.
    source: test
    verified: false
"""

#: UTC instants at the edges the windows turn on: local midnights in Shanghai, New York and London, month and
#: year ends, the day the fixture's second FX table starts.
ANCHORS = [dt.datetime(2025, 6, 9, 16, tzinfo=dt.UTC), dt.datetime(2025, 6, 10, 4, tzinfo=dt.UTC),
           dt.datetime(2025, 6, 30, 16, tzinfo=dt.UTC), dt.datetime(2025, 7, 1, 4, tzinfo=dt.UTC),
           dt.datetime(2025, 12, 31, 16, tzinfo=dt.UTC), dt.datetime(2025, 6, 30, 23, tzinfo=dt.UTC)]
#: Offsets from an anchor: the sliding windows' lengths exactly, a second or a microsecond either side.
SECONDS = [0, 1, -1, 3600, -3600, 5400, 86400, -86400, 7 * 86400]
MICROS = [0, 0, 1, -1]
STATUSES = [None, None, "completed", "failed", "reversed"]
DECISIONS = [None, None, "allow", "step_up", "review", "deny"]


@pytest.fixture(scope="module")
def connection():
    with duckdb.connect(config={"threads": 1}) as con:
        yield con


@pytest.fixture(scope="module")
def default_pack() -> CompiledPack:
    return CompiledPack.build(load_ruleset())


@pytest.fixture(scope="module")
def fixture_pack(tmp_path_factory) -> CompiledPack:
    path = tmp_path_factory.mktemp("windows") / "pack.yaml"
    path.write_text(FIXTURE, encoding="utf-8")
    return CompiledPack.build(load_ruleset(path))


def counters(connection, pack: CompiledPack, records: list[dict]) -> dict[int, dict]:
    """The query's counters by line, after requiring that they equal Replay's on every row and counter."""
    query = counters_query(pack.ruleset, Dialect())
    rows = list(bench.prepared_records(pack, records))
    got = bench.run_counters(connection, bench.payments_table(pack, rows), query)
    assert bench.mismatches(query, got, bench.replay_of(pack, rows).counters()) == []
    return {line: {c.name: None if v is None else Fraction(v) / c.denominator
                   for c, v in zip(query.columns, values, strict=True)} for line, values in got.items()}


def stamp(when: dt.datetime) -> str:
    return when.isoformat()


@st.composite
def histories(draw, make) -> list[dict]:
    """Payments of two payers around the anchors, with retries (a repeated request_id) now and then."""
    records = []
    for i in range(draw(st.integers(1, 24))):
        when = draw(st.sampled_from(ANCHORS)) + dt.timedelta(seconds=draw(st.sampled_from(SECONDS)),
                                                             microseconds=draw(st.sampled_from(MICROS)))
        record = make(draw, stamp(when))
        retry = records and draw(st.integers(0, 9)) == 0
        record["request_id"] = draw(st.sampled_from(records))["request_id"] if retry else f"r{i}"
        for key, choices in (("status", STATUSES), ("decision", DECISIONS)):
            value = draw(st.sampled_from(choices))
            if value is not None:
                record[key] = value
        records.append(record)
    return records


def _optional(draw, record: dict, key: str, choices: list) -> None:
    value = draw(st.sampled_from(choices))
    if value is None:
        record.pop(key, None)
    else:
        record[key] = value


AMOUNTS = [Decimal("0.01"), 100, Decimal("12.5"), Decimal("1388.89"), 9000, 10000, Decimal("45000"),
           Decimal("49999.99"), 50000]


def default_record(draw, when: str) -> dict:
    record = base_request(timestamp=when, payer__id=draw(st.sampled_from(["u1", "u2"])),
                          purpose=draw(st.sampled_from(["p2p_transfer", "cash_withdrawal", "cash_deposit",
                                                        "merchant_purchase"])),
                          funding_source__type=draw(st.sampled_from(["account_balance", "credit_card"])),
                          amount={"value": draw(st.sampled_from(AMOUNTS)),
                                  "currency": draw(st.sampled_from(["CNY", "USD", "EUR", "KRW"]))})
    _optional(draw, record, "psp_country", ["CN", "US", "GB", None])
    _optional(draw, record, "channel", ["qr_static", "online", "in_app", "pos", None])  # None: `where` unknown
    _optional(draw, record, "fx_purchase", [True, False, None])
    record["auth"]["sca_performed"] = draw(st.sampled_from([True, False, False]))
    if draw(st.booleans()):
        record["merchant"]["mcc"] = "5816"
    return record


def fixture_record(draw, when: str) -> dict:
    record = default_record(draw, when)
    _optional(draw, record, "merchant", [None, {"id": "m1", "mcc": "5816"}, {"id": "m1", "mcc": "5411"},
                                         {"id": "m2", "country": "CN"}, {"mcc": "5999"}])
    _optional(draw, record, "payee", [None, {"id": "p1", "first_time": True}, {"id": "p1"}])
    _optional(draw, record, "device", [None, {"id": "d1"}, {"id": "d2"}])
    _optional(draw, record, "risk_score", [None, 10, 40])
    record["amount"]["currency"] = draw(st.sampled_from(["CNY", "USD", "EUR", "JPY", "GBP"]))
    return record


@given(history=histories(default_record))
def test_every_default_counter_equals_replay_on_generated_histories(connection, default_pack, history):
    counters(connection, default_pack, history)


@given(history=histories(fixture_record))
def test_distinct_since_named_zones_dated_lists_and_fx_tables_equal_replay(connection, fixture_pack, history):
    counters(connection, fixture_pack, history)


def payment(rid: str, when: str, **overrides) -> dict:
    return base_request(request_id=rid, timestamp=when, **overrides)


def test_a_sliding_hour_ends_exactly_one_hour_back(connection, default_pack):
    got = counters(connection, default_pack, [
        payment("a", "2025-06-10T10:00:00+08:00"),
        payment("b", "2025-06-10T10:59:59.999999+08:00"),  # a is 1µs less than an hour back: counted
        payment("c", "2025-06-10T11:00:00+08:00"),  # a is exactly an hour back: out
    ])
    assert [got[line]["history.payer_txn_count_1h"] for line in (1, 2, 3)] == [0, 1, 1]


def test_same_instant_payments_count_the_earlier_arrivals_only(connection, default_pack):
    when = "2025-06-10T10:00:00+08:00"
    got = counters(connection, default_pack, [payment("b", "2025-06-10T10:00:01+08:00"), payment("a1", when),
                                              payment("a2", when), payment("a3", when)])
    assert [got[line]["history.lifetime_txn_count"] for line in (1, 2, 3, 4)] == [3, 0, 1, 2]


def test_calendar_days_end_at_the_jurisdictions_midnight(connection, default_pack):
    balance = {"funding_source__type": "account_balance"}
    got = counters(connection, default_pack, [
        payment("cn1", "2025-06-10T23:59:59+08:00", **balance),
        payment("cn2", "2025-06-11T00:00:00+08:00", **balance),  # a new Beijing day: 0
        payment("us1", "2025-06-10T23:59:59-04:00", psp_country="US", **balance),
        payment("us2", "2025-06-11T00:00:00-04:00", psp_country="US", **balance),  # a new New York day: 0
    ])
    # one payer, two jurisdictions: New York's June 10 (04:00Z to 04:00Z) holds both Beijing payments
    assert [got[line]["history.balance_daily_used_cny"] for line in (1, 2, 3, 4)] == [0, 0, 200, 0]
    assert got[2]["history.tier_used_year_cny"] == 100


def test_month_ends_statuses_denials_and_retries(connection, default_pack):
    game = {"merchant__mcc": "5816"}
    got = counters(connection, default_pack, [
        payment("a", "2025-06-30T23:00:00+08:00", **game),
        payment("b", "2025-06-30T23:30:00+08:00", status="failed", **game),  # never counts against limits
        payment("c", "2025-06-30T23:40:00+08:00", decision="deny", **game),  # denied: counts as a decline only
        payment("a", "2025-06-30T23:50:00+08:00", **game),  # a retry: read, not recorded
        payment("d", "2025-07-01T00:00:00+08:00", **game),  # a new Beijing month
        payment("e", "2025-07-01T00:10:00+08:00", **game),
    ])
    assert [got[line]["history.game_topup_month_cny"] for line in range(1, 7)] == [0, 100, 100, 100, 0, 100]
    assert [got[line]["history.payer_txn_count_1h"] for line in range(1, 7)] == [0, 1, 2, 3, 2, 3]
    assert got[5]["history.decline_count_1h"] == 1


def test_cross_rate_sums_are_exact_fractions(connection, default_pack):
    cash = {"purpose": "cash_withdrawal", "psp_country": "US"}
    got = counters(connection, default_pack, [
        payment("a", "2025-06-10T10:00:00-04:00", amount={"value": 100, "currency": "CNY"}, **cash),
        payment("b", "2025-06-10T11:00:00-04:00", amount={"value": Decimal("0.01"), "currency": "USD"}, **cash),
        payment("c", "2025-06-10T12:00:00-04:00", **cash),
    ])
    assert got[3]["history.cash_today_usd"] == Fraction(100) / Fraction("7.2") + Fraction("0.01")


def test_unknown_where_counts_and_an_absent_entity_reads_nothing(connection, fixture_pack):
    got = counters(connection, fixture_pack, [
        payment("a", "2025-06-10T10:00:00+08:00", channel=DELETE, device={"id": "d1"}),
        payment("b", "2025-06-10T10:01:00+08:00", device={"id": "d1"}),
        payment("c", "2025-06-10T10:02:00+08:00", device=DELETE),
    ])
    assert got[2]["history.lifetime_txn_count"] == 1  # channel unknown: `channel ne pos` is unknown, counted
    assert got[3]["history.lifetime_txn_count"] is None  # no device: no counter, as the engine leaves it missing


def test_since_the_last_sca_restarts_after_the_events_instant(connection, default_pack):
    def remote(rid: str, minute: int, sca: bool) -> dict:
        return payment(rid, f"2025-06-10T10:0{minute}:00+08:00", channel="online",
                       auth={"factors": 2, "digital_cert": False, "sca_performed": sca})

    got = counters(connection, default_pack, [remote("a", 0, False), remote("b", 1, False), remote("c", 2, True),
                                              remote("d", 2, False),  # same instant as the SCA, arrived after it
                                              remote("e", 3, False), remote("f", 4, False)])
    assert [got[line]["history.sca_exempt_count_since_sca"] for line in range(1, 7)] == [0, 1, 2, 0, 0, 1]
