"""`policy-engine validate`: load a rule pack and lint it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from ..cli import EXIT_FAILED, EXIT_OK
from ..jsonio import dumps
from ..lint import CHECKS, lint
from ..pack import CompiledPack


def register(sub: argparse._SubParsersAction) -> None:
    codes = "; ".join(f"{c.code} {c.name} ({c.severity})" for c in CHECKS.values())
    va = sub.add_parser("validate", help="load and lint a rule pack",
                        description="Load a rule pack and lint it. Load errors are printed as file:line:col "
                                    "rule-id: message and exit 2 (the pack cannot be used). Lint findings are "
                                    "printed as file:line:col rule-id severity code name: message; exit 1 if any "
                                    "is an error (or, with --strict, a warning), else 0. Checks: " + codes + ".")
    va.add_argument("pack", help="rule pack directory or file")
    va.add_argument("--json", action="store_true", help="machine-readable output")
    va.add_argument("--strict", action="store_true", help="warnings fail the pack too (exit 1)")
    va.add_argument("--emit-matcher", metavar="FILE", help="write the python matcher's generated source for the "
                    "pack to FILE (each rule's line names the rule and its file:line), to read or debug it")
    va.set_defaults(func=cmd_validate)


def cmd_validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ..loader import load_ruleset
    from ..matchers import durable_available

    ruleset = load_ruleset(args.pack)
    pack = CompiledPack.build(ruleset, matcher="python")
    if args.emit_matcher:
        Path(args.emit_matcher).write_text(pack.matcher.source, encoding="utf-8")
    shards = None
    if durable_available()[0]:
        from ..matchers.durable import plan_shards

        shards = len(plan_shards(pack.program))  # shapes the durable matcher cannot run are errors
    findings = lint(ruleset)
    errors = sum(f.severity == "error" for f in findings)
    warnings = sum(f.severity == "warning" for f in findings)
    notes = len(findings) - errors - warnings  # "info" findings (e.g. I150 fail-open points) inform, never fail
    failed = errors > 0 or (args.strict and warnings > 0)
    summary = {"ok": not failed, "pack": ruleset.pack, "version": ruleset.version, "digest": ruleset.digest,
               "rules": len(ruleset.rules), "files": len(ruleset.files), "durable_shards": shards,
               "errors": errors, "warnings": warnings, "notes": notes, "findings": [f.to_dict() for f in findings]}
    if args.json:
        out.write(dumps(summary) + "\n")
        return EXIT_FAILED if failed else EXIT_OK
    for finding in findings:
        out.write(f"{finding}\n")
    counts = f" ({errors} error(s), {warnings} warning(s), {notes} note(s))" if findings else ""
    out.write(f"{'failed' if failed else 'ok'}: {ruleset.pack} {ruleset.version}: {len(ruleset.rules)} rules in "
              f"{len(ruleset.files)} file(s), digest {ruleset.digest}"
              + (f", {shards} durable shard(s)" if shards else "") + counts + "\n")
    return EXIT_FAILED if failed else EXIT_OK
