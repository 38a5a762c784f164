"""`policy-engine test`: run a pack's YAML test cases and report coverage."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ..cli import EXIT_FAILED, EXIT_OK
from ..jsonio import dumps
from ..matchers import MATCHERS

if TYPE_CHECKING:
    from ..testing.runner import TestReport


def _percent(text: str) -> float:
    """A coverage threshold: ``nan`` made the gate pass whatever the coverage (every comparison with it is
    false), so only a number from 0 to 100 is taken."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage from 0 to 100")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    te = sub.add_parser("test", help="run a pack's YAML test cases; rule and condition coverage",
                        description="Run the YAML test cases under the pack's tests/ directory (or --tests) "
                                    "against the pack and report every failing case (expected vs got, and the "
                                    "trail), rule coverage (rules fired in at least one case) and condition "
                                    "coverage (leaves seen both true and false). Exit 0 if every case passes "
                                    "(and rule coverage reaches --min-coverage), 1 otherwise, 2 for a bad pack "
                                    "or bad test files.")
    te.add_argument("pack", help="rule pack directory or file")
    te.add_argument("--tests", help="test file or directory (default: tests/ of the pack)")
    te.add_argument("--matcher", choices=MATCHERS, help="matcher (default: python)")
    te.add_argument("--junit", metavar="FILE", help="also write JUnit XML for CI to FILE")
    te.add_argument("--min-coverage", type=_percent, metavar="N",
                    help="fail below N%% rule coverage (0 to 100)")
    te.add_argument("--json", action="store_true", help="print the whole report as one JSON object")
    te.add_argument("-v", "--verbose", action="store_true",
                    help="also list passing cases and every leaf not seen both true and false")
    te.set_defaults(func=cmd_test)


def cmd_test(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ..testing import run_tests, to_junit

    report = run_tests(args.pack, args.tests, matcher=args.matcher)  # bad test files: RuleTestError, exit 2
    if args.junit:
        Path(args.junit).write_text(to_junit(report), encoding="utf-8")
    coverage = report.coverage
    below = args.min_coverage is not None and coverage.rule_percent < args.min_coverage
    if args.json:
        out.write(dumps({**report.to_dict(), "min_coverage": args.min_coverage, "below_min_coverage": below})
                  + "\n")
    else:
        _print(out, report, args.verbose)
        if below:
            out.write(f"FAILED: rule coverage {coverage.rule_percent}% is below --min-coverage {args.min_coverage}%\n")
    return EXIT_OK if report.ok and not below else EXIT_FAILED


def _print(out: TextIO, report: TestReport, verbose: bool) -> None:
    for case in report.cases:
        if case.status == "passed":
            if verbose:
                out.write(f"PASS  {case.location} {case.name}\n")
            continue
        out.write(f"{case.status.upper():5} {case.location} {case.name}\n")
        for failure in case.failures:
            out.write(f"      {failure}\n")
        if case.status == "failed":
            out.write(f"      decision {case.decision}; trail:" + ("" if case.trail else " no rule fired") + "\n")
            for line in case.trail:
                out.write(f"        {line}\n")
    coverage = report.coverage
    out.write(f"\n{len(report.cases)} cases in {len(report.files)} file(s): {report.count('passed')} passed, "
              f"{report.count('failed')} failed, {report.count('error')} error(s) "
              f"(pack {report.pack} {report.version}, matcher {report.matcher}, {report.elapsed_s:.2f} s)\n")
    fired = len(coverage.rules) - len(coverage.never_fired)
    out.write(f"rule coverage: {fired}/{len(coverage.rules)} rules fired in at least one case "
              f"({coverage.rule_percent}%)\n")
    if coverage.never_fired:
        out.write(f"  never fired: {', '.join(coverage.never_fired)}\n")
    covered, total = coverage.leaf_counts
    out.write(f"condition coverage: {covered}/{total} leaves seen both true and false ({coverage.condition_percent}%)"
              + ("" if verbose or covered == total else "; -v lists the others") + "\n")
    if verbose:
        for rule in coverage.rules:
            for leaf in rule.leaves:
                if not leaf.covered:
                    never = "true" if leaf.seen_true == 0 else "false"
                    out.write(f"  {leaf.at} {rule.rule_id} `{leaf.condition}` never {never}\n")
    edges, dated = coverage.date_edges
    out.write(f"date edges: {edges}/{dated} dated rules tested on a date outside their effective window\n")
