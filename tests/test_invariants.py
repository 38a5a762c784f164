"""Invariants in YAML: the default pack's hold, a broken pack is caught with a minimal counterexample, the file
format is checked with positions, and the pytest plugin runs them from a user's own test suite."""

from __future__ import annotations

import io
import json
import shutil
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import RULES
from hypothesis import settings

from policy_engine import PolicyEngine
from policy_engine.cli import main
from policy_engine.testing.invariants import InvariantError, check, check_invariants, load_invariants

INVARIANTS = RULES / "tests" / "invariants.yaml"
REQUIRED = {"request_id", "timestamp", "payer", "funding_source", "purpose", "amount"}
#: Cases per invariant: a quick look under the `ci` profile, a long search under `thorough`.
EXAMPLES = max(15, settings().max_examples // 4)


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def write(tmp_path: Path, text: str, name: str = "invariants.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def engine():
    engine = PolicyEngine.from_path(RULES)
    yield engine
    engine.close()


@pytest.fixture
def pack_without_fs001(tmp_path: Path) -> Path:
    """The default pack, invariants included, with FS-001 (BNPL may not repay a credit card) deleted."""
    pack = tmp_path / "rules"
    shutil.copytree(RULES, pack)
    path = pack / "funding_sources.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["rules"] = [r for r in data["rules"] if r["id"] != "FS-001"]
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return pack


# -- the default pack -----------------------------------------------------------------------------------------
def test_the_default_packs_invariants_hold():
    results = check_invariants(RULES, examples=EXAMPLES, seed=0)
    ids = [i["id"] for i in yaml.safe_load(INVARIANTS.read_text(encoding="utf-8"))["invariants"]]
    assert [r.invariant.id for r in results] == ids and all(r.held for r in results)
    assert {"INV-FS-001", "INV-CMP-001-PAYER", "INV-FS-000", "INV-MONO-AMOUNT", "INV-UNREAD"} <= set(ids)


def test_verify_command_passes_on_the_default_pack():
    code, out, _ = run("verify", str(RULES), "--only", "INV-FS-001", "--only", "INV-CMP-002-SY-AFTER",
                       "--examples", "20", "--seed", "3")
    assert code == 0, out
    assert "2 held, 0 falsified" in out and "seed 3" in out


# -- a broken pack --------------------------------------------------------------------------------------------
def test_a_deleted_rule_is_caught_with_a_minimal_counterexample(pack_without_fs001):
    code, out, _ = run("verify", str(pack_without_fs001), "--only", "INV-FS-001", "--json", "--seed", "0",
                       "--examples", "50")
    assert code == 1
    report = json.loads(out)
    assert report["falsified"] == 1 and report["seed"] == 0
    (result,) = report["results"]
    assert result["id"] == "INV-FS-001" and result["status"] == "falsified"
    # without FS-001 nothing denies it: the minimal request is held only for what it leaves out (review)
    assert result["message"].startswith("expected decision deny, got ")
    assert "rule FS-001 is not in this pack" in result["notes"][0]
    (observed,) = result["counterexample"]
    request = observed["request"]
    # Shrunk: only the required fields are left, and the two that matter hold the prohibited combination.
    assert set(request) == REQUIRED
    assert request["funding_source"] == {"type": "bnpl"} and request["purpose"] == "credit_card_repayment"
    assert set(request["payer"]) == {"id"}
    assert observed["decision"] != "deny"
    assert all(entry["status"] != "fired" for entry in observed["trail"])


def test_readable_output_shows_the_counterexample_and_the_trail(pack_without_fs001):
    code, out, _ = run("verify", str(pack_without_fs001), "--only", "INV-FS-001", "--seed", "0", "--examples", "50")
    assert code == 1
    assert "FALSIFIED INV-FS-001" in out and "shrunk counterexample request:" in out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("{"))
    assert json.loads(line)["funding_source"]["type"] == "bnpl"
    assert "FS-001 [deny" not in out  # the rule is gone; the trail shows only undecided and skipped rules
    assert "undecided]" in out and out.rstrip().endswith("0 held, 1 falsified")


def test_the_structuring_band_breaks_monotonicity(tmp_path, engine):
    # RSK-011 reviews a third cash payment just below CNY 50,000; at 50,000 it is reported (allow) instead.
    # That is why the shipped monotonic invariant excludes it; without the exclusion, verify finds the edge.
    (inv,) = load_invariants(write(tmp_path, """\
        invariants:
          - id: MONO-CASH
            title: A larger cash amount never lowers the decision
            given:
              funding_source.type: debit_card
              purpose: cash_withdrawal
              psp_country: CN
              amount.currency: CNY
              amount.value: {min: 45000}
              history.near_threshold_count_7d: {min: 2, max: 6}
              timestamp: {from: 2017-07-01}   # CMP-011 (the report) is in force
              # stated, so that no rule is undecided (review) on both sides of the edge
              payer.kyc_level: enhanced
              payer.sanctions_hit: false
              payer.age: 40
              payer.residence_country: CN
              channel: counter
              fx_purchase: false
              payee.country: CN
              payee.sanctions_hit: false
              merchant.country: CN
              merchant.mcc: "6011"
            monotonic: {field: amount.value}
        """))
    result = check(inv, engine, examples=100, seed=1)
    assert not result.held
    before, after = result.counterexample.observations
    assert before.decision == "review" and "RSK-011" in before.fired
    assert after.decision == "allow" and "CMP-011" in after.fired
    assert before.request["amount"]["value"] == "45000.00" and after.request["amount"]["value"] == "50000.00"


def test_a_field_a_rule_reads_is_not_unread(tmp_path, engine):
    (inv,) = load_invariants(write(tmp_path, """\
        invariants:
          - id: SCORE-IRRELEVANT
            title: The risk score never matters (false)
            unchanged_by: [risk_score]
        """))
    result = check(inv, engine, examples=50, seed=0)
    assert not result.held
    assert "changing risk_score changed the decision" in result.counterexample.message
    assert "rules reading them: CMP-024, RSK-001, RSK-002" in result.counterexample.message


# -- the file format ------------------------------------------------------------------------------------------
def test_every_problem_in_an_invariants_file_is_reported_with_its_position(tmp_path):
    path = write(tmp_path, """\
        invariants:
          - id: A
            title: typo in a field
            given: {funding_source.typ: bnpl}
            expect: {decision: deny}
          - id: B
            title: two kinds at once
            expect: {decision: deny}
            monotonic: {field: amount.value}
          - id: C
            title: bad values
            given:
              payer.kyc_level: gold
              risk_score: {min: 80, max: 70}
            expect: {decision: deny}
          - id: D
            title: a typo in a key
            expect: {decison: deny}
          - id: A
            title: duplicate id, derived field, text field
            given: {derived.amount_cny: 5}
            monotonic: {field: purpose}
        """)
    with pytest.raises(InvariantError) as info:
        load_invariants(path)
    found = {(i.line, i.rule_id, i.message) for i in info.value.issues}
    expected = [
        (4, "A", "did you mean 'funding_source.type'?"),
        (6, "B", "exactly one of expect / monotonic / unchanged_by"),
        (13, "C", "'gold' is not a valid payer.kyc_level"),
        (14, "C", "min 80 is above max 70"),
        (18, "D", "unknown key 'decison'; did you mean 'decision'?"),
        (19, "A", "duplicate invariant id"),
        (21, "A", "derived.amount_cny is computed by the engine"),
        (22, "A", "purpose is not a number"),
    ]
    for line, inv_id, text in expected:
        assert any(ln == line and i == inv_id and text in msg for ln, i, msg in found), (line, text, found)
    code, _, err = run("verify", str(RULES), "--invariants", str(path))
    assert code == 2 and f"{path}:4:" in err and "nothing was checked" in err


def test_a_rule_test_file_is_not_an_invariants_file(tmp_path):
    path = write(tmp_path, "cases:\n  - name: x\n", name="cases.yaml")
    code, _, err = run("verify", str(RULES), "--invariants", str(path))
    assert code == 2 and "top-level `invariants:` list" in err


def test_verify_refuses_unknown_ids_and_zero_examples():
    assert run("verify", str(RULES), "--only", "INV-NOPE")[0] == 2
    assert run("verify", str(RULES), "--examples", "0")[0] == 2


# -- the pytest plugin ----------------------------------------------------------------------------------------
pytest_plugins = ["pytester"]


def test_the_pytest_plugin_gives_fixtures_and_checks_invariants(pytester, pack_without_fs001):
    pytester.makeini("[pytest]\n")
    pytester.makefile(".yaml", seed_case=INVARIANTS.read_text(encoding="utf-8").split("  - id: INV-FS-002")[0])
    pytester.makepyfile(test_pack="""
        from hypothesis import given, settings, strategies as st
        from policy_engine.testing.pytest_plugin import check_invariants
        from policy_engine.testing.strategies import requests

        @settings(max_examples=10, database=None)
        @given(request=requests(funding_type="bnpl", purpose="credit_card_repayment"))
        def test_bnpl_never_repays_a_card(policy_engine, request):
            assert policy_engine.evaluate(request).decision == "deny"

        @settings(max_examples=10, database=None)
        @given(data=st.data())
        def test_edges(policy_engine, payment_requests, data):
            request = data.draw(payment_requests.near_thresholds(purpose="p2p_transfer"))
            assert policy_engine.evaluate(request).request_id == request["request_id"]

        def test_invariants(policy_pack):
            check_invariants(policy_pack, "seed_case.yaml", examples=10, seed=0)
        """)
    # no `-p`: the installed package registers the plugin under the pytest11 entry point, so it autoloads
    plugin = ("-p", "no:cacheprovider")
    passing = pytester.runpytest_inprocess(*plugin, "--policy-pack", str(RULES))
    passing.assert_outcomes(passed=3)
    failing = pytester.runpytest_inprocess(*plugin, "--policy-pack", str(pack_without_fs001))
    failing.assert_outcomes(passed=1, failed=2)
    failing.stdout.fnmatch_lines(["*FALSIFIED INV-FS-001*"])
