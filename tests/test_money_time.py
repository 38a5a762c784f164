"""Exact money at thresholds, cross rates, local time and as-of evaluation (effective dates, dated lists, FX)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from conftest import MATCHERS, PACK_HEADER, base_request

from policy_engine import PolicyEngine, RequestError, RuleSetError, load_ruleset
from policy_engine.request import EARLIEST, LATEST, fixed_offset, local_time


def rule(when: str, rid: str = "T-1", extra: str = "") -> str:
    return f"""\
- id: {rid}
  category: compliance
  title: test
  when: {when}
  outcome: deny
  reason: "amount {{amount.value}} {{amount.currency}} = CNY {{derived.amount_cny}}"
  source: test
  verified: true
{extra}"""


def fires(make_pack, matcher, when, lists="", extra="", header=PACK_HEADER, **overrides) -> bool:
    engine = PolicyEngine(load_ruleset(make_pack(rule(when, extra=extra), lists, header)), matcher=matcher)
    return engine.evaluate(base_request(**overrides)).rule_ids == ("T-1",)


@pytest.mark.parametrize("matcher", MATCHERS)
def test_decimal_sums_are_exact(make_pack, matcher):
    # 0.1 + 0.2 > 0.3 is false in exact arithmetic (and true in binary floating point)
    when = "{field: {add: [history.cash_today_cny, derived.amount_cny]}, op: gt, value: 0.3}"
    assert not fires(make_pack, matcher, when, history__cash_today_cny=0.1, amount__value=0.2)
    assert fires(make_pack, matcher, when, history__cash_today_cny=0.1, amount__value=0.21)
    when_eq = "{field: {add: [history.cash_today_cny, derived.amount_cny]}, op: eq, value: 0.3}"
    assert fires(make_pack, matcher, when_eq, history__cash_today_cny=0.1, amount__value=0.2)


@pytest.mark.parametrize("matcher", MATCHERS)
@pytest.mark.parametrize(("value", "currency", "expect"), [
    # USD 10,000 threshold, strict: the request currency is USD -> value unchanged
    ("10000", "USD", False), ("10000.01", "USD", True),
    # CNY 72,000 / 7.2 = exactly 10,000; one fen more is 10,000.0013...
    ("72000", "CNY", False), ("72000.01", "CNY", True),
    # EUR -> USD cross rate 7.8 / 7.2: 9,230.76 EUR = 9,999.99 USD; 9,230.77 EUR = 10,000.0008 USD
    ("9230.76", "EUR", False), ("9230.77", "EUR", True),
    # HKD 0.92 CNY: HKD 78,260.86 = USD 9,999.99...; 78,260.87 = USD 10,000.0001...
    ("78260.86", "HKD", False), ("78260.87", "HKD", True),
    # JPY has no minor unit: 1,500,000 JPY = CNY 72,000 = USD 10,000 exactly
    ("1500000", "JPY", False), ("1500001", "JPY", True),
])
def test_cross_rate_thresholds_are_exact(make_pack, matcher, value, currency, expect):
    when = "{field: derived.amount_usd, op: gt, value: 10000}"
    assert fires(make_pack, matcher, when, amount__value=value, amount__currency=currency) is expect


@pytest.mark.parametrize("matcher", MATCHERS)
def test_inclusive_threshold_in_cny_from_gbp(make_pack, matcher):
    when = "{field: derived.amount_cny, op: gte, value: 50000}"
    # GBP 5,494.51 * 9.1 = 50,000.041; GBP 5,494.50 * 9.1 = 49,999.95
    assert fires(make_pack, matcher, when, amount__value="5494.51", amount__currency="GBP")
    assert not fires(make_pack, matcher, when, amount__value="5494.50", amount__currency="GBP")


@pytest.mark.parametrize("matcher", MATCHERS)
def test_currency_without_rate_leaves_amounts_missing(make_pack, matcher):
    assert fires(make_pack, matcher, "{field: derived.amount_cny, op: missing}", amount__currency="THB")
    assert not fires(make_pack, matcher, "{field: derived.amount_cny, op: gte, value: 0}", amount__currency="THB")
    assert not fires(make_pack, matcher, "{field: derived.amount_cny, op: missing}", amount__currency="USD")


def test_float_amounts_are_read_as_written():
    engine = PolicyEngine.from_path(None)
    prepared = engine.prepare(base_request(amount__value=0.1))
    assert prepared.view["amount.value"] == Decimal("0.1")


def test_evidence_and_reason_show_exact_and_rounded_values(make_pack):
    path = make_pack(rule("{field: derived.amount_usd, op: gt, value: 1}"))
    d = PolicyEngine(load_ruleset(path)).evaluate(base_request(amount__value="100.10"))
    entry = d.to_dict()["trail"][0]
    assert entry["evidence"]["derived.amount_usd"] == pytest.approx(13.902778)
    assert entry["reason"] == "amount 100.10 CNY = CNY 100.10"  # money keeps the scale it was written in


@pytest.mark.parametrize("matcher", MATCHERS)
@pytest.mark.parametrize(("stamp", "psp", "hour"), [
    ("2025-06-11T02:30:00+08:00", "CN", 2), ("2025-06-10T18:30:00Z", "CN", 2), ("2025-06-10T23:59:59-05:00", "CN", 12),
    ("2025-06-10T05:59:59+05:45", "CN", 8), ("2025-06-10T06:00:00+08:00", "CN", 6),
    # a PSP elsewhere reads the hour on its own clock, summer time included
    ("2025-06-10T18:30:00Z", "GB", 19), ("2025-01-10T18:30:00Z", "GB", 18), ("2025-06-10T18:30:00+08:00", "US", 6),
    ("2025-03-09T06:59:59Z", "US", 1), ("2025-03-09T07:00:00Z", "US", 3),  # New York springs forward at 02:00
])
def test_local_hour_is_the_psp_jurisdictions_not_the_written_offset(make_pack, matcher, stamp, psp, hour):
    def at(when: str) -> bool:
        return fires(make_pack, matcher, when, timestamp=stamp, psp_country=psp)

    assert at("{field: derived.local_hour, op: lt, value: 6}") is (hour < 6)
    assert at(f"{{field: derived.local_hour, op: eq, value: {hour}}}")


#: Stamps at the window's edges, around local midnights and across summer-time changes, written in the
#: jurisdictions' own offsets and in others.
EDGE_STAMPS = ["2000-01-01T00:00:00Z", "2000-01-01T08:00:00+08:00", "2000-01-01T09:00:00+09:00",
               "2099-12-31T23:59:59Z", "2100-01-01T07:59:59+08:00", "2100-01-01T08:59:59+09:00",
               "2025-06-10T23:59:59+08:00", "2025-06-11T00:00:00+08:00", "2025-06-10T16:00:00Z",
               "2025-06-10T00:30:00+09:00", "2025-06-10T23:30:00-05:00", "2025-03-30T00:59:59Z",
               "2025-03-30T01:00:00Z", "2025-03-09T06:59:59Z", "2025-03-09T07:00:00Z", "2025-10-05T02:30:00+11:00"]


@pytest.mark.parametrize("psp", ["CN", "HK", "JP", "SG", "GB", "DE", "US", "AU"])
def test_local_hour_and_date_are_the_zones_at_the_edges_whatever_the_written_offset(make_pack, psp):
    # fixed-offset jurisdictions read a stamp written in their own offset as it stands; others convert it
    engine = PolicyEngine(load_ruleset(make_pack(rule("{field: derived.local_hour, op: lt, value: 0}"))))
    for stamp in EDGE_STAMPS:
        expected = local_time(engine.ruleset, stamp, psp)  # ZoneInfo's conversion
        prepared = engine.pack.prepare(base_request(timestamp=stamp, psp_country=psp))
        assert (prepared.view["derived.local_hour"], prepared.day) == (expected.hour, expected.toordinal()), stamp
        decided = json.loads(engine.evaluate_json(json.dumps(base_request(timestamp=stamp, psp_country=psp))))
        assert decided["as_of"] == expected.date().isoformat(), stamp


@pytest.mark.parametrize(("name", "fixed"), [
    ("Asia/Shanghai", 8 * 60), ("Asia/Tokyo", 9 * 60), ("Asia/Kathmandu", 5 * 60 + 45), ("Atlantic/Reykjavik", 0),
    ("Europe/Berlin", None), ("Europe/London", None), ("America/New_York", None), ("Australia/Sydney", None),
    ("Asia/Pyongyang", None), ("Pacific/Apia", None), ("Europe/Moscow", None),  # changed offset inside the window
])
def test_only_zones_with_one_offset_over_the_window_are_fixed(name, fixed):
    zone = ZoneInfo(name)
    offset = fixed_offset(zone)
    assert (None if offset is None else offset.utcoffset(None) // dt.timedelta(minutes=1)) == fixed
    if offset is not None:  # every hour of the window's first and last days, and every week between, agree
        edges = [EARLIEST + dt.timedelta(hours=h) for h in range(48)] + [LATEST - dt.timedelta(hours=h, seconds=1)
                                                                         for h in range(48)]
        weeks = [EARLIEST + dt.timedelta(weeks=w, hours=w % 24) for w in range(0, 5218)]
        for when in edges + weeks:
            assert when.astimezone(offset).replace(tzinfo=None) == when.astimezone(zone).replace(tzinfo=None)


def test_a_psp_country_the_pack_has_no_timezone_for_is_refused(make_pack):
    engine = PolicyEngine(load_ruleset(make_pack(rule("{field: purpose, op: eq, value: gambling}"))))
    with pytest.raises(RequestError) as info:
        engine.evaluate(base_request(psp_country="KR"))
    (violation,) = info.value.violations
    assert violation.path == "$.psp_country" and "no timezone for psp_country 'KR'" in violation.message


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+00:00", "1900-06-10T14:30:00+08:00",
                                   "1999-12-31T23:59:59Z", "2000-01-01T07:59:59+08:00", "2100-01-01T00:00:00Z",
                                   "9999-12-31T23:59:59-12:00"])
def test_timestamps_outside_the_window_are_refused(bundled_engine, stamp):
    with pytest.raises(RequestError) as info:
        bundled_engine.evaluate(base_request(timestamp=stamp))
    assert [v.path for v in info.value.violations] == ["$.timestamp"]
    assert "outside the supported window" in info.value.violations[0].message


@pytest.mark.parametrize("stamp", ["2000-01-01T00:00:00Z", "2000-01-01T08:00:00+08:00", "2099-12-31T23:59:59Z"])
def test_the_window_edges_are_accepted(bundled_engine, stamp):
    assert bundled_engine.evaluate(base_request(timestamp=stamp)).decision.value == "allow"


def test_a_pack_needs_timezones_and_real_zone_names(make_pack):
    header = PACK_HEADER[:PACK_HEADER.index("timezones:")]
    with pytest.raises(RuleSetError, match="no `timezones:` map"):
        load_ruleset(make_pack(rule("{field: purpose, op: eq, value: gambling}"), header=header))
    bad = header + "timezones:\n  CN: Asia/Shanghai\n  GB: Europe/Londn\n"
    with pytest.raises(RuleSetError) as info:
        load_ruleset(make_pack(rule("{field: purpose, op: eq, value: gambling}"), header=bad))
    (issue,) = info.value.issues
    assert (issue.line, issue.col) == (8, 3) and "'Europe/Londn' is not a timezone" in issue.message


@pytest.mark.parametrize("matcher", MATCHERS)
def test_rule_effective_dates_follow_the_payment_date(make_pack, matcher):
    extra = "  effective: {from: 2022-07-07, to: 2024-01-01}\n"
    when = "{field: purpose, op: eq, value: merchant_purchase}"
    for stamp, expect in [("2022-07-06T23:59:59+08:00", False), ("2022-07-07T00:00:00+08:00", True),
                          ("2023-12-31T23:59:59+08:00", True), ("2024-01-01T00:00:00+08:00", False),
                          # the date in the PSP's timezone counts (CN: Beijing), not the one written:
                          # 2022-07-06 16:30 UTC and 2022-07-06 20:00 -05:00 are already the 7th in Beijing
                          ("2022-07-07T00:30:00+08:00", True), ("2022-07-06T16:30:00Z", True),
                          ("2022-07-06T20:00:00-05:00", True), ("2022-07-06T15:59:59Z", False)]:
        assert fires(make_pack, matcher, when, extra=extra, timestamp=stamp) is expect, stamp


@pytest.mark.parametrize("matcher", MATCHERS)
def test_dated_list_items(make_pack, matcher):
    lists = """\
embargoed:
  values:
    - CU
    - {value: SY, to: 2025-07-01, note: "comprehensive programme lifted"}
    - {value: XX, from: 2025-01-01}
"""
    when_in = "{field: merchant.country, op: in, list: embargoed}"
    when_not_in = "{field: merchant.country, op: not_in, list: embargoed}"
    # 2025-06-30 16:00 UTC is 2025-07-01 00:00 in Beijing, the PSP's timezone
    before, after = "2025-06-30T15:59:59Z", "2025-06-30T16:00:00Z"
    for when, member in ((when_in, True), (when_not_in, False)):
        assert fires(make_pack, matcher, when, lists, timestamp=before, merchant__country="SY") is member
        assert fires(make_pack, matcher, when, lists, timestamp=after, merchant__country="SY") is not member
        assert fires(make_pack, matcher, when, lists, timestamp=after, merchant__country="CU") is member
        assert fires(make_pack, matcher, when, lists, timestamp="2024-12-31T12:00:00Z",
                     merchant__country="XX") is not member
        assert fires(make_pack, matcher, when, lists, timestamp=after, merchant__country="XX") is member
    negated = "{not: {field: merchant.country, op: in, list: embargoed}}"
    assert fires(make_pack, matcher, negated, lists, timestamp=after, merchant__country="SY")
    assert not fires(make_pack, matcher, negated, lists, timestamp=before, merchant__country="SY")


#: a pack header with two FX tables a year apart
_TWO_FX_TABLES = """\
pack: fx
version: "1"
reference_fx:
  - {as_of: 2024-01-01, rates: {CNY: "1", USD: "7.0"}}
  - {as_of: 2025-01-01, rates: {CNY: "1", USD: "7.5"}}
timezones: {CN: Asia/Shanghai}
"""


@pytest.mark.parametrize("matcher", MATCHERS)
def test_fx_table_as_of_the_payment_date(make_pack, matcher):
    header = _TWO_FX_TABLES
    when = "{field: derived.amount_cny, op: gte, value: 7500}"
    kw = {"amount__value": 1000, "amount__currency": "USD"}
    assert not fires(make_pack, matcher, when, header=header, timestamp="2024-12-31T23:00:00+08:00", **kw)
    assert fires(make_pack, matcher, when, header=header, timestamp="2025-01-01T00:00:00+08:00", **kw)
    assert fires(make_pack, matcher, when, header=header, timestamp="2024-12-31T16:00:00Z", **kw)  # Beijing: 01-01
    # older than every table: the earliest table is used
    assert not fires(make_pack, matcher, when, header=header, timestamp="2019-05-01T00:00:00+08:00", **kw)
    engine = PolicyEngine(load_ruleset(make_pack(rule(when), header=header)), matcher=matcher)
    assert engine.evaluate(base_request(timestamp="2025-03-01T00:00:00Z")).fx_as_of == "2025-01-01"


def test_one_engine_takes_each_dates_fx_table_however_dates_alternate(make_pack):
    # the preparer remembers the table of each local date it has met: dates met again, in any order and on either
    # input path, still take their own table
    header = _TWO_FX_TABLES
    engine = PolicyEngine(load_ruleset(make_pack(rule("{field: derived.amount_cny, op: gte, value: 7500}"),
                                                 header=header)))
    stamps = {"2024-12-31T23:00:00+08:00": "2024-01-01", "2024-12-31T16:00:00Z": "2025-01-01",
              "2019-05-01T00:00:00+08:00": "2024-01-01", "2025-03-01T00:00:00Z": "2025-01-01"}
    for _ in range(2):
        for stamp, as_of in stamps.items():
            request = base_request(timestamp=stamp, amount__value=1000, amount__currency="USD")
            assert engine.evaluate(request).fx_as_of == as_of
            assert json.loads(engine.evaluate_json(json.dumps(request)))["fx_as_of"] == as_of


def test_syria_in_the_default_pack_is_dated():
    engine = PolicyEngine.from_path(None)
    def ids(stamp):
        return engine.evaluate(base_request(timestamp=stamp, merchant__country="SY")).rule_ids
    assert "CMP-002" in ids("2025-06-30T12:00:00+03:00")
    assert "CMP-002" not in ids("2025-07-01T12:00:00+03:00")
    assert "CMP-002" not in ids("2025-06-30T20:00:00-04:00")  # 2025-07-01 08:00 in Beijing


@pytest.mark.parametrize("matcher", MATCHERS)
def test_cross_rate_amounts_left_pending_still_reach_reasons_and_sums(make_pack, matcher):
    """On the hot path the USD/EUR amounts of a payment in another currency are computed only when a rule
    reads them; a fired rule's reason and evidence, sums and field comparisons must still see them."""
    rules = """\
- id: R-REASON
  category: risk
  title: reason only
  when: {field: purpose, op: eq, value: merchant_purchase}
  outcome: review
  reason: "USD {derived.amount_usd}, EUR {derived.amount_eur}"
  source: test
  verified: true
- id: R-SUM
  category: risk
  title: sum
  when: {field: {add: [history.cash_today_usd, derived.amount_usd]}, op: gt, value: 20}
  outcome: review
  reason: r
  source: test
  verified: true
- id: R-CMP
  category: risk
  title: compare
  when: {field: derived.amount_eur, op: lt, ref: derived.amount_usd}
  outcome: review
  reason: r
  source: test
  verified: true
"""
    engine = PolicyEngine(load_ruleset(make_pack(rules)), matcher=matcher)
    decision = engine.evaluate(base_request(amount__value="72", history__cash_today_usd=Decimal("10.01")))
    assert decision.rule_ids == ("R-REASON", "R-SUM", "R-CMP")  # CNY 72 = USD 10, EUR 9.2307...
    assert decision.trail[0].reason == "USD 10.00, EUR 9.23"
    assert not engine.evaluate(base_request(amount__value="72", history__cash_today_usd=10)).rule_ids.count("R-SUM")
    prepared = engine.prepare(base_request(amount__value="72"))  # handed-out requests are always complete
    assert prepared.view["derived.amount_usd"] == 10 and "derived.amount_eur" in prepared.view
