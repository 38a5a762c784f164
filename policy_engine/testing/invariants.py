"""Policy invariants: properties of a rule pack stated in YAML and searched for counterexamples with Hypothesis.

An invariant names a ``given`` (constraints on the requests: fixed values, ``in`` / ``not_in`` sets, numeric
ranges, a local-date window) and one of

* ``expect``: the decision is / is not / is at least as severe as an outcome; rules fire / do not fire;
* ``monotonic``: raising a numeric field never lowers (or never raises) the decision's severity;
* ``unchanged_by``: changing these fields (``unread``: every field no rule condition reads) changes neither
  the decision nor the fired rules.

:func:`load_invariants` reads a file (``schemas/invariants.schema.json``) with ``file:line:col`` errors;
:func:`check` runs one invariant with :func:`hypothesis.find`, which returns the *shrunk* counterexample;
:func:`check_invariants` runs a file against a pack for test suites and raises ``AssertionError`` on failure.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from random import Random
from typing import Any

import jsonschema
from hypothesis import HealthCheck, Phase, Verbosity, find, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample
from hypothesis.strategies import SearchStrategy

from ..conditions import counterparty_of, fields_read
from ..decision import FIRED, UNDECIDED, Decision
from ..diagnostics import did_you_mean, hint
from ..engine import PolicyEngine
from ..errors import EvaluationError, Issue, IssueListError, RequestError
from ..fields import FieldCatalog
from ..loader import DATE_FORMAT, schema_message, specific_error
from ..request import MAX_AMOUNT, local_time
from ..resources import load_schema
from ..ruleset import RuleSet
from ..yamlsource import SourceDoc, YamlSourceError, load_yaml
from . import strategies as gen

#: Where a pack keeps its invariants: beside its rule tests, under ``tests/`` (which the loader skips).
DEFAULT_FILE = Path("tests") / "invariants.yaml"
DEFAULT_EXAMPLES = 100
#: Fields a caller cannot vary on their own: the engine derives amounts and dates from them.
_DERIVED_FROM = ("amount.value", "amount.currency", "timestamp")


class InvariantError(IssueListError):
    """An invariants file could not be loaded. ``issues`` lists every problem as ``file:line:col id: message``."""

    subject = "invariants file"
    consequence = "nothing was checked"
    id_key = "invariant"


# -- the model ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Expectation:
    decision_is: str | None = None
    decision_not: tuple[str, ...] = ()
    at_least: str | None = None
    fires: tuple[str, ...] = ()
    fires_any: tuple[str, ...] = ()
    does_not_fire: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Invariant:
    id: str
    title: str
    given: Mapping[str, Any]  # dotted field -> constraint, as written (validated)
    file: str
    line: int
    col: int
    expect: Expectation | None = None
    monotonic: str | None = None  # the field
    increasing_severity: bool = True  # non_decreasing (True) or non_increasing (False)
    unchanged_by: tuple[str, ...] | str | None = None  # fields, or "unread"
    source: str | None = None

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    @property
    def kind(self) -> str:
        return "expect" if self.expect else "monotonic" if self.monotonic else "unchanged_by"

    def rule_ids(self) -> tuple[str, ...]:
        e = self.expect
        return (*e.fires, *e.fires_any, *e.does_not_fire) if e else ()


@dataclass(frozen=True, slots=True)
class Observation:
    """What the engine made of one request."""

    request: Any
    decision: str | None = None
    trail: tuple[Mapping[str, Any], ...] = ()
    error: str | None = None

    @property
    def fired(self) -> tuple[str, ...]:
        return tuple(e["rule_id"] for e in self.trail if e["status"] == FIRED)

    @property
    def undecided(self) -> tuple[str, ...]:
        return tuple(e["rule_id"] for e in self.trail if e["status"] == UNDECIDED)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"request": json_ready(self.request)}
        if self.error is not None:
            out["error"] = self.error
        else:
            out["decision"] = self.decision
            out["trail"] = [dict(e) for e in self.trail]
        return out


@dataclass(frozen=True, slots=True)
class Counterexample:
    message: str
    observations: tuple[Observation, ...]  # one request, or the request and its variant


@dataclass(frozen=True, slots=True)
class Result:
    invariant: Invariant
    counterexample: Counterexample | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def held(self) -> bool:
        return self.counterexample is None


# -- loading ------------------------------------------------------------------------------------------------
def default_invariants_path(pack: str | Path | None) -> Path:
    """``<pack>/tests/invariants.yaml`` (for a one-file pack, beside the file)."""
    from ..resources import default_pack_path

    root = Path(pack) if pack is not None else default_pack_path()
    return (root if root.is_dir() else root.parent) / DEFAULT_FILE


def load_invariants(path: str | Path) -> tuple[Invariant, ...]:
    """Read and validate an invariants file; raises :class:`InvariantError` listing every problem."""
    try:
        doc = load_yaml(Path(path))
    except YamlSourceError as exc:
        raise InvariantError([exc.issue]) from exc
    return _Reader(doc).read()


class _Reader:
    def __init__(self, doc: SourceDoc):
        self.doc = doc
        self.issues: list[Issue] = []
        self.catalog = FieldCatalog(load_schema("payment_request"))

    def err(self, path: tuple, inv_id: str | None, message: str) -> None:
        self.issues.append(self.doc.issue(path, inv_id, message))

    def read(self) -> tuple[Invariant, ...]:
        data = self.doc.data
        if not isinstance(data, dict) or "invariants" not in data:
            self.err((), None, "an invariants file has a top-level `invariants:` list (is this a rule-test file?)")
            raise InvariantError(self.issues)
        malformed = self._schema(data)
        seen: dict[str, str] = {}
        out = []
        items = data.get("invariants")
        for i, raw in enumerate(items if isinstance(items, list) else []):
            if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
                continue
            where = ("invariants", i)
            if raw["id"] in seen:
                self.err((*where, "id"), raw["id"], f"duplicate invariant id (first at {seen[raw['id']]})")
            line, col = self.doc.mark(where)
            seen.setdefault(raw["id"], f"{self.doc.file}:{line}:{col}")
            if i in malformed:
                continue  # its shape is wrong; the schema errors say how, further checks would only guess
            inv = self._invariant(where, raw)
            if inv is not None:
                out.append(inv)
        if self.issues:
            raise InvariantError(sorted(self.issues, key=lambda i: (i.line, i.col)))
        return tuple(out)

    def _schema(self, data: dict) -> set[int]:
        """Report schema errors; returns the indexes of invariants whose structure is wrong."""
        validator = jsonschema.Draft202012Validator(load_schema("invariants"), format_checker=DATE_FORMAT)
        malformed: set[int] = set()
        for error in validator.iter_errors(data):
            path = tuple(error.absolute_path)
            inv_id = self._id_at(path)
            if len(path) >= 2 and isinstance(path[1], int):
                malformed.add(path[1])
            if len(path) == 2 and error.validator == "oneOf":
                kinds = [k for k in ("expect", "monotonic", "unchanged_by") if k in error.instance]
                self.err(path, inv_id, f"an invariant has exactly one of expect / monotonic / unchanged_by; "
                                       f"found {kinds or 'none'}")
                continue
            specific = specific_error(error)
            if specific is not error:
                error, path = specific, tuple(specific.absolute_path)
            if error.validator == "additionalProperties":
                allowed = list(error.schema.get("properties", {}))
                extra = [k for k in error.instance if k not in allowed]
                message = f"unknown key {extra[0]!r}{did_you_mean(extra[0], allowed)}" if extra else error.message
                self.err((*path, extra[0]) if extra else path, inv_id, message)
                continue
            where = "/".join(str(p) for p in path[2:])
            message = schema_message(error) if error.validator == "format" else error.message
            self.err(path, inv_id, f"{where}: {message}" if where else message)
        return malformed

    def _id_at(self, path: tuple) -> str | None:
        if len(path) >= 2 and path[0] == "invariants" and isinstance(path[1], int):
            items = self.doc.data.get("invariants")
            if isinstance(items, list) and path[1] < len(items) and isinstance(items[path[1]], dict):
                rid = items[path[1]].get("id")
                return rid if isinstance(rid, str) else None
        return None

    # -- one invariant ------------------------------------------------------------------------------------
    def _invariant(self, where: tuple, raw: dict) -> Invariant | None:
        before = len(self.issues)
        inv_id = raw["id"]
        given = self._given((*where, "given"), inv_id, raw.get("given") or {})
        expect = monotonic = unchanged = None
        increasing = True
        if isinstance(raw.get("expect"), dict):
            expect = self._expect(raw["expect"])
        if isinstance(raw.get("monotonic"), dict) and isinstance(raw["monotonic"].get("field"), str):
            monotonic = raw["monotonic"]["field"]
            increasing = raw["monotonic"].get("severity", "non_decreasing") == "non_decreasing"
            self._numeric_field((*where, "monotonic", "field"), inv_id, monotonic)
            if monotonic in given and not isinstance(given[monotonic], dict):
                self.err((*where, "monotonic", "field"), inv_id,
                         f"`given` fixes {monotonic} to one value; a monotonic invariant needs it free to rise")
        if "unchanged_by" in raw:
            value = raw["unchanged_by"]
            if value == "unread":
                unchanged = "unread"
            elif isinstance(value, list):
                for j, path in enumerate(value):
                    if self._field((*where, "unchanged_by", j), inv_id, path) and path in given:
                        self.err((*where, "unchanged_by", j), inv_id, f"{path} is both constrained by `given` and "
                                                                      "varied by `unchanged_by`")
                unchanged = tuple(value)
        if len(self.issues) != before or (expect, monotonic, unchanged) == (None, None, None):
            return None
        line, col = self.doc.mark(where)
        return Invariant(id=inv_id, title=raw["title"], given=given, file=self.doc.file, line=line, col=col,
                         expect=expect, monotonic=monotonic, increasing_severity=increasing,
                         unchanged_by=unchanged, source=raw.get("source"))

    def _field(self, path: tuple, inv_id: str, name: Any) -> bool:
        if not isinstance(name, str) or name not in self.catalog:
            near = self.catalog.suggest(name) if isinstance(name, str) else None
            self.err(path, inv_id, f"unknown request field {name!r}{hint(near)}")
            return False
        if name.startswith("derived."):
            self.err(path, inv_id, f"{name} is computed by the engine; constrain amount.value, amount.currency "
                                   "or timestamp instead")
            return False
        return True

    def _numeric_field(self, path: tuple, inv_id: str, name: str) -> bool:
        if not self._field(path, inv_id, name):
            return False
        if not gen.is_numeric_field(name):
            self.err(path, inv_id, f"{name} is not a number")
            return False
        return True

    def _given(self, where: tuple, inv_id: str, given: dict) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, spec in given.items():
            path = (*where, name)
            if name == "timestamp":
                if not (isinstance(spec, dict) and set(spec) <= {"from", "to"}):
                    self.err(path, inv_id, "timestamp takes {from: DATE, to: DATE} (the payment's local date, "
                                           "to exclusive)")
                elif "from" in spec and "to" in spec and spec["from"] >= spec["to"]:
                    self.err(path, inv_id, "`from` must be before `to`")
                else:
                    out[name] = dict(spec)
                continue
            if not self._field(path, inv_id, name):
                continue
            if not isinstance(spec, dict):
                if self._valid_value(path, inv_id, name, spec):
                    out[name] = _exact(spec)
                continue
            forms = [k for k in ("in", "not_in", "absent") if k in spec]
            forms += ["range"] if "min" in spec or "max" in spec else []
            if len(forms) != 1 or "from" in spec or "to" in spec:
                self.err(path, inv_id, "a constraint is one of {in: [...]}, {not_in: [...]}, {min: x, max: y} or "
                                       "{absent: true} (plus optional: true); from/to are for timestamp")
                continue
            if forms[0] in ("in", "not_in"):
                if all(self._valid_value((*path, forms[0], j), inv_id, name, v) for j, v in enumerate(spec[forms[0]])):
                    out[name] = {**spec, forms[0]: [_exact(v) for v in spec[forms[0]]]}
            elif forms[0] == "range":
                if self._numeric_field(path, inv_id, name):
                    lo, hi = spec.get("min"), spec.get("max")
                    if lo is not None and hi is not None and lo > hi:
                        self.err(path, inv_id, f"min {lo} is above max {hi}")
                    else:
                        out[name] = {**spec, **{k: _exact(spec[k]) for k in ("min", "max") if k in spec}}
            else:
                if name in gen.required_fields():
                    self.err(path, inv_id, f"{name} is required by the request contract; it cannot be absent")
                else:
                    out[name] = dict(spec)
        return out

    def _valid_value(self, path: tuple, inv_id: str, name: str, value: Any) -> bool:
        schema = gen.leaf_schema(name)
        problems = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(_exact(value))]
        if problems:
            self.err(path, inv_id, f"{value!r} is not a valid {name}: {problems[0]}")
            return False
        return True

    @staticmethod
    def _expect(raw: dict) -> Expectation:
        decision = raw.get("decision")
        if isinstance(decision, str):
            decision = {"is": decision}
        decision = decision or {}
        nots = decision.get("not", ())
        ids = {k: (v,) if isinstance(v, str) else tuple(v) for k, v in raw.items() if k != "decision"}
        return Expectation(decision_is=decision.get("is"),
                           decision_not=(nots,) if isinstance(nots, str) else tuple(nots),
                           at_least=decision.get("at_least"), fires=ids.get("fires", ()),
                           fires_any=ids.get("fires_any", ()), does_not_fire=ids.get("does_not_fire", ()))


def _exact(value: Any) -> Any:
    """YAML floats become Decimals of their written form, so 0.1 stays 0.1."""
    return Decimal(repr(value)) if isinstance(value, float) else value


# -- generating requests ------------------------------------------------------------------------------------
def _knobs(inv: Invariant, ruleset: RuleSet) -> gen.Knobs:
    overrides: dict[str, Any] = {}
    dates = amount = None
    for name, spec in inv.given.items():
        if name == "timestamp":
            dates = (spec.get("from"), spec.get("to"))
            continue
        if not isinstance(spec, dict):
            overrides[name] = spec
            continue
        if "absent" in spec:
            overrides[name] = gen.ABSENT
            continue
        if "in" in spec:
            values: SearchStrategy[Any] = st.sampled_from(spec["in"])
        elif "not_in" in spec:
            values = gen.values_except(name, spec["not_in"])
        elif name == "amount.value":
            # Range on the amount: drawn in the request's currency with its decimals, by the generator.
            amount = (spec.get("min"), spec.get("max"))
            continue
        else:
            values = gen.values_between(name, spec.get("min"), spec.get("max"))
        overrides[name] = st.one_of(st.just(gen.ABSENT), values) if spec.get("optional") else values
    return gen.Knobs.of(overrides=overrides, dates=dates, amount=amount, ruleset=ruleset)


def requests_for(inv: Invariant, ruleset: RuleSet) -> SearchStrategy[dict]:
    """Requests satisfying the invariant's ``given``: plain ones, and ones on the pack's thresholds."""
    knobs = _knobs(inv, ruleset)
    return st.one_of(gen.requests_with(knobs), gen.near_thresholds_with(ruleset, knobs))


def unread_fields(ruleset: RuleSet) -> tuple[str, ...]:
    """Request fields no rule condition reads (amount, currency and timestamp feed derived fields)."""
    read = {p for r in ruleset.rules for p in fields_read(r.when)}
    return tuple(p for p in gen.request_fields() if p not in read and p not in _DERIVED_FROM)


def _varied_fields(inv: Invariant, ruleset: RuleSet) -> tuple[str, ...]:
    fields = unread_fields(ruleset) if inv.unchanged_by == "unread" else inv.unchanged_by
    return tuple(f for f in fields or () if f not in inv.given)


def cases_for(inv: Invariant, ruleset: RuleSet) -> SearchStrategy[Any]:
    """What Hypothesis searches: a request, or a request and how to vary it (a step count or new values)."""
    base = requests_for(inv, ruleset)
    if inv.monotonic:
        # A step of 1..n units, or a jump onto (or just past) one of the pack's thresholds above the value.
        return st.tuples(base, st.one_of(st.integers(1, 100), st.integers(1, 10**9)), st.integers(0, 16))
    if inv.unchanged_by:
        required = gen.required_fields()
        alternatives = {f: gen.field_values(f) if f in required else st.one_of(st.just(gen.ABSENT),
                                                                               gen.field_values(f))
                        for f in _varied_fields(inv, ruleset)}
        return st.tuples(base, st.fixed_dictionaries(alternatives))
    return base


# -- checking -----------------------------------------------------------------------------------------------
def observe(engine: PolicyEngine, request: Any) -> Observation:
    try:
        decision = engine.evaluate(request)
    except RequestError as exc:
        return Observation(request, error=f"invalid request: {'; '.join(str(v) for v in exc.violations)}")
    except EvaluationError as exc:
        return Observation(request, error=f"evaluation failed: {exc}")
    return Observation(request, decision.decision.value, _trail(decision))


def _trail(decision: Decision) -> tuple[Mapping[str, Any], ...]:
    return tuple({"rule_id": e.rule_id, "status": e.status, "outcome": e.outcome, "reason": e.reason}
                 for e in decision.trail)


class _Checker:
    def __init__(self, inv: Invariant, engine: PolicyEngine):
        self.inv = inv
        self.engine = engine
        order = engine.ruleset.decision_order
        self.rank = {o: i for i, o in enumerate(order)}  # 0 = most severe
        self.edges = gen.pack_edges(engine.ruleset) if inv.monotonic else ()

    def violation(self, case: Any) -> Counterexample | None:
        if self.inv.monotonic:
            return self._monotonic(*case)
        if self.inv.unchanged_by:
            return self._unchanged(*case)
        return self._expect(case)

    def _failed(self, *obs: Observation) -> Counterexample | None:
        bad = next((o for o in obs if o.error is not None), None)
        if bad is None:
            return None
        hint = " (a `given` constraint asks for a request the contract refuses)" if "invalid" in bad.error else ""
        return Counterexample(bad.error + hint, obs)

    def _expect(self, request: dict) -> Counterexample | None:
        obs = observe(self.engine, request)
        failed = self._failed(obs)
        if failed:
            return failed
        e = self.inv.expect
        assert e is not None
        got, fired = obs.decision, set(obs.fired)
        problems = []
        if e.decision_is and got != e.decision_is:
            problems.append(f"expected decision {e.decision_is}, got {got}")
        if got in e.decision_not:
            problems.append(f"decision must not be {got}")
        if e.at_least and self.rank[got] > self.rank[e.at_least]:  # type: ignore[index]
            problems.append(f"expected {e.at_least} or more severe, got {got}")
        missing = [r for r in e.fires if r not in fired]
        if missing:
            problems.append(f"expected {', '.join(missing)} to fire")
        if e.fires_any and not fired & set(e.fires_any):
            problems.append(f"expected one of {', '.join(e.fires_any)} to fire")
        unwanted = [r for r in e.does_not_fire if r in fired]
        if unwanted:
            problems.append(f"{', '.join(unwanted)} must not fire")
        if not problems:
            return None
        return Counterexample(f"{'; '.join(problems)} (fired: {', '.join(obs.fired) or 'nothing'})", (obs,))

    def _monotonic(self, request: dict, steps: int, jump: int) -> Counterexample | None:
        name = self.inv.monotonic
        assert name is not None
        request = copy.deepcopy(request)
        value = gen.get_path(request, name)
        if value is gen.ABSENT or value is None:
            value = Decimal(0)
            gen.set_path(request, name, 0)
        current = Decimal(str(value))
        higher = self._raised(request, name, current, steps, jump)
        if higher is None:
            return None
        variant = copy.deepcopy(request)
        gen.set_path(variant, name, higher)
        before, after = observe(self.engine, request), observe(self.engine, variant)
        failed = self._failed(before, after)
        if failed:
            return failed
        b, a = self.rank[before.decision], self.rank[after.decision]  # type: ignore[index]
        if (a > b) if self.inv.increasing_severity else (a < b):
            verb = "lowered" if self.inv.increasing_severity else "raised"
            return Counterexample(f"raising {name} from {current} to {higher} {verb} the decision from "
                                  f"{before.decision} to {after.decision}", (before, after))
        return None

    def _raised(self, request: dict, name: str, current: Decimal, steps: int, jump: int) -> Any:
        """``current`` raised by ``steps`` units of the field, or (``jump`` > 0) just onto or past the
        ``jump``-th pack threshold above it; kept inside the contract and the ``given``."""
        if name == "amount.value":
            places = gen.decimals_of(request["amount"]["currency"])
            unit, ceiling = Decimal(1).scaleb(-places), MAX_AMOUNT - Decimal(1).scaleb(-places)
        else:
            schema = gen.leaf_schema(name)
            unit = Decimal(1) if schema.get("type") == "integer" else Decimal("0.01")
            ceiling = Decimal(schema["maximum"]) if "maximum" in schema else Decimal(10) ** 12
        spec = self.inv.given.get(name)
        if isinstance(spec, dict) and spec.get("max") is not None:
            ceiling = min(ceiling, Decimal(spec["max"]))
        higher = current + unit * steps
        crossings = self._crossings(request, name, current, unit) if jump else []
        if crossings:
            # Where the decision can change: each threshold, and one unit past it (for strict comparisons).
            higher = crossings[(jump - 1) // 2 % len(crossings)] + (unit if jump % 2 == 0 else 0)
        higher = min(higher, ceiling)
        if higher <= current:
            return None
        if name == "amount.value":
            return format(higher.quantize(unit), "f")
        return int(higher) if unit == 1 else higher

    def _crossings(self, request: dict, name: str, current: Decimal, unit: Decimal) -> list[Decimal]:
        """Values of the field above ``current`` at which a threshold of the pack is reached, in the field's
        units (amounts converted into the request's currency, net of the history terms of a sum)."""
        found: set[Decimal] = set()
        for edge in self.edges:
            if edge.value is None:
                continue
            if name in edge.paths:
                level = Fraction(edge.value)
            elif name == "amount.value" and any(p.startswith("derived.amount_") for p in edge.paths):
                level = self._amount_for(request, edge)
            else:
                continue
            if level is None:
                continue
            if len(edge.paths) > 1 and name in edge.paths:
                level -= sum((_number(gen.get_path(request, p)) for p in edge.paths if p != name), Fraction(0))
            units = level / Fraction(unit)
            value = Decimal(-(-units.numerator // units.denominator)) * unit  # round up to the field's unit
            if value > current:
                found.add(value)
        return sorted(found)

    def _amount_for(self, request: dict, edge: gen.Edge) -> Fraction | None:
        derived = next(p for p in edge.paths if p.startswith("derived.amount_"))
        others = sum((_number(gen.get_path(request, p)) for p in edge.paths if p != derived), Fraction(0))
        needed = Fraction(edge.value) - others  # type: ignore[arg-type]
        day = local_time(self.engine.ruleset, request["timestamp"], request.get("psp_country")).date()
        rates = self.engine.ruleset.fx_for(day.toordinal()).rates
        currency, target = request["amount"]["currency"], derived.rsplit("_", 1)[1].upper()
        if currency not in rates or target not in rates:
            return None
        return needed if currency == target else needed * Fraction(rates[target]) / Fraction(rates[currency])

    def _unchanged(self, request: dict, alternatives: Mapping[str, Any]) -> Counterexample | None:
        variant = copy.deepcopy(request)
        for path, value in alternatives.items():
            party = counterparty_of(path)
            if party is not None and not isinstance(request.get(party), dict):
                continue  # setting it would create the counterparty, which makes its (read) fields applicable
            gen.set_path(variant, path, value)
        before, after = observe(self.engine, request), observe(self.engine, variant)
        failed = self._failed(before, after)
        if failed:
            return failed
        if before.decision == after.decision and set(before.fired) == set(after.fired) \
                and set(before.undecided) == set(after.undecided):
            return None
        changed = [p for p in alternatives if gen.get_path(request, p) != gen.get_path(variant, p)]
        readers = sorted({r.id for r in self.engine.ruleset.rules for p in fields_read(r.when) if p in changed})
        who = f"; rules reading them: {', '.join(readers)}" if readers else ""
        return Counterexample(f"changing {', '.join(changed)} changed the decision from {before.decision} "
                              f"({', '.join(before.fired) or 'nothing fired'}) to {after.decision} "
                              f"({', '.join(after.fired) or 'nothing fired'}){who}", (before, after))


def _number(value: Any) -> Fraction:
    """A present numeric request value as an exact fraction; absent (a missing history term) counts as 0."""
    if value is gen.ABSENT or value is None or isinstance(value, bool):
        return Fraction(0)
    return Fraction(Decimal(str(value)))


def _notes(inv: Invariant, ruleset: RuleSet) -> tuple[str, ...]:
    ids = [r.id for r in ruleset.rules]
    notes = []
    for rid in inv.rule_ids():
        if rid not in ids:
            notes.append(f"rule {rid} is not in this pack{did_you_mean(rid, ids)}")
    return tuple(notes)


def check(inv: Invariant, engine: PolicyEngine, *, examples: int = DEFAULT_EXAMPLES, seed: int | None = None
          ) -> Result:
    """Search up to ``examples`` generated cases for a counterexample; return it shrunk to a minimal one."""
    checker = _Checker(inv, engine)
    config = settings(max_examples=examples, database=None, deadline=None, derandomize=False,
                      phases=(Phase.generate, Phase.shrink), verbosity=Verbosity.quiet,
                      suppress_health_check=list(HealthCheck))
    try:
        case = find(cases_for(inv, engine.ruleset), lambda c: checker.violation(c) is not None, settings=config,
                    random=Random(seed) if seed is not None else None)
    except NoSuchExample:
        return Result(inv, None, _notes(inv, engine.ruleset))
    return Result(inv, checker.violation(case), _notes(inv, engine.ruleset))


def verify(engine: PolicyEngine, invariants: Sequence[Invariant], *, examples: int = DEFAULT_EXAMPLES,
           seed: int | None = None) -> tuple[Result, ...]:
    # Each invariant gets its own seed derived from the run's, so adding one does not change the others' search.
    return tuple(check(inv, engine, examples=examples, seed=None if seed is None else seed + n)
                 for n, inv in enumerate(invariants))


def check_invariants(pack: str | Path | None = None, invariants: str | Path | None = None, *,
                     examples: int = DEFAULT_EXAMPLES, seed: int | None = None, matcher: str | None = None
                     ) -> tuple[Result, ...]:
    """Run a pack's invariants (default: ``<pack>/tests/invariants.yaml``); ``AssertionError`` listing every
    falsified invariant with its shrunk counterexample if any fails. For test suites."""
    engine = PolicyEngine.from_path(pack, matcher=matcher)
    try:
        results = verify(engine, load_invariants(invariants or default_invariants_path(pack)), examples=examples,
                         seed=seed)
    finally:
        engine.close()
    failed = [r for r in results if not r.held]
    if failed:
        raise AssertionError(f"{len(failed)} invariant(s) falsified:\n" + "\n".join(format_result(r) for r in failed))
    return results


# -- reporting ----------------------------------------------------------------------------------------------
def json_ready(value: Any) -> Any:
    """A request as JSON data: exact decimals as numbers where a float holds them exactly, else as strings."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        if value == value.to_integral_value():
            return int(value)
        return float(value) if Decimal(repr(float(value))) == value else str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def result_to_dict(result: Result) -> dict[str, Any]:
    inv = result.invariant
    out: dict[str, Any] = {"id": inv.id, "title": inv.title, "kind": inv.kind, "location": inv.location,
                           "status": "held" if result.held else "falsified"}
    if result.notes:
        out["notes"] = list(result.notes)
    if result.counterexample:
        out["message"] = result.counterexample.message
        out["counterexample"] = [o.to_dict() for o in result.counterexample.observations]
    return out


def format_result(result: Result) -> str:
    inv = result.invariant
    lines = [f"{'ok' if result.held else 'FALSIFIED':9} {inv.id}  {inv.title}"]
    lines += [f"          note: {n}" for n in result.notes]
    ce = result.counterexample
    if ce is None:
        return "\n".join(lines)
    lines.append(f"          {ce.message}")
    labels = ("request", "variant") if len(ce.observations) > 1 else ("request",)
    for label, obs in zip(labels, ce.observations, strict=True):
        lines.append(f"          shrunk counterexample {label}:")
        lines.append("            " + json.dumps(json_ready(obs.request), ensure_ascii=False))
        if obs.error:
            lines.append(f"            {obs.error}")
            continue
        lines.append(f"            decision: {obs.decision}")
        if not obs.trail:
            lines.append("            trail: no rule fired")
        for e in obs.trail:
            status = "" if e["status"] == FIRED else f", {e['status']}"
            lines.append(f"            {e['rule_id']} [{e['outcome']}{status}] {e['reason']}")
    lines.append(f"          ({inv.location})")
    return "\n".join(lines)
