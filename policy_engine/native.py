"""Decode and validate a request text in one native pass: msgspec Structs generated from the request contract.

:func:`compile_native` turns the contract (as one pack accepts it) into msgspec ``Struct`` types that check in C
what msgspec checks exactly as the validator does: object shapes with no unknown key, required fields, types,
string enums and country codes (``Literal`` sets), lengths, integer bounds. Generated Python then checks what
msgspec cannot or checks slowly (Decimal bounds and places, the other code patterns, the contract's ``allOf``
conditions) and builds the flat view straight from the Structs.

The pass only accepts; it never explains. Whatever it is unsure of it declines (returns ``None``) and the caller
takes today's path (``parse_json`` and :meth:`RequestPreparer.prepare`), whose view or violations are the
contract. What it accepts the full validator accepts with the same view, value for value and type for type
(property-tested in tests/test_native.py). It declines:

- a text with a backslash: an escape could write a lone surrogate, a newline before a pattern's ``$``, or a
  ``"`` the proof below cannot see;
- a repeated key, and a JSON ``null`` (absent to the validator, but the Struct drops it), and a number sent as a
  string (which the checks of a number field decline too, see ``decimal()``). The proof: without a backslash
  every ``"`` of the text opens or closes a key or a string value, so the text has two per key and two per string;
  the generated checks count what the Structs hold (two per field present, two more when its type is a string, which
  msgspec fills only from a JSON string) and the value is kept only when the counts agree. A repeated key or a
  null leaves a key the Structs do not hold, a number sent as a string two ``"`` they do not count: either
  leaves the text with more;
- a node msgspec cannot model exactly (an object open to extra keys, an array, a union of types...): it is read as
  ``Raw`` and the text is declined whenever it is present;
- anything msgspec refuses (malformed text, an unknown key, a wrong type, a missing field).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from decimal import Decimal, DecimalException
from typing import Annotated, Any, Literal

from .codegen import compile_function
from .jsonio import PURE_ENV
from .validator import (
    _ANNOTATIONS,
    _COUNTRY_CODES,
    _FAST_PATTERNS,
    _SUPPORTED,
    MAX_NUMBER_DIGITS,
    MAX_NUMBER_PLACES,
    _bad_unicode,
    _ecma_regex,
    _enum_ok,
    _FastGen,
    decimal_in_bounds,
    fits_places,
)

#: What the Structs decode: ``(top struct, view)`` or ``None`` (declined).
NativePass = Callable[[bytes | str], "tuple[Any, dict[str, Any]] | None"]

#: Keys of an object schema the Struct models; anything else (e.g. ``propertyNames`` that the declared names do
#: not satisfy, an open ``additionalProperties``) makes the object ``Raw``.
_OBJECT_KEYS = _ANNOTATIONS | {"type", "required", "properties", "additionalProperties", "maxProperties", "allOf",
                               "propertyNames"}
_STRING_KEYS = _ANNOTATIONS | {"type", "enum", "pattern", "minLength", "maxLength"}
_NUMBER_KEYS = _ANNOTATIONS | {"type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "pattern",
                               "minLength", "maxLength"}  # string keywords: strings are declined, see kind()
_META_BOUNDS = {"minimum": "ge", "maximum": "le", "exclusiveMinimum": "gt", "exclusiveMaximum": "lt"}

_BACKSLASH = ord("\\")

#: Entries a memo of numbers holds (:data:`_decimal`, and each memo of :func:`_remember`).
_MEMO_SIZE = 1024

#: A JSON number with a fraction or an exponent as the decimal it writes, exactly as msgspec reads one into a
#: ``Decimal`` field (it calls ``Decimal`` on the number's text too). Numbers recur across requests (a history's
#: counters are mostly ``0.00``): a recurring one is made once and is the same object each time, so the check of a
#: field it passed is remembered by identity (:func:`_remember`). Least recently used first out; in C.
_decimal = functools.lru_cache(maxsize=_MEMO_SIZE)(Decimal)


class NativeUnsupported(ValueError):
    """The contract has a construct this pass cannot model at all; every request then takes today's path."""


class _StructGen(_FastGen):
    """Struct types and the generated function that checks the rest and builds the view from them."""

    def __init__(self, msgspec: Any, collect: dict[str, bool], places: dict[str, int]) -> None:
        super().__init__(collect, places)
        self.msgspec = msgspec
        self.count = 0
        self.memos: dict[tuple, tuple[str, str]] = {}  # a decimal field's bounds and places -> its memo, get

    def kind(self, schema: dict, where: str) -> str:
        """How ``schema`` is decoded: ``struct``, ``decimal`` (an int or a Decimal), ``plain`` (a scalar msgspec checks
        entirely) or ``raw`` (not modelled: declined when present)."""
        unknown = set(schema) - _SUPPORTED
        if unknown:
            raise NativeUnsupported(f"request schema at {where} uses unsupported keywords {sorted(unknown)}")
        types = schema.get("type")
        names = (types,) if isinstance(types, str) else tuple(types or ())
        if "enum" in schema:
            strings = all(type(o) is str for o in schema["enum"]) and (not names or "string" in names)
            return "plain" if strings and set(schema) <= _STRING_KEYS else "raw"
        if names in (("string",), ("boolean",)) and set(schema) <= _STRING_KEYS:
            return "plain"
        numeric = [n for n in names if n in ("number", "integer")]
        # a number that may also be a string (an amount): a string is declined by the proof, so only numbers pass
        if len(numeric) == 1 and set(names) <= {numeric[0], "string"} and set(schema) <= _NUMBER_KEYS:
            return "decimal" if numeric[0] == "number" else "plain"
        if names == ("object",) and set(schema) <= _OBJECT_KEYS and schema.get("additionalProperties") is False:
            props = schema.get("properties", {})
            names_schema = schema.get("propertyNames")
            if len(props) <= schema.get("maxProperties", len(props)) and \
                    (names_schema is None or all(self.name_ok(names_schema, n) for n in props)):
                return "struct"
        return "raw"

    def annotation(self, schema: dict, where: str) -> Any:
        """The type msgspec decodes ``schema`` into."""
        kind = self.kind(schema, where)
        types = schema.get("type")
        names = (types,) if isinstance(types, str) else tuple(types or ())
        if kind == "struct":
            return self.struct(schema, where)
        if kind == "raw":
            return self.msgspec.Raw
        if "enum" in schema:
            return self.enum(schema, where)
        if names == ("string",):
            return self.string(schema)
        if names == ("boolean",):
            return bool
        return self.number(schema, kind == "decimal", where)

    def enum(self, schema: dict, where: str) -> Any:
        options = schema["enum"]
        # the members every other string keyword admits: the validator checks them all
        lo, hi = schema.get("minLength", 0), schema.get("maxLength", len(max(options, key=len)))
        pattern = _ecma_regex(schema["pattern"]) if "pattern" in schema else None
        members = tuple(o for o in options if o.isascii() or not _bad_unicode(o))
        members = tuple(o for o in members if lo <= len(o) <= hi and (pattern is None or pattern.search(o)))
        if not members:
            raise NativeUnsupported(f"{where}: an enum no string satisfies")
        return Literal[members]

    def string(self, schema: dict) -> Any:
        meta: dict[str, Any] = {}
        if "minLength" in schema:
            meta["min_length"] = schema["minLength"]
        if "maxLength" in schema:
            meta["max_length"] = schema["maxLength"]
        pattern = schema.get("pattern")
        if pattern == "^[A-Z]{2}$":
            # a country code: one of 676 strings, a hash lookup in msgspec (its `pattern` calls Python's re, about
            # ten times the cost, on the eight country fields of a request)
            lo, hi = meta.get("min_length", 0), meta.get("max_length", 2)
            return Literal[tuple(sorted(c for c in _COUNTRY_CODES if lo <= len(c) <= hi))]
        if pattern is not None and pattern not in _FAST_PATTERNS:
            meta["pattern"] = _ecma_regex(pattern).pattern  # msgspec searches with Python's re, as the validator
        return Annotated[str, self.msgspec.Meta(**meta)] if meta else str

    def number(self, schema: dict, decimals: bool, where: str) -> Any:
        bounds = {_META_BOUNDS[k]: schema[k] for k in _META_BOUNDS if k in schema}
        if not all(type(b) is int for b in bounds.values()):
            raise NativeUnsupported(f"{where}: a bound that is not an integer")
        if decimals:
            # Any: msgspec reads a JSON integer as an int and hands a number with a fraction or an exponent to the
            # decoder's float_hook (_decimal), exactly as parse_json reads them; the generated checks take only
            # those two types (a string, a boolean, an object... is declined) and test the bounds themselves
            return Any
        return Annotated[int, self.msgspec.Meta(**bounds)] if bounds else int

    def struct(self, schema: dict, where: str) -> Any:
        props = schema.get("properties", {})
        required = set(schema.get("required", ()))
        if not required <= set(props):
            raise NativeUnsupported(f"{where}: a required field with no schema")
        fields = []
        for name, sub in props.items():
            kind = self.annotation(sub, f"{where}/properties/{name}")
            fields.append((name, kind) if name in required else (name, kind | None, None))
        self.count += 1
        # gc=False: a decoded request holds scalars and its own Structs (a number field's Any holds what JSON
        # holds), never a cycle, so the collector need not track (nor be triggered by) eight objects per request
        return self.msgspec.defstruct(f"Request{self.count}", fields, kw_only=True, forbid_unknown_fields=True,
                                      omit_defaults=True, gc=False, namespace=_MAPPING)

    @staticmethod
    def name_ok(schema: dict, name: str) -> bool:
        if not set(schema) <= _STRING_KEYS or schema.get("type", "string") != "string":
            return False
        pattern = _ecma_regex(schema["pattern"]) if "pattern" in schema else None
        return (schema.get("minLength", 0) <= len(name) <= schema.get("maxLength", len(name))
                and (pattern is None or pattern.search(name) is not None)
                and name in schema.get("enum", (name,)))

    # -- the generated function -----------------------------------------------------------------------------------
    def checks(self, schema: dict, v: str, dotted: str, indent: int, where: str) -> None:
        """Lines checking the object ``v`` (a Struct of ``schema``) and storing its collected fields."""
        props = schema.get("properties", {})
        required = set(schema.get("required", ()))
        marks = 0  # the `"` of the required fields (see quotes())
        for name, sub in props.items():
            child = self.var()
            path = f"{dotted}.{name}" if dotted else name
            at = f"{where}/properties/{name}"
            start = len(self.lines)
            self.emit(indent, f"{child} = {v}.{name}")
            if name not in required:
                self.emit(indent, f"if {child} is not None:")
            body = len(self.lines)
            self.value(sub, child, path, indent + (name not in required), at)
            # a field the view takes has its key's two counted by the view's length (see compile_native)
            quotes = self.quotes(sub, at) - 2 * (path in self.collect and self.kind(sub, at) != "raw")
            if name in required:
                marks += quotes
                if len(self.lines) == body:  # msgspec checked it all and the view does not take it
                    del self.lines[start:]
            elif quotes:
                self.emit(indent + 1, f"q += {quotes}")
        if marks:
            self.emit(indent, f"q += {marks}")
        for at, condition, then, _why in self.conditionals(schema, where):
            self.emit(indent, f"if {self.struct_condition(condition, v, schema, f'{at}/if')}:")
            self.emit(indent + 1, "pass")
            self.struct_requirements(then, v, schema, indent + 1, f"{at}/then")

    def value(self, schema: dict, v: str, dotted: str, indent: int, where: str) -> None:  # type: ignore[override]
        kind = self.kind(schema, where)
        if kind == "raw":
            self.emit(indent, "return None")  # present, and not modelled: today's path decides
            return
        if kind == "decimal":
            self.decimal(schema, v, dotted, indent)
        pattern = schema.get("pattern")
        if schema.get("type") == "string" and pattern in _FAST_PATTERNS and pattern != "^[A-Z]{2}$" \
                and "enum" not in schema:
            self.emit(indent, f"if not ({_FAST_PATTERNS[pattern].format(v=v)}): return None")  # see string()
        if dotted in self.collect:
            self.emit(indent, f"view[{dotted!r}] = {v}")
        if kind == "struct":
            self.checks(schema, v, dotted, indent, where)

    def decimal(self, schema: dict, v: str, dotted: str, indent: int) -> None:
        """Lines checking a number field, read as an int or a Decimal (see number())."""
        tests = self.bound_tests(schema, v, lambda b: self.const(Decimal(b)))
        places = self.places.get(dotted)
        if places is not None:
            quantum = self.const(Decimal(1).scaleb(-places))
            tests.append(f"({v}.same_quantum({quantum}) or _fits({v}, {places}))")
        # Within exact arithmetic (decimal_in_bounds, whose exponent test costs a microsecond) is implied when
        # bounds keep the magnitude below 10^MAX_NUMBER_DIGITS and the places test holds (same_quantum fixes
        # the exponent; _fits tests the bounds itself); a JSON number is always finite.
        limit = 10**MAX_NUMBER_DIGITS
        lower = [schema[k] for k in ("minimum", "exclusiveMinimum") if k in schema]
        upper = [schema[k] for k in ("maximum", "exclusiveMaximum") if k in schema]
        if places is None or places > MAX_NUMBER_PLACES or not (any(-limit < b for b in lower)
                                                                and any(b < limit for b in upper)):
            tests.insert(0, f"_in_bounds({v})")
        # Decimals that passed these tests, by identity: a field holding the very object that passed (the same
        # text, read through _decimal) passes; any other object is tested. (By identity, not by value: an equal
        # Decimal written otherwise, 0.000 for 0.00, may not pass, and hashing a Decimal costs more than a test.)
        signature = (tuple((k, schema[k]) for k in _META_BOUNDS if k in schema), places)
        if signature not in self.memos:
            memo: dict[int, Decimal] = {}
            self.memos[signature] = (self.const(memo), self.const(memo.get))
        memo_name, passed = self.memos[signature]
        # the memo's own dict as get's default: never a field's value, so a None (a JSON null in a required
        # field: Any reads it) is tested, and declined, instead of "found" as get's None default would be
        self.emit(indent, f"if {passed}(id({v}), {memo_name}) is not {v}:  # the memo holds only Decimals")
        self.emit(indent + 1, f"if type({v}) is Decimal:")
        self.emit(indent + 2, f"if not ({' and '.join(tests)}): return None")
        self.emit(indent + 2, f"_remember({memo_name}, {v})")
        integer = self.bound_tests(schema, v, repr)
        self.emit(indent + 1, f"elif type({v}) is not int{''.join(f' or not ({t})' for t in integer)}: return None")

    def quotes(self, schema: dict, where: str) -> int:
        """The `"` a field of ``schema`` that is present puts in a text without a backslash: its key's two, and
        two more for a string (msgspec reads only a JSON string into a string, an enum or a country code; a value
        of any other type written as a string is two more than counted, and declined). An object's own fields
        are counted where they are checked."""
        kind = self.kind(schema, where)
        return 4 if kind == "plain" and ("enum" in schema or schema.get("type") == "string") else 2

    def struct_condition(self, schema: dict, v: str, obj: dict | None, where: str) -> str:
        """An ``if`` as the validator reads it (null is absent; ``required``/``properties`` hold only on an
        object), over a value that is a Struct of ``obj`` when ``obj`` is an object schema."""
        tests = []
        if "required" in schema or "properties" in schema:
            if obj is None:
                return "False"
            props = obj.get("properties", {})

            def get(name: str) -> str:
                return f"{v}.{name}" if name in props else "None"

            tests += [f"{get(name)} is not None" for name in schema.get("required", ())]
            for name, sub in schema.get("properties", {}).items():
                inner_obj = props.get(name)
                if inner_obj is not None and self.kind(inner_obj, where) != "struct":
                    inner_obj = None
                inner = self.struct_condition(sub, get(name), inner_obj, f"{where}/properties/{name}")
                required = name in schema.get("required", ())
                tests.append(inner if required else f"({get(name)} is None or {inner})")
        unknown = set(schema) - _ANNOTATIONS - {"required", "properties", "const", "enum", "not"}
        if unknown:
            raise NativeUnsupported(f"request schema at {where} uses unsupported keywords {sorted(unknown)}")
        if "const" in schema:
            tests.append(self.member(v, (schema["const"],)))
        if "enum" in schema:
            tests.append(self.member(v, tuple(schema["enum"])))
        if "not" in schema:
            tests.append(f"not {self.struct_condition(schema['not'], v, obj, f'{where}/not')}")
        return f"({' and '.join(tests) or 'True'})"

    def struct_requirements(self, schema: dict, v: str, obj: dict, indent: int, where: str) -> None:
        """A ``then`` of required properties on the Struct ``v`` of ``obj``."""
        unknown = set(schema) - _ANNOTATIONS - {"required", "properties"}
        if unknown:
            raise NativeUnsupported(f"{where}: {sorted(unknown)} in a conditional requirement")
        props = obj.get("properties", {})
        for name in schema.get("required", ()):
            self.emit(indent, f"if {v}.{name} is None: return None" if name in props else "return None")
        for name, sub in schema.get("properties", {}).items():
            inner = props.get(name)
            if inner is None:
                continue  # never present (the object is closed): a requirement on it holds
            if self.kind(inner, where) != "struct":
                raise NativeUnsupported(f"{where}: a requirement inside {name!r}, which is not an object")
            child = self.var()
            self.emit(indent, f"{child} = {v}.{name}")
            self.emit(indent, f"if {child} is not None:")
            self.emit(indent + 1, "pass")
            self.struct_requirements(sub, child, inner, indent + 1, f"{where}/properties/{name}")


def _contains(self: Any, name: str) -> bool:
    return getattr(self, name, None) is not None


def _remember(memo: dict[int, Decimal], value: Decimal) -> None:
    """Keep ``value`` as a Decimal that passed ``memo``'s tests; a full memo starts again. The memo holds the
    object, so no other object has its id while it is there: ``memo.get(id(v)) is v`` is exactly "v passed"."""
    if len(memo) >= _MEMO_SIZE:
        memo.clear()
    memo[id(value)] = value


#: The Structs read like the request dicts they replace (``s["amount"]["value"]``, ``s.get("merchant")``,
#: ``"psp_country" in s``), so the preparer's checks after validation serve both: a null was declined, so None is
#: absent as in a validated dict. ``get`` and ``[]`` are attribute reads in C; the preparer only asks for fields
#: the contract declares, which every Struct of it has.
_MAPPING = {"get": object.__getattribute__, "__getitem__": object.__getattribute__, "__contains__": _contains}


def compile_native(schema: dict, collect: dict[str, bool], places: dict[str, int]) -> NativePass | None:
    """The native pass for ``schema``: ``native(text) -> (struct, view)`` when the text is certainly a valid
    request (the view is what the validators build), else ``None``. ``None`` instead of a function when msgspec is
    not installed, :data:`~policy_engine.jsonio.PURE_ENV` is set, or the contract cannot be modelled."""
    if os.environ.get(PURE_ENV, "") not in ("", "0"):
        return None
    try:
        import msgspec
    except ImportError:
        return None
    gen = _StructGen(msgspec, collect, places)
    try:
        if gen.kind(schema, "#") != "struct":
            raise NativeUnsupported("the request is not a closed object")
        top = gen.annotation(schema, "#")
        gen.emit(0, "def view_of(v0, quotes):")
        gen.emit(1, "view = {}")
        gen.emit(1, "q = 0")
        gen.checks(schema, "v0", "", 1, "#")
    except NativeUnsupported:
        return None
    # the view holds exactly the fields present that it takes, two `"` each for their keys; the checks count the rest
    gen.emit(1, "return view if q + 2 * len(view) == quotes else None  # else a repeated key, a null, a number "
                "as a string")
    namespace: dict[str, Any] = {"Decimal": Decimal, "_in_bounds": decimal_in_bounds, "_fits": fits_places,
                                 "_enum_ok": _enum_ok, "_remember": _remember, **gen.consts}
    view_of = compile_function("\n".join(gen.lines) + "\n", "view_of",
                               f"request native pass {schema.get('$id', '')}".rstrip(), namespace)
    decode = msgspec.json.Decoder(top, float_hook=_decimal).decode
    error = msgspec.MsgspecError

    def native(text: bytes | str) -> tuple[Any, dict[str, Any]] | None:
        if type(text) is str:
            if "\\" in text:
                return None
            quotes = text.count('"')
        else:
            # the byte as an int: `b"\\" in text` first tries to read b"\\" as an int, and formats the TypeError
            # it then drops (about 2,000 instructions)
            if _BACKSLASH in text:
                return None
            quotes = text.count(b'"')
        try:
            struct = decode(text)
            view = view_of(struct, quotes)
        # malformed, invalid, too deep; a number whose exponent Decimal cannot hold (or, made in a context that
        # does not trap it, read as NaN: which does not compare)
        except (error, ValueError, RecursionError, DecimalException):
            return None
        return None if view is None else (struct, view)

    return native
