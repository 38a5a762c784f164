"""`policy-engine backtest`: replay payments against a pack (and a baseline pack); counts, flips, per-rule hits."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from typing import Any, TextIO

from ..cli import EXIT_BAD_INPUT, EXIT_ENGINE, EXIT_OK, same_file
from ..jsonio import dumps
from ..matchers import MATCHERS


def register(sub: argparse._SubParsersAction) -> None:
    bt = sub.add_parser(
        "backtest", help="replay payments against a pack (and a baseline); counts, flips, per-rule hits",
        description="Replay payment history (JSON Lines, or CSV with a header of dotted field paths) against a rule "
                    "pack, each payment decided as of its own timestamp. Reports decisions per outcome, hits per "
                    "rule, with --baseline the payments whose decision flips and the rules responsible, and with a "
                    "`label` in the records (fraud, chargeback, legit) the label metrics: caught and missed bad "
                    "payments, friction, precision, recall and F1 with 95% intervals, costs. Bad lines are "
                    "counted and reported with their line numbers; the run goes on. Exit 0 if every line was "
                    "decided, 2 if any line was bad, 3 if the engine failed on any payment.")
    bt.add_argument("file", help="payments: JSON Lines or CSV ('-' reads standard input)")
    bt.add_argument("--rules", help="the candidate rule pack (default: the bundled default pack)")
    bt.add_argument("--baseline", help="the pack to compare with (e.g. the version in production)")
    bt.add_argument("--workers", type=int, help=f"processes deciding in parallel (default: {os.cpu_count()}, "
                                                "every core; at most 4 per core; 1 runs in one process)")
    bt.add_argument("--format", choices=("auto", "jsonl", "csv", "parquet"), default="auto",
                    help="input format (default: auto: .parquet and .csv files by their name, otherwise by the "
                         "first line); Parquet is a history written by `policy-engine convert`")
    bt.add_argument("--engine", choices=("auto", "row", "columnar", "spark"), default="auto",
                    help="row: each payment through the engine (the reference); columnar: the pack compiled to SQL "
                         "on DuckDB over Parquet, same results, tens of times faster (`columnar` extra); spark: the "
                         "same SQL on Spark (`spark` extra, see --spark-master). auto (default): columnar for "
                         "Parquet input, row otherwise")
    bt.add_argument("--spark-master", default="local[*]", metavar="URL",
                    help="with --engine spark: the cluster's master URL (default local[*]); the Parquet path must "
                         "be one the cluster can read")
    bt.add_argument("--matcher", choices=MATCHERS, help="matcher (default: python)")
    bt.add_argument("--examples", type=int, default=5, metavar="K",
                    help="example request ids kept per flip, rule and error (the first K by line; default 5)")
    bt.add_argument("--recompute-counters", action="store_true", default=None,
                    help="recompute the history.* counters from the payments themselves (their recorded status "
                         "and decision, in time order) even where records carry their own, and report where those "
                         "differ (default: recompute only when the records carry no history)")
    bt.add_argument("--labels-as-of", metavar="DATE",
                    help="label metrics as of this day (YYYY-MM-DD): labels known later are not known yet "
                         "(default: the latest payment or label day in the input)")
    bt.add_argument("--label-maturity", metavar="DAYS", default="0",
                    help="leave payments newer than the as-of day minus DAYS out of the label metrics, as "
                         "immature: their labels may not have arrived (default 0)")
    bt.add_argument("--costs", metavar="deny=N,review=N,step_up=N,missed=N",
                    help="per-payment costs for the label metrics: of a good payment denied, reviewed or stepped "
                         "up, and of a bad payment allowed (any subset; the rest cost 0)")
    bt.add_argument("--json", action="store_true", help="print the result as one JSON object")
    bt.add_argument("--html", metavar="REPORT", help="also write a self-contained HTML report with charts")
    bt.set_defaults(func=cmd_backtest)


def _columnar(args: argparse.Namespace, engine: str, labels: dict[str, Any]):
    from ..backtesting import BacktestError

    try:
        from ..backtesting.columnar import backtest_columnar
    except ImportError as exc:
        raise BacktestError(f"the {engine} engine needs the `columnar` extra (pip install "
                            f"'payment-policy-engine[columnar]'): {exc}") from None
    return backtest_columnar(args.file, args.rules, args.baseline, engine=engine, workers=args.workers,
                             examples=args.examples, spark_master=args.spark_master,
                             recompute_counters=args.recompute_counters, **labels)


def cmd_backtest(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ..backtesting import BacktestError, backtest
    from ..backtesting.csvio import CsvLayoutError
    from ..backtesting.progress import ProgressBar
    from ..backtesting.report_html import render_html
    from ..backtesting.report_text import render_text
    from ..backtesting.run import is_parquet

    if args.workers is not None and args.workers < 1:
        err.write("policy-engine backtest: --workers must be at least 1\n")
        return EXIT_BAD_INPUT
    if same_file(args.html, args.file):
        err.write(f"policy-engine backtest: --html {args.html} is the history being read; write the report to "
                  "another file\n")
        return EXIT_BAD_INPUT
    try:
        labels = _label_options(args)
    except ValueError as exc:
        err.write(f"policy-engine backtest: {exc}\n")
        return EXIT_BAD_INPUT
    source = sys.stdin.buffer if args.file == "-" else args.file
    engine = args.engine
    if engine == "auto":
        engine = "columnar" if is_parquet(source, args.format) else "row"
    if engine != "row":
        if not is_parquet(source, args.format):
            err.write(f"policy-engine backtest: the {engine} engine reads a Parquet history; convert this one "
                      "first (policy-engine convert IN OUT.parquet), or use --engine row\n")
            return EXIT_BAD_INPUT
        if args.matcher:
            err.write(f"policy-engine backtest: --matcher chooses the row engine's matcher; the {engine} engine "
                      "has none (use --engine row with it)\n")
            return EXIT_BAD_INPUT
    bar = ProgressBar(err) if err.isatty() and engine == "row" else None
    try:
        if engine == "row":
            result = backtest(source, args.rules, args.baseline, workers=args.workers, matcher=args.matcher,
                              format=args.format, examples=args.examples, progress=bar,
                              recompute_counters=args.recompute_counters, **labels)
        else:
            result = _columnar(args, engine, labels)
    except (BacktestError, CsvLayoutError) as exc:
        if bar:
            bar.close()
        err.write(f"policy-engine backtest: {exc}\n")
        return EXIT_BAD_INPUT
    if bar:
        bar(result.records, 1, 1, final=True)
        bar.close()
    out.write(dumps(result.to_dict()) + "\n" if args.json else render_text(result))
    code = EXIT_ENGINE if "evaluation_failed" in result.bad else EXIT_BAD_INPUT if result.bad_count else EXIT_OK
    if args.html:
        # after the result is out: a report path that cannot be written (a directory, a missing folder) used to
        # lose the whole run, which may have taken hours
        try:
            with open(args.html, "w", encoding="utf-8") as fh:
                fh.write(render_html(result))
        except OSError as exc:
            err.write(f"policy-engine backtest: cannot write the HTML report {args.html}: {exc.strerror or exc}; "
                      "the result above is complete\n")
            return max(code, EXIT_BAD_INPUT)
        if not args.json:
            out.write(f"\nHTML report: {args.html}\n")
    return code


def _label_options(args: argparse.Namespace) -> dict[str, Any]:
    """``--labels-as-of``, ``--label-maturity`` and ``--costs`` as :func:`backtest` arguments; ValueError says
    which option is wrong and how."""
    from ..backtesting.metrics import CostModel

    options: dict[str, Any] = {}
    if args.labels_as_of is not None:
        try:
            options["labels_as_of"] = dt.date.fromisoformat(args.labels_as_of)
        except ValueError:
            raise ValueError(f"--labels-as-of {args.labels_as_of!r} is not a date like 2025-07-01") from None
    try:
        options["label_maturity"] = int(args.label_maturity)
    except ValueError:
        raise ValueError(f"--label-maturity {args.label_maturity!r} is not a whole number of days") from None
    if options["label_maturity"] < 0:
        raise ValueError(f"--label-maturity must be 0 days or more, got {options['label_maturity']}")
    if args.costs is not None:
        try:
            options["costs"] = CostModel.parse(args.costs)
        except ValueError as exc:  # CostModelError names the part
            raise ValueError(f"--costs: {exc}") from None
    return options
