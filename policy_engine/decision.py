"""Outcomes, the reason trail, the decision, and how fired rules combine into one decision."""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from operator import attrgetter
from types import MappingProxyType
from typing import Any

from ._frozen import positional_builder

#: Trail entry statuses (DESIGN §5).
FIRED, UNDECIDED, SKIPPED = "fired", "undecided", "skipped"


class Outcome(StrEnum):
    DENY = "deny"
    REVIEW = "review"
    STEP_UP = "step_up"
    ALLOW = "allow"


#: ``Outcome.ALLOW`` as a module constant for the hot path: reading a member off the enum class costs a metaclass
#: lookup (0.4 µs).
ALLOW = Outcome.ALLOW


def format_value(value: Any) -> str:
    """How a value reads in a reason: money with thousands separators, rational amounts to the cent."""
    if type(value) is str:  # the common case first: most placeholders are codes and names
        return value
    if value is None:
        return "<missing>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Fraction):
        value = Decimal(value.numerator) / Decimal(value.denominator)
        return f"{value.quantize(Decimal('0.01')):,}"
    if isinstance(value, Decimal):
        return f"{value.normalize():,f}" if value == value.to_integral_value() else f"{value:,}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _render_value(value: Any, missing: str) -> str:
    if type(value) is str:
        return value
    return missing if value is None else format_value(value)


#: Evidence values JSON writes as they are; a trail entry whose evidence holds only these copies it in C.
_AS_IS = frozenset({str, int, bool, type(None)})


def json_value(value: Any) -> Any:
    """A JSON-ready evidence value. Finite decimals stay exact (int, or float when it round-trips, else a
    string); rationals from cross-rate conversions are rounded to six decimal places."""
    if type(value) in _AS_IS:  # most evidence: no isinstance on Fraction, an ABC (a Python-level check)
        return value
    if isinstance(value, Fraction):
        value = (Decimal(value.numerator) / Decimal(value.denominator)).quantize(Decimal("0.000001"))
    if isinstance(value, Decimal):
        if value == value.to_integral_value():
            return int(value)
        as_float = float(value)
        return as_float if Decimal(repr(as_float)) == value else str(value)
    return value


def plain_json(obj: Any) -> Any:
    """A deep copy of request-like data that ``json.dumps`` writes exactly: decimals become JSON numbers
    that read back to the same value (see :func:`json_value`)."""
    if isinstance(obj, dict):
        return {str(k): plain_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain_json(v) for v in obj]
    if isinstance(obj, Decimal | Fraction):
        return json_value(obj)
    return obj


class ReasonTemplate:
    """A reason with ``{field.path}`` placeholders, parsed once at load time."""

    __slots__ = ("fields", "parts", "render_get", "text")

    def __init__(self, text: str):
        self.text = text
        parts: list[tuple[str, str | None]] = []
        for literal, name, spec, conversion in string.Formatter().parse(text):
            if spec or conversion:
                raise ValueError(f"placeholder {{{name}{'!' + conversion if conversion else ''}"
                                 f"{':' + spec if spec else ''}}} may not have a format spec or conversion")
            if name == "":
                raise ValueError("empty placeholder {} (write {{ and }} for literal braces)")
            parts.append((literal, name))
        self.parts = tuple(parts)
        self.fields = tuple(name for _, name in parts if name)
        # One generated concatenation per template: rendering runs for every fired rule of every decision.
        pieces = []
        for literal, name in parts:
            if literal:
                pieces.append(repr(literal))
            if name:
                pieces.append(f"_f(g({name!r}), {f'<missing {name}>'!r})")
        body = " + ".join(pieces) or "''"
        self.render_get = eval(f"lambda g: {body}", {"_f": _render_value})  # built from parsed parts only

    def render(self, view: Mapping[str, Any]) -> str:
        return self.render_get(view.get)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ReasonTemplate) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"ReasonTemplate({self.text!r})"


def json_evidence(evidence: Mapping[str, Any]) -> dict[str, Any]:
    """The evidence as JSON writes it (:func:`json_value` of each value); a copy when every value is written as
    it is (codes, counts, flags, missing values: the skipped screening rule of every nameless request)."""
    if _AS_IS.issuperset(map(type, evidence.values())):
        return dict(evidence)
    return {k: json_value(v) for k, v in evidence.items()}


@dataclass(frozen=True, slots=True)
class TrailEntry:
    rule_id: str
    category: str
    outcome: str
    title: str
    reason: str
    evidence: Mapping[str, Any]
    source: str
    report: str | None = None
    reason_zh: str | None = None
    #: fired: the condition held; undecided: it could not be decided from the data given (``outcome`` is then
    #: the rule's ``on_unknown`` outcome); skipped: undecided on optional enrichment (``on_unknown: skip``),
    #: contributes nothing. Unless fired, ``missing`` names the fields the request left out.
    status: str = FIRED
    missing: tuple[str, ...] = ()
    #: evidence fields the request left out that took the pack's declared default (e.g. a history counter: 0)
    defaulted: tuple[str, ...] = ()
    #: with a state store: for each evidence field that is an engine-kept counter, how it is counted (function,
    #: entity, window, what counts), so the value in ``evidence`` can be checked; empty without a store
    aggregates: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return trail_entry_document(*_entry_fields(self))


@dataclass(frozen=True, slots=True)
class Decision:
    request_id: str
    decision: Outcome
    trail: tuple[TrailEntry, ...]
    obligations: tuple[Mapping[str, str], ...]
    ruleset: Mapping[str, str]
    engine: Mapping[str, str]
    elapsed_us: int
    as_of: str = ""
    fx_as_of: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: fields the request left out that took a default: the request contract's (``psp_country``, which also sets
    #: the clock, and ``payer.type``) and the pack's declared ones (DOMAIN §5.1 point 7: a caller-supplied history
    #: counter not sent counts as 0), so a decision that relied on a default says so
    defaulted: tuple[str, ...] = ()
    #: with a rollout: the arm that decided (primary or candidate), the candidate's share and the payer's
    #: bucket, and the digest of the pack that decided; None without a rollout
    rollout: Mapping[str, Any] | None = None

    @property
    def allowed(self) -> bool:
        return self.decision is ALLOW

    @property
    def rule_ids(self) -> tuple[str, ...]:
        """The rules that fired (undecided and skipped rules are in the trail too, with their status)."""
        return tuple(entry.rule_id for entry in self.trail if entry.status == FIRED)

    @property
    def undecided_ids(self) -> tuple[str, ...]:
        return tuple(entry.rule_id for entry in self.trail if entry.status == UNDECIDED)

    @property
    def skipped_ids(self) -> tuple[str, ...]:
        return tuple(entry.rule_id for entry in self.trail if entry.status == SKIPPED)

    def to_dict(self) -> dict[str, Any]:
        # a document of its own: nothing in it is shared with the decision
        return decision_document(
            self.request_id, self.decision, list(map(TrailEntry.to_dict, self.trail)),
            list(map(dict, self.obligations)), dict(self.ruleset), dict(self.engine), self.elapsed_us, self.as_of,
            self.fx_as_of, self.extra, self.defaulted, self.rollout)


def trail_entry_document(rule_id: str, category: str, outcome: str, title: str, reason: str,
                         evidence: Mapping[str, Any], source: str, report: str | None, reason_zh: str | None,
                         status: str, missing: tuple[str, ...], defaulted: tuple[str, ...],
                         aggregates: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """A trail entry's JSON document from its fields, in :class:`TrailEntry`'s order: the one layout of
    :meth:`TrailEntry.to_dict`, and of a decision written without making its objects
    (:meth:`~policy_engine.pack.CompiledPack.decide_json`)."""
    out: dict[str, Any] = {
        "rule_id": rule_id,
        "status": status,
        "category": category,
        "outcome": outcome,
        "title": title,
        "reason": reason,
        "evidence": json_evidence(evidence),
        "source": source,
    }
    if report:
        out["report"] = report
    if reason_zh:
        out["reason_zh"] = reason_zh
    if status != FIRED:
        out["missing"] = list(missing)
    if defaulted:
        out["defaulted"] = list(defaulted)
    if aggregates:
        out["aggregates"] = {k: dict(v) for k, v in aggregates.items()}
    return out


def decision_document(request_id: str, decision: Outcome, trail: Sequence[Mapping[str, Any]],
                      obligations: Sequence[Mapping[str, str]], ruleset: Mapping[str, str],
                      engine: Mapping[str, str], elapsed_us: int, as_of: str, fx_as_of: str,
                      extra: Mapping[str, Any], defaulted: tuple[str, ...],
                      rollout: Mapping[str, Any] | None) -> dict[str, Any]:
    """A decision's JSON document from its fields, in :class:`Decision`'s order, the trail as entry documents:
    the one layout of :meth:`Decision.to_dict`, and of a decision written without making its objects
    (:meth:`~policy_engine.pack.CompiledPack.decide_json`). ``extra`` is not written. The trail, obligations,
    ruleset and engine go in as given: a caller that hands the document out passes copies."""
    # written for the hot path (every decision a service returns): the outcome's value as an attribute, not
    # through the enum's property
    out = {
        "request_id": request_id,
        "decision": decision._value_,
        "allowed": decision is ALLOW,
        "trail": trail,
        "obligations": obligations,
        "ruleset": ruleset,
        "engine": engine,
        "as_of": as_of,
        "fx_as_of": fx_as_of,
        "elapsed_us": elapsed_us,
    }
    if defaulted:
        out["defaulted"] = list(defaulted)
    if rollout is not None:
        out["rollout"] = dict(rollout)
    return out


#: The hot path's constructors (fields in declaration order; see :mod:`policy_engine._frozen`).
build_decision = positional_builder(Decision)
build_trail_entry = positional_builder(TrailEntry)
#: a trail entry's fields in declaration order, read in C (the arguments of :func:`trail_entry_document`)
_entry_fields = attrgetter(*(f.name for f in fields(TrailEntry)))
NO_EXTRA: Mapping[str, Any] = MappingProxyType({})  # shared, so immutable


def undecided_reason(rule: Any, status: str, missing: tuple[str, ...]) -> str:
    """The reason of an undecided or skipped rule: what it could not decide and which fields it lacked."""
    lacking = ", ".join(missing) or "a field it reads"
    if status == SKIPPED:
        return (f"Not checked: {rule.title} needs {lacking}, which the request does not state (optional "
                f"enrichment; the rule is skipped).")
    if rule.report:
        return (f"Undecided: whether {rule.title} applies needs {lacking}, which the request does not state; "
                f"the {rule.report} obligation is undecided.")
    return (f"Undecided: {rule.title} cannot be decided because the request does not state {lacking}; "
            f"the payment is held for {rule.on_unknown.replace('_', '-')}.")


def combine(outcomes: list[str], order: tuple[str, ...] | dict[str, int]) -> Outcome:
    """The most severe outcome in the pack's ``decision_order`` (or its precomputed rank); nothing fired
    means allow.

    ``allow`` rules are informational (report flags): they can never make a decision more permissive,
    because every other outcome ranks above them.
    """
    if not outcomes:
        return ALLOW
    rank = order if isinstance(order, dict) else {name: i for i, name in enumerate(order)}
    return _OUTCOMES[min(outcomes, key=rank.__getitem__)]


#: outcomes by value: ``Outcome(value)`` is a Python-level metaclass call on every decision that fired a rule
_OUTCOMES = {outcome.value: outcome for outcome in Outcome}
