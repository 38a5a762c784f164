"""A backtest as one self-contained HTML page: inline CSS and hand-drawn inline SVG charts, no external resources
(a Content-Security-Policy forbids loading any), so it opens from a mail attachment or an air-gapped share exactly
as it was written. One small inline script draws the label metrics chart from the numbers embedded beside it and
marks the page (``<body data-metrics-chart="drawn">``) when it finished, which the headless-browser test checks;
the metrics table holds the same numbers without it."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence

from .metrics import LabelMetrics
from .report_text import METRICS_NOTE, costs_note, cutoff_note, estimate, metric_packs, metric_rows
from .result import BacktestResult, ExampleRef, PackReport

COLOURS = {"allow": "#2e7d32", "step_up": "#f2a900", "review": "#e8590c", "deny": "#c62828"}
OTHER = "#78909c"
CANDIDATE, BASELINE = "#1f4e79", "#9db9d5"
WIDTH = 920
MAX_RULE_BARS = 30

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif;color:#1d2733;margin:0;
background:#f4f6f9}
main{max-width:960px;margin:0 auto;padding:24px 20px 48px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:0 0 10px}
.sub{color:#5b6b7c;margin:0 0 18px}
section{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:16px 20px;margin:0 0 18px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:0 0 18px}
.card{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:10px 14px;min-width:120px;flex:1}
.card b{display:block;font-size:20px;white-space:nowrap}.card span{color:#5b6b7c;font-size:12px;
text-transform:uppercase}.card small{font-weight:400;color:#5b6b7c;font-size:13px}
table{border-collapse:collapse;width:100%;margin:8px 0 0}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e6eaef;vertical-align:top}
th{font-size:12px;text-transform:uppercase;color:#5b6b7c;font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
code{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#eef2f6;padding:1px 4px;
border-radius:3px;white-space:nowrap}
td.ex{font-size:12px;max-width:260px}td.nw{white-space:nowrap}
.muted{color:#5b6b7c}.legend span{display:inline-block;margin-right:14px}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;vertical-align:baseline}
svg text{font:12px system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;fill:#1d2733}
svg .axis{stroke:#c5ced8}
"""
#: Nothing may be fetched: only the page's own styles and scripts run.
CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
#: Draws the label metrics chart (precision, recall, F1 per pack, with interval whiskers) into #metrics-chart
#: from #metrics-data, then marks the body; a script error leaves the mark unset.
METRICS_SCRIPT = """(function () {
  var data = JSON.parse(document.getElementById("metrics-data").textContent);
  var svg = document.getElementById("metrics-chart"), NS = "http://www.w3.org/2000/svg";
  var labelW = 90, barW = 520, rowH = 18, y = 6;
  function add(name, attrs, text) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    svg.appendChild(node);
  }
  function pct(v) { return (100 * v).toFixed(2); }
  data.metrics.forEach(function (metric) {
    add("text", {x: 0, y: y + 11 + rowH * (data.packs.length - 1) / 2}, metric.label);
    data.packs.forEach(function (pack) {
      var e = pack[metric.key];
      add("rect", {x: labelW, y: y, width: barW, height: 12, fill: "#eef2f6"});
      if (e.value === null) {
        add("text", {x: labelW + 6, y: y + 10, "class": "metric-label"}, pack.name + ": undefined (no payments)");
      } else {
        add("rect", {x: labelW, y: y, width: barW * e.value, height: 12, fill: pack.colour, "class": "metric-bar",
                     "data-metric": metric.key, "data-pack": pack.name});
        add("line", {x1: labelW + barW * e.low, x2: labelW + barW * e.high, y1: y + 6, y2: y + 6,
                     stroke: "#1d2733", "stroke-width": 1.5});
        add("text", {x: labelW + barW + 8, y: y + 10, "class": "metric-label"},
            pack.name + " " + pct(e.value) + "% [" + pct(e.low) + ", " + pct(e.high) + "]");
      }
      y += rowH;
    });
    y += 8;
  });
  svg.setAttribute("viewBox", "0 0 920 " + y);
  document.body.setAttribute("data-metrics-chart", "drawn");
})();"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _n(value: int) -> str:
    return f"{value:,}"


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f}%" if whole else "–"


def _colour(outcome: str) -> str:
    return COLOURS.get(outcome, OTHER)


def _examples(examples: Sequence[ExampleRef]) -> str:
    """Request ids; the input line number is in the tooltip (it matters only to find the payment again)."""
    return " ".join(f'<code title="line {x.line}">{_e(x.request_id)}</code>' for x in examples) or "–"


# -- charts ----------------------------------------------------------------------------------------------------
def _mix_chart(packs: list[tuple[str, PackReport]]) -> str:
    """One 100% stacked bar per pack, then the non-allow decisions as counts (allow dwarfs them on a 100% bar)."""
    label_w, bar_w, row_h = 150, WIDTH - 150 - 20, 34
    rows = []
    for i, (name, pack) in enumerate(packs):
        y = 10 + i * row_h
        total = sum(pack.decisions.values())
        rows.append(f'<text x="0" y="{y + 17}">{_e(name)}</text>')
        x = float(label_w)
        for outcome, count in pack.decisions.items():
            if not total or not count:
                continue
            w = bar_w * count / total
            rows.append(f'<rect x="{x:.2f}" y="{y}" width="{max(w, 1):.2f}" height="24" fill="{_colour(outcome)}">'
                        f"<title>{_e(outcome)}: {_n(count)} ({_pct(count, total)})</title></rect>")
            if w > 70:
                rows.append(f'<text x="{x + 6:.2f}" y="{y + 17}" style="fill:#fff">{_e(outcome)} '
                            f"{_pct(count, total)}</text>")
            x += w
    height = 10 + len(packs) * row_h
    stacked = f'<svg viewBox="0 0 {WIDTH} {height}" width="100%" role="img" aria-label="decision mix">' \
              f'{"".join(rows)}</svg>'

    outcomes = [o for o in packs[0][1].decisions if o != "allow"]
    peak = max([pack.decisions.get(o, 0) for _, pack in packs for o in outcomes] + [1])
    group_h = 14 * len(packs) + 14
    bars = []
    for gi, outcome in enumerate(outcomes):
        y0 = 8 + gi * group_h
        bars.append(f'<text x="0" y="{y0 + 7 * len(packs) + 4}">{_e(outcome)}</text>')
        for pi, (name, pack) in enumerate(packs):
            count = pack.decisions.get(outcome, 0)
            total = sum(pack.decisions.values())
            w = (bar_w - 160) * count / peak
            y = y0 + pi * 14
            opacity = "1" if pi == 0 else "0.45"
            bars.append(f'<rect x="{label_w}" y="{y}" width="{max(w, 0.5):.2f}" height="12" '
                        f'fill="{_colour(outcome)}" fill-opacity="{opacity}"><title>{_e(name)}: {_e(outcome)} '
                        f"{_n(count)}</title></rect>")
            bars.append(f'<text x="{label_w + w + 6:.2f}" y="{y + 10}">{_n(count)} ({_pct(count, total)}) '
                        f'<tspan class="muted" style="fill:#5b6b7c">{_e(name)}</tspan></text>')
    height = 8 + len(outcomes) * group_h
    counts = f'<svg viewBox="0 0 {WIDTH} {height}" width="100%" role="img" aria-label="non-allow decisions">' \
             f'{"".join(bars)}</svg>'
    legend = "".join(f'<span><i class="sw" style="background:{_colour(o)}"></i>{_e(o)}</span>'
                     for o in packs[0][1].decisions)
    return f'<p class="legend">{legend}</p>{stacked}<h3 class="muted" style="font-size:13px;margin:12px 0 4px">' \
           f"Decisions other than allow</h3>{counts}"


def _rule_chart(candidate: PackReport, baseline: PackReport | None) -> str:
    base_hits = {r.rule_id: r.hits for r in baseline.rules} if baseline else {}
    cand_hits = {r.rule_id: r.hits for r in candidate.rules}
    titles = {r.rule_id: (r.title, r.outcome) for r in candidate.rules}
    if baseline:
        for r in baseline.rules:
            titles.setdefault(r.rule_id, (r.title, r.outcome))
    ids = [i for i in titles if cand_hits.get(i, 0) or base_hits.get(i, 0)]
    ids.sort(key=lambda i: (-max(cand_hits.get(i, 0), base_hits.get(i, 0)), i))
    shown = ids[:MAX_RULE_BARS]
    if not shown:
        return '<p class="muted">No rule fired.</p>'
    label_w, bar_w = 90, WIDTH - 90 - 170
    per = 14 if baseline else 0
    row_h = 16 + per
    peak = max(max(cand_hits.get(i, 0), base_hits.get(i, 0)) for i in shown) or 1
    parts = []
    for k, rule_id in enumerate(shown):
        y = 6 + k * row_h
        title, outcome = titles[rule_id]
        parts.append(f'<text x="0" y="{y + 11}"><title>{_e(title)}</title>{_e(rule_id)}</text>')
        series = [("candidate", cand_hits.get(rule_id, 0), CANDIDATE)]
        if baseline:
            series.append(("baseline", base_hits.get(rule_id, 0), BASELINE))
        for s, (name, hits, colour) in enumerate(series):
            w = bar_w * hits / peak
            yy = y + s * 14
            parts.append(f'<rect x="{label_w}" y="{yy}" width="{max(w, 0.5):.2f}" height="12" fill="{colour}">'
                         f"<title>{_e(rule_id)} ({_e(outcome)}) {_e(name)}: {_n(hits)}</title></rect>")
            tag = f' <tspan style="fill:{_colour(outcome)}">{_e(outcome)}</tspan>' if s == 0 else ""
            parts.append(f'<text x="{label_w + w + 6:.2f}" y="{yy + 10}">{_n(hits)}{tag}</text>')
    height = 6 + len(shown) * row_h + 4
    more = (f'<p class="muted">{len(ids) - len(shown)} more rule(s) fired; see the table.</p>'
            if len(ids) > len(shown) else "")
    legend = ""
    if baseline:
        legend = (f'<p class="legend"><span><i class="sw" style="background:{CANDIDATE}"></i>candidate</span>'
                  f'<span><i class="sw" style="background:{BASELINE}"></i>baseline</span></p>')
    return (f'{legend}<svg viewBox="0 0 {WIDTH} {height}" width="100%" role="img" aria-label="hits per rule">'
            f'{"".join(parts)}</svg>{more}')


def _flip_chart(result: BacktestResult) -> str:
    if not result.flips:
        return '<p class="muted">No payment changed its decision.</p>'
    label_w, bar_w, row_h = 170, WIDTH - 170 - 120, 26
    peak = max(f.count for f in result.flips)
    parts = []
    for k, flip in enumerate(result.flips):
        y = 6 + k * row_h
        parts.append(f'<rect x="0" y="{y + 3}" width="10" height="14" fill="{_colour(flip.from_)}"/>'
                     f'<text x="14" y="{y + 15}">{_e(flip.from_)} → {_e(flip.to)}</text>')
        w = bar_w * flip.count / peak
        parts.append(f'<rect x="{label_w}" y="{y}" width="{max(w, 0.5):.2f}" height="20" fill="{_colour(flip.to)}">'
                     f"<title>{_e(flip.from_)} → {_e(flip.to)}: {_n(flip.count)}</title></rect>"
                     f'<text x="{label_w + w + 6:.2f}" y="{y + 15}">{_n(flip.count)}</text>')
    height = 6 + len(result.flips) * row_h + 4
    return f'<svg viewBox="0 0 {WIDTH} {height}" width="100%" role="img" aria-label="flips">{"".join(parts)}</svg>'


# -- sections ------------------------------------------------------------------------------------------------
def _cards(result: BacktestResult) -> str:
    items = [("records", _n(result.records)), ("decided", _n(result.evaluated)), ("bad lines", _n(result.bad_count))]
    if result.baseline:
        items.append(("flipped", f"{_n(result.flipped)} <small>{_pct(result.flipped, result.evaluated)}</small>"))
    items += [("payments/s", _n(round(result.rate))), ("elapsed", f"{result.elapsed_s:.1f} s")]
    # values are numbers formatted here (the one with markup builds it from numbers only), so no escaping needed
    return '<div class="cards">' + "".join(f"<div class=card><span>{_e(k)}</span><b>{v}</b></div>"
                                           for k, v in items) + "</div>"


def _packs_table(packs: list[tuple[str, PackReport]]) -> str:
    rows = "".join(f"<tr><td>{_e(name)}</td><td>{_e(p.pack)}</td><td>{_e(p.version)}</td>"
                   f"<td><code>{_e(p.digest[:23])}…</code></td><td>{_e(p.path)}</td></tr>" for name, p in packs)
    return f"<table><tr><th></th><th>pack</th><th>version</th><th>digest</th><th>path</th></tr>{rows}</table>"


def _decision_table(packs: list[tuple[str, PackReport]]) -> str:
    head = "".join(f'<th class="n">{_e(name)}</th><th class="n">%</th>' for name, _ in packs)
    rows = []
    for outcome in packs[0][1].decisions:
        cells = ""
        for _, pack in packs:
            total = sum(pack.decisions.values())
            count = pack.decisions.get(outcome, 0)
            cells += f'<td class="n">{_n(count)}</td><td class="n">{_pct(count, total)}</td>'
        rows.append(f'<tr><td><i class="sw" style="background:{_colour(outcome)}"></i>{_e(outcome)}</td>{cells}</tr>')
    return f"<table><tr><th>decision</th>{head}</tr>{''.join(rows)}</table>"


def _flip_table(result: BacktestResult) -> str:
    rows = []
    for flip in result.flips:
        responsible = [f"+{_e(r)} ({_n(c)})" for r, c in flip.fired_only_in_candidate.items()]
        responsible += [f"−{_e(r)} ({_n(c)})" for r, c in flip.fired_only_in_baseline.items()]
        rows.append(f"<tr><td class=nw>{_e(flip.from_)} → {_e(flip.to)}</td><td class=n>{_n(flip.count)}</td>"
                    f"<td>{', '.join(responsible) or '–'}</td><td class=ex>{_examples(flip.examples)}</td></tr>")
    return ("<p class=muted>Responsible rules: <b>+</b> fired under the candidate only, <b>−</b> under the baseline "
            "only, on the flipped payments.</p><table><tr><th>from → to</th><th class=n>payments</th>"
            f"<th>responsible rules</th><th>first examples</th></tr>{''.join(rows)}</table>")


def _rule_table(candidate: PackReport, baseline: PackReport | None) -> str:
    base = {r.rule_id: r.hits for r in baseline.rules} if baseline else {}
    labelled = candidate.labels is not None
    head = "<th>rule</th><th>outcome</th><th>title</th><th class=n>hits</th>"
    head += "<th class=n>baseline</th>" if baseline else ""
    head += "<th class=n>labelled stopped</th><th class=n>unlabelled stopped</th>" if labelled else ""
    head += "<th>first examples</th>"
    rows = []
    fired = [r for r in candidate.rules if r.hits or base.get(r.rule_id)]
    for rule in sorted(fired, key=lambda r: (-r.hits, -base.get(r.rule_id, 0), r.rule_id)):  # as the chart
        cells = (f"<td><code>{_e(rule.rule_id)}</code></td><td>{_e(rule.outcome)}</td><td>{_e(rule.title)}</td>"
                 f"<td class=n>{_n(rule.hits)}</td>")
        cells += f"<td class=n>{_n(base.get(rule.rule_id, 0))}</td>" if baseline else ""
        if labelled:
            cells += f"<td class=n>{_n(rule.labelled_stopped)}</td><td class=n>{_n(rule.unlabelled_stopped)}</td>"
        cells += f"<td class=ex>{_examples(rule.examples[:2])}</td>"
        rows.append(f"<tr>{cells}</tr>")
    silent = [r.rule_id for r in candidate.rules if not r.hits and not base.get(r.rule_id)]
    note = (f'<p class="muted">Never fired ({len(silent)}): {", ".join(_e(s) for s in silent)}</p>'
            if silent else "")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>{note}"


def _label_section(packs: list[tuple[str, PackReport]]) -> str:
    labelled = [(name, p) for name, p in packs if p.labels is not None]
    if not labelled:
        return ""
    summary = []
    for name, pack in labelled:
        lab = pack.labels
        assert lab is not None
        summary.append(f"<tr><td>{_e(name)}</td><td class=n>{_n(lab.labelled)}</td>"
                       f"<td class=n>{_n(lab.labelled_stopped)} ({_pct(lab.labelled_stopped, lab.labelled)})</td>"
                       f"<td class=n>{_n(lab.unlabelled)}</td><td class=n>{_n(lab.unlabelled_stopped)} "
                       f"({_pct(lab.unlabelled_stopped, lab.unlabelled)})</td>"
                       f"<td class=ex>{_examples(lab.missed[:3])}</td></tr>")
    name, pack = labelled[0]
    assert pack.labels is not None
    outcomes = list(pack.decisions)
    pattern_rows = []
    for p in pack.labels.patterns:
        share = p.stopped / p.count if p.count else 0
        bar = (f'<svg width="120" height="10" viewBox="0 0 120 10"><rect width="120" height="10" fill="#e6eaef"/>'
               f'<rect width="{120 * share:.1f}" height="10" fill="{_colour("deny")}"/></svg>')
        cells = "".join(f"<td class=n>{_n(p.decisions.get(o, 0))}</td>" for o in outcomes)
        pattern_rows.append(f"<tr><td>{_e(p.kind)}</td><td><code>{_e(p.pattern)}</code></td>"
                            f"<td class=n>{_n(p.count)}</td>{cells}<td class=nw>{bar} {_pct(p.stopped, p.count)}</td>"
                            "</tr>")
    heads = "".join(f"<th class=n>{_e(o)}</th>" for o in outcomes)
    return (
        "<section><h2>Labelled payments</h2><p class=muted>Stopped = any decision but allow. Stopped unlabelled "
        "payments are false positives.</p><table><tr><th>pack</th><th class=n>labelled</th><th class=n>stopped</th>"
        "<th class=n>unlabelled</th><th class=n>stopped (false positives)</th><th>first missed</th></tr>"
        f"{''.join(summary)}</table><h3 style='font-size:14px;margin:16px 0 0'>By pattern ({_e(name)})</h3>"
        f"<table><tr><th>kind</th><th>pattern</th><th class=n>payments</th>{heads}<th>stopped</th></tr>"
        f"{''.join(pattern_rows)}</table></section>")


def _metrics_section(m: LabelMetrics | None) -> str:
    if m is None:
        return ""
    packs = metric_packs(m)
    rows = metric_rows(m)
    delta = m.delta is not None
    head = "".join(f"<th>{_e(name)}</th>" for name, _ in packs) + ("<th>candidate − baseline</th>" if delta else "")
    body = "".join(f"<tr><th>{_e(name)}</th>" + "".join(f"<td class=nw>{_e(c)}</td>" for c in cells)
                   + (f"<td class=nw>{_e(d)}</td>" if delta else "") + "</tr>" for name, cells, d in rows)
    colours = {"candidate": CANDIDATE, "baseline": BASELINE}
    data = {"metrics": [{"key": "precision", "label": "precision"}, {"key": "recall", "label": "recall"},
                        {"key": "f1", "label": "F1"}],
            "packs": [{"name": name, "colour": colours[name],
                       **{k: {"value": e.value, "low": e.low, "high": e.high}
                          for k, e in (("precision", p.precision), ("recall", p.recall), ("f1", p.f1))}}
                      for name, p in packs]}
    # JSON inside <script>: "<" escaped so no text can close the element
    embedded = json.dumps(data, allow_nan=False).replace("<", "\\u003c")
    rules = [r for r in m.candidate.rules if r.caught or r.friction]
    rule_rows = "".join(
        f"<tr><td><code>{_e(r.rule_id)}</code></td><td class=n>{_n(r.caught)}</td><td class=n>{_n(r.friction)}</td>"
        f"<td class=n>{_n(r.unlabelled)}</td><td class=nw>{_e(estimate(r.precision))}</td>"
        f"<td class=nw>{_e(estimate(r.recall))}</td><td class=nw>{_e(estimate(r.f1))}</td></tr>" for r in rules)
    rule_table = ("<h3 style='font-size:14px;margin:16px 0 0'>Per rule (candidate)</h3><table id=rule-metrics>"
                  "<tr><th>rule</th><th class=n>caught</th><th class=n>friction</th><th class=n>unlabelled stopped</th>"
                  f"<th>precision</th><th>recall</th><th>F1</th></tr>{rule_rows}</table>") if rules else ""
    costs = f"<p class=muted>{_e(costs_note(m))}.</p>" if m.costs is not None else ""
    return (
        f"<section id=label-metrics><h2>Label metrics</h2><p class=muted>Counted {_e(cutoff_note(m))}. "
        f"{_e(METRICS_NOTE)}. Caught = bad and stopped, friction = good and stopped; unlabelled payments are in "
        f"no ratio.</p><table id=metrics-table><tr><th></th>{head}</tr>{body}</table>{costs}"
        f'<svg id="metrics-chart" viewBox="0 0 {WIDTH} 10" width="100%" role="img" '
        'aria-label="precision, recall and F1 with 95% intervals"></svg>'
        "<noscript><p class=muted>The chart needs scripts; the table above has its numbers.</p></noscript>"
        f'<script type="application/json" id="metrics-data">{embedded}</script>'
        f"<script>{METRICS_SCRIPT}</script>{rule_table}</section>")


def _bad_section(result: BacktestResult) -> str:
    if not result.bad_count:
        return ""
    kinds = ", ".join(f"{_e(k)} {_n(v)}" for k, v in result.bad.items())
    rows = "".join(f"<tr><td class=n>{b.line}</td><td>{_e(b.error)}</td><td>{_e(b.message)}</td></tr>"
                   for b in result.bad_lines)
    return (f"<section><h2>Bad lines: {_n(result.bad_count)}</h2><p class=muted>{kinds}. Not decided; the run went "
            f"on. First {len(result.bad_lines)} shown.</p><table><tr><th class=n>line</th><th>error</th>"
            f"<th>message</th></tr>{rows}</table></section>")


def render_html(result: BacktestResult) -> str:
    """The whole report as one HTML document."""
    packs = [("candidate", result.candidate)]
    if result.baseline is not None:
        packs.append(("baseline", result.baseline))
    title = f"Backtest: {result.candidate.pack} {result.candidate.version}"
    if result.baseline is not None:
        title += f" vs {result.baseline.version}"
    flips = ""
    if result.baseline is not None:
        flips = (f"<section><h2>Flips (baseline → candidate): {_n(result.flipped)} payments</h2>"
                 f"{_flip_chart(result)}{_flip_table(result)}</section>")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}"><title>{_e(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head><body><main>'
        f"<h1>{_e(title)}</h1><p class=sub>{_e(result.source)} ({_e(result.format)}), decided as of each payment's "
        f"own timestamp, {result.workers} worker(s)</p>{_cards(result)}"
        f"<section><h2>Packs</h2>{_packs_table(packs)}</section>"
        f"<section><h2>Decision mix</h2>{_mix_chart(packs)}{_decision_table(packs)}</section>"
        f"{flips}"
        f"<section><h2>Hits per rule</h2>{_rule_chart(result.candidate, result.baseline)}"
        f"{_rule_table(result.candidate, result.baseline)}</section>"
        f"{_metrics_section(result.metrics)}{_label_section(packs)}{_bad_section(result)}"
        "</main></body></html>\n")
