"""A compiled JSON Schema validator for the request contract, fast enough for the payment hot path.

``jsonschema`` interprets a schema on every call (~190 µs a request here). This module generates one Python
function from the schema, once (the way fastjsonschema does), and that function reports *every* violation with
its JSON path (fail-fast validators report only the first). It supports the keywords the request contract
uses and refuses any other keyword at compile time, so the schema can never quietly ask for more than is
checked.

One deliberate difference from JSON Schema: a property whose value is JSON ``null`` counts as absent (the
request contract's missing-data rule), so it is skipped, or reported as missing when it is required. The test
suite checks the validator against ``jsonschema`` (on requests with nulls removed) on generated requests.

Another, on top of JSON Schema: a number must fit the engine's exact arithmetic (:func:`decimal_in_bounds`), so
``1e-10000000`` is refused before anything computes with it (turning it into a fraction or an integer takes
minutes and holds the GIL).
"""

from __future__ import annotations

import ast
import difflib
import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from .codegen import compile_function
from .errors import Violation
from .errors import json_path_step as _suffix

_ANNOTATIONS = {"$schema", "$id", "title", "description", "default", "examples", "$comment"}
_SUPPORTED = _ANNOTATIONS | {"type", "required", "properties", "additionalProperties", "enum", "pattern",
                             "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength",
                             "maxLength", "maxProperties", "items", "maxItems", "propertyNames", "allOf"}
#: What an ``allOf`` entry and its ``if`` condition may use: conditions on values the object checks already typed.
_CONDITIONAL = _ANNOTATIONS | {"if", "then"}
_CONDITION = _ANNOTATIONS | {"required", "properties", "const", "enum", "not"}

#: Exact arithmetic bounds on a number: at most this many decimal places and this many integer digits. Far more
#: than any amount, count or rate needs; what lies beyond is hostile (``1e-10000000``, ``1e+10000000``).
MAX_NUMBER_PLACES = 20
MAX_NUMBER_DIGITS = 20


def decimal_in_bounds(value: Decimal) -> bool:
    """A finite Decimal within :data:`MAX_NUMBER_PLACES` and :data:`MAX_NUMBER_DIGITS`. Cheap tests first: the
    magnitude (``adjusted``) costs nothing; the exponent needs the digit tuple, linear in what was sent."""
    return (value.is_finite() and value.adjusted() < MAX_NUMBER_DIGITS
            and value.as_tuple().exponent >= -MAX_NUMBER_PLACES)  # type: ignore[operator]


#: The types a number of a request may have. Exactly these, as a string is exactly ``str``: a subclass goes to the
#: matcher as it is and may redefine the comparisons it makes (an ``int`` whose ``<`` is always False made a minor's
#: ``payer.age`` pass an age limit), or lack what the engine calls on a Decimal.
_NUMBER_TYPES = (int, float, Decimal)


def _is_number(v: Any) -> bool:
    kind = type(v)
    if kind is int:
        return True
    if kind is float:
        return math.isfinite(v) and decimal_in_bounds(Decimal(repr(v)))
    if kind is Decimal:
        return decimal_in_bounds(v)
    return False


def _is_integer(v: Any) -> bool:
    return type(v) is int or (_is_number(v) and v == int(v))  # JSON Schema: 1.0 is an integer


#: Type tests as expressions over ``{v}``; the common exact types are tested first without a call.
_TYPE_EXPR = {
    "object": "type({v}) is dict",
    "array": "type({v}) is list",
    "string": "type({v}) is str",
    "boolean": "type({v}) is bool",
    "null": "{v} is None",
    "number": "(type({v}) is int or _is_number({v}))",
    "integer": "(type({v}) is int or _is_integer({v}))",
}


#: Patterns the request contract uses for codes, as string tests equivalent to the regex (ASCII only, fixed
#: length) and about five times cheaper; any other pattern uses the regex.
_FAST_PATTERNS = {
    "^[A-Z]{2}$": "len({v}) == 2 and {v}.isascii() and {v}.isalpha() and {v}.isupper()",
    "^[A-Z]{3}$": "len({v}) == 3 and {v}.isascii() and {v}.isalpha() and {v}.isupper()",
    "^[0-9]{4}$": "len({v}) == 4 and {v}.isascii() and {v}.isdigit()",
}


def _ecma_regex(pattern: str) -> re.Pattern:
    """JSON Schema patterns are ECMA-262 regexes: a final `$` matches only at the end of the string, where
    Python's also matches before a trailing newline ("12\n" must not pass as an amount)."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if type(v) not in _NUMBER_TYPES and isinstance(v, _NUMBER_TYPES):
        return type(v).__name__  # a subclass (an IntEnum, numpy's float64) is named: send the plain value
    if (isinstance(v, Decimal) and not v.is_finite()) or (isinstance(v, float) and not math.isfinite(v)):
        return f"non-finite number ({v})"
    if isinstance(v, Decimal | float) and not _is_number(v):
        return (f"a number beyond exact arithmetic (more than {MAX_NUMBER_PLACES} decimal places or "
                f"{MAX_NUMBER_DIGITS} integer digits)")
    if isinstance(v, int | Decimal | float):
        return "number"
    return {dict: "object", list: "array", str: "string"}.get(type(v), type(v).__name__)


def _bad_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def fits_places(value: Any, places: int) -> bool:
    """At most ``places`` significant decimals: the reduced denominator of an exact decimal divides 10^places
    exactly when it has no more (100.10 has 1, 1.000 has 0). Non-finite values are left to the type check; a
    number beyond :func:`decimal_in_bounds` does not fit (its denominator is never computed)."""
    if type(value) is float:
        if not math.isfinite(value):
            return True
        value = Decimal(repr(value))
    elif type(value) is int or not value.is_finite():
        return True
    return decimal_in_bounds(value) and (10**places) % value.as_integer_ratio()[1] == 0


def _enum_ok(v: Any, options: tuple) -> bool:
    return any(v == o and type(v) is type(o) for o in options)


#: Violations a request may already have for its unknown keys to still be given a did-you-mean: difflib costs about
#: 0.45 ms a key, and a body of thousands of made-up keys took seconds; a typo is among the first few anyway.
SUGGEST_WITHIN = 20


def _unknown(key: Any, known: frozenset[str], hint: str, reported: int) -> str:
    """The message for a key the contract does not define: a near miss is usually a typo or camelCase (looked for
    while fewer than :data:`SUGGEST_WITHIN` violations are ``reported``)."""
    text = str(key)
    close = [] if reported >= SUGGEST_WITHIN else \
        difflib.get_close_matches(text, known, n=1, cutoff=0.6) or \
        [k for k in sorted(known) if k.replace("_", "") == text.replace("_", "").lower()][:1]
    message = "unknown field" + (f"; did you mean {close[0]!r}?" if close else "")
    return f"{message} ({hint})" if hint else message


def _then_context(errors: list[Violation], mark: int, why: str) -> None:
    """Say why a conditional requirement applies on the violations it added."""
    for i in range(mark, len(errors)):
        errors[i] = Violation(errors[i].path, f"{errors[i].message}: {why}")


class _Gen:
    def __init__(self, collect: dict[str, bool], places: dict[str, int], hints: dict[str, str] | None = None) -> None:
        self.collect = collect
        self.places = places
        self.hints = hints or {}  # JSON path of a closed object -> what to say about an unknown key there
        self.lines: list[str] = []
        self.consts: dict[str, Any] = {}
        self.n = 0

    def const(self, value: Any) -> str:
        name = f"_c{len(self.consts)}"
        self.consts[name] = value
        return name

    def var(self) -> str:
        self.n += 1
        return f"v{self.n}"

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def condition(self, schema: dict, v: str, where: str, known: dict[str, str] | None = None) -> str:
        """A Python expression that is true when ``v`` matches ``schema`` (an ``if``): required properties,
        ``const``, ``enum`` and ``not`` on them. Null counts as absent, as everywhere in this validator.
        ``known``: ``v`` is a dict whose properties are in these variables already (the fast path)."""
        unknown = set(schema) - _CONDITION
        if unknown:
            raise ValueError(f"request schema at {where} uses unsupported keywords {sorted(unknown)} in a condition")
        tests = []
        if "required" in schema or "properties" in schema:
            if known is None:
                tests.append(f"type({v}) is dict")

            def get(name: str) -> str:
                return known[name] if known and name in known else f"{v}.get({name!r})"

            tests += [f"{get(name)} is not None" for name in schema.get("required", ())]
            for name, sub in schema.get("properties", {}).items():
                inner = self.condition(sub, get(name), f"{where}/properties/{name}")
                required = name in schema.get("required", ())
                tests.append(inner if required else f"({get(name)} is None or {inner})")
        if "const" in schema:
            tests.append(self.member(v, (schema["const"],)))
        if "enum" in schema:
            tests.append(self.member(v, tuple(schema["enum"])))
        if "not" in schema:
            tests.append(f"not {self.condition(schema['not'], v, f'{where}/not')}")
        return f"({' and '.join(tests) or 'True'})"

    def member(self, v: str, options: tuple) -> str:
        if all(type(o) is str for o in options):
            return f"(type({v}) is str and {v} in {self.const(frozenset(options))})"
        return f"_enum_ok({v}, {self.const(options)})"

    def conditionals(self, schema: dict, where: str) -> list[tuple[str, dict, dict, str]]:
        """``allOf`` entries as (where, if, then, why); only ``if``/``then`` pairs are supported."""
        out = []
        for i, entry in enumerate(schema.get("allOf", ())):
            at = f"{where}/allOf/{i}"
            unknown = set(entry) - _CONDITIONAL
            if unknown or "if" not in entry or "then" not in entry:
                raise ValueError(f"request schema at {at}: only `if`/`then` pairs are supported in allOf")
            out.append((at, entry["if"], entry["then"], entry.get("description", "")))
        return out

    def schema(self, schema: dict, v: str, path: str, dynamic: bool, indent: int, where: str,
               after_type: tuple[str, ...] = ()) -> None:
        """Emit checks of value ``v``; ``path`` is a Python expression for its JSON path. ``after_type`` lines
        run once the value has the schema's type (or first, when the schema sets no type)."""
        unknown = set(schema) - _SUPPORTED
        if unknown:
            raise ValueError(f"request schema at {where} uses unsupported keywords {sorted(unknown)}")
        types = schema.get("type")
        # Bounds need a number guard only when the type check above them lets other types through.
        numeric_only = types in ("number", "integer")
        if types is not None:
            names = (types,) if isinstance(types, str) else tuple(types)
            test = " or ".join(_TYPE_EXPR[n].format(v=v) for n in names)
            expected = " or ".join(names)
            self.emit(indent, f"if not ({test}):")
            self.emit(indent + 1, f"errors.append(_V({path}, 'expected {expected}, got ' + _type_name({v})))")
            self.emit(indent, "else:")
            indent += 1
            self.emit(indent, "pass")
            if "string" in names:
                # Lone surrogates are not text: they cannot be encoded, logged or handed to the C matcher.
                self.emit(indent, f"if type({v}) is str and not {v}.isascii() and _bad_unicode({v}):")
                self.emit(indent + 1, f"errors.append(_V({path}, 'string is not valid Unicode (lone surrogate)'))")
        for line in after_type:
            self.emit(indent, line)
        if "enum" in schema:
            options = tuple(schema["enum"])
            self.emit(indent, f"if not {self.member(v, options)}:")
            self.emit(indent + 1, f"errors.append(_V({path}, repr({v}) + ' is not one of ' + {str(list(options))!r}))")
        if "pattern" in schema:
            fast = _FAST_PATTERNS.get(schema["pattern"])
            test = fast.format(v=v) if fast else f"{self.const(_ecma_regex(schema['pattern']).search)}({v})"
            self.emit(indent, f"if type({v}) is str and not ({test}):")
            self.emit(indent + 1, f"errors.append(_V({path}, repr({v}) + ' does not match ' + "
                                  f"{schema['pattern']!r}))")
        if "minLength" in schema or "maxLength" in schema:
            n = self.var()
            self.emit(indent, f"{n} = len({v}) if type({v}) is str else None")
            for key, op, text in (("minLength", ">=", "shorter than"), ("maxLength", "<=", "longer than")):
                if key in schema:
                    self.emit(indent, f"if {n} is not None and not ({n} {op} {schema[key]!r}):")
                    self.emit(indent + 1, f"errors.append(_V({path}, 'string is {text} {schema[key]} characters'))")
        bounds = [(key, op, text) for key, op, text in (
            ("minimum", ">=", "less than"), ("maximum", "<=", "greater than"),
            ("exclusiveMinimum", ">", "less than or equal to"),
            ("exclusiveMaximum", "<", "greater than or equal to")) if key in schema]
        if bounds:
            guard = "" if numeric_only else f"_is_number({v}) and "
            # the common case (in range) costs one test; which bound failed is worked out only on failure
            inside = " and ".join(f"{v} {op} {schema[key]!r}" for key, op, _ in bounds)
            self.emit(indent, f"if {guard}not ({inside}):")
            for key, op, text in bounds:
                self.emit(indent + 1, f"if not ({v} {op} {schema[key]!r}):")
                self.emit(indent + 2, f"errors.append(_V({path}, str({v}) + ' is {text} {schema[key]}'))")
        if "maxProperties" in schema:
            most = schema["maxProperties"]
            self.emit(indent, f"if type({v}) is dict and len({v}) > {most}:")
            self.emit(indent + 1, f"errors.append(_V({path}, 'object has %d fields; at most {most} are allowed' "
                                  f"% len({v})))")
        if "required" in schema or "properties" in schema or "additionalProperties" in schema:
            self.emit(indent, f"if type({v}) is dict:")
            self.object(schema, v, path, dynamic, indent + 1, where)
        if "items" in schema or "maxItems" in schema:
            self.emit(indent, f"if type({v}) is list:")
            if "maxItems" in schema:
                most = schema["maxItems"]
                self.emit(indent + 1, f"if len({v}) > {most}:")
                self.emit(indent + 2, f"errors.append(_V({path}, 'array has %d items; at most {most} are allowed' "
                                      f"% len({v})))")
            if "items" in schema:
                i, item = self.var(), self.var()
                self.emit(indent + 1, f"for {i}, {item} in enumerate({v}):")
                self.schema(schema["items"], item, f"{path} + '[' + str({i}) + ']'", True, indent + 2,
                            f"{where}/items")
        for at, condition, then, why in self.conditionals(schema, where):
            mark = self.var()
            self.emit(indent, f"if {self.condition(condition, v, f'{at}/if')}:")
            self.emit(indent + 1, f"{mark} = len(errors)")
            collect, places, self.collect, self.places = self.collect, self.places, {}, {}
            self.schema(then, v, path, dynamic, indent + 1, f"{at}/then")
            self.collect, self.places = collect, places
            if why:
                self.emit(indent + 1, f"_then_context(errors, {mark}, {why!r})")

    def object(self, schema: dict, v: str, path: str, dynamic: bool, indent: int, where: str) -> None:
        self.emit(indent, "pass")
        get = self.var()
        self.emit(indent, f"{get} = {v}.get")

        def child_path(name: str) -> str:
            return f"{path} + {_suffix(name)!r}" if dynamic else repr(ast.literal_eval(path) + _suffix(name))

        props = schema.get("properties", {})
        required = schema.get("required", ())
        for name in required:
            if name not in props:
                self.emit(indent, f"if {get}({name!r}) is None:")
                self.emit(indent + 1, f"errors.append(_V({child_path(name)}, 'required field is missing'))")
        for name, sub in props.items():
            child = self.var()
            self.emit(indent, f"{child} = {get}({name!r})")
            self.emit(indent, f"if {child} is not None:")  # null counts as absent
            after: list[str] = []
            if not dynamic:
                dotted = ast.literal_eval(child_path(name))[2:]  # "$.payer.id" -> "payer.id"
                if dotted in self.collect:
                    # the same pass builds the normalised view: a float becomes the Decimal of its repr
                    conv = f"Decimal(repr({child})) if type({child}) is float else {child}" \
                        if self.collect[dotted] else child
                    after.append(f"view[{dotted!r}] = {conv}")
                if dotted in self.places:
                    # money in a fixed currency: no more decimals than the currency has (an engine rule on top
                    # of the schema, so only the engine's validator checks it); the type check ran already
                    places = self.places[dotted]
                    after.append(f"if ({10**places} % {child}.as_integer_ratio()[1]) if type({child}) is Decimal "
                                 f"else (type({child}) is float and not _fits({child}, {places})):")
                    after.append(f"    errors.append(_V({child_path(name)}, str({child}) + "
                                 f"' has more than {places} decimal places'))")
            self.schema(sub, child, child_path(name), dynamic, indent + 1, f"{where}/properties/{name}",
                        tuple(after))
            if name in required:  # one lookup serves both the presence check and the value's checks
                self.emit(indent, "else:")
                self.emit(indent + 1, f"errors.append(_V({child_path(name)}, 'required field is missing'))")
        extra = schema.get("additionalProperties", True)
        names = schema.get("propertyNames")
        if extra is True and names is None:
            return
        known = self.const(frozenset(props))
        key, value = self.var(), self.var()
        extra_path = f"{path} + _suffix(str({key}))"
        self.emit(indent, f"for {key}, {value} in {v}.items():")
        if names is not None:
            self.schema(names, key, extra_path, True, indent + 1, f"{where}/propertyNames")
        self.emit(indent + 1, f"if {key} in {known} or {value} is None:")
        self.emit(indent + 2, "continue")
        if extra is False:
            hint = self.hints.get(ast.literal_eval(path), "") if not dynamic else ""
            self.emit(indent + 1, f"errors.append(_V({extra_path}, _unknown({key}, {known}, {hint!r}, len(errors))))")
        elif extra is not True:
            self.schema(extra, value, extra_path, True, indent + 1, f"{where}/additionalProperties")


def compile_schema(schema: dict, collect: dict[str, bool] | None = None,
                   places: dict[str, int] | None = None, hints: dict[str, str] | None = None) -> Callable[[Any], Any]:
    """Generate and compile a validator: ``validate(instance) -> list[Violation]`` (empty when valid).

    With ``collect`` (dotted path -> is numeric), the validator also gathers those fields in the same pass and
    returns ``(violations, view)``; the engine uses this to validate and flatten a request at once. ``places``
    (dotted path -> decimals) adds the engine's money-precision check for those fields. ``hints`` (JSON path of
    an object -> text) says what to do about an unknown key there."""
    gen = _Gen(collect or {}, places or {}, hints)
    gen.emit(0, "def validate(v0):")
    gen.emit(1, "errors = []")
    if collect is not None:
        gen.emit(1, "view = {}")
    gen.schema(schema, "v0", "'$'", False, 1, "#")
    gen.emit(1, "return errors, view" if collect is not None else "return errors")
    source = "\n".join(gen.lines) + "\n"
    namespace: dict[str, Any] = {"Decimal": Decimal, "_V": Violation, "_type_name": _type_name,
                                 "_is_number": _is_number, "_is_integer": _is_integer, "_enum_ok": _enum_ok,
                                 "_suffix": _suffix, "_bad_unicode": _bad_unicode, "_fits": fits_places,
                                 "_unknown": _unknown, "_then_context": _then_context,
                                 **gen.consts}
    validate = compile_function(source, "validate", f"request validator {schema.get('$id', '')}".rstrip(), namespace)
    return validate


# -- the fast path ------------------------------------------------------------------------------------------------
#: Every two-letter code the `^[A-Z]{2}$` pattern admits: one set lookup instead of four string tests on the
#: eight country fields of a request (676 short strings, about 40 KB).
_COUNTRY_CODES = frozenset(a + b for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


class FastPathUnsupported(ValueError):
    """The schema uses a construct the fast path does not model; the engine then validates on the full path."""


class _FastGen(_Gen):
    """The accept-only twin of :class:`_Gen`: a function that returns the collected view when the instance is
    valid and ``None`` when it is not *or when it is unsure* (a float where an integer is allowed, extra keys in
    an object, ...). It never reports anything, so the common case pays for no error bookkeeping; any ``None``
    sends the request to the full validator, which decides and explains. Soundness (accepted => the full
    validator finds no violation and builds the same view) is property-tested in tests/test_requests.py."""

    def fail_unless(self, indent: int, tests: list[str]) -> None:
        if tests:
            self.emit(indent, f"if not ({' and '.join(tests)}): return None")

    def value(self, schema: dict, v: str, dotted: str | None, indent: int, where: str) -> None:
        unknown = set(schema) - _SUPPORTED
        if unknown:
            raise ValueError(f"request schema at {where} uses unsupported keywords {sorted(unknown)}")
        types = schema.get("type")
        enum = schema.get("enum")
        names = (types,) if isinstance(types, str) else tuple(types or ())
        if enum is not None and all(type(o) is str for o in enum):
            if types is not None and "string" not in names:
                raise FastPathUnsupported(f"{where}: an enum of strings on a non-string type")
            names = ("string",)  # an enum of strings admits only strings, whatever else `type` allows
        elif types is None:
            raise FastPathUnsupported(f"{where}: no `type`")
        numeric = dotted is not None and self.collect.get(dotted, False)
        branches: list[tuple[str, list[str], str]] = []  # (type test, checks, how the view stores it)
        for name in names:
            if name == "string":
                branches.append((f"type({v}) is str", self.string_tests(schema, v), v))
            elif name in ("number", "integer"):
                branches.append((f"type({v}) is int", self.bound_tests(schema, v, repr), v))
                if name == "number":  # an integral Decimal or float as an "integer" is left to the full path
                    places = self.places.get(dotted or "")
                    # Decimal against Decimal compares about twice as fast as Decimal against int; Decimal(x)
                    # of a float bound is its exact value, so the answer is the one the full path gets.
                    dec = [f"{v}.is_finite()", *self.bound_tests(schema, v, lambda b: self.const(Decimal(b)))]
                    flt = [f"_isfinite({v})", *self.bound_tests(schema, v, repr)]
                    if places is not None:
                        # same_quantum: the exponent is exactly -places (the usual "12.50"), one cheap test that
                        # also keeps the number within exact arithmetic; otherwise the full path's tests
                        quantum = self.const(Decimal(1).scaleb(-places))
                        dec.append(f"({v}.same_quantum({quantum}) or _fits({v}, {places}))")
                        flt.append(f"_fits({v}, {places})")
                    else:  # within exact arithmetic (is_finite is part of that)
                        dec[0] = f"_is_number({v})"
                        flt[0] = f"_is_number({v})"
                    branches.append((f"type({v}) is Decimal", dec, v))
                    branches.append((f"type({v}) is float", flt, f"Decimal(repr({v}))" if numeric else v))
            elif name == "boolean":
                branches.append((f"type({v}) is bool", [], v))
            elif name in ("object", "array"):
                branches.append((f"type({v}) is {'dict' if name == 'object' else 'list'}", [], v))
            elif name != "null":  # null is absent, and absent values never reach here
                raise FastPathUnsupported(f"{where}: type {name!r}")
        if enum is not None and not all(type(o) is str for o in enum):
            branches = [(test, [*checks, f"_enum_ok({v}, {self.const(tuple(enum))})"], store)
                        for test, checks, store in branches]
        if not branches:  # only `null` allowed, and the value is not null: invalid, let the full path say so
            self.emit(indent, "return None")
            return
        for n, (test, checks, store) in enumerate(branches):
            if len(branches) == 1:
                self.fail_unless(indent, [test, *checks])
                inner = indent
            else:
                self.emit(indent, f"{'if' if n == 0 else 'elif'} {test}:")
                inner = indent + 1
                self.fail_unless(inner, checks)
            start = len(self.lines)
            if dotted is not None and dotted in self.collect:
                self.emit(inner, f"view[{dotted!r}] = {store}")
            if test.endswith("is dict"):
                self.fast_object(schema, v, dotted, inner, where)
            elif test.endswith("is list"):
                self.array(schema, v, inner, where)
            if len(branches) > 1 and not checks and len(self.lines) == start:
                self.emit(inner, "pass")
        if len(branches) > 1:
            self.emit(indent, "else: return None")

    def string_tests(self, schema: dict, v: str) -> list[str]:
        enum = schema.get("enum")
        pattern = schema.get("pattern")
        # Membership in a set of known strings is one lookup, and implies the other string tests when every
        # member passes them (valid Unicode, the length bounds, the pattern).
        members = frozenset(enum) if enum is not None and all(type(o) is str for o in enum) else None
        if members is None and pattern == "^[A-Z]{2}$":
            members = _COUNTRY_CODES
        if members is not None:
            lo, hi = schema.get("minLength", 0), schema.get("maxLength", math.inf)
            if all(m.isascii() and lo <= len(m) <= hi and (pattern is None or _ecma_regex(pattern).search(m))
                   for m in members):
                return [f"{v} in {'_COUNTRY_CODES' if members is _COUNTRY_CODES else self.const(members)}"]
        tests = [f"({v}.isascii() or not _bad_unicode({v}))"]
        if enum is not None and all(type(o) is str for o in enum):
            tests.append(f"{v} in {self.const(frozenset(enum))}")
        if pattern is not None:
            if pattern == "^[A-Z]{2}$":
                tests.append(f"{v} in _COUNTRY_CODES")
            elif pattern in _FAST_PATTERNS:
                tests.append(f"({_FAST_PATTERNS[pattern].format(v=v)})")
            else:
                tests.append(f"{self.const(_ecma_regex(pattern).search)}({v}) is not None")
        if "minLength" in schema or "maxLength" in schema:
            lo = f"{schema['minLength']!r} <= " if "minLength" in schema else ""
            hi = f" <= {schema['maxLength']!r}" if "maxLength" in schema else ""
            tests.append(f"{lo}len({v}){hi}")
        return tests

    @staticmethod
    def bound_tests(schema: dict, v: str, const: Callable[[Any], str]) -> list[str]:
        lower = [f"{const(schema[k])} {op}" for k, op in (("minimum", "<="), ("exclusiveMinimum", "<")) if k in schema]
        upper = [f"{op} {const(schema[k])}" for k, op in (("maximum", "<="), ("exclusiveMaximum", "<")) if k in schema]
        if len(lower) <= 1 and len(upper) <= 1 and (lower or upper):
            return [" ".join([*lower, v, *upper])]  # one chained comparison: lo <= v <= hi
        return [f"{lo} {v}" for lo in lower] + [f"{v} {hi}" for hi in upper]

    def fast_object(self, schema: dict, v: str, dotted: str | None, indent: int, where: str) -> None:
        if "propertyNames" in schema:
            key = self.var()
            tests = self.string_tests(schema["propertyNames"], key)
            self.emit(indent, f"for {key} in {v}:")
            self.fail_unless(indent + 1, [f"type({key}) is str", *tests])
        if "maxProperties" in schema:
            self.emit(indent, f"if len({v}) > {schema['maxProperties']}: return None")
        props = schema.get("properties", {})
        required = set(schema.get("required", ()))
        get = self.var()
        self.emit(indent, f"{get} = {v}.get")
        for name in required - set(props):
            self.emit(indent, f"if {get}({name!r}) is None: return None")
        children: dict[str, str] = {}
        for name, sub in props.items():
            child = children[name] = self.var()
            path = None if dotted is None else (f"{dotted}.{name}" if dotted else name)
            self.emit(indent, f"{child} = {get}({name!r})")
            if name in required:
                self.emit(indent, f"if {child} is None: return None")
                self.value(sub, child, path, indent, f"{where}/properties/{name}")
            else:
                self.emit(indent, f"if {child} is not None:")  # null counts as absent
                self.value(sub, child, path, indent + 1, f"{where}/properties/{name}")
        if schema.get("additionalProperties", True) is not True:
            # Keys outside the known ones (even ones whose value is null) are rare: the full path judges them.
            self.emit(indent, f"if not ({v}.keys() <= {self.const(frozenset(props))}): return None")
        for at, condition, then, _why in self.conditionals(schema, where):
            self.emit(indent, f"if {self.condition(condition, v, f'{at}/if', children)}:")
            self.requirements(then, v, indent + 1, f"{at}/then", children)

    def requirements(self, schema: dict, v: str, indent: int, where: str, known: dict[str, str] | None = None) -> None:
        """A ``then`` of required properties, on an object whose values the object's own checks typed already
        (``known``: the variables that hold its properties)."""
        unknown = set(schema) - _ANNOTATIONS - {"required", "properties"}
        if unknown:
            raise FastPathUnsupported(f"{where}: {sorted(unknown)} in a conditional requirement")
        known = known or {}
        for name in schema.get("required", ()):
            self.emit(indent, f"if {known.get(name, f'{v}.get({name!r})')} is None: return None")
        for name, sub in schema.get("properties", {}).items():
            child = known.get(name) or self.var()
            if name not in known:
                self.emit(indent, f"{child} = {v}.get({name!r})")
            self.emit(indent, f"if type({child}) is dict:")
            self.emit(indent + 1, "pass")
            self.requirements(sub, child, indent + 1, f"{where}/properties/{name}")

    def array(self, schema: dict, v: str, indent: int, where: str) -> None:
        if "maxItems" in schema:
            self.emit(indent, f"if len({v}) > {schema['maxItems']}: return None")
        if "items" in schema:
            item = self.var()
            self.emit(indent, f"for {item} in {v}:")
            self.emit(indent + 1, f"if {item} is None: return None")  # null inside an array is not absent
            self.value(schema["items"], item, None, indent + 1, f"{where}/items")


def compile_fast_path(schema: dict, collect: dict[str, bool],
                      places: dict[str, int] | None = None) -> Callable[[Any], dict[str, Any] | None] | None:
    """Generate the fast path of :func:`compile_schema` with ``collect``: ``fast(instance)`` returns the view
    when the instance is certainly valid, else ``None`` (run the full validator). ``None`` instead of a
    function when the schema has a construct the fast path does not model."""
    gen = _FastGen(collect, places or {})
    gen.emit(0, "def fast(v0):")
    gen.emit(1, "view = {}")
    try:
        gen.value(schema, "v0", "", 1, "#")
    except FastPathUnsupported:
        return None
    gen.emit(1, "return view")
    source = "\n".join(gen.lines) + "\n"
    namespace: dict[str, Any] = {"Decimal": Decimal, "_isfinite": math.isfinite, "_fits": fits_places,
                                 "_bad_unicode": _bad_unicode, "_enum_ok": _enum_ok, "_is_number": _is_number,
                                 "_COUNTRY_CODES": _COUNTRY_CODES, **gen.consts}
    fast = compile_function(source, "fast", f"request fast path {schema.get('$id', '')}".rstrip(), namespace)
    return fast
