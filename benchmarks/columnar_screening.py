"""The columnar backtest's screening stage (CMP-025) on DuckDB: names screened per second and its share of a backtest.

    python -m benchmarks.columnar_screening [--n 200000] [--list 100000] [--runs 3] [--threads 1] [--seed 7]

Generates ``--n`` synthetic payments (policy_engine.synthetic) and gives every payer, payee and merchant a name
fixed by its id (from the generator of benchmarks/screening.py; one in fifty a variant of a listed name), writes
a ``--list``-entry party list (same generator, ``first_seen`` spread over 2019-2026) in place of the bundled pack's
synthetic one, and converts the history to Parquet (not timed). Then, per run (median of ``--runs``), it times
the backtest of the bundled pack on DuckDB (``--threads``), and in the same run its baseline: the same pack
without CMP-025, which has no screening stage. It prints the distinct (name, country, day) tuples, the names
screened (a tuple's day counts only as its bucket between entry dates), names screened per second by the stage
and by the screener within it (the rest: reading the tuples, registering the tables), the stage's seconds and
share of the backtest, and the whole backtest against the baseline.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.screening import Generator, make_list, variants
from policy_engine import load_ruleset
from policy_engine.backtesting.columnar import open_run
from policy_engine.backtesting.columnar.convert import convert
from policy_engine.backtesting.columnar.screens import ScreeningCost
from policy_engine.pack import CompiledPack
from policy_engine.synthetic import dumps_request, iter_payments
from policy_engine.testing.histories import without_screening

RULES = Path(__file__).resolve().parent.parent / "rules"
FIRST, LAST = dt.date(2019, 1, 1), dt.date(2026, 11, 1)


def write_pack(folder: Path, gen: Generator, n: int, seed: int, screening: bool) -> Path:
    """The bundled pack with an ``n``-entry generated list (or without CMP-025 when not ``screening``)."""
    if not screening:
        return without_screening(RULES, folder / "rules-without-screening")
    root = folder / "rules"
    shutil.copytree(RULES, root)
    rng = random.Random(seed)
    span = (LAST - FIRST).days
    with (root / "lists" / "sanctioned_parties.csv").open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["id", "schema", "name", "aliases", "countries", "first_seen"])
        for party in make_list(gen, n, seed):
            first_seen = FIRST + dt.timedelta(days=rng.randrange(span))
            out.writerow([party.id, "Person", party.names[0], ";".join(party.names[1:]), "",
                          f"{first_seen}T00:00:00"])
    return root


def history(folder: Path, gen: Generator, rules: Path, n: int, seed: int) -> Path:
    ruleset = load_ruleset(rules)
    parties = list(ruleset.screening_lists["sanctioned_parties"].parties)
    listed = [v for _, v, _ in variants(gen, parties, 2_000, seed)]
    names: dict[str, str] = {}

    def name_of(entity: str) -> str:
        if entity not in names:
            rng = random.Random(f"{seed}-{entity}")
            names[entity] = rng.choice(listed) if rng.random() < 0.02 else gen.name(rng)
        return names[entity]

    jsonl = folder / "history.jsonl"
    with jsonl.open("w") as out:
        for record in iter_payments(n, seed=seed):
            for party in ("payer", "payee", "merchant"):
                if isinstance(record.get(party), dict):
                    record[party]["name"] = name_of(f"{party}:{record[party]['id']}")
            out.write(dumps_request(record) + "\n")
    parquet = folder / "history.parquet"
    convert(jsonl, parquet, rules)
    return parquet


def backtest_seconds(parquet: Path, pack: CompiledPack, threads: int) -> tuple[float, ScreeningCost]:
    for screening in pack.ruleset.screening_lists.values():
        screening.index.cached_best.cache_clear()  # every run screens from cold, as a fresh process does
    started = time.perf_counter()
    run, executor = open_run(parquet, pack, workers=threads, recompute_counters=False)
    try:
        run.tally(5)
        return time.perf_counter() - started, run.screening
    finally:
        run.close()
        executor.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--list", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    gen = Generator(args.seed)
    with tempfile.TemporaryDirectory(prefix="columnar-screening-") as tmp:
        folder = Path(tmp)
        with_list = write_pack(folder, gen, args.list, args.seed + 1, screening=True)
        without = write_pack(folder, gen, 0, 0, screening=False)
        parquet = history(folder, gen, with_list, args.n, args.seed + 2)
        t0 = time.perf_counter()
        pack = CompiledPack.build(load_ruleset(with_list))
        print(f"pack with a {args.list:,}-entry list loaded in {time.perf_counter() - t0:.1f} s (index build)")
        baseline_pack = CompiledPack.build(load_ruleset(without))
        full, stage, deciding, base, costs = [], [], [], [], []
        for _ in range(args.runs):
            seconds, cost = backtest_seconds(parquet, pack, args.threads)
            full.append(seconds)
            stage.append(cost.seconds)
            deciding.append(cost.deciding)
            costs.append(cost)
            base.append(backtest_seconds(parquet, baseline_pack, args.threads)[0])
        cost = costs[-1]
        print(f"{args.n:,} payments, DuckDB threads={args.threads}, median of {args.runs} runs")
        print(f"distinct (name, country, day) tuples: {cost.tuples:,}; distinct (name, country): {cost.names:,}; "
              f"screenings (a name per day bucket): {cost.screened:,}")
        print(f"screening stage: {statistics.median(stage):.2f} s, "
              f"{cost.screened / statistics.median(stage):,.0f} screenings/s, "
              f"{statistics.median(s / f for s, f in zip(stage, full, strict=True)):.0%} of the backtest; the screener "
              f"within it {statistics.median(deciding):.2f} s ({cost.screened / statistics.median(deciding):,.0f} "
              f"screenings/s), reading the tuples and registering the tables the rest")
        print(f"backtest with CMP-025: {statistics.median(full):.2f} s ({args.n / statistics.median(full):,.0f} "
              f"payments/s); without (baseline, same run): {statistics.median(base):.2f} s "
              f"({args.n / statistics.median(base):,.0f} payments/s); ratio "
              f"{statistics.median(f / b for f, b in zip(full, base, strict=True)):.2f}x")


if __name__ == "__main__":
    main()
