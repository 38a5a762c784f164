"""``memory://``: recorded payments in this process's memory. For tests and one-process tools only: nothing
survives the process and another process (or another engine instance) does not see it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..aggregates import PENDING, Row
from .store import Payment, Recorded, unknown_request


@dataclass(slots=True)
class _Payment:
    digest: str
    outcome: str
    status: str
    decision: str


class MemoryStore:
    """One lock around everything: evaluations are serialised, which is what makes read-then-record atomic."""

    url = "memory://"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._payments: dict[str, _Payment] = {}
        # (aggregate, entity) -> [(instant, request_id, value, matches, event)], in arrival order
        self._entries: dict[tuple[str, str], list[tuple[int, str, str | None, bool, bool]]] = {}

    @contextmanager
    def transaction(self) -> Iterator[MemoryStore]:
        with self._lock:
            yield self

    # -- Transaction (only called inside transaction()) ---------------------------------------------------
    def recorded(self, request_id: str) -> Recorded | None:
        found = self._payments.get(request_id)
        return None if found is None else Recorded(found.digest, found.decision, found.status)

    def rows(self, aggregate: str, entity: str, lo: int, hi: int) -> list[Row]:
        payments = self._payments
        return [Row(instant, value, matches, event, payments[rid].outcome, payments[rid].status)
                for instant, rid, value, matches, event in self._entries.get((aggregate, entity), ())
                if lo <= instant < hi]

    def record(self, payment: Payment) -> None:
        self._payments[payment.request_id] = _Payment(payment.digest, payment.outcome, PENDING, payment.decision)
        for e in payment.entries:
            rows = self._entries.setdefault((e.aggregate, e.entity), [])
            if e.keep_from is not None:
                rows[:] = [row for row in rows if row[0] >= e.keep_from]
            rows.append((payment.instant, payment.request_id, e.value, e.matches, e.event))

    # -- Store ----------------------------------------------------------------------------------------------
    def report(self, request_id: str, status: str) -> None:
        with self._lock:
            found = self._payments.get(request_id)
            if found is None:
                raise unknown_request(request_id, "this store")
            found.status = status

    def ping(self) -> None:
        """Always reachable: it is this process's memory."""

    def close(self) -> None:
        """Nothing to release."""
