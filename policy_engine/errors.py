"""The package's exception types. Every message names where the problem is and what to do about it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar


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


class IssueListError(PolicyEngineError):
    """Files a person wrote could not be used. ``issues`` lists every problem found, in file order; nothing of
    those files was used (subclasses say which files and what did not happen)."""

    #: what the files are, and what did not happen because of the issues
    subject: ClassVar[str]
    consequence: ClassVar[str]
    #: the name of ``Issue.rule_id`` in machine-readable output (the id of what the issue is about)
    id_key: ClassVar[str] = "rule_id"

    def __init__(self, issues: Iterable[Issue]):
        self.issues = tuple(issues)
        super().__init__("\n".join([self.summary, *(f"  {i}" for i in self.issues)]))

    @property
    def summary(self) -> str:
        count = len(self.issues)
        return f"{count} error{'s' if count != 1 else ''} in the {self.subject}; {self.consequence}"


class RuleSetError(IssueListError):
    """A rule pack could not be loaded. ``issues`` lists every problem found, in file order."""

    subject = "rule pack"
    consequence = "nothing was loaded"


#: A key longer than this is shown cut short in a JSON path: a path is for a person, and the key is the caller's.
_PATH_KEY_LIMIT = 64


def json_path_step(key: str) -> str:
    """One step of a JSON path: ``.name`` for a plain name, ``['odd key']`` otherwise (long keys cut short)."""
    if len(key) > _PATH_KEY_LIMIT:
        return f"[{key[:_PATH_KEY_LIMIT]!r}…]"
    return f".{key}" if key.isidentifier() else f"[{key!r}]"


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


class RequestTextError(RequestError):
    """Request text that is not JSON at all (malformed, not UTF-8), as opposed to JSON that is ambiguous or
    invalid: ``detail`` is the decoder's message, so a service can answer "invalid JSON" as it does for any body."""

    def __init__(self, detail: str):
        self.detail = detail
        super().__init__([Violation("$", f"not valid JSON: {detail}")])


class EvaluationError(PolicyEngineError):
    """The engine could not evaluate a valid request. Never treat this as ``allow``."""

    def __init__(self, message: str, request_id: str | None = None):
        self.request_id = request_id
        super().__init__(message)

    def to_dict(self) -> dict:
        return {"error": "evaluation_failed", "request_id": self.request_id, "message": str(self)}


class StoreUnavailableError(EvaluationError):
    """The state store cannot be reached (or is corrupt): nothing is decided without its counters. Unlike other
    evaluation failures this one is the store's, so a service answers "unavailable, retry" rather than "fault"."""


class StateError(PolicyEngineError):
    """The state store refuses an operation on a request's record: ``code`` is ``conflict`` (a ``request_id``
    reused with a different body) or ``unknown_request`` (a status reported for a payment never evaluated)."""

    def __init__(self, code: str, message: str, request_id: str | None = None):
        self.code = code
        self.request_id = request_id
        super().__init__(message)

    def to_dict(self) -> dict:
        return {"error": self.code, "request_id": self.request_id, "message": str(self)}


class MatcherUnavailableError(PolicyEngineError):
    """The requested matcher cannot run on this interpreter (e.g. durable-rules on Python 3.13)."""
