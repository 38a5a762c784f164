"""Tools for testing rule packs: the analyst test runner with coverage, Hypothesis strategies, invariants.

Submodules are imported on use so that ``import policy_engine`` never needs pytest or Hypothesis.
"""
