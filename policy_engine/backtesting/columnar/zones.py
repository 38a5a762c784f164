"""DuckDB's timezone data held to the row engine's for a pack's jurisdictions, before a backtest relies on it.

The plan reads the local time of a payment (its hour, its date for as-of rules and dated lists, the calendar
periods of recomputed counters) from DuckDB's ``timezone()``, which uses the ICU data built into DuckDB; the row
engine uses Python's ``zoneinfo`` (the system's or the ``tzdata`` package's). The two are released separately, and
a zone whose rules changed recently reads differently in them (on this machine America/Vancouver and
America/Havana differed by an hour from 2025 on), which moves payments across local days and hours: counters and
decisions that are not the row engine's. So a pack's zones are compared first, over the whole supported window:
the UTC offset at a weekly grid, one second either side of each of Python's transitions, and on either side of
each day on which DuckDB's offset changes; a zone that differs anywhere is refused, naming the first instant.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

from ...errors import PolicyEngineError
from ...pack import CompiledPack
from ...request import DEFAULT_PSP_COUNTRY, EARLIEST, LATEST

_DAY = 86_400
_WEEK = 7 * _DAY
_START, _END = int(EARLIEST.timestamp()), int(LATEST.timestamp())


class ZoneDataError(PolicyEngineError):
    """The SQL engine's timezone data differs from the row engine's for a zone the pack uses."""


def _offset(zone: ZoneInfo, second: int) -> int:
    offset = dt.datetime.fromtimestamp(second, dt.UTC).astimezone(zone).utcoffset()
    assert offset is not None, "an aware datetime has an offset"
    return int(offset.total_seconds())


@functools.cache
def _python_points(key: str) -> tuple[int, ...]:
    """The instants (seconds) to compare: a weekly grid and one second either side of each of Python's
    transitions (found between grid points by bisection)."""
    zone = ZoneInfo(key)
    points = list(range(_START, _END, _WEEK))
    transitions = []
    for lo, hi in itertools.pairwise(points):
        if _offset(zone, lo) != _offset(zone, hi):
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if _offset(zone, mid) == _offset(zone, lo) else (lo, mid)
            transitions += [hi - 1, hi]
    return tuple(points + transitions)


#: zones found to agree in this process (its DuckDB build and tz data do not change while it runs)
_AGREED: set[str] = set()


def check_zones(executor: Any, source: str, packs: Iterable[CompiledPack]) -> None:
    """Raise :class:`ZoneDataError` unless ``executor`` (a DuckDB one) reads the zone of every jurisdiction the
    history ``source`` has payments in as Python does, for each pack."""
    default = executor.dialect.string(DEFAULT_PSP_COUNTRY)
    used = {c for (c,) in executor.rows(f"SELECT DISTINCT COALESCE(psp_country, {default}) FROM {source}")}
    zones = {p.ruleset.timezones[c] for p in packs for c in used if c in p.ruleset.timezones}
    for key in sorted(zones - _AGREED):
        _check(executor, key)
        _AGREED.add(key)


def _check(executor: Any, key: str) -> None:
    d = executor.dialect
    local = d.local_time("u * 1000000", key)
    offset = f"(epoch_us({local}) - u * 1000000) // 1000000"
    # the days on which DuckDB's offset changes, and the day before each: a transition Python lacks or dates
    # differently shows there
    changes = executor.rows(
        f"SELECT u FROM (SELECT u, o, LAG(o) OVER (ORDER BY u) AS p FROM "
        f"(SELECT range AS u, {offset} AS o FROM range({_START}, {_END}, {_DAY}))) WHERE o <> p")
    points = sorted({*_python_points(key), *(u for (u,) in changes), *(u - _DAY for (u,) in changes)})
    duck = executor.rows(f"SELECT u, {offset} FROM (SELECT unnest([{', '.join(map(str, points))}]) AS u) ORDER BY u")
    zone = ZoneInfo(key)
    for second, theirs in duck:
        ours = _offset(zone, second)
        if ours != theirs:
            when = dt.datetime.fromtimestamp(second, dt.UTC)
            raise ZoneDataError(
                f"DuckDB's timezone data for {key} differs from this Python's (the row engine's): at "
                f"{when:%Y-%m-%d %H:%M:%S}Z the offset is {_hours(theirs)} in DuckDB, {_hours(ours)} in Python, "
                "so local hours, dates and calendar counters would not be the row engine's; update the older of "
                "the two (the duckdb or the tzdata package, or the system's zoneinfo) or use --engine row")


def _hours(seconds: int) -> str:
    sign = "-" if seconds < 0 else "+"
    minutes = abs(seconds) // 60
    return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"
