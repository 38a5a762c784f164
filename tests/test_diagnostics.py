"""One way of saying what is wrong: the same did-you-mean everywhere, and a bad rule pack, a bad rule-test file
and a bad invariants file reported alike by the command line (as text and as JSON), each exiting 2."""

from __future__ import annotations

import io
import json
import shutil

import pytest
from conftest import RULES

from policy_engine import RuleSetError, load_ruleset
from policy_engine.cli import main
from policy_engine.diagnostics import closest, did_you_mean
from policy_engine.testing import RuleTestError, run_tests
from policy_engine.testing.invariants import InvariantError, load_invariants


def test_did_you_mean():
    assert closest("purpos", ["purpose", "channel"]) == "purpose"
    assert closest("xyz", ["purpose", "channel"]) is None
    assert did_you_mean("FS-01", ["FS-001", "RSK-001"]) == "; did you mean 'FS-001'?"
    assert did_you_mean("zzz", ["FS-001"]) == ""


@pytest.fixture
def bad_files(tmp_path):
    pack = tmp_path / "pack.yaml"
    shutil.copytree(RULES / "lists", tmp_path / "lists")  # the party list reference.yaml names
    pack.write_text((RULES / "pack.yaml").read_text(encoding="utf-8")
                    + (RULES / "reference.yaml").read_text(encoding="utf-8")
                    + "rules:\n  - id: X-1\n    titel: typo\n", encoding="utf-8")
    cases = tmp_path / "cases.yaml"
    cases.write_text("cases:\n  - name: a\n    base: nowhere\n    expect: {decision: allow}\n", encoding="utf-8")
    invariants = tmp_path / "invariants.yaml"
    invariants.write_text("invariants:\n  - id: I-1\n    title: t\n    expect: {decison: deny}\n", encoding="utf-8")
    return {"validate": ([str(pack)], pack, "X-1", "rule_id", lambda: load_ruleset(pack), RuleSetError),
            "test": ([str(RULES), "--tests", str(cases)], cases, None, "rule_id",
                     lambda: run_tests(RULES, cases), RuleTestError),
            "verify": ([str(RULES), "--invariants", str(invariants)], invariants, "I-1", "invariant",
                       lambda: load_invariants(invariants), InvariantError)}


@pytest.mark.parametrize("command", ["validate", "test", "verify"])
def test_files_with_issues_are_reported_alike(bad_files, command):
    args, path, ident, id_key, load, error_type = bad_files[command]
    with pytest.raises(error_type) as info:
        load()
    error = info.value
    assert error.issues and all(i.file == str(path) for i in error.issues)
    assert str(error).splitlines()[0] == error.summary

    out, err = io.StringIO(), io.StringIO()
    assert main([command, *args], out=out, err=err) == 2
    lines = err.getvalue().splitlines()
    assert lines == [*map(str, error.issues), error.summary] and out.getvalue() == ""
    assert lines[0].startswith(f"{path}:") and (ident is None or f" {ident}: " in lines[0])

    out, err = io.StringIO(), io.StringIO()
    assert main([command, *args, "--json"], out=out, err=err) == 2
    report = json.loads(out.getvalue())
    assert report["ok"] is False and err.getvalue() == ""
    assert [(e["file"], e["line"], e[id_key], e["message"]) for e in report["errors"]] == [
        (i.file, i.line, i.rule_id, i.message) for i in error.issues]
