"""Differential run: the python and durable matchers on N generated requests against one pack.

    python scripts/differential.py -n 100000 --jobs 2          # default pack, both cores

Requests come from the property-test strategies (half plain, half moved onto the pack's thresholds); each is
decided by ``PolicyEngine(..., matcher="python")`` and ``matcher="durable"``, and the decisions and fired rule
ids are compared. Prints the counts (decisions, fired rules, distinct requests, mismatches with the first few
requests as JSON) and the time taken. Exit 1 on any mismatch, 2 if durable-rules cannot run here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import sys
import time
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from policy_engine import PolicyEngine, RequestError, load_ruleset
from policy_engine.matchers import durable_available
from policy_engine.testing.invariants import json_ready
from policy_engine.testing.strategies import near_thresholds, requests

MAX_REPORTED = 5


def _run(job: tuple[str | None, int, int]) -> dict[str, Any]:
    pack, count, job_seed = job
    ruleset = load_ruleset(pack)
    python, durable = PolicyEngine(ruleset, matcher="python"), PolicyEngine(ruleset, matcher="durable")
    stats: dict[str, Any] = {"requests": 0, "invalid": 0, "decisions": Counter(), "fired": Counter(),
                             "digests": set(), "mismatches": []}

    # Phase.generate only: a mismatch is recorded and the run goes on (shrinking would stop the count).
    @seed(job_seed)
    @settings(max_examples=count, database=None, deadline=None, phases=(Phase.generate,),
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(requests(), near_thresholds(ruleset)))
    def compare(request: dict) -> None:
        stats["requests"] += 1
        text = json.dumps(json_ready(request), sort_keys=True)
        stats["digests"].add(hashlib.blake2b(text.encode(), digest_size=12).digest())
        try:
            a = python.evaluate(request)
        except RequestError:
            stats["invalid"] += 1  # the strategies promise valid requests: counted, and a failure
            return
        b = durable.evaluate(request)
        stats["decisions"][a.decision.value] += 1
        stats["fired"].update(a.rule_ids)
        if a.decision != b.decision or a.rule_ids != b.rule_ids or a.undecided_ids != b.undecided_ids \
                or a.skipped_ids != b.skipped_ids:
            stats["mismatches"].append({"request": json.loads(text), "python": [a.decision.value, a.rule_ids],
                                        "durable": [b.decision.value, b.rule_ids]})

    try:
        compare()
    finally:
        python.close()
        durable.close()
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--requests", type=int, default=100_000, help="requests to generate (default 100000)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument("--pack", default=None, help="rule pack (default: the bundled pack)")
    args = parser.parse_args(argv)
    ok, why = durable_available()
    if not ok:
        print(f"differential: {why}", file=sys.stderr)
        return 2
    jobs = max(1, args.jobs)
    shares = [args.requests // jobs + (1 if i < args.requests % jobs else 0) for i in range(jobs)]
    work = [(args.pack, share, args.seed + i) for i, share in enumerate(shares) if share]
    start = time.perf_counter()
    if len(work) == 1:
        parts = [_run(work[0])]
    else:
        with multiprocessing.get_context("fork").Pool(len(work)) as pool:
            parts = pool.map(_run, work)
    elapsed = time.perf_counter() - start

    total, invalid = sum(p["requests"] for p in parts), sum(p["invalid"] for p in parts)
    decisions, fired = sum((p["decisions"] for p in parts), Counter()), sum((p["fired"] for p in parts), Counter())
    distinct = len(set().union(*(p["digests"] for p in parts)))
    mismatches = [m for p in parts for m in p["mismatches"]]
    rules = [r.id for r in load_ruleset(args.pack).rules]
    print(f"generated {total} requests ({distinct} distinct) in {elapsed:.1f} s with {len(work)} job(s), "
          f"{total / elapsed:,.0f} requests/s end to end (generation dominates)")
    print("decisions: " + ", ".join(f"{k} {v}" for k, v in decisions.most_common()))
    print(f"rules fired at least once: {sum(1 for r in rules if fired[r])}/{len(rules)}"
          + (f" (never: {', '.join(r for r in rules if not fired[r])})" if any(not fired[r] for r in rules) else ""))
    print(f"invalid generated requests: {invalid}")
    print(f"mismatches between python and durable (decision or fired ids): {len(mismatches)}")
    for m in mismatches[:MAX_REPORTED]:
        print("  " + json.dumps(m, ensure_ascii=False))
    return 1 if mismatches or invalid else 0


if __name__ == "__main__":
    sys.exit(main())
