"""The bundled default pack (rules/) checked against the rule catalogue, rule by rule and edge by edge.

1. Conformance: the pack has exactly the catalogue's rule ids, with the same category, outcome and report.
2. A table of named cases (`CASES`): a request and the EXACT set of rule ids it fires, plus the decision. It
   covers every rule, both sides of every numeric threshold (inclusive vs strict as DOMAIN.md 3 and 5.4 say),
   amounts in CNY, USD, EUR, GBP and HKD, and the behaviours listed in DOMAIN.md 6 ("Further behaviours ...").
3. Coverage: a test fails if some rule of the pack is fired by no row of the table.
4. Reasons: every fired rule renders a non-empty reason without "<missing ...>" placeholders.

Reference rates (CNY per unit): USD 7.2, EUR 7.8, GBP 9.1, HKD 0.92. So USD 10,000 = CNY 72,000,
EUR 250 = CNY 1,950, EUR 30 = CNY 234, GBP 100 = CNY 910 = USD 126.39.., GBP 720 = CNY 6,552 = USD 910,
HKD 100 = CNY 92, HKD 9,000 = CNY 8,280 = USD 1,150. Conversions are exact (no rounding), so an amount one
cent past an edge in any currency is past it.

To add a rule: add at least one row that fires it and one at its edge that does not (see rules/README.md).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import NamedTuple

import pytest
import yaml
from conftest import DELETE, MATCHERS, SHARED_SPEC, base_request

from policy_engine import PolicyEngine

CATALOGUE = SHARED_SPEC / "rule-catalogue.yaml"
#: Rules the pack adds to the catalogue, and why: the shared catalogue is the contract and is not edited here.
EXTENSIONS = {"CMP-025": "name screening against party lists (issue 17); the catalogue has only the caller's "
                         "sanctions_hit flags (CMP-001)"}
SEVERITY = ["deny", "review", "step_up", "allow"]


class Case(NamedTuple):
    name: str
    request: dict
    decision: str
    rules: frozenset[str]
    undecided: frozenset[str] | None = None  # when given, the exact set of undecided (not skipped) rules


def C(name: str, base: dict, decision: str, rules: str = "", *, amount: str | None = None,
      undecided: str | None = None, **overrides) -> Case:
    """One row: ``base`` (a scenario's overrides) + ``overrides`` applied to conftest.base_request().

    ``amount="100.01 HKD"`` sets amount.value (a decimal string) and amount.currency; ``rules`` is the
    space-separated set of rule ids expected in the trail (empty: nothing fires).
    """
    fields = {**base, **overrides}
    if amount is not None:
        value, currency = amount.split()
        fields["amount__value"] = value
        fields["amount__currency"] = currency
    return Case(name, base_request(**fields), decision, frozenset(rules.split()),
                None if undecided is None else frozenset(undecided.split()))


# --------------------------------------------------------------------------------------------- scenario bases
# base_request() alone is a CNY 100 debit-card merchant purchase dated 2025-06-10 14:30 +08:00, PSP in CN by
# default, with every fact a rule may read stated: it fires nothing and leaves nothing undecided. Missing data is
# unknown (DOMAIN 5.1 point 6), so each scenario states the facts its rules read.
PURCHASE: dict = {}
WALLET = {"funding_source__type": "account_balance", "channel": "in_app"}
WALLET_I = {**WALLET, "payer__kyc_level": "basic", "payer__account_tier": "I"}
WALLET_II = {**WALLET, "payer__kyc_level": "standard", "payer__account_tier": "II"}
WALLET_III = {**WALLET, "payer__kyc_level": "enhanced", "payer__account_tier": "III"}
# credit lines state their standing (RSK-012/013/014 read it: unknown would hold the payment for review)
CREDIT_STANDING = {"funding_source__available_credit_cny": 500000, "funding_source__overdue_days": 0}
CREDIT = {"funding_source__type": "credit_card", "funding_source__issuer_country": "CN", **CREDIT_STANDING}
LOAN = {"funding_source__type": "consumer_loan", "funding_source__product": "jintiao", **CREDIT_STANDING}
BNPL = {"funding_source__type": "bnpl", "funding_source__product": "baitiao", "funding_source__issuer_country": "CN",
        "funding_source__available_credit_cny": 10000, "funding_source__overdue_days": 0, "merchant__id": "m-jd",
        "merchant__in_issuer_network": True}
P2P = {"purpose": "p2p_transfer", "channel": "in_app", "merchant": DELETE, "payee__id": "u-2", "payee__country": "CN",
       "payee__sanctions_hit": False, "payee__first_time": False}
XB_P2P = {**P2P, "cross_border": True, "payee__country": "HK"}
CASH = {"purpose": "cash_withdrawal", "channel": "counter"}
US_CASH = {**CASH, "psp_country": "US", "payer__residence_country": "US"}
FX = {"purpose": "cross_border_purchase", "fx_purchase": True, "payer__residence_country": "CN", "channel": "online"}
BUSINESS = {"payer__type": "business", "funding_source__type": "bank_transfer", "merchant__country": "CN"}
GAME = {**WALLET, "merchant__mcc": "5816", "merchant__country": "CN"}
LOTTERY_SHOP = {"purpose": "lottery", "merchant__mcc": "9406", "channel": "pos"}
LOTTERY_WEB = {**LOTTERY_SHOP, "channel": "online"}
GB = {"psp_country": "GB", "payer__residence_country": "GB", "funding_source__issuer_country": "GB",
      "merchant__country": "GB", "amount__currency": "GBP"}
# A remote card payment inside the EEA without SCA, TRA-eligible (low score) unless risk_score is removed.
EEA = {"psp_country": "DE", "payer__residence_country": "DE", "funding_source__issuer_country": "DE",
       "merchant__country": "DE", "merchant__mcc": "5732", "channel": "online", "risk_score": 12, "ip_country": "DE"}
EEA_NO_SCORE = {**EEA, "risk_score": DELETE}
CARD_FROM_US = {"funding_source__issuer_country": "US", "ip_country": "CN"}
NEW_DEVICE = {"device__id": "d-9", "device__is_new": True}


CASES: list[Case] = [
    # ================================================================================ funding_source
    C("FS-000 unknown funding type store_credit", PURCHASE, "deny", "FS-000", funding_source__type="store_credit"),
    C("FS-001 seed: Baitiao repays a credit card", BNPL, "deny", "FS-001", purpose="credit_card_repayment",
      amount="2000 CNY", payee__type="card_issuer", merchant=DELETE),
    C("FS-001 Huabei repays a card in USD", BNPL, "deny", "FS-001", purpose="credit_card_repayment",
      amount="50 USD", funding_source__product="huabei"),
    C("debit card repays a credit card (own funds)", PURCHASE, "allow", "", purpose="credit_card_repayment"),
    C("FS-002 credit card repays a credit card", CREDIT, "deny", "FS-002", purpose="credit_card_repayment"),
    C("FS-002 consumer loan repays a credit card", LOAN, "deny", "FS-002", purpose="credit_card_repayment"),
    # FS-003 effective from 2022-07-07 (inclusive), as of the LOCAL calendar date of the timestamp
    C("FS-003 consumer loan repays a loan", LOAN, "deny", "FS-003", purpose="loan_repayment"),
    C("FS-003 first day in force 2022-07-07 00:00 +08:00", LOAN, "deny", "FS-003", purpose="loan_repayment",
      timestamp="2022-07-07T00:00:00+08:00"),
    C("FS-003 not in force the day before (2022-07-06 23:59 +08:00)", LOAN, "allow", "", purpose="loan_repayment",
      timestamp="2022-07-06T23:59:59+08:00"),
    # as of the date in the PSP's timezone (CN: Beijing), whatever offset the caller wrote
    C("FS-003 2022-07-06 20:00 -05:00 is already 07-07 in Beijing -> in force", LOAN, "deny", "FS-003",
      purpose="loan_repayment", timestamp="2022-07-06T20:00:00-05:00"),
    C("FS-003 2022-07-06T15:59:59Z is still 07-06 in Beijing -> not in force", LOAN, "allow", "",
      purpose="loan_repayment", timestamp="2022-07-06T15:59:59Z"),
    C("FS-004 credit card buys securities", CREDIT, "deny", "FS-004", purpose="securities_investment"),
    C("FS-004 BNPL buys a fund", BNPL, "deny", "FS-004", purpose="fund_investment"),
    C("FS-004 not in force 2022-07-06", CREDIT, "allow", "", purpose="securities_investment",
      timestamp="2022-07-06T10:00:00+08:00"),
    C("FS-005 BNPL real-estate down payment", BNPL, "deny", "FS-005", purpose="real_estate", amount="5000 CNY"),
    C("FS-005 consumer loan real estate not in force 2022-07-06", LOAN, "allow", "", purpose="real_estate",
      timestamp="2022-07-06T10:00:00+08:00"),
    # FS-006: credit-funded gambling anywhere; lottery on credit: remote anywhere, in CN in any channel
    C("FS-006 UK credit card at an online casino (7995)", {**CREDIT, **GB}, "deny", "FS-006", purpose="gambling",
      merchant__mcc="7995", channel="online", amount="50 GBP"),
    C("FS-006 UK credit card buys a lottery ticket online", {**CREDIT, **GB, **LOTTERY_WEB}, "deny", "FS-006",
      amount="2 GBP"),
    C("UK credit card buys a lottery ticket in a shop (GB exemption) -> allow", {**CREDIT, **GB, **LOTTERY_SHOP},
      "allow", "", amount="2 GBP"),
    C("FS-006 CN credit-funded lottery at a licensed outlet (pos)", {**CREDIT, **LOTTERY_SHOP}, "deny", "FS-006",
      amount="20 CNY"),
    C("FS-006 CN BNPL lottery at a licensed outlet (pos)", {**BNPL, **LOTTERY_SHOP}, "deny", "FS-006",
      amount="20 CNY"),
    C("FS-006 + CMP-016 CN credit card lottery online", {**CREDIT, **LOTTERY_WEB}, "deny", "FS-006 CMP-016",
      amount="20 CNY"),
    C("FS-007 BNPL tops up a wallet", BNPL, "deny", "FS-007", purpose="wallet_topup"),
    # FS-008: credit-card cash advance, CNY 10,000 per card per day, fires at >
    C("FS-008 cash advance 9,000 + 1,000 = exactly CNY 10,000 -> allow", {**CREDIT, **CASH}, "allow", "",
      amount="1000 CNY", history__credit_cash_today_cny=9000),
    C("FS-008 cash advance 9,000 + 1,000.01 -> deny", {**CREDIT, **CASH}, "deny", "FS-008",
      amount="1000.01 CNY", history__credit_cash_today_cny=9000),
    C("FS-008 9,090 + GBP 100 (CNY 910) = exactly 10,000 -> allow", {**CREDIT, **CASH}, "allow", "",
      amount="100 GBP", history__credit_cash_today_cny=9090),
    C("FS-008 9,090 + GBP 100.01 -> deny", {**CREDIT, **CASH}, "deny", "FS-008",
      amount="100.01 GBP", history__credit_cash_today_cny=9090),
    C("FS-008 only in CN: US PSP credit cash advance USD 2,000", {**CREDIT, **US_CASH}, "allow", "",
      amount="2000 USD"),
    C("FS-009 credit card tops up a wallet", CREDIT, "deny", "FS-009", purpose="wallet_topup"),
    C("FS-010 credit-card funded P2P", {**CREDIT, **P2P}, "review", "FS-010"),
    C("FS-011 consumer loan at a crypto merchant (6051)", LOAN, "deny", "FS-011", merchant__mcc="6051"),
    C("FS-011 credit card buys crypto outside CN (no CMP-020)", CREDIT, "deny", "FS-011", purpose="crypto_purchase",
      psp_country="SG", amount="100 USD"),
    C("FS-012 prepaid card cash withdrawal", {**CASH, "funding_source__type": "prepaid_card"}, "deny", "FS-012"),
    C("FS-012 prepaid card P2P transfer", {**P2P, "funding_source__type": "prepaid_card"}, "deny", "FS-012"),
    C("FS-013 BNPL outside the issuer network", BNPL, "deny", "FS-013", merchant__in_issuer_network=False),
    C("FS-014 BNPL at a stored-value load merchant (6540)", BNPL, "deny", "FS-014", merchant__mcc="6540"),
    C("FS-011 + FS-014 BNPL at a crypto merchant (6051)", BNPL, "deny", "FS-011 FS-014", merchant__mcc="6051"),
    C("FS-099 unknown purpose", PURCHASE, "review", "FS-099", purpose="charity_donation"),

    # ================================================================================ compliance
    C("CMP-000 currency without a reference rate (THB)", PURCHASE, "deny", "CMP-000", amount="500 THB"),
    C("JPY has a reference rate (0 decimals)", PURCHASE, "allow", "", amount="1500 JPY"),
    C("unknown funding type AND unknown currency", PURCHASE, "deny", "FS-000 CMP-000",
      funding_source__type="gift_voucher", amount="500 THB"),
    C("unknown purpose with an unknown currency", PURCHASE, "deny", "FS-099 CMP-000", purpose="charity_donation",
      amount="10 XYZ"),
    C("CMP-001 payer on a sanctions list", PURCHASE, "deny", "CMP-001", payer__sanctions_hit=True),
    C("CMP-001 payee on a sanctions list", P2P, "deny", "CMP-001", payee__sanctions_hit=True),
    C("no sanctions hit (false flags)", P2P, "allow", "", payer__sanctions_hit=False, payee__sanctions_hit=False),
    C("CMP-002 merchant in Iran", PURCHASE, "deny", "CMP-002", merchant__country="IR"),
    C("CMP-002 payee in Crimea (UA-43)", P2P, "deny", "CMP-002", payee__country="UA", payee__region="UA-43"),
    C("Russia is not embargoed (targeted sanctions only)", PURCHASE, "allow", "", merchant__country="RU"),
    # Syria: a dated list item, embargoed for payments dated before 2025-07-01 (the date in Beijing, the PSP's zone)
    C("CMP-002 merchant in Syria on 2025-06-30", PURCHASE, "deny", "CMP-002", merchant__country="SY",
      timestamp="2025-06-30T12:00:00+08:00"),
    C("Syria lifted: merchant in Syria on 2025-07-01", PURCHASE, "allow", "", merchant__country="SY",
      timestamp="2025-07-01T12:00:00+08:00"),
    C("Syria 2025-06-30 23:30 -04:00 is already 07-01 in Beijing -> lifted", PURCHASE, "allow", "",
      merchant__country="SY", timestamp="2025-06-30T23:30:00-04:00"),
    C("CMP-002 Syria 2025-06-30T15:59:59Z is still 06-30 in Beijing -> embargoed", PURCHASE, "deny", "CMP-002",
      merchant__country="SY", timestamp="2025-06-30T15:59:59Z"),
    C("Syria 2025-07-01 00:30 +08:00 (UTC still 06-30) -> lifted", P2P, "allow", "", payee__country="SY",
      timestamp="2025-07-01T00:30:00+08:00"),
    C("CMP-003 session from North Korea", PURCHASE, "review", "CMP-003", ip_country="KP", channel="online"),
    C("CMP-003 IP in Syria on 2025-06-30 -> review", PURCHASE, "review", "CMP-003", ip_country="SY",
      channel="in_app", timestamp="2025-06-30T12:00:00+08:00"),
    C("CMP-003 not for an IP in Syria on 2025-07-01", PURCHASE, "allow", "", ip_country="SY", channel="online",
      timestamp="2025-07-01T12:00:00+08:00"),
    C("CMP-025 payer name resembles a party-list entry", PURCHASE, "review", "CMP-025",
      payer__name="Zorvath Kelmindor"),
    C("CMP-025 merchant in Cyrillic, listed entry", PURCHASE, "review", "CMP-025",
      merchant__name="Врелкин Трейд Холдингс"),
    C("CMP-025 not for names far from every entry", P2P, "allow", "", payer__name="Wang Fang",
      payee__name="Li Na"),
    C("CMP-003 not for an in-person payment (no session IP)", PURCHASE, "allow", "", ip_country="KP", channel="pos"),
    C("CMP-003 missing ip_country on a remote payment -> undecided, review", PURCHASE, "review", "",
      undecided="CMP-003", ip_country=DELETE),
    C("CMP-003 missing ip_country in person -> decided (no session IP)", PURCHASE, "allow", "", undecided="",
      ip_country=DELETE, channel="pos"),
    # CMP-004: Class I, CNY 1,000 since opening, "may not exceed" -> fires at >
    C("CMP-004 class I 900 + 100 = exactly CNY 1,000 -> allow", WALLET_I, "allow", "",
      history__tier_used_total_cny=900),
    C("CMP-004 class I 900 + 100.01 -> deny", WALLET_I, "deny", "CMP-004", amount="100.01 CNY",
      history__tier_used_total_cny=900),
    C("CMP-004 class I 900.01 + 100 -> deny", WALLET_I, "deny", "CMP-004", history__tier_used_total_cny=900.01),
    C("CMP-004 class I 908 + HKD 100 (CNY 92) = exactly 1,000 -> allow", WALLET_I, "allow", "", amount="100 HKD",
      history__tier_used_total_cny=908),
    C("CMP-004 class I 908 + HKD 100.01 -> deny", WALLET_I, "deny", "CMP-004", amount="100.01 HKD",
      history__tier_used_total_cny=908),
    C("CMP-004 class I 90 + GBP 100 (CNY 910) = exactly 1,000 -> allow", WALLET_I, "allow", "", amount="100 GBP",
      history__tier_used_total_cny=90),
    C("CMP-004 class I 90 + GBP 100.01 -> deny", WALLET_I, "deny", "CMP-004", amount="100.01 GBP",
      history__tier_used_total_cny=90),
    C("CMP-004 not in force 2016-06-30", WALLET_I, "allow", "", amount="5000 CNY",
      timestamp="2016-06-30T12:00:00+08:00"),
    # CMP-005 / CMP-006: Class II CNY 100,000 and Class III CNY 200,000 a year, fire at >
    C("CMP-005 class II 99,900 + 100 = exactly 100,000 -> allow", WALLET_II, "allow", "",
      history__tier_used_year_cny=99900),
    C("CMP-005 class II 99,900 + 100.01 -> deny", WALLET_II, "deny", "CMP-005", amount="100.01 CNY",
      history__tier_used_year_cny=99900),
    C("CMP-005 class II 99,280 + USD 100 (CNY 720) = exactly 100,000 -> allow", WALLET_II, "allow", "",
      amount="100 USD", history__tier_used_year_cny=99280),
    C("CMP-005 class II 99,280 + USD 100.01 -> deny", WALLET_II, "deny", "CMP-005", amount="100.01 USD",
      history__tier_used_year_cny=99280),
    C("CMP-006 class III 199,000 + 1,000 = exactly 200,000 -> allow", WALLET_III, "allow", "", amount="1000 CNY",
      history__tier_used_year_cny=199000),
    C("CMP-006 class III 199,000 + 1,000.01 -> deny", WALLET_III, "deny", "CMP-006", amount="1000.01 CNY",
      history__tier_used_year_cny=199000),
    C("CMP-006 class III 199,220 + EUR 100 (CNY 780) = exactly 200,000 -> allow", WALLET_III, "allow", "",
      amount="100 EUR", history__tier_used_year_cny=199220),
    C("CMP-006 class III 199,220 + EUR 100.01 -> deny", WALLET_III, "deny", "CMP-006", amount="100.01 EUR",
      history__tier_used_year_cny=199220),
    C("class III at 150,000 a year is under the class III cap", WALLET_III, "allow", "",
      history__tier_used_year_cny=150000),
    C("CMP-007 class II balance buys a fund", WALLET_II, "deny", "CMP-007", purpose="fund_investment"),
    C("CMP-007 class I balance buys securities", WALLET_I, "deny", "CMP-007", purpose="securities_investment"),
    C("class III balance may buy a fund", WALLET_III, "allow", "", purpose="fund_investment"),
    # CMP-008: balance, >= 2 factors, no certificate: CNY 5,000 a day, fires at >
    C("CMP-008 2 factors 4,000 + 1,000 = exactly 5,000 -> allow", WALLET, "allow", "", amount="1000 CNY",
      auth__factors=2, auth__digital_cert=False, history__balance_daily_used_cny=4000),
    C("CMP-008 2 factors 4,000 + 1,000.01 -> step_up", WALLET, "step_up", "CMP-008", amount="1000.01 CNY",
      auth__factors=2, auth__digital_cert=False, history__balance_daily_used_cny=4000),
    C("CMP-008 2 factors 4,090 + GBP 100 (CNY 910) = exactly 5,000 -> allow", WALLET, "allow", "", amount="100 GBP",
      auth__factors=2, history__balance_daily_used_cny=4090),
    C("CMP-008 2 factors 4,090 + GBP 100.01 -> step_up", WALLET, "step_up", "CMP-008", amount="100.01 GBP",
      auth__factors=2, history__balance_daily_used_cny=4090),
    C("CMP-008 digital certificate: no daily cap", WALLET, "allow", "", amount="20000 CNY",
      auth__factors=2, auth__digital_cert=True),
    # CMP-009: balance, < 2 factors: CNY 1,000 a day, fires at >
    C("CMP-009 1 factor 900 + 100 = exactly 1,000 -> allow", WALLET, "allow", "", auth__factors=1,
      history__balance_daily_used_cny=900),
    C("CMP-009 1 factor 900 + 100.01 -> step_up", WALLET, "step_up", "CMP-009", amount="100.01 CNY",
      auth__factors=1, history__balance_daily_used_cny=900),
    C("CMP-009 1 factor 220 + EUR 100 (CNY 780) = exactly 1,000 -> allow", WALLET, "allow", "", amount="100 EUR",
      auth__factors=1, history__balance_daily_used_cny=220),
    C("CMP-009 1 factor 220 + EUR 100.01 -> step_up", WALLET, "step_up", "CMP-009", amount="100.01 EUR",
      auth__factors=1, history__balance_daily_used_cny=220),
    # CMP-010: static QR code, CNY 500 a day, fires at >; in force from 2018-04-01
    C("CMP-010 static QR 400 + 100 = exactly 500 -> allow", PURCHASE, "allow", "", channel="qr_static",
      history__qr_static_daily_used_cny=400),
    C("CMP-010 static QR 400 + 100.01 -> deny", PURCHASE, "deny", "CMP-010", channel="qr_static",
      amount="100.01 CNY", history__qr_static_daily_used_cny=400),
    C("CMP-010 static QR 40 + HKD 500 (CNY 460) = exactly 500 -> allow", PURCHASE, "allow", "", channel="qr_static",
      amount="500 HKD", history__qr_static_daily_used_cny=40),
    C("CMP-010 static QR 40 + HKD 500.01 -> deny", PURCHASE, "deny", "CMP-010", channel="qr_static",
      amount="500.01 HKD", history__qr_static_daily_used_cny=40),
    C("dynamic QR has no CNY 500 cap", PURCHASE, "allow", "", channel="qr_dynamic", amount="800 CNY"),
    C("CMP-010 not in force 2018-03-31", PURCHASE, "allow", "", channel="qr_static", amount="800 CNY",
      timestamp="2018-03-31T12:00:00+08:00"),
    C("CMP-010 first day in force 2018-04-01", PURCHASE, "deny", "CMP-010", channel="qr_static", amount="800 CNY",
      timestamp="2018-04-01T12:00:00+08:00"),
    # CMP-011: PBoC LVTR for cash, inclusive >= CNY 50,000, foreign currency >= USD 10,000 equivalent
    C("CMP-011 cash exactly CNY 50,000 -> LVTR", CASH, "allow", "CMP-011", amount="50000 CNY"),
    C("CMP-011 cash CNY 49,999.99 -> no report", CASH, "allow", "", amount="49999.99 CNY"),
    C("CMP-011 cash deposit 30,000 today + 20,000 -> LVTR", CASH, "allow", "CMP-011", purpose="cash_deposit",
      amount="20000 CNY", history__cash_today_cny=30000),
    C("CMP-011 cash USD 10,000 -> LVTR", CASH, "allow", "CMP-011", amount="10000 USD"),
    C("CMP-011 cash USD 9,999.99 -> no report", CASH, "allow", "", amount="9999.99 USD"),
    C("CMP-011 USD 8,850 today + HKD 9,000 (USD 1,150) = exactly USD 10,000 -> LVTR", CASH, "allow", "CMP-011",
      amount="9000 HKD", history__cash_today_usd=8850),
    C("CMP-011 USD 8,850 today + HKD 8,999.99 -> no report", CASH, "allow", "", amount="8999.99 HKD",
      history__cash_today_usd=8850),
    C("CMP-011 HKD 60,000 (CNY 55,200 but USD 7,666.67): foreign cash compares in USD", CASH, "allow", "",
      amount="60000 HKD"),
    C("CMP-011 GBP 8,000 (USD 10,111.11) -> LVTR", CASH, "allow", "CMP-011", amount="8000 GBP"),
    C("CMP-011 not in force 2017-06-30", CASH, "allow", "", amount="50000 CNY",
      timestamp="2017-06-30T12:00:00+08:00"),
    # CMP-012: domestic natural-person transfers, inclusive >= CNY 500,000 / USD 100,000 per day
    C("CMP-012 CNY 600,000 domestic transfer (+ RSK-004)", P2P, "review", "CMP-012 RSK-004", amount="600000 CNY"),
    C("CMP-012 499,000 today + 1,000 = exactly CNY 500,000 -> LVTR", P2P, "allow", "CMP-012", amount="1000 CNY",
      history__transfers_today_cny=499000),
    C("CMP-012 499,000 today + 999.99 -> no report", P2P, "allow", "", amount="999.99 CNY",
      history__transfers_today_cny=499000),
    C("CMP-012 USD 99,900 today + USD 100 = exactly 100,000 -> LVTR", P2P, "allow", "CMP-012", amount="100 USD",
      history__transfers_today_usd=99900),
    C("CMP-012 USD 99,090 today + GBP 720 (USD 910) = exactly 100,000 -> LVTR", P2P, "allow", "CMP-012",
      amount="720 GBP", history__transfers_today_usd=99090),
    C("CMP-012 USD 99,090 today + GBP 719.99 -> no report", P2P, "allow", "", amount="719.99 GBP",
      history__transfers_today_usd=99090),
    C("CMP-012 explicit cross_border false counts as domestic", P2P, "allow", "CMP-012", cross_border=False,
      amount="1000 CNY", history__transfers_today_cny=499000),
    # CMP-013: cross-border natural-person transfers, inclusive >= CNY 200,000 / USD 10,000 (NOT USD 200,000)
    C("CMP-013 199,000 today + 1,000 = exactly CNY 200,000 -> LVTR", XB_P2P, "allow", "CMP-013", amount="1000 CNY",
      history__transfers_today_cny=199000),
    C("CMP-013 199,000 today + 999.99 -> no report", XB_P2P, "allow", "", amount="999.99 CNY",
      history__transfers_today_cny=199000),
    C("CMP-013 USD 9,900 today + USD 100 = exactly 10,000 -> LVTR", XB_P2P, "allow", "CMP-013", amount="100 USD",
      history__transfers_today_usd=9900),
    C("CMP-013 USD 9,900 today + USD 99.99 -> no report", XB_P2P, "allow", "", amount="99.99 USD",
      history__transfers_today_usd=9900),
    C("CMP-013 USD 9,220 today + EUR 720 (USD 780) = exactly 10,000 -> LVTR", XB_P2P, "allow", "CMP-013",
      amount="720 EUR", history__transfers_today_usd=9220),
    C("CMP-013 USD 9,220 today + EUR 719.99 -> no report", XB_P2P, "allow", "", amount="719.99 EUR",
      history__transfers_today_usd=9220),
    C("CMP-013 not CMP-012: domestic rule skips cross-border", XB_P2P, "allow", "CMP-013", amount="1000 CNY",
      history__transfers_today_cny=499000),
    # CMP-014: non-natural persons, inclusive >= CNY 2,000,000 / USD 200,000 per day
    C("CMP-014 business pays exactly CNY 2,000,000 -> LVTR", BUSINESS, "allow", "CMP-014", amount="2000000 CNY"),
    C("CMP-014 business pays CNY 1,999,999.99 -> no report", BUSINESS, "allow", "", amount="1999999.99 CNY"),
    C("CMP-014 business pays exactly USD 200,000 -> LVTR", BUSINESS, "allow", "CMP-014", amount="200000 USD"),
    C("CMP-014 business pays USD 199,999.99 -> no report", BUSINESS, "allow", "", amount="199999.99 USD"),
    C("CMP-014 USD 199,080 today + HKD 7,200 (USD 920) = exactly 200,000 -> LVTR", BUSINESS, "allow", "CMP-014",
      amount="7200 HKD", history__transfers_today_usd=199080),
    C("CMP-014 business loan repayment CNY 2,000,000 -> LVTR", BUSINESS, "allow", "CMP-014",
      purpose="loan_repayment", amount="2000000 CNY"),
    C("CMP-014 not for an individual paying CNY 2,000,000", PURCHASE, "allow", "", amount="2000000 CNY"),
    # CMP-015: resident FX purchases, USD 50,000 a year, fires at > (strict)
    C("CMP-015 USD 45,000 used + USD 5,000 = exactly 50,000 -> allow", FX, "allow", "", amount="5000 USD",
      history__fx_annual_used_usd=45000),
    C("CMP-015 USD 45,000 used + USD 5,000.01 -> review", FX, "review", "CMP-015", amount="5000.01 USD",
      history__fx_annual_used_usd=45000),
    C("CMP-015 49,000 used + CNY 7,200 (USD 1,000) = exactly 50,000 -> allow", FX, "allow", "", amount="7200 CNY",
      history__fx_annual_used_usd=49000),
    C("CMP-015 49,000 used + CNY 7,200.01 -> review", FX, "review", "CMP-015", amount="7200.01 CNY",
      history__fx_annual_used_usd=49000),
    C("CMP-015 49,155 used + EUR 780 (USD 845) = exactly 50,000 -> allow", FX, "allow", "", amount="780 EUR",
      history__fx_annual_used_usd=49155),
    C("CMP-015 49,155 used + EUR 780.01 -> review", FX, "review", "CMP-015", amount="780.01 EUR",
      history__fx_annual_used_usd=49155),
    C("CMP-015 49,090 used + GBP 720 (USD 910) = exactly 50,000 -> allow", FX, "allow", "", amount="720 GBP",
      history__fx_annual_used_usd=49090),
    C("CMP-015 49,090 used + GBP 720.01 -> review", FX, "review", "CMP-015", amount="720.01 GBP",
      history__fx_annual_used_usd=49090),
    C("CMP-015 49,080 used + HKD 7,200 (USD 920) = exactly 50,000 -> allow", FX, "allow", "", amount="7200 HKD",
      history__fx_annual_used_usd=49080),
    C("CMP-015 49,080 used + HKD 7,200.01 -> review", FX, "review", "CMP-015", amount="7200.01 HKD",
      history__fx_annual_used_usd=49080),
    C("CMP-015 card spending abroad without an FX purchase does not count", FX, "allow", "", fx_purchase=False,
      amount="60000 USD"),
    C("CMP-015 only for CN residents", FX, "allow", "", payer__residence_country="HK", amount="60000 USD"),
    # CMP-016 / CMP-017: gambling and lottery
    C("CMP-016 CN resident at an online casino with a debit card", PURCHASE, "deny", "CMP-016", purpose="gambling",
      merchant__mcc="7995", channel="online", payer__residence_country="CN"),
    C("CMP-016 CN resident gambling through a PSP in Macao", PURCHASE, "deny", "CMP-016", psp_country="MO",
      payer__residence_country="CN", merchant__mcc="7995", channel="online", amount="1000 HKD"),
    C("CMP-016 lottery bought online in CN", LOTTERY_WEB, "deny", "CMP-016", amount="20 CNY"),
    C("lottery at a licensed outlet in CN (pos, debit card) -> allow", LOTTERY_SHOP, "allow", "", amount="20 CNY",
      payer__age=30),
    C("CMP-017 17-year-old buys a lottery ticket in a shop", LOTTERY_SHOP, "deny", "CMP-017", payer__age=17,
      amount="20 CNY"),
    C("CMP-017 18-year-old buys a lottery ticket in a shop -> allow", LOTTERY_SHOP, "allow", "", payer__age=18,
      amount="20 CNY"),
    C("CMP-017 17-year-old in GB at a betting merchant", {**GB, "merchant__mcc": "7995"}, "deny", "CMP-017",
      purpose="merchant_purchase", payer__age=17, amount="10 GBP"),
    # CMP-018: minors' game spending (CN): none under 8; 8-15 CNY 50 / 200 a month; 16-17 CNY 100 / 400; fires at >
    C("CMP-018 age 7: even CNY 1 -> deny", GAME, "deny", "CMP-018", payer__age=7, amount="1 CNY"),
    C("CMP-018 age 8: CNY 1 -> allow", GAME, "allow", "", payer__age=8, amount="1 CNY"),
    C("CMP-018 age 8: exactly CNY 50 per top-up -> allow", GAME, "allow", "", payer__age=8, amount="50 CNY"),
    C("CMP-018 age 8: CNY 50.01 per top-up -> deny", GAME, "deny", "CMP-018", payer__age=8, amount="50.01 CNY"),
    C("CMP-018 age 15: 150 this month + 50 = exactly 200 -> allow", GAME, "allow", "", payer__age=15,
      amount="50 CNY", history__game_topup_month_cny=150),
    C("CMP-018 age 15: 150.01 this month + 50 -> deny", GAME, "deny", "CMP-018", payer__age=15, amount="50 CNY",
      history__game_topup_month_cny=150.01),
    C("CMP-018 age 15: CNY 60 per top-up -> deny", GAME, "deny", "CMP-018", payer__age=15, amount="60 CNY"),
    C("CMP-018 age 15: USD 6.94 (CNY 49.968) -> allow", GAME, "allow", "", payer__age=15, amount="6.94 USD"),
    C("CMP-018 age 15: USD 6.95 (CNY 50.04) -> deny", GAME, "deny", "CMP-018", payer__age=15, amount="6.95 USD"),
    C("CMP-018 age 16: CNY 60 per top-up -> allow", GAME, "allow", "", payer__age=16, amount="60 CNY"),
    C("CMP-018 age 16: exactly CNY 100 per top-up -> allow", GAME, "allow", "", payer__age=16, amount="100 CNY"),
    C("CMP-018 age 16: CNY 100.01 per top-up -> deny", GAME, "deny", "CMP-018", payer__age=16,
      amount="100.01 CNY"),
    C("CMP-018 age 17: 300 this month + 100 = exactly 400 -> allow", GAME, "allow", "", payer__age=17,
      amount="100 CNY", history__game_topup_month_cny=300),
    C("CMP-018 age 17: 300.01 this month + 100 -> deny", GAME, "deny", "CMP-018", payer__age=17, amount="100 CNY",
      history__game_topup_month_cny=300.01),
    C("CMP-018 age 17: CNY 100.01 per top-up -> deny", GAME, "deny", "CMP-018", payer__age=17,
      amount="100.01 CNY"),
    C("CMP-018 age 18: CNY 100.01 -> allow", GAME, "allow", "", payer__age=18, amount="100.01 CNY",
      history__game_topup_month_cny=1000),
    C("CMP-018 age missing: no game limit", GAME, "allow", "", amount="500 CNY"),
    C("CMP-018 not in force 2019-11-04 (age 14, CNY 60)", GAME, "allow", "", payer__age=14, amount="60 CNY",
      timestamp="2019-11-04T20:00:00+08:00"),
    C("CMP-019 payer without real-name verification", PURCHASE, "deny", "CMP-019", payer__kyc_level="none"),
    C("CMP-020 crypto purchase in CN with a debit card", PURCHASE, "deny", "CMP-020", purpose="crypto_purchase"),
    C("CMP-020 crypto wallet pays a merchant in CN", PURCHASE, "deny", "CMP-020", funding_source__type="crypto"),
    C("crypto wallet pays a merchant in SG -> allow", PURCHASE, "allow", "", funding_source__type="crypto",
      psp_country="SG", amount="100 USD"),
    C("CMP-021 CN credit card at a securities broker (6211)", CREDIT, "deny", "CMP-021", merchant__mcc="6211"),
    C("CMP-021 only in CN: HK PSP credit card at 6012", CREDIT, "allow", "", merchant__mcc="6012", psp_country="HK",
      amount="100 HKD"),
    # CMP-022: US CTR, cash of MORE than USD 10,000 (strict)
    C("CMP-022 US cash exactly USD 10,000 -> no CTR", US_CASH, "allow", "", amount="10000 USD"),
    C("CMP-022 US cash USD 10,000.01 -> CTR", US_CASH, "allow", "CMP-022", amount="10000.01 USD"),
    C("CMP-022 US cash USD 5,000 today + 5,000 = exactly 10,000 -> no CTR", US_CASH, "allow", "", amount="5000 USD",
      history__cash_today_usd=5000),
    C("CMP-022 US cash USD 5,000 today + 5,000.01 -> CTR", US_CASH, "allow", "CMP-022", amount="5000.01 USD",
      history__cash_today_usd=5000),
    C("CMP-022 US cash CNY 72,000 (= USD 10,000) -> no CTR", US_CASH, "allow", "", amount="72000 CNY"),
    C("CMP-022 US cash CNY 72,000.01 -> CTR", US_CASH, "allow", "CMP-022", amount="72000.01 CNY"),
    C("CMP-022 US cash HKD 78,260.86 (USD 9,999.9988) -> no CTR", US_CASH, "allow", "", amount="78260.86 HKD"),
    C("CMP-022 US cash HKD 78,260.87 (USD 10,000.00006) -> CTR", US_CASH, "allow", "CMP-022",
      amount="78260.87 HKD"),
    C("CMP-022 US cash deposit USD 12,000 -> CTR", US_CASH, "allow", "CMP-022", purpose="cash_deposit",
      amount="12000 USD"),
    # CMP-023 / CMP-024: PSD2 SCA for remote EEA card payments; TRA up to EUR 250 (score < 65); low value
    # EUR 30 each and, since the last SCA, fewer than 5 exempted payments and at most EUR 100 in total
    C("CMP-023 EUR 250 with a low score: TRA exemption -> allow", EEA, "allow", "", amount="250 EUR"),
    C("CMP-023 EUR 250.01 without SCA -> step_up", EEA, "step_up", "CMP-023", amount="250.01 EUR"),
    C("CMP-023 CNY 1,950 (= EUR 250) -> allow", EEA, "allow", "", amount="1950 CNY"),
    C("CMP-023 CNY 1,950.01 -> step_up", EEA, "step_up", "CMP-023", amount="1950.01 CNY"),
    C("CMP-023 GBP 214.28 (EUR 249.99) -> allow", EEA, "allow", "", amount="214.28 GBP"),
    C("CMP-023 GBP 214.29 (EUR 250.005) -> step_up", EEA, "step_up", "CMP-023", amount="214.29 GBP"),
    C("CMP-023 HKD 2,119.56 (EUR 249.9994) -> allow", EEA, "allow", "", amount="2119.56 HKD"),
    C("CMP-023 HKD 2,119.57 (EUR 250.0006) -> step_up", EEA, "step_up", "CMP-023", amount="2119.57 HKD"),
    C("CMP-023 credit card in-app EUR 300", {**EEA, **CREDIT, "funding_source__issuer_country": "FR"}, "step_up",
      "CMP-023", channel="in_app", amount="300 EUR", ip_country="FR"),
    C("CMP-023 EUR 300 with SCA performed -> allow", EEA, "allow", "", amount="300 EUR", auth__sca_performed=True),
    C("CMP-023 EUR 300 contactless in store (pos) without SCA -> out of scope", EEA_NO_SCORE, "allow", "",
      channel="pos", amount="300 EUR"),
    C("CMP-023 EUR 300 by bank transfer (not a card) -> out of scope", EEA, "allow", "",
      funding_source__type="bank_transfer", amount="300 EUR"),
    C("CMP-023 US-issued card at a DE merchant -> out of scope", EEA, "allow", "",
      funding_source__issuer_country="US", ip_country="US", amount="300 EUR"),
    C("CMP-023 not in force 2019-09-13", EEA, "allow", "", amount="300 EUR", timestamp="2019-09-13T12:00:00+02:00"),
    C("CMP-023 first day in force 2019-09-14", EEA, "step_up", "CMP-023", amount="300 EUR",
      timestamp="2019-09-14T12:00:00+02:00"),
    C("CMP-024 EUR 250, no risk score (no TRA) -> step_up", EEA_NO_SCORE, "step_up", "CMP-024", amount="250 EUR"),
    C("CMP-024 EUR 30, no score: low-value exemption -> allow", EEA_NO_SCORE, "allow", "", amount="30 EUR"),
    C("CMP-024 EUR 30.01, no score -> step_up", EEA_NO_SCORE, "step_up", "CMP-024", amount="30.01 EUR"),
    C("CMP-024 CNY 234 (= EUR 30), no score -> allow", EEA_NO_SCORE, "allow", "", amount="234 CNY"),
    C("CMP-024 CNY 234.01, no score -> step_up", EEA_NO_SCORE, "step_up", "CMP-024", amount="234.01 CNY"),
    C("CMP-024 GBP 25.71 (EUR 29.995), no score -> allow", EEA_NO_SCORE, "allow", "", amount="25.71 GBP"),
    C("CMP-024 GBP 25.72 (EUR 30.007), no score -> step_up", EEA_NO_SCORE, "step_up", "CMP-024",
      amount="25.72 GBP"),
    C("CMP-024 exempted EUR 75 + EUR 25 = exactly 100 -> still exempt", EEA_NO_SCORE, "allow", "", amount="25 EUR",
      history__sca_exempt_count_since_sca=1, history__sca_exempt_amount_since_sca_eur=75),
    C("CMP-024 exempted EUR 75.01 + EUR 25 -> step_up", EEA_NO_SCORE, "step_up", "CMP-024", amount="25 EUR",
      history__sca_exempt_count_since_sca=1, history__sca_exempt_amount_since_sca_eur=75.01),
    C("CMP-024 4 exempted payments since SCA -> still exempt", EEA_NO_SCORE, "allow", "", amount="10 EUR",
      history__sca_exempt_count_since_sca=4, history__sca_exempt_amount_since_sca_eur=40),
    C("CMP-024 5 exempted payments since SCA -> step_up", EEA_NO_SCORE, "step_up", "CMP-024", amount="10 EUR",
      history__sca_exempt_count_since_sca=5, history__sca_exempt_amount_since_sca_eur=40),
    C("CMP-024 EUR 100 with score 64: TRA -> allow", EEA, "allow", "", amount="100 EUR", risk_score=64),
    C("CMP-024 EUR 100 with score 65: no TRA -> step_up (+ RSK-002)", EEA, "review", "CMP-024 RSK-002",
      amount="100 EUR", risk_score=65),
    C("CMP-024 5 exempted payments but score 12: TRA -> allow", EEA, "allow", "", amount="10 EUR",
      history__sca_exempt_count_since_sca=5),
    C("CMP-024 EUR 100 in-app without a score, SCA flag absent -> step_up", EEA_NO_SCORE, "step_up", "CMP-024",
      channel="in_app", amount="100 EUR"),

    # ================================================================================ risk
    C("RSK-001 score exactly 75 -> deny", PURCHASE, "deny", "RSK-001", risk_score=75),
    C("RSK-001 score 99 -> deny", PURCHASE, "deny", "RSK-001", risk_score=99),
    C("RSK-002 score 74 -> review", PURCHASE, "review", "RSK-002", risk_score=74),
    C("RSK-002 score exactly 65 -> review", PURCHASE, "review", "RSK-002", risk_score=65),
    C("RSK-002 score 64 -> allow", PURCHASE, "allow", "", risk_score=64),
    C("RSK-003 9 payments in the last hour -> allow", PURCHASE, "allow", "", history__payer_txn_count_1h=9),
    C("RSK-003 10 payments in the last hour -> review", PURCHASE, "review", "RSK-003",
      history__payer_txn_count_1h=10),
    C("review beats step_up: RSK-003 + RSK-006 both in the trail", NEW_DEVICE, "review", "RSK-003 RSK-006",
      amount="5000 CNY", history__payer_txn_count_1h=10),
    C("deny beats review: RSK-001 + RSK-003", PURCHASE, "deny", "RSK-001 RSK-003", risk_score=80,
      history__payer_txn_count_1h=12),
    # RSK-004: P2P over CNY 30,000 in 24 h, fires at >
    C("RSK-004 P2P 25,000 + 5,000 = exactly 30,000 -> allow", P2P, "allow", "", amount="5000 CNY",
      history__p2p_amount_24h_cny=25000),
    C("RSK-004 P2P 25,000 + 5,000.01 -> review", P2P, "review", "RSK-004", amount="5000.01 CNY",
      history__p2p_amount_24h_cny=25000),
    C("RSK-004 first P2P of exactly CNY 30,000 (no history) -> allow", P2P, "allow", "", amount="30000 CNY"),
    C("RSK-004 P2P 29,090 + GBP 100 (CNY 910) = exactly 30,000 -> allow", P2P, "allow", "", amount="100 GBP",
      history__p2p_amount_24h_cny=29090),
    C("RSK-004 P2P 29,090 + GBP 100.01 -> review", P2P, "review", "RSK-004", amount="100.01 GBP",
      history__p2p_amount_24h_cny=29090),
    C("RSK-005 device used by 3 payers -> review", PURCHASE, "review", "RSK-005", device__id="d-1",
      device__distinct_payers_24h=3),
    C("RSK-005 device used by 2 payers -> allow", PURCHASE, "allow", "", device__id="d-1",
      device__distinct_payers_24h=2),
    # RSK-006: new device and CNY >= 5,000
    C("RSK-006 new device CNY 4,999.99 -> allow", NEW_DEVICE, "allow", "", amount="4999.99 CNY"),
    C("RSK-006 new device exactly CNY 5,000 -> step_up", NEW_DEVICE, "step_up", "RSK-006", amount="5000 CNY"),
    C("RSK-006 new device USD 694.44 (CNY 4,999.968) -> allow", NEW_DEVICE, "allow", "", amount="694.44 USD"),
    C("RSK-006 new device USD 694.45 (CNY 5,000.04) -> step_up", NEW_DEVICE, "step_up", "RSK-006",
      amount="694.45 USD"),
    C("RSK-006 new device HKD 5,434.78 (CNY 4,999.9976) -> allow", NEW_DEVICE, "allow", "", amount="5434.78 HKD"),
    C("RSK-006 new device HKD 5,434.79 (CNY 5,000.0068) -> step_up", NEW_DEVICE, "step_up", "RSK-006",
      amount="5434.79 HKD"),
    C("RSK-006 new device GBP 549.45 (CNY 4,999.995) -> allow", NEW_DEVICE, "allow", "", amount="549.45 GBP"),
    C("RSK-006 new device GBP 549.46 (CNY 5,000.086) -> step_up", NEW_DEVICE, "step_up", "RSK-006",
      amount="549.46 GBP"),
    C("RSK-006 known device CNY 50,000 -> allow", PURCHASE, "allow", "", device__id="d-1", device__is_new=False,
      amount="50000 CNY"),
    # RSK-007: first ever payment above CNY 2,000 (strict)
    C("RSK-007 first payment exactly CNY 2,000 -> allow", PURCHASE, "allow", "", amount="2000 CNY",
      history__lifetime_txn_count=0),
    C("RSK-007 first payment CNY 2,000.01 -> review", PURCHASE, "review", "RSK-007", amount="2000.01 CNY",
      history__lifetime_txn_count=0),
    C("RSK-007 first payment USD 277.77 (CNY 1,999.944) -> allow", PURCHASE, "allow", "", amount="277.77 USD",
      history__lifetime_txn_count=0),
    C("RSK-007 first payment USD 277.78 (CNY 2,000.016) -> review", PURCHASE, "review", "RSK-007",
      amount="277.78 USD", history__lifetime_txn_count=0),
    C("RSK-007 second payment CNY 3,000 -> allow", PURCHASE, "allow", "", amount="3000 CNY",
      history__lifetime_txn_count=1),
    # RSK-008: card BIN country != IP country, CNY >= 1,000
    C("RSK-008 US card from a CN IP, CNY 999.99 -> allow", CARD_FROM_US, "allow", "", amount="999.99 CNY"),
    C("RSK-008 US card from a CN IP, exactly CNY 1,000 -> step_up", CARD_FROM_US, "step_up", "RSK-008",
      amount="1000 CNY"),
    C("RSK-008 GBP 109.89 (CNY 999.999) -> allow", CARD_FROM_US, "allow", "", amount="109.89 GBP"),
    C("RSK-008 GBP 109.90 (CNY 1,000.09) -> step_up", CARD_FROM_US, "step_up", "RSK-008", amount="109.90 GBP"),
    C("RSK-008 HKD 1,086.95 (CNY 999.994) -> allow", CARD_FROM_US, "allow", "", amount="1086.95 HKD"),
    C("RSK-008 HKD 1,086.96 (CNY 1,000.0032) -> step_up", CARD_FROM_US, "step_up", "RSK-008",
      amount="1086.96 HKD"),
    C("RSK-008 missing ip_country: skipped, CMP-003 undecided -> review", CARD_FROM_US, "review", "",
      undecided="CMP-003", ip_country=DELETE, amount="5000 CNY"),
    C("RSK-008 missing issuer country never fires", CARD_FROM_US, "allow", "", funding_source__issuer_country=DELETE,
      amount="5000 CNY"),
    C("RSK-008 same country -> allow", CARD_FROM_US, "allow", "", ip_country="US", amount="5000 CNY"),
    C("RSK-008 not for bank transfers", CARD_FROM_US, "allow", "", funding_source__type="bank_transfer",
      amount="5000 CNY"),
    # RSK-009: account younger than 7 days sending CNY >= 5,000
    C("RSK-009 6-day-old account sends CNY 5,000 -> review", P2P, "review", "RSK-009", payer__account_age_days=6,
      amount="5000 CNY"),
    C("RSK-009 6-day-old account sends CNY 4,999.99 -> allow", P2P, "allow", "", payer__account_age_days=6,
      amount="4999.99 CNY"),
    C("RSK-009 7-day-old account sends CNY 5,000 -> allow", P2P, "allow", "", payer__account_age_days=7,
      amount="5000 CNY"),
    # RSK-010: P2P of CNY >= 10,000 before 06:00 local time in the PSP's timezone (CN: Beijing), never in the
    # offset the caller wrote: one instant, one decision
    C("RSK-010 CNY 10,000 at 05:59 +08:00 -> review", P2P, "review", "RSK-010", amount="10000 CNY",
      timestamp="2025-06-10T05:59:59+08:00"),
    C("RSK-010 CNY 10,000 at 06:00 +08:00 -> allow", P2P, "allow", "", amount="10000 CNY",
      timestamp="2025-06-10T06:00:00+08:00"),
    C("RSK-010 CNY 10,000 at 00:00 +08:00 -> review", P2P, "review", "RSK-010", amount="10000 CNY",
      timestamp="2025-06-10T00:00:00+08:00"),
    C("RSK-010 CNY 9,999.99 at 02:30 +08:00 -> allow", P2P, "allow", "", amount="9999.99 CNY",
      timestamp="2025-06-10T02:30:00+08:00"),
    C("RSK-010 05:30 -05:00 is 18:30 in Beijing -> allow", P2P, "allow", "", amount="10000 CNY",
      timestamp="2025-06-10T05:30:00-05:00"),
    C("RSK-010 21:30Z is 05:30 in Beijing -> review", P2P, "review", "RSK-010", amount="10000 CNY",
      timestamp="2025-06-09T21:30:00Z"),
    C("RSK-010 14:30 +08:00 is 06:30 UTC, hour 14 -> allow", P2P, "allow", "", amount="10000 CNY",
      timestamp="2025-06-10T14:30:00+08:00"),
    C("RSK-010 05:00 +05:45 is 07:15 in Beijing -> allow", P2P, "allow", "", amount="10000 CNY",
      timestamp="2025-06-10T05:00:00+05:45"),
    C("RSK-010 CNY 20,000 at 02:30 +08:00 -> review", P2P, "review", "RSK-010", amount="20000 CNY",
      timestamp="2025-06-10T02:30:00+08:00"),
    C("RSK-010 the same instant written 2025-06-09T18:30:00Z -> review", P2P, "review", "RSK-010",
      amount="20000 CNY", timestamp="2025-06-09T18:30:00Z"),
    C("RSK-010 USD 1,388.89 (CNY 10,000.008) at 03:00 -> review", P2P, "review", "RSK-010", amount="1388.89 USD",
      timestamp="2025-06-10T03:00:00+08:00"),
    C("RSK-010 USD 1,388.88 (CNY 9,999.936) at 03:00 -> allow", P2P, "allow", "", amount="1388.88 USD",
      timestamp="2025-06-10T03:00:00+08:00"),
    # RSK-011: third cash payment just below a report threshold in 7 days; CN CNY [45,000, 50,000), US [9,000, 10,000]
    C("RSK-011 CN third cash CNY 45,000 -> review", CASH, "review", "RSK-011", amount="45000 CNY",
      history__near_threshold_count_7d=2),
    C("RSK-011 CN third cash CNY 44,999.99 -> allow", CASH, "allow", "", amount="44999.99 CNY",
      history__near_threshold_count_7d=2),
    C("RSK-011 CN third cash CNY 49,999.99 -> review", CASH, "review", "RSK-011", amount="49999.99 CNY",
      history__near_threshold_count_7d=2),
    C("RSK-011 CN third cash exactly CNY 50,000 -> LVTR, not structuring", CASH, "allow", "CMP-011",
      amount="50000 CNY", history__near_threshold_count_7d=2),
    C("RSK-011 CN second cash CNY 45,000 (count 1) -> allow", CASH, "allow", "", amount="45000 CNY",
      history__near_threshold_count_7d=1),
    C("RSK-011 + CMP-011: 10,000 earlier today + 45,000", CASH, "review", "RSK-011 CMP-011", amount="45000 CNY",
      history__near_threshold_count_7d=2, history__cash_today_cny=10000),
    C("RSK-011 CN band needs a CNY amount: HKD 50,000 (CNY 46,000) -> allow", CASH, "allow", "",
      amount="50000 HKD", history__near_threshold_count_7d=2),
    C("RSK-011 US third cash exactly USD 9,000 -> review", US_CASH, "review", "RSK-011", amount="9000 USD",
      history__near_threshold_count_7d=2),
    C("RSK-011 US third cash USD 8,999.99 -> allow", US_CASH, "allow", "", amount="8999.99 USD",
      history__near_threshold_count_7d=2),
    C("RSK-011 US third cash exactly USD 10,000 -> review, no CTR", US_CASH, "review", "RSK-011",
      amount="10000 USD", history__near_threshold_count_7d=2),
    C("RSK-011 US third cash USD 10,000.01 -> CTR only", US_CASH, "allow", "CMP-022", amount="10000.01 USD",
      history__near_threshold_count_7d=2),
    C("RSK-011 US third cash CNY 64,800 (= USD 9,000) -> review", US_CASH, "review", "RSK-011",
      amount="64800 CNY", history__near_threshold_count_7d=2),
    C("RSK-011 US third cash CNY 64,799.99 -> allow", US_CASH, "allow", "", amount="64799.99 CNY",
      history__near_threshold_count_7d=2),
    C("RSK-012 BNPL overdue 1 day -> deny", BNPL, "deny", "RSK-012", funding_source__overdue_days=1),
    C("RSK-012 BNPL not overdue -> allow", BNPL, "allow", "", funding_source__overdue_days=0),
    C("RSK-013 credit card 30 days past due -> deny", CREDIT, "deny", "RSK-013", funding_source__overdue_days=30),
    C("RSK-013 credit card 29 days past due -> allow", CREDIT, "allow", "", funding_source__overdue_days=29),
    C("RSK-013 consumer loan 90 days past due -> deny", LOAN, "deny", "RSK-013", funding_source__overdue_days=90),
    # RSK-014: amount above available credit (strict)
    C("RSK-014 BNPL amount equal to available credit -> allow", BNPL, "allow", "", amount="5000 CNY",
      funding_source__available_credit_cny=5000),
    C("RSK-014 BNPL one fen above available credit -> deny", BNPL, "deny", "RSK-014", amount="5000.01 CNY",
      funding_source__available_credit_cny=5000),
    C("RSK-014 HKD 1,000 (CNY 920) with CNY 920 available -> allow", BNPL, "allow", "", amount="1000 HKD",
      funding_source__available_credit_cny=920),
    C("RSK-014 HKD 1,000.01 with CNY 920 available -> deny", BNPL, "deny", "RSK-014", amount="1000.01 HKD",
      funding_source__available_credit_cny=920),
    C("RSK-014 credit card EUR 100 (CNY 780) with CNY 780 available -> allow", CREDIT, "allow", "",
      amount="100 EUR", funding_source__available_credit_cny=780),
    C("RSK-014 credit card EUR 100.01 with CNY 780 available -> deny", CREDIT, "deny", "RSK-014",
      amount="100.01 EUR", funding_source__available_credit_cny=780),
    C("RSK-014 missing available credit -> undecided, review", BNPL, "review", "", undecided="RSK-014",
      amount="50000 CNY", funding_source__available_credit_cny=DELETE),
    C("RSK-014 debit card: no credit check", PURCHASE, "allow", "", amount="5000 CNY",
      funding_source__available_credit_cny=100),
    C("seed variant: Baitiao repays a card, overdue and over its limit", BNPL, "deny", "FS-001 RSK-012 RSK-014",
      purpose="credit_card_repayment", amount="12000 CNY", funding_source__overdue_days=5),
    # RSK-015: first transfer to a new payee of CNY >= 5,000
    C("RSK-015 new payee CNY 5,000 -> step_up", P2P, "step_up", "RSK-015", payee__first_time=True,
      amount="5000 CNY"),
    C("RSK-015 new payee CNY 4,999.99 -> allow", P2P, "allow", "", payee__first_time=True, amount="4999.99 CNY"),
    C("RSK-015 known payee CNY 5,000 -> allow", P2P, "allow", "", payee__first_time=False, amount="5000 CNY"),
    C("RSK-016 credit card at a merchant the payer controls", CREDIT, "deny", "RSK-016",
      merchant__linked_to_payer=True, channel="pos", amount="9800 CNY"),
    C("RSK-016 debit card at own merchant -> allow", PURCHASE, "allow", "", merchant__linked_to_payer=True),
    C("RSK-017 3 declines in the last hour -> review", PURCHASE, "review", "RSK-017", history__decline_count_1h=3),
    C("RSK-017 2 declines in the last hour -> allow", PURCHASE, "allow", "", history__decline_count_1h=2),
    C("only required fields -> allow", PURCHASE, "allow", ""),
]


# --------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module", params=MATCHERS)
def engine(request):
    eng = PolicyEngine.from_path(None, matcher=request.param)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def pack():
    return PolicyEngine.from_path(None).ruleset


@pytest.fixture(scope="module")
def catalogue() -> dict:
    if not CATALOGUE.is_file():
        pytest.skip(f"shared spec not available: {CATALOGUE} is missing, so catalogue conformance is not checked")
    with open(CATALOGUE, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _ids(cases: list[Case]) -> list[str]:
    return [c.name for c in cases]


# --------------------------------------------------------------------------------------------- 1. conformance
def test_pack_has_exactly_the_catalogue_rule_ids(pack, catalogue):
    pack_ids = [r.id for r in pack.rules]
    assert len(pack_ids) == len(set(pack_ids)), "duplicate rule ids in the pack"
    catalogued = {r["id"] for r in catalogue["rules"]}
    assert set(pack_ids) - set(EXTENSIONS) == catalogued
    assert set(EXTENSIONS) <= set(pack_ids) and not set(EXTENSIONS) & catalogued


def test_pack_rules_match_catalogue_category_outcome_report(pack, catalogue):
    by_id = {r.id: r for r in pack.rules}
    mismatches = []
    for spec in catalogue["rules"]:
        rule = by_id.get(spec["id"])
        if rule is None:
            continue  # reported by test_pack_has_exactly_the_catalogue_rule_ids
        for key in ("category", "outcome", "report", "verified"):
            if getattr(rule, key) != spec.get(key):
                mismatches.append(f"{rule.id}.{key}: pack {getattr(rule, key)!r} != catalogue {spec.get(key)!r}")
    assert not mismatches, "\n".join(mismatches)


def test_every_rule_has_a_source_and_a_verified_flag(pack):
    for rule in pack.rules:
        assert isinstance(rule.source, str) and rule.source.strip(), rule.id
        assert isinstance(rule.verified, bool), rule.id


def test_pack_lists_and_rates_match_the_catalogue_today(pack, catalogue):
    today = dt.date(2025, 7, 1).toordinal()  # the catalogue's lists are "as of 2025-07" (Syria lifted)
    for name, values in catalogue["lists"].items():
        members = [item.value for item in pack.lists[name] if item.applies(today)]
        assert members == values, name
    rates = {k: Decimal(v) for k, v in catalogue["reference_fx"].items()}
    assert {k: Decimal(v) for k, v in pack.fx_for(today).rates.items()} == rates


# --------------------------------------------------------------------------------------------- 2. the table
@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_case(engine, case):
    d = engine.evaluate(case.request)
    assert set(d.rule_ids) == case.rules
    assert d.decision.value == case.decision
    if case.undecided is not None:
        assert set(d.undecided_ids) == case.undecided
    expected_reports = {r.report for r in engine.ruleset.rules if r.id in case.rules and r.report}
    assert {o["report"] for o in d.obligations} == expected_reports


def test_case_names_are_unique():
    names = _ids(CASES)
    assert len(names) == len(set(names)), [n for n in names if names.count(n) > 1]


def test_table_decisions_follow_from_the_rule_outcomes(pack):
    """Guards the table itself: each row's decision is the most severe outcome of its expected rules and of the
    `on_unknown` outcomes of its expected undecided rules."""
    outcome = {r.id: r.outcome for r in pack.rules}
    on_unknown = {r.id: r.on_unknown for r in pack.rules}
    for case in CASES:
        assert case.rules <= outcome.keys(), (case.name, case.rules - outcome.keys())
        outcomes = [outcome[i] for i in case.rules] + [on_unknown[i] for i in case.undecided or ()]
        want = min(outcomes, key=SEVERITY.index, default="allow")
        assert case.decision == want, case.name


# --------------------------------------------------------------------------------------------- 3. coverage
def test_every_rule_of_the_pack_fires_in_some_row(pack):
    expected = set().union(*(c.rules for c in CASES))
    all_ids = {r.id for r in pack.rules}
    assert all_ids - expected == set(), f"rules no row of the table fires: {sorted(all_ids - expected)}"
    assert expected - all_ids == set(), f"rows expect rules the pack does not have: {sorted(expected - all_ids)}"


def test_fired_rules_across_the_table_equal_the_expected_union(engine):
    fired: set[str] = set()
    for case in CASES:
        fired.update(engine.evaluate(case.request).rule_ids)
    assert fired == set().union(*(c.rules for c in CASES))


# --------------------------------------------------------------------------------------------- 4. reasons
@pytest.mark.parametrize("case", [c for c in CASES if c.rules], ids=_ids([c for c in CASES if c.rules]))
def test_reasons_render(engine, case):
    for entry in engine.evaluate(case.request).trail:
        assert entry.reason.strip(), entry.rule_id
        assert "<missing" not in entry.reason, (entry.rule_id, entry.reason)
        if entry.reason_zh is not None:
            assert "<missing" not in entry.reason_zh, (entry.rule_id, entry.reason_zh)


def test_seed_reason_explains_credit_to_credit(engine):
    seed = next(c for c in CASES if c.name.startswith("FS-001 seed"))
    d = engine.evaluate(seed.request)
    reason = next(e.reason for e in d.trail if e.rule_id == "FS-001").lower()
    assert "credit card" in reason
    assert "own funds" in reason
