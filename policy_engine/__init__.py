"""Payment policy engine: YAML rule packs evaluated against payment requests, with a reason trail.

>>> from policy_engine import PolicyEngine
>>> engine = PolicyEngine.from_path()            # bundled default pack
>>> engine.evaluate(request).decision            # Outcome.DENY, .trail, .to_dict()
"""

__version__ = "0.1.0"

from .decision import Decision, Outcome, TrailEntry
from .engine import PolicyEngine
from .errors import (
    EvaluationError,
    Issue,
    MatcherUnavailableError,
    PolicyEngineError,
    RequestError,
    RuleSetError,
    Violation,
)
from .loader import load_ruleset
from .ruleset import Rule, RuleSet

__all__ = [
    "Decision",
    "EvaluationError",
    "Issue",
    "MatcherUnavailableError",
    "Outcome",
    "PolicyEngine",
    "PolicyEngineError",
    "RequestError",
    "Rule",
    "RuleSet",
    "RuleSetError",
    "TrailEntry",
    "Violation",
    "__version__",
    "load_ruleset",
]
