"""The columnar backtest (DuckDB) held to the row engine, the oracle: per payment and report against report.

Histories come from policy_engine.testing.histories (synthetic traffic moved onto thresholds, date boundaries,
missing fields, absent counterparties, every currency) and from the property strategies (requests on the pack's
numeric edges, sums and cross-rate amounts included). 100k payments: scripts/columnar_differential.py.
"""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("duckdb")
pytest.importorskip("pyarrow")

from policy_engine import load_ruleset
from policy_engine.backtesting import backtest
from policy_engine.backtesting.columnar import ColumnarCompileError, backtest_columnar, open_run
from policy_engine.backtesting.columnar.convert import convert
from policy_engine.backtesting.columnar.differential import mismatches, replayed_counters, report_dict, row_payments
from policy_engine.backtesting.report_text import render_text
from policy_engine.cli import main
from policy_engine.pack import CompiledPack
from policy_engine.synthetic import dumps_request, iter_payments
from policy_engine.testing.histories import bare_histories, edge_histories
from policy_engine.testing.strategies import near_thresholds, requests

ROOT = Path(__file__).resolve().parent.parent
RULES = None  # the bundled pack (name screening included), as a path argument
RULESET = load_ruleset(None)
PACK = CompiledPack.build(RULESET)


def _write(records, path: Path) -> Path:
    path.write_text("".join(dumps_request(r) + "\n" for r in records))
    return path


def _columnar(parquet: Path, pack: CompiledPack = PACK):
    run, executor = open_run(parquet, pack, recompute_counters=False)
    try:
        return run.payments()
    finally:
        run.close()
        executor.close()


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("history")
    jsonl = _write(edge_histories(RULESET, 2500, seed=3), folder / "history.jsonl")
    parquet = folder / "history.parquet"
    report = convert(jsonl, parquet)
    assert report.written > 2000 and report.bad_count > 0  # some moves make requests invalid, on purpose
    return jsonl, parquet


def test_every_payment_gets_the_row_engines_decision_and_rules(history):
    _, parquet = history
    oracle = row_payments(parquet, PACK)
    decided = _columnar(parquet)
    assert mismatches(oracle, decided) == []
    # the history reaches what the comparison is about: every outcome, undecided and skipped rules, many rules
    assert {p.decision for p in decided} == {"allow", "deny", "review", "step_up"}
    assert any(p.undecided for p in decided) and any(p.skipped for p in decided)
    assert len({r for p in decided for r in p.fired}) >= 20
    assert any("CMP-025" in p.fired for p in decided)  # name screening: the columnar screening stage


def test_reports_are_identical_to_the_row_engines_with_a_baseline(history, baseline_rules):
    baseline = baseline_rules
    jsonl, parquet = history
    columnar = backtest_columnar(parquet, baseline=baseline, examples=3, label_maturity=30)
    row = backtest(parquet, baseline=baseline, workers=1, examples=3, recompute_counters=False, label_maturity=30)
    assert report_dict(columnar) == report_dict(row)
    assert columnar.flipped > 0 and columnar.candidate.labels is not None and columnar.metrics is not None
    assert columnar.engine == "columnar" and row.engine == "row"
    # and the Parquet backtest is the JSON Lines one, less the lines convert refused
    from_jsonl = report_dict(backtest(jsonl, baseline=baseline, workers=1, examples=3, recompute_counters=False))
    assert from_jsonl["candidate"]["decisions"] == report_dict(columnar)["candidate"]["decisions"]


@settings(max_examples=5)
@given(st.lists(st.one_of(near_thresholds(RULESET), requests(ruleset=RULESET)), min_size=10, max_size=40))
def test_numeric_edges_sums_and_cross_rates_decide_alike(tmp_path_factory, records):
    folder = tmp_path_factory.mktemp("edges")
    for i, record in enumerate(records):
        record["request_id"] = f"e{i}"
    parquet = folder / "edges.parquet"
    report = convert(_write(records, folder / "edges.jsonl"), parquet)
    assert report.bad_count == 0, report.bad_lines
    assert mismatches(row_payments(parquet, PACK), _columnar(parquet)) == []


def _request(**changes) -> dict:
    request = {"request_id": "r1", "timestamp": "2026-03-01T10:00:00+08:00", "payer": {"id": "p1"},
               "funding_source": {"type": "debit_card"}, "purpose": "merchant_purchase",
               "amount": {"value": "120.50", "currency": "CNY"}, "merchant": {"mcc": "5411", "country": "CN"}}
    request.update(changes)
    return request


def test_convert_keeps_exact_money_absent_objects_and_record_fields(tmp_path):
    import pyarrow.parquet as pq

    records = [_request(label={"kind": "fraud"}, status="completed", decision="deny"),
               _request(request_id="r2", purpose="p2p_transfer", merchant=None,
                        payee={"country": "CN", "sanctions_hit": False}, amount={"value": 0.1, "currency": "USD"})]
    del records[1]["merchant"]
    parquet = tmp_path / "h.parquet"
    assert convert(_write(records, tmp_path / "h.jsonl"), parquet).written == 2
    table = pq.read_table(parquet)
    rows = table.to_pylist()
    assert str(table.schema.field("amount").type) == "struct<value: decimal128(19, 3), currency: string>"
    assert rows[0]["amount"]["value"] == Decimal("120.50") and rows[1]["amount"]["value"] == Decimal("0.1")
    assert rows[1]["merchant"] is None and rows[0]["payee"] is None  # absent, not an object of nulls
    assert json.loads(rows[0]["label"]) == {"kind": "fraud"}
    assert (rows[0]["status"], rows[0]["decision"], rows[0]["__line"], rows[1]["__line"]) == ("completed", "deny",
                                                                                               1, 2)


def test_convert_refuses_bad_rows_with_their_line_numbers_and_exit_2(tmp_path, capsys):
    lines = [dumps_request(_request()), "not json",
             dumps_request(_request(request_id="r3", amount={"value": "12.345", "currency": "CNY"})),
             dumps_request(_request(request_id="r4", status="lost")), dumps_request(_request(request_id="r5"))]
    source = tmp_path / "h.jsonl"
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "h.parquet"
    assert main(["convert", str(source), str(out), "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["written"] == 2
    assert [(b["line"], b["error"]) for b in report["bad"]["lines"]] == [
        (2, "invalid_json"), (3, "invalid_request"), (4, "invalid_record")]
    assert "more decimal places than CNY has (2)" in report["bad"]["lines"][1]["message"]


def test_a_hand_made_file_with_too_many_decimals_is_a_bad_line_never_rounded(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = tmp_path / "h.parquet"
    convert(_write([_request(), _request(request_id="r2")], tmp_path / "h.jsonl"), parquet)
    table = pq.read_table(parquet)
    rows = table.to_pylist()
    rows[1]["amount"]["value"] = Decimal("120.505")  # three places in CNY, written by some other tool
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), parquet)
    for result in (backtest_columnar(parquet, recompute_counters=False),
                   backtest(parquet, workers=1, recompute_counters=False)):
        assert (result.evaluated, result.bad_count) == (1, 1)
        assert result.bad_lines[0].line == 2 and "more decimal places than CNY has (2)" in result.bad_lines[0].message


def test_cli_picks_the_columnar_engine_for_parquet_and_prints_one_json_document(history, capsys):
    _, parquet = history
    assert main(["backtest", str(parquet), "--json", "--examples", "2"]) == 0
    columnar = json.loads(capsys.readouterr().out)
    assert main(["backtest", str(parquet), "--json", "--examples", "2", "--engine", "row", "--workers", "1",
                 "--format", "parquet"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert (columnar["engine"], row["engine"]) == ("columnar", "row")
    for report in (columnar, row):
        for name in ("source", "workers", "elapsed_s", "payments_per_s", "engine"):
            report.pop(name)
    assert columnar == row


def test_columnar_engine_refuses_input_that_is_not_parquet(history, capsys):
    jsonl, _ = history
    assert main(["backtest", str(jsonl), "--engine", "columnar"]) == 2
    assert "convert this one first" in capsys.readouterr().err


@pytest.fixture(scope="module")
def bare_history(tmp_path_factory) -> Path:
    """Edge histories without counters (so both engines recompute them), with retries: some request_ids again."""
    folder = tmp_path_factory.mktemp("bare")
    records = bare_histories(RULESET, 1500, seed=7)
    parquet = folder / "bare.parquet"
    convert(_write(records, folder / "bare.jsonl"), parquet, RULES)
    return parquet


def test_recomputed_counters_decide_and_count_as_the_row_engines_replay(bare_history):
    """Records without ``history``: the columnar engine recomputes the counters (window functions) as the row
    backtest replays them, so every payment gets the same counters, decision and rules."""
    replayed = replayed_counters(bare_history, PACK)
    run, executor = open_run(bare_history, PACK)
    try:
        assert run.recompute
        decided, counted = run.payments(), run.counters()
    finally:
        run.close()
        executor.close()
    assert mismatches(row_payments(bare_history, PACK, replayed), decided) == []
    assert counted.keys() == {p.line for p in decided}
    assert [(line, c) for line, c in counted.items() if c != replayed[line]] == []
    # the comparison reaches counters that are not all zero, and cross-rate sums (exact fractions)
    assert sum(any(v for v in c.values()) for c in counted.values()) > 100
    assert mismatches(row_payments(bare_history, PACK), decided) != []  # the recomputed counters mattered


def test_recomputed_reports_are_the_row_engines_with_a_baseline(bare_history, baseline_rules):
    row = report_dict(backtest(bare_history, RULES, baseline=baseline_rules, workers=1, examples=3,
                               recompute_counters=True))
    columnar = report_dict(backtest_columnar(bare_history, RULES, baseline=baseline_rules, examples=3,
                                             recompute_counters=True))
    assert row["counters"]["recomputed"] > 1000 and row["counters"]["compared"] == 0  # nothing carried
    assert columnar == row


#: counters the edge histories' records under-report (a count, a CNY sum, cross-rate USD and EUR sums)
UNDER_REPORTED = ("lifetime_txn_count", "tier_used_total_cny", "cash_today_usd", "transfers_today_usd",
                  "sca_exempt_amount_since_sca_eur")


@pytest.fixture(scope="module")
def carried_history(tmp_path_factory) -> Path:
    """Edge histories whose records carry their own counters (the generator's, consistent with the payments), one
    in four under-reporting one of :data:`UNDER_REPORTED` (set to 0 or cut by a third, rounded to the cent); some
    records carry no ``history`` or leave a counter out (the mover's missing fields), some are bad lines."""
    folder = tmp_path_factory.mktemp("carried")
    records = list(edge_histories(RULESET, 2000, seed=21))
    for i, record in enumerate(records):
        history = record.get("history")
        if isinstance(history, dict) and i % 4 == 0:
            name = UNDER_REPORTED[i // 4 % len(UNDER_REPORTED)]
            value = Decimal(str(history.get(name, 0)))
            history[name] = int(value) // 2 if name.endswith("count") else (value * 2 / 3).quantize(Decimal("0.01"))
    parquet = folder / "carried.parquet"
    convert(_write(records, folder / "carried.jsonl"), parquet, RULES)
    return parquet


def test_the_check_of_carried_counters_is_the_row_engines(carried_history, baseline_rules):
    """Records that carry counters, some under-reported: recomputed, the columnar report says where the carried
    ones differ, line by line, exactly as the row backtest's (counts per counter, every difference and its text)."""
    every = 10**6  # examples: every difference of every line
    row = backtest(carried_history, RULES, baseline=baseline_rules, workers=1, examples=every,
                   recompute_counters=True)
    columnar = backtest_columnar(carried_history, RULES, baseline=baseline_rules, examples=every,
                                 recompute_counters=True)
    assert report_dict(columnar) == report_dict(row)
    section = [text[text.index("\nCounters:"):].split("\n\n")[0] for text in map(render_text, (columnar, row))]
    assert section[0] == section[1]
    check = columnar.counters
    assert check is not None and check.recomputed > check.compared > 1000 and check.differing > 100
    assert {f"history.{name}" for name in UNDER_REPORTED} <= set(check.by_field)
    # the differences reach cross-rate sums that are no finite decimal (six places) and ones that are
    cross = [d.recomputed for d in check.examples if d.field.endswith(("_usd", "_eur"))]
    assert any(len(text.partition(".")[2]) == 6 for text in cross) and any(text == "0" for text in cross)
    # and the columnar engine decides every payment with the recomputed counters, never the carried ones
    replayed = replayed_counters(carried_history, PACK)
    run, executor = open_run(carried_history, PACK, recompute_counters=True)
    try:
        decided = run.payments()
    finally:
        run.close()
        executor.close()
    assert mismatches(row_payments(carried_history, PACK, replayed), decided) == []


def test_records_without_counters_are_recomputed_not_defaulted(tmp_path):
    records = [_request(request_id=f"r{i}") for i in range(3)]  # no history: recomputed, as the row backtest does
    parquet = tmp_path / "h.parquet"
    convert(_write(records, tmp_path / "h.jsonl"), parquet)
    for recompute in (None, True, False):
        columnar = report_dict(backtest_columnar(parquet, RULES, recompute_counters=recompute))
        row = report_dict(backtest(parquet, RULES, workers=1, recompute_counters=recompute))
        assert (row["counters"] is None) is (recompute is False)
        assert columnar == row and columnar["evaluated"] == 3


def test_a_rule_whose_arithmetic_cannot_stay_exact_is_refused_naming_it(tmp_path):
    root = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", root)
    reference = root / "reference.yaml"
    text = reference.read_text()
    assert 'USD: "7.2"' in text
    reference.write_text(text.replace('USD: "7.2"', 'USD: "7.2000000000000000000001"'))
    parquet = tmp_path / "h.parquet"
    convert(_write([_request()], tmp_path / "h.jsonl"), parquet)
    with pytest.raises(ColumnarCompileError, match=r"rule [A-Z]+-\d+ \(rules/.*:\d+\).*digits"):
        backtest_columnar(parquet, rules=root, recompute_counters=False)


def test_dated_fx_tables_and_a_currency_a_table_lacks_decide_alike(tmp_path):
    """Two more FX tables inside the history's month (the rate of the payment's day, the earliest before them
    all) and one without EUR (``derived.amount_eur`` missing: rules reading it undecided)."""
    root = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", root)
    reference = root / "reference.yaml"
    text = reference.read_text()
    tables = ('reference_fx:\n'
              '  - as_of: 2025-06-10\n    rates: {CNY: "1", USD: "7.1234", GBP: "9.05", HKD: "0.91", JPY: "0.0475"}\n'
              '  - as_of: 2025-06-20\n    rates: {CNY: "1", USD: "7.3", EUR: "7.95", GBP: "9.2", JPY: "0.049"}\n')
    assert text.count("reference_fx:\n") == 1
    reference.write_text(text.replace("reference_fx:\n", tables))
    ruleset = load_ruleset(root)
    assert len(ruleset.fx_tables) == 3
    pack = CompiledPack.build(ruleset)
    parquet = tmp_path / "h.parquet"
    convert(_write(edge_histories(ruleset, 1500, seed=5), tmp_path / "h.jsonl"), parquet, root)
    decided = _columnar(parquet, pack)
    assert mismatches(row_payments(parquet, pack), decided) == []
    assert any(p.undecided or p.skipped for p in decided)


def test_a_counters_stage_replaces_the_records_counters(tmp_path):
    """What the counters stage computes is what rules read: a stage setting the Class I lifetime total to 0
    decides as the row engine does on records that leave that counter out (the pack's default: 0)."""
    from policy_engine.backtesting.columnar import CounterColumn

    records = list(edge_histories(RULESET, 600, seed=12, share=0))
    for record in records:
        record.setdefault("history", {})["tier_used_total_cny"] = Decimal("999999")
    carried = tmp_path / "carried.parquet"
    convert(_write(records, tmp_path / "carried.jsonl"), carried)
    for record in records:
        del record["history"]["tier_used_total_cny"]
    left_out = tmp_path / "left-out.parquet"
    convert(_write(records, tmp_path / "left-out.jsonl"), left_out)
    zero = CounterColumn("history.tier_used_total_cny", "CAST(0 AS DECIMAL(19, 3))")
    run, executor = open_run(carried, PACK, counters={"candidate": [zero]})
    try:
        staged = run.payments()
    finally:
        run.close()
        executor.close()
    assert mismatches(row_payments(left_out, PACK), staged) == []
    assert mismatches(row_payments(carried, PACK), staged) != []  # the stage did change what rules read


def test_name_screening_decides_as_the_row_engine_around_the_threshold_and_first_seen(tmp_path):
    """CMP-025 (fuzzy, no SQL form) goes through the screening stage: hits, near misses, a secondary key, an
    entry's first_seen (2025-09-01 for synth-0004), absent names and absent counterparties, each as the row
    engine decides it, payment by payment."""
    base = [r for r in iter_payments(400, seed=5) if "payee" in r or "merchant" in r][:60]
    names = [None, "Zorvath Qelmindor", "Qelmindor Zorvath", "Zorvaht Qelmindor", "Zorvath Qelmindxr",
             "Ningze Haoyuan Trading Co. Ltd", "宁泽昊远贸易有限公司", "Ningze Trading", "Li Wei", "...", ""]
    records, expected = [], {}
    for i, record in enumerate(base):
        record = json.loads(dumps_request(record), parse_float=Decimal)
        party = "payee" if "payee" in record else "merchant"
        record["payer"]["name"] = "Li Wei"  # screened, no hit: the rule is unknown only by the other party
        name = names[i % len(names)]
        if name is not None:
            record[party]["name"] = name
        record["timestamp"] = "2025-08-31T23:59:59+08:00" if i % 2 else "2025-09-01T00:00:00+08:00"
        if i % 7 == 0:
            record[party]["country"] = "RU"
        records.append(record)
        expected[i + 1] = (name, party, record["timestamp"])
    parquet = tmp_path / "names.parquet"
    convert(_write(records, tmp_path / "names.jsonl"), parquet)
    decided = _columnar(parquet)
    assert mismatches(row_payments(parquet, PACK), decided) == []
    screened = {p.line: ("CMP-025" in p.fired, "CMP-025" in p.skipped) for p in decided}
    # the history reaches what matters: hits and misses, a name that hits only from its entry's first_seen
    assert {fired for fired, _ in screened.values()} == {True, False}
    ningze = {expected[line][2][:10]: fired for line, (fired, _) in screened.items()
              if expected[line][0] == "Ningze Haoyuan Trading Co. Ltd"}
    assert ningze == {"2025-08-31": False, "2025-09-01": True}
    # a missing name leaves the rule unknown (skipped: on_unknown skip); the absent counterparty never does
    assert all(screened[line] == (False, True) for line in screened if expected[line][0] is None)
    assert all(screened[line] == (False, False) for line in screened if expected[line][0] in ("Li Wei", "...", ""))
