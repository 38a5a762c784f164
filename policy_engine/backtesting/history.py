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
``label`` and ``label_known_at`` (what the payment turned out to be, and since when that is known), ``status``
and ``decision`` (what happened to it); or the same fields in an envelope around the request.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from ..aggregates import REPORTED_STATUSES
from ..decision import Outcome
from ..errors import PolicyEngineError
from ..exact import EXACT
from ..pack import CompiledPack
from ..state import MemoryStore, Payment
from ..state.counters import Counters
from .metrics import BAD, GOOD, LABEL_CLASSES

#: A record's outcome when it does not say: not denied (so it counts against limits, failing closed).
NOT_DENIED = Outcome.ALLOW.value
_OUTCOMES = tuple(o.value for o in Outcome)
#: A record's own top-level keys, taken off before its request is decided.
RECORD_KEYS = ("label", "label_known_at", "status", "decision")
ENVELOPE_KEYS = ("request", *RECORD_KEYS)


class RecordError(PolicyEngineError, ValueError):
    """A record's backtest fields (``label``, ``label_known_at``, ``status``, ``decision``, the envelope) hold
    something the backtest does not know."""


@dataclass(frozen=True, slots=True)
class Happened:
    """What a history record says happened to its payment: ``outcome`` (the decision at the time) and the
    downstream ``status`` (None: none reported)."""

    outcome: str = NOT_DENIED
    status: str | None = None


@dataclass(frozen=True, slots=True)
class Label:
    """What a payment turned out to be: its class (``bad`` or ``good``, see :mod:`.metrics`), its ``kind``
    (``fraud``, ``chargeback``, ``legit``, or a known-bad object's kind) and ``pattern``, and the day (ordinal)
    the label became known (None: known from the payment's own day)."""

    cls: str
    kind: str
    pattern: str
    known: int | None = None


def read_label(label: Any, known_at: Any) -> Label | None:
    """A record's ``label`` and ``label_known_at``, checked; None for an unlabelled payment."""
    known = None if known_at is None or known_at == "" else _day(known_at)
    if label is None or label == {} or label == "":
        if known is not None:
            raise RecordError("label_known_at without a label: say what the payment turned out to be "
                              f"({', '.join(LABEL_CLASSES)}) or leave label_known_at out")
        return None
    if isinstance(label, str):
        cls = LABEL_CLASSES.get(label)
        if cls is None:
            raise RecordError(f"label {label[:64]!r} is not one of {', '.join(LABEL_CLASSES)} (or a known-bad "
                              '{"kind": ..., "pattern": ...} object)')
        return Label(cls, label, label, known)
    if isinstance(label, dict):  # a known-bad pattern with its kind (violation, risk, ...)
        # text or nothing: a list or a number here is a broken export, and was counted under its repr
        wrong = sorted(k for k in label if k not in ("kind", "pattern") or not isinstance(label[k], str | None))
        if wrong:
            raise RecordError(f"label.{wrong[0]} is not allowed here: a known-bad label is "
                              '{"kind": TEXT, "pattern": TEXT}, either optional')
        kind = str(label.get("kind") or "labelled")
        if LABEL_CLASSES.get(kind) == GOOD:  # an object is known bad: a good one would be counted as bad
            raise RecordError(f'a {kind} payment is labelled "label": "{kind}", not an object (objects are '
                              "known-bad patterns)")
        return Label(BAD, kind, str(label.get("pattern") or kind), known)
    raise RecordError(f"label must be one of {', '.join(LABEL_CLASSES)} or a {{kind, pattern}} object, not "
                      f"{type(label).__name__}")


def _day(text: Any) -> int:
    """A ``label_known_at`` as a day ordinal: a date, or a date-time counted on its date as written."""
    if isinstance(text, str):
        try:
            return (dt.date.fromisoformat(text) if len(text) == 10 else dt.datetime.fromisoformat(text).date()
                    ).toordinal()
        except ValueError:
            pass
    raise RecordError(f"label_known_at {str(text)[:64]!r} is not an ISO 8601 date (2025-07-01) or date-time")


def take_record_fields(record: dict[str, Any]) -> tuple[dict[str, Any], Label | None, Happened]:
    """Split a history record into the request to decide, its label and what happened to the payment. A record
    is a request carrying the backtest's top-level fields (taken off here), or an envelope
    ``{"request": {...}, "label": ..., "label_known_at": ..., "status": ..., "decision": ...}``."""
    if "request" in record:
        unknown = sorted(set(record) - set(ENVELOPE_KEYS))
        if unknown:
            raise RecordError(f"envelope key {unknown[0]!r} is unknown: an envelope holds {', '.join(ENVELOPE_KEYS)}")
        request = record.pop("request")
        if not isinstance(request, dict):
            raise RecordError(f"envelope request must be an object, not {type(request).__name__}")
    else:
        request = record
    fields = {key: record.pop(key, None) for key in RECORD_KEYS}
    label = read_label(fields["label"], fields["label_known_at"])
    status, outcome = fields["status"], fields["decision"]
    if status is not None and status not in REPORTED_STATUSES:
        raise RecordError(f"status {status!r} is not one of {', '.join(REPORTED_STATUSES)} (leave it out for a "
                          "payment with no reported status)")
    if outcome is not None and outcome not in _OUTCOMES:
        raise RecordError(f"decision {outcome!r} is not one of {', '.join(_OUTCOMES)} (the decision the payment "
                          "had at the time; leave it out if unknown)")
    return request, label, Happened(NOT_DENIED if outcome is None else outcome, status)


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
    counter the record left out, or sent as null (missing, like any field), is not a difference (the pack's
    default stood in for it); a Parquet history stores both as NULL, so every engine reads them alike."""
    for path, value in recomputed.items():
        name = path.split(".", 1)[1]
        if recorded.get(name) is not None and recorded[name] != value:
            yield Difference(line, request_id, path, counter_text(recorded[name]), counter_text(value))


def counter_text(value: Any) -> str:
    """A counter as a person reads it, whatever exact type holds it (an int, a Decimal with trailing zeros or
    not, a Fraction): the exact decimal without trailing zeros, and a cross-rate sum that is no finite decimal
    to six places. One text per number, so every engine's report spells a counter alike."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | Fraction):
        return str(value)
    exact = Fraction(value)
    rest = exact.denominator
    for prime in (2, 5):
        while rest % prime == 0:
            rest //= prime
    if rest != 1:
        return f"{float(exact):.6f}"
    return format(EXACT.divide(Decimal(exact.numerator), Decimal(exact.denominator)).normalize(EXACT), "f")
