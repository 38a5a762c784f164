"""JSON Lines or CSV history -> Parquet in the layout of :mod:`.layout` (``policy-engine convert``).

Every record is checked as the backtest would check it: the record fields (``status``, ``decision``) and the
request by the pack's own request validation (the engine's, not a copy: unknown keys, extra decimal places,
timestamps, timezones). A bad record is counted and reported with its line number and never written; nothing is
rounded (a value that does not fit its exact column is refused, not rescaled).
"""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ...errors import RequestError
from ...loader import load_ruleset
from ...pack import CompiledPack
from ...request import instant
from ..history import RecordError, take_record_fields
from ..result import BadLine
from ..run import _open, _parse, _short
from .layout import RECORD_FIELDS, arrow_schema, row_of

BATCH_ROWS = 10_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


@dataclass(slots=True)
class ConvertReport:
    """What a conversion wrote and refused."""

    source: str
    format: str
    written: int = 0
    bad: Counter = field(default_factory=Counter)  # error kind -> count
    bad_lines: list[BadLine] = field(default_factory=list)  # the first ``examples``, by line

    @property
    def bad_count(self) -> int:
        return sum(self.bad.values())

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "format": self.format, "written": self.written,
                "bad": {"count": self.bad_count, "by_error": dict(sorted(self.bad.items())),
                        "lines": [b.to_dict() for b in self.bad_lines]}}


def _row(pack: CompiledPack, line: int, request: Any) -> dict[str, Any]:
    """The record as a Parquet row; raises RecordError / RequestError / ValueError for a bad one."""
    if not isinstance(request, dict):
        pack.prepare(request)  # raises the engine's own RequestError for a record that is no object
    record = {name: request[name] for name in RECORD_FIELDS if name in request}  # as written, to store
    request, _, _ = take_record_fields(request)  # checks them, and opens an envelope
    pack.prepare(request)
    when, problem = instant(request["timestamp"])
    assert when is not None, problem  # prepare() refused an invalid timestamp already
    return row_of(line, (when - _EPOCH) // _MICROSECOND, request, record)


def _table(rows: list[dict[str, Any]], schema: Any, refuse: Any) -> Any:
    """The rows as one Arrow table; should a value not fit its exact column (pyarrow refuses to round), each row
    alone, refusing the ones that do not fit."""
    import pyarrow as pa

    try:
        return pa.Table.from_pylist(rows, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError, TypeError):
        kept = []
        for row in rows:
            try:
                pa.Table.from_pylist([row], schema=schema)
            except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError, TypeError) as exc:
                refuse(row["__line"], "invalid_request", f"does not fit the Parquet layout: {exc}")
                continue
            kept.append(row)
        return pa.Table.from_pylist(kept, schema=schema)


def convert(source: str | os.PathLike | BinaryIO, out: str | os.PathLike, rules: str | os.PathLike | None = None,
            *, format: str = "auto", examples: int = 5) -> ConvertReport:
    """Write the valid records of ``source`` to the Parquet file ``out``; returns what was written and refused."""
    import pyarrow.parquet as pq

    pack = CompiledPack.build(load_ruleset(rules))
    src, opened = _open(source, format, BATCH_ROWS)
    report = ConvertReport(src.name, src.format)
    schema = arrow_schema()

    def refuse(line: int, kind: str, message: str) -> None:
        report.bad[kind] += 1
        if len(report.bad_lines) < examples:
            report.bad_lines.append(BadLine(line, kind, _short(message)))

    try:
        with pq.ParquetWriter(os.fspath(out), schema, compression="zstd") as writer:
            for items, _ in src.chunks:
                rows = []
                for line, raw in items:
                    request, kind, message = _parse(src.layout, raw)
                    if kind is not None:
                        refuse(line, kind, message or "")
                        continue
                    try:
                        rows.append(_row(pack, line, request))
                    except RecordError as exc:
                        refuse(line, "invalid_record", str(exc))
                    except RequestError as exc:
                        refuse(line, "invalid_request", "; ".join(str(v) for v in exc.violations))
                table = _table(rows, schema, refuse)
                if table.num_rows:
                    writer.write_table(table)
                    report.written += table.num_rows
    finally:
        if opened is not None:
            opened.close()
    report.bad_lines.sort(key=lambda b: b.line)
    return report
