"""Soak: run many decisions through one engine and report resident memory at intervals.

    python scripts/soak.py [--n 1000000] [--matcher python|durable] [--every 100000] [--reload-every 0]

Requests cycle through the acceptance cases with a fresh request_id each time (so nothing can be cached by
identity); with --reload-every K the pack is reloaded every K decisions, which exercises handle release in the
durable matcher. RSS is read from /proc/self/statm. Prints one line per interval and a verdict: the growth from
the first interval to the last, which must stay within a few MiB for a flat process.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import time
from pathlib import Path

from policy_engine import PolicyEngine
from policy_engine.jsonio import parse_json

CASES = Path(__file__).resolve().parent.parent / "tests" / "data" / "cases.jsonl"


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--matcher", default="python")
    ap.add_argument("--every", type=int, default=100_000)
    ap.add_argument("--reload-every", type=int, default=0)
    args = ap.parse_args()
    requests = [parse_json(line)["request"] for line in CASES.open(encoding="utf-8") if line.strip()]
    engine = PolicyEngine.from_path(None, matcher=args.matcher)
    counts: dict[str, int] = {}
    samples = []
    start = last = time.perf_counter()
    for i in range(1, args.n + 1):
        request = copy.copy(requests[i % len(requests)])
        request["request_id"] = f"soak-{i}"
        decision = engine.evaluate(request)
        counts[decision.decision.value] = counts.get(decision.decision.value, 0) + 1
        if args.reload_every and i % args.reload_every == 0:
            engine.reload()
        if i % args.every == 0:
            now = time.perf_counter()
            samples.append(rss_mib())
            print(f"{i:>9} decisions  rss {samples[-1]:7.1f} MiB  {args.every / (now - last):9.0f}/s", flush=True)
            last = now
    elapsed = time.perf_counter() - start
    growth = samples[-1] - samples[0] if samples else 0.0
    print(json.dumps({"matcher": args.matcher, "decisions": args.n, "seconds": round(elapsed, 1),
                      "per_second": round(args.n / elapsed), "rss_first_mib": round(samples[0], 1),
                      "rss_last_mib": round(samples[-1], 1), "growth_mib": round(growth, 1),
                      "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "decisions_by_outcome": counts}))
    engine.close()


if __name__ == "__main__":
    main()
