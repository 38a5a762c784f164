"""Replay payments against a candidate pack (and a baseline pack): the library entry point :func:`backtest`.

How it scales: the parent process only reads the input and cuts it into chunks of raw lines (JSON Lines) or rows
(CSV); worker processes, each with its packs built once by the pool initializer, parse, decide and count each
chunk into a :class:`~.tally.Tally`; the parent merges the tallies. At most ``2 x workers`` chunks are in flight,
and a tally is counts plus a bounded list of examples, so memory stays flat however long the input is. Merging is
order-free and examples are the first ``k`` by input line number, so the result does not depend on ``workers``.

Every payment is decided as of its own timestamp (the pack does that), so history replays under the rules,
dated lists and FX tables that applied on each payment's date.

A record is a payment request plus, optionally, the backtest's top-level ``label`` and ``label_known_at`` (what
the payment turned out to be, since when), ``status`` and ``decision`` (what happened to it), or an envelope with
the request inside (:func:`.history.take_record_fields`): they are taken off before the request is decided
(requests are strict, and they are no part of one). Labels feed the label metrics (:mod:`.metrics`).

Counters: when the pack declares aggregates and the records carry no ``history`` (judged by the first record),
or when asked (``recompute_counters=True``), the parent recomputes every payment's counters from the whole
history before any payment is decided (:mod:`.history`), reports where records' own counters differ, and hands
each chunk its counters; the input is then held in memory, since counters need the history in time order.
"""

from __future__ import annotations

import collections
import csv
import datetime as dt
import itertools
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import PolicyEngineError, RequestError
from ..jsonio import decode_line
from ..loader import load_ruleset
from ..pack import CompiledPack
from ..ruleset import RuleSet
from ..state.counters import Counters
from .csvio import CsvLayout
from .history import Difference, RecordError, Replay, differences, take_record_fields
from .metrics import CostModel, label_metrics
from .result import BacktestResult, BadLine, CounterCheck, flips_of, pack_report
from .tally import PackTally, Tally

FORMATS = ("auto", "jsonl", "csv", "parquet")
#: Records per chunk sent to a worker: large enough that pickling and scheduling cost little per payment
#: (about 1.3 MB of JSON Lines), small enough that in-flight chunks stay a few megabytes.
CHUNK_RECORDS = 1000
DEFAULT_EXAMPLES = 5
#: Worker processes per core at most. The pool starts every worker at once (fork), each building its own packs
#: (about 40 MB), and deciding is CPU-bound: more than a few per core only cost memory and start-up time, and
#: ``--workers 10000`` forked ten thousand processes.
WORKERS_PER_CORE = 4
_MESSAGE_LIMIT = 300

#: ``progress(done_records, done_bytes, total_bytes_or_None)``, called as chunks complete.
Progress = Callable[[int, int, "int | None"], None]
#: Input line -> the recomputed counters for the candidate and the baseline pack (None: the pack refused it).
Recomputed = dict[int, "tuple[dict[str, Any] | None, dict[str, Any] | None]"]
Chunk = tuple[list[tuple[int, Any]], int]  # (records, bytes consumed)


class BacktestError(PolicyEngineError):
    """A backtest could not run (unreadable input, a CSV header that maps to no request, a worker that died)."""


# -- what a worker runs ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Job:
    """Everything a worker needs, pickled once per worker: the packs as loaded by the parent (so a pack edited
    on disk mid-run cannot split the run across two versions), the matcher, the CSV layout, examples kept."""

    candidate: RuleSet
    baseline: RuleSet | None
    matcher: str | None
    layout: CsvLayout | None
    k: int


class _Evaluator:
    def __init__(self, job: _Job):
        self.job = job
        self.candidate = CompiledPack.build(job.candidate, job.matcher)
        self.baseline = CompiledPack.build(job.baseline, job.matcher) if job.baseline is not None else None
        self.candidate_counters = Counters(self.candidate)
        self.baseline_counters = Counters(self.baseline) if self.baseline is not None else None
        self.stopping = frozenset(r.id for r in job.candidate.rules if r.outcome != "allow")
        self.baseline_stopping = (frozenset(r.id for r in job.baseline.rules if r.outcome != "allow")
                                  if job.baseline is not None else frozenset())

    def _decide(self, counters: Counters, values: dict[str, Any] | None, request: Any, line: int, tally: Tally,
                which: str):
        try:
            prepared = counters.pack.prepare(request, pending=True)
            return counters.pack.decide(prepared if values is None else counters.with_counters(prepared, values))
        except RequestError as exc:
            tally.add_bad(line, "invalid_request", _short("; ".join(str(v) for v in exc.violations)))
        except Exception as exc:  # fail closed: an engine fault is an error record, never a decision
            tally.add_bad(line, "evaluation_failed", _short(f"{which} pack: {type(exc).__name__}: {exc}"))
        return None

    def run(self, items: list[tuple[int, Any]], recomputed: Recomputed | None = None) -> Tally:
        """Decide and count ``items``; with ``recomputed``, every record is decided with those counters in place
        of any ``history`` it carries."""
        tally = Tally(self.job.k, baseline=PackTally() if self.baseline is not None else None)
        k = self.job.k
        for line, raw in items:
            tally.records += 1
            request, kind, message = _parse(self.job.layout, raw)
            if kind is not None:
                tally.add_bad(line, kind, _short(message or ""))
                continue
            label = None
            if isinstance(request, dict):
                try:
                    request, label, _ = take_record_fields(request)
                except RecordError as exc:
                    tally.add_bad(line, "invalid_record", _short(str(exc)))
                    continue
                if recomputed is not None:
                    request.pop("history", None)
            values, baseline_values = (recomputed or {}).get(line, (None, None))
            after = self._decide(self.candidate_counters, values, request, line, tally, "candidate")
            if after is None:
                continue
            before = None
            if self.baseline_counters is not None:
                before = self._decide(self.baseline_counters, baseline_values, request, line, tally, "baseline")
                if before is None:
                    continue
            rid = after.request_id
            tally.candidate.add(line, rid, after, label, self.stopping, k)
            if before is not None and tally.baseline is not None:
                tally.baseline.add(line, rid, before, label, self.baseline_stopping, k)
                tally.add_flip(line, rid, before, after)
        return tally


def _parse(layout: CsvLayout | None, raw: Any) -> tuple[Any, str | None, str | None]:
    """One input record as ``(request, error_kind, message)``."""
    if isinstance(raw, dict):  # a Parquet row, already a record: a copy, as the record fields are taken off it
        return dict(raw), None, None
    if layout is None:
        request, problem = decode_line(raw)
        if isinstance(problem, RequestError):  # a repeated key: the text is JSON, the request is ambiguous
            return None, "invalid_request", "; ".join(str(v) for v in problem.violations)
        return request, None if problem is None else "invalid_json", problem
    if isinstance(raw, str):
        return None, "invalid_csv", raw  # a record the CSV reader could not split
    try:
        for cell in raw:
            cell.encode("utf-8")  # cells were decoded with surrogateescape: a bad byte fails here
        return layout.to_request(raw), None, None
    except UnicodeEncodeError:
        return None, "invalid_csv", "line is not UTF-8"
    except ValueError as exc:
        return None, "invalid_csv", str(exc)


def _short(message: str) -> str:
    return message if len(message) <= _MESSAGE_LIMIT else message[: _MESSAGE_LIMIT - 1] + "…"


_WORKER: _Evaluator | None = None


def _init_worker(job: _Job) -> None:
    global _WORKER
    _WORKER = _Evaluator(job)


def _run_chunk(items: list[tuple[int, Any]], recomputed: Recomputed | None) -> Tally:
    assert _WORKER is not None, "worker used before its initializer ran"
    return _WORKER.run(items, recomputed)


# -- reading the input -------------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Source:
    name: str
    format: str
    layout: CsvLayout | None
    chunks: Iterator[Chunk]
    total_bytes: int | None


def _size(stream: BinaryIO) -> int | None:
    try:
        stat = os.fstat(stream.fileno())
    except (OSError, AttributeError, ValueError):
        return None
    return stat.st_size if stat.st_size > 0 else None


def _detect(name: str, first: bytes | None) -> str:
    suffix = Path(name).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json") or first is None:
        return "jsonl"
    return "jsonl" if first.lstrip().startswith(b"{") else "csv"


def _jsonl_chunks(lines: Iterator[bytes], size: int) -> Iterator[Chunk]:
    items: list[tuple[int, Any]] = []
    consumed = 0
    for number, raw in enumerate(lines, start=1):
        consumed += len(raw)
        if not raw.strip():
            continue
        items.append((number, raw))
        if len(items) >= size:
            yield items, consumed
            items, consumed = [], 0
    if items or consumed:
        yield items, consumed


class _CsvLines:
    """The lines of a CSV input for the csv module, decoded, numbered and their bytes counted. A line that is not
    UTF-8 is decoded with surrogates so the reader keeps going; the worker reports that row as a bad line.

    It keeps the lines of the record being read, so that the lines a record that does not parse ran over are
    read again as rows of their own (:meth:`read_again`): one stray quote made the csv module read every later
    line into one field, up to its 128 KiB limit, and those payments were lost without a word. Each line is read
    again at most once, so a hostile input costs at most twice its reading. An iterator, not a generator: it
    hands out lines again after the reader has seen the end of the input."""

    def __init__(self, lines: Iterator[bytes]):
        self._lines = lines
        self.consumed = 0
        self._read = 0  # lines taken from the input
        self._again: collections.deque[tuple[int, str]] = collections.deque()
        self._read_again_to = 0  # the last line queued to be read again: none up to it is queued twice
        self.record: list[tuple[int, str]] = []  # (line number, text) of the record being read

    def __iter__(self) -> _CsvLines:
        return self

    def __next__(self) -> str:
        if self._again:
            number, text = self._again.popleft()
        else:
            raw = next(self._lines)
            self.consumed += len(raw)
            self._read += 1
            number, text = self._read, raw.decode("utf-8", "surrogateescape")
        self.record.append((number, text))
        return text

    def start_record(self) -> None:
        self.record = []

    def read_again(self) -> tuple[int, int]:
        """Queue the lines of the failed record after its first to be read again; its first and last line."""
        first, last = self.record[0][0], self.record[-1][0]
        queued = [(n, text) for n, text in self.record[1:] if n > self._read_again_to]
        if queued:
            self._read_again_to = queued[-1][0]
            self._again.extendleft(reversed(queued))
        return first, last


def _csv_source(lines: Iterator[bytes], size: int) -> tuple[CsvLayout, Iterator[Chunk]]:
    counted = _CsvLines(lines)
    reader = csv.reader(counted, strict=True)
    header: list[str] | None = None
    try:
        for row in reader:
            if row and any(cell.strip() for cell in row):
                header = row
                break
    except csv.Error as exc:
        raise BacktestError(f"CSV header (line {reader.line_num}) does not parse: {exc}") from None
    if header is None:
        raise BacktestError("the CSV input is empty: the first row must name the columns "
                            "(request_id,timestamp,payer.id,...)")
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0][1:]  # a byte-order mark written by spreadsheet exports
    layout = CsvLayout.from_header(header)

    def chunks() -> Iterator[Chunk]:
        items: list[tuple[int, Any]] = []
        reported = counted.consumed
        while True:
            counted.start_record()
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                if not counted.record:
                    break  # the reader cannot move on from here
                first, last = counted.read_again()
                ran = f" (the record ran from line {first} to line {last}; the lines after line {first} are read " \
                      "again)" if last > first else ""
                items.append((first, f"CSV does not parse: {exc}{ran}"))  # a message: the worker reports it
                continue
            if not row or not any(cell.strip() for cell in row):
                continue
            items.append((counted.record[0][0], row))
            if len(items) >= size:
                yield items, counted.consumed - reported
                reported = counted.consumed
                items = []
        if items or counted.consumed > reported:
            yield items, counted.consumed - reported

    return layout, chunks()


def _open(source: str | os.PathLike | BinaryIO, fmt: str, size: int) -> tuple[_Source, BinaryIO | None]:
    if fmt not in FORMATS:
        raise BacktestError(f"unknown input format {fmt!r}; use one of {', '.join(FORMATS)}")
    if is_parquet(source, fmt):
        return _parquet_source(source, size), None
    opened: BinaryIO | None = None
    if isinstance(source, str | os.PathLike):
        name = os.fspath(source)
        try:
            opened = stream = open(name, "rb")  # noqa: SIM115 - closed by backtest()
        except OSError as exc:
            raise BacktestError(f"cannot read {name}: {exc.strerror or exc}") from None
    else:
        stream = source
        name = getattr(source, "name", "<stream>")
        name = name if isinstance(name, str) else "<stream>"
    total = _size(stream)
    lines = iter(stream)
    head: list[bytes] = []
    first = None
    for raw in lines:
        head.append(raw)
        if raw.strip():
            first = raw
            break
    replay = itertools.chain(head, lines)
    kind = _detect(name, first) if fmt == "auto" else fmt
    if kind == "csv":
        layout, chunks = _csv_source(replay, size)
        return _Source(name, kind, layout, chunks, total), opened
    return _Source(name, kind, None, _jsonl_chunks(replay, size), total), opened


def is_parquet(source: str | os.PathLike | BinaryIO, fmt: str = "auto") -> bool:
    """Whether the input is a Parquet history (``--format parquet``, or a file named ``*.parquet``)."""
    if fmt == "parquet":
        return True
    return fmt == "auto" and isinstance(source, str | os.PathLike) and \
        Path(os.fspath(source)).suffix.lower() == ".parquet"


def _parquet_source(source: str | os.PathLike | BinaryIO, size: int) -> _Source:
    """A converted Parquet history (policy_engine.backtesting.columnar.layout), rows as records."""
    if not isinstance(source, str | os.PathLike):
        raise BacktestError("a Parquet history is read from a file, not a stream; give its path")
    name = os.fspath(source)
    try:
        from .columnar.layout import read_records
    except ImportError as exc:
        raise BacktestError(f"reading Parquet needs the `columnar` extra: {exc}") from None
    if not os.path.exists(name):
        raise BacktestError(f"cannot read {name}: no such file")

    def chunks() -> Iterator[Chunk]:
        for batch in read_records(name, size):
            yield batch, 0

    return _Source(name, "parquet", None, chunks(), None)


# -- the entry point ------------------------------------------------------------------------------------------
def backtest(source: str | os.PathLike | BinaryIO, rules: str | os.PathLike | None = None,
             baseline: str | os.PathLike | None = None, *, workers: int | None = None, matcher: str | None = None,
             format: str = "auto", examples: int = DEFAULT_EXAMPLES, chunk_records: int = CHUNK_RECORDS,
             progress: Progress | None = None, recompute_counters: bool | None = None,
             labels_as_of: dt.date | None = None, label_maturity: int = 0,
             costs: CostModel | None = None) -> BacktestResult:
    """Replay the payments in ``source`` (a JSON Lines or CSV file, or a binary stream) against the ``rules``
    pack (default: the bundled pack) and, if given, the ``baseline`` pack.

    ``workers`` processes decide in parallel (default: every core; 1 runs in this process). Bad lines are
    counted and the first ``examples`` reported with their line numbers; they never stop the run.

    ``recompute_counters``: None (the default) recomputes the counters from the history when the pack declares
    aggregates and the first record carries no ``history``, else uses each record's own; True always recomputes
    them (and reports where records' own counters differ); False never does.

    Label metrics (:mod:`.metrics`): ``labels_as_of`` (default: the latest payment or label day in the input)
    and ``label_maturity`` days set the maturity cutoff; ``costs`` prices friction and missed bad payments. Raises
    :class:`~policy_engine.RuleSetError` for a bad pack and :class:`BacktestError` for unreadable input.
    """
    started = time.monotonic()
    if examples < 0:
        raise BacktestError(f"examples must be 0 or more, got {examples}")
    if chunk_records < 1:
        raise BacktestError(f"chunk_records must be at least 1, got {chunk_records}")
    if label_maturity < 0:
        raise BacktestError(f"label maturity must be 0 days or more, got {label_maturity}")
    cores = os.cpu_count() or 1
    if workers is not None and not 1 <= workers <= WORKERS_PER_CORE * cores:
        raise BacktestError(f"workers must be between 1 and {WORKERS_PER_CORE * cores} ({WORKERS_PER_CORE} per core "
                            f"on this machine's {cores}), got {workers}; the default is one per core")
    workers = workers if workers is not None else cores
    candidate = load_ruleset(rules)
    base = load_ruleset(baseline) if baseline is not None else None
    src, opened = _open(source, format, chunk_records)
    job = _Job(candidate, base, matcher, src.layout, examples)
    total = Tally(examples, baseline=PackTally() if base is not None else None)
    check = None
    try:
        chunks: Iterator[Chunk] = src.chunks
        recomputed: Recomputed | None = None
        if recompute_counters is not False and (candidate.aggregates or (base is not None and base.aggregates)):
            first = next(chunks, None)
            chunks = itertools.chain([first] if first is not None else [], chunks)
            if recompute_counters or (first is not None and not _carries_history(src.layout, first[0])):
                held, recomputed, check = _recompute(_Evaluator(job), chunks)
                chunks = iter(held)
        _drive(job, chunks, src.total_bytes, recomputed, workers, total, progress)
    finally:
        if opened is not None:
            opened.close()
    evaluated = sum(total.candidate.decisions.values())
    bad = dict(sorted(total.bad.items()))
    return BacktestResult(
        source=src.name, format=src.format, workers=workers, records=total.records, evaluated=evaluated,
        bad=bad, bad_lines=tuple(BadLine(*b) for b in sorted(total.bad_examples)),
        candidate=pack_report(candidate, total.candidate),
        baseline=pack_report(base, total.baseline) if base is not None and total.baseline is not None else None,
        flips=flips_of(total), elapsed_s=time.monotonic() - started, counters=check,
        metrics=label_metrics(total.candidate.dated_counts(),
                              total.baseline.dated_counts() if total.baseline is not None else None,
                              as_of=labels_as_of.toordinal() if labels_as_of is not None else None,
                              maturity_days=label_maturity, costs=costs))


def _carries_history(layout: CsvLayout | None, items: list[tuple[int, Any]]) -> bool:
    """Whether the input's first record that parses carries ``history`` counters of its own."""
    for _, raw in items:
        request, kind, _ = _parse(layout, raw)
        if kind is None:
            return isinstance(request, dict) and "history" in request
    return False


def _recompute(evaluator: _Evaluator, chunks: Iterator[Chunk]) -> tuple[list[Chunk], Recomputed, CounterCheck]:
    """Read the whole input and recompute every payment's counters from it, for each pack, before any payment
    is decided: the chunks (held), the counters by line, and where records' own counters differ."""
    replays = [Replay(evaluator.candidate)] + ([Replay(evaluator.baseline)] if evaluator.baseline else [])
    carried: dict[int, tuple[str, Any]] = {}
    held = list(chunks)
    for items, _ in held:
        for line, raw in items:
            request, kind, _ = _parse(evaluator.job.layout, raw)
            if kind is not None or not isinstance(request, dict):
                continue
            try:
                request, _, happened = take_record_fields(request)
            except RecordError:
                continue  # the worker reports the record
            history = request.pop("history", None)
            for replay in replays:
                try:
                    replay.add(line, request, happened)
                except Exception:  # invalid for this pack: no counters; the worker reports the record
                    continue
            if isinstance(history, dict):
                carried[line] = (str(request.get("request_id")), history)
    values = [replay.counters() for replay in replays]
    recomputed: Recomputed = {line: (counters, values[1].get(line) if len(values) > 1 else None)
                              for line, counters in values[0].items()}
    if len(values) > 1:  # lines only the baseline accepts: the candidate reports them as bad lines
        for line, counters in values[1].items():
            recomputed.setdefault(line, (None, counters))
    found: list[Difference] = []
    by_field: dict[str, int] = {}
    differing = 0
    for line in sorted(carried.keys() & values[0].keys()):
        rid, history = carried[line]
        diffs = list(differences(line, rid, history, values[0][line]))
        differing += bool(diffs)
        for diff in diffs:
            by_field[diff.field] = by_field.get(diff.field, 0) + 1
            if len(found) < evaluator.job.k:
                found.append(diff)
    check = CounterCheck(len(values[0]), len(carried.keys() & values[0].keys()), differing,
                         dict(sorted(by_field.items())), tuple(found))
    return held, recomputed, check


def _drive(job: _Job, chunks: Iterator[Chunk], total_bytes: int | None, recomputed: Recomputed | None,
           workers: int, total: Tally, progress: Progress | None) -> None:
    done_bytes = 0

    def counters_of(items: list[tuple[int, Any]]) -> Recomputed | None:
        if recomputed is None:
            return None
        return {line: recomputed[line] for line, _ in items if line in recomputed}

    def absorb(tally: Tally, nbytes: int) -> None:
        nonlocal done_bytes
        total.merge(tally)
        done_bytes += nbytes
        if progress is not None:
            progress(total.records, done_bytes, total_bytes)

    if workers == 1:
        evaluator = _Evaluator(job)
        for items, nbytes in chunks:
            absorb(evaluator.run(items, counters_of(items)), nbytes)
        return
    limit = 2 * workers  # bounded in flight: reading never runs ahead of deciding by more than this
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(job,))
    pending: dict[Future, int] = {}
    try:
        for items, nbytes in chunks:
            while len(pending) >= limit:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    absorb(future.result(), pending.pop(future))
            pending[pool.submit(_run_chunk, items, counters_of(items))] = nbytes
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                absorb(future.result(), pending.pop(future))
    except BrokenProcessPool as exc:
        raise BacktestError(f"a backtest worker process died ({exc}); rerun with --workers 1 to see the "
                            "error in this process") from None
    finally:
        pool.shutdown(wait=not pending, cancel_futures=True)
