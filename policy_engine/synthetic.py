"""Seeded synthetic payment traffic for backtesting, following DOMAIN.md §8.2.

Why a generator: no package ships real payment data (DOMAIN.md §8.1), and a backtest needs traffic whose
``history.*`` counters are consistent with the payments themselves, or velocity and cumulative-cap rules
(RSK-003/004, CMP-004 … CMP-010) fire at random.

Design: **day by day, streamed, time-ordered.**

1. The payer population (profile, instruments, devices) is drawn once. Each payer keeps a small rolling state:
   lifetime count, the last hour's timestamps, the last 24 h of P2P amounts, the last 7 days of near-threshold
   cash, and today's / this month's / this year's totals.
2. For each day: phase one draws, payer by payer, that day's number of payments and their times of day, as
   compact ``(second, payer)`` pairs; phase two sorts the day by time (ties by payer index); phase three walks
   the day in time order, draws each payment's details, reads ``history.*`` from the payer's state (so it holds
   only that payer's *earlier* payments, never the current one) and then adds the payment to the state.
3. Memory is the population plus one day's pairs, however many payments are written. Payments come out in
   timestamp order across all payers, as a replay of a day's log would.

Reproducible: a single ``random.Random(seed)`` makes every draw in a fixed order; requests are built with a fixed
key order; money is exact (integer minor units, written as JSON numbers with the currency's decimals). The same
seed gives the same bytes.

Counters start at zero on the first generated day (as if the feature store began recording then), except
``payer.account_age_days``, which is drawn per payer and grows by one a day. Counters the generator does not model
(declines, FX purchases, PSD2 exemptions) are written as 0. Every payment counts towards its payer's history,
labelled ones included: history records attempts, not decisions the generator cannot know.

Statuses (``statuses=True``): each payment also gets the top-level ``status`` a backtest reads (``completed``,
``failed`` or ``reversed``), drawn from a second generator seeded from the first, so the payments themselves are
the same with or without statuses. A failed or reversed payment then stops counting towards the counters that
count payments not denied (limits, ``counts: allowed`` in rules/aggregates.yaml), as the engine's own counters
do; velocity and structuring counters count attempts. ``counters=False`` leaves ``history`` out, for a backtest
to recompute the counters from the payments themselves (policy_engine.backtesting.history).

Outcome labels (``labels=True``): what each payment turned out to be, for the backtest's label metrics, with the
day it became known (``label_known_at``, days to weeks after the payment), drawn from a third generator so the
payments are the same with or without them: account takeovers become ``fraud``, funding/purpose violations keep
their known-bad ``{kind, pattern}`` label, and normal payments are ``chargeback`` (0.3 %) or ``legit``.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, TextIO

from .errors import PolicyEngineError
from .request import EARLIEST, LATEST


class SyntheticError(PolicyEngineError):
    """The traffic specification cannot be generated (the message says which parameter to change)."""


#: Expected payments per payer and day: E[floor(X)] for X ~ Exp(mean 2) is e^-1/2 / (1 - e^-1/2) ≈ 1.54; the cap
#: at 20 changes it by less than 1e-4. Used to size the population for a requested number of payments.
MEAN_DAILY_PAYMENTS = math.exp(-0.5) / (1 - math.exp(-0.5))
DEFAULT_START = dt.date(2025, 6, 1)
DEFAULT_DAYS = 30
UTC8 = dt.timezone(dt.timedelta(hours=8))

# -- §8.2 distributions (assumptions [R]) -------------------------------------------------------------------
HOUR_WEIGHTS = (1, 0.6, 0.4, 0.3, 0.3, 0.5, 1.5, 3, 4.5, 5, 5, 6, 7.5, 6, 5, 5, 5.5, 6, 6.5, 7, 7.5, 6.5, 4.5, 2.5)
RESIDENCE = (("CN", 95), ("HK", 2), ("US", 1), ("GB", 1), ("DE", 1))
TIERS = (("III", "enhanced", 75), ("II", "standard", 23), ("I", "basic", 2))
CHANNELS = (("in_app", 60), ("online", 20), ("pos", 14), ("qr_static", 6))
ATO_IP_COUNTRIES = ("NG", "RU", "US", "KP")
CROSS_BORDER_COUNTRIES = ("US", "JP", "HK", "KR")
#: Price currency of a cross-border merchant. The default pack has no KRW rate (CMP-000 would deny every Korean
#: purchase), so Korean merchants are priced in USD, as many cross-border storefronts are.
MERCHANT_CURRENCY = {"US": "USD", "JP": "JPY", "HK": "HKD", "KR": "USD"}
#: CNY per unit: the default pack's static test rates; used to price foreign purchases and to add them to
#: CNY-denominated history in fen (rounded half-even: history is stored at the currency's precision).
RATES = {"CNY": Decimal(1), "USD": Decimal("7.2"), "HKD": Decimal("0.92"), "JPY": Decimal("0.048")}
DECIMALS = {"CNY": 2, "USD": 2, "HKD": 2, "EUR": 2, "JPY": 0}
BANKS = ("ICBC", "CCB", "BOC", "ABC", "CMB", "BOCOM")
FOREIGN_BANKS = {"HK": "HSBC HK", "US": "Chase", "GB": "Barclays", "DE": "Deutsche Bank"}
BNPL_PRODUCTS = (("baitiao", "JD Technology"), ("huabei", "Ant Group"))
LOAN_PRODUCTS = (("jintiao", "JD Technology"), ("jiebei", "Ant Group"), ("bank_consumer_loan", "CMB"))
PAYEE_PURPOSES = {"p2p_transfer": "individual", "credit_card_repayment": "card_issuer",
                  "loan_repayment": "lender", "cash_withdrawal": "bank"}
MCCS = {
    "merchant_purchase": ("5411", "5812", "5814", "5311", "5651", "5732", "4121", "5816", "5999"),
    "medical": ("8062", "8011", "5912"),
    "tuition": ("8220", "8211"),
    "fund_investment": ("6211",),
    "securities_investment": ("6211",),
    "cross_border_purchase": ("5311", "5732", "5651"),
    "lottery": ("9406",),
}
OTHER_MCC = "5999"
GAME_MCC = "5816"
#: CNY cash in [45,000, 50,000) counts towards history.near_threshold_count_7d (RSK-011).
NEAR_THRESHOLD_FEN = (4_500_000, 5_000_000)
#: Downstream statuses and their shares [R]: most payments complete; a few fail (insufficient funds, issuer
#: declines) or are reversed (refunds, chargebacks).
STATUSES = (("completed", 97), ("failed", 2), ("reversed", 1))
_STATUS_CUM = list(itertools.accumulate(w for _, w in STATUSES))
#: Outcome labels (``labels=True``) [R]: an account takeover is reported as fraud by the real owner within days
#: to weeks; a small share of normal payments are disputed (chargebacks, mostly "friendly fraud" no rule can
#: see) weeks later; the rest are known legit once the dispute window closes without a dispute.
FRAUD_DELAY_DAYS = (1, 30)
CHARGEBACK_SHARE = 0.003
CHARGEBACK_DELAY_DAYS = (7, 45)
LEGIT_DELAY_DAYS = (21, 45)


@dataclass(frozen=True, slots=True)
class Purpose:
    name: str
    share: float            # percent of normal traffic
    median_cny: int
    sigma: float            # of the log-amount
    sources: tuple[tuple[str, int], ...]  # legitimate funding sources and their weights


PURPOSES = (
    Purpose("merchant_purchase", 78.0, 40, 1.2,
            (("account_balance", 40), ("debit_card", 30), ("credit_card", 14), ("bnpl", 14), ("prepaid_card", 2))),
    Purpose("p2p_transfer", 10.0, 150, 1.2, (("account_balance", 70), ("debit_card", 25), ("bank_transfer", 5))),
    Purpose("credit_card_repayment", 3.0, 2500, 0.8,
            (("account_balance", 30), ("debit_card", 60), ("bank_transfer", 10))),
    Purpose("wallet_topup", 2.0, 300, 1.0, (("debit_card", 100),)),
    Purpose("loan_repayment", 1.5, 2000, 0.7, (("account_balance", 30), ("debit_card", 60), ("bank_transfer", 10))),
    Purpose("fund_investment", 1.5, 1000, 1.2, (("account_balance", 60), ("debit_card", 40))),
    Purpose("cross_border_purchase", 1.2, 600, 1.0, (("debit_card", 50), ("credit_card", 50))),
    Purpose("cash_withdrawal", 1.0, 1000, 0.9, (("debit_card", 95), ("credit_card", 5))),
    Purpose("medical", 1.0, 400, 1.2, (("debit_card", 50), ("account_balance", 30), ("bnpl", 10), ("credit_card", 10))),
    Purpose("tuition", 0.3, 8000, 0.6, (("debit_card", 60), ("bank_transfer", 25), ("consumer_loan", 15))),
    Purpose("securities_investment", 0.3, 10000, 1.0, (("debit_card", 70), ("bank_transfer", 30))),
    Purpose("lottery", 0.2, 20, 0.7, (("account_balance", 60), ("debit_card", 40))),
    Purpose("real_estate", 0.0, 50000, 0.5, ()),  # injected violations only
)
PURPOSE_BY_NAME = {p.name: p for p in PURPOSES}
#: Disallowed (funding, purpose) pairs injected as labelled violations; each is denied by the default pack.
VIOLATIONS = (("bnpl", "credit_card_repayment"), ("credit_card", "credit_card_repayment"), ("bnpl", "p2p_transfer"),
              ("credit_card", "loan_repayment"), ("consumer_loan", "securities_investment"),
              ("credit_card", "wallet_topup"), ("bnpl", "cash_withdrawal"), ("credit_card", "real_estate"))
VIOLATION_SHARE = 0.01
ATO_SHARE = 0.002
ATO_PATTERN = "account_takeover"


def _cumulative(weights: tuple[float, ...]) -> list[float]:
    return list(itertools.accumulate(weights))


_HOUR_CUM = _cumulative(HOUR_WEIGHTS)
_CHANNEL_CUM = _cumulative(tuple(w for _, w in CHANNELS))
_PURPOSE_CUM = _cumulative(tuple(p.share for p in PURPOSES))
_RESIDENCE_CUM = _cumulative(tuple(w for _, w in RESIDENCE))
_TIER_CUM = _cumulative(tuple(w for *_, w in TIERS))


# -- the traffic specification ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TrafficSpec:
    """What to generate. With ``n``, exactly ``n`` payments are written and the population is sized so they span
    about ``days`` days (more days follow if the random draw falls short); without ``n``, ``payers`` payers are
    simulated for exactly ``days`` days. ``counters``: write each payment's ``history``; ``statuses``: write each
    payment's downstream ``status``; ``labels``: outcome labels with the day each became known (see the module
    docstring)."""

    seed: int = 0
    n: int | None = None
    payers: int | None = None
    days: int = DEFAULT_DAYS
    start: dt.date = DEFAULT_START
    counters: bool = True
    statuses: bool = False
    labels: bool = False

    def __post_init__(self) -> None:
        if self.n is None and self.payers is None:
            raise SyntheticError("say how much traffic to generate: --n PAYMENTS, or --payers P (with --days D)")
        if self.n is not None and self.n < 0:
            raise SyntheticError(f"--n must be 0 or more, got {self.n}")
        if self.payers is not None and self.payers < 1:
            raise SyntheticError(f"--payers must be at least 1, got {self.payers}")
        if self.days < 1:
            raise SyntheticError(f"--days must be at least 1, got {self.days}")
        # Payments the engine would refuse are no traffic to backtest, and a date past 9999 ended the run with
        # an OverflowError (--start 9999-12-31 --days 10).
        first, end = EARLIEST.date(), LATEST.date()
        if not first <= self.start < end or self.days > (end - self.start).days:
            raise SyntheticError(f"--start {self.start.isoformat()} with --days {self.days} runs outside the "
                                 f"timestamps a request may carry ({first.isoformat()} to {end.isoformat()}, "
                                 "exclusive); choose an earlier start or fewer days")

    @property
    def population(self) -> int:
        if self.payers is not None:
            return self.payers
        assert self.n is not None
        return max(1, math.ceil(self.n / (MEAN_DAILY_PAYMENTS * self.days)))


# -- payers ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CreditLine:
    type: str
    product: str | None
    issuer: str
    issuer_country: str
    limit_fen: int
    overdue_days: int


class _Payer:
    """One payer's profile and rolling history. Mutable on purpose: it is the generator's running state, updated
    after every payment, and never leaves this module. Kept small (well under 1 KB): the population is the
    generator's whole memory. Windows are short sorted lists, not deques: an empty deque allocates a 64-slot
    block, and these rarely hold more than a few entries."""

    __slots__ = (
        "account_age0",
        "age",
        "bank",
        "bnpl",
        "credit_card",
        "day",
        "day_totals",
        "devices",
        "id",
        "index",
        "kyc",
        "last_hour",
        "lifetime",
        "loan",
        "month",
        "month_game_fen",
        "near_7d",
        "p2p_24h",
        "residence",
        "tier",
        "tier_total_fen",
        "tier_year_fen",
        "year",
    )

    def __init__(self, index: int, rng: random.Random):
        self.index = index
        self.id = f"p{index:07d}"
        self.residence = _pick(rng, RESIDENCE, _RESIDENCE_CUM)[0]
        # Minors 3% (12-17, uniform); adults 18 + Exp(mean 17), capped at 85.
        self.age = rng.randint(12, 17) if rng.random() < 0.03 else min(85, 18 + int(rng.expovariate(1 / 17)))
        self.tier, self.kyc, _ = _pick(rng, TIERS, _TIER_CUM)
        self.account_age0 = int(rng.expovariate(1 / 600))
        self.devices = tuple(f"{self.id}-d{k}" for k in range(1 if rng.random() < 2 / 3 else 2))
        domestic = self.residence == "CN"
        self.bank = rng.choice(BANKS) if domestic else FOREIGN_BANKS[self.residence]
        self.credit_card = self.bnpl = self.loan = None
        if rng.random() < 0.5:
            overdue = rng.choice((30, 45, 90)) if rng.random() < 0.01 else 0
            self.credit_card = CreditLine("credit_card", None, self.bank, self.residence,
                                          _lognormal_fen(rng, 20000, 0.7), overdue)
        if domestic and rng.random() < 0.4:
            product, issuer = rng.choice(BNPL_PRODUCTS)
            overdue = rng.randint(1, 30) if rng.random() < 0.02 else 0
            self.bnpl = CreditLine("bnpl", product, issuer, "CN", _lognormal_fen(rng, 5000, 0.6), overdue)
        if rng.random() < 0.1:
            product, issuer = rng.choice(LOAN_PRODUCTS)
            self.loan = CreditLine("consumer_loan", product, issuer, self.residence,
                                   _lognormal_fen(rng, 30000, 0.5), 0)
        self.lifetime = 0
        self.last_hour: list[int] = []
        self.p2p_24h: list[tuple[int, int]] = []
        self.near_7d: list[int] = []
        self.tier_total_fen = self.tier_year_fen = self.month_game_fen = 0
        self.day = self.month = self.year = -1
        #: today's balance, static QR, cash (fen, US cents), P2P transfers (fen, US cents), credit-card cash (fen)
        self.day_totals = [0] * 7

    def holds(self, source: str) -> bool:
        line = {"credit_card": self.credit_card, "bnpl": self.bnpl, "consumer_loan": self.loan}
        return line[source] is not None if source in line else True

    def credit_line(self, source: str) -> CreditLine | None:
        return {"credit_card": self.credit_card, "bnpl": self.bnpl, "consumer_loan": self.loan}.get(source)


_BALANCE, _QR, _CASH, _CASH_USD, _P2P, _P2P_USD, _CREDIT_CASH = range(7)


# -- draws -------------------------------------------------------------------------------------------------------
def _pick(rng: random.Random, table: tuple, cum: list[float]) -> Any:
    return table[bisect.bisect(cum, rng.random() * cum[-1])]


def _weighted(rng: random.Random, items: list[tuple[str, int]]) -> str:
    return _pick(rng, tuple(items), _cumulative(tuple(w for _, w in items)))[0]


def _lognormal_fen(rng: random.Random, median_cny: float, sigma: float) -> int:
    """A lognormal amount in fen (at least 1 fen): heavy-tailed like real payment amounts."""
    return max(1, round(median_cny * 100 * rng.lognormvariate(0, sigma)))


def _money(minor: int, currency: str) -> Decimal:
    places = DECIMALS[currency]
    if minor == 0:
        return _ZEROS[places]  # most history totals are zero: skip the formatting
    if places == 0:
        return Decimal(minor)
    return Decimal(f"{minor // 10 ** places}.{minor % 10 ** places:0{places}d}")


_ZEROS = {places: Decimal(0).quantize(Decimal(1).scaleb(-places)) for places in set(DECIMALS.values())}


def _fen_to(currency: str, fen: int) -> int:
    """CNY fen -> minor units of ``currency`` at the static rate (half-even, at least one unit)."""
    value = Decimal(fen) / 100 / RATES[currency] * 10 ** DECIMALS[currency]
    return max(1, int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN)))


def _to_fen(currency: str, minor: int) -> int:
    value = Decimal(minor) / 10 ** DECIMALS[currency] * RATES[currency] * 100
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def _usd_cents(fen: int) -> int:
    return int((Decimal(fen) / RATES["USD"]).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


# -- the generator ---------------------------------------------------------------------------------------------
def generate_requests(spec: TrafficSpec) -> Iterator[dict[str, Any]]:
    """Yield backtest records in timestamp order: payment requests (dicts with ``Decimal`` money) plus a
    top-level ``label``, which is the backtest's and must be taken off before a request is evaluated."""
    rng = random.Random(spec.seed)
    outcomes = random.Random(f"statuses-{spec.seed}") if spec.statuses else None
    labels = random.Random(f"labels-{spec.seed}") if spec.labels else None
    payers = [_Payer(i, rng) for i in range(spec.population)]
    serial = 0
    for day_index in itertools.count():
        if spec.n is None and day_index >= spec.days:
            return
        if spec.n is not None and serial >= spec.n:
            return
        day = spec.start + dt.timedelta(days=day_index)
        midnight = dt.datetime(day.year, day.month, day.day, tzinfo=UTC8)
        events: list[tuple[int, int]] = []
        for payer in payers:
            count = min(20, int(rng.expovariate(0.5)))
            for _ in range(count):
                hour = bisect.bisect(_HOUR_CUM, rng.random() * _HOUR_CUM[-1])
                events.append((hour * 3600 + rng.randrange(3600), payer.index))
        events.sort()
        day_epoch = day_index * 86400
        for second, index in events:
            if spec.n is not None and serial >= spec.n:
                return
            serial += 1
            payer = payers[index]
            when = midnight + dt.timedelta(seconds=second)
            status = None if outcomes is None else _pick(outcomes, STATUSES, _STATUS_CUM)[0]
            request = _payment(rng, payer, f"r{serial:08d}", when, day_epoch + second, day_index, status,
                               spec.counters)
            if labels is not None:
                _outcome_label(labels, request, day)
            yield request


def iter_payments(n: int | None = None, seed: int = 0, **options: Any) -> Iterator[dict[str, Any]]:
    """Shorthand for ``generate_requests(TrafficSpec(seed=seed, n=n, **options))``. Write a payment with
    :func:`dumps_request`: ``json.dumps(default=str)`` would write money as strings, which ``history.*`` refuses."""
    return generate_requests(TrafficSpec(seed=seed, n=n, **options))


def _payment(rng: random.Random, payer: _Payer, request_id: str, when: dt.datetime, epoch: int,
             day_index: int, status: str | None, counters: bool) -> dict[str, Any]:
    label = None
    u = rng.random()
    ato = u < ATO_SHARE
    purpose = source = None
    if ato:
        purpose, source = "merchant_purchase", "credit_card" if payer.credit_card else "debit_card"
        label = {"kind": "risk", "pattern": ATO_PATTERN}
    elif u < ATO_SHARE + VIOLATION_SHARE:
        # Only pairs the payer's instruments make possible; a payer with no credit line sends normal traffic.
        eligible = [pair for pair in VIOLATIONS if payer.holds(pair[0])]
        if eligible:
            source, purpose = rng.choice(eligible)
            label = {"kind": "violation", "pattern": f"{source}->{purpose}"}
    if purpose is None:
        profile = _pick(rng, PURPOSES, _PURPOSE_CUM)
        purpose = profile.name
        source = _weighted(rng, [(s, w) for s, w in profile.sources if payer.holds(s)])
    assert source is not None
    profile = PURPOSE_BY_NAME[purpose]

    # Amount (CNY fen first; a cross-border purchase is then priced in the merchant's currency).
    if ato:
        fen = _lognormal_fen(rng, 6000, 0.5)
    else:
        fen = _lognormal_fen(rng, profile.median_cny, profile.sigma)
        if purpose == "p2p_transfer" and rng.random() < 0.5:
            fen = max(1000, round(fen / 1000) * 1000)
    if ato:
        channel = "online"  # a takeover is remote by nature
    elif purpose == "cash_withdrawal":
        channel = "counter"
    elif purpose == "lottery":
        channel = "pos"  # online lottery sales are not authorised in mainland China
    else:
        channel = _pick(rng, CHANNELS, _CHANNEL_CUM)[0]
    if channel == "qr_static":
        fen = min(fen, round(rng.uniform(5, 300) * 100))

    counterparty: dict[str, Any]
    currency = "CNY"
    cross_border = False
    if purpose in PAYEE_PURPOSES:
        counterparty = {"payee": {"id": f"q{rng.randrange(10**7):07d}", "type": PAYEE_PURPOSES[purpose],
                                  "country": "CN", "first_time": rng.random() < 0.15, "sanctions_hit": False}}
    else:
        mcc = "5732" if ato else rng.choice(MCCS.get(purpose, (OTHER_MCC,)))
        country = "CN"
        if purpose == "cross_border_purchase":
            country = rng.choice(CROSS_BORDER_COUNTRIES)
            currency, cross_border = MERCHANT_CURRENCY[country], True
        merchant: dict[str, Any] = {"id": f"m{mcc}-{rng.randrange(5000):04d}", "mcc": mcc, "country": country}
        if source == "bnpl":
            merchant["in_issuer_network"] = rng.random() < 0.97
        merchant["linked_to_payer"] = False
        counterparty = {"merchant": merchant}
    minor = fen if currency == "CNY" else _fen_to(currency, fen)
    fen = fen if currency == "CNY" else _to_fen(currency, minor)

    funding: dict[str, Any] = {"type": source}
    line = payer.credit_line(source)
    if line is not None:
        if line.product:
            funding["product"] = line.product
        funding["issuer"] = line.issuer
        funding["issuer_country"] = line.issuer_country
        funding["available_credit_cny"] = _money(round(line.limit_fen * rng.uniform(0.2, 1.0)), "CNY")
        funding["overdue_days"] = line.overdue_days
    elif source != "account_balance":
        funding["issuer"] = payer.bank
        funding["issuer_country"] = payer.residence

    if ato:
        device = {"id": f"{payer.id}-x{rng.randrange(10**6):06d}", "is_new": True, "distinct_payers_24h": 1}
        ip_country, risk_score = rng.choice(ATO_IP_COUNTRIES), rng.randint(55, 99)
    else:
        device = {"id": rng.choice(payer.devices), "is_new": False, "distinct_payers_24h": 1}
        ip_country, risk_score = payer.residence, int(99 * rng.betavariate(1.3, 14))
    digital_cert = rng.random() < 0.10

    mcc = counterparty.get("merchant", {}).get("mcc")
    history = _history(payer, epoch, day_index, when)
    request = {
        "request_id": request_id,
        "timestamp": when.isoformat(),
        "psp_country": "CN",
        "payer": {"id": payer.id, "type": "individual", "kyc_level": payer.kyc, "account_tier": payer.tier,
                  "age": payer.age, "residence_country": payer.residence,
                  "account_age_days": payer.account_age0 + day_index, "sanctions_hit": False},
        "funding_source": funding,
        "purpose": purpose,
        **counterparty,
        "amount": {"value": _money(minor, currency), "currency": currency},
        "cross_border": cross_border,
        "fx_purchase": False,
        "channel": channel,
        "auth": {"factors": 2, "digital_cert": digital_cert, "sca_performed": False},
        "device": device,
        "ip_country": ip_country,
        "risk_score": risk_score,
        "history": history,
        "label": label,
    }
    if not counters:
        del request["history"]
    if status is not None:
        request["status"] = status
    _record(payer, epoch, fen, source, purpose, channel, mcc, status in (None, "completed"))
    return request


def _outcome_label(rng: random.Random, request: dict[str, Any], day: dt.date) -> None:
    """Replace a payment's injected label with what it turned out to be and when that became known: a takeover is
    ``fraud``; a funding/purpose violation keeps its known-bad ``{kind, pattern}`` (known when it was made); any
    other payment is a ``chargeback`` or ``legit``."""
    label = request["label"]
    if label is not None and label["kind"] == "violation":
        return
    if label is not None:
        request["label"], delay = "fraud", FRAUD_DELAY_DAYS
    elif rng.random() < CHARGEBACK_SHARE:
        request["label"], delay = "chargeback", CHARGEBACK_DELAY_DAYS
    else:
        request["label"], delay = "legit", LEGIT_DELAY_DAYS
    request["label_known_at"] = (day + dt.timedelta(days=rng.randint(*delay))).isoformat()


def _expire(window: list, oldest: int, stamped: bool = False) -> None:
    """Drop the entries at or before ``oldest`` from the front of a time-sorted window (of times, or of
    ``(time, value)`` pairs when ``stamped``)."""
    keep = 0
    while keep < len(window) and (window[keep][0] if stamped else window[keep]) <= oldest:
        keep += 1
    if keep:
        del window[:keep]


def _roll(payer: _Payer, epoch: int, day_index: int, when: dt.datetime) -> None:
    """Expire what fell out of the rolling windows and reset calendar totals when the day/month/year turned."""
    _expire(payer.last_hour, epoch - 3600)
    _expire(payer.p2p_24h, epoch - 86400, stamped=True)
    _expire(payer.near_7d, epoch - 7 * 86400)
    if payer.day != day_index:
        payer.day = day_index
        payer.day_totals = [0] * 7
    month = when.year * 12 + when.month
    if payer.month != month:
        payer.month, payer.month_game_fen = month, 0
    if payer.year != when.year:
        payer.year, payer.tier_year_fen = when.year, 0


def _history(payer: _Payer, epoch: int, day_index: int, when: dt.datetime) -> dict[str, Any]:
    _roll(payer, epoch, day_index, when)
    t = payer.day_totals
    return {
        "payer_txn_count_1h": len(payer.last_hour),
        "lifetime_txn_count": payer.lifetime,
        "decline_count_1h": 0,
        "p2p_amount_24h_cny": _money(sum(f for _, f in payer.p2p_24h), "CNY"),
        "tier_used_total_cny": _money(payer.tier_total_fen, "CNY"),
        "tier_used_year_cny": _money(payer.tier_year_fen, "CNY"),
        "balance_daily_used_cny": _money(t[_BALANCE], "CNY"),
        "qr_static_daily_used_cny": _money(t[_QR], "CNY"),
        "cash_today_cny": _money(t[_CASH], "CNY"),
        "cash_today_usd": _money(t[_CASH_USD], "USD"),
        "transfers_today_cny": _money(t[_P2P], "CNY"),
        "transfers_today_usd": _money(t[_P2P_USD], "USD"),
        "credit_cash_today_cny": _money(t[_CREDIT_CASH], "CNY"),
        "fx_annual_used_usd": _money(0, "USD"),
        "game_topup_month_cny": _money(payer.month_game_fen, "CNY"),
        "near_threshold_count_7d": len(payer.near_7d),
        "sca_exempt_count_since_sca": 0,
        "sca_exempt_amount_since_sca_eur": _money(0, "EUR"),
    }


def _record(payer: _Payer, epoch: int, fen: int, source: str, purpose: str, channel: str, mcc: str | None,
            counts: bool) -> None:
    """Add a payment to its payer's history (after the request was built: history excludes the current one).
    Attempts always count; the rest only if the payment ``counts`` (it was not failed or reversed)."""
    payer.last_hour.append(epoch)
    if purpose == "cash_withdrawal" and NEAR_THRESHOLD_FEN[0] <= fen < NEAR_THRESHOLD_FEN[1]:
        payer.near_7d.append(epoch)
    if not counts:
        return
    payer.lifetime += 1
    t = payer.day_totals
    if source == "account_balance":
        payer.tier_total_fen += fen
        payer.tier_year_fen += fen
        t[_BALANCE] += fen
    if channel == "qr_static":
        t[_QR] += fen
    if purpose == "cash_withdrawal":
        t[_CASH] += fen
        t[_CASH_USD] += _usd_cents(fen)
        if source == "credit_card":
            t[_CREDIT_CASH] += fen
    if purpose == "p2p_transfer":
        payer.p2p_24h.append((epoch, fen))
        t[_P2P] += fen
        t[_P2P_USD] += _usd_cents(fen)
    if mcc == GAME_MCC:
        payer.month_game_fen += fen


# -- output ------------------------------------------------------------------------------------------------------
#: json cannot write a Decimal as a number; the encoder writes it as a string wrapped in NUL markers (escaped by
#: json as \u0000, and impossible in any generated string), and two replacements then drop the quotes and markers.
_OPEN, _CLOSE = '"\\u0000', '\\u0000"'


def _mark(value: Any) -> str:
    if isinstance(value, Decimal):
        return f"\x00{value}\x00"
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_mark)


def dumps_request(request: dict[str, Any]) -> str:
    """One compact JSON line; money is written as a JSON number with the currency's decimals (``12.50``)."""
    return _ENCODER.encode(request).replace(_OPEN, "").replace(_CLOSE, "")


def write_jsonl(spec: TrafficSpec, out: TextIO, progress: Any = None) -> int:
    """Write the traffic as JSON Lines; returns the number of payments written."""
    count = 0
    for request in generate_requests(spec):
        out.write(dumps_request(request))
        out.write("\n")
        count += 1
        if progress is not None and count % 2000 == 0:
            progress(count)
    return count
