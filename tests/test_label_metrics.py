"""Label metrics: the math on hand-computed counts, the maturity cutoff's edges, costs, history records (labels,
label_known_at, the envelope, bad rows), the CLI options, and the tally against an independent recount."""

from __future__ import annotations

import datetime as dt
import io
import json
import random
import statistics
from decimal import Decimal

import pytest
from conftest import base_request
from hypothesis import given
from hypothesis import strategies as st

from policy_engine import PolicyEngine
from policy_engine.backtesting import backtest
from policy_engine.backtesting.csvio import CsvLayout
from policy_engine.backtesting.metrics import (
    BAD,
    GOOD,
    UNLABELLED,
    CostModel,
    CostModelError,
    DatedCounts,
    LabelCounts,
    f1,
    label_metrics,
    latest_day,
    mature_counts,
    pack_metrics,
    wilson,
)
from policy_engine.backtesting.report_text import render_text
from policy_engine.cli import main
from policy_engine.errors import RequestError
from policy_engine.synthetic import TrafficSpec, dumps_request, generate_requests


# -- statistics ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("k", "n", "low", "high"), [
    (0, 10, 0.0, 0.2775),      # the rule of three's neighbour: nothing seen in 10
    (5, 10, 0.2366, 0.7634),
    (10, 10, 0.7225, 1.0),
    (1, 3, 0.0615, 0.7923),
    (81, 263, 0.2553, 0.3662),  # Newcombe (1998), example (c)
])
def test_wilson_intervals_match_published_values(k, n, low, high):
    e = wilson(k, n)
    assert e.value == k / n
    assert (round(e.low, 4), round(e.high, 4)) == (low, high)


@pytest.mark.parametrize("n", range(1, 40))
def test_a_wilson_interval_holds_its_value_in_floats_too(n):
    """With nothing or everything seen, rounding put the bound a hair past the value (0 of 3: low 5.6e-17)."""
    for k in (0, n):
        e = wilson(k, n)
        assert e.low <= e.value <= e.high


def test_a_zero_denominator_is_undefined_never_nan():
    assert (wilson(0, 0).value, wilson(0, 0).low, wilson(0, 0).high) == (None, None, None)
    assert f1(0, 0, 0).value is None
    assert f1(0, 3, 2).to_dict() == {"value": 0.0, "low": 0.0, "high": 0.0}  # defined: nothing caught


def test_f1_delta_method_by_hand():
    # a=8 caught, b=2 friction, c=4 missed: F1 = 16/22; Var = 4*8*6*14 / 22^4
    e = f1(8, 2, 4)
    sd = (4 * 8 * 6 * 14) ** 0.5 / 22 ** 2
    assert e.value == pytest.approx(16 / 22)
    assert (e.low, e.high) == pytest.approx((16 / 22 - 1.959964 * sd, 16 / 22 + 1.959964 * sd))


def test_f1_delta_method_matches_the_spread_over_simulated_multinomial_counts():
    """The delta method's standard error against F1 over 3,000 multinomial samples of the same shape."""
    a, b, c, d = 40, 10, 20, 330
    n = a + b + c + d
    rng = random.Random(7)
    cells = rng.choices(range(4), weights=(a, b, c, d), k=n * 3000)
    values = []
    for start in range(0, len(cells), n):
        sample = cells[start:start + n]
        ca, cb, cc = sample.count(0), sample.count(1), sample.count(2)
        values.append(2 * ca / (2 * ca + cb + cc))
    e = f1(a, b, c)
    delta_sd = (e.high - e.low) / (2 * 1.959963984540054)
    assert statistics.stdev(values) == pytest.approx(delta_sd, rel=0.08)


# -- one pack's metrics -----------------------------------------------------------------------------------------
COUNTS = LabelCounts(
    outcomes={(BAD, "deny"): 6, (BAD, "review"): 1, (BAD, "step_up"): 1, (BAD, "allow"): 2,
              (GOOD, "deny"): 1, (GOOD, "step_up"): 3, (GOOD, "allow"): 86,
              (UNLABELLED, "review"): 2, (UNLABELLED, "allow"): 8},
    rules={"R-1": {BAD: 6, GOOD: 1}, "R-2": {BAD: 2, GOOD: 3, UNLABELLED: 2}, "R-3": {UNLABELLED: 1}})


def test_pack_metrics_by_hand():
    m = pack_metrics(COUNTS, CostModel.parse("deny=10, step_up=0.5,missed=100"))
    assert (m.bad, m.good, m.unlabelled) == (10, 90, 10)
    assert (m.caught, m.missed, m.friction, m.unlabelled_stopped) == (8, 2, 4, 2)
    assert dict(m.caught_by_outcome) == {"deny": 6, "review": 1, "step_up": 1}
    assert dict(m.friction_by_outcome) == {"deny": 1, "review": 0, "step_up": 3}
    assert dict(m.unlabelled_by_outcome) == {"deny": 0, "review": 2, "step_up": 0}
    assert m.precision.value == 8 / 12 and m.recall.value == 8 / 10
    assert m.f1.value == 16 / (16 + 4 + 2)
    # friction: 1 deny x 10 + 3 step-ups x 0.5; missed: 2 x 100
    assert (m.cost.total, dict(m.cost.friction), m.cost.missed) == (
        Decimal("211.5"), {"deny": Decimal(10), "review": Decimal(0), "step_up": Decimal("1.5")}, Decimal(200))
    r1, r2, r3 = m.rules  # most bad caught first
    assert (r1.rule_id, r1.caught, r1.friction, r1.precision.value, r1.recall.value) == ("R-1", 6, 1, 6 / 7, 0.6)
    assert (r2.rule_id, r2.unlabelled, r2.f1.value) == ("R-2", 2, 4 / (4 + 3 + 8))
    assert (r3.rule_id, r3.precision.value, r3.recall.value) == ("R-3", None, 0.0)  # stopped only unlabelled


def test_a_pack_with_no_good_or_no_bad_payments_has_undefined_ratios_in_json():
    only_unlabelled_stops = LabelCounts({(BAD, "allow"): 3, (UNLABELLED, "deny"): 1})
    m = pack_metrics(only_unlabelled_stops)
    assert m.precision.value is None and m.recall.value == 0.0 and m.cost is None
    nothing_bad = pack_metrics(LabelCounts({(GOOD, "allow"): 5}))
    assert (nothing_bad.recall.value, nothing_bad.f1.value, nothing_bad.precision.value) == (None, None, None)
    text = json.dumps(nothing_bad.to_dict(), allow_nan=False)
    assert '"precision": {"value": null, "low": null, "high": null}' in text


# -- the maturity cutoff ------------------------------------------------------------------------------------------
D = dt.date(2025, 7, 31).toordinal()


def test_maturity_cutoff_edges():
    dated = DatedCounts(
        payments={(D - 7, D - 1, BAD, "deny"): 1,      # mature (on the cutoff day), label known
                  (D - 6, D - 6, BAD, "deny"): 1,      # a day too new: immature
                  (D - 30, D, GOOD, "allow"): 1,       # label known on the as-of day: known
                  (D - 30, D + 1, GOOD, "review"): 1,  # known the day after: not yet, so unlabelled
                  (D - 30, None, BAD, "allow"): 1,     # no label_known_at: known from its payment's day
                  (D - 8, None, UNLABELLED, "review"): 2},
        rules={("R-1", D - 7, D - 1, BAD): 1, ("R-1", D - 6, D - 6, BAD): 1, ("R-2", D - 30, D + 1, GOOD): 1})
    counts = mature_counts(dated, D, 7)
    assert (counts.immature, counts.late) == (1, 1)
    assert dict(counts.outcomes) == {(BAD, "deny"): 1, (GOOD, "allow"): 1, (UNLABELLED, "review"): 3,
                                     (BAD, "allow"): 1}
    assert counts.rules == {"R-1": {BAD: 1}, "R-2": {UNLABELLED: 1}}
    everything = mature_counts(dated, D + 1, 0)
    assert (everything.immature, everything.late) == (0, 0)
    assert latest_day(dated) == D + 1  # the default as-of: the latest payment or label day
    with pytest.raises(ValueError, match="maturity"):
        mature_counts(dated, D, -1)


def test_label_metrics_need_a_label_and_compare_the_packs():
    unlabelled = DatedCounts({(D, None, UNLABELLED, "deny"): 4}, {})
    assert label_metrics(unlabelled) is None
    cand = DatedCounts({(D, D, BAD, "deny"): 3, (D, D, BAD, "allow"): 1, (D, D, GOOD, "deny"): 1}, {})
    base = DatedCounts({(D, D, BAD, "deny"): 1, (D, D, BAD, "allow"): 3, (D, D, GOOD, "allow"): 1}, {})
    m = label_metrics(cand, base, costs=CostModel(deny=Decimal(5), missed=Decimal(20)))
    assert m.as_of == "2025-07-31" and m.delta.to_dict() == {
        "caught": 2, "missed": -2, "friction": 1, "precision": round(3 / 4 - 1, 6), "recall": 0.5,
        "f1": round(6 / 8 - 2 / 5, 6), "cost": "-35"}  # 5 + 20 against 60


@pytest.mark.parametrize(("text", "message"), [
    ("deny=x", "deny='x' is not a number"),
    ("deny", "'deny' is not NAME=NUMBER"),
    ("=4", "is not NAME=NUMBER"),
    ("refund=1", "unknown cost 'refund'; the costs are deny, review, step_up, missed"),
    ("deny=1,deny=2", "given twice"),
    ("missed=-1", "0 or more"),
    ("missed=Infinity", "finite"),
    ("", "is not NAME=NUMBER"),
])
def test_bad_cost_models_are_refused_naming_the_part(text, message):
    with pytest.raises(CostModelError, match=message.replace("[", r"\[")):
        CostModel.parse(text)


# -- records ----------------------------------------------------------------------------------------------------
def _record(rid: str, **fields) -> str:
    return json.dumps({**base_request(request_id=rid), **fields})


def test_record_labels_the_envelope_and_bad_rows(make_pack, tmp_path):
    pack = make_pack("""\
        - id: BIG
          category: risk
          title: big
          when: {field: amount.value, op: gt, value: 500}
          outcome: deny
          reason: big
          source: test
          verified: true
        """)
    big = base_request(request_id="env-1", amount__value=900)
    lines = [
        _record("r-1", label="fraud", label_known_at="2025-06-12"),
        json.dumps({"request": big, "label": "chargeback", "label_known_at": "2025-06-20T10:00:00+08:00",
                    "status": "completed", "decision": "allow"}),
        _record("r-3", label="legit"),
        _record("r-4", label="fraudd"),                                  # unknown label string
        _record("r-5", label="legit", label_known_at="next week"),       # not a date
        _record("r-6", label_known_at="2025-06-12"),                     # a date without a label
        _record("r-7", label=7),
        json.dumps({"request": big, "labels": "fraud"}),                 # unknown envelope key
        json.dumps({"request": "r-9", "label": "fraud"}),
        json.dumps({"request": {**big, "label": "fraud"}}),              # record keys inside the request
        _record("r-11", label={"kind": "violation", "pattern": "x->y"}),  # the known-bad object still works
        _record("r-12", label={"kind": "legit"}),                        # an object is known bad: refused
    ]
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = backtest(path, pack, workers=1, examples=10)
    assert (result.records, result.evaluated, dict(result.bad)) == (12, 4, {"invalid_record": 7,
                                                                           "invalid_request": 1})
    bad = {b.line: b.message for b in result.bad_lines}
    assert "label 'fraudd' is not one of fraud, chargeback, legit" in bad[4]
    assert "label_known_at 'next week' is not an ISO 8601 date" in bad[5]
    assert "label_known_at without a label" in bad[6]
    assert "not int" in bad[7]
    assert "envelope key 'labels' is unknown" in bad[8]
    assert "envelope request must be an object" in bad[9]
    assert "label" in bad[10]  # the request itself refuses it as an unknown key
    assert 'labelled "label": "legit", not an object' in bad[12]
    m = result.metrics.candidate
    assert (m.bad, m.good, m.caught, m.missed) == (3, 1, 1, 2)  # the envelope's payment is the big one: denied
    assert result.metrics.as_of == "2025-06-20"  # the latest label day (payments are on 2025-06-10)


@pytest.mark.parametrize("key", ["label", "label_known_at", "status", "decision"])
def test_evaluate_refuses_record_keys_as_unknown_keys(key):
    engine = PolicyEngine.from_path()
    with pytest.raises(RequestError) as caught:
        engine.evaluate({**base_request(), key: "fraud"})
    assert any(key in str(v) for v in caught.value.violations)


def test_csv_label_columns_take_either_form_per_row():
    layout = CsvLayout.from_header(["request_id", "label", "label.kind", "label.pattern", "label_known_at"])
    assert layout.to_request(["c-1", "fraud", "", "", "2025-07-01"]) == {
        "request_id": "c-1", "label": "fraud", "label_known_at": "2025-07-01"}
    assert layout.to_request(["c-2", "", "violation", "a->b", ""])["label"] == {"kind": "violation",
                                                                              "pattern": "a->b"}
    with pytest.raises(ValueError, match=r"column label\.kind: label has a value in another column"):
        layout.to_request(["c-3", "fraud", "violation", "", ""])
    reversed_layout = CsvLayout.from_header(["request_id", "label.kind", "label"])
    with pytest.raises(ValueError, match="column label: label has values in other columns"):
        reversed_layout.to_request(["c-4", "violation", "legit"])


# -- the CLI --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "message"), [
    (["--costs", "deny=cheap"], "--costs: cost deny='cheap' is not a number"),
    (["--costs", "lost=3"], "--costs: unknown cost 'lost'"),
    (["--labels-as-of", "31/07/2025"], "--labels-as-of '31/07/2025' is not a date"),
    (["--label-maturity", "a week"], "--label-maturity 'a week' is not a whole number"),
    (["--label-maturity", "-1"], "--label-maturity must be 0 days or more"),
])
def test_cli_label_options_errors_exit_2(args, message, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(_record("r-1", label="fraud") + "\n", encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    assert main(["backtest", str(path), "--workers", "1", *args], out=out, err=err) == 2
    assert message in err.getvalue() and out.getvalue() == ""


def test_cli_reports_metrics_in_text_and_json(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(dumps_request(r) + "\n" for r in generate_requests(
        TrafficSpec(seed=5, n=1200, days=6, labels=True))), encoding="utf-8")
    args = ["backtest", str(path), "--workers", "1", "--labels-as-of", "2025-06-30", "--label-maturity", "2",
            "--costs", "deny=20,missed=300"]
    out = io.StringIO()
    assert main([*args, "--json"], out=out, err=io.StringIO()) == 0
    data = json.loads(out.getvalue())["metrics"]
    assert (data["as_of"], data["maturity_days"], data["costs"]["deny"]) == ("2025-06-30", 2, "20")
    assert data["immature"] == 0 and data["late_labels"] > 0  # legit labels arrive 21-45 days later
    cand = data["candidate"]
    assert cand["bad"] > 0 and cand["caught"] + cand["missed"] == cand["bad"]
    text = io.StringIO()
    assert main(args, out=text, err=io.StringIO()) == 0
    assert "Label metrics as of 2025-06-30 (maturity 2 days)" in text.getvalue()
    assert f"precision               {_pct(cand['precision'])}" in text.getvalue()


def _pct(e: dict) -> str:
    return f"{100 * e['value']:.2f}% [{100 * e['low']:.2f}, {100 * e['high']:.2f}]"


# -- the tally against an independent recount -------------------------------------------------------------------
@pytest.mark.parametrize(("as_of", "maturity"), [(None, 0), ("2025-06-28", 10), ("2025-06-20", 3)])
def test_metrics_equal_a_recount_from_each_payments_decision(as_of, maturity, tmp_path):
    """Per payment, decided on its own, classified here from its record: the same counts and ratios as the
    backtest's tally (two workers, small chunks, so merging is exercised)."""
    records = list(generate_requests(TrafficSpec(seed=11, n=1500, days=8, labels=True)))
    path = tmp_path / "p.jsonl"
    path.write_text("".join(dumps_request(r) + "\n" for r in records), encoding="utf-8")
    as_of_day = dt.date.fromisoformat(as_of) if as_of else None
    result = backtest(path, workers=2, chunk_records=97, labels_as_of=as_of_day, label_maturity=maturity)

    engine = PolicyEngine.from_path()
    stopping = {r.id for r in engine.ruleset.rules if r.outcome != "allow"}
    facts = []
    for record in records:
        request = {k: v for k, v in record.items() if k not in ("label", "label_known_at")}
        decision = engine.evaluate(request)
        label, known_at = record["label"], record.get("label_known_at")
        cls = UNLABELLED if label is None else GOOD if label == "legit" else BAD
        day = dt.date.fromisoformat(decision.as_of)
        known = dt.date.fromisoformat(known_at) if known_at else day
        facts.append((day, known, cls, decision.decision.value, set(decision.rule_ids) & stopping))
    as_of_day = as_of_day or max(max(day, known) for day, known, *_ in facts)
    mature = [f for f in facts if f[0] <= as_of_day - dt.timedelta(days=maturity)]
    seen = [(c if k <= as_of_day else UNLABELLED, o, fired) for _, k, c, o, fired in mature]
    bad = [(o, fired) for c, o, fired in seen if c == BAD]
    good = [(o, fired) for c, o, fired in seen if c == GOOD]
    caught = sum(o != "allow" for o, _ in bad)
    friction = sum(o != "allow" for o, _ in good)

    m = result.metrics
    assert m.as_of == as_of_day.isoformat() and m.immature == len(facts) - len(mature)
    c = m.candidate
    assert (c.bad, c.good, c.caught, c.missed, c.friction) == (len(bad), len(good), caught, len(bad) - caught,
                                                                friction)
    assert c.precision.value == (caught / (caught + friction) if caught + friction else None)
    assert c.recall.value == (caught / len(bad) if bad else None)
    by_rule = {}
    for cls, outcome, fired in seen:
        for rule_id in fired if outcome != "allow" else ():
            by_rule.setdefault(rule_id, {BAD: 0, GOOD: 0, UNLABELLED: 0})[cls] += 1
    assert {r.rule_id: {BAD: r.caught, GOOD: r.friction, UNLABELLED: r.unlabelled} for r in c.rules} == by_rule
    assert m.late == sum(1 for _, k, cls, *_ in mature if cls != UNLABELLED and k > as_of_day)
    assert "Label metrics as of" in render_text(result)


# -- synthetic labels ---------------------------------------------------------------------------------------------
def test_generated_labels_are_seeded_add_nothing_else_and_arrive_after_the_payment():
    spec = dict(seed=3, n=3000, days=10)
    plain = list(generate_requests(TrafficSpec(**spec)))
    labelled = list(generate_requests(TrafficSpec(**spec, labels=True)))
    again = list(generate_requests(TrafficSpec(**spec, labels=True)))
    assert [dumps_request(r) for r in labelled] == [dumps_request(r) for r in again]
    strip = ("label", "label_known_at")
    assert [{k: v for k, v in r.items() if k not in strip} for r in plain] == \
           [{k: v for k, v in r.items() if k not in strip} for r in labelled]
    kinds: dict[str, int] = {}
    for before, after in zip(plain, labelled, strict=True):
        label = after["label"]
        kind = label if isinstance(label, str) else label["kind"]
        kinds[kind] = kinds.get(kind, 0) + 1
        if isinstance(label, dict):  # a violation keeps its known-bad label, known when it was made
            assert label == before["label"] and "label_known_at" not in after
            continue
        assert label == "fraud" if before["label"] else label in ("chargeback", "legit")
        delay = (dt.date.fromisoformat(after["label_known_at"]) - dt.date.fromisoformat(after["timestamp"][:10]))
        assert 1 <= delay.days <= 45
    assert set(kinds) == {"legit", "chargeback", "fraud", "violation"} and kinds["legit"] > 2800


def test_generated_labels_give_the_same_metrics_from_csv_and_json_lines(tmp_path):
    out = {}
    for fmt in ("jsonl", "csv"):
        path = tmp_path / f"p.{fmt}"
        assert main(["generate", "--n", "800", "--days", "5", "--seed", "2", "--labels", "--format", fmt,
                     "-o", str(path)], out=io.StringIO(), err=io.StringIO()) == 0
        result = backtest(path, workers=1, labels_as_of=dt.date(2025, 6, 30), label_maturity=1)
        assert result.bad_count == 0
        out[fmt] = result.metrics.to_dict()
    assert out["jsonl"] == out["csv"] and out["csv"]["candidate"]["bad"] > 0


def test_envelopes_give_the_same_backtest_as_flat_records_counters_recomputed_included(tmp_path):
    records = list(generate_requests(TrafficSpec(seed=9, n=1000, days=4, counters=False, statuses=True,
                                                 labels=True)))
    flat, wrapped = tmp_path / "flat.jsonl", tmp_path / "wrapped.jsonl"
    flat.write_text("".join(dumps_request(r) + "\n" for r in records), encoding="utf-8")
    outside = ("label", "label_known_at", "status")
    wrapped.write_text("".join(dumps_request({
        "request": {k: v for k, v in r.items() if k not in outside}, **{k: r[k] for k in outside if k in r}}) + "\n"
        for r in records), encoding="utf-8")
    a, b = (backtest(path, workers=1) for path in (flat, wrapped))
    assert a.counters.recomputed == b.counters.recomputed == 1000 and a.bad_count == b.bad_count == 0
    assert {**a.to_dict(), "elapsed_s": 0, "payments_per_s": 0, "source": ""} == \
           {**b.to_dict(), "elapsed_s": 0, "payments_per_s": 0, "source": ""}


#: One payment as facts: (day offset, label delay or None, class, outcome, stopping rules that fired).
FACTS = st.lists(st.tuples(st.integers(0, 12), st.one_of(st.none(), st.integers(0, 10)),
                           st.sampled_from((BAD, GOOD, UNLABELLED)),
                           st.sampled_from(("deny", "review", "step_up", "allow")),
                           st.frozensets(st.sampled_from(("R-1", "R-2", "R-3")), max_size=2)), max_size=60)


@given(facts=FACTS, as_of=st.one_of(st.none(), st.integers(0, 24)), maturity=st.integers(0, 8))
def test_metrics_from_counts_equal_a_direct_recount(facts, as_of, maturity):
    """Counts keyed by day, through the cutoff and the formulas, against the definitions applied payment by
    payment."""
    start = D - 12
    payments: dict = {}
    rules: dict = {}
    for day, delay, cls, outcome, fired in facts:
        known = None if cls == UNLABELLED or delay is None else start + day + delay
        key = (start + day, known, cls, outcome)
        payments[key] = payments.get(key, 0) + 1
        for rule_id in fired if outcome != "allow" else ():
            rules[(rule_id, start + day, known, cls)] = rules.get((rule_id, start + day, known, cls), 0) + 1
    m = label_metrics(DatedCounts(payments, rules), as_of=None if as_of is None else start + as_of,
                      maturity_days=maturity)
    if all(cls == UNLABELLED for _, _, cls, _, _ in facts):
        assert m is None
        return
    cutoff_day = (as_of if as_of is not None else max(d + (x or 0) * (c != UNLABELLED) for d, x, c, _, _ in facts))
    mature = [f for f in facts if f[0] <= cutoff_day - maturity]
    seen = [(c if c == UNLABELLED or d + (x or 0) <= cutoff_day else UNLABELLED, o, fired)
            for d, x, c, o, fired in mature]
    bad_outcomes = [o for c, o, _ in seen if c == BAD]
    caught = sum(o != "allow" for o in bad_outcomes)
    friction = sum(o != "allow" for c, o, _ in seen if c == GOOD)
    c = m.candidate
    assert m.immature == len(facts) - len(mature)
    assert (c.bad, c.caught, c.missed, c.friction) == (len(bad_outcomes), caught, len(bad_outcomes) - caught,
                                                       friction)
    assert c.precision.value == (caught / (caught + friction) if caught + friction else None)
    assert c.recall.value == (caught / len(bad_outcomes) if bad_outcomes else None)
    denominator = 2 * caught + friction + len(bad_outcomes) - caught
    assert c.f1.value == (2 * caught / denominator if denominator else None)
    for e in (c.precision, c.recall, c.f1):
        assert e.value is None or 0 <= e.low <= e.value <= e.high <= 1
    for r in c.rules:
        stops = [cls for cls, o, fired in seen if o != "allow" and r.rule_id in fired]
        assert (r.caught, r.friction, r.unlabelled) == (stops.count(BAD), stops.count(GOOD), stops.count(UNLABELLED))
