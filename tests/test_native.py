"""The native pass (issue 15): request text decoded into generated msgspec Structs and validated at once. What it
accepts, today's path (``parse_json`` and the validators) accepts with the same prepared request, value for value
and type for type; whatever else it declines, and today's path answers."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from conftest import load_cases
from hypothesis import given
from hypothesis import strategies as st

from policy_engine import PolicyEngine, RequestError, jsonio
from policy_engine.native import compile_native
from policy_engine.request import PreparedRequest, RequestPreparer, money_places, pack_schema
from policy_engine.resources import load_schema
from policy_engine.synthetic import dumps_request, iter_payments
from policy_engine.testing.strategies import invalid_requests, request_fields, requests, set_path
from policy_engine.traffic import CallContext
from policy_engine.validator import compile_schema

pytest.importorskip("msgspec")


@pytest.fixture(scope="module")
def engine() -> Iterator[PolicyEngine]:
    eng = PolicyEngine.from_path()
    assert eng.pack.preparer._native is not None, "msgspec is installed: the native pass must be built"
    yield eng
    eng.close()


def _synthetic(n: int, seed: int) -> list[str]:
    out = []
    for payment in iter_payments(n=n, seed=seed):
        payment.pop("label", None)
        out.append(dumps_request(payment))
    return out


def _today(preparer: RequestPreparer, text: str | bytes) -> PreparedRequest | str:
    """Today's path: the prepared request, or what it refused."""
    try:
        return preparer.prepare(jsonio.parse_json(text), True)
    except RequestError as exc:
        return f"refused: {[v.path for v in exc.violations]}"
    except ValueError:
        return "not JSON"


def _assert_same(native: PreparedRequest, today: PreparedRequest | str) -> None:
    assert isinstance(today, PreparedRequest), f"the native pass accepted what today's path answers {today}"
    assert native == today
    assert list(native.view) == list(today.view)  # same keys in the same order
    assert {k: type(v) for k, v in native.view.items()} == {k: type(v) for k, v in today.view.items()}


def test_synthetic_traffic_takes_the_native_pass_with_the_same_views(engine):
    preparer = engine.pack.preparer
    for text in _synthetic(300, seed=5):
        native = preparer.prepare_text(text, True)
        assert native is not None, text  # full synthetic requests are the case the pass is for
        _assert_same(native, _today(preparer, text))
        _assert_same(preparer.prepare_text(text.encode("utf-8"), True), _today(preparer, text))


def test_texts_in_any_layout_take_the_pass_and_only_the_layout_differs(engine):
    """msgspec's own layout (compact, the contract's field order) and any other are proved alike, by counting
    their `"`: both are accepted alike, and a repeated key or a null is declined in either."""
    preparer = engine.pack.preparer
    for text in _synthetic(20, seed=9):
        data = text.encode("utf-8")
        spaced = text.replace(",", ", ").replace('":', '": ').encode("utf-8")
        reordered = json.dumps(dict(reversed(json.loads(text).items())), separators=(",", ":")).encode("utf-8")
        want = _today(preparer, data)
        for layout in (data, spaced, reordered):
            _assert_same(preparer.prepare_text(layout, True), want)
        for bad in (data.replace(b"{", b'{"request_id":"dup",', 1), data.replace(b"{", b'{"unknown":null,', 1)):
            assert preparer.prepare_text(bad, True) is None


@given(request=requests())
def test_generated_valid_requests_prepare_alike(engine, request):
    preparer = engine.pack.preparer
    text = dumps_request(request)
    native = preparer.prepare_text(text, True)
    if native is not None:
        _assert_same(native, _today(preparer, text))


@given(request=invalid_requests())
def test_generated_invalid_requests_are_declined(engine, request):
    text = dumps_request(request)
    assert engine.pack.preparer.prepare_text(text, True) is None
    # and evaluate_json answers with today's violations, every one with its JSON path
    with pytest.raises(RequestError) as got:
        engine.evaluate_json(text)
    try:
        parsed = jsonio.parse_json(text)
    except ValueError:
        return
    with pytest.raises(RequestError) as expected:
        engine.evaluate(parsed)
    assert got.value.violations == expected.value.violations


#: Values a field may be set to: right and wrong types, nulls, numbers as strings, out-of-bounds and odd numbers,
#: strings at and beyond their bounds, text a pattern's `$` would let through in Python.
_ODD = st.sampled_from([None, "12.50", "12", 12, -1, 0, 10**15, 10**15 + 1, 10**20, 2**70, Decimal("1.0"),
                        Decimal("12.505"), Decimal("0.00"), Decimal("1E+2"), Decimal("1e-30"), Decimal("-0.00"),
                        True, False, "", "CN", "cn", "CNY", "5411", "CN\n", "x" * 256, "x" * 257, "é" * 256,
                        "😀" * 256, "😀" * 257, "\ud800", "NaN", "-Infinity", "individual", "online", {}, [],
                        {"id": "x"}, ":", '"'])

_TEXT_EDITS = (
    lambda t: t,
    lambda t: t.replace("{", '{"request_id":"dup",', 1),  # a repeated key at the top
    lambda t: t.replace('"payer":{', '"payer":{"id":"again",', 1),  # a repeated key inside
    lambda t: t.replace('"CN"', '"\\u0043N"', 1),  # an escape
    lambda t: t.replace("{", '{"unknown":null,', 1),  # an unknown key the validator ignores (its value is null)
    lambda t: t.replace("{", '{"extra":{"k":1},', 1),  # a node the Structs do not model
    lambda t: t.replace(",", ", ", 3),  # whitespace
)


@given(request=requests(), edits=st.lists(st.tuples(st.sampled_from(request_fields()), _ODD), max_size=3),
       text_edit=st.sampled_from(_TEXT_EDITS), as_bytes=st.booleans())
def test_what_the_native_pass_accepts_today_accepts_alike(engine, request, edits, text_edit, as_bytes):
    request = copy.deepcopy(request)
    for path, value in edits:
        set_path(request, path, value)
    text = text_edit(dumps_request(request))
    data = text.encode("utf-8", "surrogatepass") if as_bytes else text
    preparer = engine.pack.preparer
    native = preparer.prepare_text(data, True)
    if native is not None:
        _assert_same(native, _today(preparer, data))


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "sNaN", "1e400", "-1"])
def test_amounts_as_text_that_are_no_amount_are_refused_with_their_path(engine, value):
    from conftest import base_request

    text = dumps_request(base_request(amount={"value": value, "currency": "CNY"}))
    assert engine.pack.preparer.prepare_text(text, True) is None
    with pytest.raises(RequestError) as exc:
        engine.evaluate_json(text)
    assert [v.path for v in exc.value.violations] == ["$.amount.value"]


#: Number texts for a money field (0 to 10^15, two places), valid and not: exponents, negative zero, places beyond
#: two, beyond exact arithmetic (an equal value written with 21 places), out of bounds, and no number at all.
_MONEY_TEXTS = ["0.00", "0.000000000000000000000", "0.00", "0.000", "-0.0", "-0.00", "0", "-0", "1E2", "1e2", "1E+2",
                "1e-2", "1.5e-1", "1e-3", "12.505", "12.50", "1000000000000000", "1000000000000000.00",
                "1000000000000000.01", "1E15", "1E16", "1e400", "1e-400", "-1", "-0.01",
                "true", '"0.00"', '"NaN"', '"-Infinity"', "null", "[]", "{}"]
#: The texts among them the native pass takes (the others are invalid, or valid but left to today's path).
_MONEY_TAKEN = {"0.00", "0.000", "-0.0", "-0.00", "0", "-0", "1E2", "1e2", "1E+2", "1e-2", "1.5e-1", "12.50",
                "1000000000000000", "1000000000000000.00", "1E15"}


@pytest.mark.parametrize("field", ["available_credit_cny", "cash_today_cny"])
def test_money_fields_take_the_pass_exactly_as_the_validator_reads_them(engine, field):
    """Each text twice, in this order: a number read before (the pass remembers the Decimals that passed a field's
    checks) and an equal number written otherwise (0.000... for 0.00) are each checked on their own."""
    from conftest import base_request

    preparer = engine.pack.preparer
    request = base_request(funding_source={"type": "credit_card", "available_credit_cny": 1},
                           history={"cash_today_cny": 1})
    parent = "funding_source" if field == "available_credit_cny" else "history"
    request[parent][field] = 987654321
    for number in _MONEY_TEXTS * 2:
        text = dumps_request(request).replace("987654321", number)
        native, today = preparer.prepare_text(text, True), _today(preparer, text)
        assert (native is not None) == (number in _MONEY_TAKEN), (number, today)
        if native is not None:
            _assert_same(native, today)
        elif not isinstance(today, PreparedRequest) and today != "not JSON":
            with pytest.raises(RequestError) as got:  # refused with its path, never an internal error
                engine.evaluate_json(text)
            assert [v.path for v in got.value.violations] == [f"$.{parent}.{field}"]


@pytest.mark.parametrize("value", ["null", "true", "[]", "{}", '"NaN"', "-1", "0"])
def test_a_required_number_field_that_is_no_number_is_declined_by_the_pass_itself(engine, value):
    """The amount is required and read as any JSON value: a null in it must be declined by the native pass, not
    found in the memo of checked numbers (whose get returns None for a miss) and left for the preparer to catch."""
    from conftest import base_request

    text = dumps_request(base_request(amount={"value": 987654321, "currency": "CNY"})).replace("987654321", value)
    assert engine.pack.preparer._native(text) is None
    assert engine.pack.preparer._native(text.encode()) is None
    with pytest.raises(RequestError) as got:
        engine.evaluate_json(text)
    assert [v.path for v in got.value.violations] == ["$.amount.value"]


@pytest.mark.parametrize("edit", [
    lambda r: r["amount"].update(value="100.00"),  # an amount as text is valid, but msgspec reads it as a number
    lambda r: r["payer"].update(age=None),  # null is absent to the validator; the Struct would drop it unseen
    lambda r: r.update(extra={"note": "x"}),  # not modelled: today's path checks it
    lambda r: r["payer"].update(age=Decimal("32.0")),  # an integer written with a fraction: valid JSON Schema
])
def test_valid_requests_the_native_pass_declines_are_prepared_as_before(engine, edit):
    from conftest import base_request

    request = base_request()
    edit(request)
    text = dumps_request(request)
    preparer = engine.pack.preparer
    assert preparer.prepare_text(text, True) is None
    assert isinstance(_today(preparer, text), PreparedRequest)
    json.loads(engine.evaluate_json(text))  # decided, on today's path


def test_structs_follow_the_schema_not_a_list_of_fields():
    """A field added to the contract (as name screening adds `payer.name`) is checked and collected with no
    change here; a constraint msgspec cannot model leaves its node to today's path."""
    schema = pack_schema(load_schema("payment_request"), ())
    schema["properties"]["payer"]["properties"]["name"] = {"type": "string", "minLength": 1, "maxLength": 8}
    schema["properties"]["payer"]["properties"]["score"] = {"type": "number", "minimum": 0, "maximum": 1}
    native = compile_native(schema, {"payer.name": False, "payer.score": True}, money_places(schema))
    assert native is not None
    base = {"request_id": "r", "timestamp": "2025-06-10T14:30:00+08:00", "payer": {"id": "u"},
            "funding_source": {"type": "debit_card"}, "purpose": "p2p_transfer",
            "payee": {"country": "CN", "sanctions_hit": False}, "amount": {"value": 1, "currency": "CNY"}}

    def decode(**payer: Any) -> dict[str, Any] | None:
        request = copy.deepcopy(base)
        request["payer"].update(payer)
        got = native(dumps_request(request))
        return None if got is None else got[1]

    assert decode(name="Li Wei", score=Decimal("0.5")) == {"payer.name": "Li Wei", "payer.score": Decimal("0.5")}
    assert decode(name="") is None and decode(name="x" * 9) is None
    assert decode(score=Decimal("1.5")) is None and decode(score=2) is None and decode(score="0.5") is None
    assert decode(score=1) == {"payer.score": 1}


@pytest.mark.parametrize("number", ["1.00000000000000000000", "1.000000000000000000000", "-0.00000000000000000001",
                                    "-0.000000000000000000001", "99999999999999999999.5", "100000000000000000000.5",
                                    "1e-20", "1e-21", "1.5E-19", "1.50E-19", "1E19", "1E20", "0.1e21", "-1E+19",
                                    "12.5", "0.0"])
def test_a_number_is_taken_only_within_exact_arithmetic_as_the_validator_takes_it(number):
    """The pass reads a number with a fraction or an exponent within exact arithmetic or not at all: on a number
    field with no bounds and no places, it takes exactly what the full validator accepts, as the same Decimal."""
    schema = pack_schema(load_schema("payment_request"), ())
    schema["properties"]["payer"]["properties"]["ratio"] = {"type": "number"}
    collect = {"payer.ratio": True}
    native = compile_native(schema, collect, money_places(schema))
    assert native is not None
    request = {"request_id": "r", "timestamp": "2025-06-10T14:30:00+08:00", "payer": {"id": "u", "ratio": 987654321},
               "funding_source": {"type": "debit_card"}, "purpose": "p2p_transfer",
               "payee": {"country": "CN", "sanctions_hit": False}, "amount": {"value": 1, "currency": "CNY"}}
    text = dumps_request(request).replace("987654321", number)
    violations, view = compile_schema(schema, collect, money_places(schema))(jsonio.parse_json(text))
    got = native(text)
    assert (got is not None) == (not violations), violations
    if got is not None:
        assert got[1] == view and got[1]["payer.ratio"].as_tuple() == view["payer.ratio"].as_tuple()


def test_pure_python_engine_has_no_native_pass_and_decides_alike(engine, monkeypatch):
    monkeypatch.setenv(jsonio.PURE_ENV, "1")
    pure = PolicyEngine.from_path()
    try:
        assert pure.pack.preparer.prepare_text(_synthetic(1, seed=3)[0]) is None
        texts = _synthetic(40, seed=3) + [dumps_request(case["request"]) for case in load_cases()]
        for text in texts:
            native, plain = json.loads(engine.evaluate_json(text)), json.loads(pure.evaluate_json(text))
            native.pop("elapsed_us")
            plain.pop("elapsed_us")
            assert native == plain
    finally:
        pure.close()


def test_listeners_hear_of_a_decision_made_on_the_native_path():
    engine = PolicyEngine.from_path()
    events: list[Any] = []
    engine.add_listener(events.append)
    text = _synthetic(1, seed=9)[0]
    try:
        assert engine.pack.preparer.prepare_text(text, True) is not None
        out = json.loads(engine.evaluate_json(text, context=CallContext(request_id="req-1")))
        assert [(e.request_id, e.decision.decision.value, e.context) for e in events] == \
            [(out["request_id"], out["decision"], CallContext(request_id="req-1"))]
    finally:
        engine.close()
