"""Synthetic traffic (DOMAIN.md §8.2): reproducible bytes, valid requests, consistent history, the reference mix."""

from __future__ import annotations

import datetime as dt
import io
import itertools
import re
from collections import Counter, defaultdict
from decimal import ROUND_HALF_EVEN, Decimal

import pytest

from policy_engine import PolicyEngine
from policy_engine.cli import main
from policy_engine.jsonio import parse_json
from policy_engine.synthetic import (
    RATES,
    VIOLATIONS,
    SyntheticError,
    TrafficSpec,
    dumps_request,
    generate_requests,
    write_jsonl,
)


def _text(spec: TrafficSpec) -> str:
    out = io.StringIO()
    write_jsonl(spec, out)
    return out.getvalue()


@pytest.fixture(scope="module")
def sample() -> list[dict]:
    """4,000 payments from 130 payers: every purpose, currency and label kind shows up."""
    return [parse_json(line) for line in _text(TrafficSpec(seed=3, n=4000, days=20)).splitlines()]


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine.from_path()


def test_same_seed_same_bytes_and_another_seed_other_bytes():
    spec = TrafficSpec(seed=11, n=1500, days=5)
    first = _text(spec)
    assert first == _text(spec)
    assert first != _text(TrafficSpec(seed=12, n=1500, days=5))
    assert len(first.splitlines()) == 1500


def test_exactly_n_payments_in_timestamp_order(sample):
    assert len(sample) == 4000
    assert [r["request_id"] for r in sample[:3]] == ["r00000001", "r00000002", "r00000003"]
    moments = [dt.datetime.fromisoformat(r["timestamp"]) for r in sample]
    assert moments == sorted(moments)
    assert all(m.utcoffset() == dt.timedelta(hours=8) for m in moments)
    assert moments[0].date() >= dt.date(2025, 6, 1)


def test_every_generated_request_validates(sample, engine):
    for record in sample:
        engine.prepare({k: v for k, v in record.items() if k != "label"})  # raises RequestError on any violation
    assert {r["amount"]["currency"] for r in sample} == {"CNY", "USD", "JPY", "HKD"}


def test_money_is_written_as_json_numbers_with_the_currency_decimals():
    text = _text(TrafficSpec(seed=3, n=4000, days=20))
    values = re.findall(r'"amount":\{"value":([^,]+),"currency":"([A-Z]{3})"\}', text)
    assert len(values) == 4000
    for value, currency in values:
        assert re.fullmatch(r"[0-9]+" if currency == "JPY" else r"[0-9]+\.[0-9]{2}", value), (value, currency)
    history = re.findall(r'"tier_used_total_cny":([^,]+),', text)
    assert history and all(re.fullmatch(r"[0-9]+\.[0-9]{2}", v) for v in history)
    request = parse_json(text.splitlines()[0])
    assert isinstance(request["amount"]["value"], Decimal | int)
    assert dumps_request(request) == text.splitlines()[0]  # parse and write round-trip to the same bytes


def test_generation_streams_a_payment_without_drawing_the_whole_run():
    # A century of traffic (every day a request may carry): only laziness makes the first payments come back at once.
    spec = TrafficSpec(seed=1, payers=40, start=dt.date(2000, 1, 1), days=36_525)
    first = list(itertools.islice(generate_requests(spec), 5))
    assert [r["request_id"] for r in first] == [f"r{i:08d}" for i in range(1, 6)]


def test_mix_follows_the_guidance(sample):
    n = len(sample)
    purposes = Counter(r["purpose"] for r in sample if r["label"] is None)
    assert 0.74 < purposes["merchant_purchase"] / n < 0.82
    assert 0.08 < purposes["p2p_transfer"] / n < 0.12
    sources = Counter(r["funding_source"]["type"] for r in sample)
    assert {"account_balance", "debit_card", "credit_card", "bnpl", "bank_transfer", "prepaid_card"} <= set(sources)
    channels = Counter(r["channel"] for r in sample)
    assert channels["in_app"] > channels["online"] > channels["pos"] > channels["qr_static"] > 0
    static = [r["amount"]["value"] for r in sample if r["channel"] == "qr_static" and r["amount"]["currency"] == "CNY"]
    assert static and max(static) <= 300
    labels = Counter(r["label"]["kind"] for r in sample if r["label"])
    assert 0.004 < labels["violation"] / n < 0.012
    assert 0 < labels["risk"] / n < 0.006
    patterns = {r["label"]["pattern"] for r in sample if r["label"] and r["label"]["kind"] == "violation"}
    assert patterns <= {f"{f}->{p}" for f, p in VIOLATIONS}
    for r in sample:
        if r["label"] and r["label"]["kind"] == "violation":
            assert r["label"]["pattern"] == f"{r['funding_source']['type']}->{r['purpose']}"


def _fen(request: dict) -> Decimal:
    value = Decimal(request["amount"]["value"]) * RATES[request["amount"]["currency"]]
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)


def test_history_counts_exactly_the_payers_own_earlier_payments(sample):
    """An independent, naive recomputation of every modelled counter from the stream itself."""
    earlier: dict[str, list[tuple[float, dt.date, Decimal, dict]]] = defaultdict(list)
    checked = Counter()
    for r in sample:
        when = dt.datetime.fromisoformat(r["timestamp"])
        now, day = when.timestamp(), when.date()
        past = earlier[r["payer"]["id"]]
        h = r["history"]

        def total(keep, past=past) -> Decimal:
            return sum((cny for _, _, cny, p in past if keep(p)), Decimal(0))

        today = [(t, d, c, p) for t, d, c, p in past if d == day]
        assert h["lifetime_txn_count"] == len(past)
        assert h["payer_txn_count_1h"] == sum(1 for t, *_ in past if t > now - 3600)
        assert h["p2p_amount_24h_cny"] == sum((c for t, _, c, p in past
                                               if t > now - 86400 and p["purpose"] == "p2p_transfer"), Decimal(0))
        balance = lambda p: p["funding_source"]["type"] == "account_balance"  # noqa: E731
        assert h["tier_used_total_cny"] == total(balance)
        assert h["tier_used_year_cny"] == sum((c for _, d, c, p in past if d.year == day.year and balance(p)),
                                              Decimal(0))
        assert h["balance_daily_used_cny"] == sum((c for *_, c, p in today if balance(p)), Decimal(0))
        assert h["qr_static_daily_used_cny"] == sum((c for *_, c, p in today if p["channel"] == "qr_static"),
                                                    Decimal(0))
        assert h["cash_today_cny"] == sum((c for *_, c, p in today if p["purpose"] == "cash_withdrawal"), Decimal(0))
        assert h["transfers_today_cny"] == sum((c for *_, c, p in today if p["purpose"] == "p2p_transfer"),
                                               Decimal(0))
        assert abs(h["transfers_today_usd"] - h["transfers_today_cny"] / Decimal("7.2")) <= Decimal("0.01") * 20
        assert h["credit_cash_today_cny"] == sum(
            (c for *_, c, p in today if p["purpose"] == "cash_withdrawal" and p["funding_source"]["type"] ==
             "credit_card"), Decimal(0))
        assert h["game_topup_month_cny"] == sum(
            (c for _, d, c, p in past if (d.year, d.month) == (day.year, day.month)
             and p.get("merchant", {}).get("mcc") == "5816"), Decimal(0))
        assert h["near_threshold_count_7d"] == sum(
            1 for t, _, c, p in past if t > now - 7 * 86400 and p["purpose"] == "cash_withdrawal"
            and Decimal(45000) <= c < Decimal(50000))
        checked.update(k for k, v in h.items() if v)
        past.append((now, day, _fen(r), r))
    # The check is only as good as the counters it saw move.
    assert {"lifetime_txn_count", "payer_txn_count_1h", "p2p_amount_24h_cny", "tier_used_total_cny",
            "balance_daily_used_cny", "qr_static_daily_used_cny", "cash_today_cny", "transfers_today_cny",
            "game_topup_month_cny"} <= set(checked)


def test_account_age_grows_a_day_a_day_and_profiles_stay_put(sample):
    first: dict[str, tuple[dt.date, dict]] = {}
    for r in sample:
        day = dt.date.fromisoformat(r["timestamp"][:10])
        seen = first.setdefault(r["payer"]["id"], (day, r["payer"]))
        assert r["payer"]["account_age_days"] - seen[1]["account_age_days"] == (day - seen[0]).days
        assert {k: v for k, v in r["payer"].items() if k != "account_age_days"} == \
               {k: v for k, v in seen[1].items() if k != "account_age_days"}


def test_reference_outcome_of_dom_8_2(engine):
    """600 payers x 14 days under the default pack, against the §8.2 reference (allow 97.49%, deny 1.73%,
    step-up 0.52%, review 0.25%; every injected funding/purpose violation denied)."""
    decisions = Counter()
    violations = Counter()
    count = 0
    for request in generate_requests(TrafficSpec(seed=1, payers=600, days=14)):
        outcome = engine.evaluate({k: v for k, v in request.items() if k != "label"}).decision.value
        decisions[outcome] += 1
        count += 1
        if request["label"] and request["label"]["kind"] == "violation":
            violations[outcome] += 1
    assert 12_000 < count < 14_000
    assert 0.965 < decisions["allow"] / count < 0.985
    assert 0.010 < decisions["deny"] / count < 0.025
    assert 0.002 < decisions["step_up"] / count < 0.010
    assert 0.0005 < decisions["review"] / count < 0.005
    assert violations["deny"] > 50 and set(violations) == {"deny"}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "--n PAYMENTS"),
    ({"n": -1}, "--n must be 0 or more"),
    ({"payers": 0}, "--payers must be at least 1"),
    ({"n": 10, "days": 0}, "--days must be at least 1"),
])
def test_impossible_specs_say_which_parameter_to_change(kwargs, message):
    with pytest.raises(SyntheticError, match=re.escape(message)):
        TrafficSpec(**kwargs)


def test_cli_writes_the_library_bytes_and_csv(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    assert main(["generate", "--n", "40", "--seed", "5", "--days", "2"], out=out, err=err) == 0, err.getvalue()
    assert out.getvalue() == _text(TrafficSpec(seed=5, n=40, days=2))
    target = tmp_path / "p.csv"
    assert main(["generate", "--n", "40", "--seed", "5", "--days", "2", "--format", "csv", "-o", str(target)],
                out=out, err=err) == 0
    lines = target.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("request_id,timestamp,psp_country,payer.id,")
    assert lines[0].endswith(",label.kind,label.pattern")
    assert len(lines) == 41
    assert main(["generate", "--seed", "5"], out=out, err=err) == 2
    assert "--n PAYMENTS" in err.getvalue()

