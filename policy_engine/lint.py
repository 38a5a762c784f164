"""Lint a loaded rule pack: mistakes that load fine but leave a rule dead, pointless or in the wrong unit.

The loader already refuses packs that cannot run (``RuleSetError``). The checks here look at what a pack that
runs will *do*. Each is sound: it reports only what follows from the engine's semantics (DESIGN §3: a leaf is
true only on a present field, a missing one makes it unknown; ``between`` is half-open; list items may be
dated) and the field contract (schema enums, integer fields, the currency a field name carries), so a finding
is never a matter of taste. They are deliberately incomplete: a rule that passes may still be dead in ways
only a solver would see.

| code | name | severity | finding |
|---|---|---|---|
| W101 | never-fires | warning | the rule's condition can never be true |
| W102 | dead-condition | warning | a branch of an ``any`` can never be true, or a ``not`` is always true |
| W110 | shadowed | warning | a broader rule with the same outcome fires whenever this one does |
| W120 | unused-list | warning | a named list (or party list) that no rule uses |
| W130 | no-source | warning | ``source`` is blank or a placeholder (a missing ``source`` is a load error) |
| W140 | reason-missing-field | warning | the reason renders a field the condition does not guarantee is present |
| W170 | screen-not-a-name | warning | ``screen`` on a field that is not a name (``payee.name``, ...) |
| W171 | screen-threshold | warning | a ``screen`` threshold outside [0.80, 0.95], the range the benchmark measures |
| E201 | mixed-currency | error | a sum or a field-to-field comparison of amounts in different currencies |
| E202 | unpinned-currency | error | ``amount.value`` against a fixed number without pinning ``amount.currency`` |
| W203 | reason-currency | warning | the reason states a rule's threshold in another currency than the field's |
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Any

from .compiler import compile_program
from .conditions import All, Any_, Leaf, Node, Not, Operand, fields_read, leaves
from .diagnostics import did_you_mean
from .fields import FieldCatalog
from .operators import Op, Shape
from .request import counters_read
from .resources import load_schema
from .ruleset import SKIP, Rule, RuleSet
from .yamlsource import SourceDoc, YamlSourceError, load_yaml

#: The thresholds benchmarks/screening.py reports recall and false positives for (README "Name screening").
SCREEN_MEASURED = (0.80, 0.95)


@dataclass(frozen=True, slots=True)
class Check:
    code: str
    name: str
    severity: str  # "error" fails `validate` (exit 1); "warning" only with --strict; "info" never


CHECKS: dict[str, Check] = {c.code: c for c in (
    Check("W101", "never-fires", "warning"),
    Check("W102", "dead-condition", "warning"),
    Check("W110", "shadowed", "warning"),
    Check("W120", "unused-list", "warning"),
    Check("W130", "no-source", "warning"),
    Check("W140", "reason-missing-field", "warning"),
    Check("W104", "unknown-value", "warning"),
    Check("I150", "fail-open", "info"),
    Check("W151", "only-undecided", "warning"),
    Check("W160", "unused-aggregate", "warning"),
    Check("W161", "undefined-counter", "warning"),
    Check("W170", "screen-not-a-name", "warning"),
    Check("W171", "screen-threshold", "warning"),
    Check("E201", "mixed-currency", "error"),
    Check("E202", "unpinned-currency", "error"),
    Check("W203", "reason-currency", "warning"),
)}


@dataclass(frozen=True, slots=True)
class Finding:
    """One lint finding, positioned like a load error: ``file:line:col rule-id severity code name: message``."""

    file: str
    line: int
    col: int
    rule_id: str | None
    code: str
    message: str

    @property
    def check(self) -> Check:
        return CHECKS[self.code]

    @property
    def severity(self) -> str:
        return self.check.severity

    def __str__(self) -> str:
        return (f"{self.file}:{self.line}:{self.col} {self.rule_id or '-'} {self.severity} {self.code} "
                f"{self.check.name}: {self.message}")

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "col": self.col, "rule_id": self.rule_id,
                "severity": self.severity, "code": self.code, "name": self.check.name, "message": self.message}


def lint(ruleset: RuleSet) -> tuple[Finding, ...]:
    """Every finding for a loaded pack, in file order."""
    return _Linter(ruleset).run()


# -- describing leaves ---------------------------------------------------------------------------------------
def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def describe(leaf: Leaf) -> str:
    """A leaf as an analyst wrote it, e.g. ``amount.value gt 10`` or ``purpose in list known_purposes``."""
    head = f"{leaf.operand.label} {leaf.op}"
    shape = leaf.op.spec.shape
    if shape is Shape.NONE:
        return head
    if leaf.ref is not None:
        return f"{head} {leaf.ref}"
    if leaf.screen is not None:
        return f"{head} list {leaf.list_name} threshold {leaf.screen.threshold}"
    if leaf.list_name is not None:
        return f"{head} list {leaf.list_name}"
    if leaf.items is not None:
        return f"{head} [{', '.join(_show(i.value) for i in leaf.items)}]"
    if shape is Shape.RANGE:
        lo, hi = leaf.value  # type: ignore[misc]
        return f"{head} [{_show(lo)}, {_show(hi)})"
    return f"{head} {_show(leaf.value)}"


def _conjuncts(node: Node) -> list[Node]:
    """The nodes that must all hold for ``node`` to hold: an ``all`` flattened through nested ``all``s."""
    if isinstance(node, All):
        return [c for child in node.children for c in _conjuncts(child)]
    return [node]


# -- what a conjunction of leaves on one operand allows ------------------------------------------------------
class _Domain:
    """The values one operand may take under a conjunction of leaves. Over-approximates: ``empty`` is only
    true when no value (nor absence) satisfies every leaf."""

    def __init__(self, enum: tuple | None, integer: bool):
        self.allowed: set | None = set(enum) if enum is not None else None  # None: any value of the kind
        self.banned: set = set()
        self.lo: Fraction | None = None
        self.lo_open = False
        self.hi: Fraction | None = None
        self.hi_open = False
        self.integer = integer
        self.present = False
        self.absent = False

    def add(self, leaf: Leaf) -> None:
        op = leaf.op
        if op is Op.MISSING:
            self.absent = True
            return
        self.present = True  # every other operator is true only on a present field (missing: unknown)
        if op is Op.EXISTS or op is Op.SCREEN or leaf.ref is not None:  # screening: any name may score a hit
            return
        if op.spec.shape is Shape.LIST:
            values = {item.value for item in leaf.items or ()}
            if op is Op.IN:
                # A dated item is a member on some days only, so the union of all items over-approximates.
                self.allowed = values if self.allowed is None else self.allowed & values
            else:
                self.banned |= {i.value for i in leaf.items or () if i.start is None and i.end is None}
            return
        if op is Op.NE:
            self.banned.add(leaf.value)
            return
        if op is Op.EQ:
            self.allowed = {leaf.value} if self.allowed is None else self.allowed & {leaf.value}
            if not _is_number(leaf.value):
                return
        lo, lo_open, hi, hi_open = _interval(leaf)
        if lo is not None and (self.lo is None or lo > self.lo or (lo == self.lo and lo_open)):
            self.lo, self.lo_open = lo, lo_open
        if hi is not None and (self.hi is None or hi < self.hi or (hi == self.hi and hi_open)):
            self.hi, self.hi_open = hi, hi_open

    def _in_bounds(self, x: Fraction) -> bool:
        if self.lo is not None and (x < self.lo or (x == self.lo and self.lo_open)):
            return False
        return self.hi is None or not (x > self.hi or (x == self.hi and self.hi_open))

    def empty(self) -> bool:
        if self.present and self.absent:
            return True
        if not self.present:
            return False
        if self.lo is not None and self.hi is not None:
            lo, hi = self.lo, self.hi
            if self.integer:  # integer fields: the open interval (5, 6) holds no value
                first = math.floor(lo) + 1 if self.lo_open else math.ceil(lo)
                last = math.ceil(hi) - 1 if self.hi_open else math.floor(hi)
                if first > last:
                    return True
            elif lo > hi or (lo == hi and (self.lo_open or self.hi_open)):
                return True
        if self.allowed is not None:
            left = {v for v in self.allowed if v not in self.banned}
            left = {v for v in left if not _is_number(v) or self._in_bounds(Fraction(v))}
            return not left
        return False


def _is_number(value: Any) -> bool:
    return isinstance(value, int | Decimal | Fraction) and not isinstance(value, bool)


def _interval(leaf: Leaf) -> tuple[Fraction | None, bool, Fraction | None, bool]:
    """``(lo, lo_open, hi, hi_open)`` of a numeric comparison with a constant."""
    op, v = leaf.op, leaf.value
    if op.spec.shape is Shape.RANGE:
        lo, hi = v  # type: ignore[misc]
        return Fraction(lo), False, Fraction(hi), True
    x = Fraction(v)  # type: ignore[arg-type]
    return {Op.GT: (x, True, None, False), Op.GTE: (x, False, None, False), Op.LT: (None, False, x, True),
            Op.LTE: (None, False, x, False), Op.EQ: (x, False, x, False)}[op]


# -- currencies ---------------------------------------------------------------------------------------------
#: A money field's currency is part of its contract name (``derived.amount_usd``, ``history.cash_today_cny``).
_SUFFIX_CURRENCY = {"_cny": "CNY", "_usd": "USD", "_eur": "EUR"}
VARIES = "the payment's currency"
_MONEY = re.compile(r"\b(?P<c1>[A-Z]{3})\s?(?P<n1>\d[\d,]*(?:\.\d+)?)|(?P<n2>\d[\d,]*(?:\.\d+)?)\s?(?P<c2>[A-Z]{3})\b")


def _unit(path: str, pinned: str | None) -> str | None:
    """The currency a numeric field is in, ``VARIES`` for an unpinned ``amount.value``, None for counts."""
    if path == "amount.value":
        return pinned or VARIES
    for suffix, currency in _SUFFIX_CURRENCY.items():
        if path.endswith(suffix):
            return currency
    return None


def _pin(conjuncts: Iterable[Node]) -> str | None:
    for node in conjuncts:
        if isinstance(node, Leaf) and node.operand.paths == ("amount.currency",) and not node.operand.is_sum:
            if node.op is Op.EQ and isinstance(node.value, str):
                return node.value
            if node.op is Op.IN and node.items and len({i.value for i in node.items}) == 1:
                return str(node.items[0].value)
    return None


def _money_mentions(text: str, codes: set[str]) -> dict[Fraction, set[str]]:
    """Numbers written next to a currency code in a reason: ``CNY 50,000`` or ``10,000 USD``."""
    found: dict[Fraction, set[str]] = {}
    for m in _MONEY.finditer(text):
        code = m["c1"] or m["c2"]
        code = "CNY" if code == "RMB" else code
        if code not in codes:
            continue
        try:
            number = Fraction(Decimal((m["n1"] or m["n2"]).replace(",", "")))
        except InvalidOperation:
            continue
        found.setdefault(number, set()).add(code)
    return found


def _required_paths(schema: dict) -> set[str]:
    out: set[str] = set()

    def walk(s: dict, prefix: str) -> None:
        for name in s.get("required", ()):
            out.add(prefix + name)
            sub = s.get("properties", {}).get(name, {})
            if "properties" in sub:
                walk(sub, f"{prefix}{name}.")

    walk(schema, "")
    return out


def _defaulted_paths(schema: dict, prefix: str = "", required: bool = True) -> set[str]:
    """Fields the engine fills with a schema default; only under objects a valid request always has."""
    out: set[str] = set()
    for name, sub in schema.get("properties", {}).items():
        if "default" in sub and required:
            out.add(prefix + name)
        if "properties" in sub:
            out |= _defaulted_paths(sub, f"{prefix}{name}.", name in schema.get("required", ()))
    return out


def _guaranteed(node: Node) -> set[str]:
    """Fields that are present whenever ``node`` is true (a leaf other than ``missing`` is false on absence)."""
    if isinstance(node, Leaf):
        if node.op is Op.MISSING:
            return set()
        return set(node.operand.paths) | ({node.ref} if node.ref else set())
    if isinstance(node, All):
        return set().union(*(_guaranteed(c) for c in node.children))
    if isinstance(node, Any_):
        sets = [_guaranteed(c) for c in node.children]
        return set.intersection(*sets)
    return set()  # `not` guarantees nothing about presence


# -- the linter ---------------------------------------------------------------------------------------------
class _Linter:
    def __init__(self, ruleset: RuleSet):
        self.ruleset = ruleset
        schema = load_schema("payment_request")
        self.catalog = FieldCatalog(schema)
        self.always_present = (_required_paths(schema) | _defaulted_paths(schema) | {"derived.local_hour"}
                               | set(ruleset.defaults))
        codes = {c for table in ruleset.fx_tables for c in table.rates} | {"CNY", "USD", "EUR", "RMB"}
        self.currency_codes = codes
        self._docs: dict[str, SourceDoc | None] = {}
        self.findings: list[Finding] = []

    def _doc(self, name: str) -> SourceDoc | None:
        # Rules and leaves carry their positions; a list's or a `source:` key's is found by reading its file
        # again, only when a finding needs it. A file that vanished since loading only costs precision.
        if name not in self._docs:
            try:
                self._docs[name] = load_yaml(Path(name), name)
            except YamlSourceError:
                self._docs[name] = None
        return self._docs[name]

    def run(self) -> tuple[Finding, ...]:
        for rule in self.ruleset.rules:
            self._never(rule)
            self._source(rule)
            self._reason_fields(rule)
            self._unknown_values(rule)
            self._screens(rule)
            self._currencies(rule, rule.when, None)
            self._reason_currency(rule)
        self._shadowed()
        self._unused_lists()
        self._unknowns()
        self._aggregates()
        rank = {f: i for i, f in enumerate(self.ruleset.files)}
        return tuple(sorted(self.findings, key=lambda f: (rank.get(f.file, len(rank)), f.line, f.col, f.code)))

    def _add(self, code: str, rule: Rule | None, where: Leaf | tuple[str, int, int] | None, message: str) -> None:
        if isinstance(where, Leaf):
            where = where.pos
        if where is None:
            assert rule is not None
            where = (rule.file, rule.line, rule.col)
        self.findings.append(Finding(*where, rule.id if rule else None, code, message))

    def _rule_key_pos(self, rule: Rule, key: str) -> tuple[str, int, int] | None:
        doc = self._doc(rule.file)
        section = doc.data.get("rules") if doc is not None and isinstance(doc.data, dict) else None
        for i in range(len(section or ())):
            if doc.marks.get(("rules", i)) == (rule.line, rule.col):  # type: ignore[union-attr]
                return (rule.file, *doc.mark(("rules", i, key)))  # type: ignore[union-attr]
        return None

    # -- W101 / W102 ------------------------------------------------------------------------------------------
    def _impossible(self, node: Node) -> tuple[Leaf, str] | None:
        """Why ``node`` can never be true (the leaf to blame, a message), or None if it may be."""
        if isinstance(node, Leaf | All):
            domains: dict[Operand, tuple[_Domain, list[Leaf]]] = {}
            for part in _conjuncts(node):
                if not isinstance(part, Leaf):
                    why = self._impossible(part)
                    if why:
                        return why
                    continue
                info = self.catalog.get(part.operand.paths[0]) if not part.operand.is_sum else None
                enum = (True, False) if info is not None and info.kind == "bool" else info.enum if info else None
                domain, seen = domains.setdefault(part.operand, (_Domain(enum, bool(info and info.integer)), []))
                domain.add(part)
                seen.append(part)
                if domain.empty():
                    return part, self._contradiction(part, seen[:-1], enum)
            return None
        if isinstance(node, Any_):
            whys = [self._impossible(c) for c in node.children]
            if all(whys):
                return whys[0][0], "no branch of `any` can be true: " + "; ".join(w[1] for w in whys)  # type: ignore
            return None
        if self._always(node.child):
            return next(leaves(node.child)), "`not` of a condition that always holds"
        return None

    def _always(self, node: Node) -> bool:
        if isinstance(node, Not):
            return self._impossible(node.child) is not None
        if isinstance(node, All):
            return all(self._always(c) for c in node.children)
        if isinstance(node, Any_):
            return any(self._always(c) for c in node.children)
        return False  # a leaf is never true when its field is missing (it is unknown)

    @staticmethod
    def _contradiction(leaf: Leaf, earlier: list[Leaf], enum: tuple | None) -> str:
        if leaf.op is Op.IN and not leaf.items:
            named = f"list {leaf.list_name} is empty" if leaf.list_name else "the list is empty"
            return f"`{describe(leaf)}` never matches: {named}"
        if not earlier and enum is not None:
            return (f"`{describe(leaf)}` never matches: the request schema allows {leaf.operand.label} to be "
                    f"only {', '.join(_show(v) for v in enum)}")
        if not earlier:
            return f"`{describe(leaf)}` never matches"
        return (f"`{describe(leaf)}` contradicts {', '.join(f'`{describe(e)}`' for e in earlier)} in the same "
                f"`all`: no value of {leaf.operand.label} satisfies them together")

    def _never(self, rule: Rule) -> None:
        why = self._impossible(rule.when)
        if why:
            self._add("W101", rule, why[0], f"rule can never fire: {why[1]}")
            return
        self._dead(rule, rule.when)

    def _dead(self, rule: Rule, node: Node) -> None:
        if isinstance(node, Any_):
            for child in node.children:
                why = self._impossible(child)
                if why:
                    self._add("W102", rule, why[0], f"this branch of `any` can never be true: {why[1]}")
                else:
                    self._dead(rule, child)
        elif isinstance(node, All):
            for child in node.children:
                self._dead(rule, child)
        elif isinstance(node, Not):
            why = self._impossible(node.child)
            if why:
                self._add("W102", rule, why[0], f"`not` is always true here, because {why[1]}")
            else:
                self._dead(rule, node.child)

    # -- W104 ----------------------------------------------------------------------------------------------
    def _unknown_values(self, rule: Rule) -> None:
        """A field whose values the contract leaves open (funding_source.type, purpose: an unknown one is for
        FS-000 / FS-099 to catch) lists the values it knows as ``examples``; a constant outside them is a typo or a
        look-alike character (a Cyrillic ``р`` in ``bnрl``) that makes the rule match nothing real."""
        for leaf in leaves(rule.when):
            if leaf.operand.is_sum or leaf.ref is not None or leaf.op not in (Op.EQ, Op.NE, Op.IN, Op.NOT_IN):
                continue
            path = leaf.operand.paths[0]
            known = (self.catalog.schema(path) or {}).get("examples")
            if not known:
                continue
            values = [i.value for i in leaf.items or ()] if leaf.op.spec.shape is Shape.LIST else [leaf.value]
            for value in values:
                if isinstance(value, str) and value not in known:
                    self._add("W104", rule, leaf, f"{value!r} is not a known {path} ({', '.join(known)})"
                                                  f"{did_you_mean(value, known)}")

    # -- W170 / W171 ---------------------------------------------------------------------------------------
    def _screens(self, rule: Rule) -> None:
        """Name screening compares names: an id or a free-text field scores against list names by accident. A
        threshold outside the range benchmarks/screening.py measures is a guess (below it, false positives
        climb past 1.6% of unrelated names; above it, recall on spelling variants falls under 0.75)."""
        for leaf in leaves(rule.when):
            if leaf.screen is None:
                continue
            path = leaf.operand.paths[0]
            if path.rsplit(".", 1)[-1] != "name":
                self._add("W170", rule, leaf, f"`screen` on {path}, which is not a name field (payer.name, "
                                              "payee.name, merchant.name)")
            if not SCREEN_MEASURED[0] <= leaf.screen.threshold <= SCREEN_MEASURED[1]:
                self._add("W171", rule, leaf, f"threshold {leaf.screen.threshold} is outside "
                                              f"[{SCREEN_MEASURED[0]}, {SCREEN_MEASURED[1]}], the range "
                                              "benchmarks/screening.py measures recall and false positives for")

    # -- I150 / W151 ---------------------------------------------------------------------------------------
    def _unknowns(self) -> None:
        """Missing data is unknown (DOMAIN §5.1 point 6). Every place the pack lets it pass is listed (I150: a
        rule that is skipped when its input is absent), and a rule that can be undecided but never fire (its
        condition is never true, yet a missing field leaves it unknown) is a mistake (W151)."""
        program = compile_program(self.ruleset, {p: self.catalog.get(p).kind for p in self.catalog.paths()},
                                  self.catalog.always_present | frozenset(self.ruleset.defaults))
        can_be_unknown = {c.rule_id for c in program.unknown}
        for rule in self.ruleset.rules:
            if rule.on_unknown == SKIP and rule.id in can_be_unknown:
                deciding = dict.fromkeys(p for leaf in leaves(rule.when) for p in leaf.deciding_fields())
                optional = [p for p in deciding if p not in self.always_present and not p.startswith("derived.")]
                self._add("I150", rule, self._rule_key_pos(rule, "on_unknown"),
                          f"when the request leaves out {' or '.join(optional)}, this {rule.outcome} rule is "
                          "skipped (on_unknown: skip; listed in the trail, never applied)")
            if rule.id in program.only_undecided:
                self._add("W151", rule, None, "rule can never fire, but a missing field leaves it undecided "
                                              f"({rule.on_unknown}): it can only hold payments, never decide them")

    # -- W110 ----------------------------------------------------------------------------------------------
    def _shadowed(self) -> None:
        rules = self.ruleset.rules
        parts = [_conjuncts(r.when) for r in rules]
        # Index every rule by what it offers as a narrower rule `b`; a broader rule `a` can only shadow rules
        # offering all of its own keys, so each `a` meets its few candidates instead of the whole pack.
        holders: dict[Any, set[int]] = {}
        for index, rule in enumerate(rules):
            for key in _shadow_keys(rule, parts[index], narrower=True):
                holders.setdefault(key, set()).add(index)
        shadower: dict[int, int] = {}
        for a_index, a in enumerate(rules):
            a_parts = parts[a_index]
            candidates = set.intersection(*(holders.get(k, set()) for k in _shadow_keys(a, a_parts, narrower=False)))
            for b_index in sorted(candidates - {a_index} - set(shadower)):
                b, b_parts = rules[b_index], parts[b_index]
                if not _window_covers(a, b) or not all(any(_implies(bp, ap) for bp in b_parts) for ap in a_parts):
                    continue
                if a_index > b_index and all(any(_implies(ap, bp) for ap in a_parts) for bp in b_parts):
                    continue  # equivalent rules: report only the later one
                shadower[b_index] = a_index
        for b_index, a_index in shadower.items():
            a, b = rules[a_index], rules[b_index]
            self._add("W110", b, None, f"shadowed by {a.id} ({a.location}): whenever {b.id} fires, {a.id} fires "
                                       f"too with the same outcome `{a.outcome}`"
                                       + (f" and report {a.report}" if a.report else "")
                                       + f", because each condition of {a.id} is implied by one of {b.id}'s")

    # -- W120 ----------------------------------------------------------------------------------------------
    def _unused_lists(self) -> None:
        used = {leaf.list_name for rule in self.ruleset.rules for leaf in leaves(rule.when)}
        used.update(leaf.list_name for agg in self.ruleset.aggregates.values()
                    for node in (agg.where, agg.window.event) if node is not None for leaf in leaves(node))
        for section, names, use in (("lists", self.ruleset.lists, "use it with `list:`"),
                                    ("screening_lists", self.ruleset.screening_lists, "screen names against it")):
            for name in names:
                if name in used:
                    continue
                docs = (d for d in map(self._doc, self.ruleset.files) if d is not None and isinstance(d.data, dict))
                where = next(((d.file, *d.mark((section, name))) for d in docs
                              if name in (d.data.get(section) or {})), None)
                where = where or (self.ruleset.files[0], 1, 1)
                what = "list" if section == "lists" else "party list"
                self.findings.append(Finding(*where, None, "W120", f"{what} {name!r} is defined but no rule uses "
                                                                   f"it; delete it or {use}"))

    # -- W160 / W161 ----------------------------------------------------------------------------------------
    def _aggregates(self) -> None:
        """Counters and their definitions must meet: an aggregate no rule reads costs a store write per payment
        for nothing, and with a store a counter no aggregate defines is never computed (the rule reading it is
        then undecided). Only a pack that declares aggregates is held to the second."""
        aggregates = self.ruleset.aggregates
        if not aggregates:
            return
        read = {f"history.{name}" for name in counters_read(self.ruleset)}
        for name, agg in aggregates.items():
            if name not in read:
                self.findings.append(Finding(agg.file, agg.line, agg.col, None, "W160",
                                             f"aggregate {name} is declared but no rule reads it; delete it or "
                                             "use it in a rule"))
        for rule in self.ruleset.rules:
            fields = set(fields_read(rule.when)) | set(rule.reason.fields)
            if rule.reason_zh:
                fields.update(rule.reason_zh.fields)
            for name in sorted(f for f in fields if f.startswith("history.") and f not in aggregates):
                self._add("W161", rule, None, f"reads {name}, which no aggregate defines: with a state store it "
                                              "is never computed; declare it under `aggregates:`")

    # -- W130 ----------------------------------------------------------------------------------------------
    _PLACEHOLDERS = frozenset({"todo", "tbd", "fixme", "?", "-", "n/a", "na", "none", "unknown", "xxx", "source"})

    def _source(self, rule: Rule) -> None:
        text = rule.source.strip()
        if text and text.lower().strip(".:!") not in self._PLACEHOLDERS:
            return
        shown = "blank" if not text else f"a placeholder ({text!r})"
        self._add("W130", rule, self._rule_key_pos(rule, "source"),
                  f"source is {shown}: name the regulation, article or internal policy the rule comes from")

    # -- W140 ----------------------------------------------------------------------------------------------
    def _reason_fields(self, rule: Rule) -> None:
        present = self.always_present | _guaranteed(rule.when)
        for key, template in (("reason", rule.reason), ("reason_zh", rule.reason_zh)):
            if template is None:
                continue
            for name in dict.fromkeys(template.fields):
                if name not in present:
                    self._add("W140", rule, self._rule_key_pos(rule, key),
                              f"{key} renders {{{name}}}, but the condition does not guarantee it is present, so "
                              f"some payments will read '<missing {name}>'; test it in the rule's `all` or drop "
                              f"the placeholder")

    # -- E201 / E202 ---------------------------------------------------------------------------------------
    def _currencies(self, rule: Rule, node: Node, pinned: str | None) -> None:
        if isinstance(node, All):
            pinned = _pin(_conjuncts(node)) or pinned
            for child in node.children:
                self._currencies(rule, child, pinned)
        elif isinstance(node, Any_):
            for child in node.children:
                self._currencies(rule, child, pinned)
        elif isinstance(node, Not):
            self._currencies(rule, node.child, pinned)
        else:
            self._leaf_currency(rule, node, pinned)

    def _leaf_currency(self, rule: Rule, leaf: Leaf, pinned: str | None) -> None:
        numeric = [p for p in leaf.operand.paths if self.catalog.get(p) and self.catalog.get(p).kind == "num"]
        if not numeric or leaf.op.spec.shape is Shape.NONE:
            return
        units = {p: _unit(p, pinned) for p in (*numeric, *([leaf.ref] if leaf.ref else []))}
        if len(set(units.values())) > 1:
            shown = ", ".join(f"{p} ({u or 'a count'})" for p, u in units.items())
            fix = "; pin amount.currency or use derived.amount_cny" if VARIES in units.values() else ""
            what = "adds" if leaf.operand.is_sum else "compares"
            self._add("E201", rule, leaf, f"`{describe(leaf)}` {what} amounts in different units: {shown}{fix}")
            return
        if leaf.ref is None and VARIES in units.values():
            self._add("E202", rule, leaf, f"`{describe(leaf)}` compares amount.value with a fixed number, but its "
                                          f"currency varies (100 JPY is not 100 USD); compare derived.amount_cny "
                                          f"(or _usd / _eur), or add {{field: amount.currency, op: eq, value: ...}} "
                                          f"to the same `all`")

    # -- W203 ----------------------------------------------------------------------------------------------
    def _reason_currency(self, rule: Rule) -> None:
        mentions = _money_mentions(rule.reason.text, self.currency_codes)
        if not mentions:
            return
        for leaf in leaves(rule.when):
            units = {_unit(p, None) for p in leaf.operand.paths}
            if len(units) != 1 or leaf.ref is not None or leaf.op.spec.shape in (Shape.NONE, Shape.LIST):
                continue
            (unit,) = units
            if unit is None or unit == VARIES:
                continue
            bounds = leaf.value if leaf.op.spec.shape is Shape.RANGE else (leaf.value,)
            for bound in bounds:  # type: ignore[union-attr]
                codes = mentions.get(Fraction(bound))
                if codes and unit not in codes:
                    self._add("W203", rule, leaf, f"`{describe(leaf)}` is in {unit}, but the reason states "
                                                  f"{_show(bound)} in {'/'.join(sorted(codes))}; fix the threshold "
                                                  f"or the reason so they name the same currency")


def _window_covers(a: Rule, b: Rule) -> bool:
    """True when ``a`` is in force on every day ``b`` is."""
    starts = a.effective_from is None or (b.effective_from is not None and a.effective_from <= b.effective_from)
    ends = a.effective_to is None or (b.effective_to is not None and a.effective_to >= b.effective_to)
    return starts and ends


def _shadow_keys(rule: Rule, parts: list[Node], narrower: bool) -> set:
    """Keys a narrower rule must carry for ``_implies`` to hold: the outcome, each leaf's field, each non-leaf
    conjunct itself, and (field, value) for an `eq`, which only an `eq` or one-value `in` implies."""
    keys: set = {("outcome", rule.outcome, rule.report)}
    for part in parts:
        if not isinstance(part, Leaf):
            keys.add(part)
            continue
        keys.add(part.operand)
        if part.ref is None and (part.op is Op.EQ or (narrower and part.op is Op.IN)):
            values = _values(part)
            if values is not None and len(values) == 1:
                keys.add((part.operand, "=", next(iter(values))))
    return keys


def _undated(leaf: Leaf) -> set:
    return {i.value for i in leaf.items or () if i.start is None and i.end is None}


def _values(leaf: Leaf) -> set | None:
    """Every value that can satisfy an ``eq``/``in`` leaf on some day, else None."""
    if leaf.op is Op.EQ and leaf.ref is None:
        return {leaf.value}
    if leaf.op is Op.IN:
        return {i.value for i in leaf.items or ()}
    return None


def _implies(b: Node, a: Node) -> bool:
    """Sound, syntactic: True only if ``b`` being true makes ``a`` true on every request and day."""
    if b == a:
        return True
    if not (isinstance(a, Leaf) and isinstance(b, Leaf)) or a.operand != b.operand:
        return False
    if a.ref is not None or b.ref is not None or b.op is Op.MISSING:
        return False
    if a.op is Op.EXISTS:
        return True
    numeric_a = a.op.spec.numeric or (a.op is Op.EQ and _is_number(a.value))
    numeric_b = b.op.spec.numeric or (b.op is Op.EQ and _is_number(b.value))
    if numeric_a and numeric_b:
        inner, outer = _interval(b), _interval(a)
        return _within(inner, outer)
    accepted = {a.value} if a.op is Op.EQ else _undated(a) if a.op is Op.IN else None
    possible = _values(b)
    return accepted is not None and possible is not None and possible <= accepted


def _within(inner: tuple, outer: tuple) -> bool:
    ilo, ilo_open, ihi, ihi_open = inner
    olo, olo_open, ohi, ohi_open = outer
    if olo is not None and (ilo is None or ilo < olo or (ilo == olo and olo_open and not ilo_open)):
        return False
    return ohi is None or not (ihi is None or ihi > ohi or (ihi == ohi and ohi_open and not ihi_open))

