"""A backtest as plain text for a terminal: the summary an analyst reads before opening the HTML report."""

from __future__ import annotations

from collections.abc import Sequence

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
