"""The screening index: every name and alias of a party list, normalised once at load, behind a blocking index.

**Blocking.** Each normalised name is filed under keys: each token (``t:putin``), its first and its last three
letters (``p:put``, ``s:tin``: one typo leaves at least one of them intact), and all tokens run together in
written order (``j:xijinping``: ``Xi Jinping`` meets ``习近平``). A query looks its own keys up, rarest first, and
takes the names under them until it has :data:`MAX_CANDIDATES`; a key shared by more than
:data:`MAX_POSTING` names (a suffix such as ``ova``) is too common to say anything and is skipped. Only those
candidates are scored, so the cost per query does not grow with the list.

**Scoring** (chosen by measurement: ``benchmarks/screening.py``): the candidates are shortlisted by
Jaro-Winkler (cheap, in rapidfuzz's C loop), then scored by :func:`score`: tokens paired one to one by Damerau-
Levenshtein similarity, weighted by length, a token without a partner costing 0.3 of its length; or the run-together
forms, whichever is higher. **Secondary keys** then move the score (documented in rules/README.md): the country of
the request agreeing with one of the entry's countries adds :data:`COUNTRY_MATCH`; both known and disagreeing
subtracts :data:`COUNTRY_MISMATCH`. Unknown on either side changes nothing. The result is capped to [0, 1].
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz import process
from rapidfuzz.distance import DamerauLevenshtein, JaroWinkler

from .normalise import NormalName, normalise
from .party import Party

MAX_CANDIDATES = 256
#: Candidates that go on to the full score: the best by a cheap Jaro-Winkler pre-score (in rapidfuzz's C loop).
SHORTLIST = 8
MAX_POSTING = 2_000
#: Tokens at least this long are also filed under each of their one-letter deletions (SymSpell's idea): a typo,
#: a transposition or a doubled letter then still shares a key with the listed spelling (``prindiamh`` and
#: ``prindiami`` both give ``prindiam``), where the three-letter prefix may be too common to look up.
DELETION_KEYS_FROM = 5
#: A token the other name does not have costs this fraction of its length (a middle name one side leaves out).
EXTRA_TOKEN_WEIGHT = 0.3
CACHED_NAMES = 4_096
COUNTRY_MATCH = 0.02
COUNTRY_MISMATCH = 0.05

_sim = DamerauLevenshtein.normalized_similarity
_jw = JaroWinkler.similarity


def score(query: NormalName, name: NormalName) -> float:
    """Name similarity in [0, 1].

    Tokens are paired one to one, most similar first (Damerau-Levenshtein similarity, so a typo or a swapped
    pair of letters costs one edit); each pair counts with the length of both tokens, and a token left without a
    partner counts :data:`EXTRA_TOKEN_WEIGHT` of its length against the score. Order does not matter. The
    run-together forms are compared too (``Abdul Rahman`` / ``Abdulrahman``; ``习近平`` is ``xijinping``) and the
    larger wins."""
    q, n = query.tokens, name.tokens
    pairs = sorted(((_sim(a, b), i, j) for i, a in enumerate(q) for j, b in enumerate(n)), reverse=True)
    used_q: set[int] = set()
    used_n: set[int] = set()
    got = total = 0.0
    for s, i, j in pairs:
        if i in used_q or j in used_n:
            continue
        used_q.add(i)
        used_n.add(j)
        weight = len(q[i]) + len(n[j])
        got += s * weight
        total += weight
    total += EXTRA_TOKEN_WEIGHT * (sum(len(t) for i, t in enumerate(q) if i not in used_q)
                                   + sum(len(t) for j, t in enumerate(n) if j not in used_n))
    return max(got / total, _sim(query.joined, name.joined))


def _keys(name: NormalName) -> set[str]:
    keys = {f"j:{name.joined}"}
    for token in name.tokens:
        keys.add(f"t:{token}")
        if len(token) > 3:
            keys.add(f"p:{token[:3]}")
            keys.add(f"s:{token[-3:]}")
        if len(token) >= DELETION_KEYS_FROM:  # one edit away: the token with one letter left out, each in turn
            keys.update(f"d:{token[:i]}{token[i + 1:]}" for i in range(len(token)))
    return keys


@dataclass(frozen=True, slots=True)
class Match:
    """The best-scoring entry for a name: what the trail evidence shows."""

    party: Party
    matched_name: str  # the list's own spelling of the name or alias that scored best
    name_score: float
    score: float  # after secondary keys
    adjustments: tuple[str, ...]  # what the secondary keys did, e.g. "country RU matches: +0.02"


class ScreenIndex:
    """A party list, normalised and indexed for :meth:`best`. Names are kept in flat lists of strings and
    tuples (few objects for the garbage collector to walk on every full collection)."""

    def __init__(self, parties: Sequence[Party]):
        self.parties = tuple(parties)
        self._party: list[int] = []  # per indexed name: its party
        self._spelling: list[str] = []  # the list's own spelling
        self._names: list[NormalName] = []
        self._start: list[int] = []  # the party's start date (0: always on the list)
        postings: dict[str, list[int]] = {}
        for p, party in enumerate(self.parties):
            for spelling in party.names:
                normal = normalise(spelling)
                if not normal.tokens:
                    continue  # punctuation only: nothing a name could match
                n = len(self._names)
                self._party.append(p)
                self._spelling.append(spelling)
                self._names.append(normal)
                self._start.append(party.start or 0)
                for key in _keys(normal):
                    postings.setdefault(key, []).append(n)
        self._keys = [n.key for n in self._names]
        self._joined = [n.joined for n in self._names]
        self._postings = {k: tuple(v) for k, v in postings.items() if len(v) <= MAX_POSTING}
        #: :meth:`best` remembered for the names most recently screened: payments repeat their counterparties'
        #: names (a merchant's on every purchase), and the answer depends only on (name, day, country)
        self.cached_best = functools.lru_cache(maxsize=CACHED_NAMES)(self.best)

    def __len__(self) -> int:
        return len(self._names)

    def candidates(self, query: NormalName) -> set[int]:
        """The names sharing a blocking key with ``query``, rarest keys first, up to about MAX_CANDIDATES."""
        found: set[int] = set()
        lists = sorted((v for k in _keys(query) if (v := self._postings.get(k)) is not None), key=len)
        for names in lists:
            if found and len(found) + len(names) > MAX_CANDIDATES:
                break
            found.update(names)
        return found

    def shortlist(self, query: NormalName, day: int) -> list[int]:
        """The candidates on the list on ``day`` that go on to the full score: the best few by a cheap
        Jaro-Winkler pre-score of the sorted and of the run-together forms."""
        start = self._start
        live = [n for n in self.candidates(query) if start[n] <= day]
        if len(live) <= SHORTLIST:
            return live
        keys, joined = self._keys, self._joined
        by_key = process.extract(query.key, [keys[n] for n in live], scorer=_jw, limit=SHORTLIST)
        by_joined = process.extract(query.joined, [joined[n] for n in live], scorer=_jw, limit=SHORTLIST)
        return sorted({live[i] for _, _, i in by_key} | {live[i] for _, _, i in by_joined})

    def best(self, text: str, day: int, country: str | None = None) -> Match | None:
        """The highest-scoring entry on the list on ``day`` (its start date passed), or None when no name
        shares a blocking key with ``text``. Ties go to the earlier name in list order (deterministic)."""
        query = normalise(text)
        if not query.tokens:
            return None
        best: tuple[float, int] | None = None
        for n in self.shortlist(query, day):
            s = score(query, self._names[n])
            if best is None or s > best[0] or (s == best[0] and n < best[1]):
                best = (s, n)
        if best is None:
            return None
        name_score, n = best
        party = self.parties[self._party[n]]
        final, adjustments = name_score, []
        if country is not None and party.countries:
            if country in party.countries:
                final += COUNTRY_MATCH
                adjustments.append(f"country {country} matches: +{COUNTRY_MATCH}")
            else:
                final -= COUNTRY_MISMATCH
                adjustments.append(f"country {country} not in {', '.join(sorted(party.countries))}: "
                                   f"-{COUNTRY_MISMATCH}")
        return Match(party, self._spelling[n], name_score, min(1.0, max(0.0, final)), tuple(adjustments))
