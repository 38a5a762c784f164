"""Hostile rule files and requests, fuzzing, the decision log and replay."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import MATCHERS, PACK_HEADER, RULES, base_request
from hypothesis import given
from hypothesis import strategies as st

from policy_engine import EvaluationError, PolicyEngine, RequestError, RuleSetError, load_ruleset
from policy_engine.audit import AuditLog
from policy_engine.cli import main

RULE = """\
- id: R-1
  category: risk
  title: big amounts
  when: {field: amount.value, op: gte, value: 1000}
  outcome: deny
  reason: "amount {amount.value} is 1,000 or more"
  source: test
  verified: false
"""


def _pack(tmp_path, body: str, name: str = "pack.yaml"):
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


# -- hostile rule files ----------------------------------------------------------------------------------------
HOSTILE_PACKS = {
    "nested-5000-deep": PACK_HEADER + "rules:\n  - id: X-1\n    when: " + "{not: " * 5000 + "{}" + "}" * 5000 + "\n",
    "flow-nesting": PACK_HEADER + "lists:\n  x: " + "[" * 20000 + "]" * 20000 + "\n",
    "alias-bomb": "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(9)),
    "python-tag": PACK_HEADER + "lists:\n  x: !!python/object/apply:os.system [\"echo pwned\"]\n",
    "control-chars-in-reason": PACK_HEADER + "rules:\n" + RULE.replace('"amount', '"\\x1b[2Jamount'),
    "bidi-override-in-title": PACK_HEADER + "rules:\n" + RULE.replace("big amounts", "big \u202eamounts"),
    "id-with-newline": PACK_HEADER + "rules:\n" + RULE.replace("R-1", '"R-1\\nX"'),
    "huge-list": PACK_HEADER + "lists:\n  x: [" + ", ".join(f"v{i}" for i in range(120_000)) + "]\n",
    "huge-string-constant": PACK_HEADER + "rules:\n" + RULE.replace(
        "{field: amount.value, op: gte, value: 1000}", "{field: purpose, op: eq, value: " + "x" * 5000 + "}"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_PACKS))
def test_hostile_rule_file_is_refused_quickly_and_keeps_the_current_pack(tmp_path, name):
    good = _pack(tmp_path, PACK_HEADER + "rules:\n" + RULE, "good.yaml")
    engine = PolicyEngine.from_path(good)
    digest = engine.ruleset.digest
    bad = _pack(tmp_path, HOSTILE_PACKS[name], "bad.yaml")
    started = time.perf_counter()
    with pytest.raises(RuleSetError) as info:
        engine.reload(bad)
    assert time.perf_counter() - started < 15  # bounded: the largest case parses 120,000 YAML nodes
    assert all(i.file.endswith("bad.yaml") and i.line >= 1 for i in info.value.issues)
    assert engine.ruleset.digest == digest
    assert engine.evaluate(base_request(amount__value=5000)).rule_ids == ("R-1",)


def test_enormous_rule_file_is_refused(tmp_path):
    bad = _pack(tmp_path, PACK_HEADER + "# " + "x" * (5 * 1024 * 1024) + "\n")
    with pytest.raises(RuleSetError, match="limit"):
        load_ruleset(bad)


# -- hostile requests --------------------------------------------------------------------------------------------
HOSTILE_REQUESTS = {
    "huge-string": base_request(request_id="x" * 1_000_000),
    "lone-surrogate": base_request(payer__id="u\ud800"),
    "thousands-of-extra-fields": {**base_request(), **{f"extra{i}": i for i in range(5000)}},
    "nan": base_request(amount__value=float("nan")),
    "infinity": base_request(risk_score=float("inf")),
    "huge-int": base_request(payer__age=10**400),
    "bool-as-number": base_request(amount__value=True),
    "list-as-object": base_request(payer=[1, 2, 3]),
    "nested-history": base_request(history={"cash_today_cny": {"a": {"b": 1}}}),
    "negative-history": base_request(history__p2p_amount_24h_cny=-50000),
    "too-precise": base_request(amount__value="100.001"),
    "wrong-types-everywhere": {"request_id": 1, "timestamp": 2, "payer": "p", "funding_source": 3, "purpose": [],
                               "amount": {"value": {}, "currency": 5}},
}


@pytest.mark.parametrize("matcher", MATCHERS)
@pytest.mark.parametrize("name", sorted(HOSTILE_REQUESTS))
def test_hostile_request_is_a_request_error(name, matcher):
    engine = PolicyEngine.from_path(None, matcher=matcher)
    with pytest.raises(RequestError) as info:
        engine.evaluate(HOSTILE_REQUESTS[name])
    assert info.value.violations and all(v.path.startswith("$") for v in info.value.violations)


def test_hostile_stream_lines_are_error_records(tmp_path):
    good = json.dumps(base_request())
    lines = [b"[" * 200_000 + b"]" * 200_000, b"\xff\xfe not utf-8", b'{"a": NaN}', b'{"amount": 1e400}',
             good.encode()]
    stream = tmp_path / "s.jsonl"
    stream.write_bytes(b"\n".join(lines) + b"\n")
    out = io.StringIO()
    assert main(["evaluate", "--json", str(stream)], out=out, err=io.StringIO()) == 2
    records = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [r.get("line") for r in records[:4]] == [1, 2, 3, 4]
    assert all("error" in r for r in records[:4]) and records[4]["decision"] == "allow"


# -- fuzzing -----------------------------------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)
FIELDS = ["request_id", "timestamp", "payer", "funding_source", "purpose", "amount", "merchant", "payee", "channel",
          "history", "risk_score", "psp_country", "auth", "device", "ip_country", "derived"]


@pytest.fixture(scope="module")
def engines():
    made = [PolicyEngine.from_path(None, matcher=m) for m in MATCHERS]
    yield made
    for e in made:
        e.close()


@given(patch=st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4),
       nested=st.dictionaries(st.sampled_from(["payer", "amount", "history", "funding_source", "merchant"]),
                              st.dictionaries(st.text(max_size=12), json_values, max_size=3), max_size=2))
def test_request_fuzz_only_package_errors_escape(engines, patch, nested):
    request = base_request()
    request.update(patch)
    for key, extra in nested.items():
        if isinstance(request.get(key), dict):
            request[key] = {**request[key], **extra}
    outcomes = []
    for engine in engines:
        try:
            outcomes.append(engine.evaluate(request).rule_ids)
        except RequestError:
            outcomes.append("invalid")
    assert len(set(outcomes)) == 1  # the matchers agree, on decisions and on refusals


yaml_scalars = st.one_of(st.integers(-10**6, 10**6), st.booleans(), st.text(max_size=15),
                         st.sampled_from(["eq", "in", "gt", "between", "amount.value", "purpose", "2025-07-01"]))
leafish = st.fixed_dictionaries({"field": st.sampled_from(["amount.value", "purpose", "nope", "derived.amount_cny"]),
                                 "op": st.sampled_from(["eq", "ne", "gt", "in", "between", "exists", "bogus"])},
                                optional={"value": yaml_scalars | st.lists(yaml_scalars, max_size=3),
                                          "list": st.sampled_from(["l1", "missing_list"])})
conditions = st.recursive(leafish, lambda c: st.fixed_dictionaries({"all": st.lists(c, max_size=3)})
                          | st.fixed_dictionaries({"any": st.lists(c, max_size=3)})
                          | st.fixed_dictionaries({"not": c}), max_leaves=6)
rules = st.fixed_dictionaries(
    {"id": st.sampled_from(["F-1", "F-2", "bad id"]), "when": conditions},
    optional={"category": st.sampled_from(["risk", "other"]), "title": st.text(max_size=10),
              "outcome": st.sampled_from(["deny", "allow", "maybe"]), "reason": st.text(max_size=20),
              "source": st.text(max_size=5), "verified": st.booleans(), "report": st.sampled_from(["LVTR", "x y"])})


@given(data=st.fixed_dictionaries({"pack": st.just("fuzz"), "version": st.just("1"),
                                   "rules": st.lists(rules, max_size=4)},
                                  optional={"lists": st.dictionaries(st.sampled_from(["l1", "l2"]),
                                                                     st.lists(yaml_scalars, max_size=4))}))
def test_loader_fuzz_only_rule_set_errors_escape(tmp_path_factory, data):
    import yaml

    body = PACK_HEADER + yaml.safe_dump(data, allow_unicode=True)
    path = tmp_path_factory.mktemp("fuzz") / "pack.yaml"
    path.write_text(body, encoding="utf-8")
    try:
        ruleset = load_ruleset(path)
    except RuleSetError as exc:
        assert exc.issues
        return
    # Whatever the loader accepts, both matchers can run (no native crash) and agree.
    results = []
    for matcher in MATCHERS:
        engine = PolicyEngine(ruleset, matcher=matcher)
        results.append([engine.evaluate(base_request(amount__value=v, purpose=p)).rule_ids
                        for v in (5, 1000, "99999.99") for p in ("merchant_purchase", "x")])
        engine.close()
    assert all(r == results[0] for r in results)


# -- decision log and replay -------------------------------------------------------------------------------------
def test_decision_log_masks_identifiers_and_replays(tmp_path, cases):
    log = tmp_path / "decisions.jsonl"
    with AuditLog(log) as audit:
        engine = PolicyEngine.from_path(None, audit=audit)
        for case in cases:
            engine.evaluate(case["request"])
    records = [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines()]
    assert len(records) == len(cases)
    first = records[0]
    assert first["request"]["payer"]["id"].startswith("masked:") and "u-1001" not in log.read_text()
    assert first["ruleset"]["digest"] == engine.ruleset.digest and "payer.id" in first["masked"]
    out = io.StringIO()
    assert main(["replay", "--json", str(log)], out=out, err=io.StringIO()) == 0
    report = json.loads(out.getvalue())
    assert report["records"] == len(cases) and report["same"] == len(cases) and report["other_digests"] == {}


def test_replay_reports_differences_and_foreign_digests(tmp_path):
    old = _pack(tmp_path, PACK_HEADER + "rules:\n" + RULE, "old.yaml")
    new = _pack(tmp_path, PACK_HEADER.replace('version: "1"', 'version: "2"') + "rules:\n" +
                RULE.replace("value: 1000", "value: 2000"), "new.yaml")
    log = tmp_path / "log.jsonl"
    with AuditLog(log, fsync="never") as audit:
        engine = PolicyEngine.from_path(old, audit=audit)
        for i, amount in enumerate([500, 1500, 2500]):
            engine.evaluate(base_request(request_id=f"r{i}", amount__value=amount))
    out = io.StringIO()
    assert main(["replay", "--json", "--rules", str(new), str(log)], out=out, err=io.StringIO()) == 1
    report = json.loads(out.getvalue())
    assert [(d["request_id"], d["logged"], d["replayed"]) for d in report["differences"]] == [("r1", "deny", "allow")]
    assert report["other_digests"] == {load_ruleset(old).digest: 3}


def test_replay_reports_a_truncated_last_line(tmp_path):
    log = tmp_path / "log.jsonl"
    with AuditLog(log, fsync="never") as audit:
        PolicyEngine.from_path(None, audit=audit).evaluate(base_request())
    with open(log, "ab") as fh:
        fh.write(b'{"request_id": "cut", "requ')
    out = io.StringIO()
    assert main(["replay", "--json", str(log)], out=out, err=io.StringIO()) == 2
    report = json.loads(out.getvalue())
    assert report["same"] == 1 and report["unreadable"][0]["line"] == 2


def test_deleted_log_is_recreated_and_later_decisions_kept(tmp_path):
    log = tmp_path / "log.jsonl"
    with AuditLog(log) as audit:
        engine = PolicyEngine.from_path(None, audit=audit)
        engine.evaluate(base_request(request_id="before"))
        os.unlink(log)
        engine.evaluate(base_request(request_id="after"))
    assert [json.loads(x)["request_id"] for x in log.read_text().splitlines()] == ["after"]


def test_unwritable_log_fails_closed(tmp_path):
    audit = AuditLog(tmp_path / "log.jsonl")
    engine = PolicyEngine.from_path(None, audit=audit)
    os.close(audit._fd)  # the disk went away under the engine
    with pytest.raises(EvaluationError, match="decision log"):
        engine.evaluate(base_request(amount__value=1))


def test_killed_process_keeps_every_decision_already_written(tmp_path):
    log = tmp_path / "log.jsonl"
    script = f"""
import sys
sys.path.insert(0, {str(RULES.parent / "tests")!r})
from conftest import base_request
from policy_engine import PolicyEngine
from policy_engine.audit import AuditLog
engine = PolicyEngine.from_path(None, audit=AuditLog({str(log)!r}))
i = 0
while True:
    engine.evaluate(base_request(request_id=f"r{{i}}"))
    i += 1
    if i == 50:
        print("ready", flush=True)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    lines = log.read_bytes().split(b"\n")
    complete = [json.loads(x) for x in lines[:-1]]
    assert len(complete) >= 50
    assert [r["request_id"] for r in complete] == [f"r{i}" for i in range(len(complete))]
