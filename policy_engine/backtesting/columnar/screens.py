"""The screening stage: ``screen`` leaves decided in Python once per distinct name, joined to the payments as a table.

Fuzzy name screening has no SQL form, so the plan does not compile it: for each screened field (a field, a party
list and a secondary key; every threshold on them shares one table) the stage takes the DISTINCT
``(name, secondary key, local day)`` tuples of the payments, screens each with the pack's own
:class:`~policy_engine.screening.Screening` (the row engine's code path: the same best match, the same rounded
score against each threshold), and registers the answers as a small relation (an Arrow table DuckDB reads in
place). ``{p}_scr`` LEFT JOINs it on the tuple and a leaf reads its hit
column (:func:`.sqlcompile.screen_column`): NULL when the name is missing (no tuple has a NULL name), so the leaf
keeps the engine's three-valued semantics with no more SQL than any other leaf.

The joins are a step of their own, ``{p}_scr``: Spark runs the plan step by step (:mod:`.spark`), so its
analyzer sees one projection over the joins, never the chain of views beneath them (as one statement, three such
joins per pack ran it out of a 2 GB driver heap). On Spark the tuples are collected to the driver and the table
goes back as a broadcast relation: the driver screens, the executors only join.

The day matters only relative to the entries' start dates (``first_seen``): tuples whose days fall between the
same two start dates are screened once (the *bucket* of the day), however many days a year of payments spans.

What it costs is the screener's, per distinct (name, secondary key, bucket), all thresholds at once: the tuples
are read from the pack's view (``{p}_view``: names and days, before the counters stage, whose window functions a
screened name never needs). A pool of forked processes screening them did not pay off on two shared cores (the
children copy the index page by page as they touch it): see benchmarks/columnar_screening.py.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ...conditions import leaves
from ...pack import CompiledPack
from ...screening import Screening
from .dialect import Dialect
from .sqlcompile import DAY, screen_column

NAME, COUNTRY, SCREEN_DAY = "__screen_name", "__screen_country", "__screen_day"
#: the relation a pack's screens read their tuples from: every request column, before the counters stage
SOURCE = "{p}_view"


class Registry(Protocol):
    """What the stage needs of an executor besides running SQL: a relation from rows built here."""

    dialect: Dialect

    def query(self, ctes: Sequence[tuple[str, str]], select: str) -> list[tuple[Any, ...]]:
        """The rows of ``select`` over the relations ``ctes`` define."""
        ...

    def register(self, name: str, columns: Sequence[tuple[str, str]], rows: list[tuple[Any, ...]]) -> None: ...


@dataclass(frozen=True, slots=True)
class ScreenTable:
    """The screened field of one pack, as a relation ``name``: a row per distinct tuple, a hit column per
    threshold. ``screenings`` share field, list and secondary key (one :attr:`Screening.path`)."""

    name: str
    screenings: tuple[Screening, ...]

    @property
    def field(self) -> str:
        return self.screenings[0].field

    @property
    def country_field(self) -> str | None:
        return self.screenings[0].country_field

    def columns(self) -> list[tuple[str, str]]:
        return [(NAME, "string"), (COUNTRY, "string"), (SCREEN_DAY, "date"),
                *((screen_column(s), "boolean") for s in self.screenings)]

    def join(self, d: Dialect, relation: str) -> str:
        """``LEFT JOIN`` of this table to ``relation`` (the payments) on the tuple."""
        q = d.ident
        on = [f"{self.name}.{q(NAME)} = {relation}.{q(self.field)}",
              f"{self.name}.{q(SCREEN_DAY)} = {relation}.{q(DAY)}"]
        if self.country_field is not None:  # a NULL country is a value of the tuple, not "no match"
            on.append(d.same(f"{self.name}.{q(COUNTRY)}", f"{relation}.{q(self.country_field)}"))
        return f" LEFT JOIN {self.name} ON " + " AND ".join(on)

    def distinct(self, d: Dialect, relation: str) -> str:
        """The SELECT of the distinct tuples to screen: rows with a name (a missing one is the leaf's unknown)."""
        q = d.ident
        country = q(self.country_field) if self.country_field is not None else "CAST(NULL AS STRING)"
        return (f"SELECT DISTINCT {q(self.field)}, {country}, {q(DAY)} FROM {relation} "
                f"WHERE {q(self.field)} IS NOT NULL AND {q(DAY)} IS NOT NULL")

    def decide(self, tuples: Iterable[tuple[Any, ...]]) -> tuple[list[tuple[Any, ...]], int]:
        """A row per tuple (its hits in :attr:`screenings` order) and how many names were screened: each
        (name, country, bucket of the day) once."""
        index = self.screenings[0].index
        assert index is not None, "a screening leaf is built with its list's index"
        starts = sorted({p.start for p in index.parties if p.start is not None})
        screened: dict[tuple[Any, ...], tuple[bool | None, ...]] = {}
        rows = []
        for name, country, day in tuples:
            ordinal = day.toordinal()
            key = (name, country, bisect_right(starts, ordinal))
            hits = screened.get(key)
            if hits is None:
                view: dict[str, Any] = {self.field: name}
                if self.country_field is not None:
                    view[self.country_field] = country
                hits = screened[key] = tuple(s.hit(view, ordinal) for s in self.screenings)
            rows.append((name, country, day, *hits))
        return rows, len(screened)


@dataclass(frozen=True, slots=True)
class ScreeningCost:
    """What the stage did: distinct tuples, distinct (name, secondary key) pairs, screenings (a pair's tuples in
    one day bucket count once), seconds, and of those the seconds spent deciding the tuples (the screener; the
    rest: the tuples' queries and the tables' registration)."""

    tuples: int = 0
    names: int = 0
    screened: int = 0
    seconds: float = 0.0
    deciding: float = 0.0

    def __add__(self, other: ScreeningCost) -> ScreeningCost:
        return ScreeningCost(self.tuples + other.tuples, self.names + other.names, self.screened + other.screened,
                             self.seconds + other.seconds, self.deciding + other.deciding)


def screen_tables(pack: CompiledPack, prefix: str) -> tuple[ScreenTable, ...]:
    """The screened fields of a pack's rules, each with its thresholds, in first-use order."""
    groups: dict[str, dict[float, Screening]] = {}
    for rule in pack.ruleset.rules:
        for leaf in leaves(rule.when):
            if leaf.screen is not None:
                groups.setdefault(leaf.screen.path, {}).setdefault(leaf.screen.threshold, leaf.screen)
    return tuple(ScreenTable(f"{prefix}_screen{i}", tuple(by_threshold.values()))
                 for i, by_threshold in enumerate(groups.values()))


def register_screens(executor: Registry, ctes: Sequence[tuple[str, str]], prefix: str,
                     tables: Sequence[ScreenTable]) -> ScreeningCost:
    """Screen the tuples of each table and register it. ``ctes``: the plan's that :data:`SOURCE` reads, itself
    last (:meth:`.plan.Plan.upto`; the later ones read the tables this registers)."""
    if not tables:
        return ScreeningCost()
    relation = SOURCE.format(p=prefix)
    cost = ScreeningCost()
    for table in tables:
        started = time.perf_counter()
        tuples = executor.query(ctes, table.distinct(executor.dialect, relation))
        deciding = time.perf_counter()
        rows, screened = table.decide(tuples)
        deciding = time.perf_counter() - deciding
        executor.register(table.name, table.columns(), rows)
        names = len({(name, country) for name, country, _ in tuples})
        cost += ScreeningCost(len(rows), names, screened, time.perf_counter() - started, deciding)
    return cost
