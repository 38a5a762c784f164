"""The store protocol: what the engine needs from a place that keeps recorded payments.

A store keeps each evaluated payment once (by ``request_id``) with the body's digest, its instant, the decision
and the downstream status, plus one :class:`Entry` per declared aggregate whose entity the payment has. Reading
counters and recording the payment happen in one :meth:`Store.transaction`, so two evaluations for one entity
never both read the counters before either records (the SQLite store serialises writers; the memory store
holds a lock). Counting itself is the same code for every store (:func:`policy_engine.aggregates.fold`); a
store only returns an entity's rows in a window.
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from ..aggregates import Row
from ..errors import StateError


@dataclass(frozen=True, slots=True)
class Entry:
    """What one payment contributes to one aggregate's entity: the value (``of``, as exact text), whether it
    matched the aggregate's ``where`` and its ``since`` event, and ``keep_from``: the entity's rows for this
    aggregate before that instant are needed by no window any more and the store deletes them when it records
    this entry (retention; None keeps every row: ``lifetime`` and ``since`` aggregates)."""

    aggregate: str
    entity: str
    value: str | None
    matches: bool
    event: bool
    keep_from: int | None = None


@dataclass(frozen=True, slots=True)
class Payment:
    """A payment to record: its id, the digest of its body (a retry must send the same body), its instant in
    UTC microseconds, its entries, its decision's outcome and the decision as JSON (what a retry gets back)."""

    request_id: str
    digest: str
    instant: int
    entries: tuple[Entry, ...]
    outcome: str
    decision: str


@dataclass(frozen=True, slots=True)
class Recorded:
    """A payment already recorded: its body's digest, its decision as JSON and its downstream status."""

    digest: str
    decision: str
    status: str


class Transaction(Protocol):
    def recorded(self, request_id: str) -> Recorded | None:
        """The payment already recorded under ``request_id``, if any."""

    def rows(self, aggregate: str, entity: str, lo: int, hi: int) -> list[Row]:
        """The entity's rows for ``aggregate`` with ``lo <= instant < hi``, with their payments' outcome and
        current status."""

    def record(self, payment: Payment) -> None:
        """Record a new payment (its id is not recorded yet: the caller checked in this transaction)."""


class Store(Protocol):
    url: str

    def transaction(self) -> AbstractContextManager[Transaction]:
        """One atomic unit: reads see a consistent state and every record commits together or not at all."""

    def report(self, request_id: str, status: str) -> None:
        """Record a downstream status; raises :class:`~policy_engine.StateError` for an unknown ``request_id``."""

    def ping(self) -> None:
        """Check the store can be reached now (a readiness probe); raises
        :class:`~policy_engine.errors.StoreUnavailableError` if not."""

    def close(self) -> None: ...



def redacted(url: str) -> str:
    """A store URL without its password (``redis://:secret@host`` -> ``redis://:***@host``): what error messages,
    logs and health answers may show."""
    return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", url)


def unknown_request(request_id: str, where: str) -> StateError:
    """The error of ``report()`` for an id the store never recorded: every store says it alike."""
    return StateError("unknown_request", f"no payment {request_id!r} was evaluated with {where}; report the status "
                      "of a payment the engine decided", request_id)
