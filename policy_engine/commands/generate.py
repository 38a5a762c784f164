"""`policy-engine generate`: seeded synthetic payment traffic (DOMAIN.md §8.2) for backtests."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import TextIO

from ..cli import EXIT_BAD_INPUT, EXIT_OK


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2025-06-01") from None


def register(sub: argparse._SubParsersAction) -> None:
    from ..synthetic import DEFAULT_DAYS, DEFAULT_START

    ge = sub.add_parser(
        "generate", help="write reproducible synthetic payments (JSON Lines or CSV) for backtests",
        description="Write synthetic payments following DOMAIN.md §8.2, in timestamp order: a mix of funding "
                    "sources, purposes, currencies and channels, heavy-tailed amounts, payers whose history.* "
                    "counters come from their own earlier payments, and about 1%% labelled funding/purpose "
                    "violations and 0.2%% account takeovers (top-level `label`, null otherwise). The same seed "
                    "gives the same bytes.")
    ge.add_argument("--n", type=int, help="number of payments (the population is sized so they span about --days "
                                          "days)")
    ge.add_argument("--payers", type=int, help="number of payers (without --n: simulate them for exactly --days "
                                               "days)")
    ge.add_argument("--days", type=int, default=DEFAULT_DAYS, help=f"days of traffic (default {DEFAULT_DAYS})")
    ge.add_argument("--start", type=_date, default=DEFAULT_START,
                    help=f"first day, local time UTC+8 (default {DEFAULT_START.isoformat()})")
    ge.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ge.add_argument("--format", choices=("jsonl", "csv"), default="jsonl", help="output format (default jsonl)")
    ge.add_argument("--no-counters", dest="counters", action="store_false",
                    help="leave out the history.* counters and write each payment's status instead: a backtest "
                         "recomputes the counters from the payments (implies --statuses)")
    ge.add_argument("--statuses", action="store_true",
                    help="write each payment's downstream status (completed, failed or reversed; about 97/2/1%%); "
                         "failed and reversed payments then do not count towards the limit counters")
    ge.add_argument("--labels", action="store_true",
                    help="label what each payment turned out to be, for the backtest's label metrics: fraud "
                         "(account takeovers), chargeback (0.3%%), legit, or the violation's known-bad label, with "
                         "label_known_at days to weeks after the payment")
    ge.add_argument("-o", "--output", help="write here instead of standard output")
    ge.set_defaults(func=cmd_generate)


def cmd_generate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ..backtesting.csvio import request_columns, write_csv
    from ..backtesting.progress import ProgressBar
    from ..synthetic import SyntheticError, TrafficSpec, generate_requests, write_jsonl

    try:
        spec = TrafficSpec(seed=args.seed, n=args.n, payers=args.payers, days=args.days, start=args.start,
                           counters=args.counters, statuses=args.statuses or not args.counters,
                           labels=args.labels)
    except SyntheticError as exc:
        err.write(f"policy-engine generate: {exc}\n")
        return EXIT_BAD_INPUT
    target = open(args.output, "w", encoding="utf-8", newline="") if args.output else out  # noqa: SIM115
    bar = ProgressBar(err) if err.isatty() and (args.output or not out.isatty()) else None

    def progress(count: int) -> None:
        if bar is not None:
            bar(count, count, spec.n)

    try:
        if args.format == "csv":
            columns = tuple(c for c in request_columns() if spec.counters or not c.startswith("history."))
            columns += ("label", "label_known_at") if spec.labels else ()
            write_csv(generate_requests(spec), target, columns + (("status",) if spec.statuses else ()))
        else:
            write_jsonl(spec, target, progress)
    finally:
        if bar is not None:
            bar.close()
        if target is not out:
            target.close()
        elif target is sys.stdout:
            target.flush()
    return EXIT_OK
