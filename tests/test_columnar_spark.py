"""The columnar plan on Spark (local[2]) held to the row engine: the same decisions, rules and report.

One SparkSession for the module (Spark is slow to start) and a few hundred payments; the 100k comparison is
``scripts/columnar_differential.py 100000 --engine spark``."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("pyspark")
pytest.importorskip("duckdb")
if shutil.which("java") is None:
    pytest.skip("Spark needs a Java runtime (.ci/run installs one)", allow_module_level=True)

from conftest import screenless_rules

from policy_engine import load_ruleset
from policy_engine.backtesting import backtest
from policy_engine.backtesting.columnar import ColumnarError, open_run
from policy_engine.backtesting.columnar.convert import convert
from policy_engine.backtesting.columnar.differential import mismatches, report_dict, row_payments
from policy_engine.backtesting.columnar.engine import result_of
from policy_engine.backtesting.columnar.spark import spark_session
from policy_engine.pack import CompiledPack
from policy_engine.synthetic import dumps_request
from policy_engine.testing.histories import edge_histories

RULES = screenless_rules(Path(tempfile.mkdtemp(prefix="columnar-rules-")) / "rules")
RULESET = load_ruleset(RULES)


@pytest.fixture(scope="module")
def session():
    # the default 1 GB driver heap: the executor plans the two ~60-rule packs step by step (spark.py)
    spark = spark_session("local[2]")
    yield spark
    spark.stop()


def test_spark_decides_every_payment_and_reports_as_the_row_engine(session, tmp_path, baseline_rules):
    jsonl = tmp_path / "history.jsonl"
    jsonl.write_text("".join(dumps_request(r) + "\n" for r in edge_histories(RULESET, 400, seed=12)))
    parquet = tmp_path / "history.parquet"
    assert convert(jsonl, parquet, RULES).bad_count > 0  # bad lines are part of what is compared
    candidate = CompiledPack.build(RULESET)
    baseline = CompiledPack.build(load_ruleset(baseline_rules))
    started = time.monotonic()
    run, executor = open_run(parquet, candidate, baseline, engine="spark", recompute_counters=False,
                             session=session)
    try:
        decided = run.payments()
        assert mismatches(row_payments(parquet, candidate), decided) == []
        assert {p.decision for p in decided} >= {"allow", "deny", "review"}
        spark = result_of(run, run.tally(3), str(parquet), "spark", 2, started)
    finally:
        run.close()
        executor.close()
    row = backtest(parquet, RULES, baseline=baseline_rules, workers=1, examples=3, recompute_counters=False)
    assert report_dict(spark) == report_dict(row)
    assert spark.flipped > 0


def test_spark_refuses_to_recompute_counters_naming_the_engines_that_can(session, tmp_path):
    jsonl = tmp_path / "h.jsonl"
    jsonl.write_text("".join(dumps_request(r) + "\n" for r in edge_histories(RULESET, 20, seed=1)))
    parquet = tmp_path / "h.parquet"
    convert(jsonl, parquet, RULES)
    with pytest.raises(ColumnarError, match="--engine columnar"):
        open_run(parquet, CompiledPack.build(RULESET), engine="spark", recompute_counters=True, session=session)
