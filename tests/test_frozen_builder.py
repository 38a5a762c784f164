"""The hot path's positional constructor makes the same immutable objects the dataclass does."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from policy_engine._frozen import positional_builder
from policy_engine.decision import NO_EXTRA, Decision, Outcome, TrailEntry, build_decision, build_trail_entry


def test_built_objects_equal_dataclass_objects_and_stay_frozen():
    entry = build_trail_entry("R-1", "risk", "deny", "t", "reason", {"amount.value": Decimal("1.5")}, "s", None,
                              None, "fired", (), (), NO_EXTRA)
    assert entry == TrailEntry("R-1", "risk", "deny", "t", "reason", {"amount.value": Decimal("1.5")}, "s")
    decision = build_decision("r-1", Outcome.DENY, (entry,), (), {"pack": "p"}, {"matcher": "python"}, 7,
                              "2025-06-10", "2025-01-01", NO_EXTRA, (), None)
    assert decision == Decision("r-1", Outcome.DENY, (entry,), (), {"pack": "p"}, {"matcher": "python"}, 7,
                                "2025-06-10", "2025-01-01")
    assert decision.to_dict()["trail"][0]["evidence"] == {"amount.value": 1.5}
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.decision = Outcome.ALLOW  # type: ignore[misc]
    with pytest.raises(TypeError):
        decision.extra["x"] = 1  # type: ignore[index]  -- the shared empty mapping is read-only


def test_builder_refuses_classes_it_would_build_wrongly():
    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        a: int

        def __post_init__(self) -> None:
            assert self.a > 0

    with pytest.raises(TypeError, match="slotted"):
        positional_builder(NoSlots)
    with pytest.raises(TypeError, match="__post_init__"):
        positional_builder(Checked)
