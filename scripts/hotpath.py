"""Text -> decision text on the hot path, for instruction counts and paired timings (README "Performance").

    python scripts/hotpath.py N            # N evaluate_json calls after a warm-up (run under callgrind twice,
                                           # N=0 and N=2000: the difference / 2000 is instructions per request)
    python scripts/hotpath.py N --time     # p50 and p99 of N timed calls

Inputs are 2,000 synthetic requests (``benchmarks.run.corpus``) on the bundled pack, as bytes: a service's body.
Run it with ``PYTHONPATH`` at each version's checkout, alternated, for a paired ratio on a shared machine.
"""

from __future__ import annotations

import argparse
import gc
import time

from benchmarks.run import corpus
from policy_engine import PolicyEngine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", type=int, help="calls to make (after 500 warm-up calls)")
    ap.add_argument("--time", action="store_true", help="time each call and print p50 and p99 in µs")
    args = ap.parse_args()
    texts = [t.encode("utf-8") for t in corpus(2000)]
    evaluate_json = PolicyEngine.from_path().evaluate_json
    for text in texts[:500]:
        evaluate_json(text)
    if not args.time:
        for i in range(args.n):
            evaluate_json(texts[i % len(texts)])
        return
    gc.disable()
    clock = time.perf_counter_ns
    samples = []
    for i in range(args.n):
        text = texts[i % len(texts)]
        start = clock()
        evaluate_json(text)
        samples.append(clock() - start)
    samples.sort()
    print(f"p50 {samples[len(samples) // 2] / 1000:.1f} µs  p99 {samples[len(samples) * 99 // 100] / 1000:.1f} µs")


if __name__ == "__main__":
    main()
