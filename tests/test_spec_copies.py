"""The copies of the specification in tests/data equal ../shared/spec wherever that is present."""

from __future__ import annotations

import pytest
from conftest import SHARED_SPEC_DIR, SPEC_DATA


@pytest.mark.parametrize("name", ["cases.jsonl", "rule-catalogue.yaml"])
def test_spec_copies_are_current(name):
    upstream = SHARED_SPEC_DIR / name
    if not upstream.exists():
        pytest.skip(f"{upstream} is not beside this checkout; the copy in tests/data is used as is")
    assert (SPEC_DATA / name).read_bytes() == upstream.read_bytes(), (
        f"tests/data/{name} differs from {upstream}: copy the new specification in and rerun the tests")
