"""Hypothesis strategies for payment requests.

* :func:`requests` draws **valid** requests from ``schemas/payment_request.schema.json``: every field of the
  contract can appear, with realistic values (funding types and purposes of DOMAIN.md, mostly Chinese and
  international countries, MCCs the default pack uses), exact money with the currency's number of decimals
  (JPY 0, KWD 3) and timestamps with UTC offsets. A payment to a merchant names one (with MCC and country), a
  P2P transfer a payee (with country and screening result); ``psp_country`` is a jurisdiction the pack has a
  timezone for and ``history`` holds only counters it reads (``ruleset=``: that pack; else the bundled pack and
  every counter). Knobs fix parts of a request.
* :func:`near_thresholds` concentrates values on a pack's numeric thresholds: it walks the rule conditions,
  collects every numeric constant per field, and draws values at ``t`` and one step either side, choosing the
  amount and currency so that a converted ``derived.amount_*`` lands on the edge (exactly where the currency's
  decimals allow, otherwise one minor unit either side).
* :func:`invalid_requests` draws requests that must be refused (the error path).

Shrinking moves towards the plainest request: optional fields absent, the first (most ordinary) value of each
pool, small amounts. A shrunk counterexample therefore shows only the fields that matter.

Hypothesis is an optional dependency: this module is imported only by tests, the pytest plugin and ``verify``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from fractions import Fraction
from functools import cache
from math import ceil, floor
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema
from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from ..conditions import All, Any_, Leaf, Node, Not
from ..loader import load_ruleset
from ..operators import Op, Shape
from ..request import DEFAULT_PSP_COUNTRY, MAX_AMOUNT, MINOR_UNITS, counters_read, local_time
from ..resources import load_schema
from ..ruleset import RuleSet


class _Absent:
    """Marker for an override that removes a field."""

    def __repr__(self) -> str:
        return "ABSENT"


#: ``overrides={"payer.age": ABSENT}`` draws requests without that field.
ABSENT: Any = _Absent()

# -- realistic pools ----------------------------------------------------------------------------------------
# The ordinary value comes first: Hypothesis shrinks a sampled value towards the start of its pool.
KNOWN_FUNDING_TYPES = ("debit_card", "account_balance", "bank_transfer", "credit_card", "bnpl", "consumer_loan",
                       "prepaid_card", "crypto")
#: Instruments no pack knows: the fail-closed path (FS-000).
UNKNOWN_FUNDING_TYPES = ("e_cny", "gift_voucher", "cheque", "store_credit")
KNOWN_PURPOSES = ("merchant_purchase", "credit_card_repayment", "loan_repayment", "p2p_transfer",
                  "cash_withdrawal", "cash_deposit", "securities_investment", "fund_investment", "real_estate",
                  "gambling", "lottery", "tuition", "medical", "cross_border_purchase", "wallet_topup",
                  "crypto_purchase")
UNKNOWN_PURPOSES = ("charity_donation", "tax_payment", "rent")
COUNTRIES = ("CN", "HK", "US", "GB", "DE", "FR", "NL", "IE", "NO", "IS", "JP", "SG", "AU", "MO", "TW", "CH",
             "RU", "UA", "TH", "BY", "VE", "CU", "IR", "KP", "SY")
#: Currencies with and without a rate in the default pack (those without are refused, CMP-000).
RATED_CURRENCIES = ("CNY", "USD", "EUR", "GBP", "HKD", "JPY")
UNRATED_CURRENCIES = ("THB", "KRW", "KWD", "SGD")
MCCS = ("5411", "5812", "5816", "5912", "4829", "6010", "6011", "6012", "6050", "6051", "6211", "6513", "6540",
        "7800", "7801", "7802", "7995", "8011", "8062", "8211", "8220", "9406")
REGIONS = ("CN-BJ", "CN-SH", "CN-GD", "US-NY", "DE-BE", "UA-30", "UA-43", "UA-14", "UA-09")
OFFSETS = ("+08:00", "+00:00", "Z", "+09:00", "+01:00", "-05:00", "+05:30", "-03:00", "+14:00", "-12:00")
DEFAULT_DATES = (dt.date(2015, 1, 1), dt.date(2028, 1, 1))  # before the oldest effective date, after the newest


#: Hypothesis samples a pool of up to about this size evenly; above it, small indexes dominate.
_EVEN_POOL = 128


def _weighted(common: Sequence[Any], rare: Sequence[Any], rare_in: int = 10) -> SearchStrategy[Any]:
    """Mostly ``common``, about one draw in ``rare_in`` from ``rare``; shrinks to ``common[0]``.

    One draw (Hypothesis spends ~40 µs a draw, and a request is many draws). A small pool with repeats is
    sampled evenly; a large one (counter ranges) is indexed by an integer, which Hypothesis draws with a bias
    to small values, so large pools lean further towards ``common``."""
    shared = len(common) * max(1, round(len(rare) * (rare_in - 1) / len(common)))
    if shared + len(rare) <= _EVEN_POOL:
        return st.sampled_from(tuple(common) * (shared // len(common)) + tuple(rare))
    return st.integers(0, shared + len(rare) - 1).map(
        lambda i: common[i % len(common)] if i < shared else rare[i - shared])


# Real traffic is mostly unremarkable: signals that refuse a payment on their own (screening hits, embargoed
# places, unknown instruments, long arrears, high counters) are the rare tail, or they would drown every other
# rule and leave no room to see the effect of the field under test.
_RARE_PURPOSES = ("gambling", "lottery", "crypto_purchase")
_RARE_MCCS = ("4829", "6010", "6011", "6050", "6051", "6540", "7800", "7801", "7802", "7995", "9406")
_POOLS: dict[str, Callable[[], SearchStrategy[Any]]] = {
    "funding_source.type": lambda: _weighted(KNOWN_FUNDING_TYPES[:-1], ("crypto", *UNKNOWN_FUNDING_TYPES),
                                             rare_in=25),
    "purpose": lambda: _weighted(tuple(p for p in KNOWN_PURPOSES if p not in _RARE_PURPOSES),
                                 _RARE_PURPOSES + UNKNOWN_PURPOSES, rare_in=8),
    "merchant.mcc": lambda: _weighted(tuple(m for m in MCCS if m not in _RARE_MCCS), _RARE_MCCS, rare_in=5),
    "merchant.linked_to_payer": lambda: _weighted((False,), (True,), rare_in=20),
    "merchant.in_issuer_network": lambda: _weighted((True,), (False,), rare_in=10),
    "funding_source.product": lambda: st.sampled_from(("baitiao", "huabei", "jintiao", "jiebei", "cash_loan",
                                                       "klarna", "visa_classic", "unionpay_debit")),
    "funding_source.issuer": lambda: st.sampled_from(("JD Technology", "Ant Group", "ICBC", "China Merchants Bank",
                                                      "Chase", "Klarna")),
    "payee.type": lambda: st.sampled_from(("individual", "merchant", "card_issuer", "lender", "business")),
    "merchant.region": lambda: _weighted(REGIONS[:-3], REGIONS[-3:], rare_in=20),
    "payee.region": lambda: _weighted(REGIONS[:-3], REGIONS[-3:], rare_in=20),
    "payer.sanctions_hit": lambda: _weighted((False,), (True,), rare_in=30),
    "payee.sanctions_hit": lambda: _weighted((False,), (True,), rare_in=30),
    "payer.kyc_level": lambda: _weighted(("enhanced", "standard", "basic"), ("none",), rare_in=30),
    "risk_score": lambda: _weighted(range(0, 65), range(65, 100), rare_in=5),
    "payer.age": lambda: _weighted(range(18, 90), range(0, 18), rare_in=6),
    "funding_source.overdue_days": lambda: _weighted((0,), range(1, 181), rare_in=5),
}
#: Upper bounds for integers the schema leaves open, so values stay plausible; most draws stay in the lowest
#: quarter (counters are usually small).
_INT_MAX = {"payer.account_age_days": 5000, "auth.factors": 4, "device.distinct_payers_24h": 12,
            "history.payer_txn_count_1h": 30, "history.lifetime_txn_count": 5000, "history.decline_count_1h": 10,
            "history.near_threshold_count_7d": 6, "history.sca_exempt_count_since_sca": 10}
_MONEY_MAX = {"funding_source.available_credit_cny": 500_000}
_MONEY_MIN = {"funding_source.available_credit_cny": 1_000}  # a credit line with nothing left is the rare case
_DEFAULT_MONEY_MAX = 1_000_000
#: Generated by dedicated code (ids, the amount, the timestamp), not from their schema entry.
_SPECIAL = ("request_id", "timestamp", "amount")


# -- the schema ---------------------------------------------------------------------------------------------
@cache
def _schema() -> dict:
    return load_schema("payment_request")


def leaf_schema(path: str) -> dict:
    """The request schema entry of a dotted field path (``KeyError`` if the contract has no such field)."""
    node = _schema()
    for part in path.split("."):
        node = node["properties"][part]
    return node


@cache
def request_fields() -> tuple[str, ...]:
    """Every leaf field path of the request contract, in schema order (not the free-form ``extra``: no rule
    reads it)."""
    out: list[str] = []

    def walk(schema: dict, prefix: str) -> None:
        for name, sub in schema.get("properties", {}).items():
            if sub.get("type") == "object" and "properties" not in sub:
                continue
            if "properties" in sub:
                walk(sub, f"{prefix}{name}.")
            else:
                out.append(prefix + name)

    walk(_schema(), "")
    return tuple(out)


@cache
def required_fields() -> tuple[str, ...]:
    """Leaf fields every valid request has (required at every level of the contract)."""
    schema = _schema()
    out = []
    for name in schema.get("required", ()):
        sub = schema["properties"][name]
        out += [f"{name}.{child}" for child in sub.get("required", ())] if "properties" in sub else [name]
    return tuple(out)


def is_integer_field(path: str) -> bool:
    return leaf_schema(path).get("type") == "integer"


def is_numeric_field(path: str) -> bool:
    t = leaf_schema(path).get("type")
    types = t if isinstance(t, list) else [t]
    return "number" in types or "integer" in types


# -- values -------------------------------------------------------------------------------------------------
def decimals_of(currency: str) -> int:
    return MINOR_UNITS.get(currency, 2)


def money(currency: str, lo: Decimal | int | str | None = None, hi: Decimal | int | str | None = None
          ) -> SearchStrategy[Decimal]:
    """An exact amount in ``currency`` with its number of decimals, in ``[lo, hi]`` (default: any valid amount,
    mostly everyday sizes)."""
    places = decimals_of(currency)
    unit = Decimal(1).scaleb(-places)
    largest = int(MAX_AMOUNT.scaleb(places)) - 1
    low = 1 if lo is None else max(1, ceil(Decimal(lo).scaleb(places)))
    high = largest if hi is None else min(largest, floor(Decimal(hi).scaleb(places)))
    if low > high:
        raise ValueError(f"no {currency} amount with {places} decimals lies in [{lo}, {hi}]")
    if lo is None and hi is None:
        units = st.one_of(st.integers(1, 10**5 * 10**places), st.integers(1, 10**8 * 10**places),
                          st.integers(1, high))
    else:
        units = st.integers(low, high)
    return units.map(lambda n: (Decimal(n) * unit).quantize(unit))


def _money_value(path: str) -> SearchStrategy[Decimal]:
    top = _MONEY_MAX.get(path, _DEFAULT_MONEY_MAX) * 100
    low = _MONEY_MIN.get(path, 0) * 100
    cents = st.one_of(st.integers(low, max(low, 10**5)), st.integers(low, top))
    return cents.map(lambda n: Decimal(n) / 100)


@cache
def field_values(path: str) -> SearchStrategy[Any]:
    """Valid, realistic values of one request field, read from its schema entry (pools for free text)."""
    if path in _POOLS:
        return _POOLS[path]()
    schema = leaf_schema(path)
    if "enum" in schema:
        return st.sampled_from(tuple(schema["enum"]))
    kind = schema.get("type")
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        low = schema.get("minimum", 0)
        # The contract's bounds guard against hostile input (10^15); plausible values are far smaller.
        high = min(schema.get("maximum", 10**15), _INT_MAX.get(path, max(low, 0) + 1000))
        cut = low + (high - low) // 4
        return _weighted(range(low, cut + 1), range(cut + 1, high + 1), rare_in=5)
    if kind == "number":
        return _money_value(path)
    pattern = schema.get("pattern")
    if pattern == "^[A-Z]{2}$":
        return _weighted(COUNTRIES[:-5], COUNTRIES[-5:], rare_in=25)  # embargoed ones are the rare tail
    if pattern == "^[A-Z]{3}$":
        return _weighted(RATED_CURRENCIES, UNRATED_CURRENCIES, rare_in=20)
    if pattern == "^[0-9]{4}$":
        return st.sampled_from(MCCS)
    prefix = path.split(".")[0][:3]
    return st.integers(1, 99_999).map(lambda n: f"{prefix}-{n}")


def value_pool(path: str) -> tuple[Any, ...] | None:
    """The finite set of realistic values :func:`field_values` draws for a field, if it has one."""
    pools: dict[str, tuple[Any, ...]] = {
        "funding_source.type": KNOWN_FUNDING_TYPES + UNKNOWN_FUNDING_TYPES,
        "purpose": KNOWN_PURPOSES + UNKNOWN_PURPOSES, "merchant.mcc": MCCS, "merchant.region": REGIONS,
        "payee.region": REGIONS,
    }
    if path in pools:
        return pools[path]
    schema = leaf_schema(path)
    if "enum" in schema:
        return tuple(schema["enum"])
    if schema.get("type") == "boolean":
        return (False, True)
    return {"^[A-Z]{2}$": COUNTRIES, "^[A-Z]{3}$": RATED_CURRENCIES + UNRATED_CURRENCIES,
            "^[0-9]{4}$": MCCS}.get(schema.get("pattern", ""))


def values_except(path: str, excluded: Sequence[Any]) -> SearchStrategy[Any]:
    """Valid values of a field other than ``excluded``: the rest of its pool, and for free-form strings also
    arbitrary ones (an unknown funding type is any string a pack does not list)."""
    schema = leaf_schema(path)
    pool = value_pool(path) or ()
    rest = tuple(v for v in pool if v not in excluded)
    free: SearchStrategy[Any] | None = None
    if schema.get("type") == "string" and "enum" not in schema:
        if "pattern" in schema:
            free = st.from_regex(schema["pattern"], fullmatch=True)
        else:
            free = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=16)
        free = free.filter(lambda v: v not in excluded)
    parts = [s for s in (st.sampled_from(rest) if rest else None, free) if s is not None]
    if not parts:
        raise ValueError(f"every value of {path} is excluded")
    return st.one_of(*parts)


def values_between(path: str, lo: Decimal | int | None, hi: Decimal | int | None) -> SearchStrategy[Any]:
    """Valid values of a numeric field in ``[lo, hi]`` (integers, or money with two decimals)."""
    schema = leaf_schema(path)
    places = 0 if schema.get("type") == "integer" else 2
    bottom = max(Decimal(schema.get("minimum", 0)), Decimal(lo) if lo is not None else Decimal(0))
    top_default = _INT_MAX.get(path, 10**6) if places == 0 else _MONEY_MAX.get(path, _DEFAULT_MONEY_MAX)
    top = min(Decimal(schema.get("maximum", 10**15)), Decimal(hi) if hi is not None else Decimal(top_default))
    low, high = ceil(bottom.scaleb(places)), floor(top.scaleb(places))
    if low > high:
        raise ValueError(f"no valid value of {path} lies in [{lo}, {hi}]")
    return st.integers(low, high).map(lambda n: n if places == 0 else Decimal(n) / 100)


def timestamps(dates: tuple[dt.date, dt.date] | None = None) -> SearchStrategy[str]:
    """ISO 8601 timestamps with a UTC offset whose **local** date lies in ``[dates[0], dates[1])``."""
    start, end = dates or DEFAULT_DATES
    if start >= end:
        raise ValueError(f"empty date window [{start}, {end})")
    # Hypothesis draws a wide integer range with a strong bias to small values, which would put nearly every
    # payment on the first days of the window; a block of days and a day within it are each sampled evenly.
    days = (end - start).days
    block = min(days, 64)
    blocks = -(-days // block)
    moments = st.builds(
        lambda b, d, h, s: dt.datetime.combine(start + dt.timedelta(days=(b * block + d) % days),
                                               dt.time(h, s // 60, s % 60)),
        st.sampled_from(range(blocks)), st.sampled_from(range(block)), st.sampled_from(range(24)),
        st.integers(0, 3599))
    return st.builds(_stamp, moments, st.sampled_from(OFFSETS))


def _stamp(local: dt.datetime, offset: str) -> str:
    return local.isoformat() + offset


def _amount_form(value: Decimal) -> SearchStrategy[Any]:
    """The forms a caller may send an amount in, all exact: a decimal string, a Decimal, an int, a float
    whose shortest repr is the amount."""
    forms: list[Any] = [format(value, "f"), value]
    if value == value.to_integral_value():
        forms.append(int(value))
    if Decimal(repr(float(value))) == value:
        forms.append(float(value))
    return st.sampled_from(forms)


# -- knobs --------------------------------------------------------------------------------------------------
def _date(value: dt.date | str | None, default: dt.date) -> dt.date:
    if value is None:
        return default
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


@cache
def _bundled() -> RuleSet:
    return load_ruleset(None)


@cache
def _conditionals() -> tuple[tuple[Any, dict], ...]:
    return tuple((jsonschema.Draft202012Validator(e["if"]), e["then"]) for e in _schema().get("allOf", ()))


def counterparties(purpose: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The objects (and their fields) the request contract requires for a purpose: a merchant with ``mcc`` and
    ``country`` for a payment to a merchant, a payee with ``country`` and ``sanctions_hit`` for a P2P transfer."""
    out = []
    for condition, then in _conditionals():
        if condition.is_valid({"purpose": purpose}):
            children = then.get("properties", {})
            out += [(name, tuple(children.get(name, {}).get("required", ()))) for name in then.get("required", ())]
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Knobs:
    """What a caller fixed: field overrides (values, strategies or :data:`ABSENT`), the local-date window and
    an amount range (in the request's currency); and what the pack accepts: the jurisdictions it has a timezone
    for (``zones``: psp_country -> zone name) and the history counters it reads (``counters``)."""

    overrides: tuple[tuple[str, Any], ...] = ()
    dates: tuple[dt.date, dt.date] = DEFAULT_DATES
    amount: tuple[Decimal | None, Decimal | None] | None = None
    zones: tuple[tuple[str, str], ...] = ()
    counters: frozenset[str] = frozenset()

    @classmethod
    def of(cls, *, funding_type: Any = None, purpose: Any = None, currency: Any = None,
           overrides: Mapping[str, Any] | None = None, dates: tuple[Any, Any] | None = None,
           amount: tuple[Any, Any] | None = None, ruleset: RuleSet | None = None) -> Knobs:
        fixed: dict[str, Any] = {}
        for path, value in (("funding_source.type", funding_type), ("purpose", purpose),
                            ("amount.currency", currency)):
            if value is not None:
                fixed[path] = value
        known = set(request_fields()) | {p.split(".")[0] for p in request_fields()}
        for path, value in (overrides or {}).items():
            if path not in known:
                raise ValueError(f"override {path!r} is not a field (or object) of the request contract")
            fixed[path] = value
        window = DEFAULT_DATES
        if dates is not None:
            window = (_date(dates[0], DEFAULT_DATES[0]), _date(dates[1], DEFAULT_DATES[1]))
        bounds = None
        if amount is not None:
            bounds = tuple(None if b is None else Decimal(str(b)) for b in amount)
        pack = ruleset or _bundled()
        return cls(tuple(fixed.items()), window, bounds, tuple(sorted(pack.timezones.items())),  # type: ignore[arg-type]
                   counters_read(pack))


def _draw_fixed(draw: Any, knobs: Knobs) -> dict[str, Any]:
    return {path: draw(v) if isinstance(v, SearchStrategy) else v for path, v in knobs.overrides}


def set_path(request: dict, path: str, value: Any) -> None:
    """Set (or, with :data:`ABSENT`, remove) a dotted field, creating the parent object when needed."""
    *parents, last = path.split(".")
    node = request
    for part in parents:
        if value is ABSENT and not isinstance(node.get(part), dict):
            return
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    if value is ABSENT:
        node.pop(last, None)
    else:
        node[last] = value


def get_path(request: Mapping, path: str) -> Any:
    node: Any = request
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return ABSENT
        node = node[part]
    return node


@st.composite
def _base(draw: Any, knobs: Knobs, fixed: Mapping[str, Any]) -> dict:
    request: dict[str, Any] = {"request_id": f"gen-{draw(st.integers(0, 10**6))}",
                               "timestamp": draw(timestamps(knobs.dates))}
    schema = _schema()
    jurisdictions = sorted(dict(knobs.zones), key=lambda c: c != DEFAULT_PSP_COUNTRY)  # shrinks to the default
    for name, sub in schema["properties"].items():
        if name in _SPECIAL:
            continue
        required = name in schema.get("required", ())
        if "properties" in sub:
            if not (required or draw(st.booleans())):
                continue
            obj: dict[str, Any] = {}
            for child in sub["properties"]:
                if name == "history" and child not in knobs.counters:
                    continue  # the pack would refuse a counter it does not read
                if child in sub.get("required", ()) or draw(st.booleans()):
                    obj[child] = draw(field_values(f"{name}.{child}"))
            request[name] = obj
        elif name == "psp_country":
            if jurisdictions and (jurisdictions[0] != DEFAULT_PSP_COUNTRY or draw(st.booleans())):
                request[name] = draw(st.sampled_from(jurisdictions))
        elif name == "extra":
            continue  # rules cannot read it
        elif required or draw(st.booleans()):
            request[name] = draw(field_values(name))
    currency = fixed.get("amount.currency")
    if not isinstance(currency, str):
        currency = draw(field_values("amount.currency"))
    lo, hi = knobs.amount or (None, None)
    value = draw(money(currency, lo, hi))
    request["amount"] = {"value": draw(_amount_form(value)), "currency": currency}
    return request


def _finish(request: dict, fixed: Mapping[str, Any]) -> dict:
    for path, value in fixed.items():
        set_path(request, path, value)
    return request


def _complete(draw: Any, knobs: Knobs, fixed: Mapping[str, Any], request: dict) -> dict:
    """The last touches, once every field is where the knobs and edges put it: the counterparty the purpose
    needs, and the timestamp. Until here a timestamp's wall time is the payment's time in the PSP's
    jurisdiction (so dates and hours can be set on it directly); it becomes that instant, written in the drawn
    UTC offset (the engine reads the instant, never the offset)."""
    for name, children in counterparties(request.get("purpose")):
        # a knob that removes what the purpose needs asks for an invalid request: draw another one
        assume(fixed.get(name) is not ABSENT and all(fixed.get(f"{name}.{c}") is not ABSENT for c in children))
        obj = request.setdefault(name, {})
        for child in children:
            if obj.get(child) is None:
                obj[child] = draw(field_values(f"{name}.{child}"))
    zone = dict(knobs.zones).get(request.get("psp_country") or DEFAULT_PSP_COUNTRY)
    if "timestamp" not in fixed and zone is not None:
        wall = dt.datetime.fromisoformat(request["timestamp"])
        instant = wall.replace(tzinfo=ZoneInfo(zone))
        request["timestamp"] = instant.astimezone(wall.tzinfo).isoformat()
    return request


# -- valid requests -----------------------------------------------------------------------------------------
def requests(*, funding_type: Any = None, purpose: Any = None, currency: Any = None,
             overrides: Mapping[str, Any] | None = None, dates: tuple[Any, Any] | None = None,
             amount: tuple[Any, Any] | None = None, ruleset: RuleSet | None = None) -> SearchStrategy[dict]:
    """Valid payment requests.

    ``funding_type``, ``purpose`` and ``currency`` fix those fields (a value or a strategy); ``overrides``
    fixes any dotted field (``{"purpose": "credit_card_repayment", "payer.age": st.integers(0, 17),
    "device": ABSENT}``); ``dates=("2022-07-07", None)`` limits the payment's date in its PSP's timezone to
    ``[from, to)``; ``amount=(lo, hi)`` limits ``amount.value`` (in the request's currency, inclusive);
    ``ruleset`` is the pack the requests are for (default: the bundled pack).
    """
    return requests_with(Knobs.of(funding_type=funding_type, purpose=purpose, currency=currency,
                              overrides=overrides, dates=dates, amount=amount, ruleset=ruleset))


def requests_with(knobs: Knobs) -> SearchStrategy[dict]:
    """:func:`requests` for knobs already gathered in a :class:`Knobs`."""
    @st.composite
    def build(draw: Any) -> dict:
        fixed = _draw_fixed(draw, knobs)
        return _complete(draw, knobs, fixed, _finish(draw(_base(knobs, fixed)), fixed))

    return build()


# -- thresholds ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Edge:
    """A numeric edge of one rule: the operand (a field or the terms of an ``add``), the threshold, and the
    string/boolean values that put the rule on the path to the leaf (so that the edge matters)."""

    rule_id: str
    paths: tuple[str, ...]
    value: Decimal | None  # None: a comparison with another field (``ref``)
    ref: str | None
    context: tuple[tuple[str, tuple[Any, ...]], ...]

    @property
    def integer(self) -> bool:
        return all(p == "derived.local_hour" or (not p.startswith("derived.") and is_integer_field(p))
                   for p in self.paths)


def _assignments(children: Sequence[Node]) -> list[tuple[str, tuple[Any, ...]]]:
    """Values that make the plain equality / membership leaves among ``children`` true."""
    out: list[tuple[str, tuple[Any, ...]]] = []
    for child in children:
        if isinstance(child, Not) and isinstance(child.child, Leaf):
            leaf = child.child
            if leaf.op is Op.EQ and isinstance(leaf.value, bool) and not leaf.operand.is_sum:
                out.append((leaf.operand.paths[0], (not leaf.value,)))
            continue
        if not isinstance(child, Leaf) or child.operand.is_sum or child.ref is not None:
            continue
        path = child.operand.paths[0]
        if path.startswith("derived."):
            continue
        if child.op is Op.EQ and isinstance(child.value, str | bool):
            out.append((path, (child.value,)))
        elif child.op is Op.IN and child.items and all(isinstance(i.value, str) for i in child.items):
            out.append((path, tuple(i.value for i in child.items)))
        elif is_numeric_field(path) and isinstance(child.value, Decimal | int | tuple):
            # A sibling bound on a plain number (e.g. "2 or more earlier near-threshold payments") is set on its
            # true side, so the edge being tested decides whether the rule fires.
            true_side = _satisfying(child, path)
            if true_side is not None:
                out.append((path, (true_side,)))
    return out


def _satisfying(leaf: Leaf, path: str) -> Any:
    integer = is_integer_field(path)
    step = Decimal(1) if integer else Decimal("0.01")
    t = Decimal(leaf.value[0] if isinstance(leaf.value, tuple) else leaf.value)  # type: ignore[arg-type]
    value = {Op.EQ: t, Op.GTE: t, Op.LTE: t, Op.BETWEEN: t, Op.GT: t + step, Op.LT: t - step}.get(leaf.op)
    if value is None or value < leaf_schema(path).get("minimum", 0) or (integer and value != int(value)):
        return None
    return int(value) if integer else value


def pack_edges(ruleset: RuleSet) -> tuple[Edge, ...]:
    """Every numeric edge of the pack's rules, with the context that makes each one count."""
    edges: list[Edge] = []

    def walk(node: Node, context: tuple[tuple[str, tuple[Any, ...]], ...], rule_id: str) -> None:
        if isinstance(node, Leaf):
            numeric = node.operand.is_sum or node.operand.paths[0].startswith("derived.") or \
                is_numeric_field(node.operand.paths[0])
            shape = node.op.spec.shape
            if not numeric or shape is Shape.NONE:
                return
            if node.ref is not None:
                edges.append(Edge(rule_id, node.operand.paths, None, node.ref, context))
                return
            if shape is Shape.RANGE:
                constants = list(node.value)  # type: ignore[arg-type]
            elif shape is Shape.LIST:
                constants = [i.value for i in node.items or ()]
            else:
                constants = [node.value]
            for c in constants:
                edges.append(Edge(rule_id, node.operand.paths, Decimal(c), None, context))  # type: ignore[arg-type]
        elif isinstance(node, All):
            inner = context + tuple(_assignments(node.children))
            for child in node.children:
                walk(child, inner, rule_id)
        elif isinstance(node, Any_):
            for child in node.children:
                walk(child, context, rule_id)
        else:
            walk(node.child, context, rule_id)

    for rule in ruleset.rules:
        walk(rule.when, (), rule.id)
    return tuple(edges)


def thresholds(ruleset: RuleSet) -> dict[str, tuple[Decimal, ...]]:
    """The numeric constants the pack compares each operand with (``a + b`` for sums), sorted."""
    found: dict[str, set[Decimal]] = {}
    for edge in pack_edges(ruleset):
        if edge.value is not None:
            found.setdefault(" + ".join(edge.paths), set()).add(edge.value)
    return {label: tuple(sorted(values)) for label, values in sorted(found.items())}


def _local(request: dict) -> dt.datetime:
    """The wall time of a request being built (see :func:`_complete`)."""
    return dt.datetime.fromisoformat(request["timestamp"])


def converted(ruleset: RuleSet, request: dict, target: str) -> Fraction | None:
    """``derived.amount_<target>`` of a request, exactly, as the engine computes it (None: no rate)."""
    day = local_time(ruleset, request["timestamp"], request.get("psp_country")).date()
    return _converted(ruleset, request, target, day)


def _converted(ruleset: RuleSet, request: dict, target: str, day: dt.date) -> Fraction | None:
    amount = request["amount"]
    rates = ruleset.fx_for(day.toordinal()).rates
    currency = amount["currency"]
    if currency not in rates or target not in rates:
        return None
    value = Fraction(Decimal(str(amount["value"])))
    return value if currency == target else value * Fraction(rates[currency]) / Fraction(rates[target])


class _EdgeWriter:
    """Moves one request onto edges of a pack. Fields the caller fixed are left alone, and so are fields an
    earlier edge of the same request set: a later edge only adds to the first, it never moves it off its edge."""

    def __init__(self, draw: Any, ruleset: RuleSet, knobs: Knobs, fixed: Mapping[str, Any], request: dict):
        self.draw, self.ruleset, self.knobs, self.fixed, self.request = draw, ruleset, knobs, fixed, request
        self.pinned: set[str] = set()  # set by earlier edges
        self.current: set[str] = set()  # set by the edge being applied

    def settable(self, path: str) -> bool:
        head = path.split(".")[0]
        return not ({path, head} & (self.fixed.keys() | self.pinned))

    def _mark(self, *paths: str) -> None:
        self.current.update(paths)

    def apply(self, edge: Edge) -> None:
        self.current = set()
        for path, options in edge.context:
            if not self.settable(path):
                continue
            value = self.draw(st.sampled_from(options))
            if path == "amount.currency":
                self._currency(value)
            else:
                set_path(self.request, path, value)
                self._mark(path)
        if edge.ref is not None:
            self._ref(edge)
        else:
            assert edge.value is not None
            step = Decimal(1) if edge.integer else Decimal("0.01")
            target = edge.value + self.draw(st.sampled_from((Decimal(0), -step, step)))
            if len(edge.paths) == 1:
                self._set(edge.paths[0], Fraction(target))
            else:
                self._sum(edge.paths, Fraction(target))
        self.pinned |= self.current

    def _currency(self, currency: str) -> None:
        """Switch currency, keeping the amount valid: no more decimals than the new currency has."""
        if not (self.settable("amount.value") and self.settable("amount.currency")):
            return
        unit = Decimal(1).scaleb(-decimals_of(currency))
        value = max(unit, Decimal(str(self.request["amount"]["value"])).quantize(unit, rounding=ROUND_DOWN))
        self.request["amount"] = {"value": format(value, "f"), "currency": currency}
        self._mark("amount.currency")

    def _sum(self, paths: tuple[str, ...], total: Fraction) -> None:
        # Split the total: caller-computed terms take a share, the one term the engine derives takes the rest,
        # so the sum lands on the edge while the terms stay realistic.
        derived = [p for p in paths if p.startswith("derived.")]
        solve = derived[0] if derived else paths[0]
        rest = total
        for path in paths:
            if path == solve or path.startswith("derived."):
                continue
            current = get_path(self.request, path)
            if not self.settable(path):
                rest -= Fraction(Decimal(str(current))) if current is not ABSENT else 0
                continue
            share = self.draw(st.sampled_from((None, Fraction(0), Fraction(1, 2), Fraction(9, 10), Fraction(1, 10))))
            self._mark(path)
            if share is None or total <= 0 or (part := self._quantise(path, total * share)) is None or part > rest:
                # left out where the pack declares that absent means 0 (a caller's history counter), else 0 sent:
                # an absent operand without a default makes the sum unknown, which is not this edge
                set_path(self.request, path, ABSENT if path in self.ruleset.defaults else 0)
                continue
            set_path(self.request, path, part)
            self._mark(path)
            rest -= Fraction(part)
        self._set(solve, rest)

    def _quantise(self, path: str, value: Fraction) -> Decimal | None:
        if value < 0:
            return None
        places = 0 if is_integer_field(path) else 2
        units = value * 10**places
        n = floor(units) if units.denominator == 1 or self.draw(st.booleans()) else ceil(units)
        schema = leaf_schema(path)
        if "maximum" in schema and n > schema["maximum"] * 10**places:
            n = schema["maximum"] * 10**places
        return Decimal(n).scaleb(-places) if places else Decimal(n)

    def _set(self, path: str, value: Fraction) -> None:
        if path == "derived.local_hour":
            self._hour(value)
        elif path.startswith("derived."):
            self._amount(path.split("_")[-1].upper(), value)
        elif path == "amount.value":
            self._amount(None, value)
        elif self.settable(path):
            quantised = self._quantise(path, value)
            if quantised is not None:
                set_path(self.request, path, int(quantised) if is_integer_field(path) else quantised)
                self._mark(path)

    def _hour(self, value: Fraction) -> None:
        if not self.settable("timestamp") or not 0 <= value <= 23:
            return
        stamp = self.request["timestamp"]
        local = _local(self.request).replace(hour=int(value), tzinfo=None)
        self.request["timestamp"] = local.isoformat() + stamp[19:]  # keep the offset exactly as written
        self._mark("timestamp")

    def _amount(self, target: str | None, value: Fraction) -> None:
        """Choose amount.value (and the currency, unless fixed) so ``derived.amount_<target>`` is ``value``;
        ``target`` None sets amount.value itself."""
        if not self.settable("amount.value"):
            return
        rates = self.ruleset.fx_for(_local(self.request).date().toordinal()).rates
        if target is not None and target not in rates:
            return
        currency = self.request["amount"]["currency"]
        if target is not None and self.settable("amount.currency") and "amount.currency" not in self.current:
            # Prefer a currency in which the edge is exactly expressible (CNY 30,000 = JPY 625,000); the others
            # land one minor unit either side.
            exact = [c for c in sorted(rates) if self._units(target, c, value, rates).denominator == 1]
            pool = exact if exact and self.draw(st.sampled_from((True, True, True, False))) else sorted(rates)
            currency = self.draw(st.sampled_from(pool))
        if target is not None and currency not in rates:
            return
        units = value * 10 ** decimals_of(currency) if target is None else self._units(target, currency, value, rates)
        n = units.numerator if units.denominator == 1 else (floor(units) if self.draw(st.booleans()) else ceil(units))
        places = decimals_of(currency)
        result = Decimal(n).scaleb(-places)
        lo, hi = self.knobs.amount or (None, None)
        if n < 1 or result >= MAX_AMOUNT or (lo is not None and result < lo) or (hi is not None and result > hi):
            return
        self.request["amount"] = {"value": format(result.quantize(Decimal(1).scaleb(-places)), "f"),
                                  "currency": currency}
        self._mark("amount.value", "amount.currency")

    @staticmethod
    def _units(target: str, currency: str, value: Fraction, rates: Mapping[str, Decimal]) -> Fraction:
        """Minor units of ``currency`` whose ``target`` equivalent is ``value``."""
        amount = value if target == currency else value * Fraction(rates[target]) / Fraction(rates[currency])
        return amount * 10 ** decimals_of(currency)

    def _ref(self, edge: Edge) -> None:
        left, right = edge.paths[0], edge.ref
        assert right is not None
        value, settable = self._value(left), right
        if value is None or right.startswith("derived.") or not self.settable(right):
            value, settable = self._value(right), left
            if value is None or left.startswith("derived.") or not self.settable(left):
                return
        step = Fraction(1) if is_integer_field(settable) else Fraction(1, 100)
        target = value + self.draw(st.sampled_from((Fraction(0), -step, step)))
        units = target * (1 if is_integer_field(settable) else 100)
        if units.denominator != 1 or target < 0:
            return  # the other side has more decimals than this field can hold: no exact edge
        self._set(settable, target)

    def _value(self, path: str) -> Fraction | None:
        if path == "derived.local_hour":
            return Fraction(_local(self.request).hour)
        if path.startswith("derived."):
            return _converted(self.ruleset, self.request, path.split("_")[-1].upper(), _local(self.request).date())
        current = get_path(self.request, path)
        if current is ABSENT or isinstance(current, bool) or not isinstance(current, int | Decimal | float | str):
            return None
        return Fraction(Decimal(str(current)))


def near_thresholds(ruleset: RuleSet, *, max_edges: int = 3, funding_type: Any = None, purpose: Any = None,
                    currency: Any = None, overrides: Mapping[str, Any] | None = None,
                    dates: tuple[Any, Any] | None = None, amount: tuple[Any, Any] | None = None
                    ) -> SearchStrategy[dict]:
    """Valid requests moved onto 1..``max_edges`` numeric edges of ``ruleset`` (values at ``t`` and one step
    either side: 0.01 for money, 1 for integers and hours). The knobs are those of :func:`requests` and win
    over the edges."""
    return near_thresholds_with(ruleset, Knobs.of(funding_type=funding_type, purpose=purpose, currency=currency,
                                   overrides=overrides, dates=dates, amount=amount, ruleset=ruleset), max_edges)


def near_thresholds_with(ruleset: RuleSet, knobs: Knobs, max_edges: int = 3) -> SearchStrategy[dict]:
    """:func:`near_thresholds` for knobs already gathered in a :class:`Knobs`."""
    by_rule: dict[str, list[Edge]] = {}
    for edge in pack_edges(ruleset):
        by_rule.setdefault(edge.rule_id, []).append(edge)
    if not by_rule:
        return requests_with(knobs)
    # A rule first, then one of its edges: every rule gets the same share whatever its number of edges, and
    # Hypothesis samples a few dozen rules evenly where it would favour the head of a long list of edges.
    rule_ids = tuple(by_rule)
    counts = tuple(range(1, max(1, max_edges) + 1))

    @st.composite
    def build(draw: Any) -> dict:
        fixed = _draw_fixed(draw, knobs)
        request = draw(_base(knobs, fixed))
        writer = _EdgeWriter(draw, ruleset, knobs, fixed, request)
        for _ in range(draw(st.sampled_from(counts))):
            writer.apply(draw(st.sampled_from(by_rule[draw(st.sampled_from(rule_ids))])))
        return _complete(draw, knobs, fixed, _finish(request, fixed))

    return build()


# -- invalid requests ---------------------------------------------------------------------------------------
def _drop_required(req: dict, draw: Any) -> None:
    path = draw(st.sampled_from(("request_id", "timestamp", "payer", "payer.id", "funding_source",
                                 "funding_source.type", "purpose", "amount", "amount.value", "amount.currency")))
    if "." in path and not isinstance(req.get(path.split(".")[0]), dict):
        req[path.split(".")[0]] = {}
    set_path(req, path, draw(st.sampled_from((ABSENT, None))))  # JSON null counts as missing


def _bad_amount(req: dict, draw: Any) -> None:
    currency = draw(st.sampled_from(("CNY", "JPY", "KWD", "USD")))
    places = decimals_of(currency)
    too_precise = "1." + "0" * places + "1" if places else "100.5"
    value = draw(st.sampled_from((-1, Decimal("-0.01"), 0, "0", "0.00", "NaN", "Infinity", Decimal("NaN"),
                                  float("inf"), "1e3", "12,50", "", True, too_precise, Decimal(too_precise),
                                  str(MAX_AMOUNT), MAX_AMOUNT, "-5", [100], {"cny": 1})))
    req["amount"] = {"value": value, "currency": currency}


def _bad_timestamp(req: dict, draw: Any) -> None:
    req["timestamp"] = draw(st.sampled_from(("2025-06-10T14:30:00", "2025-06-10", "yesterday", "", 1749537000,
                                             "2025-13-40T25:61:00+08:00")))


def _bad_type(req: dict, draw: Any) -> None:
    path, value = draw(st.sampled_from((
        ("request_id", ""), ("request_id", 42), ("payer", "u-1"), ("payer.id", 7), ("funding_source", "bnpl"),
        ("funding_source.type", 3), ("purpose", ["p2p_transfer"]), ("amount", "100 CNY"),
        ("amount.currency", "usd"), ("amount.currency", "US"), ("amount.currency", 840),
        ("payer.sanctions_hit", "no"), ("cross_border", 0), ("auth.sca_performed", "true"),
        ("funding_source.available_credit_cny", "1000"), ("history", [1, 2]),
    )))
    set_path(req, path, value)


def _out_of_contract(req: dict, draw: Any) -> None:
    path, value = draw(st.sampled_from((
        ("channel", "carrier_pigeon"), ("payer.kyc_level", "gold"), ("payer.type", "robot"),
        ("payer.account_tier", "IV"), ("ip_country", "CHN"), ("merchant.country", "cn"), ("merchant.mcc", "59"),
        ("risk_score", 100), ("risk_score", -1), ("risk_score", 50.5), ("payer.age", -1),
        ("device.distinct_payers_24h", -3), ("history.payer_txn_count_1h", 1.5),
        ("history.cash_today_cny", -1), ("history.cash_today_cny", Decimal("0.001")),
        ("history.unlisted_counter", -2), ("funding_source.overdue_days", -1), ("auth.factors", Decimal("2.5")),
    )))
    set_path(req, path, value)


def _derived_sent(req: dict, draw: Any) -> None:
    req["derived"] = {"amount_cny": draw(st.integers(1, 10**6))}


_MUTATIONS = (_drop_required, _bad_amount, _bad_timestamp, _bad_type, _out_of_contract, _derived_sent)


def invalid_requests() -> SearchStrategy[Any]:
    """Requests the engine must refuse with ``RequestError``: one to three independent violations of the
    contract applied to a valid request, or something that is not an object at all."""

    @st.composite
    def build(draw: Any) -> Any:
        if draw(st.integers(0, 19)) == 0:
            return draw(st.sampled_from(([], "request", None, 42, [{"request_id": "r"}])))
        req = draw(requests())
        for mutate in draw(st.lists(st.sampled_from(_MUTATIONS), min_size=1, max_size=3, unique=True)):
            mutate(req, draw)
        return req

    return build()
