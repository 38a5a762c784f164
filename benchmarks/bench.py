"""Small benchmark: end-to-end evaluate on the bundled pack, per matcher, against a floor measured in the same run.

    python benchmarks/bench.py [--n 20000]

The floor is `json.loads` of the request text plus request validation (the least any engine must do); every
figure is also printed as a ratio to it, because absolute numbers on shared machines drift.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from pathlib import Path

from policy_engine import PolicyEngine
from policy_engine.cli import parse_json
from policy_engine.matchers import durable_available

CASES = Path(__file__).resolve().parent.parent / "tests" / "data" / "cases.jsonl"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def corpus() -> list[str]:
    if CASES.exists():
        return [json.dumps(parse_json(line)["request"], default=str) for line in CASES.open() if line.strip()]
    return [p.read_text() for p in sorted(EXAMPLES.glob("*.json"))]


def timed(fn, items, n) -> list[float]:
    samples = []
    gc.disable()
    try:
        for i in range(n):
            item = items[i % len(items)]
            t = time.perf_counter_ns()
            fn(item)
            samples.append((time.perf_counter_ns() - t) / 1000)
    finally:
        gc.enable()
    return samples


def row(name: str, samples: list[float], floor: float) -> str:
    q = statistics.quantiles(samples, n=100)
    p50, p99 = q[49], q[98]
    return f"{name:34} p50 {p50:8.1f} µs  p99 {p99:8.1f} µs  {1e6 / statistics.fmean(samples):9.0f}/s  " \
           f"p50 = {p50 / floor:5.1f}x floor"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    n = ap.parse_args().n
    texts = corpus()
    engine = PolicyEngine.from_path(None, matcher="python")
    prepare = engine.prepare
    floor_samples = timed(lambda t: prepare(parse_json(t)), texts, n)
    floor = statistics.median(floor_samples)
    print(f"corpus: {len(texts)} requests, {n} decisions per row; pack {engine.ruleset.pack} "
          f"{engine.ruleset.version} ({len(engine.ruleset.rules)} rules)")
    print(row("floor: json.loads + validate", floor_samples, floor))
    for name in ["python", "durable"] if durable_available()[0] else ["python"]:
        eng = PolicyEngine.from_path(None, matcher=name)
        for t in texts:
            eng.evaluate(parse_json(t))
        print(row(f"evaluate ({name}), json.loads incl.", timed(lambda t, e=eng: e.evaluate(parse_json(t)), texts, n),
                  floor))
        eng.close()


if __name__ == "__main__":
    main()
