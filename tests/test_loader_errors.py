"""Load errors: every mistake in a pack is reported once, at its file:line:col, with its rule id; the YAML
layer refuses what a safe loader must refuse; a pack with any error is never half-loaded; the digest."""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

import pytest
from conftest import PACK_HEADER, RULES, base_request

from policy_engine import Issue, PolicyEngine, RuleSetError, load_ruleset
from policy_engine.cli import main


def at(text: str, needle: str, offset: int = 0) -> tuple[int, int]:
    """1-based (line, col) of the only occurrence of ``needle`` in ``text``, plus ``offset`` columns."""
    assert text.count(needle) == 1, f"fixture needle {needle!r} must be unique"
    index = text.index(needle) + offset
    line = text.count("\n", 0, index) + 1
    col = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, col


def rule(rid: str, when: str, *, outcome: str = "review", reason: str = "Held.", extra: str = "",
         source: str | None = "test") -> str:
    """One rule item in block style; ``when`` is the text after ``when:`` (may span lines, pre-indented)."""
    text = (f"  - id: {rid}\n    category: risk\n    title: {rid} title\n    when: {when}\n    outcome: {outcome}\n"
            f"    reason: {reason}\n")
    if source is not None:
        text += f"    source: {source}\n"
    return text + "    verified: false\n" + extra


# ---------------------------------------------------------------------------------------------------------------
# The broken pack: three files, one mistake per rule (plus two outside rules).

BROKEN_PACK_YAML = """\
# Broken fixture pack: the manifest, rates and lists; two mistakes live here.
pack: broken
version: "1"
reference_fx:
  - as_of: 2020-01-01
    rates: {CNY: "1", USD: "7.2", EUR: "7.8"}
timezones: {CN: Asia/Shanghai}
lits:
  extra: [a]
lists:
  nordics: [SE, NO, DK]
  embargo:
    - {value: IR}
    - {value: SY, from: 2025-07-01, to: 2024-01-01}
"""

BROKEN_A_YAML = "rules:\n" + "".join([
    rule("GOOD-1", "{field: purpose, op: eq, value: gambling}"),
    rule("BAD-KEY", "{field: purpose, op: eq, value: lottery}", extra="    tag: [x]\n"),
    rule("BAD-OP", "{field: amount.value, op: gtx, value: 100}"),
    rule("BAD-LIST", "{field: payer.residence_country, op: in, list: embargos}"),
    rule("BAD-FIELD", "{field: funding.type, op: eq, value: bnpl}"),
    rule("NUM-VS-STR", "\n      all:\n        - {field: payer.type, op: eq, value: individual}\n"
                       "        - {field: purpose, op: eq, value: 5}"),
])

BROKEN_B_YAML = "rules:\n" + "".join([
    rule("STR-VS-NUM", '{field: amount.value, op: gt, value: "100"}'),
    rule("ORDER-STR", "{field: purpose, op: gt, value: gambling}"),
    rule("BETWEEN", "{field: amount.value, op: between, value: [500, 100]}"),
    rule("REPORT-DENY", "{field: purpose, op: eq, value: cash_withdrawal}", outcome="deny",
         extra="    report: LVTR\n"),
    rule("NO-SOURCE", "{field: purpose, op: eq, value: tuition}", source=None),
    rule("PLACEHOLDER", "{field: purpose, op: eq, value: medical}",
         reason='"Product {funding_source.prodct} is not allowed."'),
    rule("NORDIC", "\n      field: payer.residence_country\n      op: in\n      value:\n        - SE\n"
                   "        - NO\n        - DK"),
    rule("NORDIC-LIST", "{field: payer.residence_country, op: in, list: nordics}"),
    rule("DECIMALS", "{field: amount.value, op: gte, value: 100.00001}"),
    rule("EFFECTIVE", "{field: purpose, op: eq, value: real_estate}",
         extra="    effective: {from: 2025-01-01, to: 2024-01-01}\n"),
    rule("GOOD-1", "{field: purpose, op: eq, value: wallet_topup}"),  # duplicate of a.yaml's GOOD-1
])

TEXTS = {"pack.yaml": BROKEN_PACK_YAML, "a.yaml": BROKEN_A_YAML, "b.yaml": BROKEN_B_YAML}

# (file, needle locating the offending key/value, column offset into the needle, rule id, message fragments)
EXPECTED = [
    ("pack.yaml", "lits:", 0, None, ["unknown key 'lits'", "did you mean 'lists'"]),
    ("pack.yaml", "{value: SY", 0, None, ["embargo", "`from` must be before `to`"]),
    ("a.yaml", "tag: [x]", 0, "BAD-KEY", ["unknown key 'tag'"]),
    ("a.yaml", "op: gtx", 0, "BAD-OP", ["unknown operator 'gtx'", "did you mean 'gt'"]),
    ("a.yaml", "list: embargos", 0, "BAD-LIST", ["unknown list 'embargos'", "did you mean 'embargo'"]),
    ("a.yaml", "field: funding.type", 0, "BAD-FIELD",
     ["unknown field 'funding.type'", "did you mean 'funding_source.type'"]),
    ("a.yaml", "value: 5}", 0, "NUM-VS-STR", ["purpose is a string field", "5"]),
    ("b.yaml", 'value: "100"', 0, "STR-VS-NUM", ["amount.value is a number", "'100'"]),
    ("b.yaml", "op: gt, value: gambling", 0, "ORDER-STR", ["`gt` orders numbers", "purpose"]),
    ("b.yaml", "value: [500, 100]", 0, "BETWEEN", ["lo < hi"]),
    ("b.yaml", "report: LVTR", 0, "REPORT-DENY", ["`report:` is for informational rules"]),
    ("b.yaml", "id: NO-SOURCE", 0, "NO-SOURCE", ["missing required key", "source"]),
    ("b.yaml", 'reason: "Product', 0, "PLACEHOLDER",
     ["{funding_source.prodct}", "did you mean 'funding_source.product'"]),
    # The unquoted NO (read as false) is the list item itself: point at it, not at the `value:` key above it.
    ("b.yaml", "- NO", 2, "NORDIC", ["payer.residence_country is a string field", "quote it"]),
    # A named list is fine on its own; the mismatch is where a rule uses it on a string field.
    ("b.yaml", "list: nordics", 0, "NORDIC-LIST", ["payer.residence_country is a string field", "quote it"]),
    ("b.yaml", "value: 100.00001", 0, "DECIMALS", ["100.00001", "more than 4 decimal places"]),
    ("b.yaml", "effective:", 0, "EFFECTIVE", ["effective `from` must be before `to`"]),
    ("b.yaml", "id: GOOD-1", 0, "GOOD-1", ["duplicate rule id"]),
]


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RuleSetError]:
    root = tmp_path_factory.mktemp("broken")
    for name, text in TEXTS.items():
        (root / name).write_text(text, encoding="utf-8")
    with pytest.raises(RuleSetError) as info:
        load_ruleset(root)
    return root, info.value


@pytest.mark.parametrize(("file", "needle", "offset", "rid", "fragments"), EXPECTED,
                         ids=[f"{e[3] or e[0]}:{e[1]}" for e in EXPECTED])
def test_each_mistake_is_reported_at_its_position(broken, file, needle, offset, rid, fragments):
    root, error = broken
    path = str(root / file)
    found = [i for i in error.issues
             if i.file == path and i.rule_id == rid and all(f in i.message for f in fragments)]
    assert len(found) == 1, f"expected one issue for {rid or needle} in {file}; got:\n{error}"
    line, col = at(TEXTS[file], needle, offset)
    assert (found[0].line, found[0].col) == (line, col), str(found[0])


def test_one_issue_per_mistake_and_nothing_else(broken):
    _, error = broken
    assert len(error.issues) == len(EXPECTED), str(error)
    assert {i.rule_id for i in error.issues} == {e[3] for e in EXPECTED}


def test_duplicate_id_names_the_first_location(broken):
    root, error = broken
    (dup,) = [i for i in error.issues if i.rule_id == "GOOD-1"]
    line, col = at(BROKEN_A_YAML, "id: GOOD-1")
    assert dup.file == str(root / "b.yaml")
    assert f"first defined at {root / 'a.yaml'}:{line}:{col}" in dup.message


def test_issues_are_listed_in_file_order(broken):
    # errors.RuleSetError: "issues lists every problem found, in file order" -- a reader goes down the list
    # and the files together, instead of jumping between files and back.
    _, error = broken
    positions = [(i.file, i.line, i.col) for i in error.issues]
    assert positions == sorted(positions)


def test_error_message_says_nothing_was_loaded(broken):
    _, error = broken
    assert str(error).startswith(f"{len(error.issues)} errors in the rule pack; nothing was loaded")
    assert all(isinstance(i, Issue) for i in error.issues)


# ---------------------------------------------------------------------------------------------------------------
# The YAML layer.

def _load_error(path: Path) -> RuleSetError:
    with pytest.raises(RuleSetError) as info:
        load_ruleset(path)
    return info.value


def test_yaml_syntax_error_is_positioned(make_pack):
    path = make_pack(rule("SYN-1", "{field: purpose, op: eq, value: gambling}").replace(
        "title: SYN-1 title", "title: Gambling: not allowed"))
    error = _load_error(path)
    (issue,) = error.issues
    line, col = at(path.read_text(), "title: Gambling: not allowed", len("title: Gambling"))
    assert (issue.file, issue.line, issue.col) == (str(path), line, col)
    assert "YAML syntax" in issue.message and "mapping values are not allowed" in issue.message


def test_duplicate_mapping_key_is_an_error(make_pack):
    path = make_pack(rule("DUP-KEY", "{field: purpose, op: eq, value: gambling}", extra="    outcome: deny\n"))
    (issue,) = _load_error(path).issues
    line, col = at(path.read_text(), "outcome: deny")  # the second `outcome:` wins nothing; it is refused
    assert (issue.file, issue.line, issue.col) == (str(path), line, col)
    assert "duplicate key 'outcome'" in issue.message


@pytest.mark.parametrize("tagged", [
    '!!python/object/apply:os.system "touch {marker}"',
    '!!python/object/apply:os.system ["touch {marker}"]',
    "!!python/object/new:os.system [touch {marker}]",
    "!!python/object:collections.OrderedDict {{values: [touch {marker}]}}",
], ids=["scalar", "sequence", "new-sequence", "mapping"])
def test_python_tags_are_refused_not_executed(tmp_path, tagged):
    # Every form sits where plain data of that shape would be valid (a list), so only the tag is wrong.
    marker = tmp_path / "EXECUTED"
    pack = tmp_path / "evil.yaml"
    body = PACK_HEADER + f"lists:\n  evil: {tagged.format(marker=marker)}\nrules: []\n"
    pack.write_text(body, encoding="utf-8")
    try:
        error = _load_error(pack)
    finally:
        assert not marker.exists(), "a YAML tag ran code"
    (issue,) = error.issues
    assert (issue.file, issue.line, issue.col) == (str(pack), *at(body, "!!python", 0))
    assert "python/object" in issue.message


def test_alias_bomb_is_refused_quickly(tmp_path):
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    prev = "a"
    for name in "bcdefghi":  # 9^9 strings if expanded
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
        prev = name
    pack = tmp_path / "bomb.yaml"
    pack.write_text("\n".join(lines) + "\n", encoding="utf-8")
    start = time.perf_counter()
    error = _load_error(pack)
    assert time.perf_counter() - start < 2.0
    (issue,) = error.issues
    assert issue.file == str(pack)
    assert "alias bomb" in issue.message and "nodes" in issue.message


# ---------------------------------------------------------------------------------------------------------------
# Never half-loaded.

GOOD_RULES = """\
# Reviewed 2025-06: large purchases are held.
rules:
  - id: BIG-1
    category: risk
    title: Large purchase
    when: {field: amount.value, op: gte, value: 5000}
    outcome: review
    reason: "Purchase of {amount.value} {amount.currency} is held."
    source: test
    verified: false
"""


def _good_dir(root: Path, rules_text: str = GOOD_RULES) -> Path:
    root.mkdir(exist_ok=True)
    (root / "pack.yaml").write_text(PACK_HEADER, encoding="utf-8")
    (root / "risk.yaml").write_text(rules_text, encoding="utf-8")
    return root


def test_one_bad_file_fails_the_whole_pack(tmp_path):
    root = _good_dir(tmp_path / "pack")
    (root / "zz_more.yaml").write_text("rules:\n" + rule("BAD-OP", "{field: amount.value, op: gtx, value: 1}"),
                                       encoding="utf-8")
    error = _load_error(root)
    assert [i.rule_id for i in error.issues] == ["BAD-OP"]
    with pytest.raises(RuleSetError):
        PolicyEngine.from_path(root)


def test_failed_reload_keeps_the_old_pack(tmp_path):
    root = _good_dir(tmp_path / "pack")
    engine = PolicyEngine.from_path(root, matcher="python")
    digest = engine.ruleset.digest
    (root / "risk.yaml").write_text(GOOD_RULES.replace("op: gte", "op: gtex"), encoding="utf-8")
    with pytest.raises(RuleSetError):
        engine.reload()
    assert engine.ruleset.digest == digest
    assert [r.id for r in engine.ruleset.rules] == ["BIG-1"]
    assert engine.evaluate(base_request(amount__value=6000)).decision == "review"


def test_digest_is_canonical(tmp_path):
    root = _good_dir(tmp_path / "pack")
    first, second = load_ruleset(root), load_ruleset(root)
    assert first.digest == second.digest
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", first.digest)

    (root / "risk.yaml").write_text(GOOD_RULES.replace("Reviewed 2025-06", "Reviewed 2025-09 by ops"),
                                    encoding="utf-8")
    assert load_ruleset(root).digest == first.digest  # a comment cannot change a decision

    (root / "risk.yaml").write_text(GOOD_RULES.replace("value: 5000", "value: 5000.01"), encoding="utf-8")
    assert load_ruleset(root).digest != first.digest


# ---------------------------------------------------------------------------------------------------------------
# `policy-engine validate`.

ISSUE_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+) (?P<rid>[A-Z][A-Z0-9-]*): (?P<msg>.+)$")


def test_validate_bundled_pack():
    out, err = io.StringIO(), io.StringIO()
    assert main(["validate", str(RULES)], out=out, err=err) == 0
    ruleset = load_ruleset(RULES)
    summary = out.getvalue().splitlines()[-1]  # after the fail-open points (I150) lint lists
    assert summary.startswith(f"ok: {ruleset.pack} {ruleset.version}: {len(ruleset.rules)} rules")
    assert ruleset.digest in summary
    assert err.getvalue() == ""


def test_validate_bundled_pack_json():
    out = io.StringIO()
    assert main(["validate", "--json", str(RULES)], out=out, err=io.StringIO()) == 0
    summary = json.loads(out.getvalue())
    ruleset = load_ruleset(RULES)
    assert summary["ok"] is True
    assert (summary["pack"], summary["digest"], summary["rules"]) == (ruleset.pack, ruleset.digest,
                                                                       len(ruleset.rules))


def test_validate_broken_pack_lists_every_issue(broken):
    root, error = broken
    out, err = io.StringIO(), io.StringIO()
    assert main(["validate", str(root)], out=out, err=err) == 2
    assert out.getvalue() == ""
    lines = err.getvalue().splitlines()
    assert lines[-1] == f"{len(error.issues)} errors in the rule pack; nothing was loaded"
    with_id = [m for m in map(ISSUE_LINE.match, lines) if m]
    assert {m["rid"] for m in with_id} == {e[3] for e in EXPECTED if e[3]}
    line, col = at(BROKEN_A_YAML, "op: gtx")
    assert (f"{root / 'a.yaml'}:{line}:{col} BAD-OP: unknown operator 'gtx'; did you mean 'gt'?"
            in [ln.split("; operators are")[0] for ln in lines])
    line, col = at(BROKEN_PACK_YAML, "lits:")
    assert f"{root / 'pack.yaml'}:{line}:{col}: unknown key 'lits'; did you mean 'lists'?" in lines


def test_validate_broken_pack_json(broken):
    root, error = broken
    out = io.StringIO()
    assert main(["validate", "--json", str(root)], out=out, err=io.StringIO()) == 2
    report = json.loads(out.getvalue())
    assert report["ok"] is False
    assert [(e["file"], e["line"], e["col"], e["rule_id"], e["message"]) for e in report["errors"]] == [
        (i.file, i.line, i.col, i.rule_id, i.message) for i in error.issues]
