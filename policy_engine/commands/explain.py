"""`policy-engine explain`: every rule's condition tree for one request, with each leaf's value and result."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from ..cli import EXIT_BAD_INPUT, EXIT_ENGINE, EXIT_OK, printable
from ..engine import PolicyEngine
from ..errors import EvaluationError, RequestError
from ..explain import UnknownRuleError, render
from ..jsonio import dumps, read_json_records


def register(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser("explain", help="show why each rule fired or not for one request",
                        description="For one request (JSON, or each line of a JSON Lines file), show every rule's "
                                    "condition tree (or one rule's, with --rule): each leaf's field, the request's "
                                    "value or `missing`, the comparison and its result (✓ / ✗), whether the rule "
                                    "is in force on the payment's date and whether it fired; with --state, the "
                                    "counters are the store's and each says how it is counted. Exit 0, 2 for an "
                                    "invalid request, an unknown rule id or a bad pack, 3 when the store cannot "
                                    "be read.")
    ex.add_argument("file", nargs="?", help="request file (JSON or JSON Lines); '-' or omitted: standard input")
    ex.add_argument("--rules", help="rule pack directory or file (default: the bundled default pack)")
    ex.add_argument("--rule", metavar="ID", help="explain only this rule")
    ex.add_argument("--state", metavar="URL", help="read the pack's counters (history.*) from this state store, "
                                                   "as evaluate --state keeps them, and show how each is counted; "
                                                   "nothing is recorded")
    ex.add_argument("--json", action="store_true", help="print one explanation object per request, one a line")
    ex.set_defaults(func=cmd_explain)


def cmd_explain(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.file in (None, "-"):
        records = list(read_json_records(sys.stdin.buffer))
    else:
        with open(args.file, "rb") as fh:
            records = list(read_json_records(fh))
    engine = PolicyEngine.from_path(args.rules, matcher="python", state=args.state)
    status = EXIT_OK
    try:
        for number, request, problem in records:
            where = f"line {number}: " if len(records) > 1 else ""
            if problem is not None:  # a bad line is reported and the others are still explained
                err.write(f"policy-engine explain: {where}{problem}\n")
                status = EXIT_BAD_INPUT
                continue
            try:
                explanation = engine.explain(request, args.rule)
            except RequestError as exc:
                err.write(f"policy-engine explain: {where}{exc}\n")
                status = EXIT_BAD_INPUT
                continue
            except EvaluationError as exc:  # the store could not be read: no explanation without its counters
                err.write(f"policy-engine explain: {where}{exc}\n")
                status = EXIT_ENGINE
                continue
            out.write(dumps(explanation.to_dict()) + "\n" if args.json else printable(render(explanation)))
    except UnknownRuleError as exc:
        err.write(f"policy-engine explain: {exc}\n")
        return EXIT_BAD_INPUT
    finally:
        engine.close()
    return status
