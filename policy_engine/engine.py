"""``PolicyEngine``: load a pack, evaluate requests, reload atomically; safe to share between threads."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .aggregates import REPORTED_STATUSES, UNCOUNTED_STATUSES
from .audit import AuditLog
from .decision import Decision
from .errors import EvaluationError, PolicyEngineError, RequestError, RequestTextError, StateError, Violation
from .jsonio import dumps_bytes, parse_json
from .loader import load_ruleset
from .pack import CompiledPack
from .request import PreparedRequest
from .ruleset import RuleSet
from .shadow import DEFAULT_QUEUE, Job, ShadowPack, ShadowRunner, Stats
from .signing import signature_path, verify_digest
from .state import Recorded, Store, open_store
from .state.counters import Counters, body_digest, decode_decision, encode_decision
from .traffic import CANDIDATE, PRIMARY, CallContext, DecisionEvent, Rollout, bucket

#: A pack given by path (a directory or one file; ``None``: the bundled default) or already loaded.
PackSource = str | Path | RuleSet | None

#: The longest request text :meth:`PolicyEngine.evaluate_json` reads (characters of a str, bytes of bytes). A full
#: request is about 1.2 KB and the schema bounds every string and ``extra``, so a longer text is not a payment
#: request, and refusing it before parsing bounds what a caller can make the engine allocate.
MAX_REQUEST_TEXT = 1 << 20


#: What :meth:`PolicyEngine.stats` counts.
STATS = ("reloads", "reload_failures", "shadow_evaluated", "shadow_failed", "shadow_flips", "shadow_dropped",
         "shadow_log_errors", "listener_errors")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _read_once(request: Any) -> Any:
    """A request that is a Mapping but not a dict, as a dict: everything that reads the request (rollout routing,
    validation, the decision log, the store, the shadow packs) then reads the same items, once. Routing read a dict
    subclass's own ``get``, which may name another payer than the items decided; the decision log wrote a Mapping as
    its repr, unmasked."""
    if type(request) is dict or not isinstance(request, Mapping):
        return request  # anything but a Mapping is refused by the preparer, naming its type
    try:
        return dict(request)
    except Exception as exc:  # the caller's object failed to give its items: nothing to decide on
        raise RequestError([Violation("$", f"the request could not be read: {type(request).__name__} raised "
                                           f"{type(exc).__name__}: {exc}")]) from exc


def _fault(exc: Exception, request_id: str) -> EvaluationError:
    """Fail closed: an engine fault while deciding is never an allow."""
    return EvaluationError(f"could not evaluate request: {type(exc).__name__}: {exc}", request_id)


@dataclass(frozen=True, slots=True)
class LoadedPack:
    """One pack as the engine runs it: compiled, its counters (with a state store), how its signature was
    checked (``state``: ``verified``, ``unsigned`` or ``not_checked``: signed, but the engine has no verify key)
    and when it was loaded."""

    pack: CompiledPack
    counters: Counters | None
    signature: Mapping[str, str]
    loaded_at: str

    def info(self) -> dict[str, Any]:
        r = self.pack.ruleset
        return {"pack": r.pack, "version": r.version, "digest": r.digest, "matcher": self.pack.matcher.name,
                "rules": len(r.rules), "path": r.path, "loaded_at": self.loaded_at, "signature": dict(self.signature)}


@dataclass(frozen=True, slots=True)
class _Packs:
    """Every pack the engine runs, swapped as one on reload: a call reads this once and uses it throughout."""

    primary: LoadedPack
    shadows: tuple[LoadedPack, ...]
    shadow_packs: tuple[ShadowPack, ...]  # the same packs, as the shadow worker runs them
    candidate: LoadedPack | None
    rollout: Rollout | None

    def route(self, request: Any) -> tuple[LoadedPack, dict[str, Any] | None]:
        """The pack that decides ``request``, and the decision's ``rollout`` record (None without a rollout). A
        request without a string ``payer.id`` is the primary pack's (which refuses it if it is invalid)."""
        if self.candidate is None or self.rollout is None:
            return self.primary, None
        payer = request.get("payer") if isinstance(request, Mapping) else None
        payer_id = payer.get("id") if isinstance(payer, Mapping) else None
        slot = bucket(payer_id) if isinstance(payer_id, str) else None
        chosen, arm = ((self.candidate, CANDIDATE) if slot is not None and slot < self.rollout.threshold
                       else (self.primary, PRIMARY))
        return chosen, {"arm": arm, "share": self.rollout.share, "bucket": slot, "digest": chosen.pack.ruleset.digest}

    def all(self) -> tuple[LoadedPack, ...]:
        return (self.primary, *self.shadows, *((self.candidate,) if self.candidate is not None else ()))


@dataclass(frozen=True, slots=True)
class ReloadFailure:
    """The last reload that failed (the packs before it stayed in place): what went wrong, when, from where."""

    message: str
    at: str
    path: str

    def to_dict(self) -> dict[str, str]:
        return {"message": self.message, "at": self.at, "path": self.path}


class PolicyEngine:
    """Evaluates payment requests against one rule pack (a :class:`CompiledPack`) and keeps what a long-lived
    service needs around it: atomic reload, the audit log, and failing closed.

    >>> engine = PolicyEngine.from_path()          # the bundled default pack
    >>> decision = engine.evaluate(request)        # Decision; .decision, .trail, .to_dict()

    With a state store (``state="sqlite:///state.db"``) the engine keeps the pack's declared counters itself
    (DESIGN.md §10): each evaluation reads them, decides and records the payment atomically, idempotently by
    ``request_id``, and :meth:`report` records what happened downstream.

    With ``verify_key`` (a public key file, the ``signing`` extra) every pack must carry a valid signature
    (:mod:`policy_engine.signing`), at construction and on every reload. ``shadow`` packs decide every request
    off the decision path and ``rollout`` sends a share of payers to a candidate pack (README "Shadow and
    rollout"); listeners (:meth:`add_listener`) get a :class:`~policy_engine.traffic.DecisionEvent` per decision.
    """

    def __init__(self, ruleset: RuleSet, matcher: str | None = None, audit: AuditLog | None = None,
                 state: str | Store | None = None, *, verify_key: str | Path | None = None,
                 shadow: PackSource | Iterable[PackSource] = (), rollout: Rollout | None = None,
                 shadow_queue: int = DEFAULT_QUEUE):
        self._matcher_name = matcher
        self._audit = audit
        self._verify_key = verify_key
        self._counting = state is not None
        self._reload_lock = threading.Lock()
        self._listeners: tuple[Callable[[DecisionEvent], Any], ...] = ()
        self._stats = Stats(*STATS)
        #: the last reload that failed, until a reload succeeds (a service shows it in readiness and metrics)
        self.last_reload_error: ReloadFailure | None = None
        shadows = (shadow,) if isinstance(shadow, str | Path | RuleSet) else tuple(shadow)
        self._packs = self._assemble(ruleset, shadows, rollout)  # before the store: a bad pack opens nothing
        self._store = open_store(state) if isinstance(state, str) else state
        self._shadow = ShadowRunner(self._store, audit, self._emit, self._stats, shadow_queue)

    @classmethod
    def from_path(cls, path: str | Path | None = None, matcher: str | None = None,
                  audit: AuditLog | None = None, state: str | Store | None = None, *,
                  verify_key: str | Path | None = None, shadow: PackSource | Iterable[PackSource] = (),
                  rollout: Rollout | None = None, shadow_queue: int = DEFAULT_QUEUE) -> PolicyEngine:
        """Load a pack directory or file (``None``: the bundled default pack). With ``audit``, every decision
        is recorded in that :class:`~policy_engine.audit.AuditLog` before it is returned. With ``state`` (a
        store or its URL: ``memory://``, ``sqlite:///path``, ``redis://host:port/db``), the engine keeps the
        pack's counters; ``None`` is pure evaluation with caller-supplied ``history``. ``verify_key``,
        ``shadow`` (packs as paths or :class:`RuleSet`\\ s), ``rollout`` and ``shadow_queue`` (how many decisions
        may wait for their shadows) are described on the class."""
        return cls(load_ruleset(path), matcher, audit, state, verify_key=verify_key, shadow=shadow,
                   rollout=rollout, shadow_queue=shadow_queue)

    def _assemble(self, primary: PackSource, shadows: tuple[PackSource, ...], rollout: Rollout | None) -> _Packs:
        """Load, verify and compile every pack; if any fails, close the ones built and raise."""
        sources = (primary, *shadows, *((rollout.candidate,) if rollout is not None else ()))
        built: list[LoadedPack] = []
        try:
            for source in sources:
                built.append(self._load(source))
        except BaseException:
            for loaded in built:
                loaded.pack.close()
            raise
        shadow_loaded = tuple(built[1:1 + len(shadows)])
        return _Packs(built[0], shadow_loaded, tuple(ShadowPack(s.pack, s.counters) for s in shadow_loaded),
                      built[-1] if rollout is not None else None, rollout)

    def _load(self, source: PackSource) -> LoadedPack:
        ruleset = source if isinstance(source, RuleSet) else load_ruleset(source)
        if self._verify_key is not None:  # the digest of the content loaded: what is checked is what runs
            info = verify_digest(ruleset.path, ruleset.digest, self._verify_key)
            signature = {"state": "verified", "key_id": info.key_id, "signed_at": info.signed_at}
        else:
            signature = {"state": "not_checked" if signature_path(ruleset.path).exists() else "unsigned"}
        pack = CompiledPack.build(ruleset, self._matcher_name)
        return LoadedPack(pack, Counters(pack) if self._counting else None, signature, _now())

    # -- properties ----------------------------------------------------------------------------------------
    @property
    def pack(self) -> CompiledPack:
        """The current (primary) pack. Read it once and use that snapshot for a whole operation: a reload swaps
        in a new pack but never changes this one (it closes it, so do not keep it for the life of the process)."""
        return self._packs.primary.pack

    @property
    def ruleset(self) -> RuleSet:
        return self._packs.primary.pack.ruleset

    @property
    def matcher(self) -> str:
        return self._packs.primary.pack.matcher.name

    def pack_info(self) -> dict[str, Any]:
        """What the engine runs, as JSON-ready data (a service's ``GET /v1/pack``): the primary pack's name,
        version, digest, matcher, rule count, path, load time and signature state; ``shadow``: the same for each
        shadow pack; ``rollout``: the share and the candidate pack, or None; ``last_reload_error``, or None."""
        packs = self._packs
        failure = self.last_reload_error
        return {**packs.primary.info(),
                "shadow": [s.info() for s in packs.shadows],
                "rollout": None if packs.candidate is None or packs.rollout is None else {
                    "share": packs.rollout.share, "candidate": packs.candidate.info()},
                "last_reload_error": None if failure is None else failure.to_dict()}

    def stats(self) -> dict[str, int]:
        """Counts since the engine was built (:data:`STATS`): reloads and failed reloads; shadow evaluations,
        failures, flips, decisions whose shadows were dropped (queue full) and shadow records not logged; and
        listener calls that raised."""
        return self._stats.snapshot()

    # -- listeners -----------------------------------------------------------------------------------------
    def add_listener(self, listener: Callable[[DecisionEvent], Any]) -> None:
        """Call ``listener(event)`` once per decision (a retry that returns a recorded decision included). With
        shadow packs it runs on the shadow worker thread after they decided, else on the caller's thread. It
        must be quick; what it raises is counted (``listener_errors``) and never reaches the caller."""
        with self._reload_lock:
            self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: Callable[[DecisionEvent], Any]) -> None:
        with self._reload_lock:
            self._listeners = tuple(fn for fn in self._listeners if fn is not listener)

    def _emit(self, event: DecisionEvent) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # a listener's fault is counted, never the caller's or the decision's
                self._stats.add("listener_errors")

    # -- evaluation ----------------------------------------------------------------------------------------
    def prepare(self, request: Any) -> PreparedRequest:
        """Validate and normalise a request without evaluating it (raises :class:`RequestError`)."""
        return self.pack.prepare(request)

    def evaluate(self, request: Any, context: CallContext | None = None) -> Decision:
        """Decide one request. Raises :class:`RequestError` for an invalid request and
        :class:`EvaluationError` when the engine cannot decide; it never returns ``allow`` in either case.

        ``context`` (the caller's request id and W3C trace context) goes into the decision log record. With
        shadow packs the request is read again after this returns, by the shadow worker: do not change it."""
        start = time.perf_counter_ns()
        request = _read_once(request)
        packs = self._packs  # one consistent set of packs for the whole evaluation, even across a reload
        loaded, rollout = (packs.primary, None) if packs.candidate is None else packs.route(request)
        values: Mapping[str, Any] | None = None
        if loaded.counters is not None:
            decision, values = self._evaluate_with_state(loaded.counters, request, start, rollout, context)
        else:
            decision = self._decide(loaded.pack, self._prepare(loaded.pack, request), start, rollout, request,
                                    context)
        if packs.shadow_packs or self._listeners:
            # a retry with a store returns the recorded decision (values None): its shadows ran the first time
            fresh = loaded.counters is None or values is not None
            self._observe(packs, loaded, request, decision, values, rollout, context, fresh)
        return decision

    def _observe(self, packs: _Packs, loaded: LoadedPack, request: Any, decision: Decision,
                 values: Mapping[str, Any] | None, rollout: Mapping[str, Any] | None, context: CallContext | None,
                 fresh: bool) -> None:
        """Hand the decision to the shadow worker, or straight to the listeners; never raises."""
        arm = rollout["arm"] if rollout is not None else None
        dropped = False
        if packs.shadow_packs and fresh:
            if self._shadow.submit(Job(packs.shadow_packs, loaded.counters, request, decision, values, arm,
                                       context)):
                return
            self._stats.add("shadow_dropped")
            dropped = True
        if self._listeners:
            self._emit(DecisionEvent(decision.request_id, decision, decision.ruleset, arm, decision.elapsed_us,
                                     (), dropped, context))

    def evaluate_json(self, data: bytes | bytearray | str, context: CallContext | None = None) -> bytes:
        """Decide one request given as JSON text and return the decision's JSON: ``decision.to_dict()`` as compact
        UTF-8 (:func:`~policy_engine.jsonio.dumps_bytes`). Raises what :meth:`evaluate` raises; text that is not
        JSON (a :class:`~policy_engine.errors.RequestTextError`), is ambiguous (a repeated key) or is longer than
        :data:`MAX_REQUEST_TEXT` is a :class:`RequestError`."""
        start = time.perf_counter_ns()
        if type(data) is not bytes and type(data) is not str and not isinstance(data, str | bytes | bytearray):
            # before len(): None had none, and a dict or a list reached the decoders, whose faults read as the engine's
            raise RequestError([Violation("$", f"request text is str or bytes, not {type(data).__name__} "
                                               "(evaluate() takes a request that is already a dict)")])
        if len(data) > MAX_REQUEST_TEXT:
            raise RequestError([Violation("$", f"the request text is {len(data):,} long, beyond the "
                                               f"{MAX_REQUEST_TEXT:,} a payment request may take")])
        packs = self._packs
        # The native pass (no dicts) when nothing needs the request itself: an audit log, a store, shadow packs
        # and a rollout's routing all take the dict, so they take the path below.
        if self._audit is None and not self._counting and not packs.shadow_packs and packs.candidate is None:
            loaded = packs.primary
            try:
                prepared = loaded.pack.preparer.prepare_text(data, True)
            except Exception as exc:  # an engine fault, not the caller's error (the native pass only declines)
                raise EvaluationError(f"could not prepare request: {type(exc).__name__}: {exc}") from exc
            if prepared is not None:
                if not self._listeners:  # nothing takes the Decision: its document, without making its objects
                    try:
                        return loaded.pack.decide_json(prepared, start)
                    except EvaluationError:
                        raise
                    except Exception as exc:  # fail closed, as _decide
                        raise _fault(exc, prepared.request_id) from exc
                decision = self._decide(loaded.pack, prepared, start, None, None, context)
                self._observe(packs, loaded, None, decision, None, None, context, True)
                return dumps_bytes(decision.to_dict())
        try:
            request = parse_json(data)
        except ValueError as exc:  # UnicodeDecodeError included
            raise RequestTextError(str(exc)) from None
        return dumps_bytes(self.evaluate(request, context).to_dict())

    def _decide(self, pack: CompiledPack, prepared: PreparedRequest, start: int, rollout: Mapping[str, Any] | None,
                request: Any, context: CallContext | None) -> Decision:
        """Decide a prepared request without a store, and record it in the audit log if there is one."""
        try:
            decision = pack.decide(prepared, start)
            if rollout is not None:
                decision = dataclasses.replace(decision, rollout=rollout)
            if self._audit is not None:
                self._audit.write(request, decision, context)  # an unrecorded decision is not handed out
            return decision
        except EvaluationError:
            raise
        except Exception as exc:
            raise _fault(exc, prepared.request_id) from exc

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

    def _evaluate_with_state(self, counters: Counters, request: Any, start: int, rollout: Mapping[str, Any] | None,
                             context: CallContext | None) -> tuple[Decision, Mapping[str, Any] | None]:
        """Read the counters, decide and record, in one store transaction; a retry gets the recorded decision.
        Returns the decision and the counters it was decided with (None for a retry)."""
        assert self._store is not None
        counters.refuse_history(request)
        prepared = self._prepare(counters.pack, request)  # the counters' pack: one version throughout
        rid = prepared.request_id
        try:
            with self._store.transaction() as txn:
                recorded = txn.recorded(rid)
                if recorded is not None:
                    return self._retry(request, recorded, rid), None
                values = counters.values(request, prepared, txn)
                decision, counted = counters.decide(request, prepared, values, start)
                if rollout is not None:
                    decision = dataclasses.replace(decision, rollout=rollout)
                if self._audit is not None:
                    self._audit.write(request, decision, context)  # inside the transaction: in both or neither
                txn.record(counters.payment(request, counted, decision.decision.value, encode_decision(decision)))
            return decision, values
        except (EvaluationError, StateError):
            raise
        except Exception as exc:  # fail closed: a store or engine fault is never an allow
            raise EvaluationError(f"could not evaluate request: {type(exc).__name__}: {exc}", rid) from exc

    @staticmethod
    def _retry(request: Any, recorded: Recorded, rid: str) -> Decision:
        if body_digest(request) != recorded.digest:
            raise StateError("conflict", f"request_id {rid!r} was already evaluated with a different body; a "
                             "retry must resend the same request, a new payment needs a new request_id", rid)
        if recorded.status in UNCOUNTED_STATUSES:
            # It no longer counts against any limit: handing its recorded allow back would let the payment go
            # ahead again uncounted.
            raise StateError("conflict", f"request_id {rid!r} was reported {recorded.status}, so it no longer "
                             "counts against limits and cannot be decided again; a new attempt needs a new "
                             "request_id", rid)
        return decode_decision(recorded.decision)

    def report(self, request_id: str, status: str) -> None:
        """Record what happened to an evaluated payment downstream: ``completed``, ``failed`` or ``reversed``
        (a failed or reversed payment stops counting against limits). Raises :class:`StateError` for a
        payment this engine's store never recorded."""
        if self._store is None:
            raise StateError("no_store", "report() needs a state store: build the engine with state=URL")
        if not isinstance(request_id, str):  # else each store failed its own way, SQLite's as "unreachable"
            raise StateError("unknown_request", f"request_id {request_id!r} is not a string; report the status of "
                             "a payment the engine decided, by its request_id")
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
        """The counters the rules of the pack deciding ``request`` would read for it now (its entities and
        windows), without evaluating or recording it: what an analyst checks when a limit surprises them."""
        counters = self._packs.route(request)[0].counters
        if counters is None:
            raise StateError("no_store", "counters() needs a state store: build the engine with state=URL")
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
        """Condition-level explanation of every rule (or one) of the pack deciding ``request``; see
        :mod:`policy_engine.explain`. With a state store, the counters are the store's as :meth:`counters` reads
        them (nothing is recorded) and each leaf on a counter shows how it is counted."""
        from .explain import explain

        request = _read_once(request)
        loaded = self._packs.route(request)[0]
        counters = loaded.counters
        if counters is None:
            return explain(loaded.pack, request, rule_id)
        prepared = self._counted(counters, request)
        return explain(counters.pack, request, rule_id, prepared, counters.described(request))

    # -- reload --------------------------------------------------------------------------------------------
    def reload(self, path: str | Path | None = None) -> RuleSet:
        """Load every pack again (the primary from ``path``, or from where it came from; shadow and candidate
        packs from where they came from), verify their signatures when the engine has a verify key, and swap
        them in atomically, all together. Evaluations already running finish on the old packs.

        If any pack fails to load or verify, the old packs all stay in place, the failure is kept in
        :attr:`last_reload_error` (and counted in :meth:`stats`) and the error (:class:`RuleSetError`,
        :class:`~policy_engine.signing.SignatureError`, ...) is raised."""
        with self._reload_lock:
            old = self._packs
            source = path if path is not None else old.primary.pack.ruleset.path
            rollout = old.rollout
            try:
                new = self._assemble(source, tuple(s.pack.ruleset.path for s in old.shadows),
                                     None if rollout is None or old.candidate is None else
                                     Rollout(old.candidate.pack.ruleset.path, rollout.share))
            except Exception as exc:
                self.last_reload_error = ReloadFailure(f"{type(exc).__name__}: {exc}", _now(), str(source))
                self._stats.add("reload_failures")
                raise
            self._packs = new
            self.last_reload_error = None
            self._stats.add("reloads")
        for loaded in old.all():
            loaded.pack.close()
        return new.primary.pack.ruleset

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until the shadow packs have decided every decision handed out so far (True), or ``timeout``
        seconds passed (False): before reading the decision log or stats in a test, or at shutdown. A listener on
        the shadow worker gets False at once: its own decision is one of those waited for."""
        return self._shadow.drain(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Finish the queued shadow work (up to ``timeout`` seconds), then release native matcher resources
        (durable handles) and the state store."""
        self._shadow.close(timeout)
        for loaded in self._packs.all():
            loaded.pack.close()
        if self._store is not None:
            self._store.close()
