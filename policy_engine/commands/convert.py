"""`policy-engine convert`: a JSON Lines or CSV payment history as Parquet, for the columnar backtest."""

from __future__ import annotations

import argparse
from typing import TextIO

from ..cli import EXIT_BAD_INPUT, EXIT_OK, printable, same_file
from ..jsonio import dumps


def register(sub: argparse._SubParsersAction) -> None:
    co = sub.add_parser(
        "convert", help="turn a JSON Lines or CSV payment history into Parquet for `backtest --engine columnar`",
        description="Write the payments of a JSON Lines or CSV history (as `backtest` reads it: requests plus "
                    "the record fields label, label_known_at, status, decision) to a Parquet file: exact DECIMAL "
                    "money, one STRUCT column per request object (an absent object stays absent), the record "
                    "fields as top-level columns. Every record is checked by the pack's own request validation; "
                    "a bad record is reported with its line number and not written (never rounded or dropped "
                    "silently). Exit 0 if every record was written, 2 if any was bad. Needs the `columnar` extra.")
    co.add_argument("input", help="payments: JSON Lines or CSV ('-' reads standard input)")
    co.add_argument("output", help="the Parquet file to write")
    co.add_argument("--rules", help="the pack whose request validation checks the records (default: the bundled "
                                    "pack; it decides which history.* counters a record may carry)")
    co.add_argument("--format", choices=("auto", "jsonl", "csv"), default="auto",
                    help="input format (default: auto: .csv files are CSV, otherwise by the first line)")
    co.add_argument("--examples", type=int, default=20, metavar="K", help="bad lines listed (default 20)")
    co.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    co.set_defaults(func=cmd_convert)


def cmd_convert(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import sys

    from ..backtesting.csvio import CsvLayoutError
    from ..backtesting.run import BacktestError

    try:
        from ..backtesting.columnar.convert import convert
    except ImportError as exc:
        err.write(f"policy-engine convert: needs the `columnar` extra (pip install "
                  f"'payment-policy-engine[columnar]'): {exc}\n")
        return EXIT_BAD_INPUT
    if same_file(args.output, args.input):
        err.write(f"policy-engine convert: {args.output} is the history being read; write the Parquet file to "
                  "another path\n")
        return EXIT_BAD_INPUT
    source = sys.stdin.buffer if args.input == "-" else args.input
    try:
        report = convert(source, args.output, args.rules, format=args.format, examples=max(0, args.examples))
    except (BacktestError, CsvLayoutError) as exc:
        err.write(f"policy-engine convert: {exc}\n")
        return EXIT_BAD_INPUT
    if args.json:
        out.write(dumps(report.to_dict()) + "\n")
    else:
        out.write(f"wrote {report.written} payments to {args.output}; {report.bad_count} bad lines\n")
        for bad in report.bad_lines:
            out.write(printable(f"  line {bad.line}: {bad.error}: {bad.message}") + "\n")
        if report.bad_count > len(report.bad_lines):
            out.write(f"  ... and {report.bad_count - len(report.bad_lines)} more\n")
    return EXIT_BAD_INPUT if report.bad_count else EXIT_OK
