"""The embedded library attacked as a hostile or careless caller would (session 23's fail-closed sweep): requests
that are not plain JSON data, decisions changed after they were returned, listeners that raise or call back into
the engine, ``explain`` with what is not a rule id. Nothing may end in an allow the plain request would not get,
in a traceback, in a hang, or change what the engine hands out later."""

from __future__ import annotations

import copy
import io
import itertools
import json
from collections import UserDict
from collections.abc import Iterator, Mapping
from decimal import Decimal
from enum import IntEnum
from types import MappingProxyType
from typing import Any

import jsonschema
import pytest
from conftest import RULES, load_cases
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy_engine import PolicyEngine, RequestError, load_ruleset
from policy_engine.audit import AuditLog
from policy_engine.cli import main
from policy_engine.explain import UnknownRuleError
from policy_engine.jsonio import dumps_bytes, parse_json
from policy_engine.resources import load_schema
from policy_engine.synthetic import dumps_request
from policy_engine.testing.strategies import invalid_requests, requests
from policy_engine.traffic import Rollout, bucket

DEFAULT = load_ruleset(RULES)
CASES = {case["id"]: case for case in load_cases()}


@pytest.fixture(scope="module")
def engine():
    eng = PolicyEngine(DEFAULT)
    yield eng
    eng.close()


def case(case_id: str) -> dict[str, Any]:
    return copy.deepcopy(CASES[case_id]["request"])


# -- explain -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rule_id", [123, 1.5, ["FS-001"], {"FS-001": 1}, b"FS-001"])
def test_explain_refuses_a_rule_id_that_is_not_a_string(engine, rule_id):
    """``explain(request, 123)`` raised a TypeError from the did-you-mean search (it iterates the id)."""
    with pytest.raises(UnknownRuleError, match="rule ids are strings"):
        engine.explain(case("AC-01"), rule_id)


# -- what a caller does with what it was handed ----------------------------------------------------------------
def _try_to_change(mapping: Any) -> None:
    try:
        mapping["digest"] = "sha256:forged"
        mapping["version"] = "forged"
    except TypeError:  # read-only: the fix
        pass


def test_changing_a_returned_decision_changes_no_later_decision(engine):
    """``Decision.ruleset`` and ``.engine`` were the pack's own dicts: ``d.ruleset["digest"] = ...`` rewrote the
    digest and version of every later decision, document, explanation and decision log record of the pack."""
    request = case("AC-01")
    expected = engine.evaluate(request).to_dict()
    first = engine.evaluate(request)
    _try_to_change(first.ruleset)
    _try_to_change(first.engine)
    first.trail[0].evidence["purpose"] = "changed"  # type: ignore[index]
    document = first.to_dict()
    document["ruleset"]["digest"] = "sha256:forged"
    document["trail"][0]["evidence"]["purpose"] = "changed"
    explanation = engine.explain(request)
    _try_to_change(explanation.ruleset)
    again = engine.evaluate(request).to_dict()
    assert again["ruleset"] == expected["ruleset"]
    assert again["ruleset"]["digest"] == engine.pack_info()["digest"] == engine.ruleset.digest
    assert again["engine"] == expected["engine"]
    assert again["trail"] == expected["trail"]
    text = parse_json(engine.evaluate_json(json.dumps(request)))
    assert text["ruleset"] == expected["ruleset"] and text["engine"] == expected["engine"]
    assert engine.explain(request).to_dict()["ruleset"] == expected["ruleset"]


def test_a_listener_changing_its_event_changes_no_later_decision():
    engine = PolicyEngine(DEFAULT, shadow=[DEFAULT])
    engine.add_listener(lambda event: (_try_to_change(event.pack), _try_to_change(event.decision.engine),
                                       [_try_to_change(s.pack) for s in event.shadows]))
    request = case("AC-01")
    digest = engine.ruleset.digest
    for n in range(3):
        decision = engine.evaluate({**request, "request_id": f"L-{n}"})
        assert decision.ruleset["digest"] == digest and decision.engine["version"] != "forged"
        assert engine.drain(5)
    engine.close()


# -- requests that are not plain JSON data -----------------------------------------------------------------------
class NeverLess(int):
    """An int whose ``<`` is always False."""

    def __lt__(self, other: object) -> bool:
        return False

    __hash__ = int.__hash__


class NeverAtLeast(Decimal):
    """A Decimal whose ``>=`` is always False."""

    def __ge__(self, other: object) -> bool:
        return False

    __hash__ = Decimal.__hash__


class NeverLessFloat(float):
    def __lt__(self, other: object) -> bool:
        return False

    __hash__ = float.__hash__


class Amount(IntEnum):
    TWO_THOUSAND = 2000


def _set(request: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for key in parents:
        request = request[key]
    request[last] = value


@pytest.mark.parametrize("case_id, path, value, plain, expected", [
    ("AC-28", "payer.age", NeverLess(14), "deny", "integer"),  # a minor: was allowed
    ("AC-17", "auth.factors", NeverLess(1), "step_up", "integer"),  # was allowed
    ("AC-31", "risk_score", NeverLessFloat(65), "review", "integer"),  # was allowed
    ("AC-21", "amount.value", NeverAtLeast(48000), "review", "number or string"),  # was allowed
    ("AC-01", "amount.value", Amount.TWO_THOUSAND, "deny", "number or string"),  # EvaluationError: no same_quantum
])
def test_a_number_of_a_subclass_is_refused_never_decided(engine, case_id, path, value, plain, expected):
    """The validator took any int, float or Decimal subclass as a number and handed it to the matcher as it was,
    so a subclass that redefines a comparison decided the rule: ``payer.age`` an int whose ``<`` is False turned
    the deny for a minor into an allow. Numbers are JSON numbers, exactly int, float or Decimal (a str subclass
    was already refused); the plain value decides as ever."""
    request = case(case_id)
    _set(request, path, value)
    with pytest.raises(RequestError) as refused:
        engine.evaluate(request)
    assert [(v.path, v.message) for v in refused.value.violations] == [
        (f"$.{path}", f"expected {expected}, got {type(value).__name__}")]
    plain_type = next(t for t in (int, float, Decimal) if isinstance(value, t))
    _set(request, path, plain_type(value))
    assert engine.evaluate(request).decision == plain


# -- listeners ------------------------------------------------------------------------------------------------
def test_a_listener_raising_systemexit_does_not_end_the_shadow_worker():
    """With shadow packs listeners run on the shadow worker; a listener raising what is not an ``Exception``
    (SystemExit, asyncio's CancelledError) ended the worker thread: every later decision's shadows and events were
    never run and ``drain()`` never returned."""
    engine = PolicyEngine(DEFAULT, shadow=[DEFAULT])
    seen: list[str] = []

    def listener(event) -> None:
        seen.append(event.request_id)
        if len(seen) == 1:
            raise SystemExit(3)

    engine.add_listener(listener)
    for n in range(3):
        engine.evaluate({**case("AC-03"), "request_id": f"S-{n}"})
    assert engine.drain(5)
    assert seen == ["S-0", "S-1", "S-2"]
    assert engine.stats()["listener_errors"] == 1 and engine.stats()["shadow_evaluated"] == 3
    engine.close()


def test_drain_called_by_a_listener_on_the_shadow_worker_does_not_wait_for_itself():
    """``drain()`` from a listener on the shadow worker waited for the job running that very listener: the worker
    hung for good (and with it every later shadow and event)."""
    engine = PolicyEngine(DEFAULT, shadow=[DEFAULT])
    answers: list[bool] = []
    engine.add_listener(lambda event: answers.append(engine.drain()))
    engine.evaluate(case("AC-03"))
    assert engine.drain(5)
    assert answers == [False]  # not drained: its own job is still running
    engine.evaluate({**case("AC-03"), "request_id": "after"})
    assert engine.drain(5) and len(answers) == 2
    engine.close()


# -- a request read once -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("wrap", [MappingProxyType, UserDict], ids=["mappingproxy", "UserDict"])
def test_a_request_given_as_a_mapping_is_logged_masked_and_replays(tmp_path, wrap):
    """A request that is a Mapping but not a dict was decided, and its decision log record held the request as a
    Python repr string: nothing masked (payer.id, device.id in the clear, while ``masked`` listed them), and a
    record replay could not read."""
    log = tmp_path / "decisions.jsonl"
    with AuditLog(log, fsync="never") as audit:
        engine = PolicyEngine(DEFAULT, audit=audit)
        assert engine.evaluate(wrap(case("AC-01"))).decision == "deny"
        engine.close()
    text = log.read_text(encoding="utf-8")
    record = json.loads(text)
    assert record["request"]["payer"]["id"].startswith("masked:") and "u-1001" not in text
    out = io.StringIO()
    assert main(["replay", "--json", str(log)], out=out, err=io.StringIO()) == 0
    assert json.loads(out.getvalue())["same"] == 1


#: A candidate that holds only payments of a billion and more.
PERMISSIVE = """\
- id: HUGE
  category: risk
  title: a billion
  when: {field: amount.value, op: gte, value: 1000000000}
  outcome: review
  reason: huge
  source: test
  verified: false
"""


def _payer_in(arm_threshold: int, candidate: bool) -> str:
    return next(p for p in (f"payer-{n}" for n in range(1000)) if (bucket(p) < arm_threshold) is candidate)


def test_a_rollout_routes_the_payer_that_is_decided(make_pack):
    """The rollout arm was chosen by ``request.get("payer")`` while the pack decided a copy of the request's own
    items: a dict subclass whose ``get`` names another payer sent a payer of the strict primary pack to a
    permissive candidate (an allow its plain request would not get)."""
    permissive = load_ruleset(make_pack(PERMISSIVE))
    rollout = Rollout(permissive, 0.5)
    engine = PolicyEngine(DEFAULT, rollout=rollout)
    request = case("AC-01")  # denied by the default pack, allowed by the candidate
    del request["history"]  # counters the candidate does not read
    assert PolicyEngine(permissive).evaluate(request).decision == "allow"
    request["payer"]["id"] = _payer_in(rollout.threshold, candidate=False)
    assert engine.evaluate(request).decision == "deny"

    class Liar(dict):
        def get(self, key: str, default: Any = None) -> Any:
            if key == "payer":
                return {**self["payer"], "id": _payer_in(rollout.threshold, candidate=True)}
            return super().get(key, default)

    decision = engine.evaluate(Liar(request))
    assert decision.decision == "deny" and decision.rollout["arm"] == "primary"
    assert decision.rollout["bucket"] == bucket(request["payer"]["id"])
    engine.close()


# -- evaluate_json given what is not text --------------------------------------------------------------------------
@pytest.mark.parametrize("options", ["plain", "listener", "audit"])
@pytest.mark.parametrize("data", [None, 123, 1.5, {"request_id": "r"}, ["{}"]], ids=repr)
def test_evaluate_json_refuses_what_is_not_text(tmp_path, options, data):
    """``evaluate_json(None)`` raised a TypeError from ``len``; a dict or a list an AttributeError or TypeError from
    the decoder (an EvaluationError "could not prepare request" on the native path, as if the engine had failed)."""
    engine = PolicyEngine(DEFAULT, audit=AuditLog(tmp_path / "log.jsonl", fsync="never") if options == "audit"
                          else None)
    if options == "listener":
        engine.add_listener(lambda event: None)
    with pytest.raises(RequestError) as refused:
        engine.evaluate_json(data)
    assert [v.path for v in refused.value.violations] == ["$"]
    assert f"not {type(data).__name__}" in refused.value.violations[0].message
    text = json.dumps(case("AC-01"))
    for same in (text, text.encode(), bytearray(text.encode())):
        assert parse_json(engine.evaluate_json(same))["decision"] == "deny"
    engine.close()


# -- every option, both entry points -------------------------------------------------------------------------------
#: The options that take ``evaluate_json`` off its native path, one at a time and all together (none: the native
#: path itself). ``state`` is a plain memory:// store.
OPTION_SETS = [(), ("audit",), ("shadow",), ("rollout",), ("listener",), ("state",),
               ("audit", "shadow", "rollout", "listener", "state")]
DECISION_SCHEMA = jsonschema.Draft202012Validator(load_schema("decision"))


@pytest.fixture(scope="module")
def twin_engines(tmp_path_factory):
    """Per option set, two engines built alike: one answers ``evaluate_json``, the other ``evaluate``; both get
    the same calls in the same order, so with a store their counters stay equal."""
    built: dict[tuple[str, ...], tuple[PolicyEngine, PolicyEngine]] = {}
    logs = tmp_path_factory.mktemp("logs")

    def make(options: tuple[str, ...], name: str) -> PolicyEngine:
        engine = PolicyEngine(
            DEFAULT, audit=AuditLog(logs / f"{name}.jsonl", fsync="never") if "audit" in options else None,
            state="memory://" if "state" in options else None, shadow=[DEFAULT] if "shadow" in options else (),
            rollout=Rollout(DEFAULT, 0.5) if "rollout" in options else None)
        if "listener" in options:
            engine.add_listener(lambda event: None)
        return engine

    def get(options: tuple[str, ...]) -> tuple[PolicyEngine, PolicyEngine]:
        if options not in built:
            tag = "-".join(options) or "none"
            built[options] = make(options, f"{tag}-text"), make(options, f"{tag}-dict")
        return built[options]

    yield get
    for pair in built.values():
        for engine in pair:
            engine.close()


_PAYMENTS = itertools.count()


def _answer(call: Any) -> bytes | tuple[str, tuple]:
    try:
        return call()
    except RequestError as exc:
        return type(exc).__name__, exc.violations


@given(request=st.one_of(requests(), invalid_requests()), options=st.sampled_from(OPTION_SETS))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_option_writes_the_same_valid_document_by_either_entry_point(twin_engines, request, options):
    by_text, by_dict = twin_engines(options)
    if "state" in options and isinstance(request, dict):
        request.pop("history", None)  # the store keeps the counters
        if isinstance(request.get("request_id"), str):  # each example is a new payment: no retry conflicts
            request["request_id"] += f"-{next(_PAYMENTS)}"
    text = dumps_request(request)
    try:
        parsed = parse_json(text)
    except ValueError:  # NaN written into the text: refused at the root by evaluate_json, never decided
        assert _answer(lambda: by_text.evaluate_json(text))[0] == "RequestTextError"
        return
    out = _answer(lambda: by_text.evaluate_json(text))
    expected = _answer(lambda: by_dict.evaluate(parsed).to_dict())
    if isinstance(expected, tuple):
        assert out == expected
        return
    assert isinstance(out, bytes)
    document = json.loads(out)
    DECISION_SCHEMA.validate(document)
    expected["elapsed_us"] = document["elapsed_us"]  # the one value that differs; its place stays
    assert out == dumps_bytes(expected)


class Unreadable(Mapping):
    """A Mapping whose ``payer`` cannot be read (a lazy record whose backend is gone)."""

    def __init__(self, items: dict[str, Any]):
        self.items_ = items

    def __getitem__(self, key: str) -> Any:
        if key == "payer":
            raise RuntimeError("backend gone")
        return self.items_[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.items_)

    def __len__(self) -> int:
        return len(self.items_)


@pytest.mark.parametrize("rollout", [False, True], ids=["plain", "rollout"])
def test_a_mapping_that_cannot_be_read_is_a_request_error_and_the_batch_goes_on(rollout):
    """With a rollout the arm was chosen by ``request.get("payer")``, whose RuntimeError escaped ``evaluate`` and
    stopped ``evaluate_many``."""
    engine = PolicyEngine(DEFAULT, rollout=Rollout(DEFAULT, 0.5) if rollout else None)
    with pytest.raises(RequestError, match="Unreadable raised RuntimeError: backend gone"):
        engine.evaluate(Unreadable(case("AC-01")))
    results = list(engine.evaluate_many([Unreadable(case("AC-01")), case("AC-01")]))
    assert isinstance(results[0], RequestError) and results[1].decision == "deny"
    engine.close()
