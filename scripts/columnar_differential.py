"""Differential run: the columnar (or Spark) backtest against the row engine on N generated payments.

    python scripts/columnar_differential.py 100000                     # DuckDB, default pack, baseline 2026.10
    python scripts/columnar_differential.py 100000 --engine spark      # the same plan on Spark local[*]
    python scripts/columnar_differential.py 100000 --recompute-counters  # counters recomputed (either engine)

Payments come from policy_engine.testing.histories.edge_histories (synthetic traffic, half of it moved onto
thresholds, date boundaries, missing fields, absent counterparties, every currency); they are written as JSON
Lines, converted to Parquet, and decided by both engines: per payment (decision, fired, undecided and skipped
rules, bad lines) and as whole reports (with a baseline pack, so flips are compared too). With
``--recompute-counters`` both engines recompute every counter from the history (the row engine's replay, the SQL
engine's window functions), and every payment's counters are compared too. Prints the counts and the first
mismatches; exit 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from policy_engine import load_ruleset
from policy_engine.backtesting import backtest
from policy_engine.backtesting.columnar import backtest_columnar, open_run
from policy_engine.backtesting.columnar.convert import convert
from policy_engine.backtesting.columnar.differential import mismatches, replayed_counters, report_dict, row_payments
from policy_engine.pack import CompiledPack
from policy_engine.synthetic import dumps_request
from policy_engine.testing.histories import edge_histories


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", type=int, help="payments to generate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rules", help="candidate pack (default: the bundled pack)")
    parser.add_argument("--baseline", help="baseline pack for the report comparison (default: the candidate)")
    parser.add_argument("--engine", choices=("columnar", "spark"), default="columnar")
    parser.add_argument("--spark-master", default="local[*]")
    parser.add_argument("--dir", help="keep the JSON Lines and Parquet files here (default: a temporary folder)")
    parser.add_argument("--recompute-counters", action="store_true",
                        help="recompute the counters from the history in both engines and compare them too")
    args = parser.parse_args()
    recompute = args.recompute_counters
    ruleset = load_ruleset(args.rules)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.dir or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        jsonl, parquet = folder / "history.jsonl", folder / "history.parquet"
        started = time.monotonic()
        with jsonl.open("w") as out:
            for record in edge_histories(ruleset, args.n, seed=args.seed):
                out.write(dumps_request(record) + "\n")
        converted = convert(jsonl, parquet, args.rules)
        print(f"generated {args.n} payments, converted {converted.written} ({converted.bad_count} bad: "
              f"{dict(converted.bad)}) in {time.monotonic() - started:.1f} s")
        pack = CompiledPack.build(ruleset)
        started = time.monotonic()
        replayed = replayed_counters(parquet, pack) if recompute else None
        oracle = row_payments(parquet, pack, replayed)
        row_s = time.monotonic() - started
        started = time.monotonic()
        run, executor = open_run(parquet, pack, engine=args.engine, spark_master=args.spark_master,
                                 recompute_counters=recompute)
        try:
            decided = run.payments()
            counted = run.counters() if recompute else {}
        finally:
            run.close()
            executor.close()
        col_s = time.monotonic() - started
        found = mismatches(oracle, decided)
        counters_differ = False
        if replayed is not None:
            differ = [(line, c, replayed.get(line)) for line, c in counted.items() if c != replayed.get(line)]
            print(f"counters: {len(counted)} payments x {len(next(iter(counted.values()), {}))} counters compared "
                  f"with the row engine's replay; {len(differ)} payments differ")
            for line, mine, theirs in differ[:5]:
                print(f"   line {line}: {args.engine} {mine}, row {theirs}")
            counters_differ = bool(differ) or counted.keys() != {p.line for p in decided}
        decisions = Counter(p.decision for p in decided)
        undecided = sum(bool(p.undecided or p.skipped) for p in decided)
        print(f"per payment: {len(oracle)} (row, {row_s:.1f} s) vs {len(decided)} ({args.engine}, {col_s:.1f} s); "
              f"decisions {dict(decisions)}; {undecided} with undecided or skipped rules; "
              f"{len(found)} mismatches")
        for m in found[:5]:
            print("  ", m)
        baseline = args.baseline or args.rules
        row = report_dict(backtest(parquet, args.rules, baseline, workers=1, recompute_counters=recompute))
        col = report_dict(backtest_columnar(parquet, args.rules, baseline, engine=args.engine,
                                            spark_master=args.spark_master, recompute_counters=recompute))
        if recompute:  # the columnar report has no check of the records' own counters against the recomputed
            row.pop("counters")
            col.pop("counters")
        same = row == col
        print(f"reports (with baseline {baseline or 'the bundled pack'}): {'identical' if same else 'DIFFERENT'}")
        if not same:
            for key in row:
                if row[key] != col.get(key):
                    print(f"  {key}: row {json.dumps(row[key], default=str)[:300]}")
                    print(f"  {key}: {args.engine} {json.dumps(col.get(key), default=str)[:300]}")
        return 0 if same and not found and not counters_differ else 1


if __name__ == "__main__":
    sys.exit(main())
