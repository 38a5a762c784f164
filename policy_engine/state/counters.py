"""Counting for one pack: what a payment records for each declared aggregate, and the counters its rules read,
computed in the store's transaction and put into the request's view as the ``history.*`` fields.

The engine owns these counters (DOMAIN §5.1 point 7): a request may not carry ``history``, the pack's
``defaults:`` for counters (meant for callers that supply them) do not apply, and a counter whose entity the
request leaves out (no ``device.id`` for a per-device counter) is missing, so the rules reading it are undecided
rather than fed a guess.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from ..aggregates import COUNT, Aggregate, fold, micros
from ..conditions import All, Any_, Leaf, Node, evaluate
from ..decision import NO_EXTRA, Decision, Outcome, TrailEntry
from ..errors import RequestError, Violation
from ..lint import describe as describe_leaf
from ..pack import CompiledPack
from ..request import DEFAULT_PSP_COUNTRY, PreparedRequest, counters_read, instant
from .store import Entry, Payment, Transaction

#: Retention keeps a week beyond every window's reach, for payments that arrive late (their windows are computed
#: from their own instants): one arriving more than this after a later payment of the same entity could find
#: rows its window needs already pruned.
LATE_ARRIVALS_US = 7 * 86400 * 1_000_000


def body_digest(request: Mapping[str, Any]) -> str:
    """A digest of the request body: a retry under the same ``request_id`` must send the same body."""
    text = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def encode_decision(decision: Decision) -> str:
    return json.dumps(decision.to_dict(), ensure_ascii=False, separators=(",", ":"))


def decode_decision(text: str) -> Decision:
    """A recorded decision, as a retry gets it back (evidence values as the decision's JSON carried them)."""
    d = json.loads(text)
    trail = tuple(TrailEntry(e["rule_id"], e["category"], e["outcome"], e["title"], e["reason"], e["evidence"],
                             e["source"], e.get("report"), e.get("reason_zh"), e["status"], tuple(e.get("missing", ())),
                             tuple(e.get("defaulted", ())), e.get("aggregates", NO_EXTRA)) for e in d["trail"])
    return Decision(d["request_id"], Outcome(d["decision"]), trail, tuple(d["obligations"]), d["ruleset"],
                    d["engine"], d["elapsed_us"], d["as_of"], d["fx_as_of"], NO_EXTRA, tuple(d.get("defaulted", ())),
                    d.get("rollout"))


def _words(node: Node) -> str:
    """A condition in one line, as the pack writes it (``channel eq 'qr_static'``)."""
    if isinstance(node, Leaf):
        return describe_leaf(node)
    if isinstance(node, All | Any_):
        joined = (" and " if isinstance(node, All) else " or ").join(_words(c) for c in node.children)
        return f"({joined})"
    return f"not {_words(node.child)}"


def describe(aggregate: Aggregate, zone: ZoneInfo) -> dict[str, str]:
    """How a counter is counted, for the evidence: the analyst can recount its value from this alone."""
    out = {"function": aggregate.function if aggregate.function == COUNT else f"{aggregate.function} {aggregate.of}",
           "by": aggregate.by,
           "window": aggregate.window.describe(zone.key, "the last payment where " + _words(aggregate.window.event)
                                               if aggregate.window.event is not None else ""),
           "counts": aggregate.counts}
    if aggregate.where is not None:
        out["where"] = _words(aggregate.where)
    return out


class Counters:
    """Built once per pack version; reads nothing but its pack, so it is shared between threads."""

    def __init__(self, pack: CompiledPack):
        self.pack = pack
        ruleset = pack.ruleset
        self.aggregates: tuple[Aggregate, ...] = tuple(ruleset.aggregates.values())
        self.read = frozenset(f"history.{name}" for name in counters_read(ruleset))
        self._zones = {country: ZoneInfo(name) for country, name in ruleset.timezones.items()}
        # per PSP jurisdiction (a calendar window's zone): computed once, shared by every decision's trail
        self._definitions = {country: MappingProxyType({
            agg.field: MappingProxyType(describe(agg, zone)) for agg in self.aggregates if agg.field in self.read})
            for country, zone in self._zones.items()}

    def refuse_history(self, request: Any) -> None:
        if isinstance(request, Mapping) and "history" in request:
            rid = request.get("request_id")
            raise RequestError([Violation("$.history", "this engine keeps its own counters in a state store; a "
                                                       "request may not supply `history` (drop it)")],
                               rid if isinstance(rid, str) else None)

    def values(self, request: Mapping[str, Any], prepared: PreparedRequest, txn: Transaction) -> dict[str, Any]:
        """The counters the pack's rules read, for this request's entities and windows, as of ``txn``."""
        when, zone = self._instant(request)
        out = {}
        for agg in self.aggregates:
            entity = prepared.view.get(agg.by)
            if entity is not None and agg.field in self.read:
                lo, hi = agg.window.bounds(when, zone)
                out[agg.field] = fold(agg, txn.rows(agg.field, str(entity), lo, hi), lo, hi)
        return out

    def counted(self, request: Mapping[str, Any], prepared: PreparedRequest, txn: Transaction) -> PreparedRequest:
        """``prepared`` with the counters read in ``txn`` in its view in place of any default (it changes the
        view it was given: the request is prepared for this evaluation only)."""
        return self.with_counters(prepared, self.values(request, prepared, txn))

    def with_counters(self, prepared: PreparedRequest, values: Mapping[str, Any]) -> PreparedRequest:
        """``prepared`` with ``values`` (read in a store, or recomputed by a backtest's replay) as its counters,
        in place of any default; changes the view it was given, as :meth:`counted` does."""
        view = prepared.complete()
        for path in self.read:
            view.pop(path, None)  # the engine's counters, never the defaults meant for caller-supplied ones
        view.update(values)
        return dataclasses.replace(prepared, defaulted=tuple(p for p in prepared.defaulted if p not in self.read))

    def described(self, request: Mapping[str, Any]) -> Mapping[str, Mapping[str, str]]:
        """How each counter the pack's rules read is counted for this request (in its jurisdiction's zone)."""
        return self._definitions[request.get("psp_country") or DEFAULT_PSP_COUNTRY]

    def evaluate(self, request: Mapping[str, Any], prepared: PreparedRequest, txn: Transaction,
                 started_ns: int) -> tuple[Decision, Payment]:
        """Decide with the counters read in ``txn``; returns the decision and the payment to record."""
        decision, prepared = self.decide(request, prepared, self.values(request, prepared, txn), started_ns)
        return decision, self.payment(request, prepared, decision.decision.value, encode_decision(decision))

    def decide(self, request: Mapping[str, Any], prepared: PreparedRequest, values: Mapping[str, Any],
               started_ns: int) -> tuple[Decision, PreparedRequest]:
        """Decide with ``values`` as the counters (:meth:`values`); returns the decision and the request prepared
        with them, which :meth:`payment` records. Records nothing itself."""
        prepared = self.with_counters(prepared, values)
        return self._with_definitions(self.pack.decide(prepared, started_ns), request), prepared

    def payment(self, request: Mapping[str, Any], prepared: PreparedRequest, outcome: str, decision: str) -> Payment:
        """The payment to record for ``request``, whose decision had ``outcome`` (``decision``: its JSON)."""
        view = prepared.complete()
        t = micros(self._instant(request)[0])
        # Retention counts back from the payment's instant, but never from later than now: the instant is the
        # caller's, and one payment dated 2099 would otherwise prune every row today's windows read.
        prune_from = min(t, micros(dt.datetime.now(dt.UTC)))
        entries = []
        for agg in self.aggregates:
            entity = view.get(agg.by)
            if entity is None:
                continue
            matches = agg.where is None or evaluate(agg.where, view, prepared.day) is not False  # unknown counts
            event = agg.window.event is not None and evaluate(agg.window.event, view, prepared.day) is True
            if not (matches or event):
                continue  # it could never change this counter: no row for it
            value = view.get(agg.of) if agg.of else None
            reach = agg.window.reach()
            keep_from = None if reach is None else prune_from - reach - LATE_ARRIVALS_US
            entries.append(Entry(agg.field, str(entity), None if value is None else str(value), matches, event,
                                 keep_from))
        return Payment(prepared.request_id, body_digest(request), t, tuple(entries), outcome, decision)

    def _with_definitions(self, decision: Decision, request: Mapping[str, Any]) -> Decision:
        """Each trail entry that read a counter says how that counter is counted, beside its value."""
        definitions = self.described(request)
        trail = tuple(dataclasses.replace(e, aggregates={p: definitions[p] for p in e.evidence if p in definitions})
                      if definitions.keys() & e.evidence.keys() else e for e in decision.trail)
        return dataclasses.replace(decision, trail=trail)

    def _instant(self, request: Mapping[str, Any]) -> tuple[dt.datetime, ZoneInfo]:
        """A valid request's instant and its PSP jurisdiction's zone (the preparer checked both exist)."""
        when, _ = instant(request["timestamp"])
        assert when is not None
        return when, self._zones[request.get("psp_country") or DEFAULT_PSP_COUNTRY]
