"""Strict requests (issue 13): what a request misspells, repeats, writes in a non-standard form or makes
unbounded is refused, and the time a caller writes fixes only the instant. Property tests over generated
requests, plus the bounds and messages they rely on."""

from __future__ import annotations

import datetime as dt
import io
import json
import time
from decimal import Decimal
from typing import Any

import pytest
from conftest import PACK_HEADER, base_request
from hypothesis import assume, given
from hypothesis import strategies as st

from policy_engine import PolicyEngine, RequestError, RuleSetError, load_ruleset
from policy_engine.audit import AuditLog
from policy_engine.cli import main
from policy_engine.jsonio import parse_json
from policy_engine.testing.strategies import near_thresholds, requests

PACK = load_ruleset(None)
ENGINE = PolicyEngine(PACK)
PAYMENTS = st.one_of(requests(), near_thresholds(PACK))


def _objects(value: Any, path: tuple = ()) -> list[tuple[tuple, dict]]:
    """Every object with a key in a request, with its path of keys (the request itself first)."""
    if not isinstance(value, dict) or not value:
        return []
    return [(path, value), *(o for k, v in value.items() for o in _objects(v, (*path, k)))]


def _at(request: dict, path: tuple) -> dict:
    for key in path:
        request = request[key]
    return request


def _json_path(path: tuple, key: str) -> str:
    return "$" + "".join(f".{k}" for k in (*path, key))


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p.title() for p in rest)


#: Slips a caller makes in a key: camelCase, a dropped or doubled letter, a capital, a space.
SLIPS = (_camel, lambda k: k[:-1], lambda k: k + k[-1], str.title, lambda k: k + " ", lambda k: k.replace("_", ""))


def _decision(request: dict) -> tuple:
    d = ENGINE.evaluate(request)
    return d.decision, d.rule_ids, d.obligations, d.as_of, d.fx_as_of


@given(request=PAYMENTS, data=st.data())
def test_a_misspelt_key_anywhere_is_never_decided(request, data):
    path, obj = data.draw(st.sampled_from(_objects(request)))
    key = data.draw(st.sampled_from(sorted(obj)))
    slip = data.draw(st.sampled_from(SLIPS))(key)
    assume(slip != key and slip not in obj)
    obj[slip] = obj.pop(key)
    with pytest.raises(RequestError) as info:
        ENGINE.evaluate(request)
    assert _json_path(path, slip) in {v.path for v in info.value.violations} or not slip.isidentifier()


def _dumps(value: Any, duplicate: tuple | None = None, at: tuple = ()) -> str:
    """JSON text of a request; ``duplicate=(path, key, other)`` writes ``key`` a second time, with the value
    ``other``, in the object at ``path``."""
    if isinstance(value, dict):
        pairs = [f"{json.dumps(k)}: {_dumps(v, duplicate, (*at, k))}" for k, v in value.items()]
        if duplicate is not None and duplicate[0] == at:
            pairs.append(f"{json.dumps(duplicate[1])}: {_dumps(duplicate[2])}")
        return "{" + ", ".join(pairs) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_dumps(v, duplicate, (*at, i)) for i, v in enumerate(value)) + "]"
    if isinstance(value, Decimal):
        return format(value, "f")
    return json.dumps(value, ensure_ascii=False)


@given(request=PAYMENTS, data=st.data())
def test_a_repeated_key_in_json_text_is_never_decided(request, data):
    path, obj = data.draw(st.sampled_from(_objects(request)))
    key = data.draw(st.sampled_from(sorted(obj)))
    other = data.draw(st.sampled_from([obj[key], "merchant_purchase", 0, True, None]))
    assert parse_json(_dumps(request)) is not None  # the text without the repeat is fine
    with pytest.raises(RequestError) as info:
        parse_json(_dumps(request, (path, key, other)))
    assert [v.path for v in info.value.violations] == [_json_path(path, key)]


OFFSETS = [dt.timedelta(hours=h, minutes=m) for h, m in
           ((0, 0), (8, 0), (-5, 0), (5, 45), (-3, -30), (14, 0), (-12, 0), (9, 30), (1, 0))]


@given(request=PAYMENTS, offset=st.sampled_from(OFFSETS))
def test_the_same_instant_in_another_offset_gets_the_same_decision(request, offset):
    instant = dt.datetime.fromisoformat(request["timestamp"])
    rewritten = {**request, "timestamp": instant.astimezone(dt.timezone(offset)).isoformat()}
    assert _decision(rewritten) == _decision(request)


@pytest.mark.parametrize("stamp", ["2025-06-10T02:30:00+08:00", "2025-06-09T18:30:00Z",
                                   "2025-06-09T14:30:00-04:00", "2025-06-10T00:15:00+05:45"])
def test_night_time_p2p_is_one_instant_however_written(stamp):
    """The issue's case: CNY 20,000 P2P at 02:30 in Beijing gets review (RSK-010), in every spelling."""
    request = base_request(timestamp=stamp, purpose="p2p_transfer", amount__value=20000,
                           payee={"country": "CN", "sanctions_hit": False})
    decision = ENGINE.evaluate(request)
    assert decision.decision.value == "review" and "RSK-010" in decision.rule_ids


def test_a_repeated_purpose_cannot_turn_a_refusal_into_an_allow():
    text = ('{"request_id": "dup", "timestamp": "2025-06-10T14:30:00+08:00", "payer": {"id": "u"}, '
            '"funding_source": {"type": "bnpl"}, "purpose": "credit_card_repayment", '
            '"amount": {"value": 100, "currency": "CNY"}, "purpose": "merchant_purchase", '
            '"merchant": {"mcc": "5411", "country": "CN"}}')
    with pytest.raises(RequestError) as info:
        parse_json(text)
    assert info.value.request_id == "dup" and [v.path for v in info.value.violations] == ["$.purpose"]


def test_a_repeated_key_is_an_error_record_and_the_stream_goes_on(tmp_path):
    good = json.dumps(base_request(request_id="ok"))
    repeated = good.replace('"purpose": "merchant_purchase"', '"purpose": "lottery", "purpose": "merchant_purchase"')
    nested = good.replace('"payer": {"id": "u-1",', '"payer": {"id": "u-1", "id": "u-2",')
    assert nested != good
    path = tmp_path / "stream.jsonl"
    path.write_text("\n".join([good, repeated, nested, good]) + "\n", encoding="utf-8")
    out = io.StringIO()
    assert main(["evaluate", "--json", str(path)], out=out, err=io.StringIO()) == 2
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r.get("decision") for r in records] == ["allow", None, None, "allow"]
    assert [(r["error"], r["line"], r["violations"][0]["path"]) for r in records[1:3]] == [
        ("invalid_request", 2, "$.purpose"), ("invalid_request", 3, "$.payer.id")]
    single = tmp_path / "one.json"
    single.write_text(json.dumps(base_request(), indent=2).replace('"id": "u-1"', '"id": "u-1",\n "id": "u-1"'),
                      encoding="utf-8")
    out = io.StringIO()
    assert main(["evaluate", str(single)], out=out, err=io.StringIO()) == 2
    assert "$.payer.id: key appears more than once" in out.getvalue()


@pytest.mark.parametrize("text", ["1e-10000000", "1e+10000000", "1e-100000000", "0." + "0" * 100_000 + "1",
                                  "1" + "0" * 4000 + ".5"])
def test_numbers_beyond_exact_arithmetic_are_refused_at_once(text):
    started = time.perf_counter()
    for field in ("amount.value", "funding_source.available_credit_cny", "risk_score", "history.cash_today_cny"):
        body = json.dumps(base_request(**{field.replace(".", "__"): "<number>"})).replace('"<number>"', text)
        with pytest.raises(RequestError) as info:
            ENGINE.evaluate(parse_json(body))
        assert [v.path for v in info.value.violations] == ["$." + field]
    assert time.perf_counter() - started < 2  # was 14 s and more for one number; this is milliseconds


def test_region_codes_are_exact(bundled_engine):
    for region in ("ua-43", "UA-43 ", "UA\u201043", "UA-43\u200b", "U\u0410-43", "UA_43", "UA-4321"):
        with pytest.raises(RequestError) as info:
            bundled_engine.evaluate(base_request(merchant={"mcc": "5411", "country": "UA", "region": region}))
        assert [v.path for v in info.value.violations] == ["$.merchant.region"]
    crimea = bundled_engine.evaluate(base_request(merchant={"mcc": "5411", "country": "UA", "region": "UA-43"}))
    assert crimea.decision.value == "deny" and "CMP-002" in crimea.rule_ids


@pytest.mark.parametrize(("purpose", "sent", "missing"), [
    ("merchant_purchase", {}, ["$.merchant"]),
    ("gambling", {"merchant": {"mcc": "7995"}}, ["$.merchant.country"]),
    ("membership_dues", {"merchant": {"country": "CN"}}, ["$.merchant.mcc"]),  # an unknown purpose pays a merchant
    ("p2p_transfer", {}, ["$.payee"]),
    ("p2p_transfer", {"payee": {"id": "u-2"}}, ["$.payee.country", "$.payee.sanctions_hit"]),
])
def test_a_purpose_requires_its_counterparty(purpose, sent, missing):
    request = {**{k: v for k, v in base_request(purpose=purpose).items() if k != "merchant"}, **sent}
    with pytest.raises(RequestError) as info:
        ENGINE.evaluate(request)
    assert [v.path for v in info.value.violations] == missing


@pytest.mark.parametrize("purpose", ["credit_card_repayment", "loan_repayment", "cash_withdrawal", "cash_deposit",
                                     "wallet_topup"])
def test_purposes_that_pay_no_merchant_need_none(purpose):
    request = {k: v for k, v in base_request(purpose=purpose).items() if k != "merchant"}
    assert ENGINE.evaluate(request).request_id == "t-1"


def test_history_takes_only_the_counters_the_pack_reads(make_pack):
    rule = ("- id: T-1\n  category: risk\n  title: t\n  when: {field: history.cash_today_cny, op: gt, value: 5}\n"
            "  outcome: review\n  reason: r\n  source: s\n  verified: false\n")
    engine = PolicyEngine(load_ruleset(make_pack(rule)))
    assert engine.evaluate(base_request(history={"cash_today_cny": 6})).rule_ids == ("T-1",)
    with pytest.raises(RequestError) as info:
        engine.evaluate(base_request(history={"cash_today_cny": 6, "cash_today_usd": 1}))
    (violation,) = info.value.violations
    assert violation.path == "$.history.cash_today_usd"
    assert "did you mean 'cash_today_cny'?" in violation.message and "reads only these counters: cash_today_cny" \
        in violation.message


def test_extra_carries_the_callers_data_and_no_rule_reads_it(make_pack, tmp_path):
    request = base_request(extra={"order": "o-1", "batch": 7, "tags": ["a", "b"], "meta": {"k": "v", "n": None}})
    assert ENGINE.evaluate(request).decision.value == "allow"
    rule = ("- id: T-1\n  category: risk\n  title: t\n  when: {field: extra.order, op: eq, value: o-1}\n"
            "  outcome: review\n  reason: r\n  source: s\n  verified: false\n")
    with pytest.raises(RuleSetError, match="rules cannot read `extra`"):
        load_ruleset(make_pack(rule))


def test_the_audit_log_holds_only_bounded_requests(tmp_path):
    log = tmp_path / "decisions.jsonl"
    widest = {f"k{i:02d}{'x' * 60}": {f"{j:02d}{'y' * 62}": "z" * 256 for j in range(16)} for i in range(16)}
    with AuditLog(log, fsync="never") as audit:
        engine = PolicyEngine(PACK, audit=audit)
        engine.evaluate(base_request(extra=widest))
        for too_much in ({**widest, "one-more": 1}, {"k": {"k": {"k": 1}}}, {"k": "z" * 257}, {"k" * 65: 1},
                         {"k": list(range(17))}, {"k": 10**16}):
            with pytest.raises(RequestError):
                engine.evaluate(base_request(extra=too_much))
    (line,) = log.read_text(encoding="utf-8").splitlines()
    assert len(line.encode("utf-8")) < 120_000  # the widest extra allowed, and nothing refused, was written


def test_pack_timezones_are_real_zones(make_pack):
    header = PACK_HEADER.replace("CN: Asia/Shanghai", "CN: Asia/Beijing")
    with pytest.raises(RuleSetError, match="'Asia/Beijing' is not a timezone"):
        load_ruleset(make_pack("[]\n", header=header))
