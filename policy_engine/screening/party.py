"""One entry of a party list, apart from the readers (:mod:`.lists`) and the index (:mod:`.index`), which both use
it: the index searches parties, the readers make them, and neither needs the other at run time."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Party:
    """One listed party: its id in the list, its names (primary first, then aliases), and secondary keys."""

    id: str
    names: tuple[str, ...]
    countries: frozenset[str] = frozenset()  # ISO 3166 alpha-2, upper case
    start: int | None = None  # date ordinal from which the entry is on the list

    def applies(self, day: int) -> bool:
        return self.start is None or day >= self.start
