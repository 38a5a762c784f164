"""What leaving one field out of an acceptance case does to its decision (issue 13's omission table).

    python scripts/omissions.py [--matcher python|durable] [--cases tests/data/cases.jsonl]

For every acceptance case that is not allowed and every field or object in its request, the request is decided
again without it. Each removal ends one of four ways: refused (a request error: the contract requires it), the
same decision, a more severe one, or a less severe one. A less severe decision must name what was left out (a
rule left undecided, a rule marked `on_unknown: skip`, or a declared default); the table lists every such
removal and what names it, and the last line says how many lowered a refusal to `allow` without naming the
field (it must be 0).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from policy_engine import PolicyEngine, RequestError
from policy_engine.jsonio import parse_json
from policy_engine.testing.omission import removals

ORDER = {"deny": 0, "review": 1, "step_up": 2, "allow": 3}


def how_named(decision, path: str) -> str:
    def under(field: str) -> bool:
        return field == path or field.startswith(path + ".")

    for status in ("undecided", "skipped"):
        rules = sorted({e.rule_id for e in decision.trail if e.status == status and any(map(under, e.missing))})
        if rules:
            return f"{status} " + ", ".join(rules)
    if any(map(under, decision.defaulted)):
        return "declared default"
    return "NOT NAMED"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--matcher", default="python")
    ap.add_argument("--cases", default=str(Path(__file__).resolve().parent.parent / "tests/data/cases.jsonl"))
    args = ap.parse_args()
    engine = PolicyEngine.from_path(None, matcher=args.matcher)
    cases = [parse_json(line) for line in Path(args.cases).read_text(encoding="utf-8").splitlines() if line.strip()]
    outcomes: Counter[str] = Counter()
    lowered = []
    for case in cases:
        full = engine.evaluate(case["request"]).decision.value
        if full == "allow":
            continue
        for path, variant in removals(case["request"]):
            try:
                decision = engine.evaluate(variant)
            except RequestError:
                outcomes["refused (request error)"] += 1
                continue
            got = decision.decision.value
            if ORDER[got] == ORDER[full]:
                outcomes["same decision"] += 1
            elif ORDER[got] < ORDER[full]:
                outcomes["more severe"] += 1
            else:
                outcomes["less severe"] += 1
                lowered.append((case["id"], path, full, got, how_named(decision, path)))
    print(f"matcher {args.matcher}: {sum(outcomes.values())} removals from "
          f"{sum(1 for c in cases if engine.evaluate(c['request']).decision.value != 'allow')} refused cases")
    for name, count in outcomes.most_common():
        print(f"  {name:24} {count}")
    print("\nless severe after a removal (case, field left out, decision, named by):")
    for case_id, path, full, got, named in lowered:
        print(f"  {case_id:6} {path:36} {full:>7} -> {got:8} {named}")
    silent = [x for x in lowered if x[3] == "allow" and x[4] == "NOT NAMED"]
    print(f"\nsilent allow (a refusal lowered to allow without naming the field): {len(silent)}")
    return 1 if silent else 0


if __name__ == "__main__":
    sys.exit(main())
