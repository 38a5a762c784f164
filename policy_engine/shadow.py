"""Shadow evaluation off the decision path: one worker thread, fed by a bounded queue.

The decision path only offers a job to the queue (``put_nowait``, about a microsecond); when the queue is full
the job is dropped and counted, so a slow shadow pack can never hold a caller up or grow memory without bound.
The worker decides the request with each shadow pack, writes the results to the decision log and hands the
:class:`~policy_engine.traffic.DecisionEvent` to the engine's listeners. Whatever a shadow pack does (an
invalid request for it, a fault, a store that fails) becomes a counted error in its result, never an exception
on the decision path.

Why a worker and not inline with a time budget: measured with ``python -m benchmarks.shadow`` (README "Shadow
and rollout"), running a shadow pack inline adds its whole evaluation to every decision's latency, while the
queue adds about a microsecond; the worker yields the interpreter after each job so it never holds a caller
waiting for the GIL longer than one shadow evaluation.

With a state store, a shadow pack decides with the counters the deciding pack read before recording the payment
(for every counter the two packs count alike), so an identical shadow never flips; a counter the shadow counts
differently, or alone, is read from the store when the shadow runs (after the payment was recorded, and only
the deciding pack's counters are recorded). Nothing is recorded for a shadow.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .aggregates import Aggregate
from .audit import AuditLog
from .decision import Decision
from .pack import CompiledPack
from .state import Store
from .state.counters import Counters
from .traffic import CallContext, DecisionEvent, ShadowResult

#: How many decisions may wait for their shadows; beyond it a decision's shadows are dropped (and counted).
DEFAULT_QUEUE = 1024


@dataclass(frozen=True, slots=True)
class ShadowPack:
    """A shadow pack as the worker runs it: the pack, and its counters when the engine has a state store."""

    pack: CompiledPack
    counters: Counters | None


@dataclass(frozen=True, slots=True)
class Job:
    shadows: tuple[ShadowPack, ...]
    deciding: Counters | None  # the counters of the pack that decided (with a store)
    request: Mapping[str, Any]
    decision: Decision
    values: Mapping[str, Any] | None  # the counters the deciding pack read, None without a store
    arm: str | None
    context: CallContext | None


class Stats:
    """Counts kept across threads (``+=`` on an attribute is not atomic between threads)."""

    def __init__(self, *names: str):
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(names, 0)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class ShadowRunner:
    """The worker thread and its queue; started on the first job."""

    def __init__(self, store: Store | None, audit: AuditLog | None, emit: Callable[[DecisionEvent], None],
                 stats: Stats, capacity: int = DEFAULT_QUEUE):
        self._store = store
        self._audit = audit
        self._emit = emit
        self._stats = stats
        self._capacity = capacity
        self._queue: queue.Queue[Job | None] = queue.Queue(capacity)
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._start_lock = threading.Lock()

    def submit(self, job: Job) -> bool:
        """Queue ``job``; False (nothing queued) when the queue is full."""
        if self._pid != os.getpid():
            self._start()
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            return False
        return True

    def _start(self) -> None:
        """Start the worker in this process. A forked child (a pre-forking server's worker) inherits the queue
        but not the thread, and maybe a lock the thread held at the fork: it gets a queue and a thread of its own."""
        with self._start_lock:
            if self._pid == os.getpid():
                return
            if self._pid is not None:
                self._queue = queue.Queue(self._capacity)
            self._thread = threading.Thread(target=self._run, args=(self._queue,), name="policy-engine-shadow",
                                            daemon=True)
            self._thread.start()
            self._pid = os.getpid()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queued job is done (True) or ``timeout`` seconds passed (False)."""
        if self._pid != os.getpid():
            return True  # nothing was queued in this process (a forked child before its first job)
        if threading.current_thread() is self._thread:
            return False  # a listener on this worker: the job running it is one of those waited for, never done
        deadline = None if timeout is None else time.monotonic() + timeout
        done = self._queue.all_tasks_done
        with done:
            while self._queue.unfinished_tasks:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                done.wait(left)
        return True

    def close(self, timeout: float | None = 5.0) -> bool:
        """Finish the queued jobs (up to ``timeout`` seconds) and stop the worker; True if it finished them."""
        thread = self._thread
        if thread is None or self._pid != os.getpid():
            return True
        drained = self.drain(timeout)
        try:
            self._queue.put_nowait(None)
        except queue.Full:  # not drained in time: the daemon thread dies with the process
            return False
        thread.join(timeout)
        return drained

    def _run(self, jobs: queue.Queue[Job | None]) -> None:
        while True:
            job = jobs.get()
            try:
                if job is None:
                    return
                self._process(job)
            finally:
                jobs.task_done()
            time.sleep(0)  # let a decision waiting for the interpreter run before the next shadow job

    def _process(self, job: Job) -> None:
        results = tuple(self._evaluate(shadow, job) for shadow in job.shadows)
        failed = sum(r.decision is None for r in results)
        flips = sum(r.flipped(job.decision) for r in results)
        self._stats.add("shadow_evaluated", len(results) - failed)
        if failed:
            self._stats.add("shadow_failed", failed)
        if flips:
            self._stats.add("shadow_flips", flips)
        if self._audit is not None:
            try:
                self._audit.write_shadow(job.decision, results, job.context)
            except Exception:  # the shadow record is lost; the decision's own record was written before
                self._stats.add("shadow_log_errors")
        try:
            self._emit(DecisionEvent(job.decision.request_id, job.decision, job.decision.ruleset, job.arm,
                                     job.decision.elapsed_us, results, False, job.context))
        except BaseException:
            # what a listener raises beyond Exception (SystemExit, asyncio's CancelledError) would end this thread,
            # and every later job would wait forever; only what code raises reaches it (signals go to the main
            # thread), so nothing meant for the process is swallowed
            self._stats.add("listener_errors")

    def _evaluate(self, shadow: ShadowPack, job: Job) -> ShadowResult:
        info = shadow.pack.ruleset_info
        start = time.perf_counter_ns()
        try:
            prepared = shadow.pack.preparer.prepare(job.request, True)
            if shadow.counters is None:
                return ShadowResult(info, shadow.pack.decide(prepared, start))
            values = self._counter_values(shadow.counters, job, prepared)
            return ShadowResult(info, shadow.counters.decide(job.request, prepared, values, start)[0])
        except Exception as exc:  # a shadow's failure is its own result, never the caller's problem
            return ShadowResult(info, None, f"{type(exc).__name__}: {exc}")

    def _counter_values(self, counters: Counters, job: Job, prepared: Any) -> dict[str, Any]:
        """The deciding pack's counter values for each counter the shadow counts alike; the rest read from the
        store in a transaction that records nothing."""
        shared: dict[str, Any] = {}
        if job.deciding is not None and job.values is not None:
            theirs = {a.field: a for a in job.deciding.aggregates}
            zones_alike = job.deciding.pack.ruleset.timezones == counters.pack.ruleset.timezones
            shared = {a.field: job.values[a.field] for a in counters.aggregates
                      if a.field in job.values and zones_alike and _alike(a, theirs.get(a.field))}
        needed = [a for a in counters.aggregates if a.field in counters.read and a.field not in shared
                  and prepared.view.get(a.by) is not None]
        if not needed:
            return shared
        assert self._store is not None
        with self._store.transaction() as txn:
            values = counters.values(job.request, prepared, txn)
        values.update(shared)
        return values


def _alike(a: Aggregate, b: Aggregate | None) -> bool:
    """Whether two packs count a counter the same way (where it is written does not matter)."""
    return b is not None and dataclasses.replace(a, file="", line=0, col=0) == dataclasses.replace(
        b, file="", line=0, col=0)
