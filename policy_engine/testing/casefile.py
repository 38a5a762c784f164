"""Rule test files: YAML under a pack's ``tests/`` directory, validated with positions, turned into cases.

The format is ``schemas/ruletest.schema.json``. Beyond the schema, a file is checked against the pack and the
request contract, so that a typo fails loudly instead of making a case pass for the wrong reason: ``base:`` names
a base of the same file, rule ids exist in the pack, every request field (in bases, requests and ``set:``) is
one the request schema defines, ``unset:`` removes something that is there, and case names are unique. A case's
``prior:`` payments (replayed into a state store before it) carry no ``history`` and no ``request_id`` of their
own, and neither does the case they precede.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from ..decision import Decision
from ..diagnostics import closest, did_you_mean, hint
from ..errors import Issue, IssueListError
from ..fields import FieldCatalog
from ..loader import schema_issue_path, schema_message
from ..resources import load_schema
from ..yamlsource import SourceDoc, YamlSourceError, load_yaml, yaml_files


class RuleTestError(IssueListError):
    """Rule test files could not be used; ``issues`` lists every problem as ``file:line:col``. No case ran."""

    subject = "rule tests"
    consequence = "no case was run"


def _ids(ids: Iterable[str]) -> str:
    return "[" + ", ".join(sorted(ids)) + "]"


@dataclass(frozen=True, slots=True)
class Expectation:
    """What a case expects; ``None`` (or empty) means "not checked"."""

    decision: str | None = None
    rules: frozenset[str] | None = None  # the exact set of fired rules
    includes: frozenset[str] = frozenset()
    excludes: frozenset[str] = frozenset()
    reason_contains: tuple[str, ...] = ()
    reports: frozenset[str] | None = None
    obligations: frozenset[tuple[str, str]] | None = None
    undecided: frozenset[str] | None = None  # the exact set of undecided rules (condition unknown)
    skipped: frozenset[str] | None = None  # the exact set of skipped rules (undecided, on_unknown: skip)

    def check(self, decision: Decision) -> tuple[str, ...]:
        """Every way ``decision`` falls short, as 'what: expected ..., got ...' lines."""
        failures = []
        got = set(decision.rule_ids)
        if self.decision is not None and decision.decision.value != self.decision:
            failures.append(f"decision: expected {self.decision}, got {decision.decision.value}")
        if self.rules is not None and got != self.rules:
            detail = "; ".join(part for part in (
                f"missing {', '.join(sorted(self.rules - got))}" if self.rules - got else "",
                f"unexpected {', '.join(sorted(got - self.rules))}" if got - self.rules else "") if part)
            failures.append(f"rules: expected {_ids(self.rules)}, got {_ids(got)} ({detail})")
        for key, want, have in (("undecided", self.undecided, set(decision.undecided_ids)),
                                ("skipped", self.skipped, set(decision.skipped_ids))):
            if want is not None and have != want:
                failures.append(f"{key}: expected {_ids(want)}, got {_ids(have)}")
        failures += [f"includes: {rid} did not fire" for rid in sorted(self.includes - got)]
        failures += [f"excludes: {rid} fired" for rid in sorted(self.excludes & got)]
        text = " ".join(f"{e.reason} {e.reason_zh or ''}" for e in decision.trail).casefold()
        failures += [f"reason_contains: no fired rule's reason contains {s!r}" for s in self.reason_contains
                     if s.casefold() not in text]
        reports = {o["report"] for o in decision.obligations}
        if self.reports is not None and reports != self.reports:
            failures.append(f"reports: expected {_ids(self.reports)}, got {_ids(reports)}")
        obligations = {(o["rule_id"], o["report"]) for o in decision.obligations}
        if self.obligations is not None and obligations != self.obligations:
            show = lambda pairs: _ids(f"{r} {rep}" for r, rep in pairs)  # noqa: E731
            failures.append(f"obligations: expected {show(self.obligations)}, got {show(obligations)}")
        return tuple(failures)


@dataclass(frozen=True, slots=True)
class Prior:
    """A payment made before a case's: replayed into the case's state store, reported ``status`` afterwards
    (None: pending), and checked against ``decision`` when the file gives one."""

    request: Mapping[str, Any]
    status: str | None
    decision: str | None
    line: int


@dataclass(frozen=True, slots=True)
class RuleCase:
    """One test case: a complete request and what the engine must decide for it, after its ``prior`` payments
    (none: the request's own ``history``, if any, is the counters)."""

    name: str
    file: str
    line: int
    col: int
    request: Mapping[str, Any]
    expect: Expectation
    prior: tuple[Prior, ...] = ()

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


#: Top-level keys of other YAML formats that share a pack's ``tests/`` directory (``policy-engine verify``'s
#: invariants). Any other file there must be a rule test file, so a misspelt ``cases:`` is an error, not a skip.
OTHER_FORMATS = ("invariants",)


def load_cases(pack_path: Path, tests_path: Path | None,
               rule_ids: Iterable[str]) -> tuple[tuple[str, ...], tuple[RuleCase, ...]]:
    """The rule test files used and every case in them, in file order: ``tests_path`` (a file or a directory)
    or by default the pack's ``tests/``. Raises :class:`RuleTestError` listing every problem."""
    root = tests_path if tests_path is not None else (pack_path if pack_path.is_dir() else pack_path.parent) / "tests"
    try:
        paths = [path for path, _ in yaml_files(root)] if root.is_dir() else [root] if root.is_file() else []
    except YamlSourceError as exc:
        raise RuleTestError([exc.issue]) from exc
    loader = _CaseLoader(set(rule_ids))
    used, cases = [], []
    for path in paths:
        found = loader.load(path, str(path))
        if found is not None:
            used.append(str(path))
            cases += found
    if loader.issues:
        raise RuleTestError(loader.issues)
    if not cases:
        raise RuleTestError([Issue(str(root), 1, 1, None, "no rule test cases here: write *.yaml files with "
                                                           "`cases:` as rules/README.md 'Analyst workflow' shows")])
    return tuple(used), tuple(cases)


def _missing(error: jsonschema.ValidationError) -> list[str]:
    return [k for k in error.validator_value if isinstance(error.instance, dict) and k not in error.instance]


def _misspelt_keys(errors: list[jsonschema.ValidationError]) -> set[tuple[tuple, str]]:
    """``(path, key)`` for each allowed key that an unknown key beside it is probably a misspelling of."""
    found = set()
    for error in errors:
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = list(error.schema.get("properties", {}))
            for key in error.instance:
                if key not in allowed:
                    near = closest(key, allowed)
                    if near is not None:
                        found.add((tuple(error.absolute_path), near))
    return found


class _CaseLoader:
    def __init__(self, rule_ids: set[str]):
        self.rule_ids = rule_ids
        self.catalog = FieldCatalog(load_schema("payment_request"))
        self.validator = jsonschema.Draft202012Validator(load_schema("ruletest"))
        self.issues: list[Issue] = []

    def load(self, path: Path, display: str) -> list[RuleCase] | None:
        """The file's cases, or None when the file is in another format (see ``OTHER_FORMATS``)."""
        try:
            doc = load_yaml(path, display)
        except YamlSourceError as exc:
            self.issues.append(exc.issue)
            return []
        if isinstance(doc.data, dict) and "cases" not in doc.data and set(OTHER_FORMATS) & set(doc.data):
            return None
        bad_cases: set[int] = set()
        top_level_bad = False
        errors = list(self.validator.iter_errors(doc.data))
        misspelt = _misspelt_keys(errors)
        for error in errors:
            where = tuple(error.absolute_path)
            in_case = len(where) >= 2 and where[0] == "cases"
            if in_case:
                bad_cases.add(where[1])  # type: ignore[arg-type]
            else:
                top_level_bad = True
            if error.validator == "required" and all((where, k) in misspelt for k in _missing(error)):
                continue  # the unknown-key error right beside it already says "did you mean 'expect'?"
            if in_case and len(where) == 2 and error.validator == "oneOf":
                continue  # request-or-base: _one_source says it better
            self.issues.append(doc.issue(schema_issue_path(error, where), None, schema_message(error)))
        if top_level_bad:
            return []
        bases = doc.data.get("bases") or {}
        for name, base in bases.items():
            self._fields(doc, ("bases", name), base)
        cases = []
        first_seen: dict[str, int] = {}
        for i, raw in enumerate(doc.data["cases"]):
            at = ("cases", i)
            if not isinstance(raw, dict) or not self._one_source(doc, at, raw) or i in bad_cases:
                continue
            name = raw["name"]
            if name in first_seen:
                self.issues.append(doc.issue((*at, "name"), None, f"duplicate case name {name!r} (first at line "
                                                                  f"{first_seen[name]})"))
            first_seen.setdefault(name, doc.mark(at)[0])
            expect = self._expect(doc, (*at, "expect"), raw["expect"])
            source = self._source(doc, at, raw, bases)
            request = None if source is None else self._changed(doc, at, copy.deepcopy(source), raw)
            prior = self._prior(doc, at, raw, source, request)
            if request is None or expect is None or prior is None or i in bad_cases:
                continue
            request.setdefault("request_id", name)
            for n, payment in enumerate(prior, 1):
                payment.request["request_id"] = f"{request['request_id']}/prior-{n}"
            cases.append(RuleCase(name, doc.file, *doc.mark(at), request, expect, prior))
        return cases

    def _prior(self, doc: SourceDoc, at: tuple, raw: dict, source: dict | None,
               request: dict | None) -> tuple[Prior, ...] | None:
        """The case's prior payments (None after a problem), each the case's source with its own changes."""
        if "prior" not in raw:
            return ()
        if source is None:
            return None
        before = len(self.issues)
        inherited = "history" in source  # said once for the case, not again for each prior payment
        if inherited or (request is not None and "history" in request):
            self.issues.append(doc.issue((*at, "prior"), None, "a case with `prior:` is decided with the counters "
                                         "its prior payments make, so neither its base (or request) nor its `set:` "
                                         "may carry `history`: start from a base without it"))
        prior = []
        for j, item in enumerate(raw["prior"]):
            where = (*at, "prior", j)
            if "request_id" in (item.get("set") or {}):
                self.issues.append(doc.issue((*where, "set", "request_id"), None, "a prior payment's request_id "
                                             "is the case's followed by /prior-N: leave it out"))
            payment = self._changed(doc, where, copy.deepcopy(source), item)
            if payment is not None and "history" in payment and not inherited:
                self.issues.append(doc.issue((*where, "set"), None, "a prior payment may not carry `history`: the "
                                                                    "engine keeps the counters"))
            if payment is not None:
                prior.append(Prior(payment, item.get("status"), item.get("decision"), doc.mark(where)[0]))
        return tuple(prior) if len(self.issues) == before else None

    def _fields(self, doc: SourceDoc, at: tuple, request: Any, prefix: str = "") -> None:
        """Every leaf of a request must be a field the request schema defines (its extra keys are allowed, so
        a misspelt field would otherwise be silently ignored)."""
        if not isinstance(request, dict):
            return
        for key, value in request.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict):
                self._fields(doc, (*at, key), value, path + ".")
            elif path not in self.catalog:
                self._unknown_field(doc, (*at, key), path)
            else:
                self._timestamp(doc, (*at, key), path, value)

    def _timestamp(self, doc: SourceDoc, at: tuple, path: str, value: Any) -> None:
        """A test's timestamp must be a real instant: `2025-02-30T...` is a typo in the test, not a request
        error for the case to report at run time."""
        if path != "timestamp" or not isinstance(value, str):
            return
        try:
            dt.datetime.fromisoformat(value)
        except ValueError as exc:
            self.issues.append(doc.issue(at, None, f"timestamp {value!r} is not a valid ISO 8601 date-time: {exc}"))

    def _unknown_field(self, doc: SourceDoc, at: tuple, path: str) -> None:
        self.issues.append(doc.issue(at, None, f"unknown request field {path!r}: the request schema does not "
                                               f"define it{hint(self.catalog.suggest(path))}"))

    def _is_object_path(self, path: str) -> bool:
        return any(p.startswith(path + ".") for p in self.catalog.paths())

    def _one_source(self, doc: SourceDoc, at: tuple, raw: dict) -> bool:
        has = {"request", "base"} & set(raw)
        if len(has) != 1:
            message = ("a case needs `request:` (a complete request) or `base:` (a base of this file) with "
                       "`set:` / `unset:`" if not has else "give either `request:` or `base:`, not both")
            self.issues.append(doc.issue(at, None, message))
        return len(has) == 1

    def _source(self, doc: SourceDoc, at: tuple, raw: dict, bases: dict) -> dict | None:
        """The request a case starts from: its ``request:`` or its base (None if unknown)."""
        if "request" in raw:
            self._fields(doc, (*at, "request"), raw["request"])
            return raw["request"]
        if raw["base"] not in bases:
            known = f"; bases here: {', '.join(bases)}" if bases else "; this file has no `bases:`"
            self.issues.append(doc.issue((*at, "base"), None, f"unknown base {raw['base']!r}"
                                                              f"{did_you_mean(raw['base'], bases)}{known}"))
            return None
        return bases[raw["base"]]

    def _changed(self, doc: SourceDoc, at: tuple, request: dict, raw: dict) -> dict | None:
        """``request`` with ``raw``'s ``set:`` and ``unset:`` applied (None after a problem at ``at``)."""
        ok = True
        for path, value in (raw.get("set") or {}).items():
            ok &= self._set(doc, (*at, "set", path), request, path, value)
        for j, path in enumerate(raw.get("unset") or ()):
            ok &= self._unset(doc, (*at, "unset", j), request, path)
        return request if ok else None

    def _set(self, doc: SourceDoc, at: tuple, request: dict, path: str, value: Any) -> bool:
        if isinstance(value, dict):
            before = len(self.issues)
            self._fields(doc, at, value, path + ".")
            if len(self.issues) != before:
                return False
        elif path not in self.catalog:
            self._unknown_field(doc, at, path)
            return False
        else:
            self._timestamp(doc, at, path, value)
        node = request
        parts = path.split(".")
        for depth, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                self.issues.append(doc.issue(at, None, f"cannot set {path}: {'.'.join(parts[:depth + 1])} is not "
                                                       "an object in the base request"))
                return False
        node[parts[-1]] = copy.deepcopy(value)
        return True

    def _unset(self, doc: SourceDoc, at: tuple, request: dict, path: str) -> bool:
        node: Any = request
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or parts[-1] not in node:
            known = path in self.catalog or self._is_object_path(path)
            why = "the base request does not have it" if known else "the request schema does not define it"
            self.issues.append(doc.issue(at, None, f"cannot unset {path}: {why}"))
            return False
        del node[parts[-1]]
        return True

    def _expect(self, doc: SourceDoc, at: tuple, raw: dict) -> Expectation | None:
        before = len(self.issues)
        if "rules" in raw and ({"includes", "excludes"} & set(raw)):
            key = "includes" if "includes" in raw else "excludes"
            self.issues.append(doc.issue((*at, key), None, "`rules:` is already the exact set of fired rules; "
                                                           f"drop `{key}:` or use `includes:` / `excludes:` alone"))
        for key in ("rules", "includes", "excludes", "undecided", "skipped"):
            for j, rid in enumerate(raw.get(key) or ()):
                self._rule_id(doc, (*at, key, j), rid)
        for j, item in enumerate(raw.get("obligations") or ()):
            self._rule_id(doc, (*at, "obligations", j, "rule_id"), item["rule_id"])
        if len(self.issues) != before:
            return None
        obligations = raw.get("obligations")
        return Expectation(
            decision=raw.get("decision"),
            rules=frozenset(raw["rules"]) if "rules" in raw else None,
            includes=frozenset(raw.get("includes") or ()), excludes=frozenset(raw.get("excludes") or ()),
            reason_contains=tuple(raw.get("reason_contains") or ()),
            reports=frozenset(raw["reports"]) if "reports" in raw else None,
            obligations=None if obligations is None else frozenset((o["rule_id"], o["report"]) for o in obligations),
            undecided=frozenset(raw["undecided"]) if "undecided" in raw else None,
            skipped=frozenset(raw["skipped"]) if "skipped" in raw else None)

    def _rule_id(self, doc: SourceDoc, at: tuple, rid: str) -> None:
        if rid not in self.rule_ids:
            self.issues.append(doc.issue(at, None, f"unknown rule id {rid!r}{did_you_mean(rid, self.rule_ids)}"))
