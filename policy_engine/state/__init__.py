"""State stores: where the engine keeps the payments its counters are computed from (DESIGN.md §10).

>>> store = open_store("sqlite:///var/lib/policy/state.db")   # or "memory://" in tests
>>> engine = PolicyEngine.from_path(state=store)               # or state="sqlite:///..."

URLs: ``memory://`` (one process; nothing survives it: another process or engine instance does not see it),
``sqlite:///path`` (a relative path after the three slashes, an absolute one with four: ``sqlite:////var/lib/x.db``,
as SQLAlchemy writes them) and ``redis://host:port/db`` for many engine instances (needs the ``state-redis``
extra; the ``redis`` client is imported only when such a URL is opened, so the embedded core stays light).
"""

from __future__ import annotations

from ..errors import PolicyEngineError
from .memory import MemoryStore
from .sqlite import SQLiteStore
from .store import Entry, Payment, Recorded, Store, Transaction, redacted


class StoreURLError(PolicyEngineError, ValueError):
    """A state URL this engine cannot open (unknown scheme or no path)."""


def open_store(url: str) -> Store:
    """The store a URL names (see the module docstring)."""
    if url == "memory://":
        return MemoryStore()
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return SQLiteStore(url[len("sqlite:///"):], url)
    if url.startswith(("redis://", "rediss://")):
        try:
            from .redis import RedisStore
        except ModuleNotFoundError as exc:
            raise StoreURLError(f"state URL {redacted(url)!r} needs the redis client: pip install "
                                "'payment-policy-engine[state-redis]'") from exc
        return RedisStore(url)
    raise StoreURLError(f"state URL {redacted(url)!r} is not supported: use memory:// (one process), sqlite:///path or "
                        "redis://host:port/db")


__all__ = ["Entry", "MemoryStore", "Payment", "Recorded", "SQLiteStore", "Store", "StoreURLError",
           "Transaction", "open_store"]
