"""The columnar engine held to the row engine (the oracle) on one converted history, payment by payment and report
against report. Used by tests/test_columnar.py and scripts/columnar_differential.py."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ...errors import RequestError
from ...pack import CompiledPack
from ..history import RecordError, take_record_fields
from ..result import BacktestResult
from .engine import PaymentResult
from .layout import read_records

#: report fields that say how a run went, not what it found
RUN_FIELDS = ("source", "format", "workers", "elapsed_s", "payments_per_s", "engine")


def row_payments(path: str | os.PathLike, pack: CompiledPack) -> dict[int, PaymentResult]:
    """Every payment of a converted history the row engine decides, by line (bad records left out)."""
    out: dict[int, PaymentResult] = {}
    for batch in read_records(os.fspath(path)):
        for line, record in batch:
            try:
                request, _, _ = take_record_fields(record)
                decision = pack.decide(pack.prepare(request))
            except (RecordError, RequestError):
                continue
            out[line] = PaymentResult(line, decision.decision.value, decision.rule_ids, decision.undecided_ids,
                                      decision.skipped_ids)
    return out


@dataclass(frozen=True, slots=True)
class Mismatch:
    line: int
    row: PaymentResult | None  # None: the engine reported the line as bad
    columnar: PaymentResult | None


def mismatches(row: dict[int, PaymentResult], columnar: list[PaymentResult]) -> list[Mismatch]:
    by_line = {p.line: p for p in columnar}
    return [Mismatch(line, row.get(line), by_line.get(line))
            for line in sorted(row.keys() | by_line.keys()) if row.get(line) != by_line.get(line)]


def report_dict(result: BacktestResult) -> dict[str, Any]:
    """The report without how the run went, for comparing engines."""
    out = result.to_dict()
    for name in RUN_FIELDS:
        out.pop(name, None)
    return out
