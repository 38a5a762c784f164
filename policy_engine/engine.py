"""``PolicyEngine``: load a pack, evaluate requests, reload atomically; safe to share between threads."""

from __future__ import annotations

import datetime as dt
import functools
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._version import __version__
from .audit import AuditLog
from .compiler import Program, compile_program
from .conditions import fields_read
from .decision import NO_EXTRA, Decision, build_decision, build_trail_entry, combine
from .errors import EvaluationError, PolicyEngineError, RequestError
from .fields import FieldCatalog
from .loader import load_ruleset
from .matchers import Matcher, build_matcher, durable_available
from .request import PreparedRequest, RequestPreparer
from .resources import load_schema
from .ruleset import Rule, RuleSet

#: The pure-Python matcher is the default: it decides exactly as the durable matcher does (property-tested)
#: and measured several times faster on the default pack; see README "Performance".
DEFAULT_MATCHER = "python"


@dataclass(frozen=True, slots=True)
class _RuleMeta:
    rule: Rule
    evidence: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Loaded:
    """Everything one pack version needs at evaluation time; swapped as a whole on reload."""

    ruleset: RuleSet
    program: Program
    matcher: Matcher
    preparer: RequestPreparer
    metas: tuple[_RuleMeta, ...]
    ruleset_info: dict[str, str]
    engine_info: dict[str, str]
    rank: dict[str, int]  # decision_order as outcome -> severity rank (0 = most severe)


@functools.lru_cache(maxsize=4096)
def _iso_day(day: int) -> str:
    return dt.date.fromordinal(day).isoformat()


def _catalog() -> FieldCatalog:
    return FieldCatalog(load_schema("payment_request"))


class PolicyEngine:
    """Evaluates payment requests against one rule pack.

    >>> engine = PolicyEngine.from_path()          # the bundled default pack
    >>> decision = engine.evaluate(request)        # Decision; .decision, .trail, .to_dict()
    """

    def __init__(self, ruleset: RuleSet, matcher: str | None = None, audit: AuditLog | None = None):
        self._matcher_name = matcher
        self._audit = audit
        self._reload_lock = threading.Lock()
        self._loaded = self._build(ruleset)

    @classmethod
    def from_path(cls, path: str | Path | None = None, matcher: str | None = None,
                  audit: AuditLog | None = None) -> PolicyEngine:
        """Load a pack directory or file (``None``: the bundled default pack). With ``audit``, every decision
        is recorded in that :class:`~policy_engine.audit.AuditLog` before it is returned."""
        return cls(load_ruleset(path), matcher, audit)

    # -- properties ----------------------------------------------------------------------------------------
    @property
    def ruleset(self) -> RuleSet:
        return self._loaded.ruleset

    @property
    def matcher(self) -> str:
        return self._loaded.matcher.name

    def _build(self, ruleset: RuleSet) -> _Loaded:
        catalog = _catalog()
        kinds = {p: catalog.get(p).kind for p in catalog.paths()}  # type: ignore[union-attr]
        program = compile_program(ruleset, kinds)
        name = self._matcher_name or DEFAULT_MATCHER
        engine_info = {"version": __version__, "matcher": name}
        ok, why = durable_available()
        if not ok:
            # Say so in every decision: a reviewer comparing decisions across hosts should know which ran.
            engine_info["note"] = f"{why}; running on the python matcher"
        matcher = build_matcher(name, program)
        metas = tuple(_RuleMeta(r, fields_read(r.when)) for r in ruleset.rules)
        needed = {p for m in metas for p in m.evidence}
        for r in ruleset.rules:
            needed.update(r.reason.fields)
            if r.reason_zh:
                needed.update(r.reason_zh.fields)
        needed.update(program.layout.plain)
        preparer = RequestPreparer(ruleset, tuple(sorted(needed)))
        info = {"pack": ruleset.pack, "version": ruleset.version, "digest": ruleset.digest}
        rank = {name: i for i, name in enumerate(ruleset.decision_order)}
        return _Loaded(ruleset, program, matcher, preparer, metas, info, engine_info, rank)

    # -- evaluation ----------------------------------------------------------------------------------------
    def prepare(self, request: Any) -> PreparedRequest:
        """Validate and normalise a request without evaluating it (raises :class:`RequestError`)."""
        return self._loaded.preparer.prepare(request)

    def evaluate(self, request: Any) -> Decision:
        """Decide one request. Raises :class:`RequestError` for an invalid request and
        :class:`EvaluationError` when the engine cannot decide; it never returns ``allow`` in either case."""
        start = time.perf_counter_ns()
        loaded = self._loaded  # one consistent pack for the whole evaluation, even across a reload
        try:
            prepared = loaded.preparer.prepare(request, True)  # cross-rate amounts when a rule reads them
        except RequestError:
            raise
        except Exception as exc:  # a fault in the engine's own request handling is not the caller's error
            raise EvaluationError(f"could not prepare request: {type(exc).__name__}: {exc}") from exc
        try:
            fired = loaded.matcher.match(prepared)
            decision = self._decide(loaded, prepared, fired, start)
            if self._audit is not None:
                self._audit.write(request, decision)  # an unrecorded decision is not handed out
            return decision
        except EvaluationError:
            raise
        except Exception as exc:  # fail closed: an engine fault is never an allow
            raise EvaluationError(f"could not evaluate request: {type(exc).__name__}: {exc}",
                                  prepared.request_id) from exc

    def evaluate_many(self, requests: Iterable[Any]) -> Iterator[Decision | PolicyEngineError]:
        """Decide each request in turn. An invalid request yields its :class:`RequestError` (or an
        :class:`EvaluationError`) in its place instead of stopping the batch."""
        for request in requests:
            try:
                yield self.evaluate(request)
            except (RequestError, EvaluationError) as exc:
                yield exc

    def _decide(self, loaded: _Loaded, prepared: PreparedRequest, fired: list[int], start: int) -> Decision:
        get = prepared.complete().get if fired else None  # reasons and evidence show every derived amount
        trail = []
        obligations = []
        for index in fired:
            meta = loaded.metas[index]
            rule = meta.rule
            trail.append(build_trail_entry(
                rule.id, rule.category, rule.outcome, rule.title, rule.reason.render_get(get),
                {p: get(p) for p in meta.evidence}, rule.source, rule.report,
                rule.reason_zh.render_get(get) if rule.reason_zh else None))
            if rule.report:
                obligations.append({"rule_id": rule.id, "report": rule.report})
        outcome = combine([e.outcome for e in trail], loaded.rank)
        return build_decision(
            prepared.request_id, outcome, tuple(trail), tuple(obligations), loaded.ruleset_info,
            loaded.engine_info, (time.perf_counter_ns() - start) // 1000, _iso_day(prepared.day),
            prepared.fx.as_of_iso, NO_EXTRA)

    def explain(self, request: Any, rule_id: str | None = None) -> Any:
        """Condition-level explanation of every rule (or one) for a request; see :mod:`policy_engine.explain`."""
        from .explain import explain

        return explain(self, request, rule_id)

    # -- reload --------------------------------------------------------------------------------------------
    def reload(self, path: str | Path | None = None) -> RuleSet:
        """Load the pack again (from ``path``, or from where the current pack came from) and swap it in
        atomically. Evaluations already running finish on the old pack. If the new pack fails to load, the
        old one stays in place and the :class:`RuleSetError` is raised."""
        with self._reload_lock:
            old = self._loaded
            source = path if path is not None else old.ruleset.path
            new = self._build(load_ruleset(source))
            self._loaded = new
        old.matcher.close()
        return new.ruleset

    def close(self) -> None:
        """Release native matcher resources (durable handles)."""
        self._loaded.matcher.close()
