"""The counters stage of the columnar backtest on DuckDB, against Replay (the row-by-row oracle) in the same run.

    python -m benchmarks.columnar_counters [--n 1000000] [--baseline 20000] [--runs 3] [--threads 1] [--check N]

Generates ``--n`` synthetic payments with statuses (policy_engine.synthetic, no counters), prepares them into a
``payments`` relation (not timed: that is the row preparer's job), then prints the rows/s of the counters query
on DuckDB (median of ``--runs``, ``--threads`` DuckDB threads) and of Replay on the first ``--baseline`` payments,
and their ratio. ``--check N`` first requires the query to equal Replay on every counter of the first N
payments (the large-sample differential; the tests run small ones). Needs the ``columnar`` extra.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

import duckdb
import pyarrow as pa

from policy_engine import RequestError, load_ruleset
from policy_engine.aggregates import micros
from policy_engine.backtesting.columnar.dialect import Dialect
from policy_engine.backtesting.columnar.windows import (
    DECISION,
    INSTANT,
    LINE,
    PSP_COUNTRY,
    REQUEST_ID,
    STATUS,
    CountersQuery,
    columns_needed,
    counters_query,
)
from policy_engine.backtesting.history import Happened, RecordError, Replay, take_record_fields
from policy_engine.conditions import NOT_APPLICABLE_WHEN_ABSENT
from policy_engine.fields import FieldCatalog
from policy_engine.pack import CompiledPack
from policy_engine.request import PreparedRequest, instant
from policy_engine.resources import load_schema
from policy_engine.synthetic import iter_payments

#: Money and every other number in the relation: exact, with room for derived CNY amounts (amount x rate).
DECIMAL = pa.decimal128(38, 10)


@dataclass(frozen=True, slots=True)
class Record:
    """A valid history record: its line (from 1, as the backtest numbers them), request, what happened to it as
    Replay reads it, the prepared request, and the ``status`` and ``decision`` as written (None: not said)."""

    line: int
    request: dict[str, Any]
    happened: Happened
    prepared: PreparedRequest
    status: str | None
    decision: str | None


def prepared_records(pack: CompiledPack, records: Iterable[Mapping[str, Any]]) -> Iterator[Record]:
    """The valid records (a bad one has no counters either way: the backtest reports it as a bad line)."""
    for line, record in enumerate(records, 1):
        try:
            request, _, happened = take_record_fields(dict(record))
            yield Record(line, request, happened, pack.prepare(request), record.get("status"),
                         record.get("decision"))
        except (RecordError, RequestError):
            continue


def payments_table(pack: CompiledPack, rows: Iterable[Record]) -> pa.Table:
    """The ``payments`` relation of the columnar contract for prepared records: the ``__`` columns, then each
    view column the counters stage reads (strings, booleans, numbers as exact DECIMAL)."""
    paths = columns_needed(pack.ruleset)
    data: dict[str, list] = {LINE: [], INSTANT: [], STATUS: [], DECISION: [], **{p: [] for p in paths}}
    for row in rows:
        when, _ = instant(row.request["timestamp"])
        assert when is not None
        data[LINE].append(row.line)
        data[INSTANT].append(micros(when))
        data[STATUS].append(row.status)
        data[DECISION].append(row.decision)
        view = row.prepared.view
        for path in paths:
            if path == REQUEST_ID:
                data[path].append(row.prepared.request_id)
            elif path == PSP_COUNTRY:  # the request contract's default is in the view when the pack reads it
                data[path].append(view.get(path, row.request.get(path)))
            elif path in NOT_APPLICABLE_WHEN_ABSENT:  # a presence marker: TRUE, or FALSE for an absent party
                data[path].append(view.get(path) is True)
            else:
                data[path].append(view.get(path))
    catalog = FieldCatalog(load_schema("payment_request"))
    # a column's type is its field's kind (every value may be missing); a counterparty's presence marker is boolean
    kinds = {p: "bool" if p in NOT_APPLICABLE_WHEN_ABSENT else catalog.get(p).kind for p in paths}  # type: ignore
    columns = {name: pa.array(data[name], type=pa.int64()) for name in (LINE, INSTANT)}
    columns.update({name: pa.array(data[name], type=pa.string()) for name in (STATUS, DECISION)})
    for path, kind in kinds.items():
        values = data[path]
        if kind == "num":
            columns[path] = pa.array([None if v is None else Decimal(v) for v in values], type=DECIMAL)
        else:
            columns[path] = pa.array(values, type=pa.bool_() if kind == "bool" else pa.string())
    return pa.table(columns)


def run_counters(connection: duckdb.DuckDBPyConnection, table: pa.Table, query: CountersQuery) -> dict[int, tuple]:
    connection.register("payments", table)
    try:
        return {row[0]: row[1:] for row in connection.execute(query.sql).fetchall()}
    finally:
        connection.unregister("payments")


def replay_of(pack: CompiledPack, rows: Iterable[Record]) -> Replay:
    """A Replay fed the records (its :meth:`~Replay.counters` is the oracle)."""
    replay = Replay(pack)
    for row in rows:
        replay.add(row.line, row.request, row.happened)
    return replay


def mismatches(query: CountersQuery, got: Mapping[int, tuple], want: Mapping[int, Mapping[str, Any]]) -> list[str]:
    """Every (line, counter) where the query and Replay differ, as text (empty: identical)."""
    out = [f"line {line}: missing from the query's rows" for line in want.keys() - got.keys()]
    for line, values in sorted(got.items()):
        expected = want.get(line, {})
        for column, value in zip(query.columns, values, strict=True):
            mine = None if value is None else Fraction(value) / column.denominator
            theirs = expected.get(column.name)
            if mine != (None if theirs is None else Fraction(theirs)):
                out.append(f"line {line} {column.name}: query {mine}, Replay {theirs}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=20_000, help="payments Replay times (default 20000)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--check", type=int, default=0, help="compare with Replay on the first N payments")
    args = parser.parse_args(argv)
    pack = CompiledPack.build(load_ruleset())
    query = counters_query(pack.ruleset, Dialect())
    started = time.perf_counter()
    head: list[Record] = []  # the first payments, for the differential and the baseline
    chunks = []
    records = prepared_records(pack, iter_payments(args.n, seed=7, statuses=True, counters=False))
    while chunk := list(itertools.islice(records, 100_000)):  # a chunk at a time: 1M records would not fit
        head.extend(chunk[:max(args.check, args.baseline) - len(head)])
        chunks.append(payments_table(pack, chunk))
    connection = duckdb.connect(config={"threads": args.threads})
    connection.register("prepared", pa.concat_tables(chunks))
    connection.execute("CREATE TABLE payments AS SELECT * FROM prepared")  # in DuckDB's own storage
    n = connection.execute("SELECT count(*) FROM payments").fetchone()[0]  # type: ignore[index]
    print(f"prepared {n:,} payments in {time.perf_counter() - started:.1f}s (not timed below); "
          f"{len(query.columns)} counters", flush=True)
    if args.check:
        sample = head[:args.check]
        with duckdb.connect() as scratch:
            bad = mismatches(query, run_counters(scratch, payments_table(pack, sample), query),
                             replay_of(pack, sample).counters())
        print(f"differential on {len(sample):,} payments: {len(bad)} differences", *bad[:20], sep="\n  ")
        if bad:
            return 1
    timings = []
    for _ in range(args.runs):
        started = time.perf_counter()
        connection.execute(f"CREATE OR REPLACE TEMP TABLE counters AS {query.sql}")
        timings.append(time.perf_counter() - started)
    columnar = n / statistics.median(timings)
    baseline = head[:args.baseline]
    replay_timings = []
    for _ in range(args.runs):
        replay = replay_of(pack, baseline)  # preparing is not timed, as for the relation
        started = time.perf_counter()
        replay.counters()
        replay_timings.append(time.perf_counter() - started)
    row_engine = len(baseline) / statistics.median(replay_timings)
    print(f"DuckDB counters ({args.threads} thread(s)), {n:,} rows: {columnar:,.0f} rows/s "
          f"(median of {args.runs}: {', '.join(f'{t:.2f}s' for t in timings)})")
    print(f"Replay (row by row), {len(baseline):,} rows: {row_engine:,.0f} rows/s "
          f"(median of {args.runs}: {', '.join(f'{t:.2f}s' for t in replay_timings)})")
    print(f"ratio: {columnar / row_engine:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
