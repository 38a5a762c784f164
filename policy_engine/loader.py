"""YAML rule files → a validated, immutable :class:`RuleSet`.

Every problem in a pack is collected (schema violations, then semantic errors: duplicate ids, unknown lists,
fields the request contract does not define, type mismatches, malformed conditions) and reported together as
``file:line:col rule-id: message``. A pack with any error raises :class:`RuleSetError`; nothing is half-loaded.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import hashlib
import json
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jsonschema

from .aggregates import CALENDAR_UNITS, COUNT, FUNCTIONS, JURISDICTION, Aggregate, Window, sliding_seconds
from .conditions import All, Any_, Leaf, ListItem, Node, Not, Operand
from .decision import ReasonTemplate
from .diagnostics import did_you_mean, hint
from .errors import Issue, RuleSetError
from .fields import FieldCatalog
from .operators import Op, Shape, UnknownOperatorError, ops_with
from .packchecks import ConstantChecker, ListSource, cost_issues, placeholder_problem, rate_problem
from .resources import default_pack_path, load_schema
from .ruleset import DEFAULT_DECISION_ORDER, FxTable, Rule, RuleSet, default_on_unknown
from .screening import REQUIREMENTS, Screening
from .screening.lists import ListFileError, PartyList, file_digest, read_ofac, read_opensanctions
from .validator import _bad_unicode
from .yamlsource import SourceDoc, YamlSourceError, clip, load_yaml, shown, yaml_files

#: Numbers in conditions are compared exactly in units of 10^-SCALE_DIGITS (see ``compiler.py``).
SCALE_DIGITS = 4
MAX_CONSTANT = Decimal(10) ** 11
MAX_CONDITION_DEPTH = 32
MAX_RULES = 20_000
MAX_TEXT_CONSTANT = 256
_NOT_CIVIL_ZONES = frozenset({"localtime", "posixrules", "Factory"})
MANIFEST_KEYS = ("pack", "version", "decision_order", "description")
#: How a leaf of each operand shape is written, for "takes ..., not a ref".
_WRITTEN = {Shape.LIST: "a `value:` list or a `list:` name", Shape.RANGE: "value: [lo, hi]"}
#: The keys only a `screen` leaf takes.
_SCREEN_KEYS = ("threshold", "country_field")
#: Checks ``format: date`` (and no other format) in the pack's own schemas: 2025-02-30 matches the date pattern
#: but is no day, and is refused with its position before anything turns it into a date.
DATE_FORMAT = jsonschema.FormatChecker(formats=("date",))


def load_ruleset(path: str | Path | None = None) -> RuleSet:
    """Load a pack: a directory of ``*.yaml`` files (``tests/`` below it excluded) or one YAML file.

    ``None`` loads the bundled default pack. Raises :class:`RuleSetError` listing every problem.
    """
    root = Path(path) if path is not None else default_pack_path()
    return _Loader(root).load()


def _date_ordinal(text: str) -> int:
    return dt.date.fromisoformat(text).toordinal()


def _number_hint(value: Any) -> str:
    """What to write instead of a non-number where a number is due. YAML 1.1 reads `1e3`, `1.5e3` and `0o17` as
    text (an exponent needs a point and a sign: `1.0e+3`), so "write it without quotes" would be wrong advice."""
    if not isinstance(value, str):
        return " (write a number)"
    try:
        number = Decimal(value.replace("_", ""))
    except InvalidOperation:
        return " (write a number, without quotes)"
    if not number.is_finite() or abs(number.adjusted()) > 20:
        return " (write a number, without quotes)"
    return (f" (write it without quotes, as a plain number: {number:f}; YAML reads a number in quotes, and an "
            "exponent without a point and a sign such as 1e3, as text)")


def _exact_number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return Decimal(value) if isinstance(value, int) else Decimal(repr(value))


def specific_error(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """For a oneOf/anyOf failure, the alternative that got furthest says what is wrong: its deepest error, and a
    wrong type only when nothing more specific was found (a list item's bad date, not "is not a string")."""
    while error.validator in ("oneOf", "anyOf") and error.context:
        error = max(error.context, key=lambda e: (len(e.absolute_path), e.validator != "type"))
    return error


def schema_issue_path(error: jsonschema.ValidationError, path: tuple) -> tuple:
    """Where to point for a schema error: the value an alternative failed on, and an unknown key itself rather
    than the mapping that holds it."""
    specific = specific_error(error)
    if specific is not error:
        error, path = specific, tuple(specific.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = error.schema.get("properties", {})
        extra = [k for k in error.instance if k not in allowed]
        if extra:
            return (*path, extra[0])
    return path


def schema_message(error: jsonschema.ValidationError) -> str:
    """A JSON Schema error as a person would say it (also used for rule test files)."""
    error = specific_error(error)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = list(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in allowed]
        return "; ".join(f"unknown key {shown(k)}{did_you_mean(k, allowed)}" for k in extra)
    if error.validator == "required":
        return f"missing required key: {error.message.split(' is a required')[0]}"
    if error.validator == "format":
        return f"{shown(error.instance)} is not a valid {error.validator_value} (YYYY-MM-DD, a day that exists)"
    if error.validator == "enum":
        options = [str(o) for o in error.validator_value]
        return f"{shown(error.instance)} is not one of {options}{did_you_mean(str(error.instance), options)}"
    # jsonschema quotes the whole value ("'yyy…' is too long"): a megabyte value made a megabyte message
    message = error.message.replace(repr(error.instance), shown(error.instance))
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{where}: {message}" if where else message


@functools.cache
def _file_validator() -> jsonschema.Draft202012Validator:
    """The rule-file schema, with condition trees left to the condition parser.

    ``schemas/ruleset.schema.json`` describes conditions completely (for editors), but JSON Schema reports a
    bad node as a pile of oneOf failures; the parser in this module checks every node anyway, with precise
    messages, so the loader validates everything else against the schema and skips the trees (several times
    faster on a large pack)."""
    schema = copy.deepcopy(load_schema("ruleset"))
    schema["$defs"]["node"] = {}
    return jsonschema.Draft202012Validator(schema, format_checker=DATE_FORMAT)


def _zone_problem(name: str) -> str | None:
    """What is wrong with a timezone name a pack gives, or None."""
    if name in _NOT_CIVIL_ZONES or name.startswith(("posix/", "right/")):
        # these follow the host's configuration or no civil clock: two hosts with one digest would differ
        return f"{name!r} is not a jurisdiction's civil time; name its IANA zone (e.g. Asia/Shanghai, Europe/London)"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a region (`America`) is a directory of tzdata
        return (f"{clip(name)!r} is not a timezone of the tz database (IANA names such as Asia/Shanghai or "
                "Europe/London)")
    return None


class _Loader:
    def __init__(self, root: Path):
        self.root = root
        self.issues: list[Issue] = []
        self.catalog = FieldCatalog(load_schema("payment_request"))
        self.validator = _file_validator()
        self.list_sources: dict[str, ListSource] = {}
        self.screening: dict[str, PartyList] = {}

    # -- files -------------------------------------------------------------------------------------------
    def _files(self) -> list[tuple[Path, str]]:
        if self.root.is_file():
            return [(self.root, self.root.name)]
        if not self.root.is_dir():
            raise RuleSetError([Issue(str(self.root), 1, 1, None, "no such rule pack (file or directory)")])
        try:
            found = yaml_files(self.root, skip_dir="tests")
        except YamlSourceError as exc:
            raise RuleSetError([exc.issue]) from exc
        if not found:
            raise RuleSetError([Issue(str(self.root), 1, 1, None, "directory holds no *.yaml rule files")])
        return found

    def load(self) -> RuleSet:
        docs: list[SourceDoc] = []
        for path, rel in self._files():
            display = str(path) if self.root.is_file() else str(self.root / rel)
            # a name as the OS gives it (surrogate escapes for bytes that are not UTF-8): the digest is UTF-8 over
            # the names, and hashing it raised UnicodeEncodeError
            if _bad_unicode(rel):
                shown_name = display.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                self.issues.append(Issue(shown_name, 1, 1, None, "the file name is not UTF-8; rename the file"))
                continue
            try:
                doc = load_yaml(path, display)
            except YamlSourceError as exc:
                self.issues.append(exc.issue)
                continue
            if doc.data is None:
                doc.data = {}
            docs.append(doc)
        bad_paths = {id(d): self._schema_check(d) for d in docs}
        manifest = self._manifest(docs, bad_paths)
        lists = self._lists(docs, bad_paths)
        self.screening = self._screening_lists(docs, bad_paths, lists)
        fx = self._fx(docs, bad_paths)
        zones = self._timezones(docs, bad_paths)
        rules = self._rules(docs, bad_paths, lists)
        self.issues += cost_issues(rules, lists, docs[0].file if docs else str(self.root))
        defaults = self._defaults(docs, bad_paths)
        aggregates = self._aggregates(docs, bad_paths, lists)
        self.issues += ConstantChecker(self.catalog).check(docs, rules, self.list_sources, aggregates)
        if self.issues:
            rank = {d.file: n for n, d in enumerate(docs)}
            raise RuleSetError(sorted(self.issues, key=lambda i: (rank.get(i.file, -1), i.line, i.col)))
        pack, version, order, description = manifest
        digest = self._digest(docs)
        return RuleSet(pack=pack, version=version, decision_order=order, rules=tuple(rules), lists=lists,
                       fx_tables=fx, timezones=zones, digest=digest, path=str(self.root),
                       files=tuple(d.file for d in docs), description=description, defaults=defaults,
                       aggregates=aggregates, screening_lists=self.screening)

    def _digest(self, docs: list[SourceDoc]) -> str:
        # Canonical content: the parsed data of each file under its path relative to the pack. Comments and
        # formatting do not change it; anything that can change a decision does: the bytes of the screening
        # lists' files too (a pack without them keeps the digest it had before screening existed).
        names = [Path(d.file).relative_to(self.root).as_posix() if self.root.is_dir() else Path(d.file).name
                 for d in docs]
        content: list = [[n, d.data] for n, d in zip(names, docs, strict=True)]
        if self.screening:
            content.append(["screening_lists", {n: p.digest for n, p in sorted(self.screening.items())}])
        canonical = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
        return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    # -- schema ------------------------------------------------------------------------------------------
    def _schema_check(self, doc: SourceDoc) -> set[tuple]:
        """Validate one file against ruleset.schema.json; returns the paths that had errors."""
        bad: set[tuple] = set()
        for error in self.validator.iter_errors(doc.data):
            path = tuple(error.absolute_path)
            # Condition trees get precise messages from the condition parser below; JSON Schema's oneOf
            # report for them is noise.
            if "when" in path and len(path) >= 3 and path[0] == "rules":
                bad.add((*path[:2], "when"))
                continue
            bad.add(path)
            rule_id = self._rule_id_at(doc, path)
            self.issues.append(doc.issue(schema_issue_path(error, path), rule_id, schema_message(error)))
        return bad

    @staticmethod
    def _rule_id_at(doc: SourceDoc, path: tuple) -> str | None:
        if len(path) >= 2 and path[0] == "rules" and isinstance(doc.data, dict):
            rules = doc.data.get("rules")
            if isinstance(rules, list) and isinstance(path[1], int) and path[1] < len(rules):
                rid = rules[path[1]].get("id") if isinstance(rules[path[1]], dict) else None
                return rid if isinstance(rid, str) else None
        return None

    # -- manifest, lists, FX -----------------------------------------------------------------------------
    def _manifest(self, docs: list[SourceDoc], bad: dict) -> tuple[str, str, tuple[str, ...], str | None]:
        carriers = [d for d in docs if isinstance(d.data, dict) and any(k in d.data for k in MANIFEST_KEYS)]
        if not docs:
            return "", "", DEFAULT_DECISION_ORDER, None
        if not carriers:
            self.issues.append(Issue(docs[0].file, 1, 1, None,
                                     "no manifest: one file must set `pack:` and `version:` (e.g. pack.yaml)"))
            return "", "", DEFAULT_DECISION_ORDER, None
        for extra in carriers[1:]:
            key = next(k for k in MANIFEST_KEYS if k in extra.data)
            self.issues.append(extra.issue((key,), None, f"manifest key {key!r} also set in {carriers[0].file}; "
                                                         "keep pack/version/decision_order in one file"))
        data = carriers[0].data
        for key in ("pack", "version"):
            if key not in data:
                self.issues.append(carriers[0].issue((), None, f"manifest is missing `{key}:`"))
        order = tuple(data.get("decision_order") or DEFAULT_DECISION_ORDER)
        if ("decision_order",) not in bad[id(carriers[0])] and order[-1:] != ("allow",):
            self.issues.append(carriers[0].issue(("decision_order",), None,
                                                 "`allow` must be last: allow rules are report flags and may "
                                                 "never outrank a refusal"))
        return str(data.get("pack", "")), str(data.get("version", "")), order, data.get("description")

    def _lists(self, docs: list[SourceDoc], bad: dict) -> dict[str, tuple[ListItem, ...]]:
        lists: dict[str, tuple[ListItem, ...]] = {}
        origin: dict[str, str] = {}
        for doc in docs:
            section = doc.data.get("lists") if isinstance(doc.data, dict) else None
            if not isinstance(section, dict):
                continue
            for name, spec in section.items():
                path = ("lists", name)
                if any(b[: len(path)] == path for b in bad[id(doc)]):
                    lists.setdefault(name, ())
                    continue
                if name in lists:
                    self.issues.append(doc.issue(path, None, f"list {name!r} is already defined in {origin[name]}"))
                    continue
                raw = spec["values"] if isinstance(spec, dict) else spec
                base = (*path, "values") if isinstance(spec, dict) else path
                items = []
                seen: set = set()
                for i, item in enumerate(raw):
                    if isinstance(item, dict):
                        start = _date_ordinal(item["from"]) if "from" in item else None
                        end = _date_ordinal(item["to"]) if "to" in item else None
                        if start is not None and end is not None and start >= end:
                            self.issues.append(doc.issue((*base, i), None, f"list {name!r}: `from` must be "
                                                                            "before `to`"))
                        li = ListItem(item["value"], start, end)
                    else:
                        li = ListItem(item)
                    if isinstance(li.value, float):
                        li = ListItem(Decimal(repr(li.value)), li.start, li.end)
                    key = (type(li.value), li.value, li.start, li.end)
                    if key in seen:
                        self.issues.append(doc.issue((*base, i), None, f"list {name!r}: {li.value!r} is listed twice"))
                    seen.add(key)
                    items.append(li)
                lists[name] = tuple(items)
                origin[name] = doc.file
                self.list_sources[name] = (doc, base)
        return lists

    def _screening_lists(self, docs: list[SourceDoc], bad: dict, lists: dict) -> dict[str, PartyList]:
        """``screening_lists:``: party-list files (relative to the pack directory), read and indexed. A file
        that cannot be read as its format is an issue at its line; the list's entry in the pack names it."""
        found: dict[str, PartyList] = {}
        for doc, name, spec in self._entries(docs, bad, "screening_lists", "screening list"):
            path = ("screening_lists", name)
            if name in lists:
                self.issues.append(doc.issue(path, None, f"{name!r} is also a value list (`lists:`); give the "
                                                         "party list another name"))
                continue
            try:
                from .screening.index import ScreenIndex  # rapidfuzz, anyascii: only for packs that screen
            except ImportError as exc:
                needs = " ".join(f"'{r}'" for r in REQUIREMENTS)
                self.issues.append(doc.issue(path, None, f"name screening needs {exc.name or exc}, which is not "
                                             f"installed: pip install {needs} (dependencies of "
                                             "payment-policy-engine; a pack that screens names never loads "
                                             "without them)"))
                return {}
            base = self.root if self.root.is_dir() else self.root.parent
            start = _date_ordinal(spec["from"]) if "from" in spec else None
            files = [base / spec["file"]] + ([base / spec["aliases"]] if "aliases" in spec else [])
            # Reading /dev/zero (or a FIFO) as a list never ends: the load hung, taking memory without bound.
            if special := next((f for f in files if f.exists() and not f.is_file()), None):
                self.issues.append(doc.issue(path, None, f"{special} is not a regular file (a device, FIFO or "
                                                         "directory); a party list is a CSV file"))
                continue
            try:
                if spec["format"] == "ofac_sdn":
                    if start is None:
                        self.issues.append(doc.issue(path, None, "an OFAC SDN file carries no dates: say from "
                                                     "when the list applies with `from: YYYY-MM-DD` (its "
                                                     "publication date), so backtests of earlier payments do "
                                                     "not hit it"))
                        continue
                    parties = read_ofac(files[0], str(files[0]), files[1] if len(files) > 1 else None,
                                        str(files[-1]), start)
                else:
                    if "aliases" in spec:
                        self.issues.append(doc.issue((*path, "aliases"), None, "`aliases:` is the alias file "
                                                     "of ofac_sdn; OpenSanctions rows carry their aliases"))
                        continue
                    parties = read_opensanctions(files[0], str(files[0]), start)
                digest = file_digest(files)
            except ListFileError as exc:
                self.issues.append(Issue(exc.file, exc.line, 1, None, f"screening list {name!r}: {exc.problem}"))
                continue
            except OSError as exc:
                self.issues.append(doc.issue(path, None, f"cannot read {exc.filename}: {exc.strerror}"))
                continue
            if not parties:
                self.issues.append(doc.issue(path, None, f"screening list {name!r} has no entries"))
                continue
            found[name] = PartyList(name, spec["format"], tuple(str(f) for f in files), digest,
                                    ScreenIndex(parties))
        return found

    def _fx(self, docs: list[SourceDoc], bad: dict) -> tuple[FxTable, ...]:
        tables: list[FxTable] = []
        seen: dict[int, str] = {}
        for doc in docs:
            section = doc.data.get("reference_fx") if isinstance(doc.data, dict) else None
            if not isinstance(section, list) or any(b[:1] == ("reference_fx",) for b in bad[id(doc)]):
                continue
            for i, table in enumerate(section):
                day = _date_ordinal(table["as_of"])
                if day in seen:
                    self.issues.append(doc.issue(("reference_fx", i, "as_of"), None,
                                                 f"two reference_fx tables dated {table['as_of']} ({seen[day]})"))
                    continue
                seen[day] = doc.file
                rates = {}
                for ccy, text in table["rates"].items():
                    rate = Decimal(text)
                    if rate <= 0:
                        self.issues.append(doc.issue(("reference_fx", i, "rates", ccy), None,
                                                     f"rate for {ccy} must be positive"))
                        continue
                    if problem := rate_problem(text, rate):
                        self.issues.append(doc.issue(("reference_fx", i, "rates", ccy), None, problem))
                        continue
                    rates[ccy] = rate
                if rates.get("CNY", Decimal(1)) != 1:
                    self.issues.append(doc.issue(("reference_fx", i, "rates", "CNY"), None,
                                                 "rates are CNY per unit, so CNY must be 1"))
                rates["CNY"] = Decimal(1)
                tables.append(FxTable(day, rates, table.get("source")))
        written_but_bad = any(b[:1] == ("reference_fx",) for d in docs for b in bad[id(d)])
        if not tables and docs and not written_but_bad:
            self.issues.append(Issue(docs[0].file, 1, 1, None, "no `reference_fx:` table: derived amounts need "
                                                               "dated reference rates (at least CNY: \"1\")"))
        return tuple(sorted(tables, key=lambda t: t.as_of))

    def _entries(self, docs: list[SourceDoc], bad: dict, key: str, what: str) -> Iterator[tuple[SourceDoc, str, Any]]:
        """The entries of a mapping section (``timezones:``, ``defaults:``) across the pack's files, each name
        once: a name set in two files is an issue at the second, naming the first."""
        origin: dict[str, str] = {}
        for doc in docs:
            section = doc.data.get(key) if isinstance(doc.data, dict) else None
            if not isinstance(section, dict) or any(b[:1] == (key,) for b in bad[id(doc)]):
                continue
            for name, value in section.items():
                if name in origin:
                    self.issues.append(doc.issue((key, name), None, f"{what} {name} is already set in {origin[name]}"))
                    continue
                origin[name] = doc.file
                yield doc, name, value

    def _timezones(self, docs: list[SourceDoc], bad: dict) -> dict[str, str]:
        zones: dict[str, str] = {}
        for doc, country, name in self._entries(docs, bad, "timezones", "the timezone of"):
            if problem := _zone_problem(name):
                self.issues.append(doc.issue(("timezones", country), None, problem))
                continue
            zones[country] = name
        if not zones and docs and not any(isinstance(d.data, dict) and "timezones" in d.data for d in docs):
            self.issues.append(Issue(docs[0].file, 1, 1, None, "no `timezones:` map: local hours and as-of dates "
                                                               "come from each PSP jurisdiction's timezone "
                                                               "(e.g. timezones: {CN: Asia/Shanghai})"))
        return dict(sorted(zones.items()))

    def _defaults(self, docs: list[SourceDoc], bad: dict) -> dict[str, Any]:
        """``defaults:`` of every file: field path -> the value an absent field takes."""
        out: dict[str, Any] = {}
        for doc, name, value in self._entries(docs, bad, "defaults", "the default of"):
            path = ("defaults", name)

            def err(where: tuple, message: str, doc: SourceDoc = doc) -> None:
                self.issues.append(doc.issue(where, None, message))

            if not self._field_ok(path, name, err):
                continue
            if name.startswith("derived."):
                err(path, f"{name} is computed by the engine; it has no default")
                continue
            info = self.catalog.get(name)
            assert info is not None
            constant = self._constant(doc, path, value, info.kind, name, err)
            if constant is not None:
                out[name] = int(constant) if isinstance(constant, Decimal) and constant == int(constant) else constant
        return out

    def _aggregates(self, docs: list[SourceDoc], bad: dict, lists: dict) -> dict[str, Aggregate]:
        """``aggregates:`` of every file: history field -> the counter that defines it."""
        out: dict[str, Aggregate] = {}
        for doc, name, raw in self._entries(docs, bad, "aggregates", "the aggregate"):
            path = ("aggregates", name)
            before = len(self.issues)

            def err(where: tuple, message: str, doc: SourceDoc = doc) -> None:
                self.issues.append(doc.issue(where, None, message))

            self._field_ok(path, name, err)
            function = next(f for f in FUNCTIONS if f in raw)
            of = None if function == COUNT else raw[function]
            if of is not None and self._field_ok((*path, function), of, err) and function == "sum":
                info = self.catalog.get(of)
                if info is not None and info.kind != "num":
                    err((*path, function), f"sum of {of!r}, which is not a number")
            self._field_ok((*path, "by"), raw["by"], err)
            where = (self._node(doc, (*path, "where"), raw["where"], None, lists, depth=0)
                     if "where" in raw else None)
            window = self._window(doc, (*path, "window"), raw["window"], lists, err)
            if len(self.issues) != before or window is None:
                continue
            line, col = doc.mark(path)
            out[name] = Aggregate(name, function, of, where, raw["by"], window, raw["counts"], doc.file, line, col)
        return out

    def _window(self, doc: SourceDoc, path: tuple, raw: Any, lists: dict, err) -> Window | None:
        if raw == "lifetime":
            return Window("lifetime")
        if "last" in raw:
            return Window("last", seconds=sliding_seconds(raw["last"]) or 0)
        if "since" in raw:
            event = self._node(doc, (*path, "since"), raw["since"], None, lists, depth=0)
            return Window("since", event=event) if event is not None else None
        zone = raw["timezone"]
        if zone != JURISDICTION and (problem := _zone_problem(zone)):
            err((*path, "timezone"), f"{problem}; or `{JURISDICTION}`: the payment's PSP jurisdiction")
            return None
        assert raw["calendar"] in CALENDAR_UNITS
        return Window("calendar", unit=raw["calendar"], timezone=zone)

    # -- rules -------------------------------------------------------------------------------------------
    def _rules(self, docs: list[SourceDoc], bad: dict, lists: dict) -> list[Rule]:
        rules: list[Rule] = []
        seen: dict[str, str] = {}
        for doc in docs:
            section = doc.data.get("rules") if isinstance(doc.data, dict) else None
            if not isinstance(section, list):
                continue
            for i, raw in enumerate(section):
                path = ("rules", i)
                rid = raw.get("id") if isinstance(raw, dict) else None
                rid = rid if isinstance(rid, str) else None
                if rid is not None:
                    if rid in seen:
                        self.issues.append(doc.issue((*path, "id"), rid, f"duplicate rule id (first defined at "
                                                                          f"{seen[rid]})"))
                    else:
                        line, col = doc.mark((*path, "id"))
                        seen[rid] = f"{doc.file}:{line}:{col}"
                if not isinstance(raw, dict) or "when" not in raw:
                    continue
                rule_bad = {b for b in bad[id(doc)] if b[:2] == path}
                rule = self._rule(doc, path, raw, rid, lists, structural_only=bool(rule_bad - {(*path, "when")}))
                if rule is not None:
                    rules.append(rule)
        if len(rules) > MAX_RULES:
            self.issues.append(Issue(docs[0].file, 1, 1, None, f"{len(rules)} rules; the limit is {MAX_RULES}"))
        return rules

    def _rule(self, doc: SourceDoc, path: tuple, raw: dict, rid: str | None, lists: dict,
              structural_only: bool) -> Rule | None:
        before = len(self.issues)
        when = self._node(doc, (*path, "when"), raw["when"], rid, lists, depth=0)
        if structural_only:
            return None
        reason = self._template(doc, (*path, "reason"), raw["reason"], rid)
        reason_zh = self._template(doc, (*path, "reason_zh"), raw["reason_zh"], rid) if "reason_zh" in raw else None
        if raw.get("report") and raw["outcome"] != "allow":
            self.issues.append(doc.issue((*path, "report"), rid, "`report:` is for informational rules; set "
                                                                 "`outcome: allow` or drop the report"))
        eff = raw.get("effective") or {}
        start = _date_ordinal(eff["from"]) if "from" in eff else None
        end = _date_ordinal(eff["to"]) if "to" in eff else None
        if start is not None and end is not None and start >= end:
            self.issues.append(doc.issue((*path, "effective"), rid, "effective `from` must be before `to`"))
        if len(self.issues) != before or when is None:
            return None
        line, col = doc.mark(path)
        return Rule(id=raw["id"], category=raw["category"], title=raw["title"], when=when, outcome=raw["outcome"],
                    reason=reason, source=raw["source"], verified=raw["verified"], file=doc.file, line=line,
                    col=col, report=raw.get("report"), effective_from=start, effective_to=end,
                    reason_zh=reason_zh, tags=tuple(raw.get("tags", ())), notes=raw.get("notes"),
                    on_unknown=raw.get("on_unknown") or default_on_unknown(raw["outcome"]))

    def _template(self, doc: SourceDoc, path: tuple, text: str, rid: str | None) -> ReasonTemplate:
        if problem := placeholder_problem(text):  # before the template's renderer is built
            self.issues.append(doc.issue(path, rid, f"reason template: {problem}"))
            return ReasonTemplate("")
        try:
            template = ReasonTemplate(text)
        except ValueError as exc:
            self.issues.append(doc.issue(path, rid, f"reason template: {exc}"))
            return ReasonTemplate("")
        for name in template.fields:
            if name not in self.catalog:
                self.issues.append(doc.issue(path, rid, f"reason placeholder {{{name}}} is not a request or "
                                                        f"derived field{self._suggest(name)}"))
        return template

    def _suggest(self, name: str) -> str:
        if name == "extra" or name.startswith("extra."):
            return "; rules cannot read `extra`: it is the caller's own free-form data, outside the contract"
        return hint(self.catalog.suggest(name))

    def _node(self, doc: SourceDoc, path: tuple, raw: Any, rid: str | None, lists: dict, depth: int) -> Node | None:
        err = lambda p, msg: self.issues.append(doc.issue(p, rid, msg))  # noqa: E731
        if depth > MAX_CONDITION_DEPTH:
            err(path, f"condition nested deeper than {MAX_CONDITION_DEPTH} levels")
            return None
        if not isinstance(raw, dict):
            err(path, "a condition must be a mapping: {all: [...]}, {any: [...]}, {not: ...} or a leaf "
                      "{field: ..., op: ..., value: ...}")
            return None
        groups = [k for k in ("all", "any", "not") if k in raw]
        if groups:
            if len(raw) != 1:
                others = [k for k in raw if k != groups[0]]
                err((*path, others[0]), f"`{groups[0]}:` must be the only key of its node, found {others}")
                return None
            key = groups[0]
            if key == "not":
                child = self._node(doc, (*path, "not"), raw["not"], rid, lists, depth + 1)
                return Not(child) if child is not None else None
            items = raw[key]
            if not isinstance(items, list) or not items:
                err((*path, key), f"`{key}:` needs a non-empty list of conditions")
                return None
            children = [self._node(doc, (*path, key, i), c, rid, lists, depth + 1) for i, c in enumerate(items)]
            if any(c is None for c in children):
                return None
            return (All if key == "all" else Any_)(tuple(children))  # type: ignore[arg-type]
        return self._leaf(doc, path, raw, rid, lists, err)

    def _leaf(self, doc: SourceDoc, path: tuple, raw: dict, rid: str | None, lists: dict, err) -> Leaf | None:
        allowed = ("field", "op", "value", "list", "ref", *_SCREEN_KEYS)
        for key in raw:
            if key not in allowed:
                hint = did_you_mean(key, (*allowed, "all", "any", "not"))
                err((*path, key), f"unknown key {key!r} in condition{hint}")
                return None
        if "field" not in raw or "op" not in raw:
            err(path, "a leaf needs `field:` and `op:` (or use all/any/not)")
            return None
        try:
            op = Op(raw["op"])
        except UnknownOperatorError as exc:
            hint = did_you_mean(str(exc.value), [o.value for o in Op])
            err((*path, "op"), str(UnknownOperatorError(exc.value, hint)))
            return None
        spec = op.spec
        operand = self._operand(doc, (*path, "field"), raw["field"], err)
        if operand is None:
            return None
        pos = (doc.file, *doc.mark(path))
        kind = "num" if operand.is_sum else self.catalog.get(operand.paths[0]).kind  # type: ignore[union-attr]
        label = operand.label
        if spec.shape is Shape.SCREEN:
            return self._screen_leaf(path, raw, operand, kind, pos, err)
        for key in _SCREEN_KEYS:
            if key in raw:
                err((*path, key), f"`{key}:` goes with `op: screen`, not `{op}`")
                return None
        given = [k for k in ("value", "list", "ref") if k in raw]
        if spec.shape is Shape.NONE:
            if given:
                err((*path, given[0]), f"`{op}` takes no {given[0]}")
                return None
            return Leaf(operand, op, pos=pos)
        if len(given) != 1:
            err(path, f"`{op}` needs exactly one of value / list / ref, found {given or 'none'}")
            return None
        how = given[0]
        if how == "ref":
            if spec.shape is not Shape.SCALAR:
                err((*path, "ref"), f"`{op}` takes {_WRITTEN[spec.shape]}, not a ref")
                return None
            if operand.is_sum:  # the compiler lowers a sum to one fact compared with constants
                err((*path, "ref"), "an `add:` sum is compared with a value, not a ref")
                return None
            ref = raw["ref"]
            info = self.catalog.get(ref)
            if info is None:
                err((*path, "ref"), f"unknown field {shown(ref)} in ref{self._suggest(ref)}")
                return None
            if info.kind != kind:
                err((*path, "ref"), f"cannot compare {label} ({kind}) with {ref} ({info.kind})")
                return None
            if kind not in spec.kinds:
                err((*path, "op"), f"`{op}` orders values; {label} and {ref} are not numbers "
                                   f"(use {ops_with((Shape.SCALAR,), kind)})")
                return None
            return Leaf(operand, op, ref=ref, pos=pos)
        if how == "list" and spec.shape is not Shape.LIST:
            err((*path, "list"), f"`list:` goes with {ops_with((Shape.LIST,), kind)}, not `{op}`")
            return None
        if kind not in spec.kinds:
            err((*path, "op"), f"`{op}` orders numbers; {label} is a {kind} field "
                               f"(use {ops_with((Shape.SCALAR, Shape.LIST), kind)})")
            return None
        if spec.shape is Shape.LIST:
            if how == "list":
                name = raw["list"]
                if name in self.screening:
                    err((*path, "list"), f"{name!r} is a party list (`screening_lists:`): names are screened "
                                         "against it with `op: screen`")
                    return None
                if name not in lists:
                    err((*path, "list"), f"unknown list {shown(name)}{did_you_mean(str(name), lists)}")
                    return None
                items = lists[name]
            else:
                values = raw["value"]
                if not isinstance(values, list):
                    err((*path, "value"), f"`{op}` needs a list value, e.g. value: [a, b]")
                    return None
                items = tuple(ListItem(v) for v in values)
            checked = []
            for i, item in enumerate(items):
                where = (*path, "value", i) if how == "value" else (*path, "list")
                v = self._constant(doc, where, item.value, kind, label, err)
                if v is None:
                    return None
                checked.append(ListItem(v, item.start, item.end))
            return Leaf(operand, op, items=tuple(checked), list_name=raw.get("list"), pos=pos)
        value = raw["value"]
        if spec.shape is Shape.RANGE:
            if not (isinstance(value, list) and len(value) == 2):
                err((*path, "value"), f"`{op}` needs value: [lo, hi] (half-open: lo <= x < hi)")
                return None
            lo = self._constant(doc, (*path, "value"), value[0], kind, label, err)
            hi = self._constant(doc, (*path, "value"), value[1], kind, label, err)
            if lo is None or hi is None:
                return None
            if not lo < hi:
                err((*path, "value"), f"`{op}` needs lo < hi, got [{value[0]}, {value[1]}]")
                return None
            return Leaf(operand, op, value=(lo, hi), pos=pos)
        if isinstance(value, list):
            err((*path, "value"), f"`{op}` compares with one value; for several use `in`")
            return None
        v = self._constant(doc, (*path, "value"), value, kind, label, err)
        return None if v is None else Leaf(operand, op, value=v, pos=pos)

    def _screen_leaf(self, path: tuple, raw: dict, operand: Operand, kind: str, pos: tuple, err) -> Leaf | None:
        """``{field: payee.name, op: screen, list: NAME, threshold: T, country_field: payee.country}``."""
        given = [k for k in ("value", "ref") if k in raw]
        if given:
            err((*path, given[0]), f"`screen` takes `list:` (a party list) and `threshold:`, not `{given[0]}:`")
            return None
        if operand.is_sum or kind != "str":
            err((*path, "field"), f"`screen` compares names; {operand.label} is not a text field")
            return None
        field_path = operand.paths[0]
        if "list" not in raw:
            known = ", ".join(self.screening) or "none declared"
            err(path, f"`screen` needs `list:` naming a party list of `screening_lists:` ({known})")
            return None
        name = raw["list"]
        party_list = self.screening.get(name)
        if party_list is None:
            what = "a value list (`lists:`), not a party list" if name in self.list_sources else "no party list"
            err((*path, "list"), f"{name!r} is {what}; `screen` takes a list of `screening_lists:`"
                                 f"{did_you_mean(str(name), self.screening)}")
            return None
        if "threshold" not in raw:
            err(path, "`screen` needs `threshold:` (0 < t <= 1): the least score that counts as a hit; "
                      "benchmarks/screening.py measures recall and false positives per threshold")
            return None
        threshold = raw["threshold"]
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 < threshold <= 1:
            err((*path, "threshold"), f"threshold {threshold!r} is not a number in (0, 1]")
            return None
        country = raw.get("country_field")
        if country is not None:
            info = self.catalog.get(country) if isinstance(country, str) else None
            owner = field_path.rsplit(".", 1)[0] if "." in field_path else None
            if info is None or info.kind != "str" or not country.endswith("country") or \
                    country.rsplit(".", 1)[0] != owner:
                err((*path, "country_field"), f"country_field {country!r} must be the country code field of the "
                                              f"object {field_path} belongs to (e.g. {owner or 'payee'}.country)")
                return None
        screening = Screening(field_path, name, float(threshold), country, party_list.index)
        return Leaf(operand, Op.SCREEN, list_name=name, screen=screening, pos=pos)

    def _operand(self, doc: SourceDoc, path: tuple, raw: Any, err) -> Operand | None:
        if isinstance(raw, dict):
            paths = raw.get("add")
            if set(raw) != {"add"} or not isinstance(paths, list) or len(paths) < 2:
                err(path, "a computed field is {add: [field, field, ...]} with two or more fields")
                return None
            for i, p in enumerate(paths):
                if not self._field_ok((*path, "add", i), p, err):
                    return None
                if self.catalog.get(p).kind != "num":  # type: ignore[union-attr]
                    err((*path, "add", i), f"`add` sums numbers; {p} is not numeric")
                    return None
            return Operand(tuple(paths), is_sum=True)
        if not self._field_ok(path, raw, err):
            return None
        return Operand((raw,))

    def _field_ok(self, path: tuple, name: Any, err) -> bool:
        if not isinstance(name, str):
            err(path, f"field must be a dotted path string, got {shown(name)}")
            return False
        if name not in self.catalog:
            err(path, f"unknown field {shown(name)}: the request schema does not define it{self._suggest(name)}")
            return False
        return True

    def _constant(self, doc: SourceDoc, path: tuple, value: Any, kind: str, label: str, err) -> Any:
        if kind == "num":
            number = _exact_number(value)
            if number is None:
                err(path, f"{label} is a number; {shown(value)} is a {type(value).__name__}{_number_hint(value)}")
                return None
            try:
                scaled = number.scaleb(SCALE_DIGITS)
                exact = scaled == scaled.to_integral_value()
            except InvalidOperation:
                exact = False
            if not exact:
                err(path, f"{clip(str(value))} has more than {SCALE_DIGITS} decimal places; thresholds are compared "
                          f"exactly in units of 1e-{SCALE_DIGITS}")
                return None
            if abs(number) >= MAX_CONSTANT:
                err(path, f"{clip(str(value))} is too large (the limit for thresholds is {MAX_CONSTANT:,})")
                return None
            return number
        if kind == "bool":
            if not isinstance(value, bool):
                err(path, f"{label} is a boolean; compare it with true or false, not {value!r}")
                return None
            return value
        if not isinstance(value, str):
            hint = " (quote it: YAML reads NO/yes/on as booleans and 6012 as a number)"
            err(path, f"{label} is a string field; {value!r} is a {type(value).__name__}{hint}")
            return None
        if len(value) > MAX_TEXT_CONSTANT:
            # Request strings are capped at the same length, so a longer constant could never match.
            err(path, f"string of {len(value)} characters; conditions compare strings of at most "
                      f"{MAX_TEXT_CONSTANT}")
            return None
        return value
