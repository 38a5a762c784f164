"""Every way to leave one thing out of a request: the probe behind the "missing data is never a silent pass"
property (tests/test_missing_data.py) and the omission table (scripts/omissions.py)."""

from __future__ import annotations

import copy
from collections.abc import Iterator


def removals(request: dict) -> Iterator[tuple[str, dict]]:
    """``(path, variant)`` for each leaf field and each object of ``request`` (but the ``request_id``): the
    variant is a deep copy without it."""
    def walk(node: dict, prefix: str) -> Iterator[str]:
        for key, value in node.items():
            yield prefix + key
            if isinstance(value, dict):
                yield from walk(value, f"{prefix}{key}.")

    for path in walk(request, ""):
        if path == "request_id":
            continue
        variant = copy.deepcopy(request)
        *parents, last = path.split(".")
        node = variant
        for part in parents:
            node = node[part]
        del node[last]
        yield path, variant
