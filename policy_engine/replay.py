"""Replay a decision log against a pack: re-decide every logged request and report what changed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .decision import FIRED
from .engine import PolicyEngine
from .errors import EvaluationError, RequestError


@dataclass(frozen=True, slots=True)
class Difference:
    line: int
    request_id: str
    logged: str
    replayed: str
    logged_rules: tuple[str, ...]
    replayed_rules: tuple[str, ...]
    logged_digest: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "request_id": self.request_id, "logged": self.logged, "replayed": self.replayed,
                "logged_rules": list(self.logged_rules), "replayed_rules": list(self.replayed_rules),
                "logged_digest": self.logged_digest}


@dataclass(frozen=True, slots=True)
class ReplayReport:
    pack_digest: str
    records: int
    same: int
    differences: tuple[Difference, ...]
    #: digests of the packs that made the logged decisions, with counts, when they are not the replay pack:
    #: such records are still replayed, and reported here rather than silently compared as if alike
    other_digests: dict[str, int] = field(default_factory=dict)
    unreadable: tuple[tuple[int, str], ...] = ()  # (line, why): truncated or corrupt lines
    masked_fields_read: tuple[str, ...] = ()  # masked fields that some rule reads: replay may differ there

    @property
    def ok(self) -> bool:
        return not self.differences and not self.unreadable

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "pack_digest": self.pack_digest, "records": self.records, "same": self.same,
                "differences": [d.to_dict() for d in self.differences], "other_digests": self.other_digests,
                "unreadable": [{"line": n, "error": why} for n, why in self.unreadable],
                "masked_fields_read": list(self.masked_fields_read)}


def replay(engine: PolicyEngine, records: Iterable[tuple[int, Any, str | RequestError | None]]) -> ReplayReport:
    """``records`` yields ``(line, record_or_None, error_or_None)`` as read from the log."""
    digest = engine.ruleset.digest
    read_fields = {p for r in engine.ruleset.rules for p in _fields(r)}
    same = total = 0
    diffs: list[Difference] = []
    others: Counter[str] = Counter()
    unreadable: list[tuple[int, str]] = []
    masked_read: set[str] = set()
    for line, record, problem in records:
        if isinstance(record, dict) and record.get("kind") == "shadow":
            continue  # what a shadow pack would have decided: not a decision to replay
        if problem is not None or not isinstance(record, dict) or "request" not in record or "decision" not in record:
            why = "; ".join(map(str, problem.violations)) if isinstance(problem, RequestError) else problem
            unreadable.append((line, why or "not a decision-log record"))
            continue
        malformed = _malformed(record)
        if malformed is not None:  # edited by hand or by a broken tool: named, never a crash of the whole replay
            unreadable.append((line, f"not a decision-log record: {malformed}"))
            continue
        total += 1
        logged = record["decision"]
        logged_digest = (record.get("ruleset") or {}).get("digest", "")
        if logged_digest != digest:
            others[logged_digest] += 1
        masked_read.update(p for p in record.get("masked", ()) if p in read_fields)
        try:
            now = engine.evaluate(record["request"])
            replayed, rules = now.decision.value, tuple(_entry(e.rule_id, e.status) for e in now.trail)
        except (RequestError, EvaluationError) as exc:
            replayed, rules = f"error: {type(exc).__name__}", ()
        logged_rules = tuple(_entry(t["rule_id"], t.get("status", FIRED)) for t in logged.get("trail", ()))
        if replayed == logged.get("decision") and rules == logged_rules:
            same += 1
        else:
            diffs.append(Difference(line, str(record.get("request_id", "")), str(logged.get("decision")), replayed,
                                    logged_rules, rules, logged_digest))
    return ReplayReport(digest, total, same, tuple(diffs), dict(others), tuple(unreadable),
                        tuple(sorted(masked_read)))


def _malformed(record: dict[str, Any]) -> str | None:
    """What in a decision-log record does not have the shape :class:`~.audit.AuditLog` writes, or None."""
    if not isinstance(record["request"], dict):
        return "request is not an object"
    decision, ruleset, masked = record["decision"], record.get("ruleset", {}), record.get("masked", [])
    if not isinstance(decision, dict) or not isinstance(decision.get("decision"), str):
        return "decision is not a decision object"
    trail = decision.get("trail", [])
    if not isinstance(trail, list) or not all(
            isinstance(e, dict) and isinstance(e.get("rule_id"), str) and isinstance(e.get("status", FIRED), str)
            for e in trail):
        return "decision.trail is not a list of entries with a rule_id and status"
    if not isinstance(ruleset, dict) or not isinstance(ruleset.get("digest", ""), str):
        return "ruleset is not an object with a digest"
    if not isinstance(masked, list) or not all(isinstance(p, str) for p in masked):
        return "masked is not a list of field paths"
    return None


def _entry(rule_id: str, status: str) -> str:
    """A trail entry as the report shows it: the rule id, with its status unless it fired."""
    return rule_id if status == FIRED else f"{rule_id} ({status})"


def _fields(rule) -> tuple[str, ...]:
    from .conditions import fields_read

    return fields_read(rule.when)
