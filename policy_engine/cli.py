"""The ``policy-engine`` command: evaluate requests and validate packs.

Exit codes: 0 success; 1 checks failed; 2 bad input (an invalid request or line) or a bad pack;
3 the engine could not evaluate a valid request (never reported as allow).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, TextIO

from . import __version__
from .decision import Decision
from .engine import PolicyEngine
from .errors import EvaluationError, MatcherUnavailableError, RequestError, RuleSetError
from .matchers import MATCHERS

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_ENGINE = 0, 1, 2, 3


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid amount or number")


def parse_json(text: str) -> Any:
    """JSON with exact numbers: decimals become ``Decimal``; NaN and Infinity are refused."""
    return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)


# -- reading requests --------------------------------------------------------------------------------------
def _read_requests(stream: io.BufferedIOBase) -> Iterator[tuple[int, Any, str | None]]:
    """Yield ``(line_number, request_or_None, error_or_None)``.

    One JSON document (possibly spread over many lines) or JSON Lines; decided by whether the first non-empty
    line is a complete JSON value. JSON Lines are read one line at a time, so a stream of any length runs in
    flat memory, and a bad line only produces an error record for that line.
    """
    first_no, first = 0, b""
    for raw in stream:
        first_no += 1
        if raw.strip():
            first = raw
            break
    if not first:
        return
    try:
        doc = parse_json(first.decode("utf-8"))
        single_line = True
    except (ValueError, UnicodeDecodeError):
        single_line = False
    if not single_line:
        rest = first + stream.read()
        try:
            yield first_no, parse_json(rest.decode("utf-8")), None
        except UnicodeDecodeError as exc:
            yield first_no, None, f"input is not UTF-8 (byte {exc.start})"
        except ValueError as exc:
            yield first_no, None, f"invalid JSON: {exc}"
        return
    yield first_no, doc, None
    number = first_no
    for raw in stream:
        number += 1
        if not raw.strip():
            continue
        try:
            yield number, parse_json(raw.decode("utf-8")), None
        except UnicodeDecodeError as exc:
            yield number, None, f"line is not UTF-8 (byte {exc.start})"
        except ValueError as exc:
            yield number, None, f"invalid JSON: {exc}"


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
            shown = ", ".join(f"{k}={_dumps(v)}" for k, v in e.to_dict()["evidence"].items())
            out.write(f"    evidence: {shown}\n")
        out.write(f"    source: {e.source}\n")
    for o in d.obligations:
        out.write(f"  obligation: {o['report']} ({o['rule_id']})\n")


def _print_error(out: TextIO, record: dict, as_json: bool) -> None:
    if as_json:
        out.write(_dumps(record) + "\n")
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
def _engine(args: argparse.Namespace) -> PolicyEngine:
    return PolicyEngine.from_path(args.rules, matcher=args.matcher)


def cmd_evaluate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    engine = _engine(args)
    stream = sys.stdin.buffer if args.file in (None, "-") else open(args.file, "rb")  # noqa: SIM115
    worst = EXIT_OK
    try:
        for line, request, problem in _read_requests(stream):
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
                out.write(_dumps(decision.to_dict()) + "\n")
            else:
                _print_decision(out, decision)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
        engine.close()
    return worst


def cmd_validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .loader import load_ruleset
    from .matchers import durable_available

    ruleset = load_ruleset(args.pack)
    engine = PolicyEngine(ruleset, matcher="python")
    shards = None
    if durable_available()[0]:
        from .matchers.durable import plan_shards

        shards = len(plan_shards(engine._loaded.program))  # shapes the durable matcher cannot run are errors
    summary = {"ok": True, "pack": ruleset.pack, "version": ruleset.version, "digest": ruleset.digest,
               "rules": len(ruleset.rules), "files": len(ruleset.files), "durable_shards": shards}
    if args.json:
        out.write(_dumps(summary) + "\n")
    else:
        out.write(f"ok: {ruleset.pack} {ruleset.version}: {len(ruleset.rules)} rules in {len(ruleset.files)} "
                  f"file(s), digest {ruleset.digest}" + (f", {shards} durable shard(s)" if shards else "") + "\n")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="policy-engine", description="Payment policy engine: decide payments "
                                     "against YAML rule packs, with a reason trail.")
    parser.add_argument("--version", action="version", version=f"policy-engine {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("evaluate", help="decide one JSON request or a JSON Lines stream",
                        description="Decide one JSON request or a JSON Lines stream (one request per line). An "
                                    "invalid line yields an error record with its line number and the stream goes "
                                    "on. Exit 0 if every request was decided, 2 if any input was bad, 3 if the "
                                    "engine failed on any request.")
    ev.add_argument("file", nargs="?", help="request file (JSON or JSON Lines); '-' or omitted: standard input")
    ev.add_argument("--rules", help="rule pack directory or file (default: the bundled default pack)")
    ev.add_argument("--matcher", choices=MATCHERS, help="matcher (default: python; see README Performance)")
    ev.add_argument("--json", action="store_true", help="print decision JSON, one object per line")
    ev.set_defaults(func=cmd_evaluate)

    va = sub.add_parser("validate", help="load and check a rule pack",
                        description="Load a rule pack and report every error as file:line:col rule-id: message. "
                                    "Exit 0 if the pack loads, 2 if it does not.")
    va.add_argument("pack", help="rule pack directory or file")
    va.add_argument("--json", action="store_true", help="machine-readable output")
    va.set_defaults(func=cmd_validate)
    return parser


def main(argv: list[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(argv)
    try:
        return args.func(args, out, err)
    except RuleSetError as exc:
        if getattr(args, "json", False):
            out.write(_dumps({"ok": False, "errors": [
                {"file": i.file, "line": i.line, "col": i.col, "rule_id": i.rule_id, "message": i.message}
                for i in exc.issues]}) + "\n")
        else:
            for issue in exc.issues:
                err.write(f"{issue}\n")
            err.write(f"{len(exc.issues)} error(s); the pack was not loaded\n")
        return EXIT_BAD_INPUT
    except MatcherUnavailableError as exc:
        err.write(f"policy-engine: {exc}\n")
        return EXIT_BAD_INPUT
    except OSError as exc:
        err.write(f"policy-engine: {exc}\n")
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
