"""Checks that keep a well-formed pack honest: what it says is what the engine does, at a bounded cost.

The loader runs these after it has parsed a pack's shape, and before anything is compiled:

* **constants the request contract can hold**: a constant or list value compared with a field (in a rule, or in
  an aggregate's ``where:`` / ``since:``) must fit that field's JSON Schema (pattern, enum, bounds), read from
  ``schemas/payment_request.schema.json``. A ``cu`` for ``amount.currency`` or a three-digit MCC could never
  equal a valid request's value, so the rule would silently never (or, with ``ne`` / ``not_in``, always) hold,
  and the counter never (or always) count;
* **printable constants**: no invisible or control character (Unicode Cc, Cf, Zl, Zp, Co, Cn: zero-width
  spaces and joiners, bidi controls, ...) in a constant or list value, where it would make a value read as one
  thing and compare as another;
* **exact rates**: every amount × rate is exact in the engine's exact context (``request.EXACT``), so a rate
  can never fail a payment at evaluation time;
* **bounded cost**: sums, reasons, conditions and lists stay within limits generous for real packs (the
  default pack's largest values are far below each), so no pack makes every evaluation slow.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from string import Formatter
from typing import TYPE_CHECKING, Any

import jsonschema

from .conditions import leaves
from .diagnostics import did_you_mean
from .errors import Issue
from .fields import FieldCatalog
from .operators import Op
from .request import EXACT, MAX_AMOUNT, MINOR_UNITS
from .ruleset import Rule
from .yamlsource import SourceDoc, clip

if TYPE_CHECKING:  # typing only: the loader hands over the aggregates it built
    from .aggregates import Aggregate

#: Evaluation-cost limits (rules/README.md "Limits"). The default pack's largest: 2 operands, 4 placeholders,
#: 11 leaves in a rule, 192 leaves in all, 30 items in a list, 88 list items in all.
MAX_ADD_OPERANDS = 32
MAX_REASON_PLACEHOLDERS = 64
MAX_RULE_LEAVES = 1_000
MAX_PACK_LEAVES = 200_000
MAX_LIST_ITEMS = 100_000  # one list, named or written inline (the rule-file schema caps named lists alike)
MAX_PACK_LIST_ITEMS = 1_000_000

#: The largest amount has MAX_AMOUNT's integer digits and the most decimals any currency has; a rate may have
#: as many digits as the exact context has left, so amount × rate never rounds (or raises) in a payment.
AMOUNT_DIGITS = MAX_AMOUNT.adjusted() + max(MINOR_UNITS.values())
MAX_RATE_INTEGER_DIGITS = 12
MAX_RATE_PLACES = EXACT.prec - AMOUNT_DIGITS - MAX_RATE_INTEGER_DIGITS

#: Unicode categories that print as nothing (or move text around): controls, format characters such as
#: U+200B ZERO WIDTH SPACE and the bidi controls, line/paragraph separators, private use, unassigned.
_INVISIBLE = frozenset(("Cc", "Cf", "Zl", "Zp", "Co", "Cn"))


def invisible_character(text: str) -> str | None:
    """The first invisible or control character of ``text``, or None."""
    if text.isascii() and text.isprintable():
        return None
    return next((c for c in text if unicodedata.category(c) in _INVISIBLE), None)


def describe_character(char: str) -> str:
    # control characters have no Unicode name: a tab is not "UNASSIGNED"
    unnamed = "CONTROL CHARACTER" if unicodedata.category(char) == "Cc" else "UNASSIGNED"
    return f"U+{ord(char):04X} {unicodedata.name(char, unnamed)}"


def rate_problem(text: str, rate: Decimal) -> str | None:
    """Why a reference rate could not be used exactly, or None."""
    integer_digits = max(0, rate.adjusted() + 1)
    written = text.split(".")[1] if "." in text else ""
    places = len(written.rstrip("0"))  # the schema has made the text digits with at most one point
    if integer_digits > MAX_RATE_INTEGER_DIGITS:
        return (f"rate {clip(text)} has {integer_digits} digits before the decimal point; the limit is "
                f"{MAX_RATE_INTEGER_DIGITS} (rates are CNY per one unit)")
    if places > MAX_RATE_PLACES:
        return (f"rate {clip(text)} has {places} decimal places; the limit is {MAX_RATE_PLACES}, so that every "
                f"amount × rate is exact in the engine's {EXACT.prec}-digit arithmetic")
    return None


def placeholder_problem(text: str) -> str | None:
    """Why a reason template would cost too much to render for every fired rule, or None. A malformed template
    is left to :class:`~policy_engine.decision.ReasonTemplate`, which says what is wrong with it."""
    try:
        count = sum(1 for _, name, _, _ in Formatter().parse(text) if name is not None)
    except ValueError:
        return None
    if count > MAX_REASON_PLACEHOLDERS:
        return (f"{count} placeholders; a reason renders at most {MAX_REASON_PLACEHOLDERS} (it is rendered for "
                f"every payment the rule fires on)")
    return None


def cost_issues(rules: Iterable[Rule], lists: Mapping[str, tuple], first_file: str) -> list[Issue]:
    """Every limit a loaded pack's conditions and lists exceed, as positioned issues."""
    issues: list[Issue] = []
    total_leaves = 0
    for rule in rules:
        count = 0
        for leaf in leaves(rule.when):
            count += 1
            file, line, col = leaf.pos or (rule.file, rule.line, rule.col)
            if len(leaf.operand.paths) > MAX_ADD_OPERANDS:
                issues.append(Issue(file, line, col, rule.id, f"`add` of {len(leaf.operand.paths)} fields; the "
                                                              f"limit is {MAX_ADD_OPERANDS}"))
            if leaf.list_name is None and leaf.items is not None and len(leaf.items) > MAX_LIST_ITEMS:
                issues.append(Issue(file, line, col, rule.id, f"`{leaf.op}` list of {len(leaf.items):,} values; "
                                                              f"the limit is {MAX_LIST_ITEMS:,}"))
        total_leaves += count
        if count > MAX_RULE_LEAVES:
            issues.append(Issue(rule.file, rule.line, rule.col, rule.id,
                                f"condition of {count:,} leaves; a rule has at most {MAX_RULE_LEAVES:,}"))
    if total_leaves > MAX_PACK_LEAVES:
        issues.append(Issue(first_file, 1, 1, None, f"{total_leaves:,} condition leaves in the pack; the limit "
                                                    f"is {MAX_PACK_LEAVES:,}"))
    items = sum(len(values) for values in lists.values())
    if items > MAX_PACK_LIST_ITEMS:
        issues.append(Issue(first_file, 1, 1, None, f"{items:,} list values in the pack; the limit is "
                                                    f"{MAX_PACK_LIST_ITEMS:,}"))
    return issues


# -- constants against the request contract ------------------------------------------------------------------
ListSource = tuple[SourceDoc, tuple]  # the file of a named list, and the path of its items in it


class ConstantChecker:
    """Checks the constants a pack writes against the request schema and for invisible characters."""

    def __init__(self, catalog: FieldCatalog):
        self.catalog = catalog
        self._validators: dict[tuple[str, bool], jsonschema.Draft202012Validator] = {}
        self.issues: list[Issue] = []

    def check(self, docs: Iterable[SourceDoc], rules: Iterable[Rule], list_sources: Mapping[str, ListSource],
              aggregates: Mapping[str, Aggregate]) -> list[Issue]:
        loaded = {(r.file, r.line, r.col): r.id for r in rules}
        counters = {(a.file, a.field) for a in aggregates.values()}
        # (list, field) -> who first compares them: (the rule id, or None for an aggregate; its name)
        list_users: dict[tuple[str, str], tuple[str | None, str]] = {}
        for doc, path, tree, rid, who in _conditions(docs, loaded, counters):
            for leaf_path, leaf in _raw_leaves(tree, path):
                if "list" in leaf:
                    if isinstance(leaf["field"], str):
                        list_users.setdefault((leaf["list"], leaf["field"]), (rid, who))
                    continue
                self._leaf(doc, leaf_path, leaf, rid)
        for name, (doc, base) in list_sources.items():
            fields = [(field, user) for (used, field), user in list_users.items() if used == name]
            for item_path, value in _list_values(doc, base):
                self._list_value(doc, item_path, name, value, fields)
        return self.issues

    def _leaf(self, doc: SourceDoc, path: tuple, leaf: Mapping[str, Any], rid: str | None) -> None:
        field, op = leaf["field"], leaf["op"]
        if "value" not in leaf:
            return  # exists / missing, or a ref: no constant
        value = leaf["value"]
        if not isinstance(value, list):
            self._value(doc, (*path, "value"), rid, value, field)
            return
        for j, item in enumerate(value):
            self._value(doc, (*path, "value", j), rid, item, field, upper_bound=op == Op.BETWEEN and j == 1)

    def _value(self, doc: SourceDoc, at: tuple, rid: str | None, value: Any, field: Any,
               upper_bound: bool = False) -> None:
        if isinstance(value, str) and (char := invisible_character(value)):
            self.issues.append(doc.issue(at, rid, f"{value!r} contains {describe_character(char)}, an invisible "
                                                  "or control character; a constant must be what a reader sees"))
            return
        why = self._misfit(field, value, upper_bound) if isinstance(field, str) else None
        if why:
            self.issues.append(doc.issue(at, rid, f"{value!r} is outside what the request schema allows for "
                                                  f"{field}: {why}"))

    def _list_value(self, doc: SourceDoc, at: tuple, name: str, value: Any,
                    fields: list[tuple[str, tuple[str | None, str]]]) -> None:
        if isinstance(value, str) and (char := invisible_character(value)):
            self.issues.append(doc.issue(at, None, f"list {name!r}: {value!r} contains {describe_character(char)}"
                                                   ", an invisible or control character; a list value must be "
                                                   "what a reader sees"))
            return
        for field, (rid, who) in fields:
            why = self._misfit(field, value, upper_bound=False)
            if why:
                self.issues.append(doc.issue(at, rid, f"list {name!r}: {value!r} is outside what the request "
                                                      f"schema allows for {field}, which {who} compares with it: "
                                                      f"{why}"))

    def _misfit(self, field: str, value: Any, upper_bound: bool) -> str | None:
        """What the field's schema says is wrong with ``value``, or None (also for fields without a schema)."""
        validator = self._validator(field, upper_bound)
        if validator is None:
            return None
        if isinstance(value, float):
            value = Decimal(repr(value))  # exact, as the loader reads it
        error = next(iter(validator.iter_errors(value)), None)
        return None if error is None else _why(error)

    def _validator(self, field: str, upper_bound: bool) -> jsonschema.Draft202012Validator | None:
        key = (field, upper_bound)
        if key not in self._validators:
            schema = self.catalog.schema(field)
            info = self.catalog.get(field)
            if schema is None or info is None:
                return None
            self._validators[key] = jsonschema.Draft202012Validator(
                _as_constant_schema(schema, upper_bound, info.integer))
        return self._validators[key]


def _as_constant_schema(schema: Mapping[str, Any], upper_bound: bool, integer: bool) -> dict[str, Any]:
    """The constraints a constant compared with the field must meet.

    The loader has already matched the constant's kind with the field's, and a threshold need not have the
    field's type (``risk_score gte 74.5``). A bound itself is a meaningful threshold (``amount.value gt 0``
    where amounts are above 0), so exclusive bounds become inclusive; and ``between``'s upper end is exclusive,
    so it may lie one step past the maximum (``risk_score between [75, 100]``), or anywhere past it for a
    field with decimals."""
    out = {k: v for k, v in schema.items() if k not in ("type", "exclusiveMinimum", "exclusiveMaximum")}
    for exclusive, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if exclusive in schema:
            out[inclusive] = schema[exclusive]
    if upper_bound and "maximum" in out:
        if integer:
            out["maximum"] += 1
        else:
            del out["maximum"]
    return out


def _why(error: jsonschema.ValidationError) -> str:
    if error.validator == "pattern":
        return f"it must match {error.validator_value}"
    if error.validator == "enum":
        options = [str(o) for o in error.validator_value]
        return f"it is one of {options}{did_you_mean(str(error.instance), options)}"
    if error.validator == "minimum":
        return f"the minimum is {error.validator_value}"
    if error.validator == "maximum":
        return f"the maximum is {error.validator_value}"
    return error.message


def _conditions(docs: Iterable[SourceDoc], loaded: Mapping[tuple[str, int, int], str],
                counters: set[tuple[str, str]]) -> Iterator[tuple[SourceDoc, tuple, Any, str | None, str]]:
    """Every condition tree of a loaded rule or aggregate as written: (file, path, tree, rule id or None, who
    reads it). A counter's `where:` and `since:` decide what it counts, so a constant there that no request can
    carry makes a limit that never fills, exactly as one in a rule makes a rule that never fires. Rules and
    aggregates that did not load are left out: their own errors are reported, their constants may be any shape."""
    for doc in docs:
        data = doc.data if isinstance(doc.data, dict) else {}
        section = data.get("rules")
        for i, raw in enumerate(section if isinstance(section, list) else ()):
            rid = loaded.get((doc.file, *doc.mark(("rules", i))))
            if rid is not None:
                yield doc, ("rules", i, "when"), raw["when"], rid, rid
        declared = data.get("aggregates")
        for name, raw in (declared.items() if isinstance(declared, dict) else ()):
            if (doc.file, name) not in counters:
                continue
            if "where" in raw:
                yield doc, ("aggregates", name, "where"), raw["where"], None, f"aggregate {name}"
            if isinstance(raw["window"], dict) and "since" in raw["window"]:
                yield doc, ("aggregates", name, "window", "since"), raw["window"]["since"], None, f"aggregate {name}"


def _raw_leaves(node: Any, path: tuple) -> Iterator[tuple[tuple, Mapping[str, Any]]]:
    """The leaves of a condition tree as written (the loader has checked its shape), with their paths."""
    if "not" in node:
        yield from _raw_leaves(node["not"], (*path, "not"))
    elif "all" in node or "any" in node:
        key = "all" if "all" in node else "any"
        for i, child in enumerate(node[key]):
            yield from _raw_leaves(child, (*path, key, i))
    else:
        yield path, node


def _list_values(doc: SourceDoc, base: tuple) -> Iterator[tuple[tuple, Any]]:
    items: Any = doc.data
    for key in base:
        items = items[key]
    for i, item in enumerate(items):
        yield ((*base, i, "value"), item["value"]) if isinstance(item, dict) else ((*base, i), item)
