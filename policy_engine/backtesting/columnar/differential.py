"""The columnar engine held to the row engine (the oracle) on one converted history, payment by payment and report
against report. Used by tests/test_columnar.py and scripts/columnar_differential.py."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ...errors import RequestError
from ...pack import CompiledPack
from ...state.counters import Counters
from ..history import RecordError, Replay, take_record_fields
from ..result import BacktestResult
from .engine import PaymentResult
from .layout import read_records

#: report fields that say how a run went, not what it found
RUN_FIELDS = ("source", "format", "workers", "elapsed_s", "payments_per_s", "engine")


def row_payments(path: str | os.PathLike, pack: CompiledPack, recomputed: dict[int, dict[str, Any]] | None = None
                 ) -> dict[int, PaymentResult]:
    """Every payment of a converted history the row engine decides, by line (bad records left out); with
    ``recomputed`` (:func:`replayed_counters`), decided with those counters in place of the records' own, as the
    row backtest does."""
    out: dict[int, PaymentResult] = {}
    counters = Counters(pack)
    for batch in read_records(os.fspath(path)):
        for line, record in batch:
            try:
                request, _, _ = take_record_fields(record)
                if recomputed is None:
                    prepared = pack.prepare(request)
                else:
                    request.pop("history", None)
                    prepared = pack.prepare(request, pending=True)
                    if line in recomputed:
                        prepared = counters.with_counters(prepared, recomputed[line])
                decision = pack.decide(prepared)
            except (RecordError, RequestError):
                continue
            out[line] = PaymentResult(line, decision.decision.value, decision.rule_ids, decision.undecided_ids,
                                      decision.skipped_ids)
    return out


def replayed_counters(path: str | os.PathLike, pack: CompiledPack) -> dict[int, dict[str, Any]]:
    """The counters the row backtest recomputes for every valid record of a converted history (the oracle)."""
    replay = Replay(pack)
    for batch in read_records(os.fspath(path)):
        for line, record in batch:
            try:
                request, _, happened = take_record_fields(record)
                request.pop("history", None)
                replay.add(line, request, happened)
            except (RecordError, RequestError):
                continue
    return replay.counters()


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
