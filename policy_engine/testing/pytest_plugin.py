"""pytest plugin: property-test a rule pack from your own test suite.

Enable it with ``-p policy_engine.testing.pytest_plugin`` on the command line (or ``addopts`` in your ini file), or
through the package's ``pytest11`` entry point. It adds

* the option ``--policy-pack PATH`` (or the ini setting ``policy_pack``): the pack under test, default the
  bundled one;
* the fixture ``policy_engine``: a :class:`~policy_engine.PolicyEngine` on that pack (session scope);
* the fixture ``payment_requests``: the strategies of :mod:`policy_engine.testing.strategies` bound to that pack,
  for use with ``st.data()``;
* :func:`check_invariants` (re-exported): run a pack's invariants file and fail with the shrunk counterexamples.

Example::

    from hypothesis import given, strategies as st
    from policy_engine.testing.strategies import requests

    @given(request=requests(funding_type="bnpl", purpose="credit_card_repayment"))
    def test_bnpl_never_repays_a_card(policy_engine, request):
        assert policy_engine.evaluate(request).decision == "deny"

    @given(data=st.data())
    def test_edges_are_decided(policy_engine, payment_requests, data):
        request = data.draw(payment_requests.near_thresholds(purpose="p2p_transfer"))
        assert policy_engine.evaluate(request).decision in ("allow", "review", "step_up", "deny")

    def test_invariants(policy_pack):
        check_invariants(policy_pack)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..engine import PolicyEngine
from ..ruleset import RuleSet

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

    from .invariants import Result

__all__ = ["PackStrategies", "check_invariants"]

# Hypothesis is imported on use, not here: with the pytest11 entry point this module loads in every pytest run
# of an environment that has the package, and Hypothesis is an optional dependency.


def check_invariants(pack: str | Path | None = None, invariants: str | Path | None = None, **options: Any
                     ) -> tuple[Result, ...]:
    """:func:`policy_engine.testing.invariants.check_invariants` (``examples=``, ``seed=``, ``matcher=``)."""
    from .invariants import check_invariants as run

    return run(pack, invariants, **options)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("policy-engine", "payment policy engine")
    group.addoption("--policy-pack", default=None, metavar="PATH",
                    help="rule pack for the policy_engine fixture (default: ini policy_pack, else the bundled pack)")
    parser.addini("policy_pack", "rule pack for the policy_engine fixture", default="")


@dataclass(frozen=True, slots=True)
class PackStrategies:
    """The request strategies, with the pack filled in where a strategy needs one."""

    ruleset: RuleSet

    def valid(self, **knobs: Any) -> SearchStrategy[dict]:
        """:func:`policy_engine.testing.strategies.requests` (same keyword knobs) for this pack."""
        from . import strategies

        return strategies.requests(ruleset=self.ruleset, **knobs)

    def near_thresholds(self, **knobs: Any) -> SearchStrategy[dict]:
        """:func:`policy_engine.testing.strategies.near_thresholds` on this pack."""
        from . import strategies

        return strategies.near_thresholds(self.ruleset, **knobs)

    def invalid(self) -> SearchStrategy[Any]:
        """:func:`policy_engine.testing.strategies.invalid_requests`."""
        from . import strategies

        return strategies.invalid_requests()


@pytest.fixture(scope="session")
def policy_pack(request: pytest.FixtureRequest) -> str | None:
    """The pack under test: ``--policy-pack``, else the ini ``policy_pack``, else ``None`` (the bundled pack)."""
    return request.config.getoption("--policy-pack") or request.config.getini("policy_pack") or None


@pytest.fixture(scope="session")
def policy_engine(policy_pack: str | None) -> Iterator[PolicyEngine]:
    engine = PolicyEngine.from_path(policy_pack)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def payment_requests(policy_engine: PolicyEngine) -> PackStrategies:
    return PackStrategies(policy_engine.ruleset)
