"""Backtest throughput per engine on the same generated Parquet history: row, columnar (DuckDB), Spark.

    python -m benchmarks.backtest_engines [--n 1000000] [--row-n 100000] [--runs 3] [--no-spark] [--data DIR]
                                          [--rules DIR] [--recompute-counters]

Generates ``--n`` synthetic payments (policy_engine.synthetic, with history counters and statuses, so every
counter rule and, where fields are missing, every undecided rule is in play), converts them to Parquet
(``policy-engine convert``), and times the whole backtest (pack loading, reading, deciding, the report) on the
bundled pack, one worker each: the row engine (``workers=1``; on the first ``--row-n`` payments when that is
smaller, since it is the slow one: its rate does not depend on the length), DuckDB with one thread, Spark on
``local[1]``. Prints payments/s (the median of ``--runs`` runs; Spark once) and each engine's ratio to the row
engine measured in the same run. ``--data DIR`` keeps the generated files for the next run; ``--rules DIR`` backtests
another pack (the columnar engines refuse the bundled pack's name screening, CMP-025, until it has a SQL form);
``--recompute-counters`` recomputes every counter from the history (the row engine's replay, DuckDB's window
functions; Spark cannot, so it is left out) instead of reading each record's own.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from policy_engine.backtesting import BacktestResult, backtest
from policy_engine.backtesting.columnar import backtest_columnar
from policy_engine.backtesting.columnar.convert import convert
from policy_engine.synthetic import dumps_request, iter_payments


def _history(folder: Path, n: int, seed: int) -> Path:
    parquet = folder / f"payments-{n}-{seed}.parquet"
    if parquet.exists():
        return parquet
    jsonl = folder / f"payments-{n}-{seed}.jsonl"
    started = time.monotonic()
    with jsonl.open("w") as out:
        for record in iter_payments(n, seed=seed, statuses=True):
            out.write(dumps_request(record) + "\n")
    report = convert(jsonl, parquet)
    jsonl.unlink()
    print(f"generated and converted {report.written:,} payments in {time.monotonic() - started:.0f} s "
          f"({report.bad_count} bad)")
    return parquet


def _head(parquet: Path, n: int) -> Path:
    """The first ``n`` rows of a Parquet file, as a file of their own."""
    import pyarrow.parquet as pq

    out = parquet.with_name(f"{parquet.stem}-head-{n}.parquet")
    if not out.exists():
        pq.write_table(pq.read_table(parquet).slice(0, n), out)
    return out


def _rate(run: Callable[[], BacktestResult], runs: int) -> tuple[float, int]:
    rates, evaluated = [], 0
    for _ in range(runs):
        started = time.monotonic()
        result = run()
        evaluated = result.evaluated
        rates.append(evaluated / (time.monotonic() - started))
    return statistics.median(rates), evaluated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="payments (default 1,000,000)")
    parser.add_argument("--row-n", type=int, default=100_000,
                        help="payments the row engine decides (the first ones; default 100,000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per engine, median reported (Spark: one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-spark", dest="spark", action="store_false", help="leave Spark out")
    parser.add_argument("--data", help="keep generated files here (default: a temporary folder)")
    parser.add_argument("--rules", help="the pack to backtest (default: the bundled pack)")
    parser.add_argument("--recompute-counters", action="store_true",
                        help="recompute the counters from the history (Spark left out: it cannot)")
    args = parser.parse_args()
    rules, recompute = args.rules, args.recompute_counters
    scratch = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="backtest-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        parquet = _history(scratch, args.n, args.seed)
        row_file = _head(parquet, args.row_n) if args.row_n < args.n else parquet
        table = [("row", *_rate(lambda: backtest(row_file, rules, workers=1, recompute_counters=recompute),
                                args.runs))]
        table.append(("columnar", *_rate(lambda: backtest_columnar(parquet, rules, workers=1,
                                                                   recompute_counters=recompute), args.runs)))
        if args.spark and not recompute and shutil.which("java"):
            table.append(("spark", *_rate(lambda: backtest_columnar(parquet, rules, engine="spark",
                                                                     spark_master="local[1]",
                                                                     recompute_counters=False), 1)))
    finally:
        if not args.data:
            shutil.rmtree(scratch, ignore_errors=True)
    base = table[0][1]
    print(f"{'engine':<10} {'payments':>10} {'payments/s':>12} {'x row':>7}")
    for engine, rate, evaluated in table:
        print(f"{engine:<10} {evaluated:>10,} {rate:>12,.0f} {rate / base:>7.1f}")


if __name__ == "__main__":
    main()
