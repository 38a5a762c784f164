"""`policy-engine evaluate`: decide one JSON request or a JSON Lines stream."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TextIO

from ..audit import AuditError, AuditLog
from ..cli import EXIT_BAD_INPUT, EXIT_ENGINE, EXIT_OK, printable, same_file
from ..decision import FIRED, SKIPPED, UNDECIDED, Decision
from ..engine import PolicyEngine
from ..errors import EvaluationError, RequestError, RequestTextError, StateError
from ..jsonio import decode_line, dumps, read_json_records
from ..matchers import MATCHERS

#: The environment variable that holds the decision log's pseudonym key (``--audit-key`` overrides it).
AUDIT_KEY_ENV = "POLICY_ENGINE_AUDIT_KEY"


def register(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("evaluate", help="decide one JSON request or a JSON Lines stream",
                        description="Decide one JSON request or a JSON Lines stream (one request per line). An "
                                    "invalid line yields an error record with its line number and the stream goes "
                                    "on. Exit 0 if every request was decided, 2 if any input was bad, 3 if the "
                                    "engine failed on any request. If a decision cannot be written to the --audit "
                                    "log (disk full, file gone), that request is reported as an error, nothing "
                                    "after it is decided, and the exit code is 3: no decision goes out "
                                    "unrecorded.")
    ev.add_argument("file", nargs="?", help="request file (JSON or JSON Lines); '-' or omitted: standard input")
    ev.add_argument("--rules", help="rule pack directory or file (default: the bundled default pack)")
    ev.add_argument("--matcher", choices=MATCHERS, help="matcher (default: python; see README Performance)")
    ev.add_argument("--json", action="store_true", help="print decision JSON, one object per line")
    ev.add_argument("--audit", metavar="LOG", help="append every decision to this decision log (JSON Lines, "
                    "identifiers masked, fsync per decision); replay it with `policy-engine replay`")
    ev.add_argument("--audit-key", metavar="KEY", help=f"secret for keyed (HMAC-SHA-256) pseudonyms in the "
                    f"decision log; prefer the environment variable {AUDIT_KEY_ENV}, which other users of the "
                    "machine cannot see in the process list. Without a key, pseudonyms are plain hashes that can "
                    "be reversed for small value spaces (phone, card numbers), and a warning says so")
    ev.add_argument("--state", metavar="URL", help="keep the pack's counters (history.*) in this state store and "
                    "record each payment: memory:// (this run only) or sqlite:///path (relative; four slashes for "
                    "an absolute path). A stream is applied in order; a request carrying `history` is then an "
                    "error, and a request_id reused with a different body is a conflict (exit 2)")
    ev.set_defaults(func=cmd_evaluate)


_STATUS_ORDER = {FIRED: 0, UNDECIDED: 1, SKIPPED: 2}


# -- output --------------------------------------------------------------------------------------------------
def _print_decision(out: TextIO, d: Decision) -> None:
    info = d.ruleset
    lines = [f"{d.decision.value.upper():8} {d.request_id}   (pack {info['pack']} {info['version']}, "
             f"matcher {d.engine['matcher']}, as of {d.as_of}, {d.elapsed_us} µs)"]
    if not d.trail:
        lines.append("  no rule fired")
    # the rules that gave the decision first, then the other fired ones, those the data could not decide and the
    # skipped enrichment checks (the trail itself stays in pack order, the decision document's contract)
    for e in sorted(d.trail, key=lambda e: (_STATUS_ORDER[e.status], e.outcome != d.decision.value)):
        tag = {FIRED: e.outcome, UNDECIDED: f"undecided: {e.outcome}", SKIPPED: "skipped"}[e.status]
        tag += f", report {e.report}" if e.report else ""
        lines += [f"  {e.rule_id} [{tag}] {e.title}", f"    {e.reason}"]
        if e.evidence:
            shown = ", ".join(f"{k}={dumps(v)}" for k, v in e.to_dict()["evidence"].items())
            lines.append(f"    evidence: {shown}")
        lines.append(f"    source: {e.source}")
    lines += [f"  obligation: {o['report']} ({o['rule_id']})" for o in d.obligations]
    out.write(printable("\n".join(lines)) + "\n")


def _print_error(out: TextIO, record: dict, as_json: bool) -> None:
    if as_json:
        out.write(dumps(record) + "\n")
        return
    where = f"line {record['line']}: " if record.get("line") else ""
    rid = f" {record['request_id']}" if record.get("request_id") else ""
    if record["error"] == "invalid_request":
        lines = [f"ERROR    {where}invalid request{rid}"]
        lines += [f"  {v['path']}: {v['message']}" for v in record["violations"]]
    else:
        lines = [f"ERROR    {where}{record['error']}{rid}: {record.get('message', '')}"]
    out.write(printable("\n".join(lines)) + "\n")


# -- commands -----------------------------------------------------------------------------------------------
def _audit_log(args: argparse.Namespace, err: TextIO) -> AuditLog | None:
    if not args.audit:
        return None
    if same_file(args.audit, args.file):
        raise AuditError(f"the decision log {args.audit} is the request file being read; log to another file")
    key = args.audit_key if args.audit_key is not None else os.environ.get(AUDIT_KEY_ENV)
    if key == "":
        raise AuditError(f"the decision log key is empty; give a secret with --audit-key or {AUDIT_KEY_ENV}")
    log = AuditLog(args.audit, key=key.encode("utf-8") if key else None)
    if key is None:
        err.write(f"policy-engine: warning: the decision log's pseudonyms are unkeyed hashes, which can be reversed "
                  f"for small value spaces (phone or card numbers); set {AUDIT_KEY_ENV} or pass --audit-key\n")
    return log


def _problem_record(line: int, problem: str | RequestError | None) -> dict:
    """The error record of a line the reader could not take: not JSON, or ambiguous JSON (a repeated key)."""
    if isinstance(problem, RequestError):
        return {**problem.to_dict(), "line": line}
    return {"error": "invalid_json", "line": line, "message": problem}


def cmd_evaluate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    audit = _audit_log(args, err)
    engine = PolicyEngine.from_path(args.rules, matcher=args.matcher, audit=audit, state=args.state)
    stream = sys.stdin.buffer if args.file in (None, "-") else open(args.file, "rb")  # noqa: SIM115
    worst = EXIT_OK
    try:
        # --json: each line of a JSON Lines stream goes to evaluate_json as it was read, decoded and decided in one
        # step (the native pass, the decision's document written without its objects), as a service would
        for line, request, problem in read_json_records(stream, decode=not args.json):
            if problem is not None:
                _print_error(out, _problem_record(line, problem), args.json)
                worst = max(worst, EXIT_BAD_INPUT)
                continue
            try:
                if type(request) is bytes:  # no JSON value is bytes: a line left undecoded for evaluate_json
                    try:
                        out.write(engine.evaluate_json(request).decode("utf-8", "surrogatepass") + "\n")
                    except RequestTextError as exc:  # not JSON: the record says so in the reader's words
                        said = decode_line(request)[1] or exc.violations[0].message
                        _print_error(out, _problem_record(line, said), args.json)
                        worst = max(worst, EXIT_BAD_INPUT)
                    continue
                decision = engine.evaluate(request)
            except (RequestError, StateError) as exc:
                _print_error(out, {**exc.to_dict(), "line": line}, args.json)
                worst = max(worst, EXIT_BAD_INPUT)
                continue
            except EvaluationError as exc:
                _print_error(out, {**exc.to_dict(), "line": line}, args.json)
                worst = EXIT_ENGINE
                if isinstance(exc.__cause__, AuditError):
                    err.write(f"policy-engine: {exc.__cause__}; stopped at line {line}: no later request was "
                              "decided\n")
                    break
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
            try:
                audit.close()
            except AuditError as exc:  # the last records may not be on disk
                err.write(f"policy-engine: {exc}\n")
                worst = EXIT_ENGINE
    return worst
