"""Requests: validate against the request contract, normalise money and time, compute derived fields.

An invalid request is never evaluated: :class:`RequestError` lists every violation with its JSON path.
Money is exact: amounts become ``Decimal`` (JSON numbers or strings; floats by their shortest repr), FX
conversion uses the pack's dated reference rates without rounding (a cross rate is an exact ``Fraction``).

Time is the caller's only as an instant: the local hour and the as-of date come from that instant in the timezone
the pack declares for the PSP's jurisdiction (``timezones:``), never from the offset the caller wrote, so the same
instant always gets the same decision. Instants outside [2000-01-01, 2100-01-01) UTC are refused (an absolute
window, so backtests of any past year work).

Requests are strict: an unknown key anywhere is a violation with a did-you-mean (callers put their own data under
``extra``, which no rule can read), and ``history`` takes only the counters the pack's rules read.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from ._frozen import positional_builder
from .conditions import NOT_APPLICABLE_WHEN_ABSENT, counterparty_of, fields_read
from .errors import RequestError, Violation
from .exact import EXACT
from .fields import FieldCatalog
from .native import compile_native
from .resources import load_schema
from .ruleset import FxTable, RuleSet
from .validator import compile_fast_path, compile_schema, fits_places

#: ISO 4217 minor units where they are not 2.
MINOR_UNITS = {"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
               "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
               "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3}
MAX_AMOUNT = Decimal(10) ** 15
_CENT = Decimal("0.01")
_ZERO = Decimal(0)
#: Request fields that hold money in a fixed currency: at most two decimal places, like the amount.
_MONEY_SUFFIXES = ("_cny", "_usd", "_eur")


def _to_decimal(value: Any) -> Decimal | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))  # the shortest repr is what the caller wrote: 0.1 stays 0.1
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            return None
    return None


def _amount_problem(amount: Decimal | int | None, value: Any, currency: str) -> str | None:
    """What is wrong with a payment amount beyond the schema (``value`` as sent), or None."""
    if amount is None or amount <= _ZERO:  # a Decimal compares with a Decimal without converting it first
        return "amount must be a positive decimal"
    if amount >= MAX_AMOUNT:
        return f"amount {amount} is beyond the supported {MAX_AMOUNT:,}"
    places = MINOR_UNITS.get(currency, 2)
    # same_quantum first: "12.50" has exactly the two places of most currencies, one cheap test
    if not (type(amount) is int or (places == 2 and amount.same_quantum(_CENT)) or fits_places(amount, places)):
        return f"{value} has more decimal places than {currency} has ({places})"
    return None


#: The instants a request may carry: absolute, not relative to today, so a backtest of any year in it works; a
#: year 0001 or 1900 is a caller's default value, not a payment, and would put dated rules out of force.
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)  # exclusive
#: Years strictly between these two are inside the window whatever the offset (it moves an instant at most ~1 day).
_SAFE_AFTER, _SAFE_BEFORE = EARLIEST.year, LATEST.year - 1


def instant(stamp: str) -> tuple[dt.datetime | None, str | None]:
    """The payment's instant (the timestamp must carry its UTC offset), or None and what is wrong."""
    try:
        when = dt.datetime.fromisoformat(stamp)
    except ValueError:
        return None, f"{stamp[:64]!r} is not an ISO 8601 date-time"
    if when.tzinfo is None:
        return None, f"{stamp!r} has no UTC offset (e.g. +08:00 or Z); the instant of the payment needs it"
    # the year as written decides it but within a day of an edge; comparing aware datetimes costs a microsecond
    # and a half, so only then
    if not (_SAFE_AFTER < when.year < _SAFE_BEFORE or EARLIEST <= when < LATEST):
        return None, (f"{stamp!r} is outside the supported window [{EARLIEST:%Y-%m-%dT%H:%M:%SZ}, "
                      f"{LATEST:%Y-%m-%dT%H:%M:%SZ})")
    return when, None


#: A POSIX TZ rule with a standard time only (``CST-8``, ``<+0545>-5:45``): no daylight saving after the last
#: transition a TZif file lists.
_STANDARD_ONLY = re.compile(rb"(<[^>]*>|[A-Za-z]+)[+-]?\d{1,3}(:\d{2}){0,2}")


def fixed_offset(zone: ZoneInfo) -> dt.timezone | None:
    """``zone`` as one fixed offset if it keeps a single UTC offset over the whole supported window (Asia/Shanghai:
    +08:00 since 1991), else None. ZoneInfo lists no transitions, so they are read with the stdlib loader ZoneInfo
    itself reads its data with: the offset changes only at a transition, or after the last one under a rule with
    daylight saving; the offsets at the window's start and at each transition inside it are ZoneInfo's own."""
    try:
        from zoneinfo import _common, _tzpath

        path = _tzpath.find_tzfile(zone.key)
        with open(path, "rb") if path is not None else _common.load_tzdata(zone.key) as fobj:
            _, transitions, _, _, _, rule = _common.load_data(fobj)
    except Exception:  # data this cannot read (another Python's loader): the zone converts as a ZoneInfo, always right
        return None
    start, end = EARLIEST.timestamp(), LATEST.timestamp()
    if (not transitions or transitions[-1] < end) and rule and not _STANDARD_ONLY.fullmatch(rule):
        return None
    instants = [EARLIEST] + [dt.datetime.fromtimestamp(t, dt.UTC) for t in transitions if start <= t < end]
    offsets = {when.astimezone(zone).utcoffset() for when in instants}
    return dt.timezone(offsets.pop()) if len(offsets) == 1 else None


def local_time(ruleset: RuleSet, stamp: str, psp_country: str | None) -> dt.datetime:
    """The wall-clock time of a valid request's instant in its PSP's jurisdiction, as the engine computes it
    (``psp_country`` None: the contract's default). For tools that build requests (strategies, invariants)."""
    when, problem = instant(stamp)
    zone = ruleset.timezones.get(psp_country or DEFAULT_PSP_COUNTRY)
    if when is None or zone is None:
        raise ValueError(problem or f"pack {ruleset.pack!r} has no timezone for psp_country {psp_country!r}")
    return when.astimezone(ZoneInfo(zone))


DEFAULT_PSP_COUNTRY = load_schema("payment_request")["properties"]["psp_country"]["default"]
#: What to say about an unknown key, by the JSON path of the object it is in.
_TOP_HINT = "data of your own goes under `extra`, which rules do not read"


def pack_schema(schema: dict, paths: tuple[str, ...]) -> dict:
    """The request contract as one pack accepts it: ``history`` takes only the counters the pack reads (a counter
    it does not read would be silently ignored: most likely a misspelling, or a pack that is not the one the
    caller thinks)."""
    read = {p.split(".", 1)[1] for p in paths if p.startswith("history.")}
    own = copy.deepcopy(schema)
    history = own["properties"]["history"]
    history["properties"] = {k: v for k, v in history["properties"].items() if k in read}
    return own


def counters_read(ruleset: RuleSet) -> frozenset[str]:
    """The ``history`` counters a pack's rules read (conditions and reasons): the only ones its requests may carry.
    For tools that build requests for a pack (strategies, benchmarks)."""
    paths = {p for r in ruleset.rules for p in fields_read(r.when)}
    for r in ruleset.rules:
        paths.update(r.reason.fields)
        if r.reason_zh:
            paths.update(r.reason_zh.fields)
    return frozenset(p.split(".", 1)[1] for p in paths if p.startswith("history."))


def money_places(schema: dict) -> dict[str, int]:
    """Request fields holding money in a fixed currency, with the decimals they may have (two, like CNY)."""
    money = {f"history.{name}": 2 for name in schema["properties"]["history"]["properties"]
             if name.endswith(_MONEY_SUFFIXES)}
    money["funding_source.available_credit_cny"] = 2
    return money


#: Derived amounts that take a cross rate (an exact Fraction, about 1 µs each) and that few rules reach: on the
#: hot path they are computed when a rule first reads them (see ``PreparedRequest.complete``).
CROSS_RATE_PATHS = {"USD": "derived.amount_usd", "EUR": "derived.amount_eur"}


def cross_rate_amount(cny: Decimal | int, ratio: tuple[int, int]) -> Fraction:
    """``cny / rate`` as one exact fraction, where ``ratio`` is the rate as (p, q): (n/d) / (p/q) = n*q / (d*p)."""
    n, d = cny.as_integer_ratio()
    p, q = ratio
    return Fraction(n * q, d * p)


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """A valid request, normalised: ``view`` maps dotted field paths to exact values (missing = absent).

    A request prepared for the hot path may still have cross-rate amounts pending (``pending``: the CNY amount
    and the (currency, path) pairs to convert it to); :meth:`complete` computes them into ``view``. Requests
    handed out by :meth:`RequestPreparer.prepare` are always complete."""

    request_id: str
    view: dict[str, Any]
    day: int  # local calendar date of the payment, as an ordinal (as-of evaluation)
    fx: FxTable
    pending: tuple[Decimal | int, tuple[tuple[str, str], ...]] | None = None
    defaulted: tuple[str, ...] = ()  # fields the request left out that took the pack's declared default

    def complete(self) -> dict[str, Any]:
        """The view with every derived amount in it (idempotent, cheap once done)."""
        if self.pending is not None:
            view = self.view
            cny, targets = self.pending
            for currency, path in targets:
                if path not in view:
                    view[path] = cross_rate_amount(cny, self.fx.ratios[currency])
        return self.view


_build_prepared = positional_builder(PreparedRequest)


def _reportable_id(rid: Any) -> str | None:
    """The request id an error may carry: a string that can be written anywhere (an id with a lone surrogate,
    itself a violation, is kept with the surrogate escaped so the error record can still be encoded)."""
    if not isinstance(rid, str):
        return None
    try:
        rid.encode("utf-8")
    except UnicodeEncodeError:
        return rid.encode("utf-8", "backslashreplace").decode("utf-8")
    return rid


class RequestPreparer:
    """Validates and normalises requests for one rule set."""

    def __init__(self, ruleset: RuleSet, paths: tuple[str, ...]):
        schema = pack_schema(load_schema("payment_request"), paths)
        self.ruleset = ruleset
        self._zones = {country: ZoneInfo(name) for country, name in ruleset.timezones.items()}
        # jurisdictions whose clock is one offset over the whole window: a timestamp written in that offset
        # already reads the local wall-clock time, with no conversion (a ZoneInfo's takes a transition lookup)
        self._fixed = {country: fixed for country, zone in self._zones.items()
                       if (fixed := fixed_offset(zone)) is not None}
        self._defaults = self._collect_defaults(schema)
        # Only the fields the pack reads (conditions, reasons) are flattened; derived fields are computed
        # only when some rule reads them.
        # (a counterparty's own path is its presence marker, set below, not a field to validate or flatten)
        plain = [p for p in paths if not p.startswith("derived.") and p not in NOT_APPLICABLE_WHEN_ABSENT]
        kinds = FieldCatalog(schema)
        money = money_places(schema)
        collect = {p: kinds.get(p) is not None and kinds.get(p).kind == "num" for p in plain}
        counters = ", ".join(sorted(schema["properties"]["history"]["properties"])) or "none"
        hints = {"$": _TOP_HINT, "$.history": f"pack {ruleset.pack!r} reads only these counters: {counters}"}
        self._validate_collect = compile_schema(schema, collect, money, hints)
        # Valid requests take the fast path (accept-only, no error bookkeeping); anything it is unsure of,
        # and every invalid request, goes through the full validator, which reports every violation.
        self._fast = compile_fast_path(schema, collect, money) or (lambda _request: None)
        # Request text can skip the dicts: decoded into Structs and validated in one native pass, which declines
        # (None) whatever it is unsure of; then the text is parsed and prepared as above.
        self._native = compile_native(schema, collect, money)
        # schema defaults to fill in: (path, parent object or None, value)
        self._fill = tuple((p, p.split(".")[0] if "." in p else None, v) for p, v in self._defaults.items()
                           if p in plain)
        derived = {p for p in paths if p.startswith("derived.")}
        # which derived fields the pack reads, decided once here rather than by set lookups per request
        self._derives = bool(derived)
        self._local_hour = "derived.local_hour" in derived
        self._amount_cny = "derived.amount_cny" in derived
        self._cross_rates = tuple((target, path) for target, path in CROSS_RATE_PATHS.items() if path in derived)
        # the pack's declared defaults for the fields it reads (DOMAIN §5.1 point 7), and the counterparties whose
        # presence decides whether a missing field of theirs is "not applicable" or unknown (§5.1 point 6)
        self._pack_defaults = tuple((p, v) for p, v in ruleset.defaults.items() if p in plain)
        # every field that may take a default: a request holding them all takes none
        self._default_paths = frozenset([p for p, _, _ in self._fill] + [p for p, _ in self._pack_defaults])
        self._parties = tuple(party for party in NOT_APPLICABLE_WHEN_ABSENT
                              if any(counterparty_of(p) == party for p in plain))
        # the FX table of each local date met so far: a dict read per request instead of a walk over every table
        # (bounded: the supported window holds about 36,500 dates)
        self._fx_by_day: dict[int, FxTable] = {}

    @staticmethod
    def _collect_defaults(schema: dict) -> dict[str, Any]:
        out: dict[str, Any] = {}

        def walk(s: dict, prefix: str) -> None:
            for name, sub in s.get("properties", {}).items():
                if "default" in sub:
                    out[prefix + name] = sub["default"]
                walk(sub, f"{prefix}{name}.")

        walk(schema, "")
        return out

    def prepare(self, request: Any, pending: bool = False) -> PreparedRequest:
        """Validate and normalise ``request`` (raises :class:`RequestError` listing every violation). With
        ``pending``, cross-rate amounts are left for :meth:`PreparedRequest.complete` (the engine's hot path)."""
        if type(request) is not dict:
            if not isinstance(request, Mapping):
                raise RequestError([Violation("$", f"a request is a JSON object, got {type(request).__name__}")])
            request = dict(request)
        view = self._fast(request)
        if view is not None and "derived" not in request:
            money = request["amount"]
            prepared = self._accept(request, view, money["value"], money["currency"], request["timestamp"],
                                    request.get("psp_country"), request["request_id"], pending)
            if prepared is not None:
                return prepared
        return self._prepare_reporting(request, pending)

    def prepare_text(self, text: bytes | str, pending: bool = False) -> PreparedRequest | None:
        """A request given as JSON text, prepared in the native pass (:mod:`policy_engine.native`), or ``None``
        when that pass declines it (no msgspec, or a text it cannot vouch for): then ``parse_json`` and
        :meth:`prepare` decide, and raise what is wrong."""
        if self._native is None:
            return None
        decoded = self._native(text)
        if decoded is None:
            return None
        request, view = decoded
        # the Struct's fields read as attributes: each a C slot read, where its ``[]`` and ``get`` are calls
        money = request.amount
        return self._accept(request, view, money.value, money.currency, request.timestamp, request.psp_country,
                            request.request_id, pending)

    def _accept(self, request: Any, view: dict[str, Any], value: Any, currency: str, stamp: str,
                country: str | None, rid: str, pending: bool) -> PreparedRequest | None:
        """A request valid as far as the schema goes (a dict, or the native pass's Struct, which reads alike),
        prepared, given the fields the engine checks itself (``country``: None when absent); ``None`` when one of
        those checks on the amount, the timestamp or the jurisdiction's clock fails: the full path then finds and
        reports it with every other violation."""
        amount = value if type(value) is Decimal or type(value) is int else _to_decimal(value)
        when, stamp_problem = instant(stamp)
        jurisdiction = country or DEFAULT_PSP_COUNTRY
        zone = self._zones.get(jurisdiction)
        if stamp_problem is None and zone is not None and _amount_problem(amount, value, currency) is None:
            # (only the wall-clock fields of the local time are read: its hour and its date)
            local = when if when.tzinfo == self._fixed.get(jurisdiction) else when.astimezone(zone)
            return self._normalise(request, view, rid, amount, currency, local, country, pending)
        return None

    def _prepare_reporting(self, request: dict, pending: bool) -> PreparedRequest:
        """The full path: every violation of the request, with its JSON path, in one RequestError."""
        rid = _reportable_id(request.get("request_id"))
        violations, view = self._validate_collect(request)
        if "derived" in request:  # not merely an unknown key: say why
            violations = [v for v in violations if v.path != "$.derived"]
            violations.append(Violation("$.derived", "derived fields are computed by the engine; do not send them"))
        amount = currency = when = None
        money = request.get("amount")
        if isinstance(money, dict) and not any(v.path.startswith("$.amount") for v in violations):
            amount, currency = _to_decimal(money["value"]), money["currency"]
            problem = _amount_problem(amount, money["value"], currency)
            if problem is not None:
                violations.append(Violation("$.amount.value", problem))
        stamp = request.get("timestamp")
        if isinstance(stamp, str) and not any(v.path == "$.timestamp" for v in violations):
            when, problem = instant(stamp)
            if problem is not None:
                violations.append(Violation("$.timestamp", problem))
        country = request.get("psp_country") or DEFAULT_PSP_COUNTRY
        zone = self._zones.get(country) if isinstance(country, str) else None  # a non-string is reported above
        if zone is None and not any(v.path == "$.psp_country" for v in violations):
            known = ", ".join(sorted(self._zones)) or "none"
            violations.append(Violation("$.psp_country", f"pack {self.ruleset.pack!r} declares no timezone for "
                                        f"psp_country {country!r} (its `timezones:` cover {known}); local hours "
                                        "and as-of dates need the jurisdiction's timezone"))
        if violations:
            raise RequestError(violations, rid)
        assert when is not None and zone is not None and amount is not None and currency is not None
        return self._normalise(request, view, rid or "", amount, currency, when.astimezone(zone),
                               request.get("psp_country"), pending)

    def _normalise(self, request: Any, view: dict[str, Any], rid: str, amount: Decimal | int, currency: str,
                   when: dt.datetime, country: str | None, pending: bool) -> PreparedRequest:
        # Every default a decision rests on is named in it (`defaulted`): the request contract's (psp_country,
        # which also sets the clock, and payer.type) and the pack's declared ones (history counters).
        # One C-level test: a full request takes no default.
        if country is not None and view.keys() >= self._default_paths:
            defaulted: tuple[str, ...] = ()
        else:
            defaulted = self._fill_defaults(request, view)
        for party in self._parties:
            if request.get(party) is not None:
                view[party] = True
        if "amount.value" in view:
            view["amount.value"] = amount
        day = when.toordinal()  # the calendar date in the PSP's jurisdiction
        fx = self._fx_by_day.get(day)
        if fx is None:
            fx = self._fx_by_day[day] = self.ruleset.fx_for(day)
        if not self._derives:
            return _build_prepared(rid, view, day, fx, None, defaulted)
        later = self._derive(view, amount, currency, when, fx)
        prepared = _build_prepared(rid, view, day, fx, later, defaulted)
        if later is not None and not pending:
            prepared.complete()
        return prepared

    def _fill_defaults(self, request: Any, view: dict[str, Any]) -> tuple[str, ...]:
        """The defaults a request that leaves some field out takes, into ``view``; returns the fields filled."""
        # (``get``, not ``in``: a validated psp_country is a string or absent, and on the native pass's Struct
        # ``in`` is a Python call while ``get`` is an attribute read in C)
        filled = [] if request.get("psp_country") is not None else ["psp_country"]
        for path, parent, value in self._fill:
            # a validated request's objects are objects or absent (None), so "not None" is "is an object"
            if path not in view and (parent is None or request.get(parent) is not None):
                view[path] = value
                if path != "psp_country":
                    filled.append(path)
        for path, value in self._pack_defaults:
            if path not in view:
                view[path] = value
                filled.append(path)
        return tuple(filled)

    def _derive(self, view: dict, amount: Decimal | int, currency: str, when: dt.datetime,
                fx: FxTable) -> tuple[Decimal | int, tuple[tuple[str, str], ...]] | None:
        """Derived fields into ``view``; returns what cross-rate conversions are left (see PreparedRequest)."""
        if self._local_hour:
            view["derived.local_hour"] = when.hour  # in the PSP jurisdiction's timezone (DOMAIN §5.1)
        rate = fx.rates.get(currency)
        if rate is None:
            return None  # no reference rate: amounts stay missing and the pack fails closed (CMP-000)
        cny = amount if currency == "CNY" else EXACT.multiply(Decimal(amount), rate)
        if self._amount_cny:
            view["derived.amount_cny"] = cny
        later = []
        for target, path in self._cross_rates:
            if currency == target:
                view[path] = amount
            elif target in fx.ratios:
                later.append((target, path))
        return (cny, tuple(later)) if later else None
