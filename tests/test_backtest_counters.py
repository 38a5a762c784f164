"""Backtests recompute the pack's counters from the replayed history (DESIGN.md §10): window functions of what
happened to each payment (its recorded status and decision), never the candidate pack's decisions, the same for
any number of workers; records' own counters become a check."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from conftest import REPO, base_request

from policy_engine.backtesting import backtest
from policy_engine.backtesting.history import RecordError, take_record_fields
from policy_engine.cli import main
from policy_engine.synthetic import TrafficSpec, dumps_request, generate_requests

#: Counters the generator does not model and writes as 0 (synthetic.py): the PSD2 exemptions since the last SCA.
#: The engine counts the generated remote payments without SCA, so these differ by design.
UNMODELLED = {"history.sca_exempt_count_since_sca", "history.sca_exempt_amount_since_sca_eur"}
#: Counters in USD: the generator adds each payment rounded to the cent, the engine sums exact cross-rate amounts.
ROUNDED_PER_PAYMENT = {"history.cash_today_usd", "history.transfers_today_usd"}


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(dumps_request(r) + "\n" for r in records), encoding="utf-8")
    return path


def _comparable(result) -> dict:
    data = result.to_dict()
    for key in ("workers", "elapsed_s", "payments_per_s", "source"):
        data.pop(key)
    return data


def test_a_history_without_counters_gives_the_same_backtest_on_one_and_two_workers(tmp_path):
    spec = TrafficSpec(seed=4, n=1500, days=5, counters=False, statuses=True)
    records = list(generate_requests(spec))
    assert all("history" not in r and r["status"] in ("completed", "failed", "reversed") for r in records)
    path = _write(tmp_path / "history.jsonl", records)
    one = backtest(path, workers=1, chunk_records=100)
    two = backtest(path, workers=2, chunk_records=100)
    assert one.bad_count == 0 and one.evaluated == 1500
    assert one.counters is not None and one.counters.recomputed == 1500 and one.counters.compared == 0
    assert _comparable(one) == _comparable(two)
    # The counters decide something: with every counter at its default of 0, the daily balance cap fires only on
    # a payment over the cap by itself.
    flat = backtest(path, workers=1, recompute_counters=False)
    assert flat.counters is None
    assert one.candidate.rule("CMP-008").hits > flat.candidate.rule("CMP-008").hits
    # The baseline pack gets its own recomputed counters: the same pack as baseline flips nothing.
    same = backtest(path, baseline=REPO / "rules", workers=2, chunk_records=100)
    assert same.baseline is not None and same.flipped == 0
    assert same.baseline.decisions == same.candidate.decisions == one.candidate.decisions


def test_recomputed_counters_equal_the_generators_own_on_the_same_history(tmp_path):
    records = list(generate_requests(TrafficSpec(seed=4, n=1500, days=5, statuses=True)))
    assert {r["status"] for r in records} == {"completed", "failed", "reversed"}
    path = _write(tmp_path / "history.jsonl", records)
    result = backtest(path, workers=1, recompute_counters=True, examples=10**6)
    check = result.counters
    assert check is not None and check.recomputed == check.compared == 1500
    assert set(check.by_field) <= UNMODELLED | ROUNDED_PER_PAYMENT
    for diff in check.examples:
        if diff.field in ROUNDED_PER_PAYMENT:  # half a cent per payment at most, a few payments a day
            assert abs(Fraction(diff.recorded) - Fraction(diff.recomputed)) < Fraction(1, 100)
        else:
            assert Decimal(diff.recorded) == 0
    # The check can fail: without the statuses, failed and reversed payments count and the limits disagree.
    for record in records:
        del record["status"]
    unreported = backtest(_write(tmp_path / "unreported.jsonl", records), workers=1, recompute_counters=True)
    assert unreported.counters is not None
    assert {"history.lifetime_txn_count", "history.tier_used_total_cny"} <= set(unreported.counters.by_field)


def _qr(rid: str, amount: int, at: str, **record) -> dict:
    return base_request(request_id=rid, channel="qr_static", amount__value=amount,
                        timestamp=f"2025-06-10T{at}+08:00", payer__id="u-1") | record


def _cmp010(tmp_path: Path, records: list[dict]) -> list[str]:
    """The request ids CMP-010 (static QR, CNY 500 a Beijing day) fires on."""
    result = backtest(_write(tmp_path / "qr.jsonl", records), workers=1)
    assert result.bad_count == 0 and result.counters is not None
    return [e.request_id for e in result.candidate.rule("CMP-010").examples]


def test_a_payment_reported_reversed_does_not_count_against_a_later_limit(tmp_path):
    payments = [("q1", 200, "09:00:00"), ("q2", 200, "10:00:00"), ("q3", 200, "11:00:00")]
    assert _cmp010(tmp_path, [_qr(*p) for p in payments]) == ["q3"]
    assert _cmp010(tmp_path, [_qr(*p, status="completed") for p in payments]) == ["q3"]
    assert _cmp010(tmp_path, [_qr(*payments[0], status="reversed"), *(_qr(*p) for p in payments[1:])]) == []
    assert _cmp010(tmp_path, [_qr(*payments[0], status="failed"), *(_qr(*p) for p in payments[1:])]) == []


def test_counters_count_what_happened_in_time_order_never_the_candidates_decisions(tmp_path):
    # q1 was denied at the time: it does not count against the limit, whatever the candidate decides now.
    denied = [_qr("q1", 200, "09:00:00", decision="deny"), _qr("q2", 200, "10:00:00"), _qr("q3", 200, "11:00:00")]
    assert _cmp010(tmp_path, denied) == []
    # The candidate denies q3 (600 > 500) and q4 (+1), but a record without a decision counts as not denied: q4
    # sees 600 of the day, as an engine that had allowed q3 would have recorded.
    allowed = [_qr("q1", 200, "09:00:00"), _qr("q2", 200, "10:00:00"), _qr("q3", 200, "11:00:00"),
               _qr("q4", 1, "12:00:00")]
    assert _cmp010(tmp_path, allowed) == ["q3", "q4"]
    # Input order is not time order: q3 happened first, so it is q1 that goes over the day's cap.
    shuffled = [_qr("q1", 200, "11:00:00"), _qr("q2", 200, "10:00:00"), _qr("q3", 200, "09:00:00")]
    assert _cmp010(tmp_path, shuffled) == ["q1"]
    # A retry under the same request_id counts once.
    retried = [_qr("q1", 200, "09:00:00"), _qr("q1", 200, "09:00:00"), _qr("q2", 200, "10:00:00")]
    assert _cmp010(tmp_path, retried) == []


def test_records_carrying_counters_keep_them_unless_asked(tmp_path):
    carried = {"qr_static_daily_used_cny": 450}
    records = [_qr("q1", 200, "09:00:00", history=carried), _qr("q2", 100, "10:00:00", history=carried)]
    path = _write(tmp_path / "carried.jsonl", records)
    kept = backtest(path, workers=1)
    assert kept.counters is None and kept.candidate.rule("CMP-010").hits == 2
    recomputed = backtest(path, workers=1, recompute_counters=True)
    assert recomputed.candidate.rule("CMP-010").hits == 0
    check = recomputed.counters
    assert check is not None and (check.compared, check.differing) == (2, 2)
    assert [(d.request_id, d.recorded, d.recomputed) for d in check.examples] == [("q1", "450", "0"),
                                                                                   ("q2", "450", "200")]


def test_an_unknown_status_or_decision_is_a_bad_line(tmp_path):
    with pytest.raises(RecordError, match="status 'refunded'"):
        take_record_fields({"status": "refunded"})
    records = [_qr("q1", 200, "09:00:00", status="refunded"), _qr("q2", 200, "10:00:00", decision="blocked"),
               _qr("q3", 200, "11:00:00")]
    result = backtest(_write(tmp_path / "bad.jsonl", records), workers=1)
    assert result.bad == {"invalid_record": 2} and result.evaluated == 1
    assert [b.line for b in result.bad_lines] == [1, 2]


def test_cli_generate_without_counters_then_backtest_recomputes_them(tmp_path):
    path = tmp_path / "g.csv"
    assert main(["generate", "--n", "300", "--days", "2", "--no-counters", "--format", "csv", "-o", str(path)],
                out=io.StringIO(), err=io.StringIO()) == 0
    header = path.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert "status" in header and not any(c.startswith("history.") for c in header)
    out = io.StringIO()
    assert main(["backtest", str(path), "--workers", "1", "--json"], out=out, err=io.StringIO()) == 0
    assert json.loads(out.getvalue())["counters"]["recomputed"] == 300
    text = io.StringIO()
    assert main(["backtest", str(path), "--workers", "1", "--recompute-counters"], out=text, err=io.StringIO()) == 0
    assert "Counters: recomputed from the history for 300 payment(s)" in text.getvalue()


def test_statuses_and_no_counters_leave_the_payments_as_they_were():
    plain = list(generate_requests(TrafficSpec(seed=2, n=300, days=2)))
    bare = list(generate_requests(TrafficSpec(seed=2, n=300, days=2, counters=False, statuses=True)))
    for with_counters, with_status in zip(plain, bare, strict=True):
        assert "history" not in with_status and "status" not in with_counters
        assert {k: v for k, v in with_counters.items() if k != "history"} == \
               {k: v for k, v in with_status.items() if k != "status"}
