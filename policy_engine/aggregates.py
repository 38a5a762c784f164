"""Aggregates a pack declares (``aggregates:``): the ``history.*`` counters the engine keeps itself.

Each aggregate defines one field: a function (``count``, ``sum`` of an exact amount, ``count_distinct``) over
the payments of one entity (``by``, e.g. ``payer.id``) that match ``where``, in a window computed from the
payment's own instant, counting what ``counts`` says of each payment's recorded outcome. The value never
includes the payment being decided (DOMAIN §5.1 point 7): rules add the current amount themselves.

Windows are half-open ranges of UTC microseconds ``[lo, hi)``, so every store answers the same question:

- ``last: 1h`` (sliding): the payments in ``(t - 1h, t]``;
- ``calendar: day|month|year`` in a timezone (the payment's PSP jurisdiction, or a named zone): every payment
  recorded in that calendar period, whatever order they arrive in, so a daily cap is a cap on the day's total;
- ``lifetime``: every payment recorded;
- ``since: <condition>``: the payments after the entity's latest payment that met the condition, up to ``t``
  (PSD2's exemptions since the last payment with SCA).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, Inexact
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from .conditions import Node, fields_read
from .exact import EXACT

COUNT, SUM, COUNT_DISTINCT = "count", "sum", "count_distinct"
FUNCTIONS = (COUNT, SUM, COUNT_DISTINCT)
#: What a payment contributes, by its recorded outcome: every attempt; payments not denied and not reported
#: failed or reversed (limits: an allowed, step-up or review payment counts until told otherwise, failing
#: closed); or denied payments only (declines).
ATTEMPTS, ALLOWED, DENIED = "attempts", "allowed", "denied"
COUNTS = (ATTEMPTS, ALLOWED, DENIED)
#: Downstream statuses ``report`` accepts; a payment is ``pending`` until one is reported.
PENDING, COMPLETED, FAILED, REVERSED = "pending", "completed", "failed", "reversed"
REPORTED_STATUSES = (COMPLETED, FAILED, REVERSED)
#: Reported statuses after which a payment counts against no allowed-payments limit (nor may it be decided again).
UNCOUNTED_STATUSES = frozenset((FAILED, REVERSED))
JURISDICTION = "jurisdiction"
CALENDAR_UNITS = ("day", "month", "year")
_SLIDING = re.compile(r"^([1-9][0-9]{0,5})([mhd])$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: Bounds wider than any instant a request may carry (2000..2100).
FOREVER = (0, 2**62)


def sliding_seconds(text: str) -> int | None:
    """``1h`` -> 3600; None for anything that is not a positive count of minutes, hours or days."""
    match = _SLIDING.match(text)
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)] if match else None


def micros(when: dt.datetime) -> int:
    """An aware instant as integer microseconds since the Unix epoch (exact, orderable, store-friendly)."""
    delta = when - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True, slots=True)
class Window:
    """``kind`` is ``last`` (``seconds``), ``calendar`` (``unit`` in ``timezone``), ``lifetime`` or ``since``
    (``event``: the condition that restarts the window)."""

    kind: str
    seconds: int = 0
    unit: str = ""
    timezone: str = ""  # JURISDICTION or an IANA zone name
    event: Node | None = None

    def bounds(self, when: dt.datetime, jurisdiction_zone: ZoneInfo) -> tuple[int, int]:
        """``[lo, hi)`` in UTC microseconds for a payment at ``when``; a ``since`` window's ``lo`` is found in the
        entity's history (see :func:`since_start`), so here it is the beginning of time."""
        t = micros(when)
        if self.kind == "last":
            return t - self.seconds * 1_000_000 + 1, t + 1
        if self.kind == "calendar":
            zone = jurisdiction_zone if self.timezone == JURISDICTION else ZoneInfo(self.timezone)
            local = when.astimezone(zone)
            start = local.replace(hour=0, minute=0, second=0, microsecond=0, fold=0)
            if self.unit == "day":
                end_date = local.date() + dt.timedelta(days=1)
            elif self.unit == "month":
                start = start.replace(day=1)
                end_date = dt.date(local.year + local.month // 12, local.month % 12 + 1, 1)
            else:
                start = start.replace(month=1, day=1)
                end_date = dt.date(local.year + 1, 1, 1)
            end = dt.datetime(end_date.year, end_date.month, end_date.day, tzinfo=zone)
            return micros(start), micros(end)
        if self.kind == "since":
            return FOREVER[0], t + 1
        return FOREVER

    def reach(self) -> int | None:
        """How far back (UTC microseconds) from a payment's instant its window can reach, so older rows of the
        aggregate are needed by no payment at or after that instant; None for ``lifetime`` and ``since``, which
        keep every row (their value depends on all of them). A calendar period is bounded by its longest local
        length (a 25-hour DST day, 31 days and a 366-day year, plus that hour)."""
        if self.kind == "last":
            return self.seconds * 1_000_000
        if self.kind == "calendar":
            days = {"day": 1, "month": 31, "year": 366}[self.unit]
            return (days * 86400 + 3600) * 1_000_000
        return None

    def describe(self, jurisdiction_zone: str, event: str) -> str:
        """The window for a person, with ``jurisdiction`` resolved to the payment's zone: ``last 1h``,
        ``calendar day Asia/Shanghai``, ``lifetime``, or ``since`` followed by ``event`` (the event in words)."""
        if self.kind == "last":
            # as a pack would write it: 24h rather than 1d, 7d rather than 168h
            units = "hm" if self.seconds == _UNIT_SECONDS["d"] else "dhm"
            unit = next(u for u in units if self.seconds % _UNIT_SECONDS[u] == 0)
            return f"last {self.seconds // _UNIT_SECONDS[unit]}{unit}"
        if self.kind == "calendar":
            return f"calendar {self.unit} {jurisdiction_zone if self.timezone == JURISDICTION else self.timezone}"
        if self.kind == "since":
            return f"since {event}"
        return self.kind


@dataclass(frozen=True, slots=True)
class Aggregate:
    """One declared counter. ``of`` is the field summed or counted distinct (None for ``count``)."""

    field: str
    function: str
    of: str | None
    where: Node | None
    by: str
    window: Window
    counts: str
    file: str
    line: int
    col: int

    def fields_read(self) -> tuple[str, ...]:
        """The request fields recording a payment for this aggregate needs."""
        paths = [self.by]
        if self.of:
            paths.append(self.of)
        for node in (self.where, self.window.event):
            if node is not None:
                paths.extend(fields_read(node))
        return tuple(dict.fromkeys(paths))


@dataclass(frozen=True, slots=True)
class Row:
    """One recorded payment as an aggregate sees it: its instant, the value it contributes (``of``, as text),
    whether it matched ``where`` and the ``since`` event, and its decision and downstream status."""

    instant: int
    value: str | None
    matches: bool
    event: bool
    outcome: str
    status: str


def counted(counts: str, outcome: str, status: str) -> bool:
    if counts == ATTEMPTS:
        return True
    if counts == DENIED:
        return outcome == "deny"
    return outcome != "deny" and status not in UNCOUNTED_STATUSES


def since_start(rows: Iterable[Row]) -> int:
    """The lower bound of a ``since`` window: just after the entity's latest event (beginning of time if none)."""
    last = max((r.instant for r in rows if r.event), default=None)
    return FOREVER[0] if last is None else last + 1


def exact_sum(values: list[str]) -> int | Decimal | Fraction:
    """The exact sum of recorded amounts, in the exact type the rest of the engine uses: an int when whole,
    else a Decimal, or a Fraction when a cross-rate amount (written ``n/d``) makes the sum no finite decimal."""
    if any("/" in v for v in values):
        total = sum(map(Fraction, values), Fraction(0))
        if total.denominator == 1:
            return total.numerator
        try:
            return EXACT.divide(Decimal(total.numerator), Decimal(total.denominator))
        except Inexact:
            return total
    decimal_total = functools.reduce(EXACT.add, map(Decimal, values), Decimal(0))  # Decimal parses ~5x faster
    return int(decimal_total) if decimal_total == decimal_total.to_integral_value() else decimal_total


def fold(aggregate: Aggregate, rows: Iterable[Row], lo: int, hi: int) -> Any:
    """The aggregate's value over the rows of one entity (rows outside ``[lo, hi)`` are ignored, and a
    ``since`` window starts after the latest event among them)."""
    rows = list(rows)
    if aggregate.window.kind == "since":
        lo = max(lo, since_start(rows))  # the store's rows end at the payment's instant: later events do not count
    chosen = [r for r in rows if lo <= r.instant < hi and r.matches and counted(aggregate.counts, r.outcome,
                                                                                   r.status)]
    if aggregate.function == COUNT:
        return len(chosen)
    if aggregate.function == COUNT_DISTINCT:
        return len({r.value for r in chosen if r.value is not None})
    return exact_sum([r.value for r in chosen if r.value is not None])
