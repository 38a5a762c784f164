"""An adversarial sweep of rule packs: what a hostile or careless author or operator can put in a pack directory
or a rule file. Each test pins a hole that was found: a pack that says one thing and decides another, or an error
that does not say where. The loader must refuse with file:line:col or decide what the pack says."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from conftest import MATCHERS, PACK_HEADER, base_request
from test_pack_hardening import rule

from policy_engine import PolicyEngine, RuleSetError, load_ruleset
from policy_engine.testing import run_tests

SANCTIONS = rule("{field: payer.sanctions_hit, op: eq, value: true}", rid="SANC-1").replace("review", "deny")


def pack_dir(root: Path) -> Path:
    """A directory pack: the manifest in pack.yaml, no rules of its own."""
    root.mkdir()
    (root / "pack.yaml").write_text(PACK_HEADER, encoding="utf-8")
    return root


# -- files of a pack directory -----------------------------------------------------------------------------------
@pytest.mark.parametrize("matcher", MATCHERS)
def test_rules_under_a_symlinked_directory_are_loaded_not_left_out(tmp_path, matcher):
    """`compliance/` linked in from elsewhere was silently skipped (rglob does not follow directory links): the
    sanctions rule in it never fired and a sanctioned payer was allowed."""
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "sanctions.yaml").write_text("rules:\n" + textwrap.indent(SANCTIONS, "  "), encoding="utf-8")
    root = pack_dir(tmp_path / "pack")
    (root / "compliance").symlink_to(shared, target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)  # a link back up the tree is read once
    engine = PolicyEngine.from_path(root, matcher=matcher)
    try:
        assert [r.id for r in engine.ruleset.rules] == ["SANC-1"]
        assert engine.evaluate(base_request(payer__sanctions_hit=True)).decision == "deny"
    finally:
        engine.close()


@pytest.mark.parametrize("kind", ["broken link", "fifo"])
def test_a_rule_file_that_cannot_be_read_fails_the_load_naming_it(tmp_path, kind):
    """A `*.yaml` that is a broken link or a FIFO was skipped as "not a file", its rules silently gone."""
    root = pack_dir(tmp_path / "pack")
    bad = root / "sanctions.yaml"
    if kind == "fifo":
        os.mkfifo(bad)
    else:
        bad.symlink_to(tmp_path / "gone.yaml")
    with pytest.raises(RuleSetError) as caught:
        load_ruleset(root)
    issues = caught.value.issues
    assert [(i.file, i.line, i.col) for i in issues] == [(str(bad), 1, 1)]
    assert ("symbolic link to nothing" if kind == "broken link" else "not a regular file") in issues[0].message


def test_rule_tests_under_a_symlinked_directory_run(tmp_path):
    """The rule-test runner walked `tests/` the same way: a linked-in test directory's cases never ran."""
    root = pack_dir(tmp_path / "pack")
    (root / "rules.yaml").write_text("rules:\n" + textwrap.indent(SANCTIONS, "  "), encoding="utf-8")
    shared = tmp_path / "shared_tests"
    shared.mkdir()
    (shared / "sanctions.yaml").write_text(textwrap.dedent("""\
        cases:
          - name: a sanctioned payer is refused
            request: {timestamp: "2025-06-10T14:30:00+08:00", payer: {id: u-1, sanctions_hit: true},
                      funding_source: {type: debit_card}, purpose: merchant_purchase,
                      merchant: {mcc: "5411", country: CN}, amount: {value: 100, currency: CNY}}
            expect: {decision: deny, rules: [SANC-1]}
        """), encoding="utf-8")
    (root / "tests").mkdir()
    (root / "tests" / "shared").symlink_to(shared, target_is_directory=True)
    report = run_tests(root, matcher="python")
    assert [(c.name, c.status) for c in report.cases] == [("a sanctioned payer is refused", "passed")]
