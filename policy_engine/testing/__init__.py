"""Tools for testing rule packs: the analyst test runner with coverage, Hypothesis strategies, invariants.

Submodules are imported on use so that ``import policy_engine`` never needs pytest or Hypothesis, and so that
``policy_engine.testing.run_tests`` costs nothing until it is called.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public names and the submodule that defines each.
_LAZY = {
    "run_tests": "runner",
    "TestReport": "runner",
    "CaseResult": "runner",
    "Coverage": "runner",
    "RuleTestError": "casefile",
    "to_junit": "junit",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
