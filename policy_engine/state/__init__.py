"""State stores: where the engine keeps the payments its counters are computed from (DESIGN.md §10).

>>> store = open_store("sqlite:///var/lib/policy/state.db")   # or "memory://" in tests
>>> engine = PolicyEngine.from_path(state=store)               # or state="sqlite:///..."

URLs: ``memory://`` (one process; nothing survives it) and ``sqlite:///path`` (a relative path after the three
slashes, an absolute one with four: ``sqlite:////var/lib/x.db``, as SQLAlchemy writes them).
"""

from __future__ import annotations

from ..errors import PolicyEngineError
from .memory import MemoryStore
from .sqlite import SQLiteStore
from .store import Entry, Payment, Recorded, Store, Transaction


class StoreURLError(PolicyEngineError, ValueError):
    """A state URL this engine cannot open (unknown scheme or no path)."""


def open_store(url: str) -> Store:
    """The store a URL names (see the module docstring)."""
    if url == "memory://":
        return MemoryStore()
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return SQLiteStore(url[len("sqlite:///"):], url)
    raise StoreURLError(f"state URL {url!r} is not supported: use memory:// (one process) or sqlite:///path")


__all__ = ["Entry", "MemoryStore", "Payment", "Recorded", "SQLiteStore", "Store", "StoreURLError",
           "Transaction", "open_store"]
