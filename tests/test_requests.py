"""Request validation: every violation with its JSON path, exact money, no decision on half a request; and the
compiled request validator agrees with jsonschema."""

from __future__ import annotations

import io
import json
import math
from decimal import Decimal

import jsonschema
import pytest
from conftest import DELETE, EXAMPLES, base_request, decision_json_lines
from hypothesis import example, given
from hypothesis import strategies as st

from policy_engine import Decision, PolicyEngine, RequestError
from policy_engine.cli import main
from policy_engine.fields import FieldCatalog
from policy_engine.jsonio import parse_json
from policy_engine.request import money_places
from policy_engine.resources import load_schema
from policy_engine.validator import compile_fast_path, compile_schema, decimal_in_bounds


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine.from_path(matcher="python")


def violations(engine: PolicyEngine, request) -> list[tuple[str, str]]:
    with pytest.raises(RequestError) as info:
        engine.evaluate(request)
    return [(v.path, v.message) for v in info.value.violations]


def paths(engine: PolicyEngine, request) -> list[str]:
    return [p for p, _ in violations(engine, request)]


REQUIRED = {
    "$.request_id": "request_id",
    "$.timestamp": "timestamp",
    "$.payer.id": "payer__id",
    "$.funding_source.type": "funding_source__type",
    "$.purpose": "purpose",
    "$.amount.value": "amount__value",
    "$.amount.currency": "amount__currency",
}


@pytest.mark.parametrize(("path", "key"), REQUIRED.items(), ids=list(REQUIRED))
def test_missing_required_field(engine, path, key):
    assert violations(engine, base_request(**{key: DELETE})) == [(path, "required field is missing")]


def test_every_violation_is_reported_together(engine):
    request = base_request(request_id=DELETE, payer__id=DELETE, payer__age="32", channel="web",
                           amount__currency="usd", timestamp="2025-06-10T14:30:00", derived={"amount_cny": 1})
    assert sorted(paths(engine, request)) == sorted([
        "$.request_id", "$.payer.id", "$.payer.age", "$.channel", "$.amount.currency", "$.timestamp", "$.derived"])


def test_error_carries_request_id_and_dict(engine):
    with pytest.raises(RequestError) as info:
        engine.evaluate(base_request(request_id="r-9", channel="web"))
    assert info.value.request_id == "r-9"
    assert info.value.to_dict() == {"error": "invalid_request", "request_id": "r-9", "violations": [
        {"path": "$.channel", "message": info.value.violations[0].message}]}


SINGLE_VIOLATIONS = [
    ({"payer__age": "32"}, "$.payer.age", "expected integer, got string"),
    ({"payer__age": 32.5}, "$.payer.age", "expected integer"),
    ({"payer__sanctions_hit": 1}, "$.payer.sanctions_hit", "expected boolean"),
    ({"channel": "web"}, "$.channel", "'web' is not one of"),
    ({"payer__kyc_level": "gold"}, "$.payer.kyc_level", "'gold' is not one of"),
    ({"amount__currency": "usd"}, "$.amount.currency", "does not match"),
    ({"merchant__mcc": "601"}, "$.merchant.mcc", "does not match"),
    ({"risk_score": 100}, "$.risk_score", "greater than 99"),
    ({"amount__value": -5}, "$.amount.value", "less than or equal to 0"),
    ({"amount__value": 0}, "$.amount.value", "less than or equal to 0"),
    ({"amount__value": "0.00"}, "$.amount.value", "positive"),
    ({"amount__value": "-5"}, "$.amount.value", "does not match"),
    ({"amount__value": "1e3"}, "$.amount.value", "does not match"),
    ({"amount__value": True}, "$.amount.value", "expected number or string, got boolean"),
    ({"amount__value": Decimal("100.5"), "amount__currency": "JPY"}, "$.amount.value", "JPY has (0)"),
    ({"amount__value": "100.5", "amount__currency": "JPY"}, "$.amount.value", "JPY has (0)"),
    ({"amount__value": 1.005, "amount__currency": "CNY"}, "$.amount.value", "CNY has (2)"),
    ({"amount__value": "1.005", "amount__currency": "CNY"}, "$.amount.value", "CNY has (2)"),
    ({"amount__value": Decimal("1E-400")}, "$.amount.value", "beyond exact arithmetic"),
    ({"amount__value": Decimal("1E-10000000")}, "$.amount.value", "beyond exact arithmetic"),
    ({"amount__value": Decimal("1.000000000000000000001")}, "$.amount.value", "beyond exact arithmetic"),
    ({"amount__value": Decimal("1E-20")}, "$.amount.value", "CNY has (2)"),
    ({"amount__value": float("nan")}, "$.amount.value", "non-finite"),
    ({"amount__value": float("inf")}, "$.amount.value", "non-finite"),
    ({"amount__value": Decimal("NaN")}, "$.amount.value", "non-finite"),
    ({"amount__value": Decimal("Infinity")}, "$.amount.value", "non-finite"),
    ({"amount__value": Decimal("1e400")}, "$.amount.value", "beyond exact arithmetic"),
    ({"amount__value": Decimal("1e19")}, "$.amount.value", "beyond the supported"),
    ({"risk_score": Decimal("1E+10000000")}, "$.risk_score", "beyond exact arithmetic"),
    ({"risk_score": 1e300}, "$.risk_score", "beyond exact arithmetic"),
    ({"funding_source__available_credit_cny": Decimal("1E-10000000")}, "$.funding_source.available_credit_cny",
     "beyond exact arithmetic"),
    ({"amount__value": 10**15}, "$.amount.value", "beyond the supported"),
    ({"timestamp": "2025-06-10T14:30:00"}, "$.timestamp", "no UTC offset"),
    ({"timestamp": "2025-06-10"}, "$.timestamp", "no UTC offset"),
    ({"timestamp": "10/06/2025 14:30"}, "$.timestamp", "not an ISO 8601 date-time"),
    ({"timestamp": 1749537000}, "$.timestamp", "expected string"),
    ({"derived": {"amount_cny": 1}}, "$.derived", "computed by the engine"),
    ({"history__p2p_amount_24h_cny": 1.005}, "$.history.p2p_amount_24h_cny", "more than 2 decimal places"),
    ({"history__cash_today_usd": Decimal("10.001")}, "$.history.cash_today_usd", "more than 2 decimal places"),
    # Aggregates are counts and sums: a negative one would let a payment slip under a cumulative limit.
    ({"history__payer_txn_count_1h": -1}, "$.history.payer_txn_count_1h", "less than 0"),
    ({"history__p2p_amount_24h_cny": -50000}, "$.history.p2p_amount_24h_cny", "less than 0"),
    ({"history__some_new_counter_cny": -1}, "$.history.some_new_counter_cny", "unknown field"),
    ({"history__p2p_amount_24h": 5}, "$.history.p2p_amount_24h", "did you mean 'p2p_amount_24h_cny'?"),
    ({"payer__sanctionsHit": True}, "$.payer.sanctionsHit", "did you mean 'sanctions_hit'?"),
    ({"riskScore": 90}, "$.riskScore", "did you mean 'risk_score'?"),
    ({"payer__kycLevel": "none"}, "$.payer.kycLevel", "did you mean 'kyc_level'?"),
    ({"merchant__region": "ua-43"}, "$.merchant.region", "does not match"),
    ({"merchant__region": "UA-43 "}, "$.merchant.region", "does not match"),
    ({"merchant__region": "UA\u201043"}, "$.merchant.region", "does not match"),
    ({"merchant__region": "UA-43\u200b"}, "$.merchant.region", "does not match"),
    ({"merchant__region": "U\u0410-43"}, "$.merchant.region", "does not match"),
    ({"payee__region": "UA43"}, "$.payee.region", "does not match"),
    ({"merchant__mcc": "541"}, "$.merchant.mcc", "does not match"),
    ({"merchant__mcc": "５４１１"}, "$.merchant.mcc", "does not match"),
    ({"amount__currency": "CNY "}, "$.amount.currency", "does not match"),
    ({"ip_country": "Cn"}, "$.ip_country", "does not match"),
    ({"merchant": DELETE}, "$.merchant", "a payment to a merchant"),
    ({"merchant__mcc": DELETE}, "$.merchant.mcc", "needs a merchant with mcc and country"),
    ({"purpose": "p2p_transfer", "merchant": DELETE, "payee__country": "CN"}, "$.payee.sanctions_hit",
     "a P2P transfer needs a payee"),
    ({"extra": {"k" * 65: 1}}, "$.extra['" + "k" * 64 + "'…]", "longer than 64"),
    ({"extra": {"a": {"b": {"c": 1}}}}, "$.extra.a.b", "expected string or number or boolean or null"),
    ({"extra": {"a": "x" * 257}}, "$.extra.a", "longer than 256"),
    ({"extra": {str(i): i for i in range(17)}}, "$.extra", "at most 16"),
    ({"timestamp": "1900-06-10T14:30:00+08:00"}, "$.timestamp", "outside the supported window"),
    ({"history__p2p_amount_24h_cny": "100"}, "$.history.p2p_amount_24h_cny", "expected number"),
]


@pytest.mark.parametrize(("overrides", "path", "fragment"), SINGLE_VIOLATIONS,
                         ids=[",".join(f"{k}={v!r}" for k, v in o.items()) for o, _, _ in SINGLE_VIOLATIONS])
def test_single_violation(engine, overrides, path, fragment):
    found = violations(engine, base_request(**overrides))
    assert [p for p, _ in found] == [path], found
    assert fragment in found[0][1]


def test_null_counts_as_absent(engine):
    assert violations(engine, base_request(payer__id=None, amount__currency=None)) == [
        ("$.payer.id", "required field is missing"), ("$.amount.currency", "required field is missing")]
    engine.evaluate(base_request(channel=None, payer__age=None, history__p2p_amount_24h_cny=None))


@pytest.mark.parametrize("request_", [[base_request()], None, "request", 42, Decimal(1)],
                         ids=["list", "null", "string", "int", "decimal"])
def test_a_request_is_an_object(engine, request_):
    (found,) = violations(engine, request_)
    assert found[0] == "$" and "JSON object" in found[1]


@pytest.mark.parametrize(("value", "currency"), [
    ("2000.00", "CNY"), ("2000", "CNY"), (2000, "CNY"), (Decimal("2000.00"), "CNY"), (2000.0, "CNY"),
    ("100.000", "JPY"), ("1.234", "KWD"),
])
def test_amounts_in_any_exact_form_are_accepted(engine, value, currency):
    prepared = engine.prepare(base_request(amount__value=value, amount__currency=currency))
    assert prepared.view["amount.value"] == Decimal(str(value))


def test_string_amounts_compare_exactly(make_pack):
    pack = make_pack("""\
        - id: SUM-1
          category: risk
          title: Cumulative limit
          when: {field: {add: [history.p2p_amount_24h_cny, amount.value]}, op: gt, value: 0.3}
          outcome: review
          reason: "{amount.value} on top of {history.p2p_amount_24h_cny}"
          source: test
          verified: false
        - id: EDGE-1
          category: risk
          title: Threshold
          when: {field: amount.value, op: gte, value: 2000.01}
          outcome: review
          reason: "{amount.value} CNY"
          source: test
          verified: false
        """)
    engine = PolicyEngine.from_path(pack, matcher="python")

    def fired(**overrides) -> list[str]:
        return [e.rule_id for e in engine.evaluate(base_request(**overrides)).trail]

    assert fired(amount__value="0.20", history__p2p_amount_24h_cny=0.1) == []  # 0.1 + 0.2 == 0.3 exactly
    assert fired(amount__value="0.21", history__p2p_amount_24h_cny=0.1) == ["SUM-1"]
    assert fired(amount__value="2000.00", history__p2p_amount_24h_cny=0) == ["SUM-1"]
    assert fired(amount__value="2000.01", history__p2p_amount_24h_cny=0) == ["SUM-1", "EDGE-1"]
    decision = engine.evaluate(base_request(amount__value="2000.01"))
    assert decision.trail[1].reason == "2,000.01 CNY"


def test_invalid_requests_never_produce_a_decision(engine):
    results = list(engine.evaluate_many([
        base_request(request_id="ok-1"),
        base_request(request_id="bad-1", amount__value=float("nan")),
        {"request_id": "bad-2"},
        "not a request",
        base_request(request_id="ok-2"),
    ]))
    assert [type(r) for r in results] == [Decision, RequestError, RequestError, RequestError, Decision]
    assert [r.request_id for r in results] == ["ok-1", "bad-1", "bad-2", None, "ok-2"]


def test_cli_invalid_request_is_not_decided(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(base_request(request_id="bad-1", channel="web")), encoding="utf-8")
    out = io.StringIO()
    assert main(["evaluate", "--json", str(path)], out=out, err=io.StringIO()) == 2
    (record,) = decision_json_lines(out.getvalue())
    assert "decision" not in record
    assert record["error"] == "invalid_request" and record["request_id"] == "bad-1" and record["line"] == 1
    assert record["violations"][0]["path"] == "$.channel"


def test_cli_non_finite_and_huge_numbers(tmp_path):
    good = json.dumps(base_request(request_id="ok"))
    nan = good.replace('"value": 100', '"value": NaN').replace('"ok"', '"nan"')
    infinity = good.replace('"value": 100', '"value": Infinity').replace('"ok"', '"inf"')
    huge = good.replace('"value": 100', '"value": 1e400').replace('"ok"', '"huge"')
    path = tmp_path / "stream.jsonl"
    path.write_text("\n".join([good, nan, infinity, huge, good]) + "\n", encoding="utf-8")
    out = io.StringIO()
    assert main(["evaluate", "--json", str(path)], out=out, err=io.StringIO()) == 2
    records = decision_json_lines(out.getvalue())
    assert [r.get("decision") for r in records] == ["allow", None, None, None, "allow"]
    assert [(r["error"], r["line"]) for r in records[1:4]] == [
        ("invalid_json", 2), ("invalid_json", 3), ("invalid_request", 4)]
    assert "NaN" in records[1]["message"] and "Infinity" in records[2]["message"]
    assert records[3]["violations"][0]["path"] == "$.amount.value"


def test_examples_are_valid_requests(engine):
    for path in sorted(EXAMPLES.glob("*.json")):
        engine.prepare(json.loads(path.read_text(encoding="utf-8")))


# ---------------------------------------------------------------------------------------------------------------
# The compiled validator against jsonschema, on generated request-like documents.

REQUEST_SCHEMA = load_schema("payment_request")
COMPILED = compile_schema(REQUEST_SCHEMA)


def _ecma_anchors(schema):
    """JSON Schema patterns are ECMA-262 regexes, where `$` matches only at the very end; Python's `$` also
    matches before a final newline, so jsonschema would accept "CN\n" as a country code. The reference gets
    `\\Z` instead, which is what ECMA's `$` means."""
    if isinstance(schema, dict):
        return {k: (v[:-1] + "\\Z" if k == "pattern" and v.endswith("$") else _ecma_anchors(v))
                for k, v in schema.items()}
    if isinstance(schema, list):
        return [_ecma_anchors(v) for v in schema]
    return schema


REFERENCE = jsonschema.Draft202012Validator(_ecma_anchors(REQUEST_SCHEMA))


def _schema_paths(schema: dict, prefix: tuple = ()) -> list[tuple[str, ...]]:
    out = []
    for name, sub in schema.get("properties", {}).items():
        out.append((*prefix, name))
        out.extend(_schema_paths(sub, (*prefix, name)))
    return out


#: Every property of the contract, plus a few it does not define (unknown keys, refused at every level).
PATHS = [*_schema_paths(REQUEST_SCHEMA), ("history", "new_counter_cny"), ("payer", "nickname"), ("note",)]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -1, 1.0, 0.5, -0.5, 99, 100, 1e20, 10**15]),
    st.text(max_size=6),
    st.sampled_from(["", "CN", "cn", "CNY", "usd", "CN\n", "5411", "541", "100", "1.005", "-1", "0", "0.00",
                     "1e3", "web", "pos", "gold", "basic", "II", "business", "2025-06-10T14:30:00Z"]),
)
anything = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                        max_leaves=6)
country = st.sampled_from(["CN", "US", "DE", "IR"])
count = st.integers(0, 10**6) | st.just(3.0)
money = st.integers(0, 10**9) | st.floats(0, 1e9) | st.decimals(0, 10**6, places=2).map(float)

#: A request that is valid except where the generated values step outside the contract (they rarely do).
VALID_ISH = st.fixed_dictionaries({
    "request_id": st.text(min_size=1, max_size=6),
    "timestamp": st.sampled_from(["2025-06-10T14:30:00+08:00", "2025-06-10T14:30:00", "nonsense"]),
    "payer": st.fixed_dictionaries({"id": st.text(max_size=4)}, optional={
        "type": st.sampled_from(["individual", "business"]),
        "kyc_level": st.sampled_from(["none", "basic", "standard", "enhanced"]),
        "account_tier": st.sampled_from(["I", "II", "III"]), "age": count, "residence_country": country,
        "account_age_days": count, "sanctions_hit": st.booleans(), "pep": st.booleans()}),
    "funding_source": st.fixed_dictionaries({"type": st.sampled_from(["bnpl", "debit_card", "crypto"])}, optional={
        "product": st.text(max_size=4), "issuer_country": country, "available_credit_cny": money,
        "overdue_days": count}),
    "purpose": st.sampled_from(["merchant_purchase", "credit_card_repayment", "other"]),
    "amount": st.fixed_dictionaries({
        "value": st.integers(1, 10**14) | st.floats(0.01, 1e9) | st.from_regex(r"[0-9]{1,6}(\.[0-9]{1,3})?",
                                                                              fullmatch=True),
        "currency": st.sampled_from(["CNY", "JPY", "EUR"])}),
}, optional={
    "psp_country": country,
    "merchant": st.fixed_dictionaries({}, optional={"mcc": st.sampled_from(["5411", "7995"]), "country": country,
                                                    "in_issuer_network": st.booleans(),
                                                    "region": st.sampled_from(["UA-43", "CN-BJ", "ua-43", "UA-43 "])}),
    "payee": st.fixed_dictionaries({}, optional={"country": country, "first_time": st.booleans(),
                                                 "sanctions_hit": st.booleans()}),
    "extra": st.dictionaries(st.text(max_size=3), anything, max_size=3),
    "cross_border": st.booleans(),
    "channel": st.sampled_from(["online", "in_app", "pos", "qr_static", "qr_dynamic", "atm", "counter"]),
    "auth": st.fixed_dictionaries({}, optional={"factors": count, "sca_performed": st.booleans()}),
    "device": st.fixed_dictionaries({}, optional={"is_new": st.booleans(), "distinct_payers_24h": count}),
    "ip_country": country,
    "risk_score": st.integers(0, 99),
    "history": st.fixed_dictionaries({}, optional={"payer_txn_count_1h": count, "p2p_amount_24h_cny": money,
                                                   "cash_today_usd": money, "new_counter_cny": money}),
})


@st.composite
def requests(draw) -> dict:
    """A valid-ish request with up to three mutations: a field deleted, or replaced by any JSON value."""
    request = draw(VALID_ISH)
    for path in draw(st.lists(st.sampled_from(PATHS), max_size=3)):
        node = request
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        if draw(st.booleans()):
            node.pop(path[-1], None)
        else:
            node[path[-1]] = draw(anything)
    return request


def without_nulls(value):
    """The request contract reads a property whose value is null as absent; JSON Schema does not."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


@given(st.one_of(requests(), anything))
@example(base_request())
@example(base_request(amount__value="0"))
@example(base_request(amount__value="0.000"))
@example(base_request(amount__value=1.0, payer__age=30.0))
@example(base_request(payer__sanctions_hit=0))
@example(base_request(psp_country="CN\n"))  # refused: `$` is ECMA's end of string, not Python's
@example(base_request(history__anything=-1))
@example(base_request(psp_country=None, payer__id=None))
@example(base_request(funding_source__available_credit_cny=5e-324))
@example(base_request(risk_score=Decimal("1E+30")))
@example(base_request(extra={"a": {"b": [Decimal("1E-30")]}}))
@example(base_request(extra={"a": {"b": {"c": 1}}}))
@example(base_request(merchant=None))
@example(base_request(purpose="p2p_transfer", merchant=None, payee={"country": "CN"}))
@example(base_request(purpose="p2p_transfer", payee={"country": "CN", "sanctions_hit": None}))
@example(base_request(purpose=7, merchant={"mcc": "5411"}))
@example([])
def test_compiled_validator_agrees_with_jsonschema(instance):
    errors = COMPILED(instance)
    reference_errors = [e.message for e in REFERENCE.iter_errors(without_nulls(instance))]
    # the engine's rule on top of JSON Schema: every number fits exact arithmetic
    reference_errors += ["number beyond exact arithmetic"] * any(map(_beyond_exact, _numbers(instance)))
    assert bool(errors) == bool(reference_errors), (errors, reference_errors)


def _numbers(value):
    if isinstance(value, dict | list):
        for v in (value.values() if isinstance(value, dict) else value):
            yield from _numbers(v)
    elif isinstance(value, float | Decimal):
        yield value


def _beyond_exact(number) -> bool:
    return not (math.isfinite(number) and decimal_in_bounds(Decimal(repr(number)) if type(number) is float else number))


# ---------------------------------------------------------------------------------------------------------------
# The fast path (accept-only) against the full validator: it may hand a request to the full validator when
# unsure, but whatever it accepts must be valid, with the same view, value for value and type for type.

CATALOG = FieldCatalog(REQUEST_SCHEMA)
COLLECT = {p: CATALOG.get(p).kind == "num" for p in CATALOG.paths() if not p.startswith("derived.")}
MONEY = money_places(REQUEST_SCHEMA)
FULL = compile_schema(REQUEST_SCHEMA, COLLECT, MONEY)
FAST = compile_fast_path(REQUEST_SCHEMA, COLLECT, MONEY)


def _typed(view: dict) -> list:
    return sorted((k, type(v).__name__, v) for k, v in view.items())


@given(st.one_of(requests(), anything))
@example(base_request())
@example(base_request(amount__value=12.5, history__cash_today_cny=100.25, payer__age=30))
@example(base_request(history__cash_today_cny=Decimal("100.255")))  # a third decimal on CNY money
@example(base_request(history__cash_today_cny=Decimal("100.250")))  # a trailing zero is not a decimal
@example(base_request(history__cash_today_cny=100.255))
@example(base_request(payer__age=30.0))  # an integral float as an integer: the full path decides
@example(base_request(payer__age=True))
@example(base_request(psp_country="CN\n"))
@example(base_request(psp_country="\ud800"))
@example(base_request(history__new_counter_cny=-1))
@example(base_request(amount__value="0"))
@example(base_request(amount__value=Decimal("NaN")))
@example(base_request(payer__type=["individual"]))  # unhashable where an enum is expected
def test_fast_path_accepts_only_valid_requests_with_the_same_view(instance):
    view = FAST(instance)
    errors, full_view = FULL(instance)
    if view is not None:
        assert errors == []
        assert _typed(view) == _typed(full_view)


@pytest.mark.parametrize("request_", [
    base_request(),
    base_request(amount__value=12.5, history__cash_today_cny=100.25),  # floats from Python callers
    base_request(amount__value="88.80", history__cash_today_cny=Decimal("100.2")),
    *(parse_json(p.read_text(encoding="utf-8")) for p in sorted(EXAMPLES.glob("*.json"))),
], ids=lambda r: str(r.get("request_id")))
def test_fast_path_takes_ordinary_requests(request_):
    """The fast path is not dead code: ordinary requests, in every number form a caller sends, take it."""
    assert FAST(request_) is not None


def test_fast_path_takes_generated_traffic():
    from policy_engine.synthetic import dumps_request, iter_payments

    payments = [parse_json(dumps_request(p)) for p in iter_payments(n=300, seed=3)]
    for p in payments:
        p.pop("label")  # the backtest's, not the request's
    assert all(FAST(p) is not None for p in payments)


@pytest.mark.parametrize(("schema", "good", "bad"), [
    ({"type": "object", "properties": {"a": {"type": "null"}}}, {"a": None}, {"a": 1}),
    ({"type": "object", "properties": {"a": {"enum": ["x", "y"]}}}, {"a": "x"}, {"a": ["x"]}),
    ({"type": "object", "properties": {"a": {"type": "array", "maxItems": 2, "items": {"type": "string"}}}},
     {"a": ["p", "q"]}, {"a": ["p", 1]}),
    ({"type": "object", "additionalProperties": False, "properties": {"a": {"type": "boolean"}}},
     {"a": True}, {"a": True, "b": 1}),
    ({"type": "object", "properties": {"a": {"type": "number", "exclusiveMaximum": 0.5}}}, {"a": 0.25},
     {"a": Decimal("0.5")}),
])
def test_fast_path_on_other_schema_shapes(schema, good, bad):
    """Keywords the request contract does not use today, so a schema change cannot make the fast path unsound."""
    fast, full = compile_fast_path(schema, {}), compile_schema(schema)
    assert fast is not None
    assert not full(good) and fast(good) is not None
    assert full(bad) and fast(bad) is None


@pytest.mark.parametrize("sub", [{"minimum": 1}, {"enum": [1, "x"]}])  # no `type`, and not an enum of strings
def test_fast_path_declines_schemas_it_does_not_model(sub):
    """Everything then goes to the full validator."""
    assert compile_fast_path({"type": "object", "properties": {"a": sub}}, {}) is None
