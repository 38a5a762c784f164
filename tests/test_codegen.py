"""Generated code can be read and debugged: its source is in linecache under a name that says what it is, each
rule's line names the rule and its file:line, a fault inside it names the rule, and `validate --emit-matcher`
writes the matcher's source."""

from __future__ import annotations

import gc
import io
import linecache
import re
import traceback

import pytest
from conftest import DURABLE_OK, RULES, base_request

from policy_engine import EvaluationError, PolicyEngine, load_ruleset
from policy_engine.cli import main
from policy_engine.codegen import compile_function

RULES_YAML = """\
- id: R-PURPOSE
  category: risk
  title: purpose
  when: {field: purpose, op: eq, value: merchant_purchase}
  outcome: review
  reason: held
  source: test
  verified: false
- id: R-SUM
  category: risk
  title: cumulative
  when: {field: {add: [history.payer_txn_count_1h, amount.value]}, op: gt, value: 5}
  outcome: deny
  reason: too many
  source: test
  verified: false
"""


def _source_of(function) -> tuple[str, str]:
    filename = function.__code__.co_filename
    return filename, "".join(linecache.getlines(filename))


def test_every_generated_function_is_in_linecache_under_a_descriptive_name(make_pack):
    pack = make_pack(RULES_YAML)
    engine = PolicyEngine.from_path(pack, matcher="python")
    matcher = engine.pack.matcher
    filename, source = _source_of(matcher._match)
    assert re.fullmatch(r"<policy-engine matcher fixture@1 #[0-9a-f]{8}>", filename)
    assert source == matcher.source  # the firing checks, then the undecided checks
    preparer = engine.pack.preparer
    for function, what in [(preparer._validate_collect, "request validator"), (preparer._fast, "request fast path")]:
        name, text = _source_of(function)
        assert name.startswith(f"<policy-engine {what} ") and text.startswith("def ")
    if DURABLE_OK:
        durable = PolicyEngine.from_path(pack, matcher="durable")
        try:
            name, text = _source_of(durable.pack.matcher.encoder._encode)
            assert name.startswith("<policy-engine durable fact encoder fixture@1 ") and "def encode(" in text
        finally:
            durable.close()


def test_rule_lines_name_the_rule_and_its_position(make_pack):
    pack = make_pack(RULES_YAML)
    source = PolicyEngine.from_path(pack, matcher="python").pack.matcher.source
    text = pack.read_text(encoding="utf-8").splitlines()
    for rule_id in ("R-PURPOSE", "R-SUM"):
        comment = f"# {rule_id} {pack.name}:{_line_of(text, rule_id)}"
        lines = [ln for ln in source.splitlines() if ln.endswith(comment)]  # its firing and its undecided check
        assert lines and all("out.append(" in line for line in lines)


def _line_of(lines: list[str], rule_id: str) -> int:
    return next(n for n, text in enumerate(lines, 1) if f"id: {rule_id}" in text)


def test_a_fault_inside_the_matcher_names_the_rule(make_pack, monkeypatch):
    pack = make_pack(RULES_YAML)
    engine = PolicyEngine.from_path(pack, matcher="python")
    request = base_request(history={"payer_txn_count_1h": 2})
    assert [e.rule_id for e in engine.evaluate(request).trail] == ["R-PURPOSE", "R-SUM"]

    def broken(*args):
        raise ZeroDivisionError("simulated fault")

    monkeypatch.setitem(engine.pack.matcher._match.__globals__, "_sum", broken)
    with pytest.raises(EvaluationError) as info:
        engine.evaluate(request)
    message = str(info.value)
    assert f"rule R-SUM ({pack.name}:{_line_of(pack.read_text().splitlines(), 'R-SUM')})" in message
    assert "ZeroDivisionError: simulated fault" in message and info.value.request_id == "t-1"
    # the traceback shows the generated line itself
    shown = "".join(traceback.format_exception(info.value.__cause__))
    assert "# R-SUM " in shown and "<policy-engine matcher fixture@1 " in shown


def test_registration_lasts_as_long_as_the_function():
    source = "def f(x):\n    return 1 / x\n"
    f = compile_function(source, "f", "test function", {})
    filename = f.__code__.co_filename
    g = compile_function(source, "f", "test function", {})  # the same code: the same name, kept for both
    assert g.__code__.co_filename == filename
    del f
    gc.collect()
    assert linecache.getlines(filename) == source.splitlines(keepends=True)
    with pytest.raises(ZeroDivisionError) as info:
        g(0)
    assert "return 1 / x" in "".join(traceback.format_exception(info.value))
    del g, info  # the traceback holds the function too, through its frame's globals
    gc.collect()
    assert filename not in linecache.cache


def test_validate_emit_matcher_writes_compilable_source_with_every_rule(tmp_path):
    target = tmp_path / "matcher.py"
    out, err = io.StringIO(), io.StringIO()
    assert main(["validate", "--emit-matcher", str(target), str(RULES)], out=out, err=err) == 0
    source = target.read_text(encoding="utf-8")
    compile(source, str(target), "exec")
    ruleset = load_ruleset(RULES)
    program = PolicyEngine(ruleset, matcher="python").pack.program
    never = set(program.never)  # rules that can never fire are not in the matcher
    for rule in ruleset.rules:
        assert (f"# {rule.id} " in source) != (rule.id in never), rule.id
    assert source == PolicyEngine(ruleset, matcher="python").pack.matcher.source
