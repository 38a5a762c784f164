"""Backtests: exact flips between two pack versions, labels, as-of replay, bad lines, CSV, bounded memory, reports."""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
import subprocess
import tempfile
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import PACK_HEADER, REPO, base_request

from policy_engine.backtesting import BacktestError, backtest
from policy_engine.backtesting.csvio import CsvLayout, CsvLayoutError, write_csv
from policy_engine.backtesting.metrics import CostModel
from policy_engine.backtesting.progress import ProgressBar
from policy_engine.backtesting.report_html import render_html
from policy_engine.backtesting.report_text import estimate
from policy_engine.cli import main
from policy_engine.synthetic import TrafficSpec, dumps_request, generate_requests

RULES = """\
- id: BIG-1
  category: risk
  title: Large payment needs review
  when: {field: derived.amount_cny, op: gt, value: THRESHOLD}
  outcome: review
  reason: "over THRESHOLD CNY"
  source: test
  verified: false
- id: FS-1
  category: funding_source
  title: BNPL cannot repay a credit card
  when:
    all:
      - {field: funding_source.type, op: eq, value: bnpl}
      - {field: purpose, op: eq, value: credit_card_repayment}
  outcome: deny
  reason: credit may not repay credit
  source: test
  verified: true
"""
VIOLATION = {"kind": "violation", "pattern": "bnpl->credit_card_repayment"}
#: (request id, amount, extra fields); a blank line sits between a-2 and a-3, so a-3 is on line 4.
PAYMENTS = [
    ("a-1", 400, {}),
    ("a-2", 600, {}),
    None,
    ("a-3", 1200, {}),
    ("a-4", 700, {"funding_source__type": "bnpl", "purpose": "credit_card_repayment", "label": VIOLATION}),
    ("a-5", 800, {"label": {"kind": "risk", "pattern": "account_takeover"}}),
    ("a-6", 900, {}),
    ("a-7", 501, {}),
]


def _line(request_id: str, amount: int, extra: dict) -> str:
    return json.dumps(base_request(request_id=request_id, amount__value=amount, **extra))


@pytest.fixture
def packs(make_pack) -> tuple[Path, Path]:
    """(candidate, baseline): the same pack but BIG-1's threshold lowered from CNY 1,000 to CNY 500."""
    baseline = make_pack(RULES.replace("THRESHOLD", "1000"))
    candidate = make_pack(RULES.replace("THRESHOLD", "500"), header=PACK_HEADER.replace('version: "1"', 'version: "2"'))
    return candidate, baseline


@pytest.fixture
def payments(tmp_path) -> Path:
    path = tmp_path / "payments.jsonl"
    path.write_text("".join((_line(*p) if p else "") + "\n" for p in PAYMENTS), encoding="utf-8")
    return path


def _stable(result) -> dict:
    data = result.to_dict()
    for key in ("elapsed_s", "payments_per_s", "workers"):
        data.pop(key)
    return data


def test_lowering_a_threshold_reports_the_exact_flips(packs, payments):
    candidate, baseline = packs
    result = backtest(payments, candidate, baseline, workers=1, examples=3)
    assert (result.records, result.evaluated, result.bad_count) == (7, 7, 0)
    assert [f.to_dict() for f in result.flips] == [{
        "from": "allow", "to": "review", "count": 4,
        "fired_only_in_candidate": {"BIG-1": 4}, "fired_only_in_baseline": {},
        # the first three by line number; a-7 (line 8) is the fourth flipped payment
        "examples": [{"line": 2, "request_id": "a-2"}, {"line": 6, "request_id": "a-5"},
                     {"line": 7, "request_id": "a-6"}],
    }]
    assert result.flipped == 4
    assert dict(result.candidate.decisions) == {"deny": 1, "review": 5, "step_up": 0, "allow": 1}
    assert dict(result.baseline.decisions) == {"deny": 1, "review": 1, "step_up": 0, "allow": 5}
    # a-4 fires BIG-1 only under the candidate too, but it is denied under both packs: not a flip.
    assert result.candidate.rule("BIG-1").hits == 6 and result.baseline.rule("BIG-1").hits == 1
    assert [e.request_id for e in result.candidate.rule("FS-1").examples] == ["a-4"]
    assert (result.candidate.version, result.baseline.version) == ("2", "1")


def test_raising_it_back_flips_the_other_way_and_blames_the_baseline_rule(packs, payments):
    candidate, baseline = packs
    result = backtest(payments, baseline, candidate, workers=1, examples=2)
    (flip,) = result.flips
    assert (flip.from_, flip.to, flip.count) == ("review", "allow", 4)
    assert dict(flip.fired_only_in_candidate) == {} and dict(flip.fired_only_in_baseline) == {"BIG-1": 4}
    assert [e.request_id for e in flip.examples] == ["a-2", "a-5"]


def test_labelled_payments_stopped_and_false_positives(packs, payments):
    candidate, baseline = packs
    result = backtest(payments, candidate, baseline, workers=1)
    cand, base = result.candidate.labels, result.baseline.labels
    assert (cand.labelled, cand.labelled_stopped, cand.unlabelled, cand.unlabelled_stopped) == (2, 2, 5, 4)
    assert (base.labelled, base.labelled_stopped, base.unlabelled, base.unlabelled_stopped) == (2, 1, 5, 1)
    assert [e.request_id for e in base.missed] == ["a-5"] and cand.missed == ()
    big = result.candidate.rule("BIG-1")
    assert (big.labelled_stopped, big.unlabelled_stopped) == (2, 4)
    assert {(p.kind, p.pattern): dict(p.decisions) for p in base.patterns} == {
        ("risk", "account_takeover"): {"deny": 0, "review": 0, "step_up": 0, "allow": 1},
        ("violation", "bnpl->credit_card_repayment"): {"deny": 1, "review": 0, "step_up": 0, "allow": 0}}


def test_result_does_not_depend_on_workers_or_chunking(packs, payments):
    candidate, baseline = packs
    one = backtest(payments, candidate, baseline, workers=1, examples=3)
    many = backtest(payments, candidate, baseline, workers=2, chunk_records=2, examples=3)
    assert many.workers == 2
    assert _stable(one) == _stable(many)


def test_each_payment_is_decided_as_of_its_own_timestamp(make_pack, tmp_path):
    pack = make_pack("""\
        - id: NEW-1
          category: compliance
          title: in force from July
          when: {field: amount.value, op: gt, value: 0}
          outcome: deny
          reason: new rule
          source: test
          verified: true
          effective: {from: 2025-07-01}
        """)
    path = tmp_path / "dated.jsonl"
    path.write_text("\n".join(json.dumps(base_request(request_id=rid, timestamp=ts)) for rid, ts in [
        ("june", "2025-06-30T23:59:59+08:00"), ("july", "2025-07-01T00:00:00+08:00"),
        # dated in the PSP's timezone (CN: Beijing), whatever offset was written
        ("utc-june", "2025-06-30T15:59:59+00:00"), ("utc-july", "2025-06-30T17:00:00+00:00")]) + "\n",
        encoding="utf-8")
    result = backtest(path, pack, workers=1)
    assert [e.request_id for e in result.candidate.rule("NEW-1").examples] == ["july", "utc-july"]
    assert dict(result.candidate.decisions) == {"deny": 2, "review": 0, "step_up": 0, "allow": 2}


def test_bad_lines_are_counted_with_line_numbers_and_never_stop_the_run(packs, tmp_path):
    candidate, _ = packs
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join([
        _line("g-1", 600, {}).encode(), b"this is not json", json.dumps({"request_id": "broken"}).encode(), b"",
        _line("g-2", 100, {}).encode(), b'{"request_id": "\xff"}', b"[1, 2]", b""]))
    result = backtest(path, candidate, workers=1)
    assert (result.records, result.evaluated, result.bad_count) == (6, 2, 4)
    assert dict(result.bad) == {"invalid_json": 2, "invalid_request": 2}
    assert [(b.line, b.error) for b in result.bad_lines] == [
        (2, "invalid_json"), (3, "invalid_request"), (6, "invalid_json"), (7, "invalid_request")]
    assert "$.timestamp" in result.bad_lines[1].message and "not UTF-8" in result.bad_lines[2].message
    out, err = io.StringIO(), io.StringIO()
    assert main(["backtest", "--rules", str(candidate), "--workers", "1", str(path)], out=out, err=err) == 2
    assert "line 2: invalid_json" in out.getvalue() and "Bad lines: 4" in out.getvalue()


def test_an_engine_fault_is_an_error_record_never_a_decision(packs, payments, monkeypatch):
    from policy_engine.matchers.python import PythonMatcher

    def broken(self, prepared):
        raise RuntimeError("injected matcher fault")

    monkeypatch.setattr(PythonMatcher, "match", broken)
    candidate, baseline = packs
    result = backtest(payments, candidate, baseline, workers=1, matcher="python")
    assert (result.records, result.evaluated) == (7, 0)
    assert dict(result.bad) == {"evaluation_failed": 7}
    assert result.bad_lines[0].message == "candidate pack: RuntimeError: injected matcher fault"


def test_cli_json_text_and_html_agree_with_the_library(packs, payments, tmp_path):
    candidate, baseline = packs
    report = tmp_path / "report.html"
    out, err = io.StringIO(), io.StringIO()
    code = main(["backtest", "--rules", str(candidate), "--baseline", str(baseline), str(payments), "--json",
                 "--workers", "1", "--examples", "3", "--html", str(report)], out=out, err=err)
    assert code == 0, err.getvalue()
    data = json.loads(out.getvalue())
    assert data["flipped"] == 4 and data["flips"][0]["fired_only_in_candidate"] == {"BIG-1": 4}
    assert data["candidate"]["labels"]["unlabelled_stopped"] == 4
    assert err.getvalue() == ""  # not a terminal: no progress bar
    text = io.StringIO()
    assert main(["backtest", "--rules", str(candidate), "--baseline", str(baseline), str(payments),
                 "--workers", "1"], out=text, err=err) == 0
    assert "allow -> review: 4   rules: +BIG-1 (4)" in text.getvalue()
    assert "e.g. a-2, a-5, a-6, a-7" in text.getvalue()
    page = report.read_text(encoding="utf-8")
    assert "allow → review" in page and "a-2" in page and "BIG-1" in page


class _Balance(HTMLParser):
    VOID = frozenset({"meta", "br", "img", "input", "link", "hr"})

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href") or (value and "http" in value and name != "xmlns"):
                self.problems.append(f"external reference {name}={value}")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.add(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def test_html_report_is_one_self_contained_well_formed_page(packs, payments, tmp_path):
    candidate, baseline = packs
    page = render_html(backtest(payments, candidate, baseline, workers=1))
    # alone, and with ratios left undefined (no good payment: precision of a pack that stopped nothing labelled)
    alone = render_html(backtest(payments, candidate, workers=1, labels_as_of=dt.date(2025, 6, 10),
                                 label_maturity=1))
    assert "Label metrics" in alone and "candidate − baseline" not in alone and "0 / 0 / 0" in alone
    parser = _Balance()
    parser.feed(alone)
    assert parser.problems == [] and parser.stack == []
    parser = _Balance()
    parser.feed(page)
    assert parser.problems == [] and parser.stack == []  # no src/href: scripts and styles are inline
    assert {"svg", "rect", "style", "table", "script"} <= parser.tags
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert page.count("<svg") >= 5  # decision mix (2), flips, rule hits, label metrics, pattern bars


#: The PAYMENTS' labels for the label metrics: a-1..a-3 legit, a-4 and a-5 known-bad objects, a-6 fraud, a-7 none.
#: Candidate: bad a-4 deny, a-5 and a-6 review (3 caught); good a-2 and a-3 review (friction 2): precision 3/5.
#: Baseline: bad a-4 deny (caught 1, missed 2); good a-3 review (friction 1): precision 1/2, recall 1/3.
OUTCOME_LABELS = {"a-1": "legit", "a-2": "legit", "a-3": "legit", "a-6": "fraud"}


@pytest.fixture
def labelled_payments(tmp_path) -> Path:
    path = tmp_path / "labelled.jsonl"
    lines = []
    for p in PAYMENTS:
        if p is None:
            continue
        rid, amount, extra = p
        if rid in OUTCOME_LABELS:
            extra = {**extra, "label": OUTCOME_LABELS[rid], "label_known_at": "2025-06-20"}
        lines.append(_line(rid, amount, extra))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _chromium(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """Headless Chromium, offline, with a new empty profile."""
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_html_report_renders_in_headless_chromium(packs, labelled_payments, tmp_path):
    candidate, baseline = packs
    result = backtest(labelled_payments, candidate, baseline, workers=1, costs=CostModel.parse("review=2,missed=50"))
    report = tmp_path / "report.html"
    report.write_text(render_html(result), encoding="utf-8")
    png = tmp_path / "report.png"
    run = subprocess.run(["bash", str(REPO / "scripts" / "screenshot_report.sh"), str(report), str(png)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000

    # The DOM after the page's script ran: the chart it draws, with the numbers the metrics table holds.
    dom = _chromium("--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr
    page = _Dom()
    page.feed(dom.stdout)
    assert page.body.get("data-metrics-chart") == "drawn"  # set last: no script error stopped it
    m = result.metrics
    assert (m.candidate.caught, m.candidate.friction, m.baseline.caught, m.baseline.missed) == (3, 2, 1, 2)
    table = page.text("metrics-table")
    for row in ("precision", "recall", "F1"):
        assert row in table
    assert "60.00% [" in table and "50.00% [" in table and "+10.00 pt" in table  # precision 3/5, 1/2
    assert "cost" in table and "4 (friction 4, missed 0)" in table and "102 (friction 2, missed 100)" in table
    labels = page.metric_labels
    assert labels == [f"{name} {estimate(getattr(pack, metric))}" for metric in ("precision", "recall", "f1")
                      for name, pack in (("candidate", m.candidate), ("baseline", m.baseline))]
    assert labels[0].startswith("candidate 60.00% [") and labels[3] == "baseline 33.33% [6.15, 79.23]"
    assert page.bars == 6  # precision, recall, F1 for each pack

    # every payment immature: nothing to measure, every ratio undefined, and the script still finishes
    empty = tmp_path / "empty.html"
    empty.write_text(render_html(backtest(labelled_payments, candidate, workers=1, labels_as_of=dt.date(2025, 6, 10),
                                          label_maturity=1)), encoding="utf-8")
    dom = _chromium("--dump-dom", empty.as_uri())
    page = _Dom()
    page.feed(dom.stdout)
    assert page.body.get("data-metrics-chart") == "drawn" and page.bars == 0
    assert page.metric_labels == ["candidate: undefined (no payments)"] * 3


class _Dom(HTMLParser):
    """What the test reads from a dumped DOM: the body's attributes, text by element id, the chart's labels."""

    def __init__(self):
        super().__init__()
        self.body: dict[str, str] = {}
        self.texts: dict[str, list[str]] = {}
        self.open_ids: list[tuple[str, str]] = []
        self.metric_labels: list[str] = []
        self.bars = 0
        self._label = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.body = attrs
        if "id" in attrs:
            self.open_ids.append((tag, attrs["id"]))
            self.texts[attrs["id"]] = []
        self._label = tag == "text" and attrs.get("class") == "metric-label"
        self.bars += tag == "rect" and attrs.get("class") == "metric-bar"

    def handle_endtag(self, tag):
        if self.open_ids and self.open_ids[-1][0] == tag:
            self.open_ids.pop()
        self._label = False

    def handle_data(self, data):
        for _, element in self.open_ids:
            self.texts[element].append(data)
        if self._label:
            self.metric_labels.append(data)

    def text(self, element: str) -> str:
        return " ".join(self.texts[element])


# -- CSV ----------------------------------------------------------------------------------------------------------
CSV_TEXT = """\
request_id,timestamp,payer.id,funding_source.type,purpose,amount.value,amount.currency,merchant.mcc,\
merchant.country,merchant.in_issuer_network,payer.age,extra.batch,label.kind,label.pattern
c-1,2025-06-10T14:30:00+08:00,u-1,debit_card,merchant_purchase,600.50,CNY,0742,CN,,30,1.5,,
c-2,2025-06-10T14:31:00+08:00,u-1,bnpl,credit_card_repayment,100,CNY,,,FALSE,30,,violation,bnpl->credit_card_repayment

c-3,2025-06-10T14:32:00+08:00,u-1,debit_card,merchant_purchase,abc,CNY,,,,30,,,
c-4,2025-06-10T14:33:00+08:00,u-1,debit_card,merchant_purchase,10,CNY,,,,thirty,,,
c-5,2025-06-10T14:34:00+08:00,u-1,debit_card
"""


def test_csv_cells_are_typed_by_the_request_schema():
    layout = CsvLayout.from_header(CSV_TEXT.splitlines()[0].split(","))
    rows = [line.split(",") for line in CSV_TEXT.splitlines()[1:3]]
    first, second = (layout.to_request(row) for row in rows)
    assert first["merchant"] == {"mcc": "0742", "country": "CN"}  # text stays text, the leading zero survives
    assert first["amount"] == {"value": Decimal("600.50"), "currency": "CNY"}
    assert first["payer"] == {"id": "u-1", "age": 30} and first["extra"] == {"batch": "1.5"}
    assert "label" not in first  # all-empty label cells: unlabelled
    assert second["merchant"] == {"in_issuer_network": False}
    assert second["label"] == {"kind": "violation", "pattern": "bnpl->credit_card_repayment"}


def test_csv_backtest_reports_bad_rows_by_line(packs, tmp_path):
    candidate, _ = packs
    path = tmp_path / "payments.csv"
    path.write_text(CSV_TEXT, encoding="utf-8")
    result = backtest(path, candidate, workers=1)
    assert result.format == "csv"
    assert (result.records, result.evaluated) == (5, 2)
    assert [(b.line, b.message) for b in result.bad_lines] == [
        (5, "column amount.value: 'abc' is not a number"),
        (6, "column payer.age: 'thirty' is not an integer"),
        (7, "row has 4 cells, the header has 14 columns")]
    assert result.candidate.rule("FS-1").examples[0].request_id == "c-2"


@pytest.mark.parametrize(("header", "message"), [
    ("payer.id,amount.value", "no request_id column"),
    ("request_id,payer.id,payer.id", "twice"),
    ("request_id,payer,payer.id", "overlap"),
    ("request_id,derived.amount_cny", "computed by the engine"),
    ("request_id,payer.sanctionsHit", "not a request field; did you mean 'payer.sanctions_hit'"),
    ("request_id,history.custom_total", "not a request field"),
])
def test_csv_headers_that_map_to_no_request_are_refused(header, message, tmp_path):
    with pytest.raises(CsvLayoutError, match=message):
        CsvLayout.from_header(header.split(","))
    path = tmp_path / "bad.csv"
    path.write_text(header + "\n", encoding="utf-8")
    err = io.StringIO()
    assert main(["backtest", str(path), "--workers", "1"], out=io.StringIO(), err=err) == 2
    assert message in err.getvalue()


def test_csv_and_json_lines_of_the_same_payments_give_the_same_backtest(tmp_path):
    requests = list(generate_requests(TrafficSpec(seed=4, n=1500, days=5)))
    jsonl, csvfile = tmp_path / "p.jsonl", tmp_path / "p.csv"
    jsonl.write_text("".join(dumps_request(r) + "\n" for r in requests), encoding="utf-8")
    with open(csvfile, "w", encoding="utf-8", newline="") as fh:
        write_csv(requests, fh)
    a, b = backtest(jsonl, workers=1), backtest(csvfile, workers=1)
    assert (a.format, b.format) == ("jsonl", "csv")
    assert a.bad_count == b.bad_count == 0 and a.evaluated == b.evaluated == 1500
    # Identical, except that example line numbers are file lines and the CSV header is line 1.
    assert a.candidate.to_dict() == _shift_lines(b.candidate.to_dict(), -1)
    assert a.candidate.labels is not None and a.candidate.labels.labelled > 0


def _shift_lines(data, by: int):
    if isinstance(data, dict):
        return {k: (v + by if k == "line" else _shift_lines(v, by)) for k, v in data.items()}
    if isinstance(data, list):
        return [_shift_lines(v, by) for v in data]
    return data


# -- streaming -----------------------------------------------------------------------------------------------
class _CountingStream:
    """A binary line stream that counts how far the backtest has read it."""

    name = "<counting>"

    def __init__(self, lines: list[bytes]):
        self.lines = lines
        self.read = 0

    def __iter__(self):
        for line in self.lines:
            self.read += 1
            yield line


def test_reading_never_runs_ahead_of_deciding_by_more_than_the_in_flight_bound(packs):
    candidate, _ = packs
    stream = _CountingStream([(_line(f"s-{i}", 100 + i, {}) + "\n").encode() for i in range(600)])
    workers, chunk = 2, 10
    ahead: list[int] = []

    def progress(done, done_bytes, total_bytes):
        ahead.append(stream.read - done)

    result = backtest(stream, candidate, workers=workers, chunk_records=chunk, progress=progress)
    assert result.evaluated == 600 and result.source == "<counting>"
    assert ahead and max(ahead) <= (2 * workers + 1) * chunk


def test_progress_bar_shows_rate_and_eta_when_the_size_is_known():
    out = io.StringIO()
    bar = ProgressBar(out, interval=0)
    bar(500, 250, 1000)
    bar(900, 900, None, final=True)
    bar.close()
    first, second = out.getvalue().split("\r")[1:]
    assert " 25.0%" in first and "500 payments" in first and "/s" in first and "ETA" in first
    assert "900 payments" in second and "ETA" not in second and out.getvalue().endswith("\n")


def test_unreadable_input_and_bad_arguments_are_errors_not_crashes(tmp_path):
    with pytest.raises(BacktestError, match="cannot read"):
        backtest(tmp_path / "missing.jsonl", workers=1)
    with pytest.raises(BacktestError, match="unknown input format"):
        backtest(tmp_path / "missing.jsonl", workers=1, format="xml")
    err = io.StringIO()
    assert main(["backtest", str(tmp_path / "missing.jsonl")], out=io.StringIO(), err=err) == 2
    assert "cannot read" in err.getvalue()
