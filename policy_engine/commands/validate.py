"""`policy-engine validate`: load and check a rule pack."""

from __future__ import annotations

import argparse
from typing import TextIO

from ..cli import EXIT_OK, dumps
from ..engine import PolicyEngine


def register(sub: argparse._SubParsersAction) -> None:
    va = sub.add_parser("validate", help="load and check a rule pack",
                        description="Load a rule pack and report every error as file:line:col rule-id: message. "
                                    "Exit 0 if the pack loads, 2 if it does not.")
    va.add_argument("pack", help="rule pack directory or file")
    va.add_argument("--json", action="store_true", help="machine-readable output")
    va.set_defaults(func=cmd_validate)


def cmd_validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ..loader import load_ruleset
    from ..matchers import durable_available

    ruleset = load_ruleset(args.pack)
    engine = PolicyEngine(ruleset, matcher="python")
    shards = None
    if durable_available()[0]:
        from ..matchers.durable import plan_shards

        shards = len(plan_shards(engine._loaded.program))  # shapes the durable matcher cannot run are errors
    summary = {"ok": True, "pack": ruleset.pack, "version": ruleset.version, "digest": ruleset.digest,
               "rules": len(ruleset.rules), "files": len(ruleset.files), "durable_shards": shards}
    if args.json:
        out.write(dumps(summary) + "\n")
    else:
        out.write(f"ok: {ruleset.pack} {ruleset.version}: {len(ruleset.rules)} rules in {len(ruleset.files)} "
                  f"file(s), digest {ruleset.digest}" + (f", {shards} durable shard(s)" if shards else "") + "\n")
    return EXIT_OK
