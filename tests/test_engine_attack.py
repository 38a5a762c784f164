"""The embedded library attacked as a hostile or careless caller would (session 23's fail-closed sweep): requests
that are not plain JSON data, decisions changed after they were returned, listeners that raise or call back into
the engine, ``explain`` with what is not a rule id. Nothing may end in an allow the plain request would not get,
in a traceback, in a hang, or change what the engine hands out later."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from conftest import RULES, load_cases

from policy_engine import PolicyEngine, load_ruleset
from policy_engine.explain import UnknownRuleError

DEFAULT = load_ruleset(RULES)
CASES = {case["id"]: case for case in load_cases()}


@pytest.fixture(scope="module")
def engine():
    eng = PolicyEngine(DEFAULT)
    yield eng
    eng.close()


def case(case_id: str) -> dict[str, Any]:
    return copy.deepcopy(CASES[case_id]["request"])


# -- explain -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rule_id", [123, 1.5, ["FS-001"], {"FS-001": 1}, b"FS-001"])
def test_explain_refuses_a_rule_id_that_is_not_a_string(engine, rule_id):
    """``explain(request, 123)`` raised a TypeError from the did-you-mean search (it iterates the id)."""
    with pytest.raises(UnknownRuleError, match="rule ids are strings"):
        engine.explain(case("AC-01"), rule_id)
