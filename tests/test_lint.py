"""`policy-engine validate` as a linter: a pack that loads but holds one mistake of each kind gives exactly one
finding per mistake, at its file:line:col, with its code; exit codes 0 / 1 / 2 and --strict; the bundled pack is
clean; every check stays quiet on the correct variant of its mistake."""

from __future__ import annotations

import io
import json
import re
import textwrap
from pathlib import Path

import pytest
from conftest import PACK_HEADER, RULES
from test_loader_errors import at, rule

from policy_engine import load_ruleset
from policy_engine.cli import main
from policy_engine.lint import CHECKS, lint

LISTS = """\
lists:
  empty_countries: []
  gambling_mcc: ["7995"]
  never_used: ["1234"]
aggregates:
  history.cash_today_cny:
    sum: derived.amount_cny
    by: payer.id
    window: {calendar: day, timezone: jurisdiction}
    counts: allowed
screening_lists:
  parties: {format: opensanctions_simple, file: parties.csv}
"""
PARTIES_CSV = "id,name,aliases,birth_date,countries,first_seen\nx-1,Zorvat Kelmindor,,,,\n"

# One mistake per rule (W120 and W160 live in pack.yaml above; MIXED also reads a counter no aggregate defines,
# W161). Each rule tests a purpose of its own so that no rule
# accidentally shadows another.
RULES_YAML = "rules:\n" + "".join([
    rule("BOUNDS", "\n      all:\n        - {field: purpose, op: eq, value: tuition}\n"
                   "        - {field: risk_score, op: gt, value: 10}\n        - {field: risk_score, op: lt, value: 5}"),
    rule("EMPTY-IN", "\n      all:\n        - {field: purpose, op: eq, value: medical}\n"
                     "        - {field: merchant.country, op: in, list: empty_countries}"),
    rule("ENUM", "\n      all:\n        - {field: purpose, op: eq, value: lottery}\n"
                 "        - {field: channel, op: not_in, value: [online, in_app, pos, qr_static, qr_dynamic, atm, "
                 "counter]}"),
    rule("DEAD-ANY", "\n      all:\n        - {field: purpose, op: eq, value: real_estate}\n        - any:\n"
                     "            - {field: risk_score, op: gte, value: 80}\n"
                     "            - {field: payer.account_tier, op: not_in, value: [I, II, III]}"),
    rule("BROAD", "{field: purpose, op: eq, value: gambling}", outcome="deny"),
    rule("NARROW", "\n      all:\n        - {field: merchant.mcc, op: in, list: gambling_mcc}\n"
                   "        - {field: purpose, op: eq, value: gambling}", outcome="deny"),
    rule("NO-SRC", "{field: purpose, op: eq, value: wallet_topup}", source='"TODO"'),
    rule("MISSING-FIELD", "{field: purpose, op: eq, value: p2p_transfer}",
         reason='"Transfer to {payee.name} held."'),
    rule("MIXED", "\n      all:\n        - {field: purpose, op: eq, value: cash_withdrawal}\n"
                  "        - {field: {add: [history.cash_today_usd, derived.amount_cny]}, op: gte, value: 50000}"),
    rule("UNPINNED", "\n      all:\n        - {field: purpose, op: eq, value: cash_deposit}\n"
                     "        - {field: amount.value, op: gt, value: 1000}"),
    rule("REASON-CCY", "\n      all:\n        - {field: purpose, op: eq, value: securities_investment}\n"
                       "        - {field: derived.amount_usd, op: gt, value: 10000}",
         reason='"Investments above CNY 10,000 are held."'),
    rule("TYPO", "\n      all:\n        - {field: purpose, op: eq, value: loan_repayment}\n"
                 "        - {field: funding_source.type, op: eq, value: prepaid}"),
    rule("SKIPPER", "\n      all:\n        - {field: purpose, op: eq, value: tuition}\n"
                    "        - {field: risk_score, op: gte, value: 90}", extra="    on_unknown: skip\n"),
    rule("NOT-NAME", "\n      all:\n        - {field: purpose, op: eq, value: fund_investment}\n"
                     "        - {field: payee.id, op: screen, list: parties, threshold: 0.85}"),
    rule("LOOSE", "\n      all:\n        - {field: purpose, op: eq, value: crypto_purchase}\n"
                  "        - {field: payer.name, op: screen, list: parties, threshold: 0.6}"),
])

# (file, needle at the finding's position, rule id, code, message fragments)
EXPECTED = [
    ("pack.yaml", "never_used:", None, "W120", ["'never_used'", "no rule uses it"]),
    ("pack.yaml", "history.cash_today_cny:", None, "W160", ["history.cash_today_cny", "no rule reads it"]),
    ("rules.yaml", "id: MIXED", "MIXED", "W161", ["history.cash_today_usd", "no aggregate defines"]),
    ("rules.yaml", "{field: risk_score, op: lt", "BOUNDS", "W101",
     ["risk_score lt 5", "contradicts", "risk_score gt 10"]),
    ("rules.yaml", "{field: merchant.country, op: in", "EMPTY-IN", "W101", ["empty_countries is empty"]),
    ("rules.yaml", "{field: channel, op: not_in", "ENUM", "W101", ["channel not_in", "only 'online', ", "'qr_static'"]),
    ("rules.yaml", "{field: payer.account_tier", "DEAD-ANY", "W102", ["branch of `any`", "payer.account_tier not_in"]),
    ("rules.yaml", "{field: funding_source.type, op: eq, value: prepaid}", "TYPO", "W104",
     ["'prepaid' is not a known funding_source.type", "did you mean 'prepaid_card'"]),
    ("rules.yaml", "id: EMPTY-IN", "EMPTY-IN", "W151", ["never fire", "undecided (review)", "only hold"]),
    ("rules.yaml", "on_unknown: skip", "SKIPPER", "I150", ["leaves out risk_score", "review rule is skipped"]),
    ("rules.yaml", "id: NARROW", "NARROW", "W110", ["shadowed by BROAD", "`deny`"]),
    ("rules.yaml", 'source: "TODO"', "NO-SRC", "W130", ["placeholder", "'TODO'"]),
    ("rules.yaml", 'reason: "Transfer to', "MISSING-FIELD", "W140", ["{payee.name}", "<missing payee.name>"]),
    ("rules.yaml", "{field: {add: [history.cash_today_usd", "MIXED", "E201",
     ["history.cash_today_usd (USD)", "derived.amount_cny (CNY)"]),
    ("rules.yaml", "{field: amount.value, op: gt", "UNPINNED", "E202", ["amount.currency", "derived.amount_cny"]),
    ("rules.yaml", "{field: derived.amount_usd", "REASON-CCY", "W203", ["in USD", "10000 in CNY"]),
    ("rules.yaml", "{field: payee.id, op: screen", "NOT-NAME", "W170", ["payee.id, which is not a name field"]),
    ("rules.yaml", "{field: payer.name, op: screen", "LOOSE", "W171", ["threshold 0.6 is outside [0.8, 0.95]"]),
]
TEXTS = {"pack.yaml": PACK_HEADER + LISTS, "rules.yaml": RULES_YAML, "parties.csv": PARTIES_CSV}


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lint")
    for name, text in TEXTS.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def test_fixture_covers_at_least_eight_kinds_of_mistake():
    assert len({e[3] for e in EXPECTED}) >= 8
    assert {e[3] for e in EXPECTED} == set(CHECKS)


@pytest.mark.parametrize(("file", "needle", "rid", "code", "fragments"), EXPECTED, ids=[e[3] for e in EXPECTED])
def test_each_mistake_gives_one_finding_at_its_position(pack, file, needle, rid, code, fragments):
    findings = [f for f in lint(load_ruleset(pack)) if f.rule_id == rid and f.code == code]
    assert len(findings) == 1, "\n".join(map(str, lint(load_ruleset(pack))))
    (finding,) = findings
    assert finding.file == str(pack / file)
    assert (finding.line, finding.col) == at(TEXTS[file], needle), str(finding)
    for fragment in fragments:
        assert fragment in finding.message, str(finding)


def test_nothing_else_is_reported(pack):
    findings = lint(load_ruleset(pack))
    assert sorted((f.rule_id or "", f.code) for f in findings) == sorted((e[2] or "", e[3]) for e in EXPECTED)


FINDING_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+) (?P<rid>\S+) (?P<sev>error|warning|info) "
                          r"(?P<code>[EWI]\d{3}) (?P<name>[a-z-]+): (?P<msg>.+)$")


def test_cli_prints_findings_and_fails_on_errors(pack):
    out, err = io.StringIO(), io.StringIO()
    assert main(["validate", str(pack)], out=out, err=err) == 1
    lines = out.getvalue().splitlines()
    matches = [m for m in map(FINDING_LINE.match, lines[:-1]) if m]
    assert len(matches) == len(EXPECTED) == len(lines) - 1
    line, col = at(RULES_YAML, "{field: risk_score, op: lt")
    assert any(m["file"] == str(pack / "rules.yaml") and (int(m["line"]), int(m["col"])) == (line, col)
               and (m["rid"], m["sev"], m["code"], m["name"]) == ("BOUNDS", "warning", "W101", "never-fires")
               for m in matches)
    assert lines[-1].startswith("failed: fixture 1: 15 rules")
    assert "(2 error(s), 15 warning(s), 1 note(s))" in lines[-1]
    assert err.getvalue() == ""


def test_cli_json(pack):
    out = io.StringIO()
    assert main(["validate", "--json", str(pack)], out=out, err=io.StringIO()) == 1
    report = json.loads(out.getvalue())
    assert (report["ok"], report["errors"], report["warnings"], report["notes"]) == (False, 2, 15, 1)
    assert {(f["rule_id"], f["code"], f["name"], f["severity"]) for f in report["findings"]} >= {
        ("UNPINNED", "E202", "unpinned-currency", "error"), ("NARROW", "W110", "shadowed", "warning")}
    (unused,) = [f for f in report["findings"] if f["code"] == "W120"]
    line, col = at(TEXTS["pack.yaml"], "never_used:")
    assert (unused["file"], unused["line"], unused["col"], unused["rule_id"]) == (str(pack / "pack.yaml"), line, col,
                                                                                  None)


def write_pack(tmp_path: Path, rules_yaml: str, lists: str = "") -> Path:
    path = tmp_path / "pack.yaml"
    path.write_text(PACK_HEADER + lists + "rules:\n" + textwrap.indent(textwrap.dedent(rules_yaml), "  "),
                    encoding="utf-8")
    return path


def test_warnings_only_exit_0_and_strict_exit_1(tmp_path):
    path = write_pack(tmp_path, rule("NO-SRC", "{field: purpose, op: eq, value: tuition}", source='"tbd"'))
    out = io.StringIO()
    assert main(["validate", str(path)], out=out, err=io.StringIO()) == 0
    assert "W130 no-source" in out.getvalue() and out.getvalue().splitlines()[-1].startswith("ok: ")
    out = io.StringIO()
    assert main(["validate", "--strict", str(path)], out=out, err=io.StringIO()) == 1
    assert out.getvalue().splitlines()[-1].startswith("failed: ")


def test_load_errors_still_exit_2_before_linting(tmp_path):
    path = write_pack(tmp_path, rule("BAD", "{field: purpose, op: eqq, value: tuition}", source='"TODO"'))
    out, err = io.StringIO(), io.StringIO()
    assert main(["validate", "--strict", str(path)], out=out, err=err) == 2
    assert "unknown operator 'eqq'" in err.getvalue() and "W130" not in out.getvalue() + err.getvalue()


# The nine risk rules the catalogue marks `on_unknown: skip` (optional enrichment, DOMAIN 5.1 point 6), and the
# name screening beside the required sanctions_hit flags (CMP-025).
SKIPPED_ON_UNKNOWN = {"RSK-001", "RSK-002", "RSK-005", "RSK-006", "RSK-007", "RSK-008", "RSK-009", "RSK-015", "RSK-016",
                      "CMP-025"}


def test_bundled_pack_is_lint_clean():
    # clean but for its ten fail-open points, which lint lists (informational: they never fail validate)
    findings = lint(load_ruleset(RULES))
    assert {f.code for f in findings} == {"I150"}
    assert {f.rule_id for f in findings} == SKIPPED_ON_UNKNOWN
    out = io.StringIO()
    assert main(["validate", "--strict", str(RULES)], out=out, err=io.StringIO()) == 0


# The correct variant of each mistake: the checks are sound, so none of these may be reported.
CLEAN = [
    ("touching half-open bounds on an integer", "\n      all:\n        - {field: risk_score, op: gte, value: 5}\n"
                                                "        - {field: risk_score, op: lt, value: 6}"),
    ("decimal bounds with room between", "\n      all:\n        - {field: derived.amount_cny, op: gt, value: 5}\n"
                                         "        - {field: derived.amount_cny, op: lt, value: 5.01}"),
    ("eq inside the in-list", "\n      all:\n        - {field: channel, op: eq, value: pos}\n"
                              "        - {field: channel, op: in, value: [pos, atm]}"),
    ("not of a missing field", "\n      all:\n        - {field: purpose, op: eq, value: tuition}\n"
                               "        - not: {field: auth.sca_performed, op: eq, value: true}"),
    ("pinned currency", "\n      all:\n        - {field: amount.currency, op: eq, value: USD}\n"
                        "        - {field: amount.value, op: gt, value: 1000}"),
    ("pinned by a single-item in", "\n      all:\n        - {field: amount.currency, op: in, value: [EUR]}\n"
                                   "        - {field: {add: [amount.value, history.sca_exempt_amount_since_sca_eur]}, "
                                   "op: gt, value: 100}"),
    ("same-currency ref", "{field: derived.amount_cny, op: gt, ref: funding_source.available_credit_cny}"),
    ("missing history counts as 0, amount guaranteed", "{field: {add: [history.cash_today_cny, "
                                                       "derived.amount_cny]}, op: gte, value: 50000}"),
]


@pytest.mark.parametrize(("name", "when"), CLEAN, ids=[c[0] for c in CLEAN])
def test_correct_rules_give_no_finding(tmp_path, name, when):
    reason = '"Held: {derived.amount_cny} CNY, above CNY 50,000."' if "history.cash" in when else "Held."
    path = write_pack(tmp_path, rule("OK-1", when, reason=reason))
    assert lint(load_ruleset(path)) == ()


def test_narrower_threshold_is_shadowed_by_broader_one(tmp_path):
    path = write_pack(tmp_path, rule("WIDE", "{field: risk_score, op: gte, value: 70}", outcome="deny")
                      + rule("TIGHT", "\n      all:\n        - {field: risk_score, op: gte, value: 90}\n"
                                      "        - {field: channel, op: eq, value: online}", outcome="deny")
                      + rule("OTHER", "{field: risk_score, op: gte, value: 95}", outcome="review"))
    assert [(f.rule_id, f.code) for f in lint(load_ruleset(path))] == [("TIGHT", "W110")]


def test_later_effective_rule_is_not_shadowed_by_a_retired_one(tmp_path):
    old = rule("OLD", "{field: purpose, op: eq, value: gambling}", outcome="deny",
               extra="    effective: {to: 2024-01-01}\n")
    new = rule("NEW", "\n      all:\n        - {field: purpose, op: eq, value: gambling}\n"
                      "        - {field: channel, op: eq, value: online}", outcome="deny",
               extra="    effective: {from: 2024-01-01}\n")
    assert lint(load_ruleset(write_pack(tmp_path, old + new))) == ()
