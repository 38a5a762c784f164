"""The durable-rules matcher: lowered rules compiled to durable_rules Rete rulesets, driven through the C API.

durable-rules has hard limits (DESIGN §6) that this module keeps every compiled ruleset inside:

* **64-entry match stack** (error 303 at request time): the alpha network is walked depth-first with a fixed
  stack of 64 entries, so a ruleset must never have more than 64 alpha nodes matching one fact. Every rule is
  expanded to its alternatives (disjunctive normal form, with an ``in`` list kept as one ``$or`` of equalities
  on one key, of which at most one can hold); each alternative becomes its own durable rule, and rules are
  packed into *shards* so that the tests of one shard add up to at most ``SHARD_BUDGET``. Expanding also means
  a rule never fires once per true ``$or`` branch: the only ``$or`` left has mutually exclusive branches.
* **512 conditions under one node** hang ruleset creation or matching, whether they sit in one ``$or`` or in
  several rules of the same ruleset: ``in`` lists longer than ``MAX_BRANCHES`` are split across several
  alternatives, and a shard holds at most ``MAX_SHARD_TESTS`` tests in all (every ``$or`` member counted).
* **256 rules sharing one identical condition** crash the process (every rule shares the anchor test):
  a shard holds at most ``MAX_RULES_PER_SHARD`` durable rules.
* **4,096 rules per ruleset**: implied by the two limits above.

Numbers are exact although the C core compares doubles: a value ``x`` is handed over as the integer
``2*floor(x*S) + (0 if x*S is whole else 1)`` with ``S = 10**SCALE_DIGITS``; thresholds (which the loader
restricts to multiples of ``1/S``) become ``2*t*S``. Every comparison of ``x`` with ``t`` then has the same
answer on the encodings, for decimals and for the rationals that cross-rate conversions produce, so
``0.1 + 0.2 > 0.3`` is false here as it is in arithmetic. Values beyond the largest allowed threshold saturate,
which keeps every comparison right and keeps the integers inside the 53 bits durable-rules compares exactly.
The compiler hands over exact constants; they are encoded here (``encode_tree``), and each request's facts by
a generated encoder (``FactEncoder``).

Strings reach the C core only in a safe alphabet: any string outside ``[A-Za-z0-9 _.:/+@-]{0,128}`` (in rule
constants and in requests alike) is replaced by ``~`` and the hex of its UTF-8 bytes. The mapping is injective,
so equality is unchanged, and the core (which compares with ``strcmp`` over 16-bit lengths) never sees a NUL,
an escape, invalid UTF-8 or an overlong string, whatever a request carries.

Speed: shards are grouped by a value their rules require (``Shard.trigger``: the funding source, the
purpose, a country...), so a request is asserted only into the shards it can fire in, and each shard is sent
only the fact keys it reads (``Shard.keys``; the C core parses the whole fact once per shard), which are also
the only keys encoded.

Facts, not events (``assert_fact`` fires every matching rule); each fact gets a fresh id and is retracted
after matching. Every rule is anchored on the constant ``t == "pay"`` so none is only "field missing".
A ruleset handle is not thread-safe and the C core keeps the GIL, so each evaluation borrows a whole set of
handles from a pool. Handles outlive a matcher: they go back to a process-wide cache keyed by shard definition
(see ``_HandleCache``) and are deleted once no live matcher uses that definition, or after an error.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import re
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import durable_rules_engine as _dre

from ..codegen import compile_function
from ..compiler import DAY_KEY, CompiledRule, FactLayout, LAny, LNode, Program, Test
from ..errors import EvaluationError, Issue, RuleSetError
from ..loader import SCALE_DIGITS
from ..operators import Op, Shape
from ..request import PreparedRequest
from .python import UnknownChecker

SHARD_BUDGET = 48  # alpha-node tests per shard; the engine's stack holds 64 (anchor and margin below)
MAX_BRANCHES = 256  # members of one `in` $or; durable hangs at 512
MAX_SHARD_TESTS = 400  # all tests of one ruleset, $or members included; durable hangs at 512 under one node
MAX_RULES_PER_SHARD = 200  # rules sharing the anchor; durable crashes at 256
MAX_ALTERNATIVES = 4096  # per pack rule after expansion; beyond this the rule is refused for this matcher
# Durable rulesets per pack: a request is asserted into every shard its trigger admits, so a small pack of many
# `any`s (8 rules of 12 two-way `any`s expand to 32,768 alternatives in 8,192 shards) would cost seconds per
# request. The default pack plans 18 shards, a generated 1,000-rule pack 81.
MAX_SHARDS = 256

_SID = "0"  # one session per handle: facts are retracted after each match, so nothing is shared between them
#: durable-rules' name for each primitive operator (the compiler lowers the others to these).
DURABLE_OPS = {Op.EQ: "$eq", Op.NE: "$neq", Op.GT: "$gt", Op.GTE: "$gte", Op.LT: "$lt", Op.LTE: "$lte",
               Op.EXISTS: "$ex", Op.MISSING: "$nex"}

Atom = Test | LAny  # an LAny atom is a group of equalities on one key


# -- exact numbers as integers ---------------------------------------------------------------------------------
SCALE = 10**SCALE_DIGITS
_SATURATE = 2**51 + 1  # odd, beyond 2 * MAX_CONSTANT * SCALE: compares right with every threshold


def encode_ratio(num: int, den: int) -> int:
    """The exact order-preserving integer encoding of ``num / den`` described in the module docstring."""
    q, r = divmod(num * SCALE, den)
    enc = 2 * q + (1 if r else 0)
    if enc > _SATURATE:
        return _SATURATE
    if enc < -_SATURATE:
        return -_SATURATE
    return enc


def encode_constant(x: Decimal | int) -> int:
    return 2 * int(Decimal(x).scaleb(SCALE_DIGITS))


def encode_tree(node: LNode, numeric_keys: frozenset[str]) -> LNode:
    """The lowered tree with every numeric constant encoded (signs of ``c*`` keys and day ordinals stay)."""
    if isinstance(node, Test):
        if node.key in numeric_keys and node.const is not None and node.ref_key is None:
            return replace(node, const=encode_constant(node.const))
        return node
    return type(node)(tuple(encode_tree(c, numeric_keys) for c in node.children))


class FactEncoder:
    """Encodes a normalised request into the facts the durable rules test: one key per field, sum and
    comparison of the layout, numbers encoded. Missing fields are simply absent."""

    def __init__(self, layout: FactLayout, label: str):
        self.keys = layout.all_keys
        self._encode = _generate_encoder(layout, label)

    def encode(self, view: Mapping[str, Any], day: int, want: frozenset[str] | None = None) -> dict[str, Any]:
        """Facts for one request (only the keys in ``want``, when given)."""
        return self._encode(view, day, self.keys if want is None else want)


def _generate_encoder(layout: FactLayout, label: str):
    """The encoder is straight-line generated code: one guarded block per fact key, so a caller that needs a
    few keys pays for those; each number's exact ratio is taken at most once (the amount appears in a dozen
    cumulative sums); no loops over the layout on the hot path."""
    numeric = [p for p in layout.plain if layout.kinds[p] == "num"]
    for paths in layout.sums:
        numeric += [p for p in paths if p not in numeric]
    ratio_var = {p: f"r{i}" for i, p in enumerate(numeric)}

    def ratio(path: str) -> str:  # the ratio of a numeric field, computed on first use
        r = ratio_var[path]
        return f"({r} if {r} is not _UNSET else ({r} := _ratio(g({path!r}))))"

    lines = ["def encode(view, day, want):", "    g = view.get", "    facts = {}"]
    lines += [f"    {r} = _UNSET" for r in ratio_var.values()]
    for path, key in layout.plain.items():
        lines.append(f"    if {key!r} in want:")
        if path in ratio_var:
            lines.append(f"        r = {ratio(path)}")
            lines.append(f"        if r is not None: facts[{key!r}] = _enc(*r)")
        else:
            lines.append(f"        v = g({path!r})")
            lines.append(f"        if v is not None: facts[{key!r}] = v")
    for paths, key in layout.sums.items():
        terms = ", ".join(ratio(p) for p in paths)
        lines.append(f"    if {key!r} in want:")
        lines.append(f"        t = _sum(({terms},))")
        lines.append(f"        if t is not None: facts[{key!r}] = _enc(*t)")
    for (left, right), key in layout.cmps.items():
        lines.append(f"    if {key!r} in want:")
        lines.append(f"        a, b = g({left!r}), g({right!r})")
        lines.append(f"        if a is not None and b is not None: facts[{key!r}] = (a > b) - (a < b)")
    screeners = {}
    for screening, key in layout.screens.items():  # name screening, computed here: the fact is its result
        screeners[f"_screen_{key}"] = screening.hit
        lines.append(f"    if {key!r} in want:")
        lines.append(f"        v = _screen_{key}(view, day)")
        lines.append(f"        if v is not None: facts[{key!r}] = v")
    if layout.uses_day:
        lines.append(f"    if {DAY_KEY!r} in want: facts[{DAY_KEY!r}] = day")
    lines.append("    return facts")
    namespace: dict[str, Any] = {"_enc": encode_ratio, "_sum": _sum_ratios, "_ratio": _ratio, "_UNSET": _UNSET,
                                 **screeners}
    return compile_function("\n".join(lines) + "\n", "encode", f"durable fact encoder {label}", namespace)


_UNSET = object()


def _ratio(value: Any) -> tuple[int, int] | None:
    return None if value is None else value.as_integer_ratio()


def _sum_ratios(terms: tuple[tuple[int, int] | None, ...]) -> tuple[int, int] | None:
    """The exact sum of ratio terms as (numerator, denominator); a missing operand makes the sum missing
    (unknown). Declared defaults (history counters: 0) are already in the view.

    Integer arithmetic on ``as_integer_ratio`` pairs: exact for Decimals and Fractions alike, and several times
    faster than summing ``Fraction`` objects on the hot path."""
    num, den = 0, 1
    for ratio in terms:
        if ratio is None:
            return None
        n, d = ratio
        if d == den:
            num += n
        else:
            num, den = num * d + n * den, den * d
    return num, den


# -- sharding ----------------------------------------------------------------------------------------------------


def _is_group(node: LNode) -> bool:
    return (isinstance(node, LAny) and len(node.children) > 1 and all(
        isinstance(t, Test) and t.op is Op.EQ and t.ref_key is None for t in node.children)
        and len({t.key for t in node.children}) == 1)  # type: ignore[union-attr]


def _dnf(node: LNode, limit: int) -> list[list[Atom]]:
    if isinstance(node, Test):
        return [[node]]
    if _is_group(node):
        members = node.children  # type: ignore[union-attr]
        if len(members) <= MAX_BRANCHES:
            return [[node]]  # type: ignore[list-item]
        return [[LAny(members[i:i + MAX_BRANCHES])] for i in range(0, len(members), MAX_BRANCHES)]
    if isinstance(node, LAny):
        out: list[list[Atom]] = []
        for child in node.children:
            out.extend(_dnf(child, limit))
            if len(out) > limit:
                raise OverflowError
        return out
    terms: list[list[Atom]] = [[]]
    for child in node.children:  # type: ignore[union-attr]
        alts = _dnf(child, limit)
        terms = [t + a for t in terms for a in alts]
        if len(terms) > limit:
            raise OverflowError
    return terms


_SAFE = re.compile(r"[A-Za-z0-9 _.:/+@-]{0,128}")


def safe_text(value: Any) -> Any:
    """Strings in the safe alphabet unchanged, others as ``~hex``; non-strings unchanged."""
    if type(value) is str and not _SAFE.fullmatch(value):
        return "~" + value.encode("utf-8", "surrogatepass").hex()
    return value


@functools.lru_cache(maxsize=4096)
def _json_text(value: str) -> str:
    return f'"{safe_text(value)}"'  # after safe_text nothing needs escaping: no quote, backslash or control


def _json_value(value: Any) -> str:
    """A fact value as JSON (strings repeat across requests: codes, purposes, countries)."""
    if type(value) is str:
        return _json_text(value)
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is int:
        return str(value)
    return json.dumps(safe_text(value), ensure_ascii=False)


def _test_json(test: Test) -> dict:
    name = DURABLE_OPS[test.op]
    if test.op.spec.shape is Shape.NONE:
        return {name: {test.key: 1}}
    if test.ref_key is not None:
        return {name: {test.key: {"$m": test.ref_key}}}
    right = safe_text(test.const)
    return {test.key: right} if test.op is Op.EQ else {name: {test.key: right}}  # durable's short form of $eq


def _atom_json(atom: Atom) -> dict:
    if isinstance(atom, Test):
        return _test_json(atom)
    return {"$or": [_test_json(t) for t in atom.children]}  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Shard:
    definition: str  # JSON for create_ruleset
    names: dict[str, int]  # durable rule name -> pack rule index
    cost: int  # tests that can match one fact at once (an `in` group counts once)
    tests: int  # all tests, every `in` member counted
    #: (fact key, values): every rule of the shard requires the fact to hold one of these values, so a fact
    #: with any other value (or none) cannot fire anything here and skips the shard's assert and retract.
    trigger: tuple[str, frozenset] | None = None
    #: The fact keys the shard's rules read: a shard is sent only these (parsing a 48-field fact costs the C
    #: core about 7 µs a shard; a shard's own few fields cost 1 to 6).
    keys: tuple[str, ...] = ()


def _keys(term: list[Atom]) -> set[str]:
    out: set[str] = set()
    for atom in term:
        for test in (atom,) if isinstance(atom, Test) else atom.children:
            out.add(test.key)  # type: ignore[union-attr]
            if test.ref_key is not None:  # type: ignore[union-attr]
                out.add(test.ref_key)  # type: ignore[union-attr]
    return out


def _size(term: list[Atom]) -> int:
    return sum(len(a.children) if isinstance(a, LAny) else 1 for a in term)


def _guards(term: list[Atom]) -> dict[str, frozenset]:
    """Keys the alternative requires to equal one of a few constants, and those constants."""
    out: dict[str, frozenset] = {}
    for atom in term:
        if isinstance(atom, Test) and atom.op is Op.EQ and atom.ref_key is None:
            values = frozenset([atom.const])
        elif _is_group(atom):
            values = frozenset(t.const for t in atom.children)  # type: ignore[union-attr]
        else:
            continue
        key = atom.key if isinstance(atom, Test) else atom.children[0].key  # type: ignore[union-attr]
        out[key] = out[key] & values if key in out else values
    return out


def _by_trigger(variants: list[tuple[int, str, list[Atom]]]) -> list[tuple[str | None, list]]:
    """Variants grouped for sharding, as (guard key, [(guard values, variant)]): each under the guard key most
    variants share (the funding source, the purpose, ...), sorted by its values so that a shard's trigger set
    stays small; unguarded variants last (key ``None``), in pack order.

    (Copying a variant into one shard per guard value, so a request runs only its own value's shards, was
    measured too: 56 shards instead of 23 and no faster, since the cost is in the few large shards.)"""
    guards = [_guards(term) for _, _, term in variants]
    popularity = Counter(key for g in guards for key in g)
    buckets: dict[str | None, list[tuple[frozenset, tuple[int, str, list[Atom]]]]] = {}
    for variant, guard in zip(variants, guards, strict=True):
        key = max(guard, key=lambda k: (popularity[k], k)) if guard else None
        buckets.setdefault(key, []).append((guard[key] if key else frozenset(), variant))
    for key, members in buckets.items():
        if key is not None:
            members.sort(key=lambda m: sorted(map(repr, m[0])))
    return sorted(buckets.items(), key=lambda b: (b[0] is None, b[0] or ""))


def plan_shards(program: Program, budget: int = SHARD_BUDGET,
                max_rules: int = MAX_RULES_PER_SHARD) -> list[Shard]:
    """Split the program into durable rulesets that stay inside durable-rules' limits, grouped so that most
    requests can skip most shards (see ``Shard.trigger``)."""
    variants: list[tuple[int, str, list[Atom]]] = []
    issues: list[Issue] = []
    numeric = program.layout.numeric_keys
    for rule in program.rules:
        try:
            terms = _dnf(encode_tree(rule.tree, numeric), MAX_ALTERNATIVES)
        except OverflowError:
            issues.append(_issue(program, rule, f"condition expands to more than {MAX_ALTERNATIVES} alternatives; "
                                                "the durable matcher cannot run it (split the rule or use lists)"))
            continue
        for n, term in enumerate(terms):
            if len(term) > budget:
                issues.append(_issue(program, rule, f"one alternative has {len(term)} tests; the durable matcher "
                                                    f"allows {budget} (simplify the condition)"))
                break
            variants.append((rule.index, f"r{rule.index}_{n}", term))
    if issues:
        raise RuleSetError(issues)
    shards: list[Shard] = []
    current: dict[str, Any] = {}
    names: dict[str, int] = {}
    cost = tests = 0
    values: frozenset = frozenset()
    keys: set[str] = set()

    def flush(key: str | None) -> None:
        nonlocal current, names, cost, tests, values, keys
        if current:
            trigger = (key, values) if key is not None else None
            shards.append(Shard(json.dumps(current, ensure_ascii=False), names, cost, tests, trigger,
                                tuple(sorted(keys))))
        current, names, cost, tests, values, keys = {}, {}, 0, 0, frozenset(), set()

    for key, members in _by_trigger(variants):
        for guard, (index, name, term) in members:
            term_cost, term_tests = len(term), _size(term) + 1  # + the anchor
            if current and (cost + term_cost > budget or tests + term_tests > MAX_SHARD_TESTS
                            or len(current) >= max_rules):
                flush(key)
            current[name] = {"all": [{"m": {"$and": [{"t": "pay"}, *(_atom_json(a) for a in term)]}}]}
            names[name] = index
            cost += term_cost
            tests += term_tests
            values |= guard
            keys |= _keys(term)
        flush(key)  # a shard holds the rules of one guard key only
    if len(shards) > MAX_SHARDS:
        per_rule = Counter(index for index, _, _ in variants)
        worst = next(r for r in program.rules if r.index == per_rule.most_common(1)[0][0])
        raise RuleSetError([_issue(program, worst, f"the pack's conditions expand to {len(variants):,} alternatives "
                                                   f"in {len(shards):,} durable rulesets; the durable matcher allows "
                                                   f"{MAX_SHARDS} (this rule expands most: split its `any`s into "
                                                   "rules or lists, or use the python matcher)")])
    return shards


def _issue(program: Program, rule: CompiledRule, message: str) -> Issue:
    loc = program.locations.get(rule.rule_id, ("<pack>", 1, 1))
    return Issue(loc[0], loc[1], loc[2], rule.rule_id, message)


class _HandleCache:
    """Idle durable ruleset handles by shard definition, shared by every matcher of the process.

    durable-rules never gives back the working memory a ruleset builds up while matching (deleting the
    session state first would, but ``delete_state`` corrupts the heap in 2.0.28), so deleting a used handle
    leaks a few MiB. Handles are therefore kept and reused for any matcher whose shard has the same
    definition: reloading an unchanged pack, or a pack where most shards are unchanged, creates nothing new.
    A definition no live matcher uses any more has its idle handles deleted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[str, list[int]] = {}
        self._users: dict[str, int] = {}
        self._names = itertools.count(1)

    def register(self, definitions: list[str]) -> None:
        with self._lock:
            for d in definitions:
                self._users[d] = self._users.get(d, 0) + 1

    def unregister(self, definitions: list[str]) -> None:
        doomed: list[int] = []
        with self._lock:
            for d in definitions:
                self._users[d] -= 1
                if self._users[d] == 0:
                    del self._users[d]
                    doomed += self._idle.pop(d, [])
        for handle in doomed:
            _delete(handle)

    def take(self, definition: str) -> int:
        with self._lock:
            idle = self._idle.get(definition)
            if idle:
                return idle.pop()
            name = f"pe{next(self._names)}"
        return _dre.create_ruleset(name, definition)

    def give(self, definition: str, handle: int, healthy: bool) -> None:
        with self._lock:
            if healthy and self._users.get(definition):
                self._idle.setdefault(definition, []).append(handle)
                return
        _delete(handle)


def _delete(handle: int) -> None:
    with contextlib.suppress(Exception):  # best effort: the handle is unusable either way
        _dre.delete_ruleset(handle)


HANDLES = _HandleCache()


class _HandleSet:
    __slots__ = ("definitions", "handles", "ids")

    def __init__(self, shards: list[Shard]):
        self.definitions = [shard.definition for shard in shards]
        self.handles: list[int] = []
        try:
            for definition in self.definitions:
                self.handles.append(HANDLES.take(definition))
        except BaseException:
            self.release(healthy=False)
            raise
        self.ids = itertools.count(1)

    def release(self, healthy: bool) -> None:
        """Hand the handles back to the process-wide cache (a failed handle is deleted instead)."""
        for definition, handle in zip(self.definitions, self.handles, strict=False):
            HANDLES.give(definition, handle, healthy)
        self.handles = []


class DurableMatcher:
    name = "durable"

    def __init__(self, program: Program, budget: int = SHARD_BUDGET, max_rules: int = MAX_RULES_PER_SHARD):
        self.program = program
        self._unknown = UnknownChecker(program)  # undecided rules: see UnknownChecker for why not durable-rules
        self.encoder = FactEncoder(program.layout, program.label)
        self.shards = plan_shards(program, budget, max_rules)
        self._triggers = tuple(enumerate(shard.trigger for shard in self.shards))
        self._trigger_keys = frozenset(shard.trigger[0] for shard in self.shards if shard.trigger is not None)
        self._want_cache: dict[tuple[int, ...], frozenset[str]] = {}
        self._definitions = [shard.definition for shard in self.shards]
        HANDLES.register(self._definitions)
        self._lock = threading.Lock()
        self._closed = False
        self._unregistered = False  # the definitions are given back to the cache exactly once
        try:
            self._idle: list[_HandleSet] = [_HandleSet(self.shards)]  # fail at load, not at request
        except BaseException:
            HANDLES.unregister(self._definitions)
            raise
        self._live = 1

    # -- pool ----------------------------------------------------------------------------------------------
    def _acquire(self) -> _HandleSet:
        with self._lock:
            # After close() (a reload) an evaluation that picked up this pack just before the swap still gets
            # handles; they are deleted when it releases them.
            if self._idle:
                return self._idle.pop()
            self._live += 1
        try:
            return _HandleSet(self.shards)
        except BaseException:
            with self._lock:
                self._live -= 1
            raise

    def _release(self, hs: _HandleSet, healthy: bool) -> None:
        with self._lock:
            if healthy and not self._closed:
                self._idle.append(hs)
                return
            self._live -= 1
            last = self._closed and self._live == 0 and not self._unregistered
            self._unregistered |= last
        hs.release(healthy)
        if last:
            HANDLES.unregister(self._definitions)

    @property
    def handle_sets(self) -> int:
        """Handle sets alive now (idle + in use); 0 after ``close`` once in-flight calls finished."""
        with self._lock:
            return self._live

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            idle, self._idle = self._idle, []
            self._live -= len(idle)
            last = self._live == 0
            self._unregistered = last
        for hs in idle:
            hs.release(healthy=True)
        if last:  # otherwise the last in-flight evaluation to finish unregisters
            HANDLES.unregister(self._definitions)

    # -- matching ------------------------------------------------------------------------------------------
    def match(self, prepared: PreparedRequest) -> list[int]:
        # Encode the trigger keys, see which shards can fire, then encode only what those shards read.
        encoder, view, day = self.encoder, prepared.complete(), prepared.day
        facts = encoder.encode(view, day, self._trigger_keys)
        running = self._running(facts)
        facts.update(encoder.encode(view, day, self._wanted(running)))
        return self._match(facts, running) + self._unknown(prepared)

    def match_facts(self, facts: dict[str, Any]) -> list[int]:
        """Match a complete fact dict (every key of the layout that the request has)."""
        return self._match(facts, self._running(facts))

    def _running(self, facts: dict[str, Any]) -> tuple[int, ...]:
        """The shards a fact can fire in: no trigger, or the fact holds one of the trigger values."""
        return tuple(i for i, trigger in self._triggers if trigger is None or facts.get(trigger[0]) in trigger[1])

    def _wanted(self, running: tuple[int, ...]) -> frozenset[str]:
        """The fact keys the running shards read, beyond the trigger keys already encoded (cached: requests
        fall into few shard combinations)."""
        want = self._want_cache.get(running)
        if want is None:
            want = frozenset(key for i in running for key in self.shards[i].keys) - self._trigger_keys
            if len(self._want_cache) < 4096:  # bounded whatever the traffic
                self._want_cache[running] = want
        return want

    def _match(self, facts: dict[str, Any], running: tuple[int, ...]) -> list[int]:
        hs = self._acquire()
        healthy = False
        try:
            fired = self._run(hs, facts, running)
            healthy = True
            return fired
        except EvaluationError:
            raise
        except Exception as exc:
            raise EvaluationError(f"durable matcher failed: {exc}") from exc
        finally:
            self._release(hs, healthy)

    def _run(self, hs: _HandleSet, facts: dict[str, Any], running: tuple[int, ...]) -> list[int]:
        # Each running shard gets a fact with only the keys its rules read, from JSON pieces made once.
        pieces = {key: f'"{key}":{_json_value(value)},' for key, value in facts.items()}
        tail = f'"id":{next(hs.ids)},"sid":"{_SID}","t":"pay"}}'
        fired: set[int] = set()
        for i in running:
            handle, shard = hs.handles[i], self.shards[i]
            text = "{" + "".join([pieces[key] for key in shard.keys if key in pieces]) + tail
            code, state = _dre.assert_fact(handle, text)
            try:
                if code == 0:
                    result = _dre.start_action_for_state(handle, state)
                    message = result[1] if result else None
                    while message:
                        # '{"r12_0":{"m":{...}}}' -- only the rule name is needed, so skip parsing the fact
                        name = message[2:message.index('"', 2)]
                        fired.add(shard.names[name])
                        message = _dre.complete_and_start_action(handle, state)
                elif code != 1:  # 1: no rule matched
                    raise EvaluationError(f"durable-rules returned status {code}")
            finally:
                _dre.retract_fact(handle, text)
        return sorted(fired)

