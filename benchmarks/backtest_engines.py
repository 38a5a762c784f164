"""Backtest throughput per engine on the same generated Parquet history: row, columnar (DuckDB), Spark.

    python -m benchmarks.backtest_engines [--n 1000000] [--row-n 100000] [--runs 3] [--no-spark] [--data DIR]
                                          [--rules DIR] [--no-recompute-counters] [--names N]

Generates ``--n`` synthetic payments (policy_engine.synthetic, with history counters and statuses, so every
counter rule and, where fields are missing, every undecided rule is in play), converts them to Parquet
(``policy-engine convert``), and times the whole backtest (pack loading, reading, deciding, the report) on the
bundled pack (name screening, CMP-025, included), one worker each: the row engine (``workers=1``; on the first
``--row-n`` payments when that is smaller, since it is the slow one: its rate per payment does not depend on the
length, and the output says so), DuckDB with one thread, Spark on ``local[1]``. Prints payments/s (the median of
``--runs`` runs; Spark once) and each engine's ratio to the row engine measured in the same run.

The issue's setting is the default: every counter recomputed from the history (the row engine's replay, DuckDB's
window functions; the report's check against the counters the records carry included), undecided rules included.
``--no-recompute-counters`` reads each record's own counters instead. An engine that refuses the run (Spark, for a
pack that screens names or counters to recompute, until it can) is reported as skipped, with its reason.
``--names N`` gives every payer, payee and merchant a name fixed by its id, drawn from a population of ``N``
generated names plus the bundled list's own names and aliases (so the screening stage has work and CMP-025 fires);
without it the generator's payments are left as they are (no names). ``--data DIR`` keeps the generated files for
the next run; ``--rules DIR`` backtests another pack.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.screening import Generator
from policy_engine import load_ruleset
from policy_engine.backtesting import BacktestResult, backtest
from policy_engine.backtesting.columnar import ColumnarError, backtest_columnar
from policy_engine.backtesting.columnar.convert import convert
from policy_engine.synthetic import dumps_request, iter_payments

PARTIES = ("payer", "payee", "merchant")


def _namer(population: int, seed: int) -> Callable[[dict[str, Any]], None]:
    """Names every party of a record by its id, from ``population`` generated names and the bundled list's own."""
    rng = random.Random(seed)
    gen = Generator(seed)
    listed = [name for lst in load_ruleset(None).screening_lists.values() for p in lst.parties for name in p.names]
    names = [gen.name(rng) for _ in range(population)] + listed

    def name(record: dict[str, Any]) -> None:
        for party in PARTIES:
            if isinstance(record.get(party), dict) and "id" in record[party]:
                record[party]["name"] = names[random.Random(f"{seed}-{party}:{record[party]['id']}").randrange(
                    len(names))]

    return name


def _history(folder: Path, n: int, seed: int, names: int | None) -> Path:
    tag = f"-names{names}" if names else ""
    parquet = folder / f"payments-{n}-{seed}{tag}.parquet"
    if parquet.exists():
        return parquet
    jsonl = folder / f"payments-{n}-{seed}{tag}.jsonl"
    started = time.monotonic()
    name = _namer(names, seed) if names else None
    with jsonl.open("w") as out:
        for record in iter_payments(n, seed=seed, statuses=True):
            if name is not None:
                name(record)
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
    parser.add_argument("--recompute-counters", action=argparse.BooleanOptionalAction, default=True,
                        help="recompute every counter from the history (default), or read each record's own")
    parser.add_argument("--names", type=int, metavar="N",
                        help="name every party from a population of N names (default: no names)")
    args = parser.parse_args()
    rules, recompute = args.rules, args.recompute_counters
    scratch = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="backtest-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    skipped: list[str] = []
    try:
        parquet = _history(scratch, args.n, args.seed, args.names)
        row_file = _head(parquet, args.row_n) if args.row_n < args.n else parquet
        table = [("row", *_rate(lambda: backtest(row_file, rules, workers=1, recompute_counters=recompute),
                                args.runs))]
        table.append(("columnar", *_rate(lambda: backtest_columnar(parquet, rules, workers=1,
                                                                   recompute_counters=recompute), args.runs)))
        if args.spark and not shutil.which("java"):
            skipped.append("spark: skipped, no Java runtime (java) on the PATH")
        elif args.spark:
            try:
                table.append(("spark", *_rate(lambda: backtest_columnar(parquet, rules, engine="spark",
                                                                         spark_master="local[1]",
                                                                         recompute_counters=recompute), 1)))
            except ColumnarError as exc:
                skipped.append(f"spark: skipped, the engine refused the run: {exc}")
    finally:
        if not args.data:
            shutil.rmtree(scratch, ignore_errors=True)
    base = table[0][1]
    print(f"{rules or 'the bundled pack (CMP-025 included)'}, counters "
          f"{'recomputed from the history' if recompute else 'as each record carries them'}, one worker each")
    print(f"{'engine':<10} {'payments':>10} {'payments/s':>12} {'x row':>7}")
    for engine, rate, evaluated in table:
        print(f"{engine:<10} {evaluated:>10,} {rate:>12,.0f} {rate / base:>7.1f}")
    if row_file != parquet:
        print(f"the row engine decided the first {table[0][2]:,} payments of the file (its counters recomputed from "
              "them alone) and is compared per payment; the others decided all of them")
    for line in skipped:
        print(line)


if __name__ == "__main__":
    main()
