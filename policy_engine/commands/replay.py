"""`policy-engine replay`: re-decide a decision log against a pack and report every decision that differs."""

from __future__ import annotations

import argparse
from typing import TextIO

from ..cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from ..engine import PolicyEngine
from ..jsonio import dumps, read_json_records
from ..matchers import MATCHERS
from ..replay import replay


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="re-decide a decision log and report differences",
                       description="Re-evaluate every request of a decision log (written by an engine with an "
                                   "AuditLog) against PACK and report each decision that differs. Records made "
                                   "by a pack with another digest are replayed and counted separately, never "
                                   "silently treated as the same pack. Exit 0 if every decision is reproduced, "
                                   "1 if any differs, 2 if the log has unreadable lines.")
    p.add_argument("log", help="decision log (JSON Lines)")
    p.add_argument("--rules", help="rule pack (default: the bundled default pack)")
    p.add_argument("--matcher", choices=MATCHERS)
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    engine = PolicyEngine.from_path(args.rules, matcher=args.matcher)
    try:
        with open(args.log, "rb") as fh:
            report = replay(engine, read_json_records(fh))
    finally:
        engine.close()
    if args.json:
        out.write(dumps(report.to_dict()) + "\n")
    else:
        out.write(f"replayed {report.records} decision(s) against {engine.ruleset.pack} {engine.ruleset.version} "
                  f"({report.pack_digest}): {report.same} reproduced, {len(report.differences)} differ\n")
        for digest, count in sorted(report.other_digests.items()):
            out.write(f"  note: {count} record(s) were decided by another pack version (digest {digest or '?'})\n")
        for d in report.differences:
            out.write(f"  line {d.line} {d.request_id}: logged {d.logged} {list(d.logged_rules)} -> now {d.replayed} "
                      f"{list(d.replayed_rules)}\n")
        for line, why in report.unreadable:
            out.write(f"  line {line}: unreadable ({why})\n")
        if report.masked_fields_read:
            out.write(f"  warning: rules read masked fields {', '.join(report.masked_fields_read)}; decisions on "
                      "them may differ because the log holds pseudonyms\n")
    if report.unreadable:
        return EXIT_BAD_INPUT
    return EXIT_FAILED if report.differences else EXIT_OK
