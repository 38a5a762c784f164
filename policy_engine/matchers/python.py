"""The pure-Python matcher: the lowered rules compiled to one generated function, indexed on one field.

The function reads the normalised request directly and compares exact values as they are: strings and
booleans, and numbers (``int``, ``Decimal``, the ``Fraction`` of a cross-rate conversion) against the rules'
exact thresholds. Python compares these types with each other exactly, so every comparison has the answer the
durable matcher gets on its integer encoding, without paying for an encoding. Cumulative sums and field-to-field
comparisons are computed lazily, the first time a rule that got that far needs them; so is the result of name
screening (``screen`` leaves: :meth:`policy_engine.screening.Screening.hit`).

The generated source can be read and debugged: each rule's line ends with a comment naming the rule and its
``file:line``; the source is in :mod:`linecache` under the pack's name (see :mod:`policy_engine.codegen`), and
``policy-engine validate --emit-matcher FILE`` writes it out. A fault inside it is an
:class:`~policy_engine.errors.EvaluationError` naming the rule that was being checked.

Rules that require a particular value of the most commonly tested field (usually ``funding_source.type`` or
``purpose``) are only checked when the request has that value; the rest are checked on every request.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal, Inexact
from fractions import Fraction
from typing import Any

from ..codegen import compile_function, failing_line
from ..compiler import DAY_KEY, CompiledRule, LAll, LAny, LNode, Program, Test
from ..errors import EvaluationError
from ..operators import Op, Shape
from ..request import CROSS_RATE_PATHS, EXACT, PreparedRequest

_UNSET = object()


def _required_values(tree: LNode, exclude: set[str] = frozenset()) -> tuple[str, frozenset] | None:  # type: ignore[assignment]
    """If the rule can only fire when one key (not in ``exclude``) equals one of a few constants, that key and
    those values."""
    conjuncts = tree.children if isinstance(tree, LAll) else (tree,)
    for c in conjuncts:
        if isinstance(c, Test) and c.op is Op.EQ and c.ref_key is None and c.key not in exclude:
            return c.key, frozenset([c.const])
        if isinstance(c, LAny) and c.children and all(
            isinstance(t, Test) and t.op is Op.EQ and t.ref_key is None for t in c.children
        ):
            keys = {t.key for t in c.children}  # type: ignore[union-attr]
            if len(keys) == 1 and not keys & exclude:
                return keys.pop(), frozenset(t.const for t in c.children)  # type: ignore[union-attr]
    return None


def _sum(view: Any, paths: tuple[str, ...]) -> Decimal | int | Fraction | None:
    """The exact sum of the fields at ``paths``; a missing operand makes the sum missing (unknown). Declared
    defaults (history counters: 0) are already in the view."""
    total: Any = 0
    get = view.get
    for path in paths:
        value = get(path)
        if value is None:
            return None
        if type(value) is Fraction or type(total) is Fraction:
            total = Fraction(total) + Fraction(value)
        else:
            try:
                total = EXACT.add(total, value)  # 80 digits: request amounts never round here
            except Inexact:  # if one ever did, exact Fraction arithmetic instead of rounding
                total = Fraction(total) + Fraction(value)
    return total


def _threshold(value: Decimal) -> int | Decimal:
    """A numeric constant as the cheapest exact type to compare with: an int when whole (counters are ints and
    comparing a Fraction with an int is the fast path), else the Decimal itself."""
    whole = int(value)
    return whole if whole == value else value


def _sign(view: Any, left: str, right: str) -> int | None:
    a, b = view.get(left), view.get(right)
    if a is None or b is None:
        return None
    return (a > b) - (a < b)


class _Codegen:
    def __init__(self, program: Program) -> None:
        self.consts: dict[str, Any] = {}
        self.lazy: dict[str, str] = {}  # fact key -> expression computing it
        self.layout = layout = program.layout
        late = set(CROSS_RATE_PATHS.values())  # left pending by the preparer: complete the view first

        def source(*paths: str) -> str:
            return "prep.complete()" if late.intersection(paths) else "view"

        for paths, key in layout.sums.items():
            self.lazy[key] = f"_sum({source(*paths)}, {paths!r})"
        for (left, right), key in layout.cmps.items():
            self.lazy[key] = f"_sign({source(left, right)}, {left!r}, {right!r})"
        for path, key in layout.plain.items():
            if path in late:
                self.lazy[key] = f"prep.complete().get({path!r})"
        #: a screening's key -> the key of the name it screens: the hit is missing exactly when the name is, so a
        #: test on the hit first tests the name (a nameless request, nearly every one, never calls the screener)
        self.screened: dict[str, str] = {}
        for screening, key in layout.screens.items():  # the screener runs only when a rule gets that far
            self.lazy[key] = f"{self.const(screening.hit)}(view, day)"
            self.screened[key] = layout.plain[screening.field]
        self.numeric = layout.numeric_keys

    def value(self, test: Test) -> Any:
        """The constant a test compares with, numbers as :func:`_threshold`."""
        return _threshold(test.const) if test.key in self.numeric else test.const

    def guard(self, rule: CompiledRule) -> str:
        """``(a is None or b is None) and `` before an undecided check: some field it needs must be missing. Plain
        fields are locals already; any other is read from the view, where a cross-rate amount still pending reads
        as missing, which only lets the exact check run."""
        if not rule.missing_any:
            return ""
        plain = self.layout.plain
        tests = [f"{plain[p]} is None" if p in plain and plain[p] not in self.lazy else f"g({p!r}) is None"
                 for p in rule.missing_any]
        return f"({' or '.join(tests)}) and "

    def const(self, value: Any) -> str:
        if isinstance(value, bool | int | str) or value is None:
            return repr(value)
        name = f"_k{len(self.consts)}"
        self.consts[name] = value
        return name

    def ref(self, key: str) -> str:
        """An expression for fact ``key``; lazy keys are computed once, on first use."""
        if key in self.lazy:
            return f"({key} if {key} is not _UNSET else ({key} := {self.lazy[key]}))"
        return key

    def expr(self, node: LNode) -> str:
        if isinstance(node, Test):
            v = self.ref(node.key)
            lazy = node.key in self.lazy
            spec = node.op.spec
            if spec.shape is Shape.NONE:
                return f"{v} {spec.python} None"
            if node.ref_key is not None:
                w = self.ref(node.ref_key)
                return f"({v} is not None and {w} is not None and {node.key} {spec.python} {node.ref_key})"
            if node.op is Op.EQ:
                test = f"{v} {spec.python} {self.const(self.value(node))}"  # None never equals a constant
                name = self.screened.get(node.key)
                return test if name is None else f"({name} is not None and {test})"
            # a lazy key is materialised by the `is not None` test, so the comparison reads the plain name
            return f"({v} is not None and {node.key if lazy else v} {spec.python} {self.const(self.value(node))})"
        if isinstance(node, LAny):
            if not node.children:
                return "False"
            eqs = [t for t in node.children if isinstance(t, Test) and t.op is Op.EQ and t.ref_key is None]
            if len(eqs) == len(node.children) and len({t.key for t in eqs}) == 1 and len(eqs) > 3:
                # equal numbers hash equal across int, Decimal and Fraction, so set membership stays exact
                return f"{self.ref(eqs[0].key)} in {self.const(frozenset(self.value(t) for t in eqs))}"
            # `or` is order-free too (every test is pure): cheap tests first, so "the name is missing" decides
            # before a screening would be computed
            return "(" + " or ".join(self.expr(c) for c in sorted(node.children, key=self._cost)) + ")"
        if not node.children:
            return "True"
        # `and` is order-free here (every test is pure), so the cheap, selective tests go first: plain
        # equalities, then other plain tests, then anything that computes a number, then dates (rarely false).
        ordered = sorted(node.children, key=self._cost)
        # `not_in` lowers to one `ne` per listed value; several on one key become a single set test (the
        # catch-all rules for unknown funding sources and purposes run on every request)
        nes: dict[str, list[Test]] = {}
        for c in ordered:
            if isinstance(c, Test) and c.op is Op.NE and c.ref_key is None and c.key not in self.lazy:
                nes.setdefault(c.key, []).append(c)
        merged = {key: tests for key, tests in nes.items() if len(tests) > 3}
        parts: list[str] = []
        done: set[str] = set()
        for c in ordered:
            if isinstance(c, Test) and c.key in merged and c.op in (Op.NE, Op.EXISTS) and c.ref_key is None:
                if c.key not in done:  # the first of them stands for all (`exists` is implied)
                    done.add(c.key)
                    values = self.const(frozenset(self.value(t) for t in merged[c.key]))
                    parts.append(f"({c.key} is not None and {c.key} not in {values})")
                continue
            parts.append(self.expr(c))
        return "(" + " and ".join(parts) + ")"

    def _cost(self, node: LNode) -> int:
        if isinstance(node, Test):
            if node.key == DAY_KEY:
                return 5
            if node.key in self.lazy or (node.ref_key is not None and node.ref_key in self.lazy):
                return 3
            if node.key in self.numeric and node.op.spec.shape is not Shape.NONE:
                return 2  # comparing a Decimal or a cross-rate Fraction costs more than comparing strings
            # an equality, or a field being missing (what an undecided check hinges on: rarely true), first
            return 0 if node.op in (Op.EQ, Op.MISSING) else 1
        if isinstance(node, LAny) and all(self._cost(c) == 0 for c in node.children if isinstance(c, Test)) \
                and all(isinstance(c, Test) and c.op is Op.MISSING for c in node.children):
            return 0  # "one of these fields is missing": a few `is None` tests, usually all false
        return 3 + max((self._cost(c) for c in node.children), default=0)


_MAX_DEPTH = 2  # levels of dispatch on required field values
_MIN_GROUP = 4  # rules worth a dispatch level


#: A line of generated code, and the rule it checks (``None`` for a dispatch line).
_Line = tuple[str, "CompiledRule | None"]


def _partition(gen: _Codegen, rules: list[CompiledRule], used: set[str], indent: str, depth: int) -> list[_Line]:
    """Rules that can only fire for certain values of one field are checked only under those values.

    The field is chosen as the one most rules require (not yet dispatched on); each value gets an ``if``/
    ``elif`` branch holding the rules that require it (a rule requiring one of several values appears under
    each), partitioned again one level down. Rules requiring nothing of that field are checked after."""
    def body(group: list[CompiledRule]) -> list[_Line]:
        return [(f"{indent}if {gen.guard(r)}{gen.expr(r.tree)}: out.append({r.index})", r) for r in group]

    reqs = {r.index: _required_values(r.tree, exclude=used) for r in rules}
    counts = Counter(req[0] for req in reqs.values()
                     if req and req[0] not in gen.lazy and req[0] not in gen.numeric)
    if depth >= _MAX_DEPTH or not counts or counts.most_common(1)[0][1] < _MIN_GROUP:
        return body(rules)
    key = counts.most_common(1)[0][0]
    by_value: dict[Any, list[CompiledRule]] = {}
    rest = []
    for r in rules:
        req = reqs[r.index]
        if req and req[0] == key:
            for value in sorted(req[1], key=repr):
                by_value.setdefault(value, []).append(r)
        else:
            rest.append(r)
    lines: list[_Line] = []
    for n, (value, group) in enumerate(sorted(by_value.items(), key=lambda kv: -len(kv[1]))):
        lines.append((f"{indent}{'if' if n == 0 else 'elif'} {key} == {gen.const(value)}:", None))
        lines += _partition(gen, group, used | {key}, indent + "    ", depth + 1)
    return lines + _partition(gen, rest, used | {key}, indent, depth + 1)


def _printable(text: str) -> str:
    """``text`` safe in a comment of generated code: a line break in a file name must not end the comment."""
    return "".join(c if c.isprintable() else "?" for c in text)


class _Generated:
    """Groups of a program's entries (when rules fire; when they are undecided) as one generated function:
    ``run(prepared)`` -> the sorted indexes that match. The fields are read and the sums computed once for all
    groups. A fault inside it is an :class:`EvaluationError` naming the rule being checked."""

    def __init__(self, program: Program, groups: tuple[tuple[CompiledRule, ...], ...], what: str):
        self.program = program
        gen = _Codegen(program)
        layout = program.layout
        count = sum(len(g) for g in groups)
        lines = [f"# {what} of {_printable(program.label)}: {count} checks; `_k*` are constants",
                 "def match(view, day, prep):", "    g = view.get"]
        for path, key in layout.plain.items():
            if key not in gen.lazy:
                lines.append(f"    {key} = g({path!r})")
        lines.append(f"    {DAY_KEY} = day")
        lines += [f"    {k} = _UNSET" for k in sorted(gen.lazy)]
        lines.append("    out = []")
        #: generated line number -> the id of the rule checked there, to name it when the check fails
        self._rule_at: dict[int, str] = {}
        for rules in groups:
            for text, rule in _partition(gen, list(rules), set(), "    ", depth=0):
                if rule is not None:
                    self._rule_at[len(lines) + 1] = rule.rule_id
                    text += f"  # {rule.rule_id} {_printable(program.position(rule.rule_id))}"
                lines.append(text)
        lines += ["    out.sort()", "    return out"]
        self.what = what
        self.source = "\n".join(lines) + "\n"
        namespace: dict[str, Any] = {"_UNSET": _UNSET, "_sum": _sum, "_sign": _sign, **gen.consts}
        self.function = compile_function(self.source, "match", f"{what} {program.label}", namespace)

    def run(self, prepared: PreparedRequest) -> list[int]:
        try:
            return self.function(prepared.view, prepared.day, prepared)
        except Exception as exc:  # costs nothing until something fails
            rule_id = self._rule_at.get(failing_line(exc.__traceback__, self.function))  # type: ignore[arg-type]
            where = f" in rule {rule_id} ({self.program.position(rule_id)})" if rule_id is not None else ""
            raise EvaluationError(f"python {self.what} failed{where}: {type(exc).__name__}: {exc}",
                                  prepared.request_id) from exc


class UnknownChecker:
    """Which rules are undecided on a request (condition unknown: DOMAIN §5.1 point 6), for the durable matcher:
    the program's unknown-trees as one generated function, answering indexes ``program.size + i``.

    The trees are exact (Kleene's logic lowered to tests on present and missing keys), but durable-rules cannot
    run them itself: a rule's unknown-tree needs the *false* side of its siblings, whose alternatives (dated
    lists) expand past durable-rules' limits: CMP-002's to over 4,096. The python matcher checks the same trees
    in its own generated function."""

    def __init__(self, program: Program):
        self._generated = _Generated(program, (program.unknown,), "unknown checker") if program.unknown else None

    def __call__(self, prepared: PreparedRequest) -> list[int]:
        return self._generated.run(prepared) if self._generated is not None else []


class PythonMatcher:
    name = "python"

    def __init__(self, program: Program):
        self.program = program
        # when each rule fires, then when each is undecided: one function, so fields are read once
        self._generated = _Generated(program, (program.rules, program.unknown), "matcher")
        self._match = self._generated.function
        self.source = self._generated.source

    def match(self, prepared: PreparedRequest) -> list[int]:
        return self._generated.run(prepared)

    def close(self) -> None:
        pass
