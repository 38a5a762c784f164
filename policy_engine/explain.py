"""Condition-level explanation of a decision: every rule's condition tree with each leaf's value and result.

The explanation is computed with the reference evaluator (:func:`policy_engine.conditions.evaluate_leaf`) on the
same prepared request the matchers see, so it states the semantics plainly; the test suite checks that the rules
it says fire are exactly the rules the engine's matcher fires.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any, Union

from .conditions import (
    All,
    Any_,
    Leaf,
    ListItem,
    Node,
    evaluate_leaf,
    kleene_all,
    kleene_any,
    kleene_not,
    unknown_fields,
)
from .decision import FIRED, SKIPPED, UNDECIDED, combine, json_value
from .diagnostics import did_you_mean
from .errors import PolicyEngineError
from .operators import Op, Shape
from .pack import CompiledPack
from .request import PreparedRequest
from .ruleset import SKIP, Rule


class UnknownRuleError(PolicyEngineError):
    """``explain(rule_id=...)`` named a rule the pack does not have."""

    def __init__(self, rule_id: object, known: list[str]):
        # an id of another type (a number, a list) is named as it is: the did-you-mean search reads a string
        hint = did_you_mean(rule_id, known) if isinstance(rule_id, str) else " (rule ids are strings)"
        super().__init__(f"the pack has no rule {rule_id!r}{hint}")


def _date(day: int | None) -> str | None:
    return None if day is None else dt.date.fromordinal(day).isoformat()


@dataclass(frozen=True, slots=True)
class LeafResult:
    """One leaf: what it read, what it compared with, and the result."""

    field: str  # the operand as written: a path, or `a + b` for an `add`
    op: Op
    result: bool | None  # None: unknown (a field the leaf needs is missing)
    value: Any  # the operand's value on this request; None when missing
    parts: tuple[tuple[str, Any], ...] = ()  # an `add`'s operands and their values (declared defaults filled in)
    expected: Any = None  # the constant: a value, (lo, hi) for between, the applicable members for in / not_in
    list_name: str | None = None
    matched: ListItem | None = None  # the list item equal to the value, even if its dates exclude this day
    matched_applies: bool = False
    ref: str | None = None
    ref_value: Any = None
    pos: tuple[str, int, int] | None = None
    defaulted: tuple[str, ...] = ()  # fields the request left out that took the pack's declared default
    aggregates: tuple[tuple[str, Mapping[str, str]], ...] = ()  # with a store: how each counter read is counted
    threshold: float | None = None  # `screen`: the least score that is a hit
    screened: Mapping[str, Any] | None = None  # `screen`: the best match (the trail evidence of a hit)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"node": "leaf", "field": self.field, "op": self.op, "result": self.result,
                               "value": json_value(self.value), "missing": self.value is None}
        if self.defaulted:
            out["defaulted"] = list(self.defaulted)
        if self.aggregates:
            out["aggregates"] = {p: dict(d) for p, d in self.aggregates}
        if self.parts:
            out["parts"] = {p: json_value(v) for p, v in self.parts}
        if self.ref is not None:
            out["ref"] = self.ref
            out["ref_value"] = json_value(self.ref_value)
        elif self.op.spec.shape is Shape.RANGE:
            out["expected"] = [json_value(v) for v in self.expected]
        elif self.list_name is not None:
            out["list"] = self.list_name
            if self.threshold is not None:
                out["threshold"] = self.threshold
                out["best_match"] = self.screened
        elif isinstance(self.expected, tuple):
            out["expected"] = [json_value(v) for v in self.expected]
        elif self.op.spec.shape is not Shape.NONE:
            out["expected"] = json_value(self.expected)
        if self.matched is not None:
            out["matched_item"] = {"value": json_value(self.matched.value), "from": _date(self.matched.start),
                                   "to": _date(self.matched.end), "applies": self.matched_applies}
        if self.pos is not None:
            out["at"] = f"{self.pos[0]}:{self.pos[1]}:{self.pos[2]}"
        return out


@dataclass(frozen=True, slots=True)
class GroupResult:
    kind: str  # all | any | not
    result: bool | None  # None: unknown (Kleene logic over the children)
    children: tuple[NodeResult, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.kind, "result": self.result, "children": [c.to_dict() for c in self.children]}


NodeResult = Union[LeafResult, GroupResult]  # noqa: UP007 -- a runtime alias used before GroupResult is complete


@dataclass(frozen=True, slots=True)
class RuleExplanation:
    rule_id: str
    title: str
    category: str
    outcome: str
    report: str | None
    in_force: bool
    effective_from: str | None
    effective_to: str | None
    condition: NodeResult  # evaluated even when the rule is not in force, to show what it would have done
    fired: bool
    location: str
    status: str | None = None  # fired | undecided | skipped, or None when the rule does not apply
    on_unknown: str = "review"
    missing: tuple[str, ...] = ()  # unless fired: the fields whose absence leaves the condition unknown

    def to_dict(self) -> dict[str, Any]:
        out = {"rule_id": self.rule_id, "title": self.title, "category": self.category, "outcome": self.outcome,
               "report": self.report, "in_force": self.in_force,
               "effective": {"from": self.effective_from, "to": self.effective_to}, "fired": self.fired,
               "status": self.status, "on_unknown": self.on_unknown, "at": self.location,
               "condition": self.condition.to_dict()}
        if self.missing:
            out["missing"] = list(self.missing)
        return out


@dataclass(frozen=True, slots=True)
class Explanation:
    request_id: str
    as_of: str
    fx_as_of: str
    decision: str  # over every rule of the pack, even when the explanation shows one
    fired: tuple[str, ...]  # every fired rule, in pack order
    ruleset: Mapping[str, str]
    rules: tuple[RuleExplanation, ...]
    undecided: tuple[str, ...] = ()  # every undecided rule (not skipped), in pack order
    skipped: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "as_of": self.as_of, "fx_as_of": self.fx_as_of,
                "decision": self.decision, "fired": list(self.fired), "undecided": list(self.undecided),
                "skipped": list(self.skipped), "ruleset": dict(self.ruleset),
                "rules": [r.to_dict() for r in self.rules]}


def explain(pack: CompiledPack, request: Any, rule_id: str | None = None, prepared: PreparedRequest | None = None,
            aggregates: Mapping[str, Mapping[str, str]] | None = None) -> Explanation:
    """Explain every rule of ``pack`` (or only ``rule_id``) for one request: ``prepared`` by the pack unless
    given (the engine gives it with a store's counters in it, and ``aggregates``: how each counter is counted).

    Raises :class:`~policy_engine.errors.RequestError` for an invalid request, :class:`UnknownRuleError` for a
    rule id the pack does not have.
    """
    ruleset = pack.ruleset
    if rule_id is not None and (not isinstance(rule_id, str) or rule_id not in {r.id for r in ruleset.rules}):
        raise UnknownRuleError(rule_id, [r.id for r in ruleset.rules])
    if prepared is None:
        prepared = pack.prepare(request)
    context = _Context(prepared.view, prepared.day, frozenset(prepared.defaulted), aggregates or {})
    day = prepared.day
    explained = tuple(_rule(rule, context) for rule in ruleset.rules)
    fired = tuple(r for r in explained if r.status == FIRED)
    undecided = tuple(r for r in explained if r.status == UNDECIDED)
    return Explanation(
        request_id=prepared.request_id, as_of=dt.date.fromordinal(day).isoformat(), fx_as_of=prepared.fx.as_of_iso,
        decision=combine([r.outcome for r in fired] + [r.on_unknown for r in undecided],
                         ruleset.decision_order).value,
        fired=tuple(r.rule_id for r in fired), ruleset=pack.ruleset_info,
        rules=tuple(r for r in explained if rule_id is None or r.rule_id == rule_id),
        undecided=tuple(r.rule_id for r in undecided),
        skipped=tuple(r.rule_id for r in explained if r.status == SKIPPED))


@dataclass(frozen=True, slots=True)
class _Context:
    """What every leaf is explained against: the prepared view and date, the fields that took a declared
    default, and (with a store) how each counter is counted."""

    view: Mapping[str, Any]
    day: int
    defaulted: frozenset[str]
    aggregates: Mapping[str, Mapping[str, str]]


def _rule(rule: Rule, context: _Context) -> RuleExplanation:
    condition = _node(rule.when, context)
    day = context.day
    in_force = rule.in_force(day)
    status = missing = None
    if in_force and condition.result is True:
        status = FIRED
    elif in_force and condition.result is None:
        status = SKIPPED if rule.on_unknown == SKIP else UNDECIDED
        missing = unknown_fields(rule.when, context.view, day)
    return RuleExplanation(rule.id, rule.title, rule.category, rule.outcome, rule.report, in_force,
                           _date(rule.effective_from), _date(rule.effective_to), condition,
                           status == FIRED, rule.location, status, rule.on_unknown, missing or ())


def _node(node: Node, context: _Context) -> NodeResult:
    # Every child is evaluated (no short-circuit) so that the explanation shows every leaf's result.
    if isinstance(node, Leaf):
        return _leaf(node, context)
    if isinstance(node, All | Any_):
        children = tuple(_node(c, context) for c in node.children)
        results = [c.result for c in children]
        return GroupResult("all" if isinstance(node, All) else "any",
                           kleene_all(results) if isinstance(node, All) else kleene_any(results), children)
    child = _node(node.child, context)
    return GroupResult("not", kleene_not(child.result), (child,))


def _leaf(leaf: Leaf, context: _Context) -> LeafResult:
    view, day = context.view, context.day
    value = leaf.operand.value(view)
    parts = tuple((p, view.get(p)) for p in leaf.operand.paths) if leaf.operand.is_sum else ()
    expected: Any = leaf.value
    matched = screened = None
    if leaf.screen is not None and value is not None:
        screened = leaf.screen.match(view, day)  # type: ignore[arg-type]
    if leaf.items is not None:
        expected = tuple(i.value for i in leaf.items if i.applies(day))
        matched = next((i for i in leaf.items if value is not None and i.value == value), None)
    return LeafResult(field=leaf.operand.label, op=leaf.op, result=evaluate_leaf(leaf, view, day), value=value,
                      parts=parts, expected=expected, list_name=leaf.list_name, matched=matched,
                      matched_applies=matched is not None and matched.applies(day), ref=leaf.ref,
                      ref_value=view.get(leaf.ref) if leaf.ref else None, pos=leaf.pos,
                      defaulted=tuple(p for p in leaf.fields() if p in context.defaulted),
                      aggregates=tuple((p, context.aggregates[p]) for p in leaf.fields() if p in context.aggregates),
                      threshold=leaf.screen.threshold if leaf.screen is not None else None, screened=screened)


# -- text rendering ----------------------------------------------------------------------------------------
MAX_LIST_SHOWN = 8


def show(value: Any) -> str:
    """A value for a terminal: strings quoted, exact decimals in full, rationals to six places (marked ≈)."""
    if value is None:
        return "missing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Fraction):
        if value.denominator == 1:
            return str(value.numerator)
        rounded = json_value(value)
        return f"≈{rounded}"
    if isinstance(value, Decimal):
        return f"{value.normalize():f}"
    return str(value)


def _comparison(leaf: LeafResult) -> str:
    shape = leaf.op.spec.shape
    if shape is Shape.NONE:
        return f"{leaf.field} {leaf.op}"
    if leaf.ref is not None:
        return f"{leaf.field} {leaf.op} {leaf.ref}"
    if shape is Shape.RANGE:
        lo, hi = leaf.expected
        return f"{leaf.field} {leaf.op} [{show(lo)}, {show(hi)})"
    if leaf.threshold is not None:
        return f"{leaf.field} {leaf.op} list {leaf.list_name} threshold {leaf.threshold}"
    if isinstance(leaf.expected, tuple):
        shown = ", ".join(show(v) for v in leaf.expected[:MAX_LIST_SHOWN])
        more = f", … {len(leaf.expected) - MAX_LIST_SHOWN} more" if len(leaf.expected) > MAX_LIST_SHOWN else ""
        where = f"list {leaf.list_name} " if leaf.list_name else ""
        return f"{leaf.field} {leaf.op} {where}[{shown}{more}]"
    return f"{leaf.field} {leaf.op} {show(leaf.expected)}"


def _observed(leaf: LeafResult) -> str:
    def note(path: str) -> str:
        return " (default: not sent)" if path in leaf.defaulted else ""

    text = f"value {show(leaf.value)}"
    if leaf.parts:
        shown = ", ".join(f"{p} {show(v)}{note(p)}" for p, v in leaf.parts)
        text += f" ({shown})"
    elif leaf.defaulted:
        text += note(leaf.field)
    if leaf.ref is not None:
        text += f", {leaf.ref} {show(leaf.ref_value)}"
    if leaf.screened is not None:
        found = leaf.screened
        text += (f"; best match {found['entry_id']} {show(found['matched_name'])}, score {found['score']}"
                 if found["entry_id"] is not None else "; no list entry shares a token with it")
        text += "".join(f" ({note})" for note in found.get("secondary", ()))
    if leaf.result is None:
        text += " — unknown"
    if leaf.matched is not None and not leaf.matched_applies:
        dates = " ".join(f"{k} {_date(d)}" for k, d in (("from", leaf.matched.start), ("to", leaf.matched.end)) if d)
        text += f"; listed only {dates}, not on this date"
    return text


def _counted(definition: Mapping[str, str]) -> str:
    """How a counter is counted, in one line: ``sum derived.amount_cny by payer.id, calendar day ...``."""
    where = f" where {definition['where']}" if "where" in definition else ""
    d = definition
    return f"{d['function']} by {d['by']}, {d['window']}{where}, counts {d['counts']}"


def render_node(node: NodeResult, indent: int = 0) -> list[str]:
    mark = "?" if node.result is None else "✓" if node.result else "✗"
    pad = "  " * indent
    if isinstance(node, LeafResult):
        return [f"{pad}{mark} {_comparison(node)}   — {_observed(node)}",
                *(f"{pad}    {path} = {_counted(d)}" for path, d in node.aggregates)]
    lines = [f"{pad}{mark} {node.kind}"]
    for child in node.children:
        lines.extend(render_node(child, indent + 1))
    return lines


def render(explanation: Explanation) -> str:
    """The explanation for a person: a header, then each rule's tree with ✓ / ✗ marks."""
    info = explanation.ruleset
    lines = [f"{explanation.request_id}: {explanation.decision} (pack {info['pack']} {info['version']}, as of "
             f"{explanation.as_of}, FX table {explanation.fx_as_of})",
             f"fired: {', '.join(explanation.fired) if explanation.fired else 'no rule'}"]
    if explanation.undecided:
        lines.append(f"undecided (a field they need is missing): {', '.join(explanation.undecided)}")
    if explanation.skipped:
        lines.append(f"skipped (optional enrichment missing): {', '.join(explanation.skipped)}")
    for rule in explanation.rules:
        report = f", report {rule.report}" if rule.report else ""
        if rule.fired:
            status = "FIRED"
        elif rule.status in (UNDECIDED, SKIPPED):
            held = "skipped" if rule.status == SKIPPED else f"held for {rule.on_unknown}"
            status = f"UNDECIDED: missing {', '.join(rule.missing)} ({held})"
        elif not rule.in_force:
            window = " ".join(f"{k} {d}" for k, d in (("from", rule.effective_from), ("to", rule.effective_to)) if d)
            status = f"not in force on {explanation.as_of} (effective {window}), so it does not fire"
        else:
            status = "not fired"
        lines += ["", f"{rule.rule_id} [{rule.outcome}{report}] {rule.title} — {status}"]
        lines += render_node(rule.condition, 1)
    return "\n".join(lines) + "\n"
