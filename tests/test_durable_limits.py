"""durable-rules' hard limits (DESIGN §6) and the guards in ``policy_engine/matchers/durable.py`` that keep every
compiled ruleset inside them.

Each limit is shown twice: a *raw* demonstration on ``durable_rules_engine`` (so a durable-rules release that
lifts the limit is noticed), and a pack that would cross the limit if the guard were removed, evaluated through
the public API and compared with the pure-Python matcher. Anything that can hang or crash the interpreter runs
in a subprocess with a timeout, so it fails the test instead of killing or stalling pytest.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import DURABLE_OK, base_request, needs_durable

from policy_engine import PolicyEngine, load_ruleset
from policy_engine.conditions import evaluate
from policy_engine.errors import EvaluationError, RuleSetError

if DURABLE_OK:
    import durable_rules_engine as dre

    from policy_engine.matchers.durable import MAX_BRANCHES, SHARD_BUDGET, DurableMatcher, plan_shards

pytestmark = needs_durable

P2P_REQUEST = base_request(purpose="p2p_transfer", payee={"country": "CN", "sanctions_hit": False})


# -- helpers -----------------------------------------------------------------------------------------------
def rule_yaml(rule_id: str, when: str, outcome: str = "review") -> str:
    """One `rules:` item; ``when`` is a flow-style YAML condition on one line."""
    return (f"- id: {rule_id}\n  category: risk\n  title: {rule_id}\n  when: {when}\n  outcome: {outcome}\n"
            f"  reason: {rule_id} fired\n  source: test\n  verified: false\n")


def answer(engine: PolicyEngine, request: dict) -> tuple[str, tuple[str, ...]]:
    d = engine.evaluate(request)
    return d.decision, tuple(e.rule_id for e in d.trail)


def run_python(code: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=timeout)


#: Evaluates ``argv[2]`` (JSON list of requests) on the pack ``argv[1]`` with the durable matcher, in a child
#: process; prints ``[[decision, [rule ids]], ...]`` and the number of shards.
DURABLE_CHILD = """
    import json, sys
    from policy_engine import PolicyEngine
    engine = PolicyEngine.from_path(sys.argv[1], matcher="durable")
    out = []
    for request in json.loads(sys.argv[2]):
        d = engine.evaluate(request)
        out.append([d.decision, [e.rule_id for e in d.trail]])
    print(json.dumps({"answers": out, "shards": len(engine.pack.matcher.shards)}))
"""


def durable_in_child(pack: Path, requests: list[dict], timeout: float = 15) -> tuple[list, int]:
    """Normally about a second; a hang inside durable-rules fails the test after ``timeout`` seconds."""
    try:
        proc = run_python(DURABLE_CHILD, str(pack), json.dumps(requests), timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the durable matcher hung (no answer within {timeout} s)")
    assert proc.returncode == 0, f"durable child exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    result = json.loads(proc.stdout)
    return [(d, tuple(ids)) for d, ids in result["answers"]], result["shards"]


def shard_tests(definition: str) -> int:
    """Alpha tests in a shard as written in its durable definition (the ``t == "pay"`` anchor excluded)."""
    rules = json.loads(definition)
    return sum(len(r["all"][0]["m"]["$and"]) - 1 for r in rules.values())


def raw_ruleset(name: str, rules: dict) -> int:
    return dre.create_ruleset(name, json.dumps(rules))


# -- (a) 64 alpha nodes matching one fact -> error 303 --------------------------------------------------------
def threshold_rules(n: int) -> str:
    """``n`` rules that all fire on a CNY 1,000 purchase: distinct thresholds, every tenth an `all` of 3-5."""
    extra = ["{field: purpose, op: eq, value: merchant_purchase}", "{field: payer.id, op: exists}",
             "{field: amount.currency, op: in, value: [CNY, USD]}", "{field: funding_source.type, op: ne, value: bnpl}"]
    out = []
    for i in range(n):
        leaf = f"{{field: amount.value, op: gte, value: {i}}}"
        if i % 10 == 0:
            out.append(rule_yaml(f"T{i:03d}", "{all: [" + ", ".join([leaf, *extra[: 2 + i % 3]]) + "]}"))
        else:
            out.append(rule_yaml(f"T{i:03d}", leaf))
    return "".join(out)


def test_raw_65_alpha_nodes_matching_one_fact_raise_303():
    fact = json.dumps({"id": 1, "sid": 1, "t": "pay", "a": 10**9})

    def rules(n: int) -> dict:
        return {f"r{i}": {"all": [{"m": {"$and": [{"t": "pay"}, {"$gte": {"a": i}}]}}]} for i in range(n)}

    ok = raw_ruleset("limits_alpha_64", rules(64))
    try:
        code, _ = dre.assert_fact(ok, fact)
        assert code == 0
        dre.retract_fact(ok, fact)
    finally:
        dre.delete_ruleset(ok)
    bad = raw_ruleset("limits_alpha_65", rules(65))
    try:
        with pytest.raises(dre.error, match="error code: 303"):
            dre.assert_fact(bad, fact)
    finally:
        dre.delete_ruleset(bad)


def test_150_rules_firing_together_are_sharded_and_all_fire(make_pack):
    pack = make_pack(threshold_rules(150))
    python = PolicyEngine(load_ruleset(pack), matcher="python")
    durable = PolicyEngine(load_ruleset(pack), matcher="durable")
    try:
        for amount in (1000, 150, 149, 75, 1):
            request = base_request(amount__value=amount)
            assert answer(durable, request) == answer(python, request)
        decision, fired = answer(durable, base_request(amount__value=1000))
        assert decision == "review"
        assert fired == tuple(f"T{i:03d}" for i in range(150))
        matcher = durable.pack.matcher
        assert isinstance(matcher, DurableMatcher)
        assert len(matcher.shards) > 1
        for shard in matcher.shards:
            assert shard.cost == shard_tests(shard.definition)
            assert shard.cost <= SHARD_BUDGET
    finally:
        durable.close()


def test_without_the_budget_the_same_pack_hits_303(make_pack):
    """The sharding budget is what keeps the previous test working: one unsharded ruleset fails at request time
    (and the failed handle set is not leaked)."""
    engine = PolicyEngine(load_ruleset(make_pack(threshold_rules(150))), matcher="python")
    program = engine.pack.program
    prepared = engine.prepare(base_request(amount__value=1000))
    unsharded = DurableMatcher(program, budget=10**6)
    facts = unsharded.encoder.encode(prepared.view, prepared.day)
    try:
        assert max(shard.cost for shard in unsharded.shards) > 64  # one ruleset per guard key, no splitting
        with pytest.raises(EvaluationError, match="303"):
            unsharded.match_facts(facts)
        assert unsharded.handle_sets == 0
    finally:
        unsharded.close()


# -- (b) 512+ branches under one node hang ---------------------------------------------------------------
def test_raw_flat_600_branch_or_hangs():
    code = """
        import json, durable_rules_engine as dre
        branches = [{"k": f"v{i}"} for i in range(600)]
        rules = {"r": {"all": [{"m": {"$and": [{"t": "pay"}, {"$or": branches}]}}]}}
        h = dre.create_ruleset("limits_or_600", json.dumps(rules))
        dre.assert_fact(h, json.dumps({"id": 1, "sid": 1, "t": "pay", "k": "v599"}))
    """
    # 511 branches create and match in a few milliseconds; 600 never finish.
    with pytest.raises(subprocess.TimeoutExpired):
        run_python(code, timeout=6)


def test_in_list_of_1500_members_is_split_and_matches(make_pack):
    members = [f"m{i}" for i in range(1500)]
    pack = make_pack(rule_yaml("IN-1", "{field: merchant.id, op: in, list: merchants}", outcome="deny"),
                     lists_yaml=f"merchants:\n  values: [{', '.join(members)}]\n")
    python = PolicyEngine(load_ruleset(pack), matcher="python")
    plan = plan_shards(python.pack.program)
    widest = max(len(atom["$or"]) for s in plan for r in json.loads(s.definition).values()
                 for atom in r["all"][0]["m"]["$and"] if "$or" in atom)
    assert widest <= MAX_BRANCHES < 512
    requests = [base_request(request_id=m, merchant__id=m) for m in ("m0", "m750", "m1499", "m1500", "m")]
    requests.append(base_request(request_id="no-merchant-id"))
    expected = [answer(python, r) for r in requests]
    assert expected == [("deny", ("IN-1",))] * 3 + [("allow", ())] * 3
    got, _ = durable_in_child(pack, requests)
    assert got == expected


def test_two_300_member_lists_in_one_pack_match(make_pack):
    """Each list is under ``MAX_BRANCHES``, but durable-rules' limit is on the distinct conditions below one node
    of a whole ruleset, not of one ``$or``: 600 equalities in one shard hang like a flat 600-branch ``$or``."""
    rules = (rule_yaml("IN-M", "{field: merchant.id, op: in, list: merchants}", outcome="deny")
             + rule_yaml("IN-P", "{field: payee.id, op: in, list: payees}", outcome="review"))
    lists = (f"merchants:\n  values: [{', '.join(f'm{i}' for i in range(300))}]\n"
             f"payees:\n  values: [{', '.join(f'p{i}' for i in range(300))}]\n")
    pack = make_pack(rules, lists_yaml=lists)
    python = PolicyEngine(load_ruleset(pack), matcher="python")
    requests = [base_request(merchant__id="m299"), base_request(payee={"id": "p0"}),
                base_request(merchant__id="m5", payee={"id": "p150"}), base_request(merchant__id="p5")]
    expected = [answer(python, r) for r in requests]
    assert expected == [("deny", ("IN-M",)), ("review", ("IN-P",)), ("deny", ("IN-M", "IN-P")), ("allow", ())]
    got, _ = durable_in_child(pack, requests)
    assert got == expected


# -- (c) 256 rules sharing one identical condition crash -------------------------------------------------
def test_raw_256_identical_conditions_segfault():
    code = """
        import json, durable_rules_engine as dre
        rules = {f"r{i}": {"all": [{"m": {"$and": [{"t": "pay"}, {"k": "v1"}]}}]} for i in range(int(N))}
        h = dre.create_ruleset("limits_same", json.dumps(rules))
        dre.assert_fact(h, json.dumps({"id": 1, "sid": 1, "t": "pay", "k": "v1"}))
    """
    assert run_python(code.replace("N", "255"), timeout=30).returncode == 0
    crashed = run_python(code.replace("N", "256"), timeout=30)
    assert crashed.returncode < 0, (crashed.returncode, crashed.stderr[-2000:])


def test_300_rules_with_one_identical_condition_all_fire(make_pack):
    rules = "".join(rule_yaml(f"S{i:03d}", "{field: purpose, op: eq, value: p2p_transfer}") for i in range(300))
    pack = make_pack(rules)
    python = PolicyEngine(load_ruleset(pack), matcher="python")
    requests = [P2P_REQUEST, base_request()]
    expected = [answer(python, r) for r in requests]
    assert expected == [("review", tuple(f"S{i:03d}" for i in range(300))), ("allow", ())]
    got, shards = durable_in_child(pack, requests)
    assert got == expected
    assert shards > 1


def test_rule_cap_alone_keeps_identical_conditions_safe(make_pack):
    """With the test budget lifted, only ``MAX_RULES_PER_SHARD`` keeps 300 identical rules working: in one
    ruleset, 256 of them crash the process at the first assert and 257 or more are refused (error 108)."""
    rules = "".join(rule_yaml(f"S{i:03d}", "{field: purpose, op: eq, value: p2p_transfer}") for i in range(300))
    pack = make_pack(rules)
    code = """
        import json, sys
        from policy_engine import PolicyEngine
        from policy_engine.matchers.durable import DurableMatcher
        engine = PolicyEngine.from_path(sys.argv[1], matcher="python")
        program = engine.pack.program
        prepared = engine.prepare(json.loads(sys.argv[2]))
        matcher = DurableMatcher(program, budget=10**6)
        fired = matcher.match(prepared)
        print(json.dumps({"shards": len(matcher.shards), "fired": fired}))
    """
    proc = run_python(code, str(pack), json.dumps(P2P_REQUEST), timeout=60)
    assert proc.returncode == 0, f"child exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    result = json.loads(proc.stdout)
    assert result["shards"] == 2
    assert result["fired"] == list(range(300))


# -- (d) conditions the durable matcher refuses ------------------------------------------------------------
WIDE = "{all: [" + ", ".join(
    f"{{any: [{{field: amount.value, op: gte, value: {1000 + k}}}, {{field: risk_score, op: lt, value: {20 + k}}}]}}"
    for k in range(13)) + "]}"  # 2**13 = 8192 alternatives
LONG = "{all: [" + ", ".join(f"{{field: amount.value, op: gte, value: {1000 + k}}}" for k in range(60)) + "]}"


@pytest.mark.parametrize(("when", "message"), [(WIDE, "more than 4096 alternatives"), (LONG, "60 tests")],
                         ids=["8192-alternatives", "60-test-alternative"])
def test_condition_beyond_durable_limits_is_a_load_error(make_pack, when, message):
    pack = make_pack(rule_yaml("OK-1", "{field: purpose, op: eq, value: gambling}", outcome="deny")
                     + rule_yaml("BIG-1", when))
    line = pack.read_text(encoding="utf-8").splitlines().index("  - id: BIG-1") + 1
    with pytest.raises(RuleSetError) as info:
        PolicyEngine(load_ruleset(pack), matcher="durable")
    (issue,) = info.value.issues
    assert issue.rule_id == "BIG-1"
    assert Path(issue.file).name == pack.name
    assert issue.line == line
    assert issue.col >= 1
    assert message in issue.message
    assert f"{pack.name}:{line}:{issue.col} BIG-1" in str(info.value)

    python = PolicyEngine(load_ruleset(pack), matcher="python")
    rule = python.ruleset.rule("BIG-1")
    requests = [base_request(amount__value=5000), base_request(amount__value=5000, risk_score=90),
                base_request(risk_score=5), base_request(risk_score=90),
                base_request(amount__value=1005, risk_score=30), base_request(amount__value=1005, risk_score=26)]
    fired_count = 0
    for request in requests:
        prepared = python.prepare(request)
        fires = evaluate(rule.when, prepared.view, prepared.day)
        fired_count += fires
        assert ("BIG-1" in answer(python, request)[1]) == fires
    assert 0 < fired_count < len(requests)


# -- (e) native handles ------------------------------------------------------------------------------------
def test_reload_releases_old_handles_and_threads_do_not_grow_them(make_pack):
    pack = make_pack(threshold_rules(60))
    engine = PolicyEngine.from_path(pack, matcher="durable")
    python = PolicyEngine.from_path(pack, matcher="python")
    try:
        requests = [base_request(request_id=f"h-{n}", amount__value=1 + n % 80) for n in range(2000)]
        expected = [answer(python, r) for r in requests]
        old = engine.pack.matcher
        assert [answer(engine, r) for r in requests] == expected  # single-threaded: one handle set suffices
        assert old.handle_sets == 1
        engine.reload()
        assert old.handle_sets == 0
        new = engine.pack.matcher
        assert new is not old and new.handle_sets == 1

        threads = 4
        with ThreadPoolExecutor(threads) as pool:
            got = list(pool.map(lambda r: answer(engine, r), requests, chunksize=50))
        assert got == expected
        assert 1 <= new.handle_sets <= threads
        engine.close()
        assert new.handle_sets == 0
    finally:
        engine.close()


# -- shard triggers ------------------------------------------------------------------------------------------
def test_requests_skip_the_shards_whose_rules_they_cannot_fire(monkeypatch):
    """Shards are grouped by a value their rules require (funding source, purpose, ...); a request asserts its
    fact only into shards it can fire in, and still gets every rule the python matcher gives it."""
    durable = PolicyEngine.from_path(matcher="durable")
    python = PolicyEngine.from_path(matcher="python")
    shards = durable.pack.matcher.shards
    asserted = []
    real = dre.assert_fact
    monkeypatch.setattr(dre, "assert_fact", lambda handle, text: asserted.append(handle) or real(handle, text))
    try:
        assert sum(shard.trigger is not None for shard in shards) > len(shards) // 2
        for request in (base_request(), base_request(funding_source__type="bnpl", purpose="credit_card_repayment"),
                        base_request(merchant__country="IR"), base_request(payer__sanctions_hit=True)):
            asserted.clear()
            assert answer(durable, request) == answer(python, request)
            assert 0 < len(asserted) < len(shards) // 2
        for shard in shards:  # every rule of a shard requires its trigger key to hold one of the trigger values
            if shard.trigger is not None:
                key, values = shard.trigger
                for rule in json.loads(shard.definition).values():
                    required = [test for test in rule["all"][0]["m"]["$and"] if key in test or "$or" in test]
                    assert any((test.get(key) in values) or all(alt.get(key) in values for alt in test.get("$or", [{}]))
                               for test in required), (key, values, rule)
    finally:
        durable.close()


def _definition_keys(node, out: set) -> set:
    """Fact keys a durable rule's condition reads (tests' keys, `$m` references, `$ex`/`$nex` keys)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$m":
                out.add(value)
            elif not key.startswith("$") and key not in ("all", "m", "t"):
                out.add(key)
            _definition_keys(value, out)
    elif isinstance(node, list):
        for value in node:
            _definition_keys(value, out)
    return out


def test_each_shard_is_sent_exactly_the_keys_it_reads_and_encoding_a_subset_is_a_subset():
    """A shard's fact carries only its own keys (``Shard.keys``), and the encoder asked for some keys gives
    exactly those keys of the full encoding, so no shard ever misses a field it tests."""
    from policy_engine.jsonio import parse_json
    from policy_engine.synthetic import dumps_request, iter_payments

    durable = PolicyEngine.from_path(matcher="durable")
    try:
        matcher = durable.pack.matcher
        for shard in matcher.shards:
            rules = json.loads(shard.definition).values()
            assert set(shard.keys) == set().union(*(_definition_keys(rule, set()) for rule in rules))
        encoder = matcher.encoder
        keys = sorted(encoder.keys)
        for n, payment in enumerate(iter_payments(n=200, seed=5)):
            payment.pop("label", None)
            prepared = durable.prepare(parse_json(dumps_request(payment)))
            full = encoder.encode(prepared.view, prepared.day)
            want = frozenset(keys[n % 7::3])
            assert encoder.encode(prepared.view, prepared.day, want) == {k: v for k, v in full.items() if k in want}
    finally:
        durable.close()
