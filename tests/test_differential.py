"""Differential properties: the durable and python matchers and the reference evaluator agree.

Packs *and* requests are generated. Values are drawn from small pools that overlap, so thresholds, list members
and missing fields are hit often. Run long with HYPOTHESIS_PROFILE=thorough.
"""

from __future__ import annotations

import json
from decimal import Decimal

from conftest import DURABLE_OK, PACK_HEADER, needs_durable
from hypothesis import given
from hypothesis import strategies as st

from policy_engine import PolicyEngine, load_ruleset
from policy_engine.conditions import evaluate
from policy_engine.fields import FieldCatalog
from policy_engine.request import counters_read
from policy_engine.resources import load_schema
from policy_engine.testing.strategies import counterparties

STRING_FIELDS = {
    "channel": ["online", "in_app", "pos", "atm"],
    "purpose": ["merchant_purchase", "p2p_transfer", "lottery", "weird"],
    "ip_country": ["CN", "US", "KP", "SY"],
    "merchant.country": ["CN", "US", "KP", "SY"],
    "funding_source.type": ["bnpl", "debit_card", "credit_card", "mystery"],
    # names near, on and far from the party list below (a variant, SURNAME, Given, another script, a near miss)
    "payer.name": ["Zorvat Kelmindor", "Zorvath Kelmindor", "KELMINDOR, Zorvat", "Zorvan Pelmador", "Wang Fang"],
    "merchant.name": ["Vrelkin Trade Holdings Ltd", "Врелкин Трейд Холдингс", "Vrelkin Trading", "Wang Fang"],
}
NUMBER_FIELDS = {
    "risk_score": [0, 5, 64, 65, 75, 99],
    "payer.age": [7, 8, 16, 17, 18, 40],
    "history.cash_today_cny": ["0", "0.1", "0.2", "49999.99", "50000", "100"],
    "funding_source.available_credit_cny": ["0", "99.99", "100", "2000"],
}
DERIVED = ["derived.amount_cny", "derived.amount_usd", "derived.amount_eur", "derived.local_hour"]
THRESHOLDS = [0, 0.3, 5, 6, 17, 18, 64, 65, 75, 99.99, 100, 2000, 10000, 50000, 72000]
BOOL_FIELDS = ["payer.sanctions_hit", "auth.sca_performed", "cross_border"]
AMOUNTS = ["0.1", "0.2", "99.99", "100", "100.01", "2000", "50000", "72000", "72000.01", "10000.01"]
CURRENCIES = ["CNY", "USD", "EUR", "HKD", "JPY", "THB"]
LIST_VALUES = {"countries": ["KP", "IR", {"value": "SY", "to": "2025-07-01"}]}
#: The party list of generated packs: one entry listed only from 2025-07-01 (the requests straddle that date).
PARTIES_CSV = ("id,name,aliases,birth_date,countries,first_seen\n"
               "p-1,Zorvat Kelmindor,,,us,\n"
               "p-2,Vrelkin Trade Holdings LLC,Врелкин Трейд Холдингс,,cn,2025-07-01\n"
               "p-3,محمد\u200cجواد قرلیانی,,,,\n")
SCREENING = "screening_lists:\n  parties: {format: opensanctions_simple, file: parties.csv}\n"
CATALOG = FieldCatalog(load_schema("payment_request"))
#: What a request names of its counterparty when the draw left it out (the contract requires it by purpose).
COUNTERPARTY = {"merchant.mcc": "5411", "merchant.country": "CN", "payee.country": "CN", "payee.sanctions_hit": False}


def _thresholds(field: str | dict) -> list:
    """The thresholds a rule may compare ``field`` with: the loader refuses one beyond the field's maximum."""
    top = CATALOG.schema(field).get("maximum") if isinstance(field, str) else None  # type: ignore[union-attr]
    return [t for t in THRESHOLDS if top is None or t <= top]


def _flow(v) -> str:
    return json.dumps(v)


@st.composite
def leaves(draw) -> str:
    kind = draw(st.sampled_from(["str", "num", "bool", "sum", "ref", "presence", "screen"]))
    if kind == "screen":
        field = draw(st.sampled_from(["payer.name", "merchant.name"]))
        leaf = {"field": field, "op": "screen", "list": "parties", "threshold": draw(st.sampled_from([0.8, 0.9, 1]))}
        if field == "merchant.name" and draw(st.booleans()):
            leaf["country_field"] = "merchant.country"
        return _flow(leaf)
    if kind == "str":
        field = draw(st.sampled_from(sorted(STRING_FIELDS)))
        op = draw(st.sampled_from(["eq", "ne", "in", "not_in"]))
        pool = STRING_FIELDS[field]
        if op in ("in", "not_in"):
            if field in ("ip_country", "merchant.country") and draw(st.booleans()):
                return _flow({"field": field, "op": op, "list": "countries"})
            return _flow({"field": field, "op": op, "value": draw(st.lists(st.sampled_from(pool), max_size=3))})
        return _flow({"field": field, "op": op, "value": draw(st.sampled_from(pool))})
    if kind in ("num", "sum"):
        if kind == "sum":
            field = {"add": draw(st.lists(st.sampled_from([*NUMBER_FIELDS, *DERIVED[:3]]), min_size=2, max_size=3,
                                          unique=True))}
        else:
            field = draw(st.sampled_from([*NUMBER_FIELDS, *DERIVED]))
        op = draw(st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte", "between", "in"]))
        thresholds = _thresholds(field)
        if op == "between":
            lo, hi = sorted(draw(st.lists(st.sampled_from(thresholds), min_size=2, max_size=2, unique=True)))
            return _flow({"field": field, "op": op, "value": [lo, hi]})
        if op == "in":
            return _flow({"field": field, "op": op, "value": draw(st.lists(st.sampled_from(thresholds), max_size=3,
                                                                          unique=True))})
        return _flow({"field": field, "op": op, "value": draw(st.sampled_from(thresholds))})
    if kind == "bool":
        return _flow({"field": draw(st.sampled_from(BOOL_FIELDS)), "op": draw(st.sampled_from(["eq", "ne"])),
                      "value": draw(st.booleans())})
    if kind == "ref":
        if draw(st.booleans()):
            return _flow({"field": "ip_country", "op": draw(st.sampled_from(["eq", "ne"])), "ref": "merchant.country"})
        return _flow({"field": draw(st.sampled_from(["derived.amount_cny", "history.cash_today_cny"])),
                      "op": draw(st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"])),
                      "ref": "funding_source.available_credit_cny"})
    field = draw(st.sampled_from([*STRING_FIELDS, *NUMBER_FIELDS, *BOOL_FIELDS, "derived.amount_usd"]))
    return _flow({"field": field, "op": draw(st.sampled_from(["exists", "missing"]))})


conditions = st.recursive(
    leaves(),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: "{all: [" + ", ".join(xs) + "]}"),
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: "{any: [" + ", ".join(xs) + "]}"),
        inner.map(lambda x: "{not: " + x + "}"),
    ),
    max_leaves=8,
)


@st.composite
def packs(draw) -> str:
    rules = []
    for i, when in enumerate(draw(st.lists(conditions, min_size=1, max_size=8))):
        outcome = draw(st.sampled_from(["deny", "review", "step_up", "allow"]))
        effective = draw(st.sampled_from(["", "  effective: {from: 2025-07-01}\n", "  effective: {to: 2025-07-01}\n"]))
        rules.append(f"- id: G-{i}\n  category: risk\n  title: generated\n  when: {when}\n  outcome: {outcome}\n"
                     f"  reason: generated\n  source: test\n  verified: false\n{effective}")
    lists = "lists:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in LIST_VALUES.items())
    body = "".join("  " + r.replace("\n", "\n  ").rstrip(" ") for r in rules)
    return PACK_HEADER + lists + SCREENING + "rules:\n" + body


@st.composite
def requests(draw) -> dict:
    req: dict = {"request_id": "g", "payer": {"id": "p"}, "funding_source": {"type": "debit_card"},
                 "purpose": "merchant_purchase"}
    req["timestamp"] = draw(st.sampled_from(["2025-06-30T23:30:00+08:00", "2025-07-01T01:00:00+08:00",
                                             "2025-07-01T05:59:00-03:00"]))
    req["amount"] = {"value": draw(st.sampled_from(AMOUNTS)), "currency": draw(st.sampled_from(CURRENCIES))}
    if req["amount"]["currency"] == "JPY":
        req["amount"]["value"] = str(max(1, int(Decimal(req["amount"]["value"]))))  # JPY has no minor unit
    for field, pool in {**STRING_FIELDS, **NUMBER_FIELDS}.items():
        if draw(st.booleans()):
            head, _, tail = field.partition(".")
            value = draw(st.sampled_from(pool))
            if field in NUMBER_FIELDS and isinstance(value, str):
                value = Decimal(value)  # the library takes Decimals (JSON input is parsed to them)
            if tail:
                req.setdefault(head, {})[tail] = value
            else:
                req[head] = value
    for field in BOOL_FIELDS:
        if draw(st.booleans()):
            head, _, tail = field.partition(".")
            if tail:
                req.setdefault(head, {})[tail] = draw(st.booleans())
            else:
                req[head] = draw(st.booleans())
    for name, children in counterparties(req["purpose"]):
        for child in children:
            req.setdefault(name, {}).setdefault(child, COUNTERPARTY[f"{name}.{child}"])
    return req


def _sent_to(ruleset, request: dict) -> dict:
    """The request as a caller of this pack sends it: without the history counters the pack does not read."""
    keep = counters_read(ruleset)
    history = {k: v for k, v in request.get("history", {}).items() if k in keep}
    return {k: v for k, v in request.items() if k != "history"} | ({"history": history} if history else {})


def _engines(pack_text: str, tmp_path_factory) -> list[PolicyEngine]:
    path = tmp_path_factory.mktemp("gen") / "pack.yaml"
    path.write_text(pack_text, encoding="utf-8")
    (path.parent / "parties.csv").write_text(PARTIES_CSV, encoding="utf-8")
    ruleset = load_ruleset(path)
    names = ["python", "durable"] if DURABLE_OK else ["python"]
    return [PolicyEngine(ruleset, matcher=n) for n in names]


@given(pack=packs(), batch=st.lists(requests(), min_size=1, max_size=6))
def test_matchers_and_reference_agree(tmp_path_factory, pack, batch):
    engines = _engines(pack, tmp_path_factory)
    try:
        ruleset = engines[0].ruleset
        for request in (_sent_to(ruleset, r) for r in batch):
            prepared = engines[0].prepare(request)
            values = {r.id: evaluate(r.when, prepared.view, prepared.day) if r.in_force(prepared.day) else False
                      for r in ruleset.rules}
            expected = tuple(rid for rid, value in values.items() if value is True)
            unknown = tuple(rid for rid, value in values.items() if value is None)  # Kleene: undecided
            for engine in engines:
                decision = engine.evaluate(request)
                assert decision.rule_ids == expected, (engine.matcher, request)
                assert tuple(e.rule_id for e in decision.trail if e.status != "fired") == unknown, \
                    (engine.matcher, request)
    finally:
        for engine in engines:
            engine.close()


@needs_durable
@given(batch=st.lists(requests(), min_size=1, max_size=20))
def test_matchers_agree_on_the_default_pack(default_engines, batch):
    python, durable = default_engines
    for request in batch:
        a, b = python.evaluate(request), durable.evaluate(request)
        assert a.rule_ids == b.rule_ids and a.decision == b.decision
        assert [(e.rule_id, e.status, e.missing) for e in a.trail] == [(e.rule_id, e.status, e.missing)
                                                                       for e in b.trail]


@given(request=requests())
def test_evaluation_is_deterministic(default_engines, request):
    engine = default_engines[0]
    first, second = engine.evaluate(request).to_dict(), engine.evaluate(request).to_dict()
    first.pop("elapsed_us"), second.pop("elapsed_us")
    assert first == second


def _default_engines():
    names = ["python", "durable"] if DURABLE_OK else ["python", "python"]
    return [PolicyEngine.from_path(None, matcher=n) for n in names]


import pytest  # noqa: E402 -- fixture kept next to its only users


@pytest.fixture(scope="module")
def default_engines():
    engines = _default_engines()
    yield engines
    for e in engines:
        e.close()
