"""`policy-engine evaluate`: decide one JSON request or a JSON Lines stream."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from ..audit import AuditLog
from ..cli import EXIT_BAD_INPUT, EXIT_ENGINE, EXIT_OK
from ..decision import Decision
from ..engine import PolicyEngine
from ..errors import EvaluationError, RequestError
from ..jsonio import dumps, read_json_records
from ..matchers import MATCHERS


def register(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("evaluate", help="decide one JSON request or a JSON Lines stream",
                        description="Decide one JSON request or a JSON Lines stream (one request per line). An "
                                    "invalid line yields an error record with its line number and the stream goes "
                                    "on. Exit 0 if every request was decided, 2 if any input was bad, 3 if the "
                                    "engine failed on any request.")
    ev.add_argument("file", nargs="?", help="request file (JSON or JSON Lines); '-' or omitted: standard input")
    ev.add_argument("--rules", help="rule pack directory or file (default: the bundled default pack)")
    ev.add_argument("--matcher", choices=MATCHERS, help="matcher (default: python; see README Performance)")
    ev.add_argument("--json", action="store_true", help="print decision JSON, one object per line")
    ev.add_argument("--audit", metavar="LOG", help="append every decision to this decision log (JSON Lines, "
                    "identifiers masked, fsync per decision); replay it with `policy-engine replay`")
    ev.set_defaults(func=cmd_evaluate)


# -- output --------------------------------------------------------------------------------------------------
def _print_decision(out: TextIO, d: Decision) -> None:
    info = d.ruleset
    out.write(f"{d.decision.value.upper():8} {d.request_id}   (pack {info['pack']} {info['version']}, "
              f"matcher {d.engine['matcher']}, as of {d.as_of}, {d.elapsed_us} µs)\n")
    if not d.trail:
        out.write("  no rule fired\n")
    for e in d.trail:
        tag = f"{e.outcome}" + (f", report {e.report}" if e.report else "")
        out.write(f"  {e.rule_id} [{tag}] {e.title}\n")
        out.write(f"    {e.reason}\n")
        if e.evidence:
            shown = ", ".join(f"{k}={dumps(v)}" for k, v in e.to_dict()["evidence"].items())
            out.write(f"    evidence: {shown}\n")
        out.write(f"    source: {e.source}\n")
    for o in d.obligations:
        out.write(f"  obligation: {o['report']} ({o['rule_id']})\n")


def _print_error(out: TextIO, record: dict, as_json: bool) -> None:
    if as_json:
        out.write(dumps(record) + "\n")
        return
    where = f"line {record['line']}: " if record.get("line") else ""
    rid = f" {record['request_id']}" if record.get("request_id") else ""
    if record["error"] == "invalid_request":
        out.write(f"ERROR    {where}invalid request{rid}\n")
        for v in record["violations"]:
            out.write(f"  {v['path']}: {v['message']}\n")
    else:
        out.write(f"ERROR    {where}{record['error']}{rid}: {record.get('message', '')}\n")


# -- commands -----------------------------------------------------------------------------------------------
def cmd_evaluate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    audit = AuditLog(args.audit) if args.audit else None
    engine = PolicyEngine.from_path(args.rules, matcher=args.matcher, audit=audit)
    stream = sys.stdin.buffer if args.file in (None, "-") else open(args.file, "rb")  # noqa: SIM115
    worst = EXIT_OK
    try:
        for line, request, problem in read_json_records(stream):
            if problem is not None:
                _print_error(out, {"error": "invalid_json", "line": line, "message": problem}, args.json)
                worst = max(worst, EXIT_BAD_INPUT)
                continue
            try:
                decision = engine.evaluate(request)
            except RequestError as exc:
                _print_error(out, {**exc.to_dict(), "line": line}, args.json)
                worst = max(worst, EXIT_BAD_INPUT)
                continue
            except EvaluationError as exc:
                _print_error(out, {**exc.to_dict(), "line": line}, args.json)
                worst = EXIT_ENGINE
                continue
            if args.json:
                out.write(dumps(decision.to_dict()) + "\n")
            else:
                _print_decision(out, decision)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
        engine.close()
        if audit is not None:
            audit.close()
    return worst
