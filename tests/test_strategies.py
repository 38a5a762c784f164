"""The request strategies: only valid requests, knobs respected, exact money, and thresholds really hit."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from decimal import Decimal
from random import Random

import pytest
from conftest import RULES
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from policy_engine import PolicyEngine, RequestError
from policy_engine.conditions import Leaf, leaves
from policy_engine.request import MINOR_UNITS
from policy_engine.testing.strategies import (
    ABSENT,
    KNOWN_FUNDING_TYPES,
    invalid_requests,
    money,
    near_thresholds,
    requests,
    thresholds,
    timestamps,
    values_except,
)


@pytest.fixture(scope="module")
def engine():
    engine = PolicyEngine.from_path(RULES)
    yield engine
    engine.close()


# The strategies depend on the pack, so the module-scoped engine's pack is built here too.
PACK = PolicyEngine.from_path(RULES).ruleset


@given(request=st.one_of(requests(), near_thresholds(PACK)))
def test_every_generated_request_is_valid(engine, request):
    prepared = engine.prepare(request)  # raises RequestError if the strategy produced an invalid request
    assert prepared.request_id == request["request_id"]


@given(request=requests(funding_type="bnpl", currency="JPY", dates=("2022-07-07", "2023-01-01"), amount=(100, 5000),
                        overrides={"purpose": "credit_card_repayment", "payer.age": st.integers(0, 17),
                                   "device": ABSENT}))
def test_knobs_fix_parts_of_the_request(engine, request):
    assert request["funding_source"]["type"] == "bnpl"
    assert request["purpose"] == "credit_card_repayment"
    assert request["payer"]["age"] <= 17
    assert "device" not in request
    local_date = dt.datetime.fromisoformat(request["timestamp"]).date()
    assert dt.date(2022, 7, 7) <= local_date < dt.date(2023, 1, 1)
    value = Decimal(str(request["amount"]["value"]))
    assert request["amount"]["currency"] == "JPY" and value == value.to_integral_value()  # JPY has no minor unit
    assert 100 <= value <= 5000
    engine.prepare(request)


@given(data=st.data(), currency=st.sampled_from(["CNY", "JPY", "KWD", "USD", "KRW"]))
def test_money_has_the_currencys_decimals(data, currency):
    value = data.draw(money(currency))
    places = MINOR_UNITS.get(currency, 2)
    assert value > 0 and value.as_tuple().exponent == -places


@given(stamp=timestamps())
def test_timestamps_carry_an_offset(stamp):
    assert dt.datetime.fromisoformat(stamp).tzinfo is not None


@given(value=values_except("funding_source.type", KNOWN_FUNDING_TYPES))
def test_not_in_draws_only_outside_the_set(value):
    assert value not in KNOWN_FUNDING_TYPES and value


@given(request=invalid_requests())
def test_invalid_requests_are_refused(engine, request):
    with pytest.raises(RequestError) as info:
        engine.prepare(request)
    assert info.value.violations and all(v.path.startswith("$") for v in info.value.violations)


def test_thresholds_are_read_from_the_pack():
    found = thresholds(PACK)
    assert found["history.p2p_amount_24h_cny + derived.amount_cny"] == (Decimal(30000),)  # RSK-004
    assert found["history.cash_today_cny + derived.amount_cny"] == (Decimal(50000),)  # CMP-011
    assert found["derived.amount_eur"] == (Decimal(30), Decimal(250))  # PSD2 CMP-023/024
    assert found["risk_score"] == (Decimal(65), Decimal(75))


# -- edges are really hit ------------------------------------------------------------------------------------
def _leaf(rule_id: str, op: str, paths: tuple[str, ...]) -> Leaf:
    return next(leaf for leaf in leaves(PACK.rule(rule_id).when) if leaf.op == op and leaf.operand.paths == paths)


SEARCH = settings(max_examples=3000, database=None, deadline=None, phases=(Phase.generate,),
                  suppress_health_check=list(HealthCheck))


def _find(engine, condition):
    """A request of the threshold strategy meeting ``condition(prepared, decision)``; fails if none is found."""
    def holds(request):
        return condition(engine.prepare(request).view, engine.evaluate(request))

    return find(near_thresholds(PACK), holds, settings=SEARCH, random=Random(5))


@pytest.mark.parametrize(("offset", "fires"), [(Decimal(0), False), (Decimal("0.01"), True)])
def test_rsk_004_edge_is_hit_exactly(engine, offset, fires):
    # > 30,000: exactly CNY 30,000 in 24 h does not fire; one cent more does.
    leaf = _leaf("RSK-004", "gt", ("history.p2p_amount_24h_cny", "derived.amount_cny"))
    request = _find(engine, lambda view, d: view.get("purpose") == "p2p_transfer"
                    and leaf.operand.value(view) == Decimal(30000) + offset)
    assert ("RSK-004" in engine.evaluate(request).rule_ids) is fires


def test_cmp_011_edge_is_hit_exactly(engine):
    # >= 50,000 (以上(含)): exactly CNY 50,000 of cash in a day is reported.
    leaf = _leaf("CMP-011", "gte", ("history.cash_today_cny", "derived.amount_cny"))
    request = _find(engine, lambda view, d: view.get("psp_country") == "CN" and d.as_of >= "2017-07-01"
                    and view.get("purpose") in ("cash_withdrawal", "cash_deposit")
                    and view.get("amount.currency") == "CNY" and leaf.operand.value(view) == Decimal(50000))
    assert "CMP-011" in engine.evaluate(request).rule_ids


def test_a_converted_amount_lands_exactly_on_the_edge_when_the_currency_allows(engine):
    # RSK-011's US band is USD 9,000..10,000; USD 10,000 is exactly CNY 72,000 or JPY 1,500,000 at the pack's
    # rates, so the strategy can put a payment in another currency exactly on the edge.
    request = _find(engine, lambda view, d: view.get("amount.currency") != "USD"
                    and view.get("derived.amount_usd") in (9000, 10000))
    rate = {"CNY": Decimal(1), "JPY": Decimal("0.048"), "EUR": Decimal("7.8"), "GBP": Decimal("9.1"),
            "HKD": Decimal("0.92")}[request["amount"]["currency"]]
    assert Decimal(str(request["amount"]["value"])) * rate / Decimal("7.2") in (9000, 10000)


def test_importing_the_library_does_not_import_hypothesis():
    # The pytest plugin too: through its pytest11 entry point it loads in every pytest run of an environment.
    code = ("import sys, policy_engine, policy_engine.cli, policy_engine.testing.pytest_plugin; "
            "policy_engine.cli.build_parser(); sys.exit(1 if 'hypothesis' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
