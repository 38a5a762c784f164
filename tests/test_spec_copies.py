"""The repository's copies of the shared documents equal ../shared wherever that is beside the checkout: the
specification in tests/data (what the tests check against) and the design and domain documents in docs/ (what
code comments cite as ``DESIGN §N`` and ``DOMAIN §N.N``)."""

from __future__ import annotations

import pytest
from conftest import REPO, SHARED_SPEC_DIR, SPEC_DATA

SHARED_DIR = SHARED_SPEC_DIR.parent
DOCS = REPO / "docs"
#: each copy in the repository, and the file it copies
COPIES = [
    (SPEC_DATA / "cases.jsonl", SHARED_SPEC_DIR / "cases.jsonl"),
    (SPEC_DATA / "rule-catalogue.yaml", SHARED_SPEC_DIR / "rule-catalogue.yaml"),
    (DOCS / "DESIGN.md", SHARED_DIR / "DESIGN.md"),
    (DOCS / "DOMAIN.md", SHARED_SPEC_DIR / "DOMAIN.md"),
]


@pytest.mark.parametrize(("copy", "upstream"), COPIES, ids=[c.relative_to(REPO).as_posix() for c, _ in COPIES])
def test_spec_copies_are_current(copy, upstream):
    if not upstream.exists():
        pytest.skip(f"{upstream} is not beside this checkout; {copy.relative_to(REPO)} is used as is")
    assert copy.read_bytes() == upstream.read_bytes(), (
        f"{copy.relative_to(REPO)} differs from {upstream}: copy the new version in unchanged and rerun the tests")
