"""Adversarial histories for the columnar backtest (DuckDB), held to the row engine: what an analyst or a careless
producer of Parquet files can hand it that the engines must report alike (session 23's fail-closed sweep)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("duckdb")
pytest.importorskip("pyarrow")

from policy_engine.backtesting import backtest
from policy_engine.backtesting.columnar import backtest_columnar
from policy_engine.backtesting.columnar.convert import convert
from policy_engine.backtesting.columnar.differential import report_dict
from policy_engine.synthetic import dumps_request

ROOT = Path(__file__).resolve().parent.parent


def _write(records, path: Path) -> Path:
    path.write_text("".join(dumps_request(r) + "\n" for r in records))
    return path


def _request(**changes) -> dict:
    request = {"request_id": "r1", "timestamp": "2026-03-01T10:00:00+08:00", "payer": {"id": "p1", "age": 15},
               "funding_source": {"type": "debit_card"}, "purpose": "merchant_purchase",
               "amount": {"value": "30", "currency": "CNY"}, "merchant": {"mcc": "5816", "country": "CN"}}
    request.update(changes)
    return request


def _reports(parquet: Path, recompute: bool = False, **packs) -> tuple[dict, dict]:
    columnar = report_dict(backtest_columnar(parquet, recompute_counters=recompute, **packs))
    row = report_dict(backtest(parquet, workers=1, recompute_counters=recompute, **packs))
    return columnar, row


@pytest.fixture(scope="module")
def without_monthly_game_totals(tmp_path_factory) -> Path:
    """The bundled pack with CMP-018's monthly totals dropped: it reads no `history.game_topup_month_cny`."""
    root = tmp_path_factory.mktemp("no-monthly") / "rules"
    shutil.copytree(ROOT / "rules", root)
    games = root / "compliance" / "gambling_age.yaml"
    text = games.read_text()
    for per_top_up, month in (("50", "200"), ("100", "400")):
        old = ("                - any:\n"
               f"                    - {{field: derived.amount_cny, op: gt, value: {per_top_up}}}\n"
               "                    - {field: {add: [history.game_topup_month_cny, derived.amount_cny]}, op: gt, "
               f"value: {month}}}\n")
        assert old in text
        text = text.replace(old, f"                - {{field: derived.amount_cny, op: gt, value: {per_top_up}}}\n")
    games.write_text(text)
    return root


def test_a_counter_the_candidate_or_baseline_does_not_read_is_a_bad_line_in_both_engines(
        tmp_path, without_monthly_game_totals):
    """History converted under the bundled pack, backtested with a pack that no longer reads one of the counters the
    records carry: the row engine refuses those records (a counter the pack does not read is an unknown field),
    so the columnar engine must too, with the same message, instead of deciding them; unless the counters are
    recomputed."""
    records = [_request(request_id="r1", history={"game_topup_month_cny": 180, "cash_today_cny": 5}),
               _request(request_id="r2", history={"cash_today_cny": 5}),
               _request(request_id="r3", history={"game_topup_month_cny": 0, "lifetime_txn_count": 3})]
    parquet = tmp_path / "h.parquet"
    assert convert(_write(records, tmp_path / "h.jsonl"), parquet).written == 3
    for packs in ({"rules": without_monthly_game_totals}, {"baseline": without_monthly_game_totals}):
        columnar, row = _reports(parquet, **packs)
        assert columnar == row
        assert (row["evaluated"], [b["line"] for b in row["bad"]["lines"]]) == (1, [1, 3])
        assert "$.history.game_topup_month_cny: unknown field" in row["bad"]["lines"][0]["message"]
        # recomputed counters set the records' own aside, the unread one with them: every record is decided
        columnar, row = _reports(parquet, recompute=True, **packs)
        assert columnar == row and row["evaluated"] == 3


def _foreign(records, path: Path) -> Path:
    """``records`` in the Parquet layout as another tool would write them: the columns ``convert`` writes, the
    rows never checked by the engine's request validation."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    from policy_engine.backtesting.columnar.layout import arrow_schema, row_of

    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    rows = [row_of(line, (dt.datetime.fromisoformat(r["timestamp"]) - epoch) // dt.timedelta(microseconds=1), r, {})
            for line, r in enumerate(records, 1)]
    pq.write_table(pa.Table.from_pylist(rows, schema=arrow_schema().remove_metadata()), path)
    return path


def test_a_parquet_file_convert_did_not_write_is_refused_never_decided_unvalidated(tmp_path, capsys):
    """Rows another tool wrote in the layout were never validated: the row engine refuses the invalid ones (an
    enum in the wrong case, an age of -5, a score of 150), which the columnar engine's SQL checks do not all
    cover, so it refuses the file with what to do instead of deciding them (it allowed all three)."""
    from policy_engine.backtesting.columnar import LayoutError
    from policy_engine.cli import main

    parquet = _foreign([_request(request_id="r1", payer={"id": "p1", "kyc_level": "NONE"}),
                        _request(request_id="r2", payer={"id": "p2", "age": -5}),
                        _request(request_id="r3", risk_score=150)], tmp_path / "foreign.parquet")
    row = backtest(parquet, workers=1, recompute_counters=False)
    assert (row.evaluated, row.bad_count) == (0, 3)
    with pytest.raises(LayoutError, match=r"not written by `policy-engine convert`.*--engine row"):
        backtest_columnar(parquet, recompute_counters=False)
    assert main(["backtest", str(parquet)]) == 2
    assert "not written by `policy-engine convert`" in capsys.readouterr().err


@pytest.mark.parametrize("columns", [{"a": [1]}, {"__line": [1], "__instant_us": [0]}])
def test_a_parquet_file_without_the_layout_is_a_clear_error_not_an_internal_one(tmp_path, capsys, columns):
    """Any other Parquet file: DuckDB's binder error surfaced as "internal error ... please report it" (exit 3)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from policy_engine.cli import main

    parquet = tmp_path / "other.parquet"
    pq.write_table(pa.table(columns), parquet)
    assert main(["backtest", str(parquet)]) == 2
    err = capsys.readouterr().err
    assert "internal error" not in err and "policy-engine convert" in err


def test_a_counter_sent_as_null_is_left_out_not_a_difference_in_either_file(tmp_path):
    """`"history": {"payer_txn_count_1h": null}` is a counter left out (JSON null is missing): the row backtest of
    the JSON Lines reported it as recorded "None" against the recomputed count, the Parquet backtests (which store
    it as NULL) as no difference."""
    records = [_request(request_id=f"r{i}", timestamp=f"2026-03-01T10:0{i}:00+08:00",
                        history={"payer_txn_count_1h": None, "cash_today_cny": 0}) for i in range(3)]
    jsonl, parquet = _write(records, tmp_path / "h.jsonl"), tmp_path / "h.parquet"
    assert convert(jsonl, parquet).written == 3
    reports = [report_dict(backtest(jsonl, workers=1, recompute_counters=True)),
               report_dict(backtest(parquet, workers=1, recompute_counters=True)),
               report_dict(backtest_columnar(parquet, recompute_counters=True))]
    assert reports[0]["counters"] == reports[1]["counters"] == reports[2]["counters"]
    assert reports[0]["counters"]["compared"] == 3 and reports[0]["counters"]["differing"] == 0


def _zone_duckdb_reads_otherwise() -> str | None:
    """A zone whose UTC offset DuckDB's built-in ICU data and this Python's zoneinfo give differently on some day
    of 2024-2030 (tz databases released at different times: America/Vancouver, America/Havana, Africa/Casablanca
    differed here), or None where the installed data agree on all of them."""
    import datetime as dt
    import zoneinfo

    import duckdb

    con = duckdb.connect()
    days = [dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC) + dt.timedelta(days=n) for n in range(0, 7 * 365, 3)]
    for key in ("America/Vancouver", "America/Havana", "Africa/Casablanca", "America/Edmonton", "America/Winnipeg"):
        zone = zoneinfo.ZoneInfo(key)
        ours = [d.astimezone(zone).replace(tzinfo=None) for d in days]
        theirs = [r[0] for r in con.execute(
            f"SELECT timezone('{key}', make_timestamptz(u)) FROM unnest(?) AS t(u) ORDER BY u",
            [[int(d.timestamp()) * 1_000_000 for d in days]]).fetchall()]
        if ours != theirs:
            return key
    return None


def test_a_zone_duckdb_reads_otherwise_than_python_is_refused_not_decided_on_other_local_days(tmp_path, capsys):
    """A pack whose jurisdiction's zone has different rules in DuckDB's ICU data than in Python's tz data (the row
    engine's) put payments on other local days and hours: daily counters and decisions differed from the row
    engine's (CMP-008 fired in DuckDB only). The columnar engine refuses such a history, naming the zone."""
    from policy_engine.backtesting.columnar import ZoneDataError
    from policy_engine.cli import main

    key = _zone_duckdb_reads_otherwise()
    if key is None:
        pytest.skip("DuckDB's and Python's tz data agree on the zones that differed when this test was written")
    root = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", root)
    reference = root / "reference.yaml"
    reference.write_text(reference.read_text().replace("timezones:\n", f"timezones:\n  ZZ: {key}\n", 1))
    parquet = tmp_path / "h.parquet"
    records = [_request(request_id="r1"), _request(request_id="r2", psp_country="ZZ")]
    assert convert(_write(records, tmp_path / "h.jsonl"), parquet, root).written == 2
    with pytest.raises(ZoneDataError, match=f"timezone data for {key} differs.*--engine row"):
        backtest_columnar(parquet, root)
    assert main(["backtest", str(parquet), "--rules", str(root)]) == 2
    assert f"timezone data for {key} differs" in capsys.readouterr().err
    # a history with no payment in that jurisdiction does not need the zone
    only_cn = tmp_path / "cn.parquet"
    convert(_write(records[:1], tmp_path / "cn.jsonl"), only_cn, root)
    assert report_dict(backtest_columnar(only_cn, root))["evaluated"] == 1


def test_workers_out_of_range_are_refused_or_capped_never_a_crash_or_a_hang(tmp_path, capsys):
    """`--workers` are DuckDB threads: 0 or -1 from the library was DuckDB's own SyntaxException, 100,000 held the
    CLI for minutes on a one-payment file, and 10**12 aborted the process (std::bad_alloc, exit 134). Below 1 is
    refused; beyond the machine's cores it is the cores (more threads than cores buy nothing)."""
    import os

    from policy_engine.backtesting.columnar import ColumnarError
    from policy_engine.cli import main

    parquet = tmp_path / "h.parquet"
    convert(_write([_request()], tmp_path / "h.jsonl"), parquet)
    for workers in (0, -1):
        with pytest.raises(ColumnarError, match="at least 1"):
            backtest_columnar(parquet, workers=workers)
    result = backtest_columnar(parquet, workers=10**12)
    assert (result.evaluated, result.workers) == (1, os.cpu_count())
    assert main(["backtest", str(parquet), "--workers", str(10**12), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["evaluated"] == 1
