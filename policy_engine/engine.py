"""``PolicyEngine``: load a pack, evaluate requests, reload atomically; safe to share between threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .aggregates import REPORTED_STATUSES
from .audit import AuditLog
from .decision import Decision
from .errors import EvaluationError, PolicyEngineError, RequestError, StateError, Violation
from .jsonio import dumps_bytes, parse_json
from .loader import load_ruleset
from .pack import CompiledPack
from .request import PreparedRequest
from .ruleset import RuleSet
from .state import Store, open_store
from .state.counters import Counters, body_digest, decode_decision

#: The longest request text :meth:`PolicyEngine.evaluate_json` reads (characters of a str, bytes of bytes). A full
#: request is about 1.2 KB and the schema bounds every string and ``extra``, so a longer text is not a payment
#: request, and refusing it before parsing bounds what a caller can make the engine allocate.
MAX_REQUEST_TEXT = 1 << 20


class PolicyEngine:
    """Evaluates payment requests against one rule pack (a :class:`CompiledPack`) and keeps what a long-lived
    service needs around it: atomic reload, the audit log, and failing closed.

    >>> engine = PolicyEngine.from_path()          # the bundled default pack
    >>> decision = engine.evaluate(request)        # Decision; .decision, .trail, .to_dict()

    With a state store (``state="sqlite:///state.db"``) the engine keeps the pack's declared counters itself
    (DESIGN.md §10): each evaluation reads them, decides and records the payment atomically, idempotently by
    ``request_id``, and :meth:`report` records what happened downstream.
    """

    def __init__(self, ruleset: RuleSet, matcher: str | None = None, audit: AuditLog | None = None,
                 state: str | Store | None = None):
        self._matcher_name = matcher
        self._audit = audit
        self._reload_lock = threading.Lock()
        self._pack = CompiledPack.build(ruleset, matcher)
        self._store = open_store(state) if isinstance(state, str) else state
        self._counters = Counters(self._pack) if self._store is not None else None

    @classmethod
    def from_path(cls, path: str | Path | None = None, matcher: str | None = None,
                  audit: AuditLog | None = None, state: str | Store | None = None) -> PolicyEngine:
        """Load a pack directory or file (``None``: the bundled default pack). With ``audit``, every decision
        is recorded in that :class:`~policy_engine.audit.AuditLog` before it is returned. With ``state`` (a
        store or its URL: ``memory://``, ``sqlite:///path``, ``redis://host:port/db``), the engine keeps the
        pack's counters; ``None`` is pure evaluation with caller-supplied ``history``."""
        return cls(load_ruleset(path), matcher, audit, state)

    # -- properties ----------------------------------------------------------------------------------------
    @property
    def pack(self) -> CompiledPack:
        """The current pack. Read it once and use that snapshot for a whole operation: a reload swaps in a new
        pack but never changes this one (it closes it, so do not keep it for the life of the process)."""
        return self._pack

    @property
    def ruleset(self) -> RuleSet:
        return self._pack.ruleset

    @property
    def matcher(self) -> str:
        return self._pack.matcher.name

    # -- evaluation ----------------------------------------------------------------------------------------
    def prepare(self, request: Any) -> PreparedRequest:
        """Validate and normalise a request without evaluating it (raises :class:`RequestError`)."""
        return self._pack.prepare(request)

    def evaluate(self, request: Any) -> Decision:
        """Decide one request. Raises :class:`RequestError` for an invalid request and
        :class:`EvaluationError` when the engine cannot decide; it never returns ``allow`` in either case."""
        start = time.perf_counter_ns()
        if self._counters is not None:
            return self._evaluate_with_state(self._counters, request, start)
        pack = self._pack  # one consistent pack for the whole evaluation, even across a reload
        prepared = self._prepare(pack, request)
        try:
            decision = pack.decide(prepared, start)
            if self._audit is not None:
                self._audit.write(request, decision)  # an unrecorded decision is not handed out
            return decision
        except EvaluationError:
            raise
        except Exception as exc:  # fail closed: an engine fault is never an allow
            raise EvaluationError(f"could not evaluate request: {type(exc).__name__}: {exc}",
                                  prepared.request_id) from exc

    def evaluate_json(self, data: bytes | str) -> bytes:
        """Decide one request given as JSON text and return the decision's JSON: ``decision.to_dict()`` as compact
        UTF-8 (:func:`~policy_engine.jsonio.dumps_bytes`). Raises what :meth:`evaluate` raises; text that is not
        JSON, is ambiguous (a repeated key) or is longer than :data:`MAX_REQUEST_TEXT` is a :class:`RequestError`."""
        if len(data) > MAX_REQUEST_TEXT:
            raise RequestError([Violation("$", f"the request text is {len(data):,} long, beyond the "
                                               f"{MAX_REQUEST_TEXT:,} a payment request may take")])
        try:
            request = parse_json(data)
        except ValueError as exc:  # UnicodeDecodeError included
            raise RequestError([Violation("$", f"not valid JSON: {exc}")]) from None
        return dumps_bytes(self.evaluate(request).to_dict())

    @staticmethod
    def _prepare(pack: CompiledPack, request: Any) -> PreparedRequest:
        try:
            # The preparer itself, not pack.prepare: one call fewer per request on the hot path. Cross-rate
            # amounts are computed only when a rule reads them.
            return pack.preparer.prepare(request, True)
        except RequestError:
            raise
        except Exception as exc:  # a fault in the engine's own request handling is not the caller's error
            raise EvaluationError(f"could not prepare request: {type(exc).__name__}: {exc}") from exc

    def _evaluate_with_state(self, counters: Counters, request: Any, start: int) -> Decision:
        """Read the counters, decide and record, in one store transaction; a retry gets the recorded decision."""
        assert self._store is not None
        counters.refuse_history(request)
        prepared = self._prepare(counters.pack, request)  # the counters' pack: one version throughout
        rid = prepared.request_id
        try:
            with self._store.transaction() as txn:
                recorded = txn.recorded(rid)
                if recorded is not None:
                    return self._retry(request, recorded.digest, recorded.decision, rid)
                decision, payment = counters.evaluate(request, prepared, txn, start)
                if self._audit is not None:
                    self._audit.write(request, decision)  # inside the transaction: recorded in both or neither
                txn.record(payment)
            return decision
        except (EvaluationError, StateError):
            raise
        except Exception as exc:  # fail closed: a store or engine fault is never an allow
            raise EvaluationError(f"could not evaluate request: {type(exc).__name__}: {exc}", rid) from exc

    @staticmethod
    def _retry(request: Any, digest: str, decision: str, rid: str) -> Decision:
        if body_digest(request) != digest:
            raise StateError("conflict", f"request_id {rid!r} was already evaluated with a different body; a "
                             "retry must resend the same request, a new payment needs a new request_id", rid)
        return decode_decision(decision)

    def report(self, request_id: str, status: str) -> None:
        """Record what happened to an evaluated payment downstream: ``completed``, ``failed`` or ``reversed``
        (a failed or reversed payment stops counting against limits). Raises :class:`StateError` for a
        payment this engine's store never recorded."""
        if self._store is None:
            raise StateError("no_store", "report() needs a state store: build the engine with state=URL")
        if status not in REPORTED_STATUSES:
            raise StateError("bad_status", f"status {status!r} is not one of {', '.join(REPORTED_STATUSES)}",
                             request_id)
        try:
            self._store.report(request_id, status)
        except (EvaluationError, StateError):
            raise
        except Exception as exc:
            raise EvaluationError(f"could not record the status of {request_id!r}: {type(exc).__name__}: {exc}",
                                  request_id) from exc

    def counters(self, request: Any) -> dict[str, Any]:
        """The counters the pack's rules would read for ``request`` now (its entities and windows), without
        evaluating or recording it: what an analyst checks when a limit surprises them."""
        if self._counters is None:
            raise StateError("no_store", "counters() needs a state store: build the engine with state=URL")
        counters = self._counters
        view = self._counted(counters, request).view
        return {a.field: view[a.field] for a in counters.aggregates if a.field in counters.read and a.field in view}

    def _counted(self, counters: Counters, request: Any) -> PreparedRequest:
        """``request`` prepared with the store's counters in its view, read in a transaction that records nothing."""
        assert self._store is not None
        counters.refuse_history(request)
        prepared = self._prepare(counters.pack, request)
        try:
            with self._store.transaction() as txn:
                return counters.counted(request, prepared, txn)
        except EvaluationError:
            raise
        except Exception as exc:
            raise EvaluationError(f"could not read the counters: {type(exc).__name__}: {exc}",
                                  prepared.request_id) from exc

    def evaluate_many(self, requests: Iterable[Any]) -> Iterator[Decision | PolicyEngineError]:
        """Decide each request in turn. An invalid request yields its :class:`RequestError` (or an
        :class:`EvaluationError`, or a store's :class:`StateError`) in its place instead of stopping the batch."""
        for request in requests:
            try:
                yield self.evaluate(request)
            except (RequestError, EvaluationError, StateError) as exc:
                yield exc

    def explain(self, request: Any, rule_id: str | None = None) -> Any:
        """Condition-level explanation of every rule (or one) for a request; see :mod:`policy_engine.explain`.
        With a state store, the counters are the store's as :meth:`counters` reads them (nothing is recorded)
        and each leaf on a counter shows how it is counted."""
        from .explain import explain

        counters = self._counters
        if counters is None:
            return explain(self.pack, request, rule_id)
        prepared = self._counted(counters, request)
        return explain(counters.pack, request, rule_id, prepared, counters.described(request))

    # -- reload --------------------------------------------------------------------------------------------
    def reload(self, path: str | Path | None = None) -> RuleSet:
        """Load the pack again (from ``path``, or from where the current pack came from) and swap it in
        atomically. Evaluations already running finish on the old pack. If the new pack fails to load, the
        old one stays in place and the :class:`RuleSetError` is raised."""
        with self._reload_lock:
            old = self._pack
            source = path if path is not None else old.ruleset.path
            new = CompiledPack.build(load_ruleset(source), self._matcher_name)
            self._pack = new
            if self._store is not None:
                self._counters = Counters(new)
        old.close()
        return new.ruleset

    def close(self) -> None:
        """Release native matcher resources (durable handles) and the state store."""
        self._pack.close()
        if self._store is not None:
            self._store.close()
