"""What a shadow pack costs the decision path: inline after the decision, or handed to the shadow worker.

    python -m benchmarks.shadow [--n 20000] [--runs 5]

On one synthetic corpus and the bundled pack (its own copy as the shadow, so every request is decided twice),
prints the latency of ``evaluate`` as the caller sees it, p50 / p99 µs and decisions/s, each the median of
``--runs`` runs, beside the baseline without a shadow measured in the same run:

  * baseline: no shadow pack;
  * inline: the shadow pack decides the request right after the decision, before the call returns;
  * worker: ``PolicyEngine(shadow=...)``, the decision handed to the shadow worker thread (decisions whose
    shadows were dropped because the queue was full are counted and shown);
then the baseline and the worker again with the calls paced at ``--rate`` per second (a service below
saturation: the caller's thread waits between calls, as it does on I/O), with the worker's drops.
A back-to-back loop saturates the one interpreter the worker shares: there the worker gets the GIL only when
the caller's thread is preempted, and most shadows are dropped, by design, rather than slowing decisions.
Figures drift between runs on a shared machine; compare the ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable

from policy_engine import PolicyEngine, load_ruleset
from policy_engine.jsonio import parse_json

from .run import ROOT, corpus, for_pack, stats, timed


def paced(fn: Callable, items: list, n: int, rate: float) -> list[float]:
    """Latencies (µs) of ``n`` calls started ``1 / rate`` seconds apart (sleeping between them)."""
    samples = []
    interval = 1 / rate
    next_start = time.perf_counter()
    for i in range(n):
        t = time.perf_counter_ns()
        fn(items[i % len(items)])
        samples.append((time.perf_counter_ns() - t) / 1000)
        next_start += interval
        delay = next_start - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    return samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000, help="evaluations per measurement")
    ap.add_argument("--runs", type=int, default=5, help="runs; each figure is the median over them")
    ap.add_argument("--rate", type=float, default=2_000, help="calls per second in the paced rows")
    args = ap.parse_args()

    ruleset = load_ruleset(ROOT / "rules")
    requests = for_pack([parse_json(t) for t in corpus(5_000)], ruleset)
    baseline = PolicyEngine(ruleset)
    shadow = baseline.pack  # the same pack, decided a second time

    def inline(request: dict) -> None:
        baseline.evaluate(request)
        with contextlib.suppress(Exception):  # as the worker does: a shadow's failure never reaches the caller
            shadow.decide(shadow.preparer.prepare(request, True))

    worker = PolicyEngine(ruleset, shadow=[ruleset])
    modes = {"baseline (no shadow)": baseline.evaluate, "shadow inline": inline, "shadow worker": worker.evaluate}
    figures: dict[str, list[tuple[float, float, float]]] = {name: [] for name in modes}
    for _ in range(args.runs):
        for name, fn in modes.items():
            figures[name].append(stats(timed(fn, requests, args.n)))
            if name == "shadow worker":
                worker.drain()
    dropped = worker.stats()["shadow_dropped"]
    evaluated = worker.stats()["shadow_evaluated"]
    print(f"shadow cost on the decision path, median of {args.runs} runs of {args.n:,} evaluations "
          f"(bundled pack, its copy as the shadow)")
    base = [statistics.median(f[i] for f in figures["baseline (no shadow)"]) for i in range(3)]
    for name in modes:
        p50, p99, rate = (statistics.median(f[i] for f in figures[name]) for i in range(3))
        print(f"  {name:22} p50 {p50:7.1f} µs  p99 {p99:7.1f} µs  {rate:8.0f}/s   p50 {p50 / base[0]:4.2f}x  "
              f"p99 {p99 / base[1]:4.2f}x baseline")
    print(f"  worker: {evaluated:,} shadow decisions made, {dropped:,} dropped (queue full)")
    paced_n = max(1, int(args.rate * 2))  # two seconds a run
    rows: dict[str, list[tuple[float, float, float]]] = {"baseline (no shadow)": [], "shadow worker": []}
    for _ in range(args.runs):
        rows["baseline (no shadow)"].append(stats(paced(baseline.evaluate, requests, paced_n, args.rate)))
        rows["shadow worker"].append(stats(paced(worker.evaluate, requests, paced_n, args.rate)))
        worker.drain()
    print(f"paced at {args.rate:,.0f} calls/s, median of {args.runs} runs of {paced_n:,} calls")
    base = [statistics.median(f[i] for f in rows["baseline (no shadow)"]) for i in range(2)]
    for name, figs in rows.items():
        p50, p99 = (statistics.median(f[i] for f in figs) for i in range(2))
        print(f"  {name:22} p50 {p50:7.1f} µs  p99 {p99:7.1f} µs   p50 {p50 / base[0]:4.2f}x  "
              f"p99 {p99 / base[1]:4.2f}x baseline")
    print(f"  worker: {worker.stats()['shadow_evaluated'] - evaluated:,} shadow decisions made, "
          f"{worker.stats()['shadow_dropped'] - dropped:,} dropped")
    baseline.close()
    worker.close()


if __name__ == "__main__":
    main()
