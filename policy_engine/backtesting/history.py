"""Counters recomputed from the replayed history (DESIGN.md §10): what the engine's own state store would have
held for each payment, had it recorded the history as it happened.

Each payment is recorded in a :class:`~policy_engine.state.MemoryStore` in (instant, arrival) order, with its
counters read just before, exactly as the live engine reads and records (same aggregates, same windows, same
:func:`~policy_engine.aggregates.fold`). What a payment counts for is what happened to it: its record's
``decision`` at the time (``deny`` counts only for ``counts: denied``) and its ``status`` (``failed`` and
``reversed`` stop counting against limits), never the candidate pack's decision. A record that says neither
counts as a payment not denied and still pending. A final status is known from the start of a replay, so a
payment later reversed never counts against a limit (the live engine counts it until the report arrives).

Counters are then plain window functions of the history: computed once, before the payments are split among
workers, every worker count decides with the same counters.

A record is a payment request plus the backtest's own top-level fields, taken off before it is decided:
``label`` (what the payment turned out to be), ``status`` and ``decision`` (what happened to it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ..aggregates import REPORTED_STATUSES
from ..decision import Outcome
from ..errors import PolicyEngineError
from ..pack import CompiledPack
from ..state import MemoryStore, Payment
from ..state.counters import Counters

#: A record's outcome when it does not say: not denied (so it counts against limits, failing closed).
NOT_DENIED = Outcome.ALLOW.value
_OUTCOMES = tuple(o.value for o in Outcome)


class RecordError(PolicyEngineError, ValueError):
    """A record's backtest fields (``status``, ``decision``) hold a value the backtest does not know."""


@dataclass(frozen=True, slots=True)
class Happened:
    """What a history record says happened to its payment: ``outcome`` (the decision at the time) and the
    downstream ``status`` (None: none reported)."""

    outcome: str = NOT_DENIED
    status: str | None = None


def take_record_fields(record: dict[str, Any]) -> tuple[Any, Happened]:
    """Take the backtest's fields off a record: returns its ``label`` and what happened to the payment."""
    label = record.pop("label", None)
    status = record.pop("status", None)
    outcome = record.pop("decision", None)
    if status is not None and status not in REPORTED_STATUSES:
        raise RecordError(f"status {status!r} is not one of {', '.join(REPORTED_STATUSES)} (leave it out for a "
                          "payment with no reported status)")
    if outcome is not None and outcome not in _OUTCOMES:
        raise RecordError(f"decision {outcome!r} is not one of {', '.join(_OUTCOMES)} (the decision the payment "
                          "had at the time; leave it out if unknown)")
    return label, Happened(NOT_DENIED if outcome is None else outcome, status)


@dataclass(frozen=True, slots=True)
class Difference:
    """A counter a record carried that differs from the one recomputed from the history."""

    line: int
    request_id: str
    field: str
    recorded: str
    recomputed: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "request_id": self.request_id, "field": self.field, "recorded": self.recorded,
                "recomputed": self.recomputed}


class Replay:
    """One pack's counters over one history. Feed every payment with :meth:`add` (any order), then
    :meth:`counters` replays them in (instant, arrival) order."""

    def __init__(self, pack: CompiledPack):
        self._counters = Counters(pack)
        self._pending: list[tuple[Payment, int, Mapping[str, Any], Any, str | None]] = []

    def add(self, line: int, request: Mapping[str, Any], happened: Happened) -> None:
        """Add a valid request (no ``history``) at input line ``line``; raises the pack's ``RequestError`` for
        an invalid one, which then has no counters (the backtest reports it as a bad line)."""
        prepared = self._counters.pack.prepare(request, pending=True)
        payment = self._counters.payment(request, prepared, happened.outcome, "")
        self._pending.append((payment, line, request, prepared, happened.status))

    def counters(self) -> dict[int, dict[str, Any]]:
        """The counters the pack's rules read, by input line: each payment sees the payments recorded before it
        in (instant, arrival) order; a ``request_id`` seen before counts once, as a retry does."""
        store, counters = MemoryStore(), self._counters
        out: dict[int, dict[str, Any]] = {}
        for payment, line, request, prepared, status in sorted(self._pending, key=lambda p: (p[0].instant, p[1])):
            with store.transaction() as txn:
                out[line] = counters.values(request, prepared, txn)
                fresh = txn.recorded(payment.request_id) is None
                if fresh:
                    txn.record(payment)
            if fresh and status is not None:
                store.report(payment.request_id, status)
        self._pending.clear()
        return out


def differences(line: int, request_id: str, recorded: Mapping[str, Any],
                recomputed: Mapping[str, Any]) -> Iterable[Difference]:
    """The counters a record carried (``history``, without the prefix) that differ from the recomputed ones; a
    counter the record left out is not a difference (the pack's default stood in for it)."""
    for path, value in recomputed.items():
        name = path.split(".", 1)[1]
        if name in recorded and recorded[name] != value:
            yield Difference(line, request_id, path, str(recorded[name]), _text(value))


def _text(value: Any) -> str:
    """A counter as a person reads it: a cross-rate sum that is no finite decimal to six places."""
    if isinstance(value, Fraction):
        return f"{float(value):.6f}"
    return str(value)
