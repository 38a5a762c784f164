"""Payment histories pushed onto the edges where two engines could disagree (the columnar differential test).

:func:`edge_histories` takes seeded synthetic traffic (:mod:`policy_engine.synthetic`: realistic payments with
consistent counters and labels) and, with a second seeded generator, moves a share of the payments onto edges:

- amounts at, and one minor unit either side of, the pack's thresholds on ``amount.value`` and the derived CNY /
  USD / EUR amounts, in every currency the pack has a rate for, one with three decimals and one with no rate;
- instants at local midnight (and one microsecond and one second before) of every date the pack names (effective
  dates, dated list items, FX tables), in every jurisdiction it has a timezone for, written in a random offset;
- missing fields (an optional field, a counter, the whole ``history``), absent counterparties (``merchant``,
  ``payee``), and record fields (``label``, ``label_known_at``, ``status``, ``decision``);
- party names (``payer.name``, ``payee.name``, ``merchant.name``) for the pack's screening lists: a listed name or
  alias as written, one with a typo or a swapped token order (hits), with a token dropped or two letters changed
  (near misses), an unrelated name, punctuation only; and the entries' ``first_seen`` dates among the instants
  (a payment dated before an entry's start cannot hit it).

Some moves make a request invalid (a purpose that needs a merchant without one): those records are bad lines for
every engine, which is part of what is compared. The same seed gives the same records.
"""

from __future__ import annotations

import copy
import datetime as dt
import random
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ..conditions import leaves
from ..request import MINOR_UNITS
from ..ruleset import RuleSet
from ..synthetic import iter_payments
from .strategies import OFFSETS, request_fields, required_fields, thresholds

#: amounts in these fields are moved onto the pack's thresholds, in the currency whose amount the field is
_AMOUNT_FIELDS = {"amount.value": None, "derived.amount_cny": "CNY", "derived.amount_usd": "USD",
                  "derived.amount_eur": "EUR"}
_NO_RATE = "SEK"  # a currency the default pack has no reference rate for: derived amounts are missing
_THREE_PLACES = "KWD"
_PARTIES = ("payer", "payee", "merchant")
_UNRELATED = ("Li Wei", "Maria Garcia Lopez", "Acme Widgets Ltd", "Ольга Смирнова", "Kowloon Fresh Fruit Co", "-")
_LABELS = (None, {"kind": "fraud", "pattern": "ato"}, {"kind": "chargeback"}, "legit", {})


def _dates(ruleset: RuleSet) -> list[dt.date]:
    ordinals: set[int] = {t.as_of for t in ruleset.fx_tables}
    ordinals.update(p.start for lst in ruleset.screening_lists.values() for p in lst.parties if p.start is not None)
    for rule in ruleset.rules:
        ordinals.update(d for d in (rule.effective_from, rule.effective_to) if d is not None)
        for leaf in leaves(rule.when):
            for item in leaf.items or ():
                ordinals.update(d for d in (item.start, item.end) if d is not None)
    return [dt.date.fromordinal(o) for o in sorted(ordinals)]


class _Mover:
    def __init__(self, ruleset: RuleSet, rng: random.Random):
        self.rng = rng
        self.ruleset = ruleset
        found = thresholds(ruleset)
        self.amounts = [(path, t) for path in _AMOUNT_FIELDS for t in found.get(path, ())]
        self.currencies = sorted({c for table in ruleset.fx_tables for c in table.rates} | {_NO_RATE,
                                                                                            _THREE_PLACES})
        self.dates = _dates(ruleset)
        self.zones = sorted(ruleset.timezones.items())
        required = set(required_fields())
        self.optional = [p for p in request_fields() if p not in required and not p.startswith("extra")]
        self.names = sorted({n for lst in ruleset.screening_lists.values() for p in lst.parties for n in p.names})

    def amount(self, request: dict[str, Any]) -> None:
        rng = self.rng
        if self.amounts and rng.random() < 0.7:
            path, t = rng.choice(self.amounts)
            currency = _AMOUNT_FIELDS[path] or rng.choice(self.currencies)
        else:
            currency, t = rng.choice(self.currencies), Decimal(rng.choice((1, 50, 999, 5000, 20000, 50000)))
        places = MINOR_UNITS.get(currency, 2)
        step = Decimal(1).scaleb(-places)
        value = (Decimal(t) + rng.choice((-step, 0, step))).quantize(step)
        if value > 0:
            request["amount"] = {"value": format(value, "f"), "currency": currency}

    def instant(self, request: dict[str, Any]) -> None:
        rng = self.rng
        if not self.dates or not self.zones:
            return
        country, zone = rng.choice(self.zones)
        day = rng.choice(self.dates)
        local = dt.datetime.combine(day, dt.time(0), ZoneInfo(zone))
        when = local - rng.choice((dt.timedelta(0), dt.timedelta(microseconds=1), dt.timedelta(seconds=1)))
        offset = rng.choice(OFFSETS)
        written = dt.UTC if offset == "Z" else dt.datetime.fromisoformat(f"2000-01-01T00:00{offset}").tzinfo
        request["psp_country"] = country
        request["timestamp"] = when.astimezone(written).isoformat()

    def missing(self, request: dict[str, Any]) -> None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.15:
            request.pop(rng.choice(("merchant", "payee")), None)
        elif roll < 0.25:
            request.pop("history", None)
        else:
            parent, _, name = rng.choice(self.optional).rpartition(".")
            node = request.get(parent) if parent else request
            if isinstance(node, dict):
                node.pop(name, None)

    def name(self, request: dict[str, Any]) -> None:
        rng = self.rng
        party = request.get(rng.choice(_PARTIES))
        if not isinstance(party, dict):
            return
        if not self.names or rng.random() < 0.2:
            party["name"] = rng.choice(_UNRELATED)
            return
        name = rng.choice(self.names)
        tokens = name.split()
        roll = rng.random()
        if roll < 0.2 and len(name) > 3:  # a typo: two neighbouring letters swapped
            i = rng.randrange(len(name) - 1)
            name = name[:i] + name[i + 1] + name[i] + name[i + 2:]
        elif roll < 0.4 and len(tokens) > 1:  # order swapped, or a token dropped
            name = " ".join(tokens[::-1]) if rng.random() < 0.5 else " ".join(tokens[1:])
        elif roll < 0.6 and len(name) > 4:  # two letters changed: around the threshold
            for _ in range(2):
                i = rng.randrange(len(name))
                name = name[:i] + rng.choice("aeiknrstx") + name[i + 1:]
        party["name"] = name
        if "country" in party and rng.random() < 0.3:  # the secondary key raises or lowers the score
            party["country"] = rng.choice(("RU", "IR", "CN", "GB", "US"))

    def record(self, request: dict[str, Any]) -> None:
        rng = self.rng
        request["label"] = rng.choice(_LABELS)
        if request["label"] is None:
            del request["label"]
        elif request["label"] != {} and rng.random() < 0.5:  # known some days later (label metrics' maturity)
            known = dt.date(2025, 6, 1) + dt.timedelta(days=rng.randrange(90))
            request["label_known_at"] = known.isoformat() if rng.random() < 0.5 else f"{known}T12:00:00+08:00"
        if rng.random() < 0.3:
            request["status"] = rng.choice(("completed", "failed", "reversed"))
        if rng.random() < 0.3:
            request["decision"] = rng.choice(("allow", "deny", "review", "step_up"))


def edge_histories(ruleset: RuleSet, n: int, seed: int = 0, share: float = 0.5) -> Iterator[dict[str, Any]]:
    """``n`` history records for ``ruleset``; about ``share`` of them moved onto edges (see the module doc)."""
    rng = random.Random(f"edges-{seed}")
    mover = _Mover(ruleset, rng)
    moves = (mover.amount, mover.instant, mover.missing, mover.missing, mover.record, mover.name, mover.name)
    for record in iter_payments(n, seed=seed, statuses=True):
        if rng.random() < share:
            for move in rng.sample(moves, rng.randint(1, 3)):
                move(record)
        yield record


def bare_histories(ruleset: RuleSet, n: int, seed: int = 0, retry_every: int = 40) -> list[dict[str, Any]]:
    """:func:`edge_histories` without their ``history`` counters (so a backtest recomputes them), with a retry (the
    same request again) of every ``retry_every``-th record at the end: a retry is read, never counted again."""
    records = list(edge_histories(ruleset, n, seed=seed))
    records += [copy.deepcopy(r) for r in records[::retry_every]]
    for record in records:
        record.pop("history", None)
    return records


def without_screening(pack: Path, root: Path) -> Path:
    """A copy of the bundled pack directory ``pack`` at ``root`` without its name-screening rule (CMP-025): for
    runs that leave screening out (a report's baseline, a benchmark's)."""
    shutil.copytree(pack, root)
    sanctions = root / "compliance" / "sanctions.yaml"
    text = sanctions.read_text(encoding="utf-8")
    start = text.index("  - id: CMP-025\n")
    end = text.find("\n  - id:", start + 1)
    sanctions.write_text(text[:start] + (text[end + 1:] if end != -1 else ""), encoding="utf-8")
    return root
