"""Name screening (issue 17): party lists, normalisation, the `screen` operator in both matchers, evidence, errors.

Everything goes through the public API: packs written to a temporary directory, loaded with ``load_ruleset`` and
evaluated by ``PolicyEngine`` with each matcher; the reference evaluator (``conditions.evaluate``) is the oracle.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import DELETE, MATCHERS, PACK_HEADER, base_request
from test_loader_errors import at, rule

pytest.importorskip("rapidfuzz")
pytest.importorskip("anyascii")

from policy_engine import PolicyEngine, RuleSetError, load_ruleset
from policy_engine.cli import main
from policy_engine.conditions import evaluate
from policy_engine.screening.normalise import normalise

PARTIES = """\
id,schema,name,aliases,birth_date,countries,addresses,identifiers,sanctions,phones,emails,dataset,first_seen,last_seen
s-1,Person,Zorvat Kelmindor,Зорват Кельминдор,1961,ru,,,,,,synthetic,2019-06-01T00:00:00,2026-11-01T00:00:00
s-2,Company,Vrelkin Trade Holdings LLC,OOO Vrelkin Treid,,ru,,,,,,synthetic,2024-04-01,2026-11-01
s-3,Person,محمد\u200cجواد قرلیانی,,,ir,,,,,,synthetic,,2026-11-01
"""
SCREENING = """\
screening_lists:
  parties: {format: opensanctions_simple, file: parties.csv, from: "2020-01-01"}
"""


def write(tmp_path: Path, rules: str, screening: str = SCREENING, files: dict[str, str] | None = None) -> Path:
    for name, text in ({"parties.csv": PARTIES} | (files or {})).items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "pack.yaml").write_text(PACK_HEADER + screening + "rules:\n" + rules, encoding="utf-8")
    return tmp_path


SCREEN_PAYER = rule("SCR", "{field: payer.name, op: screen, list: parties, threshold: 0.85}")
SCREEN_MERCHANT = rule("SCR-M", "{field: merchant.name, op: screen, list: parties, threshold: 0.85, "
                                "country_field: merchant.country}")


@pytest.fixture
def engines(tmp_path):
    ruleset = load_ruleset(write(tmp_path, SCREEN_PAYER + SCREEN_MERCHANT
                                 + rule("NOT-SCR", "{not: {field: payer.name, op: screen, list: parties, "
                                                   "threshold: 0.95}}")))
    built = [PolicyEngine(ruleset, matcher=m) for m in MATCHERS]
    yield built
    for engine in built:
        engine.close()


# -- normalisation ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("a", "b"), [
    ("محمد\u200cجواد", "محمدجواد"),  # U+200C ZERO WIDTH NON-JOINER, as real lists carry it
    ("Zorvat\u200b Kel\u2060mindor\ufeff", "Zorvat Kelmindor"),
    ("ＺＯＲＶＡＴ　Kelmindor", "zorvat kelmindor"),  # full-width forms (NFKC)
    ("KELMINDOR, Zorvat", "Zorvat Kelmindor"),  # token order
    ("Zörvát Kelmindør", "Zorvat Kelmindor"),  # diacritics
    ("Зорват Кельминдор", "Zorvat Kelmindor"),  # Cyrillic
    ("OOO Vrelkin", "Vrelkin L.L.C."),  # legal forms, ООО in Latin letters and dotted
    ("ООО Врелкин", "Vrelkin GmbH"),  # ООО in Cyrillic
    ("宁泽贸易有限公司", "宁泽贸易"),  # a legal form written without spaces
    ("O'Brien-Smith", "obrien smith"),
])
def test_normalisation_makes_these_equal(a, b):
    assert normalise(a).tokens == normalise(b).tokens


def test_normalisation_keeps_a_name_made_only_of_legal_form_words():
    assert normalise("Holding Company Ltd").tokens == ("holding",)
    assert normalise("Company Ltd").tokens == ("company", "ltd")
    assert normalise("...").tokens == ()


# -- the operator in both matchers -------------------------------------------------------------------------------
CASES = [
    # (payer name, merchant name, merchant country, timestamp, fired)
    ("Zorvath Kelmindor", "Wang Fang Grocery", "CN", "2025-06-10T14:30:00+08:00", {"SCR", "NOT-SCR"}),  # 0.94
    ("Зорват Кельминдор", None, "CN", "2025-06-10T14:30:00+08:00", {"SCR"}),
    ("Zorvan Pelmador", None, "CN", "2025-06-10T14:30:00+08:00", {"NOT-SCR"}),
    # Arabic script writes few vowels (mhmdjwd qrlyny): a Latin spelling cannot meet an entry listed only in it;
    # real lists carry Latin aliases of such entries (README "Name screening")
    ("Mohammadjavad Qarliani", None, "CN", "2025-06-10T14:30:00+08:00", {"NOT-SCR"}),
    ("محمدجواد قرلیانی", None, "CN", "2025-06-10T14:30:00+08:00", {"SCR"}),
    # an entry is on the list from its first_seen date, as of the payment's local date
    ("Wang Fang", "Vrelkin Trade Holdings Ltd", "RU", "2024-03-31T23:59:00+08:00", {"NOT-SCR"}),
    ("Wang Fang", "Vrelkin Trade Holdings Ltd", "RU", "2024-04-01T00:00:00+08:00", {"SCR-M", "NOT-SCR"}),
    # the entry without first_seen is listed from the list's `from:`
    ("محمدجواد قرلیانی", None, "CN", "2019-12-31T12:00:00+08:00", {"NOT-SCR"}),
]


@pytest.mark.parametrize(("payer", "merchant", "country", "stamp", "fired"), CASES)
def test_both_matchers_fire_what_the_reference_evaluator_says(engines, payer, merchant, country, stamp, fired):
    request = base_request(payer__name=payer, timestamp=stamp, merchant__country=country,
                           **({"merchant__name": merchant} if merchant else {}))
    for engine in engines:
        decision = engine.evaluate(request)
        prepared = engine.prepare(request)
        reference = {r.id for r in engine.ruleset.rules if evaluate(r.when, prepared.view, prepared.day) is True}
        assert set(decision.rule_ids) == reference == fired, engine.matcher


def test_a_missing_name_is_unknown_and_an_absent_counterparty_is_not_applicable(engines):
    request = base_request(payer__name=DELETE, merchant=DELETE, purpose="p2p_transfer", channel="in_app",
                           payee__id="u-2", payee__country="CN", payee__sanctions_hit=False, payee__first_time=False)
    for engine in engines:
        decision = engine.evaluate(request)
        # the payer's name is missing: both payer leaves are unknown; the merchant leaf is false (no merchant)
        assert set(decision.undecided_ids) == {"SCR", "NOT-SCR"} and "SCR-M" not in decision.undecided_ids
        assert all(e.missing == ("payer.name",) for e in decision.trail)


def test_the_evidence_of_a_hit_names_entry_name_list_score_algorithm_and_secondary_key(engines):
    request = base_request(payer__name="Wang Fang", merchant__name="Vrelkin Treid", merchant__country="RU")
    for engine in engines:
        (entry,) = [e for e in engine.evaluate(request).trail if e.rule_id == "SCR-M"]
        evidence = entry.evidence["screen:merchant.name@parties+merchant.country"]
        assert evidence["entry_id"] == "s-2" and evidence["matched_name"] == "OOO Vrelkin Treid"
        assert evidence["list"] == "parties" and evidence["algorithm"].startswith("token-aligned")
        assert evidence["score"] == 1.0 and evidence["name_score"] == 1.0
        assert evidence["secondary"] == ["country RU matches: +0.02"]
        assert entry.evidence["merchant.name"] == "Vrelkin Treid"


def test_a_country_that_disagrees_lowers_the_score_below_the_threshold(engines):
    near = base_request(payer__name="Wang Fang", merchant__name="Wrelkin Treyd")  # name score 0.83
    for engine in engines:
        hits = {c: engine.evaluate({**near, "merchant": {**near["merchant"], "country": c}}) for c in ("RU", "DE")}
        assert "SCR-M" in hits["RU"].rule_ids and "SCR-M" not in hits["DE"].rule_ids


def test_explain_shows_the_best_match(engines):
    explanation = engines[0].explain(base_request(payer__name="Zorvath Kelmindor"), "SCR")
    leaf = explanation.to_dict()["rules"][0]["condition"]
    assert leaf["threshold"] == 0.85 and leaf["best_match"]["entry_id"] == "s-1" and leaf["result"] is True


# -- list files and the digest --------------------------------------------------------------------------------------
def test_the_digest_covers_the_list_contents(tmp_path):
    first = load_ruleset(write(tmp_path, SCREEN_PAYER)).digest
    changed = PARTIES.replace("Zorvat Kelmindor", "Zorvat Kelmindorr")
    assert load_ruleset(write(tmp_path, SCREEN_PAYER, files={"parties.csv": changed})).digest != first
    assert load_ruleset(write(tmp_path, SCREEN_PAYER)).digest == first


OFAC_SDN = ('36,"AEROCARIBBEAN AIRLINES",-0- ,"CUBA",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- \n'
            '173,"QELMINDOR, Zorvath",individual,"SDGT",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,"DOB 1961."\n\x1a\n')
OFAC_ALT = '173,101,"aka","KELMINDOR, Zorvo",-0- \n\x1a\n'


def test_ofac_sdn_with_its_alias_file_is_dated_by_the_pack(tmp_path):
    screening = ("screening_lists:\n  sdn: {format: ofac_sdn, file: sdn.csv, aliases: alt.csv, from: \"2025-01-01\"}\n")
    rules = rule("OFAC", "{field: payer.name, op: screen, list: sdn, threshold: 0.9}")
    pack = write(tmp_path, rules, screening, {"sdn.csv": OFAC_SDN, "alt.csv": OFAC_ALT})
    engine = PolicyEngine(load_ruleset(pack))
    assert engine.evaluate(base_request(payer__name="Zorvo Kelmindor")).rule_ids == ("OFAC",)
    evidence = engine.evaluate(base_request(payer__name="Zorvo Kelmindor")).trail[0].evidence
    assert evidence["screen:payer.name@sdn"]["entry_id"] == "ofac-173"
    assert engine.evaluate(base_request(payer__name="Aerocaribbean Airlines")).rule_ids == ("OFAC",)
    assert engine.evaluate(base_request(payer__name="Zorvo Kelmindor", timestamp="2024-12-31T12:00:00+08:00")
                           ).rule_ids == ()


# -- load errors ------------------------------------------------------------------------------------------------
LOAD_ERRORS = [
    ("unknown list", "{field: payer.name, op: screen, list: partys, threshold: 0.9}", "partys",
     "'partys' is no party list; `screen` takes a list of `screening_lists:`; did you mean 'parties'?"),
    ("no threshold", "{field: payer.name, op: screen, list: parties}", "{field: payer.name",
     "`screen` needs `threshold:`"),
    ("threshold above 1", "{field: payer.name, op: screen, list: parties, threshold: 1.5}", "1.5",
     "threshold 1.5 is not a number in (0, 1]"),
    ("a number field", "{field: risk_score, op: screen, list: parties, threshold: 0.9}", "risk_score",
     "`screen` compares names; risk_score is not a text field"),
    ("a value", "{field: payer.name, op: screen, value: Zorvat, threshold: 0.9}", "Zorvat",
     "`screen` takes `list:` (a party list) and `threshold:`, not `value:`"),
    ("threshold on eq", "{field: payer.name, op: eq, value: Zorvat, threshold: 0.9}", "threshold: 0.9}",
     "`threshold:` goes with `op: screen`, not `eq`"),
    ("a party list with in", "{field: payer.name, op: in, list: parties}", "parties}",
     "'parties' is a party list (`screening_lists:`): names are screened against it with `op: screen`"),
    ("country of another object", "{field: payer.name, op: screen, list: parties, threshold: 0.9, "
                                  "country_field: merchant.country}", "merchant.country",
     "country_field 'merchant.country' must be the country code field of the object payer.name belongs to"),
]


@pytest.mark.parametrize(("when", "needle", "message"), [c[1:] for c in LOAD_ERRORS], ids=[c[0] for c in LOAD_ERRORS])
def test_a_mistaken_screen_leaf_is_a_load_error_at_its_position(tmp_path, when, needle, message):
    pack = write(tmp_path, rule("BAD", when))
    with pytest.raises(RuleSetError) as info:
        load_ruleset(pack)
    (issue,) = info.value.issues
    text = (pack / "pack.yaml").read_text(encoding="utf-8")
    assert message in issue.message and issue.rule_id == "BAD"
    assert issue.line == at(text, needle)[0]


FILE_ERRORS = [
    ("missing file", "parties: {format: opensanctions_simple, file: nowhere.csv}", {}, "nowhere.csv:1",
     "cannot read the list file"),
    ("bad header", "parties: {format: opensanctions_simple, file: p.csv}", {"p.csv": "id,nom\nx,y\n"}, "p.csv:1",
     "no column name, aliases, countries, first_seen"),
    ("bad date", "parties: {format: opensanctions_simple, file: p.csv}",
     {"p.csv": PARTIES.replace("2024-04-01,", "2024-13-01,")}, "p.csv:3", "first_seen '2024-13-01' is not a date"),
    ("short row", "parties: {format: opensanctions_simple, file: p.csv}", {"p.csv": PARTIES + "s-9,Person\n"},
     "p.csv:5", "different number of fields"),
    ("no name", "parties: {format: opensanctions_simple, file: p.csv}",
     {"p.csv": PARTIES.replace("Zorvat Kelmindor,", ",")}, "p.csv:2", "needs an id and a name"),
    ("ofac without a date", "parties: {format: ofac_sdn, file: sdn.csv}", {"sdn.csv": OFAC_SDN}, "pack.yaml:",
     "an OFAC SDN file carries no dates"),
    ("ofac alias of nobody", "parties: {format: ofac_sdn, file: sdn.csv, aliases: alt.csv, from: \"2025-01-01\"}",
     {"sdn.csv": OFAC_SDN, "alt.csv": OFAC_ALT.replace("173", "999")}, "alt.csv:1", "ent_num 999"),
    ("not ofac", "parties: {format: ofac_sdn, file: p.csv, from: \"2025-01-01\"}", {"p.csv": PARTIES}, "p.csv:1",
     "not an OFAC SDN row"),
]


@pytest.mark.parametrize(("spec", "files", "where", "message"), [c[1:] for c in FILE_ERRORS],
                         ids=[c[0] for c in FILE_ERRORS])
def test_a_list_file_problem_is_a_load_error_naming_file_and_line(tmp_path, spec, files, where, message):
    pack = write(tmp_path, SCREEN_PAYER.replace("list: parties", "list: parties"),
                 "screening_lists:\n  " + spec + "\n", files)
    with pytest.raises(RuleSetError) as info:
        load_ruleset(pack)
    text = str(info.value)
    assert where in text and message in text, text


def test_zero_width_characters_in_list_entries_are_normalised_not_refused(tmp_path):
    # a rule constant with U+200C is refused (packchecks); a list entry with it is what real lists hold
    ruleset = load_ruleset(write(tmp_path, SCREEN_PAYER))
    names = [n for p in ruleset.screening_lists["parties"].parties for n in p.names]
    assert "محمد\u200cجواد قرلیانی" in names


def test_without_rapidfuzz_a_screening_pack_fails_to_load_and_other_packs_still_work(tmp_path):
    pack = write(tmp_path, SCREEN_PAYER)
    plain = tmp_path / "plain.yaml"
    plain.write_text(PACK_HEADER + "rules:\n" + rule("R", "{field: risk_score, op: gt, value: 50}"), "utf-8")
    script = textwrap.dedent(f"""
        import sys
        sys.modules["rapidfuzz"] = None  # as if not installed
        from policy_engine import PolicyEngine, RuleSetError, load_ruleset
        assert PolicyEngine(load_ruleset({str(plain)!r})).evaluate({{**{base_request()!r}, "risk_score": 60}}
                                                                   ).rule_ids == ("R",)
        try:
            load_ruleset({str(pack)!r})
        except RuleSetError as exc:
            print(exc)
        else:
            raise SystemExit("loaded without rapidfuzz")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False,
                          cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr
    assert "name screening needs rapidfuzz" in done.stdout and "pip install 'rapidfuzz>=3,<4'" in done.stdout


def test_a_backtest_dated_before_an_entrys_first_seen_does_not_hit_it(tmp_path):
    # the bundled pack: synth-0007 is on sanctioned_parties from its first_seen, 2024-04-01
    name = "Kleovoulos Zafiropoulos Trikkas"
    rows = [base_request(request_id=f"p-{day}", payer__name=name, timestamp=f"2024-{day}T12:00:00+08:00")
            for day in ("03-31", "04-01")]
    history = tmp_path / "history.jsonl"
    history.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = io.StringIO()
    assert main(["backtest", "--workers", "1", "--json", str(history)], out=out, err=io.StringIO()) == 0
    assert json.loads(out.getvalue())["candidate"]["decisions"] == {"deny": 0, "review": 1, "step_up": 0, "allow": 1}
