"""An adversarial sweep of rule packs: what a hostile or careless author or operator can put in a pack directory
or a rule file. Each test pins a hole that was found: a pack that says one thing and decides another, or an error
that does not say where. The loader must refuse with file:line:col or decide what the pack says."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import MATCHERS, PACK_HEADER, base_request
from test_durable_limits import run_python
from test_pack_hardening import position, rule
from test_rule_tests import write as write_rule_tests

from policy_engine import PolicyEngine, RuleSetError, load_ruleset
from policy_engine.testing import RuleTestError, run_tests
from policy_engine.testing.casefile import load_cases

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


# -- constants in counters -----------------------------------------------------------------------------------------
P2P_CAP = rule("""
    all:
      - {field: purpose, op: eq, value: p2p_transfer}
      - {field: {add: [history.p2p_amount_24h_cny, derived.amount_cny]}, op: gt, value: 1000}""").replace(
    "review", "deny")


def p2p_pack(tmp_path: Path, where: str, lists: str = "", window: str = "{last: 24h}") -> Path:
    path = tmp_path / "pack.yaml"
    path.write_text(PACK_HEADER + lists + "aggregates:\n  history.p2p_amount_24h_cny:\n    sum: derived.amount_cny\n"
                    f"    {where}\n    by: payer.id\n    window: {window}\n    counts: allowed\n"
                    "rules:\n" + textwrap.indent(P2P_CAP, "  "), encoding="utf-8")
    return path


@pytest.mark.parametrize(("where", "lists", "window", "needle", "fragment"), [
    ('where: {field: purpose, op: eq, value: "p2p\\u200btransfer"}', "", "{last: 24h}", 'value: "p2p',
     "U+200B ZERO WIDTH SPACE"),
    ("where: {field: amount.currency, op: in, value: [CNY, cny]}", "", "{last: 24h}", "cny]",
     "must match ^[A-Z]{3}$"),
    ("where: {field: amount.currency, op: in, list: ccy}", "lists:\n  ccy: [CNY, yuan]\n", "{last: 24h}", "yuan",
     "which aggregate history.p2p_amount_24h_cny compares with it"),
    ("where: {field: purpose, op: eq, value: p2p_transfer}", "", '{since: {field: merchant.mcc, op: eq, value: "601"}}',
     'value: "601"', "must match ^[0-9]{4}$"),
], ids=["invisible", "pattern", "named list", "since"])
def test_a_counter_constant_no_request_can_carry_is_a_load_error(tmp_path, where, lists, window, needle, fragment):
    """The same constant refused in a rule loaded in an aggregate's `where:` or `since:`: the counter never
    counted (a zero-width space in `p2p_transfer`), so the 24h cap never filled and every transfer was allowed."""
    path = p2p_pack(tmp_path, where, lists, window)
    with pytest.raises(RuleSetError) as caught:
        load_ruleset(path)
    (issue,) = caught.value.issues
    text = path.read_text()
    index = text.index(needle)
    assert (issue.line, issue.col) == (text.count("\n", 0, index) + 1, index - text.rfind("\n", 0, index))
    assert fragment in issue.message and issue.rule_id is None


@pytest.mark.parametrize("matcher", MATCHERS)
def test_a_clean_counter_fills_and_the_cap_denies(tmp_path, matcher):
    """The fixed pack's counterpart: with the constant written plainly the cap holds on both matchers."""
    path = p2p_pack(tmp_path, "where: {field: purpose, op: eq, value: p2p_transfer}")
    engine = PolicyEngine.from_path(path, matcher=matcher, state="memory://")
    payee = {"id": "p-1", "name": "Li Lei", "country": "CN", "sanctions_hit": False}
    try:
        decisions = [engine.evaluate(base_request(request_id=f"r{i}", purpose="p2p_transfer", merchant=None,
                                                  amount__value=600, payee=payee,
                                                  timestamp=f"2025-06-10T14:3{i}:00+08:00")).decision
                     for i in range(2)]
    finally:
        engine.close()
    assert decisions == ["allow", "deny"]


# -- where an unreadable character is ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("bad", "fragment"), [
    (b"\x07", "U+0007 is not allowed"), (b"\x00", "U+0000 is not allowed"), (b"\x1b", "U+001B is not allowed"),
    (b"\xff", "not UTF-8 (byte"), (b"\xe4\xb8", "not UTF-8 (byte"),
], ids=["bell", "nul", "escape", "not utf-8", "cut utf-8"])
def test_an_unreadable_character_is_refused_at_its_line_and_column(tmp_path, bad, fragment):
    """A control character reached libyaml's reader only mid-parse and was reported at 1:1 with a character
    offset in the message (`in "<unicode string>", position 645`); bytes that are not UTF-8 at 1:1 with a byte
    offset. Both now point at the character, counted in characters after non-ASCII text."""
    text = (PACK_HEADER + "rules:\n" + textwrap.indent(rule("{field: purpose, op: eq, value: x}"), "  ")).replace(
        "title: R-1 title", "title: 支付规则一").replace("reason: Held.", "reason: 中文HeBADld.")
    path = tmp_path / "pack.yaml"
    path.write_bytes(text.encode("utf-8").replace(b"BAD", bad))
    with pytest.raises(RuleSetError) as caught:
        load_ruleset(path)
    (issue,) = caught.value.issues
    line = text.splitlines().index("    reason: 中文HeBADld.") + 1
    assert (issue.line, issue.col) == (line, len("    reason: 中文He") + 1)
    assert fragment in issue.message and "<unicode string>" not in issue.message


# -- aliases ------------------------------------------------------------------------------------------------------
def nested_aliases(branching: int, levels: int) -> str:
    """A condition of branching**levels leaves written in about a kilobyte: each level an `any:` of the one below
    and branching - 1 aliases to it."""
    tree = "&w0 {field: payer.residence_country, op: in, value: [IR, KP, SY, CU]}"
    for i in range(1, levels + 1):
        tree = f"&w{i} {{any: [{tree}" + f", *w{i - 1}" * (branching - 1) + "]}"
    return tree


@pytest.mark.parametrize(("branching", "levels"), [(12, 4), (20, 3), (4, 8)])
def test_a_kilobyte_of_nested_aliases_is_refused_by_the_alias_budget(make_pack, branching, levels):
    """About 1 KB of aliases expanded to up to 200,000 nodes before the node budget (or the leaf limit, after
    parsing 20,736 leaves) refused it: 2-2.5 s of CPU per load. Nodes reached again through aliases now have a
    budget of their own, so the same text is refused as soon as it has expanded to that."""
    path = make_pack(rule(nested_aliases(branching, levels)))
    assert path.stat().st_size < 2000
    with pytest.raises(RuleSetError) as caught:
        load_ruleset(path)
    (issue,) = caught.value.issues
    assert issue.file == str(path) and "aliases expand to more than" in issue.message


@pytest.mark.parametrize("matcher", MATCHERS)
def test_a_condition_shared_by_anchor_still_loads_and_decides(make_pack, matcher):
    """What anchors are for (one condition written once, read by many rules) stays within the budget."""
    shared = "&embargo {any: [{field: payer.residence_country, op: in, value: [IR, KP, SY, CU]}, " \
             "{field: merchant.country, op: in, value: [IR, KP, SY, CU]}]}"
    rules = rule(shared, rid="R-0") + "".join(rule("*embargo", rid=f"R-{i}") for i in range(1, 200))
    engine = PolicyEngine.from_path(make_pack(rules), matcher=matcher)
    try:
        decision = engine.evaluate(base_request(payer__residence_country="KP"))
    finally:
        engine.close()
    assert decision.decision == "review" and len(decision.rule_ids) == 200


# -- timezone names ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("zone", ["America", "US", "Asia" * 80])
@pytest.mark.parametrize("where", ["timezones", "aggregate"])
def test_a_timezone_that_names_a_tz_directory_or_is_too_long_is_a_load_error(tmp_path, zone, where):
    """`timezones: {US: America}` (a region, not a zone) raised IsADirectoryError out of load_ruleset, and a name
    longer than a file name OSError: tracebacks instead of a positioned load error."""
    if where == "timezones":
        path = tmp_path / "pack.yaml"
        path.write_text(PACK_HEADER.replace("US: America/New_York", f"US: {zone}") + "rules: []\n", encoding="utf-8")
    else:
        path = p2p_pack(tmp_path, "where: {field: purpose, op: eq, value: p2p_transfer}",
                        window=f"{{calendar: day, timezone: {zone}}}")
    with pytest.raises(RuleSetError) as caught:
        load_ruleset(path)
    (issue,) = caught.value.issues
    text = path.read_text()
    index = text.index(f"US: {zone}" if where == "timezones" else f"timezone: {zone}")
    assert issue.line == text.count("\n", 0, index) + 1
    assert "is not a timezone of the tz database" in issue.message and len(issue.message) < 300


# -- how long an error is ---------------------------------------------------------------------------------------------
HUGE = "y" * 1_000_000
HUGE_VALUES = [
    ("outcome", ("outcome: review", f"outcome: {HUGE}")),
    ("effective date", ("verified: false", f"verified: false\n    effective: {{from: '{HUGE}'}}")),
    ("reason", ("reason: Held.", f"reason: '{{{HUGE}}}'")),
    ("field", ("field: purpose", f"field: {HUGE}")),
    ("operator", ("op: eq", f"op: {HUGE}")),
    ("list name", ("op: eq, value: x", f"op: in, list: {HUGE}")),
    ("version", ('version: "1"', f"version: {[1] * 100_000}")),
    ("threshold", ("field: purpose, op: eq, value: x", "field: amount.value, op: gt, value: 1" + "0" * 3000)),
]


@pytest.mark.parametrize(("old", "new"), [c[1] for c in HUGE_VALUES], ids=[c[0] for c in HUGE_VALUES])
def test_an_error_quotes_a_huge_value_by_its_start(tmp_path, old, new):
    """Schema errors quoted the whole value (jsonschema's "'yyy…' is not one of"), and unknown field, operator
    and list names were quoted whole: a megabyte value made a megabyte message, which a service keeps as its
    last reload error and shows in /v1/pack."""
    path = tmp_path / "pack.yaml"
    text = PACK_HEADER + "rules:\n" + textwrap.indent(rule("{field: purpose, op: eq, value: x}"), "  ")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(RuleSetError) as caught:
        load_ruleset(path)
    messages = [i.message for i in caught.value.issues]
    assert all(len(m) < 400 for m in messages) and any("characters)" in m for m in messages)


# -- numbers YAML reads as text -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("written", "plain"), [("1e3", "1000"), ("1.5e3", "1500"), ("5E-2", "0.05")])
def test_an_exponent_yaml_reads_as_text_gets_advice_that_works(make_pack, written, plain):
    """`value: 1e3` written without quotes was refused with "'1e3' is a str (write it without quotes)": advice
    the author had already followed. YAML 1.1 reads an exponent without a point and a sign as text; the message
    now says so and gives the plain number."""
    path = make_pack(rule(f"{{field: amount.value, op: gt, value: {written}}}"))
    with pytest.raises(RuleSetError) as caught:
        load_ruleset(path)
    (issue,) = caught.value.issues
    assert f"as a plain number: {plain};" in issue.message and "such as 1e3, as text" in issue.message
    path.write_text(path.read_text().replace(f"value: {written}", f"value: {plain}"), encoding="utf-8")
    assert load_ruleset(path).rules[0].when.value == Decimal(plain)


def test_a_rule_file_whose_name_is_not_utf8_is_a_load_error_not_a_traceback(tmp_path):
    """A valid rule file named with a byte that is not UTF-8 raised UnicodeEncodeError while hashing the pack's
    digest (which covers the file names)."""
    root = pack_dir(tmp_path / "pack")
    with open(os.path.join(os.fsencode(root), b"r\xff.yaml"), "w", encoding="utf-8") as fh:
        fh.write("rules:\n" + textwrap.indent(SANCTIONS, "  "))
    with pytest.raises(RuleSetError) as caught:
        load_ruleset(root)
    (issue,) = caught.value.issues
    assert (issue.file, issue.line, issue.col) == (f"{root}/r\\xff.yaml", 1, 1)
    assert "not UTF-8; rename" in issue.message


@pytest.mark.parametrize(("written", "reads", "why"), [
    ("017", "15", "a leading 0 makes it octal"), ("-0_10", "-8", "a leading 0 makes it octal"),
    ("1:30", "90", "a colon makes it base 60"), ("1:30.5", "90.5", "a colon makes it base 60"),
])
def test_a_number_yaml_reads_as_another_number_is_refused(make_pack, written, reads, why):
    """`value: 017` loaded as 15 and `value: 1:30` as 90: YAML 1.1 reads a leading 0 as octal and colons as base
    60, so the threshold the engine applied was not the one the author wrote."""
    path = make_pack(rule(f"{{field: risk_score, op: gte, value: {written}}}"))
    with pytest.raises(RuleSetError) as caught:
        load_ruleset(path)
    (issue,) = caught.value.issues
    text = path.read_text()
    index = text.index(f"value: {written}") + len("value: ")
    assert (issue.line, issue.col) == (text.count("\n", 0, index) + 1, index - text.rfind("\n", 0, index))
    assert issue.message == f"{written} reads as {reads} ({why} in YAML); write {reads}, or quote it if it is text"


# -- party-list files ---------------------------------------------------------------------------------------------
LOAD_IN_CHILD = """
    import json, sys
    from policy_engine import RuleSetError, load_ruleset
    try:
        load_ruleset(sys.argv[1])
    except RuleSetError as exc:
        print(json.dumps([[i.line, i.message] for i in exc.issues]))
"""


@pytest.mark.parametrize("special", ["fifo", "directory"])
def test_a_party_list_that_is_not_a_regular_file_is_refused_not_read_forever(tmp_path, special):
    """A FIFO as a party list blocked the load for good, and `file: /dev/zero` read without end, memory growing
    until the process died (not tried here: a regression would take the machine's memory): a pack could hang a
    service's reload. Loaded in a child so that a regression fails instead of hanging."""
    target = tmp_path / "sdn.csv" if special == "fifo" else tmp_path
    if special == "fifo":
        os.mkfifo(target)
    path = tmp_path / "pack.yaml"
    path.write_text(PACK_HEADER + f"screening_lists:\n  sdn: {{format: opensanctions_simple, file: {target}}}\n"
                    "rules: []\n", encoding="utf-8")
    try:
        child = run_python(LOAD_IN_CHILD, str(path), timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"loading a pack whose party list is {special} did not finish in 30 s")
    assert child.returncode == 0, child.stderr[-2000:]
    assert json.loads(child.stdout) == [
        [PACK_HEADER.count("\n") + 2, f"{target} is not a regular file (a device, FIFO or directory); a party "
                                      "list is a CSV file"]]


# -- rule tests ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["includes", "excludes", "reason_contains"])
def test_a_rule_test_expectation_that_checks_nothing_is_refused(tmp_path, key):
    """`expect: {includes: []}` passed whatever the pack decided (the schema's non-empty `expect` was met by a
    key that checks nothing): a rule test that cannot fail kept CI green."""
    pack = write_rule_tests(tmp_path, f"- name: checks nothing\n  base: purchase\n  expect: {{{key}: []}}\n")
    with pytest.raises(RuleTestError) as caught:
        run_tests(pack, matcher="python")
    (issue,) = caught.value.issues
    where = position((tmp_path / "tests" / "cases.yaml").read_text(), f"{key}: []")
    assert (issue.line, issue.col) == where and f"expect/{key}: [] should be non-empty" in issue.message


# -- what a message tells the author to do ----------------------------------------------------------------------
def test_a_key_yaml_reads_as_a_boolean_says_to_quote_it(tmp_path):
    """`timezones: {NO: Europe/Oslo}` (Norway) was refused with "mapping keys must be strings, got False": right
    place, but nothing said why a country code is False or what to write."""
    path = tmp_path / "pack.yaml"
    path.write_text(PACK_HEADER.replace('"NO": Europe/Oslo', "NO: Europe/Oslo") + "rules: []\n", encoding="utf-8")
    with pytest.raises(RuleSetError) as caught:
        load_ruleset(path)
    (issue,) = caught.value.issues
    assert (issue.line, issue.col) == position(path.read_text(), "NO: Europe")
    assert issue.message == ('mapping keys must be strings, got False; quote it ("NO"): YAML reads NO/yes/on as '
                             "booleans and 6012 as a number")


def test_a_tab_in_a_constant_is_named_as_a_control_character(make_pack):
    """A tab in a constant was described as "U+0009 UNASSIGNED": control characters have no Unicode name."""
    path = make_pack(rule('{field: merchant.name, op: eq, value: "Bad\\tShop"}'))
    with pytest.raises(RuleSetError) as caught:
        load_ruleset(path)
    (issue,) = caught.value.issues
    assert "contains U+0009 CONTROL CHARACTER, an invisible or control character" in issue.message


def test_a_rule_directory_that_cannot_be_listed_fails_the_load(tmp_path, monkeypatch):
    """A subdirectory the service's user may not list (mode 0700, another owner) was skipped in silence by the
    directory walk, and its rules with it. Tests run as any user, so listing it is made to fail here."""
    root = pack_dir(tmp_path / "pack")
    (root / "compliance").mkdir()
    (root / "compliance" / "sanctions.yaml").write_text("rules:\n" + textwrap.indent(SANCTIONS, "  "),
                                                       encoding="utf-8")
    (root / "tests").mkdir()
    real_scandir = os.scandir

    def scandir(path):
        if Path(path).name in ("compliance", "tests"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(RuleSetError) as caught:
        load_ruleset(root)
    (issue,) = caught.value.issues
    assert (issue.file, issue.line, issue.col) == (str(root / "compliance"), 1, 1)
    assert issue.message.startswith("cannot read the directory: Permission denied")
    with pytest.raises(RuleTestError) as caught_tests:
        load_cases(root, None, ["SANC-1"])
    assert [i.file for i in caught_tests.value.issues] == [str(root / "tests")]


@pytest.mark.parametrize("tagged", ["!custom x", "!!python/name:os.system x", "!!yaml x"])
def test_an_unknown_tag_is_refused_without_pyyaml_s_second_position(make_pack, tagged):
    """A scalar with a tag the safe constructor does not know was refused with PyYAML's own text appended:
    '... for the tag '!custom'\\n  in "<unicode string>", line 14, column 43', a second position in another form."""
    path = make_pack(rule(f"{{field: purpose, op: eq, value: {tagged}}}"))
    with pytest.raises(RuleSetError) as caught:
        load_ruleset(path)
    (issue,) = caught.value.issues
    assert (issue.line, issue.col) == position(path.read_text(), tagged)
    assert issue.message.startswith("unsupported YAML value: ") and issue.message.endswith("(remove the tag)")
    assert "\n" not in issue.message and "<unicode string>" not in issue.message


@pytest.mark.parametrize(("tagged", "what"), [("!!bool maybe", "boolean"), ("!!timestamp x", "date"),
                                              ("!!timestamp 2025-1-1x", "date")])
def test_an_explicit_tag_on_text_it_does_not_fit_is_a_load_error_not_a_traceback(make_pack, tagged, what):
    """`!!bool maybe` raised KeyError and `!!timestamp x` AttributeError out of load_ruleset (PyYAML's
    constructors assume text that its resolver matched)."""
    path = make_pack(rule(f"{{field: purpose, op: eq, value: {tagged}}}"))
    with pytest.raises(RuleSetError) as caught:
        load_ruleset(path)
    (issue,) = caught.value.issues
    assert (issue.line, issue.col) == position(path.read_text(), tagged)
    assert issue.message.startswith(f"{tagged.split(' ', 1)[1]!r} is not a valid {what}: YAML cannot read it")
