"""Prometheus metrics of the decision service.

With several workers (``serve --workers N``) every worker counts in its own files under
``PROMETHEUS_MULTIPROC_DIR`` (set by the supervisor before the workers start, as prometheus-client requires) and
``/metrics`` on any worker adds up all of them, so a scrape sees the whole service whichever worker answers.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from ..decision import FIRED, UNDECIDED, Outcome
from ..traffic import DecisionEvent

#: decision latency buckets, seconds: the targets are tens of microseconds in process, 2 ms p99 over HTTP
LATENCY_BUCKETS = (25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 25e-3, 100e-3, 1.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self._multiprocess = os.environ.get("PROMETHEUS_MULTIPROC_DIR") is not None
        self.registry = CollectorRegistry()
        r = self.registry
        self._decisions = Counter("policy_engine_decisions", "Decisions made, by outcome", ["outcome"], registry=r)
        self._hits = Counter("policy_engine_rule_hits", "Rules that fired, by rule id", ["rule_id"], registry=r)
        self._undecided = Counter("policy_engine_rule_undecided", "Rules left undecided by missing data, by rule id",
                                  ["rule_id"], registry=r)
        self._latency = Histogram("policy_engine_decision_seconds", "The engine's time to decide one request "
                                  "(the decision's elapsed_us)", buckets=LATENCY_BUCKETS, registry=r)
        self._errors = Counter("policy_engine_errors", "Requests answered with an error, by kind", ["kind"],
                               registry=r)
        self._reloads = Counter("policy_engine_reloads", "Pack reloads, by result", ["result"], registry=r)
        self._flips = Counter("policy_engine_shadow_flips", "Shadow decisions that differ from the decision "
                              "returned, by shadow pack (name@version) and both outcomes",
                              ["shadow", "decided", "shadow_decided"], registry=r)
        # label children looked up once: the hot path pays one dict lookup and one increment per count
        self._by_outcome = {o.value: self._decisions.labels(o.value) for o in Outcome}
        self._hit: dict[str, Callable[[], None]] = {}
        self._miss: dict[str, Callable[[], None]] = {}
        self._observe = self._latency.observe

    def observe(self, event: DecisionEvent) -> None:
        """The engine's listener (:meth:`~policy_engine.PolicyEngine.add_listener`): one call per decision, on the
        caller's thread, or after the shadow packs decided on the shadow worker's."""
        decision = event.decision
        self._by_outcome[decision.decision.value].inc()
        for entry in decision.trail:
            if entry.status == FIRED:
                self._counter(self._hit, self._hits, entry.rule_id)()
            elif entry.status == UNDECIDED:
                self._counter(self._miss, self._undecided, entry.rule_id)()
        self._observe(event.latency_us / 1e6)
        for flip in event.flips:
            self._flips.labels(f"{flip.pack['pack']}@{flip.pack['version']}", decision.decision.value,
                               flip.outcome or "").inc()

    @staticmethod
    def _counter(cache: dict[str, Callable[[], None]], metric: Counter, rule_id: str) -> Callable[[], None]:
        inc = cache.get(rule_id)
        if inc is None:
            inc = cache[rule_id] = metric.labels(rule_id).inc
        return inc

    def error(self, kind: str) -> None:
        self._errors.labels(kind).inc()

    def reloaded(self, ok: bool) -> None:
        self._reloads.labels("ok" if ok else "failed").inc()

    def exposition(self) -> bytes:
        if not self._multiprocess:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged)
        return generate_latest(merged)
