"""``CompiledPack``: one version of a rule pack, compiled and ready to decide; immutable and thread-shareable.

A pack is what a decision is made against: the rule set, its compiled program and matcher, the request
preparer for the fields its rules read, and what the decision step needs per rule. :class:`PolicyEngine`
holds one and swaps it on reload; tools that decide without a long-lived service (the rule-test runner,
backtest workers, ``validate``) build and use packs directly.

>>> pack = CompiledPack.build(load_ruleset("rules/"))
>>> decision = pack.decide(pack.prepare(request))
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import repeat
from operator import is_
from types import MappingProxyType
from typing import Any

from ._version import __version__
from .compiler import Program, compile_program
from .conditions import fields_read, leaves, unknown_depends_on, unknown_fields
from .decision import (
    ALLOW,
    FIRED,
    NO_EXTRA,
    SKIPPED,
    UNDECIDED,
    Decision,
    build_decision,
    build_trail_entry,
    combine,
    decision_document,
    json_evidence,
    trail_entry_document,
    undecided_reason,
)
from .fields import FieldCatalog
from .jsonio import dumps_bytes
from .matchers import Matcher, build_matcher, durable_available
from .request import CROSS_RATE_PATHS, PreparedRequest, RequestPreparer
from .resources import load_schema
from .ruleset import SKIP, Rule, RuleSet
from .screening import Screening

#: The pure-Python matcher is the default: it decides exactly as the durable matcher does (property-tested)
#: and measured several times faster on the default pack; see README "Performance".
DEFAULT_MATCHER = "python"


#: What an undecided or skipped rule's trail entry holds on the requests with one presence pattern: the fields
#: missing, the reason, the status and outcome, and the entry's document with empty evidence (shared: only
#: :meth:`CompiledPack.decide_json` copies it, and writes the copy at once).
Unknown = tuple[tuple[str, ...], str, str, str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class RuleEvidence:
    """A rule and the fields its condition reads: the values a fired rule shows as its evidence."""

    rule: Rule
    fields: tuple[str, ...]
    #: the rule's name screenings: their best match is evidence too (the entry, the name, the score)
    screens: tuple[Screening, ...] = ()
    #: what an undecided or skipped rule's ``missing`` depends on (:func:`unknown_depends_on`), and what its trail
    #: entry holds memoised by presence pattern (:data:`Unknown`): a rule on optional enrichment (a name, a device)
    #: is skipped on most requests, and the reference evaluator that names the missing fields would run on each
    presence: tuple[str, ...] = ()
    unknown_by_presence: dict[tuple[bool, ...], Unknown] = field(default_factory=dict, compare=False)

    def unknown(self, view: Mapping[str, Any], day: int) -> Unknown:
        """What the trail entry of this rule, undecided or skipped on this request, holds but for its evidence."""
        key = tuple(map(is_, repeat(None), map(view.get, self.presence)))  # in C: no comprehension frame
        found = self.unknown_by_presence.get(key)
        if found is None:
            rule = self.rule
            missing = unknown_fields(rule.when, view, day)
            status, outcome = (SKIPPED, "allow") if rule.on_unknown == SKIP else (UNDECIDED, rule.on_unknown)
            reason = undecided_reason(rule, status, missing)
            found = missing, reason, status, outcome, trail_entry_document(
                rule.id, rule.category, outcome, rule.title, reason, {}, rule.source, rule.report, None, status,
                missing, (), NO_EXTRA)
            if len(self.unknown_by_presence) < _MISSING_MEMO:  # bounded: 2**len(presence) patterns at most
                self.unknown_by_presence[key] = found
        return found


#: presence patterns remembered per rule
_MISSING_MEMO = 256
_LATE = frozenset(CROSS_RATE_PATHS.values())


@functools.lru_cache(maxsize=4096)
def _iso_day(day: int) -> str:
    return dt.date.fromordinal(day).isoformat()


def _catalog() -> FieldCatalog:
    return FieldCatalog(load_schema("payment_request"))


@dataclass(frozen=True, slots=True, eq=False)  # identity equality: a pack owns its matcher's resources
class CompiledPack:
    """One pack version: everything evaluation needs, built once by :meth:`build` and never changed.

    Share it freely between threads. ``ruleset_info`` and ``engine_info`` are handed to every decision as
    they are, read-only (no copies on the hot path), and ``rank`` is read per decision: never change it.
    """

    ruleset: RuleSet
    program: Program
    matcher: Matcher
    preparer: RequestPreparer
    evidence: tuple[RuleEvidence, ...]  # per rule, in pack order (the matcher's indexes)
    #: read-only views: every Decision, explanation and listener event holds these very mappings, so a caller that
    #: changed one (``decision.ruleset["digest"] = ...``) changed the digest of every later decision and log record
    ruleset_info: Mapping[str, str]
    engine_info: Mapping[str, str]
    rank: dict[str, int]  # decision_order as outcome -> severity rank (0 = most severe); read-only
    #: the rules whose trail entry shows a cross-rate amount the preparer may leave pending
    #: (``PreparedRequest.complete``): in its evidence (the fields its condition reads) or its reasons; by pack index
    late: frozenset[int]
    #: the dicts under ``ruleset_info`` and ``engine_info``, for :meth:`decide_json`'s documents (written at once,
    #: never handed out; the JSON encoder writes a dict, not a read-only view)
    info_documents: tuple[dict[str, str], dict[str, str]]

    @classmethod
    def build(cls, ruleset: RuleSet, matcher: str | None = None) -> CompiledPack:
        """Compile ``ruleset`` for the ``matcher`` named (``None``: :data:`DEFAULT_MATCHER`). Raises
        :class:`~policy_engine.RuleSetError` for shapes the matcher cannot run and
        :class:`~policy_engine.MatcherUnavailableError` for a matcher this interpreter lacks."""
        catalog = _catalog()
        kinds = {p: catalog.get(p).kind for p in catalog.paths()}  # type: ignore[union-attr]
        # fields every valid request has (required by the contract, or given a default) are never unknown
        program = compile_program(ruleset, kinds, catalog.always_present | frozenset(ruleset.defaults))
        name = matcher or DEFAULT_MATCHER
        engine_info = {"version": __version__, "matcher": name}
        ok, why = durable_available()
        if not ok:
            # Say so in every decision: a reviewer comparing decisions across hosts should know which ran.
            engine_info["note"] = f"{why}; running on the python matcher"
        compiled = build_matcher(name, program)
        evidence = tuple(RuleEvidence(r, fields_read(r.when), tuple(dict.fromkeys(
            leaf.screen for leaf in leaves(r.when) if leaf.screen is not None)), unknown_depends_on(r.when))
            for r in ruleset.rules)
        late = frozenset(i for i, r in enumerate(ruleset.rules) if not _LATE.isdisjoint(
            (*fields_read(r.when), *r.reason.fields, *(r.reason_zh.fields if r.reason_zh else ()))))
        needed = {p for e in evidence for p in e.fields}
        for r in ruleset.rules:
            needed.update(r.reason.fields)
            if r.reason_zh:
                needed.update(r.reason_zh.fields)
        needed.update(program.layout.plain)
        for aggregate in ruleset.aggregates.values():  # what recording a payment for each counter reads
            needed.update(aggregate.fields_read())
        preparer = RequestPreparer(ruleset, tuple(sorted(needed)))
        info = {"pack": ruleset.pack, "version": ruleset.version, "digest": ruleset.digest}
        rank = {outcome: i for i, outcome in enumerate(ruleset.decision_order)}
        return cls(ruleset, program, compiled, preparer, evidence, MappingProxyType(info),
                   MappingProxyType(engine_info), rank, late, (info, engine_info))

    def prepare(self, request: Any, pending: bool = False) -> PreparedRequest:
        """Validate and normalise a request (raises :class:`~policy_engine.RequestError` listing every
        violation). With ``pending``, cross-rate amounts are computed only if a rule reads them, which is
        faster when the request is only decided; without it the view holds every derived field."""
        return self.preparer.prepare(request, pending)

    def decide(self, prepared: PreparedRequest, started_ns: int | None = None) -> Decision:
        """Match a prepared request and combine the fired rules into the decision.

        ``elapsed_us`` counts from ``started_ns`` (a :func:`time.perf_counter_ns` reading; by default, now).
        Faults propagate as they are: failing closed is the caller's policy (see :class:`PolicyEngine`).
        """
        return self._decide(prepared, started_ns, build_trail_entry, build_decision,
                            (self.ruleset_info, self.engine_info))

    def decide_json(self, prepared: PreparedRequest, started_ns: int | None = None) -> bytes:
        """``dumps_bytes(decide(prepared, started_ns).to_dict())`` without making the decision's objects, for a
        caller that only writes the decision (:meth:`PolicyEngine.evaluate_json`): the same steps, with each trail
        entry and the decision made by the functions that lay out their documents instead of by their
        constructors. The document is written at once, so it may share what is constant per pack (ruleset and
        engine) and per rule and presence pattern (an undecided or skipped entry but for its evidence)."""
        return dumps_bytes(self._decide(prepared, started_ns, trail_entry_document, decision_document,
                                        self.info_documents))

    def _decide(self, prepared: PreparedRequest, started_ns: int | None, make_entry: Callable[..., Any],
                make_decision: Callable[..., Any], info: tuple[Mapping[str, str], Mapping[str, str]]) -> Any:
        """The decision made by ``make_decision`` from trail entries made by ``make_entry``: the constructors of
        :class:`Decision` and :class:`TrailEntry`, or the functions writing their documents (same arguments);
        ``info``: the pack's ruleset and engine records as the decision holds them."""
        start = time.perf_counter_ns() if started_ns is None else started_ns
        matched = self.matcher.match(prepared)
        fired, undecided = self.program.split(matched)
        # A cross-rate amount (two exact Fractions) is computed only for an entry that shows one: in its evidence
        # or its reasons, or an undecided rule on one, which needs it to name what is missing. Most decisions,
        # those that fire a rule on other fields included, have none to compute.
        entries = self.evidence
        late = self.late
        if not (late.isdisjoint(fired) and late.isdisjoint(undecided)):
            prepared.complete()
        get = prepared.view.get
        defaulted = prepared.defaulted
        trail = []
        obligations = []
        outcomes = []  # of the entries that count (not skipped)
        for index in fired:
            entry = entries[index]
            rule = entry.rule
            fields = entry.fields
            evidence = dict(zip(fields, map(get, fields), strict=True))  # in C: no comprehension frame
            if entry.screens:  # computed by the matcher unless a rule fired without reaching the leaf
                evidence.update((s.path, s.match(prepared.view, prepared.day)) for s in entry.screens)
            trail.append(make_entry(
                rule.id, rule.category, rule.outcome, rule.title, rule.reason.render_get(get),
                evidence, rule.source, rule.report,
                rule.reason_zh.render_get(get) if rule.reason_zh else None, FIRED, (),
                tuple(p for p in fields if p in defaulted) if defaulted else (), NO_EXTRA))
            outcomes.append(rule.outcome)
            if rule.report:
                obligations.append({"rule_id": rule.id, "report": rule.report})
        if undecided:
            trail = self._with_undecided(prepared, fired, undecided, trail, obligations, outcomes, make_entry)
        # most requests fire nothing and leave at most the skipped screening rule: no outcome to rank then
        return make_decision(
            prepared.request_id, combine(outcomes, self.rank) if outcomes else ALLOW, tuple(trail),
            tuple(obligations), *info, (time.perf_counter_ns() - start) // 1000,
            _iso_day(prepared.day), prepared.fx.as_of_iso, NO_EXTRA, defaulted, None)

    def _with_undecided(self, prepared: PreparedRequest, fired: list[int], undecided: list[int], trail: list,
                        obligations: list, outcomes: list, make_entry: Callable[..., Any]) -> list:
        """The trail with the rules whose condition is unknown merged in, in pack order. Only requests that leave
        out something a rule needs come here, so naming the missing fields may use the reference evaluator (once
        per rule and presence pattern: :meth:`RuleEvidence.unknown`)."""
        view, day, defaulted = prepared.view, prepared.day, prepared.defaulted
        get = view.get
        added = []
        for index in undecided:
            entry = self.evidence[index]
            rule = entry.rule
            missing, reason, status, outcome, written = entry.unknown(view, day)
            if status == UNDECIDED:
                outcomes.append(outcome)
                if rule.report:
                    obligations.append({"rule_id": rule.id, "report": rule.report, "status": UNDECIDED})
            fields = entry.fields
            evidence = dict(zip(fields, map(get, fields), strict=True))  # in C: no comprehension frame
            lacking = tuple(p for p in fields if p in defaulted) if defaulted else ()
            if make_entry is trail_entry_document and not lacking:
                # the document differs from the memoised one in its evidence only: a copy, not the layout again
                made = written.copy()
                made["evidence"] = json_evidence(evidence)
                added.append(made)
            else:
                added.append(make_entry(rule.id, rule.category, outcome, rule.title, reason, evidence, rule.source,
                                        rule.report, None, status, missing, lacking, NO_EXTRA))
        if not fired:
            return added  # in pack order already (the matcher's answer is sorted)
        by_index = dict(zip(fired, trail, strict=True))
        by_index.update(zip(undecided, added, strict=True))
        return [by_index[i] for i in sorted(by_index)]

    def close(self) -> None:
        """Release native matcher resources (durable handles). A closed pack still decides correctly, but the
        durable matcher then makes and deletes its native rulesets per call: close a pack once it is unused."""
        self.matcher.close()
