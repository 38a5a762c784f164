"""Payment policy engine: YAML rule packs evaluated against payment requests, with a reason trail.

>>> from policy_engine import PolicyEngine
>>> engine = PolicyEngine.from_path()            # bundled default pack
>>> engine.evaluate(request).decision            # Outcome.DENY, .trail, .to_dict()
"""

from ._version import __version__
from .decision import Decision, Outcome, TrailEntry
from .engine import PolicyEngine
from .errors import (
    EvaluationError,
    Issue,
    MatcherUnavailableError,
    PolicyEngineError,
    RequestError,
    RuleSetError,
    StateError,
    StoreUnavailableError,
    Violation,
)
from .loader import load_ruleset
from .pack import CompiledPack
from .ruleset import Rule, RuleSet
from .signing import SignatureError, SignatureInfo
from .traffic import CallContext, DecisionEvent, Rollout


def __getattr__(name: str):
    # Lazy: the backtest machinery (multiprocessing, CSV, HTML) loads only when used.
    if name in ("backtest", "BacktestResult"):
        from . import backtesting

        return getattr(backtesting, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BacktestResult",
    "CallContext",
    "CompiledPack",
    "Decision",
    "DecisionEvent",
    "EvaluationError",
    "Issue",
    "MatcherUnavailableError",
    "Outcome",
    "PolicyEngine",
    "PolicyEngineError",
    "RequestError",
    "Rollout",
    "Rule",
    "RuleSet",
    "RuleSetError",
    "SignatureError",
    "SignatureInfo",
    "StateError",
    "StoreUnavailableError",
    "TrailEntry",
    "Violation",
    "__version__",
    "backtest",
    "load_ruleset",
]
