"""The columnar backtest: the pack compiled to SQL over a Parquet history, on DuckDB (embedded) or Spark.

The row engine stays the oracle (tests/test_columnar.py holds this engine to it payment by payment); this one is
the same decisions, tens of times faster, and on Spark beyond one machine. Needs the ``columnar`` extra
(``duckdb``, ``pyarrow``), or the ``spark`` extra for :data:`SPARK`.

>>> result = backtest_columnar("history.parquet", rules="rules/", baseline="prod-rules/")
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ...errors import PolicyEngineError
from ...loader import load_ruleset
from ...pack import CompiledPack
from ..metrics import CostModel
from ..result import BacktestResult
from .engine import PaymentResult, Run, result_of
from .layout import LayoutError, check_layout
from .plan import CounterColumn
from .sqlcompile import ColumnarCompileError
from .zones import ZoneDataError, check_zones

COLUMNAR = "columnar"
SPARK = "spark"
DEFAULT_SPARK_MASTER = "local[*]"


class ColumnarError(PolicyEngineError):
    """The columnar backtest cannot run as asked (the message says what to do instead)."""


def _threads(workers: int | None) -> int:
    """DuckDB's threads for ``workers``: every core by default, never more (more threads than cores buy nothing,
    and DuckDB hangs on 100,000 and aborts the process on 10**12)."""
    cores = os.cpu_count() or 1
    if workers is None:
        return cores
    if workers < 1:
        raise ColumnarError(f"workers must be at least 1, got {workers}")
    return min(workers, cores)


def _executor(engine: str, workers: int | None, spark_master: str, session: Any) -> Any:
    try:
        if engine == SPARK:
            from .spark import SparkExecutor

            return SparkExecutor(spark_master, session)
        from .duck import DuckExecutor

        return DuckExecutor(_threads(workers))
    except ImportError as exc:
        extra = "spark" if engine == SPARK else "columnar"
        raise ColumnarError(f"the {engine} engine needs the `{extra}` extra (pip install "
                            f"'payment-policy-engine[{extra}]'): {exc}") from None


def _recomputes(run_source: str, executor: Any, packs: Sequence[CompiledPack], recompute: bool | None) -> bool:
    """Whether the counters are recomputed from the history, as the row backtest decides it: when asked, or when
    a pack declares aggregates and the first record carries no ``history``."""
    if recompute is False or not any(p.ruleset.aggregates for p in packs):
        return False
    if not recompute:
        first = executor.rows(f"SELECT history IS NOT NULL FROM {run_source} ORDER BY __line LIMIT 1")
        if not first or first[0][0]:
            return False
    return True


def open_run(path: str | os.PathLike, candidate: CompiledPack, baseline: CompiledPack | None = None, *,
             engine: str = COLUMNAR, workers: int | None = None, spark_master: str = DEFAULT_SPARK_MASTER,
             recompute_counters: bool | None = None,
             counters: Mapping[str, Sequence[CounterColumn]] | None = None, session: Any = None) -> tuple[Run, Any]:
    """The plan materialised over a converted Parquet history: the :class:`Run` and its executor (close both).
    ``session``: a SparkSession to run on (left running on close) instead of one started for the run."""
    name = os.fspath(path)
    if engine == COLUMNAR:
        if not os.path.exists(name):
            raise ColumnarError(f"cannot read {name}: no such file")
        check_layout(name)  # before the plan: rows another tool wrote were never validated as requests
    executor = _executor(engine, workers, spark_master, session)
    try:
        source = executor.source(name)
        packs = [p for p in (candidate, baseline) if p is not None]
        if engine == COLUMNAR:
            check_zones(executor, source, packs)
        recompute = _recomputes(source, executor, packs, recompute_counters)
        return Run(executor, source, candidate, baseline, counters, recompute), executor
    except Exception:
        executor.close()
        raise


def backtest_columnar(path: str | os.PathLike, rules: str | os.PathLike | None = None,
                      baseline: str | os.PathLike | None = None, *, engine: str = COLUMNAR,
                      workers: int | None = None, examples: int = 5, spark_master: str = DEFAULT_SPARK_MASTER,
                      recompute_counters: bool | None = None, labels_as_of: dt.date | None = None,
                      label_maturity: int = 0, costs: CostModel | None = None) -> BacktestResult:
    """Backtest a converted Parquet history (``policy-engine convert``) on DuckDB (``engine="columnar"``) or
    Spark (``engine="spark"``, on ``spark_master``): the same :class:`BacktestResult` as the row backtest.

    ``workers``: DuckDB threads (default and at most: every core); ``labels_as_of``, ``label_maturity``, ``costs``: the
    label metrics' options, as for :func:`~policy_engine.backtesting.backtest`. Raises :class:`ColumnarError`
    when the engine cannot run (a missing extra), :class:`ColumnarCompileError` for a rule
    it cannot compile exactly."""
    started = time.monotonic()
    if examples < 0:
        raise ColumnarError(f"examples must be 0 or more, got {examples}")
    if label_maturity < 0:
        raise ColumnarError(f"label maturity must be 0 days or more, got {label_maturity}")
    candidate = CompiledPack.build(load_ruleset(rules))
    base = CompiledPack.build(load_ruleset(baseline)) if baseline is not None else None
    run, executor = open_run(path, candidate, base, engine=engine, workers=workers, spark_master=spark_master,
                             recompute_counters=recompute_counters)
    try:
        tally = run.tally(examples)
        threads = _threads(workers) if engine == COLUMNAR else workers or os.cpu_count() or 1
        return result_of(run, tally, os.fspath(path), engine, threads, started,
                         labels_as_of=labels_as_of, label_maturity=label_maturity, costs=costs)
    finally:
        run.close()
        executor.close()


__all__ = [
    "COLUMNAR",
    "SPARK",
    "ColumnarCompileError",
    "ColumnarError",
    "CounterColumn",
    "LayoutError",
    "PaymentResult",
    "Run",
    "ZoneDataError",
    "backtest_columnar",
    "open_run",
]
