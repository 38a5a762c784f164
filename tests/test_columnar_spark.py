"""The columnar plan on Spark (local[2]) held to the row engine: the same decisions, rules, counters and report.

One SparkSession for the module (Spark is slow to start) and a few hundred payments of the bundled pack, name
screening (CMP-025) and recomputed counters included; the counters stage's frames (Spark's constant-offset plan,
:mod:`policy_engine.backtesting.columnar.windows`) on generated histories against Replay, as
tests/test_columnar_windows.py holds DuckDB's. The 100k comparison is
``scripts/columnar_differential.py 100000 --engine spark``."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("pyspark")
pytest.importorskip("duckdb")
if shutil.which("java") is None:
    pytest.skip("Spark needs a Java runtime (.ci/run installs one)", allow_module_level=True)

from test_columnar_windows import bench, default_record, fixture_record, histories

from policy_engine import load_ruleset
from policy_engine.backtesting import backtest
from policy_engine.backtesting.columnar import open_run
from policy_engine.backtesting.columnar.convert import convert
from policy_engine.backtesting.columnar.dialect import SparkDialect
from policy_engine.backtesting.columnar.differential import mismatches, replayed_counters, report_dict, row_payments
from policy_engine.backtesting.columnar.engine import result_of
from policy_engine.backtesting.columnar.spark import spark_session
from policy_engine.backtesting.columnar.windows import counters_query
from policy_engine.pack import CompiledPack
from policy_engine.synthetic import dumps_request
from policy_engine.testing.histories import bare_histories

RULESET = load_ruleset(None)  # the bundled pack, CMP-025 (name screening) included
PACK = CompiledPack.build(RULESET)


@pytest.fixture(scope="module")
def session():
    # the default 1 GB driver heap: the executor plans the two ~60-rule packs step by step (spark.py)
    spark = spark_session("local[2]")
    yield spark
    spark.stop()


@pytest.fixture(scope="module")
def bare_history(tmp_path_factory) -> Path:
    """Edge histories (named payers, payees and merchants: listed, variants, unlisted, missing) without counters,
    so both engines recompute them, with retries (some request_ids again) and bad lines."""
    folder = tmp_path_factory.mktemp("spark")
    records = bare_histories(RULESET, 500, seed=12)
    jsonl = folder / "history.jsonl"
    jsonl.write_text("".join(dumps_request(r) + "\n" for r in records))
    parquet = folder / "history.parquet"
    assert convert(jsonl, parquet).bad_count > 0  # bad lines are part of what is compared
    return parquet


def test_spark_screens_names_recomputes_counters_and_reports_as_the_row_engine(session, bare_history,
                                                                                baseline_rules):
    baseline = CompiledPack.build(load_ruleset(baseline_rules))
    started = time.monotonic()
    run, executor = open_run(bare_history, PACK, baseline, engine="spark", session=session)
    try:
        assert run.recompute
        decided, counted = run.payments(), run.counters()
        spark = result_of(run, run.tally(3), str(bare_history), "spark", 2, started)
    finally:
        run.close()
        executor.close()
    replayed = replayed_counters(bare_history, PACK)
    assert mismatches(row_payments(bare_history, PACK, replayed), decided) == []
    assert [(line, c) for line, c in counted.items() if c != replayed[line]] == []
    assert counted.keys() == {p.line for p in decided}
    # the comparison reaches what matters: decisions of every kind, screening hits and unknown names (skipped),
    # counters that are not all zero
    assert {p.decision for p in decided} >= {"allow", "deny", "review"}
    assert any("CMP-025" in p.fired for p in decided) and any("CMP-025" in p.skipped for p in decided)
    assert sum(any(v for v in c.values()) for c in counted.values()) > 50
    row = report_dict(backtest(bare_history, None, baseline=baseline_rules, workers=1, examples=3,
                               recompute_counters=True))
    assert row["counters"]["recomputed"] > 400
    assert report_dict(spark) == row and spark.flipped > 0


def spark_counter_mismatches(session, pack: CompiledPack, records: list[dict]) -> list[str]:
    """Every (line, counter) where Spark's counters query and Replay differ."""
    query = counters_query(pack.ruleset, SparkDialect())
    rows = list(bench.prepared_records(pack, records))
    session.createDataFrame(bench.payments_table(pack, rows)).createOrReplaceTempView("payments")
    try:
        got = {row[0]: tuple(row[1:]) for row in session.sql(query.sql).collect()}
    finally:
        session.catalog.dropTempView("payments")
    return bench.mismatches(query, got, bench.replay_of(pack, rows).counters())


# Each example is one Spark job over a batch of histories (concatenated: one longer history, its payers in
# several jurisdictions, retries across them): window edges, same-instant ties, statuses, since-events.
@settings(max_examples=2)
@given(batch=st.lists(histories(default_record), min_size=15, max_size=15))
def test_spark_computes_every_default_counter_as_replay(session, batch):
    assert spark_counter_mismatches(session, PACK, [r for history in batch for r in history]) == []


@settings(max_examples=2)
@given(batch=st.lists(histories(fixture_record), min_size=15, max_size=15))
def test_spark_distinct_since_named_zones_and_fx_tables_equal_replay(session, batch, tmp_path_factory):
    from test_columnar_windows import FIXTURE

    path = tmp_path_factory.mktemp("windows") / "pack.yaml"
    path.write_text(FIXTURE, encoding="utf-8")
    assert spark_counter_mismatches(session, CompiledPack.build(load_ruleset(path)),
                                    [r for history in batch for r in history]) == []
