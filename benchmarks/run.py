"""The benchmark: latency and throughput of the engine against a floor measured in the same run.

    python -m benchmarks.run [--n 20000] [--quick] [--corpus synthetic|cases] [--json figures.json] [--redis URL]

Prints, on one generated corpus:
  * the floor: decoding + request validation (the least any engine must do with a request), with the package's
    decoder (msgspec where installed) and the engine's validator (accept-only fast path, full validator when
    unsure); beside it the standard ``json.loads``, the full validator alone, jsonschema-rs if installed, and
    the engine's native pass (text decoded and validated into msgspec Structs at once, policy_engine.native);
  * end-to-end ``evaluate`` (validate, normalise, match, decide, trail) on the bundled pack per matcher, on
    parsed requests (the library call), from JSON text, and text -> decision text (``evaluate_json``): p50 /
    p99 µs, decisions/s on one core, the ratio of p50 to the floor;
  * the verdicts against the targets of DESIGN §8 (``evaluate``) and of issue 15 (text -> text), each from the
    median of several runs with the floor measured in each, so one preempted run does not flip them;
  * batch: ``policy-engine evaluate --json`` on a JSON Lines stream (100k lines; 10k with --quick) against
    in-process ``evaluate_json`` on the same lines;
  * ``evaluate`` with engine-owned counters per store: memory, SQLite and, given a Redis URL, Redis;
  * scaling with generated packs of 10, 100 and 1,000 payment-like rules, and the 1,000/10 cost ratio;
  * load time of the bundled pack and the resident memory of an engine;
  * if ``zen-engine`` is installed (``pip install '.[bench]'``), the same funding-source decision table run by
    Zen on the same requests, and the ratio.
Figures drift between runs on a shared machine; compare the ratios.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from policy_engine import PolicyEngine, load_ruleset
from policy_engine.jsonio import native_json, parse_json
from policy_engine.matchers import durable_available
from policy_engine.native import compile_native
from policy_engine.pack import DEFAULT_MATCHER
from policy_engine.request import counters_read, money_places
from policy_engine.resources import load_schema
from policy_engine.ruleset import RuleSet
from policy_engine.validator import compile_fast_path, compile_schema

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "data" / "cases.jsonl"
MATCHERS = ["python", "durable"] if durable_available()[0] else ["python"]


# -- corpus ------------------------------------------------------------------------------------------------------
def corpus(size: int, seed: int = 7, kind: str = "synthetic") -> list[str]:
    """Request texts: synthetic traffic (DOMAIN §8.2: full requests with history counters, ~48 fields), or
    the acceptance cases with perturbed amounts (smaller requests, many rules firing)."""
    if kind == "synthetic":
        from policy_engine.synthetic import dumps_request, iter_payments

        out = []
        for payment in iter_payments(n=size, seed=seed):
            payment.pop("label", None)
            out.append(dumps_request(payment))  # exact numbers, as `policy-engine generate` writes them
        return out
    rng = random.Random(seed)
    base = [parse_json(line)["request"] for line in CASES.open(encoding="utf-8") if line.strip()]
    out = []
    for i in range(size):
        req = json.loads(json.dumps(rng.choice(base), default=str))
        req["request_id"] = f"b-{i}"
        req["amount"]["value"] = round(float(req["amount"]["value"]) * rng.uniform(0.5, 1.5), 2)
        if req["amount"]["currency"] == "JPY":
            req["amount"]["value"] = int(req["amount"]["value"]) or 1
        out.append(json.dumps(req))
    return out


def for_pack(requests: list[dict], ruleset: RuleSet) -> list[dict]:
    """The requests as a caller of ``ruleset`` sends them: only the history counters the pack reads (the engine
    refuses the others)."""
    keep = counters_read(ruleset)
    out = []
    for request in requests:
        history = {k: v for k, v in request.get("history", {}).items() if k in keep}
        out.append({k: v for k, v in request.items() if k != "history"} | ({"history": history} if history else {}))
    return out


# -- measuring ---------------------------------------------------------------------------------------------------
def timed(fn: Callable, items: list, n: int) -> list[float]:
    for item in items[:200]:
        fn(item)  # warm caches and generated code
    samples = []
    gc.collect()
    gc.disable()
    try:
        clock = time.perf_counter_ns
        for i in range(n):
            item = items[i % len(items)]
            t = clock()
            fn(item)
            samples.append((clock() - t) / 1000)
    finally:
        gc.enable()
    return samples


def stats(samples: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(samples, n=100)
    return q[49], q[98], 1e6 / statistics.fmean(samples)


def median_runs(fn: Callable, items: list, n: int, runs: int, floor: Callable,
                floor_items: list) -> tuple[float, float, float, float]:
    """p50, p99, rate and p50 / floor p50, each the median over ``runs`` runs; the floor is measured in every
    run just before, so the ratio compares like with like even while the machine's load changes."""
    figures = []
    for _ in range(runs):
        floor_p50 = stats(timed(floor, floor_items, n))[0]
        p50, p99, rate = stats(timed(fn, items, n))
        figures.append((p50, p99, rate, p50 / floor_p50))
    return tuple(statistics.median(f[i] for f in figures) for i in range(4))  # type: ignore[return-value]


def verdict(name: str, figures: tuple[float, float, float, float], targets: dict[str, float], runs: int) -> str:
    """One line saying whether the median figures meet ``targets`` (``p50_us``, ``p99_us``, ``per_second``)."""
    p50, p99, rate, ratio = figures
    checks = []
    for key, value, unit in (("p50_us", p50, "p50"), ("p99_us", p99, "p99"), ("per_second", rate, "")):
        if key in targets:
            ok = value >= targets[key] if key == "per_second" else value <= targets[key]
            shown = f"{value:,.0f}/s {'>=' if ok else '<'} {targets[key]:,.0f}" if key == "per_second" else \
                f"{unit} {value:.1f} µs {'<=' if ok else '>'} {targets[key]:g}"
            checks.append((ok, shown))
    met = all(ok for ok, _ in checks)
    RECORD["verdicts"][name] = {"p50_us": round(p50, 2), "p99_us": round(p99, 2), "per_second": round(rate),
                                "p50_to_floor": round(ratio, 3), "runs": runs, "targets": targets, "met": met}
    return (f"  {name}, median of {runs} runs: {'; '.join(text for _, text in checks)}; p50 {ratio:.2f}x floor -- "
            f"{'met' if met else 'NOT met'}")


#: Every figure printed, for ``--json`` (a machine-readable copy to track across runs).
RECORD: dict[str, Any] = {"rows": [], "scaling": [], "memory": {}, "verdicts": {}}


def line(name: str, samples: list[float], floor_p50: float) -> str:
    p50, p99, rate = stats(samples)
    RECORD["rows"].append({"name": name, "p50_us": round(p50, 2), "p99_us": round(p99, 2),
                           "per_second": round(rate), "p50_to_floor": round(p50 / floor_p50, 3)})
    return f"  {name:44} p50 {p50:7.1f} µs  p99 {p99:7.1f} µs  {rate:8.0f}/s  p50 {p50 / floor_p50:5.2f}x floor"


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# -- generated packs -------------------------------------------------------------------------------------------
FUNDING = ["account_balance", "debit_card", "credit_card", "bnpl", "consumer_loan", "bank_transfer", "prepaid_card"]
PURPOSES = ["merchant_purchase", "p2p_transfer", "credit_card_repayment", "loan_repayment", "cash_withdrawal",
            "fund_investment", "wallet_topup", "lottery", "tuition", "medical"]
CHANNELS = ["online", "in_app", "pos", "qr_static", "atm", "counter"]


def generated_pack(n_rules: int, seed: int = 11) -> str:
    """Rules shaped like the default pack's: funding source x purpose, a channel or country, an amount or a
    cumulative limit, a score band."""
    rng = random.Random(seed)
    rules = []
    for i in range(n_rules):
        leaves = [f"{{field: funding_source.type, op: in, value: {rng.sample(FUNDING, rng.randint(1, 3))}}}",
                  f"{{field: purpose, op: eq, value: {rng.choice(PURPOSES)}}}"]
        shape = rng.randrange(4)
        if shape == 0:
            leaves.append(f"{{field: derived.amount_cny, op: gte, value: {rng.choice([500, 1000, 5000, 50000])}}}")
        elif shape == 1:
            leaves.append("{field: {add: [history.cash_today_cny, derived.amount_cny]}, op: gt, value: "
                          f"{rng.choice([1000, 10000, 50000])}}}")
        elif shape == 2:
            leaves.append(f"{{field: channel, op: in, value: {rng.sample(CHANNELS, 2)}}}")
            leaves.append(f"{{field: risk_score, op: gte, value: {rng.randint(40, 90)}}}")
        else:
            leaves.append("{not: {field: auth.sca_performed, op: eq, value: true}}")
            leaves.append("{field: merchant.country, op: ne, ref: ip_country}")
        rules.append(f"  - id: G-{i:04d}\n    category: risk\n    title: generated {i}\n"
                     f"    when: {{all: [{', '.join(leaves)}]}}\n"
                     f"    outcome: {rng.choice(['deny', 'review', 'step_up', 'allow'])}\n"
                     f"    reason: generated\n    source: benchmark\n    verified: false\n")
    return ('pack: generated\nversion: "1"\nreference_fx:\n  - {as_of: 2020-01-01, rates: {CNY: "1", USD: "7.2", '
            'EUR: "7.8", GBP: "9.1", HKD: "0.92", JPY: "0.048"}}\ntimezones: {CN: Asia/Shanghai}\nrules:\n'
            + "".join(rules))


# -- zen (optional) ----------------------------------------------------------------------------------------------
def zen_section(texts: list[str], requests: list[dict], n: int, floor_p50: float) -> None:
    try:
        import zen  # type: ignore[import-not-found]
    except ImportError:
        print("\nzen-engine: not installed (pip install '.[bench]') -- skipped")
        return
    # The funding-source x purpose rules of the bundled pack that are pure conjunctions of equalities and
    # membership tests on funding_source.type and purpose: the part of a payment policy a decision table
    # expresses directly. Both engines run exactly these rules; the fired sets are checked equal first.
    pack = load_ruleset(None)
    from policy_engine.conditions import All, Leaf
    from policy_engine.operators import Op

    table_rules = []
    for rule in pack.rules:
        kids = rule.when.children if isinstance(rule.when, All) else (rule.when,)
        if all(isinstance(k, Leaf) and k.operand.paths[0] in ("funding_source.type", "purpose")
               and k.op in (Op.EQ, Op.IN) and k.ref is None for k in kids):
            cells = {"funding_source.type": "", "purpose": ""}
            for k in kids:
                values = [k.value] if k.op is Op.EQ else [i.value for i in k.items]
                cells[k.operand.paths[0]] = ", ".join(json.dumps(v) for v in values)
            table_rules.append((rule, cells))
    jdm = {"contentType": "application/vnd.gorules.decision", "edges": [
        {"id": "e1", "type": "edge", "sourceId": "in", "targetId": "t"},
        {"id": "e2", "type": "edge", "sourceId": "t", "targetId": "out"}], "nodes": [
        {"id": "in", "type": "inputNode", "name": "request", "position": {"x": 0, "y": 0}},
        {"id": "out", "type": "outputNode", "name": "response", "position": {"x": 600, "y": 0}},
        {"id": "t", "type": "decisionTableNode", "name": "funding", "position": {"x": 300, "y": 0}, "content": {
            "hitPolicy": "collect", "inputs": [
                {"id": "ft", "name": "funding", "field": "funding_source.type"},
                {"id": "pu", "name": "purpose", "field": "purpose"}],
            "outputs": [{"id": "rid", "name": "rule", "field": "rule_id"},
                        {"id": "oc", "name": "outcome", "field": "outcome"}],
            "rules": [{"_id": r.id, "ft": c["funding_source.type"], "pu": c["purpose"], "rid": json.dumps(r.id),
                       "oc": json.dumps(r.outcome)} for r, c in table_rules]}}]}
    decision = zen.ZenEngine().create_decision(json.dumps(jdm))
    with tempfile.TemporaryDirectory() as tmp:
        sub = Path(tmp) / "sub.yaml"
        sub.write_text('pack: sub\nversion: "1"\nreference_fx:\n  - {as_of: 2020-01-01, rates: {CNY: "1"}}\n'
                       "timezones: {CN: Asia/Shanghai}\nrules:\n" + _emit_rules(table_rules), encoding="utf-8")
        ours = PolicyEngine.from_path(sub)
    requests = for_pack(requests, ours.ruleset)
    plain = [json.loads(t) for t in texts]  # Zen takes floats, not Decimals
    mismatches = 0
    for zen_req, req in zip(plain[:2000], requests[:2000], strict=True):
        got = {row["rule_id"] for row in decision.evaluate(zen_req)["result"]}
        if got != set(ours.evaluate(req).rule_ids):
            mismatches += 1
    print(f"\nzen-engine {getattr(zen, '__version__', '')}: {len(table_rules)} funding-source rules as one decision "
          f"table (collect); fired sets differ on {mismatches} of {min(len(requests), 2000)} requests")
    print(line("zen decision.evaluate", timed(decision.evaluate, plain, n), floor_p50))
    print(line("policy-engine evaluate, same rules (python)", timed(ours.evaluate, requests, n), floor_p50))


def _emit_rules(table_rules) -> str:
    """The same rules as a pack of their own, values written inline."""
    out = []
    for rule, cells in table_rules:
        leaves = [f"{{field: {field}, op: in, value: [{values}]}}" for field, values in cells.items() if values]
        out.append(f"  - {{id: {rule.id}, category: {rule.category}, title: t, outcome: {rule.outcome}, "
                   f"reason: r, source: s, verified: false, when: {{all: [{', '.join(leaves)}]}}}}\n")
    return "".join(out)


# -- the native floor and the batch stream ---------------------------------------------------------------------
def native_floor_rows(schema: dict, texts: list[str], n: int, floor_p50: float) -> None:
    """jsonschema-rs on orjson's floats, if both are installed: a native floor (it cannot read money exactly,
    so it is a bound on what a native validator costs, not an alternative)."""
    try:
        import jsonschema_rs
        import orjson
    except ImportError:
        print("  (jsonschema-rs not installed: no native validator floor)")
        return
    validator = jsonschema_rs.validator_for(schema)
    print(line("orjson.loads + jsonschema-rs (floats)", timed(lambda t: validator.is_valid(orjson.loads(t)), texts, n),
               floor_p50))


def batch_section(engine: PolicyEngine, texts: list[str], size: int) -> None:
    """``evaluate --json`` on a stream of ``size`` lines in a fresh interpreter (its start-up, measured on an empty
    stream, taken off), against ``evaluate_json`` in process on the same lines; each the median of 3 runs."""
    lines = [texts[i % len(texts)] for i in range(size)]
    with tempfile.TemporaryDirectory() as tmp:
        stream, empty = Path(tmp) / "stream.jsonl", Path(tmp) / "empty.jsonl"
        stream.write_text("\n".join(lines) + "\n", encoding="utf-8")
        empty.write_text("", encoding="utf-8")

        def cli_seconds(path: Path) -> float:
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "policy_engine.cli", "evaluate", "--json", str(path)], cwd=ROOT,
                           stdout=subprocess.DEVNULL, check=True)
            return time.perf_counter() - t

        def in_process() -> float:
            t = time.perf_counter()
            for text in lines:
                engine.evaluate_json(text)
            return time.perf_counter() - t

        cli = statistics.median(size / (cli_seconds(stream) - cli_seconds(empty)) for _ in range(3))
        own = statistics.median(size / in_process() for _ in range(3))
    met = cli >= 0.8 * own
    RECORD["batch"] = {"lines": size, "cli_per_second": round(cli), "evaluate_json_per_second": round(own),
                       "ratio": round(cli / own, 3), "met": met}
    print(f"  issue 15, batch: evaluate --json on {size:,} lines {cli:,.0f}/s, evaluate_json in process {own:,.0f}/s: "
          f"{cli / own:.0%} {'>=' if met else '<'} 80% -- {'met' if met else 'NOT met'}")


# -- main --------------------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000, help="timed decisions per row")
    ap.add_argument("--quick", action="store_true", help="fewer decisions and no 1,000-rule durable pack")
    ap.add_argument("--redis", default=os.environ.get("POLICY_ENGINE_TEST_REDIS"),
                    help="a redis://host:port/db for the Redis counters row (default $POLICY_ENGINE_TEST_REDIS)")
    ap.add_argument("--corpus", choices=["synthetic", "cases"], default="synthetic",
                    help="generated traffic (default) or perturbed acceptance cases")
    ap.add_argument("--json", type=Path, metavar="PATH", help="also write every figure to PATH as JSON")
    args = ap.parse_args()
    n = 3000 if args.quick else args.n
    texts = corpus(2000, kind=args.corpus)
    requests = [parse_json(t) for t in texts]
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; corpus: {len(texts)} {args.corpus} "
          f"requests; {n} timed decisions per row")

    schema = load_schema("payment_request")
    full = compile_schema(schema)
    fast = compile_fast_path(schema, {}, money_places(schema))
    assert fast is not None

    def validate(request: dict) -> bool:
        """The engine's validation: the accept-only fast path, the full validator when it is unsure."""
        return fast(request) is not None or not full(request)

    assert all(validate(r) for r in requests), "the corpus must be valid requests"

    def floor_fn(text: str) -> bool:
        return validate(parse_json(text))

    decoder = "msgspec" if native_json()["msgspec"] else "standard library"
    floor = timed(floor_fn, texts, n)
    floor_p50 = stats(floor)[0]
    print(f"\nfloor (same requests; JSON: {', '.join(k for k, v in native_json().items() if v) or 'standard library'})")
    print(line("json.loads (standard library, Decimal)", timed(lambda t: json.loads(t, parse_float=Decimal), texts, n),
               floor_p50))
    print(line(f"parse_json ({decoder})", timed(parse_json, texts, n), floor_p50))
    print(line("floor: parse_json + request validation", floor, floor_p50))
    print(line("parse_json + full validator (all violations)", timed(lambda t: full(parse_json(t)), texts, n),
               floor_p50))
    native_floor_rows(schema, texts, n, floor_p50)
    native = compile_native(schema, {}, money_places(schema))
    if native is not None:  # the engine's own one-pass decode and validation (policy_engine.native)
        assert all(native(t) is not None for t in texts), "the native pass must accept the corpus"
        print(line("native pass: decode + validate (msgspec Structs)", timed(native, texts, n), floor_p50))

    print("\nbundled pack, end to end (validate, normalise, match, decide, trail)")
    results = {}
    for matcher in MATCHERS:
        engine = PolicyEngine.from_path(None, matcher=matcher)
        results[matcher] = samples = timed(engine.evaluate, requests, n)
        print(line(f"evaluate ({matcher})", samples, floor_p50))
        from_text = timed(lambda t, e=engine: e.evaluate(parse_json(t)), texts, n)
        print(line(f"parse_json + evaluate ({matcher})", from_text, floor_p50))
        print(line(f"evaluate_json, text -> text ({matcher})", timed(engine.evaluate_json, texts, n), floor_p50))
        engine.close()

    runs = 3 if args.quick else 5
    print(f"\nverdicts ({DEFAULT_MATCHER} matcher, the default)")
    engine = PolicyEngine.from_path(None, matcher=DEFAULT_MATCHER)
    print(verdict("DESIGN §8, evaluate", median_runs(engine.evaluate, requests, n, runs, floor_fn, texts),
                  {"p50_us": 25, "p99_us": 80, "per_second": 40000}, runs))
    print(verdict("issue 15, text -> text", median_runs(engine.evaluate_json, texts, n, runs, floor_fn, texts),
                  {"p50_us": 15, "p99_us": 40}, runs))
    batch_section(engine, texts, 10_000 if args.quick else 100_000)
    engine.close()

    print("\nbundled pack with engine-owned counters (read, decide, record in one transaction; new request ids)")
    stateless = [{k: v for k, v in r.items() if k != "history"} for r in requests]
    with tempfile.TemporaryDirectory() as tmp:
        stores = ["memory://", f"sqlite:///{Path(tmp) / 'state.db'}"]
        if args.redis:
            stores.append(args.redis)
        else:
            print("  evaluate with counters (redis): skipped, no --redis URL or POLICY_ENGINE_TEST_REDIS")
        run_id = os.urandom(6).hex()  # a shared Redis keeps earlier runs' payments: these ids are new
        for store in stores:
            engine = PolicyEngine.from_path(None, state=store)
            ids = itertools.count()
            samples = timed(lambda r, e=engine, i=ids: e.evaluate({**r, "request_id": f"b-{run_id}-{next(i)}"}),
                            stateless, max(1000, n // 10))
            print(line(f"evaluate with counters ({store.split(':')[0]})", samples, floor_p50))
            engine.close()

    print("\nscaling with generated packs (p50 per decision)")
    scaling: dict[str, dict[int, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in (10, 100, 1000):
            path = Path(tmp) / f"g{size}.yaml"
            path.write_text(generated_pack(size), encoding="utf-8")
            ruleset = load_ruleset(path)
            for matcher in MATCHERS:
                if args.quick and matcher == "durable" and size == 1000:
                    continue
                engine = PolicyEngine(ruleset, matcher=matcher)
                samples = timed(engine.evaluate, for_pack(requests, ruleset), max(2000, n // 4))
                p50, p99, rate = stats(samples)
                scaling.setdefault(matcher, {})[size] = p50
                RECORD["scaling"].append({"rules": size, "matcher": matcher, "p50_us": round(p50, 2),
                                          "p99_us": round(p99, 2), "per_second": round(rate)})
                print(f"  {size:5} rules  {matcher:8} p50 {p50:8.1f} µs  p99 {p99:8.1f} µs  {rate:8.0f}/s")
                engine.close()
    for matcher, by_size in scaling.items():
        if 10 in by_size and 1000 in by_size:
            print(f"  {matcher}: 100x the rules costs {by_size[1000] / by_size[10]:.2f}x the time per decision")

    print("\nload and memory")
    t = time.perf_counter()
    ruleset = load_ruleset(None)
    load_ms = (time.perf_counter() - t) * 1000
    print(f"  load bundled pack ({len(ruleset.rules)} rules, {len(ruleset.files)} files): {load_ms:.1f} ms")
    RECORD["memory"]["load_ms"] = round(load_ms, 1)
    for matcher in MATCHERS:
        # a fresh interpreter per matcher, so the figure is the engine's and not this process's history
        code = ("import os, time, json; from benchmarks.run import rss_mib, corpus; from policy_engine import "
                "PolicyEngine; from policy_engine.jsonio import parse_json; "
                "reqs = [parse_json(t) for t in corpus(500)]; "
                "before = rss_mib(); t = time.perf_counter(); "
                f"e = PolicyEngine.from_path(None, matcher={matcher!r}); build = time.perf_counter() - t; "
                "[e.evaluate(r) for r in reqs]; print(json.dumps([build * 1000, rss_mib() - before]))")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
        build_ms, grown = json.loads(result.stdout)
        RECORD["memory"][matcher] = {"build_ms": round(build_ms, 1), "resident_mib": round(grown, 1)}
        print(f"  engine ({matcher}): load + compile {build_ms:.1f} ms, resident memory +{grown:.1f} MiB "
              "after 500 decisions")

    zen_section(texts, requests, n, floor_p50)
    if args.json:
        RECORD["machine"] = {"cores": os.cpu_count(), "python": sys.version.split()[0], "corpus": args.corpus,
                             "requests": len(texts), "timed_per_row": n}
        args.json.write_text(json.dumps(RECORD, indent=2) + "\n", encoding="utf-8")
        print(f"\nfigures written to {args.json}")


if __name__ == "__main__":
    main()
