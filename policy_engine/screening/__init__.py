"""Name screening: party names against dated watch lists (DESIGN §11), as the rule operator ``screen``.

A ``screen`` leaf (``{field: payee.name, op: screen, list: sanctioned_parties, threshold: 0.85}``) holds when the
best-scoring entry of the list, among those on it at the payment's date, scores at least the threshold. The best
match is computed once per request and field (every leaf on the same field, list and secondary key shares it,
whatever its threshold) and kept in the request's view under :attr:`Screening.path`, where the trail evidence
and explain read it.

This module imports nothing heavy: :mod:`.index` (rapidfuzz, anyascii) is imported by the loader only for packs
that declare ``screening_lists:``, so ``import policy_engine`` works without them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .index import ScreenIndex

#: The packages the screener needs, as pip names them (an error message names them).
REQUIREMENTS = ("rapidfuzz>=3,<4", "anyascii>=0.3,<1")


@dataclass(frozen=True, slots=True)
class Screening:
    """What a ``screen`` leaf tests: the name in ``field`` against the party list ``list_name``."""

    field: str
    list_name: str
    threshold: float
    country_field: str | None = None  # a secondary key: the party's country (ISO alpha-2), same object
    index: ScreenIndex | None = field(default=None, compare=False, repr=False)
    #: The view key of the best match, and its trail-evidence key: ``screen:payee.name@sanctioned_parties``. Made
    #: once here: the matcher reads it for every screened field of every request.
    path: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        secondary = f"+{self.country_field}" if self.country_field else ""
        object.__setattr__(self, "path", f"screen:{self.field}@{self.list_name}{secondary}")

    def match(self, view: dict[str, Any], day: int) -> dict[str, Any] | None:
        """The best match for the request's name as JSON-ready evidence (``entry_id`` None: no entry shares a
        blocking key with the name), or None when the name is missing. Computed once per view."""
        path = self.path
        found = view.get(path)
        if found is not None:
            return found
        name = view.get(self.field)
        if name is None:
            return None
        assert self.index is not None, "a screening leaf is built with its list's index"
        best = self.index.cached_best(name, day, view.get(self.country_field) if self.country_field else None)
        evidence: dict[str, Any] = {"list": self.list_name, "algorithm": ALGORITHM_NAME}
        if best is None:
            evidence.update(entry_id=None, score=0.0)
        else:
            evidence.update(entry_id=best.party.id, matched_name=best.matched_name, score=round(best.score, 4))
            if best.adjustments:
                evidence.update(name_score=round(best.name_score, 4), secondary=list(best.adjustments))
        view[path] = evidence
        return evidence

    def hit(self, view: dict[str, Any], day: int) -> bool | None:
        """True when the best match scores at least the threshold (the score as the evidence shows it, four
        places), False when not, None when the name is missing (the leaf is unknown)."""
        found = self.match(view, day)
        return None if found is None else found["score"] >= self.threshold


#: The algorithm as the evidence names it (the formula: policy_engine.screening.index, rules/README.md).
ALGORITHM_NAME = "token-aligned Damerau-Levenshtein v1"

