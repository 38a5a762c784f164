"""Matchers: given a request's facts, which rules fire. Both implement :class:`Matcher`."""

from __future__ import annotations

from typing import Protocol

from ..compiler import Program
from ..errors import MatcherUnavailableError
from ..request import PreparedRequest


class Matcher(Protocol):
    name: str

    def match(self, prepared: PreparedRequest) -> list[int]:
        """Indexes (pack order, ascending) of the rules that fire for a validated, normalised request."""
        ...

    def close(self) -> None:
        """Release native resources; in-flight ``match`` calls finish first."""
        ...


def durable_available() -> tuple[bool, str | None]:
    """Whether durable-rules imports here, and if not, why."""
    try:
        import durable_rules_engine  # noqa: F401
    except Exception as exc:  # ImportError, or a broken C extension on new interpreters
        return False, f"durable-rules cannot be imported on this interpreter: {exc}"
    return True, None


MATCHERS = ("durable", "python")


def build_matcher(name: str, program: Program) -> Matcher:
    if name == "python":
        from .python import PythonMatcher

        return PythonMatcher(program)
    if name == "durable":
        ok, why = durable_available()
        if not ok:
            raise MatcherUnavailableError(f"{why}; use --matcher python")
        from .durable import DurableMatcher

        return DurableMatcher(program)
    raise MatcherUnavailableError(f"unknown matcher {name!r}; choose one of {', '.join(MATCHERS)}")
