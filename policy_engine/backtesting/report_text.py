"""A backtest as plain text for a terminal: the summary an analyst reads before opening the HTML report."""

from __future__ import annotations

from collections.abc import Sequence

from .metrics import COSTED_OUTCOMES, Estimate, LabelMetrics, PackMetrics
from .result import BacktestResult, ExampleRef, PackReport

MAX_RULE_LINES = 25


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f}%" if whole else "-"


def _ids(examples: Sequence[ExampleRef]) -> str:
    return ", ".join(e.request_id for e in examples)


def _pack_line(name: str, pack: PackReport) -> str:
    return f"{name}: {pack.pack} {pack.version} ({pack.digest[:19]}...) from {pack.path}"


def render_text(result: BacktestResult) -> str:
    packs = [("candidate", result.candidate)]
    if result.baseline is not None:
        packs.append(("baseline", result.baseline))
    out = [f"Backtest of {result.source} ({result.format}): {result.records:,} records, {result.evaluated:,} "
           f"decided, {result.bad_count:,} bad; {result.workers} worker(s), {result.elapsed_s:.1f} s "
           f"({result.rate:,.0f} payments/s)"]
    out += [f"  {_pack_line(name, pack)}" for name, pack in packs]

    out.append("")
    out.append("Decisions" + "".join(f"{name:>22}" for name, _ in packs))
    for outcome in result.candidate.decisions:
        cells = ""
        for _, pack in packs:
            count, total = pack.decisions.get(outcome, 0), sum(pack.decisions.values())
            cells += f"{count:>13,} {_pct(count, total):>8}"
        out.append(f"  {outcome:<7}{cells}")

    if result.baseline is not None:
        out.append("")
        out.append(f"Flips (baseline -> candidate): {result.flipped:,} payments")
        for flip in result.flips:
            rules = [f"+{r} ({c:,})" for r, c in flip.fired_only_in_candidate.items()]
            rules += [f"-{r} ({c:,})" for r, c in flip.fired_only_in_baseline.items()]
            out.append(f"  {flip.from_} -> {flip.to}: {flip.count:,}   rules: {', '.join(rules) or '-'}")
            out.append(f"    e.g. {_ids(flip.examples)}")
        if result.flips:
            out.append("  (+ fired under the candidate only, - under the baseline only)")

    base = {r.rule_id: r.hits for r in result.baseline.rules} if result.baseline else {}
    fired = [r for r in result.candidate.rules if r.hits or base.get(r.rule_id)]
    fired.sort(key=lambda r: (-r.hits, r.rule_id))
    out.append("")
    out.append(f"Hits per rule (candidate{' / baseline' if base else ''}): {len(fired)} of "
               f"{len(result.candidate.rules)} rules fired")
    for rule in fired[:MAX_RULE_LINES]:
        other = f" / {base.get(rule.rule_id, 0):>9,}" if base else ""
        out.append(f"  {rule.rule_id:<9} {rule.outcome:<8}{rule.hits:>9,}{other}  {rule.title}")
    if len(fired) > MAX_RULE_LINES:
        out.append(f"  ... {len(fired) - MAX_RULE_LINES} more (see --json or --html)")

    for name, pack in packs:
        labels = pack.labels
        if labels is None:
            continue
        out.append("")
        out.append(f"Labelled payments ({name}): {labels.labelled:,} labelled, {labels.labelled_stopped:,} stopped "
                   f"({_pct(labels.labelled_stopped, labels.labelled)}); {labels.unlabelled:,} unlabelled, "
                   f"{labels.unlabelled_stopped:,} stopped = false positives "
                   f"({_pct(labels.unlabelled_stopped, labels.unlabelled)})")
        for p in labels.patterns:
            mix = ", ".join(f"{o} {c:,}" for o, c in p.decisions.items() if c)
            out.append(f"  {p.kind:<10} {p.pattern:<40} {p.count:>8,}  stopped {_pct(p.stopped, p.count):>8}  "
                       f"({mix})")
        stoppers = sorted((r for r in pack.rules if r.labelled_stopped or r.unlabelled_stopped),
                          key=lambda r: (-r.labelled_stopped, -r.unlabelled_stopped, r.rule_id))
        if stoppers:
            out.append("  per rule: labelled stopped / unlabelled stopped")
            out += [f"    {r.rule_id:<9}{r.labelled_stopped:>9,} / {r.unlabelled_stopped:<9,}"
                    for r in stoppers[:MAX_RULE_LINES]]
        if labels.missed:
            out.append(f"  first labelled payments allowed: {_ids(labels.missed)}")

    if result.metrics is not None:
        out += _metrics(result.metrics)

    check = result.counters
    if check is not None:
        out.append("")
        out.append(f"Counters: recomputed from the history for {check.recomputed:,} payment(s); {check.compared:,} "
                   f"carried their own, {check.differing:,} of them unlike the recomputed ones")
        out += [f"  {name}: differs on {count:,}" for name, count in check.by_field.items()]
        out += [f"  line {d.line} ({d.request_id}): {d.field} recorded {d.recorded}, recomputed {d.recomputed}"
                for d in check.examples]

    if result.bad_count:
        out.append("")
        kinds = ", ".join(f"{kind} {count:,}" for kind, count in result.bad.items())
        out.append(f"Bad lines: {result.bad_count:,} ({kinds}); not decided, the run went on")
        out += [f"  line {b.line}: {b.error}: {b.message}" for b in result.bad_lines]
    return "\n".join(out) + "\n"


def estimate(e: Estimate) -> str:
    """A ratio as a percentage with its interval: ``82.61% [75.10, 88.20]``; ``-`` when undefined."""
    if e.value is None or e.low is None or e.high is None:
        return "-"
    return f"{100 * e.value:.2f}% [{100 * e.low:.2f}, {100 * e.high:.2f}]"


def _split(total: int, by_outcome: dict[str, int]) -> str:
    return f"{total:,} (" + ", ".join(f"{o} {n:,}" for o, n in by_outcome.items()) + ")"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.2f} pt"


def metric_packs(m: LabelMetrics) -> list[tuple[str, PackMetrics]]:
    return [("candidate", m.candidate)] + ([("baseline", m.baseline)] if m.baseline is not None else [])


def metric_rows(m: LabelMetrics) -> list[tuple[str, list[str], str]]:
    """The label metrics table, shared by the text and HTML reports: (row, a cell per pack, candidate - baseline
    or "" where no delta applies)."""
    packs = [p for _, p in metric_packs(m)]
    d = m.delta
    rows = [
        ("bad / good / unlabelled", [f"{p.bad:,} / {p.good:,} / {p.unlabelled:,}" for p in packs], ""),
        ("caught (bad stopped)", [_split(p.caught, dict(p.caught_by_outcome)) for p in packs],
         f"{d.caught:+,}" if d else ""),
        ("missed (bad allowed)", [f"{p.missed:,}" for p in packs], f"{d.missed:+,}" if d else ""),
        ("friction (good stopped)", [_split(p.friction, dict(p.friction_by_outcome)) for p in packs],
         f"{d.friction:+,}" if d else ""),
        ("unlabelled stopped", [_split(p.unlabelled_stopped, dict(p.unlabelled_by_outcome)) for p in packs], ""),
        ("precision", [estimate(p.precision) for p in packs], _signed(d.precision) if d else ""),
        ("recall", [estimate(p.recall) for p in packs], _signed(d.recall) if d else ""),
        ("F1", [estimate(p.f1) for p in packs], _signed(d.f1) if d else ""),
    ]
    if m.costs is not None:
        rows.append(("cost", [f"{p.cost.total:,} (friction {sum(p.cost.friction.values()):,}, missed "
                              f"{p.cost.missed:,})" if p.cost else "-" for p in packs],
                     (f"{d.cost:+,}" if d.cost is not None else "-") if d else ""))
    return rows


def cutoff_note(m: LabelMetrics) -> str:
    return (f"as of {m.as_of} (maturity {m.maturity_days} days): {m.immature:,} immature payment(s) left out, "
            f"{m.late:,} label(s) not known yet counted as unlabelled")


def costs_note(m: LabelMetrics) -> str:
    assert m.costs is not None
    return ("costs per payment: " + ", ".join(f"{o} {getattr(m.costs, o)}" for o in COSTED_OUTCOMES)
            + f" (good payments), missed {m.costs.missed} (bad payments)")


#: What "stopped" and the intervals mean, in every report.
METRICS_NOTE = ("Stopped = any outcome but allow (step_up included: subtract its column for the other reading); "
                "95% intervals: Wilson, F1 by the delta method")


def _metrics(m: LabelMetrics) -> list[str]:
    packs = metric_packs(m)
    rows = metric_rows(m)
    out = ["", f"Label metrics {cutoff_note(m)}", f"  {METRICS_NOTE}"]
    width = max(len(cell) for _, cells, _ in rows for cell in cells) + 2
    head = "".join(f"{name:<{width}}" for name, _ in packs) + ("delta" if m.delta is not None else "")
    out.append(f"  {'':<24}{head}")
    out += [(f"  {name:<24}" + "".join(f"{c:<{width}}" for c in cells) + delta).rstrip()
            for name, cells, delta in rows]
    if m.costs is not None:
        out.append(f"  {costs_note(m)}")
    rules = [r for r in m.candidate.rules if r.caught or r.friction]
    if rules:
        out.append(f"  per rule (candidate): {'caught / friction / unlabelled stopped':<40}{'precision':<27}recall")
        out += [f"    {r.rule_id:<9}{r.caught:>9,} / {r.friction:>8,} / {r.unlabelled:>8,}{'':<12}"
                f"{estimate(r.precision):<27}{estimate(r.recall)}" for r in rules[:MAX_RULE_LINES]]
    return out
