"""The package's exception types. Every message names where the problem is and what to do about it."""

from __future__ import annotations

from dataclasses import dataclass


class PolicyEngineError(Exception):
    """Base class of every error this package raises on purpose."""


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem in a rule pack, positioned as ``file:line:col`` (1-based)."""

    file: str
    line: int
    col: int
    rule_id: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}"
        return f"{where} {self.rule_id}: {self.message}" if self.rule_id else f"{where}: {self.message}"


class RuleSetError(PolicyEngineError):
    """A rule pack could not be loaded. ``issues`` lists every problem found, in file order."""

    def __init__(self, issues: list[Issue] | tuple[Issue, ...]):
        self.issues = tuple(issues)
        count = len(self.issues)
        head = f"rule pack has {count} error{'s' if count != 1 else ''}; nothing was loaded"
        super().__init__("\n".join([head, *(f"  {i}" for i in self.issues)]))


@dataclass(frozen=True, slots=True)
class Violation:
    """One problem in a request: a JSON path such as ``$.amount.value`` and what is wrong there."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class RequestError(PolicyEngineError):
    """A request is not valid, so it is not evaluated. ``violations`` lists every problem with its path."""

    def __init__(self, violations: list[Violation] | tuple[Violation, ...], request_id: str | None = None):
        self.violations = tuple(violations)
        self.request_id = request_id
        head = "invalid payment request" + (f" {request_id!r}" if request_id else "")
        super().__init__("\n".join([head, *(f"  {v}" for v in self.violations)]))

    def to_dict(self) -> dict:
        return {
            "error": "invalid_request",
            "request_id": self.request_id,
            "violations": [{"path": v.path, "message": v.message} for v in self.violations],
        }


class EvaluationError(PolicyEngineError):
    """The engine could not evaluate a valid request. Never treat this as ``allow``."""

    def __init__(self, message: str, request_id: str | None = None):
        self.request_id = request_id
        super().__init__(message)

    def to_dict(self) -> dict:
        return {"error": "evaluation_failed", "request_id": self.request_id, "message": str(self)}


class MatcherUnavailableError(PolicyEngineError):
    """The requested matcher cannot run on this interpreter (e.g. durable-rules on Python 3.13)."""
