"""What differs between the SQL engines the columnar backtest runs on: DuckDB and Spark SQL.

The compiled plan is plain SQL (CASE, COALESCE, comparisons, CONCAT_WS, GROUP BY); only what is spelled
differently goes through a :class:`Dialect`: identifier quoting and string literals, exact decimal types and
products, text casts, the wall-clock time of an instant in a timezone, and what the counters stage
(:mod:`.windows`) needs of window frames: an exact order key and the start of a local calendar period.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

#: The widest exact decimal both engines have.
MAX_PRECISION = 38
#: Lines are below 2**32 in the counters stage's order key ``instant * 2**32 + line``.
LINE_BITS = 32


@dataclass(frozen=True, slots=True)
class DecimalType:
    """An exact decimal with ``digits`` digits before the point and ``scale`` after it."""

    digits: int
    scale: int

    @property
    def precision(self) -> int:
        return self.digits + self.scale

    def times(self, other: DecimalType) -> DecimalType:
        return DecimalType(self.digits + other.digits, self.scale + other.scale)

    def plus(self, other: DecimalType) -> DecimalType:
        return DecimalType(max(self.digits, other.digits) + 1, max(self.scale, other.scale))

    @classmethod
    def of(cls, value: Decimal | int) -> DecimalType:
        _, digits, exponent = Decimal(value).as_tuple()
        assert isinstance(exponent, int), "a rule constant is finite"
        return cls(max(1, len(digits) + exponent), max(0, -exponent))


class Dialect:
    """DuckDB's spelling; :class:`SparkDialect` overrides what Spark SQL spells differently."""

    name = "duckdb"
    #: RANGE frames may start at a per-row offset; otherwise (Spark) the counters stage plans its windows with
    #: constant offsets (:mod:`.windows`)
    per_row_frames = True

    def ident(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def string(self, value: str) -> str:
        return "'" + value.replace("'", "''") + "'"

    def decimal_type(self, t: DecimalType) -> str:
        return f"DECIMAL({max(1, t.precision)}, {t.scale})"

    def decimal(self, value: Decimal | int, t: DecimalType | None = None) -> str:
        t = t or DecimalType.of(value)
        return f"CAST({self.string(str(value))} AS {self.decimal_type(t)})"

    def cast_decimal(self, sql: str, t: DecimalType) -> str:
        return f"CAST({sql} AS {self.decimal_type(t)})"

    def multiply(self, a: str, at: DecimalType, b: str, bt: DecimalType) -> str:
        # DuckDB computes a product of two narrow decimals in 64 bits and overflows: widen one operand to the
        # product's precision first (the product is then exact; it never rounds, it would raise)
        return f"({self.cast_decimal(a, DecimalType(at.times(bt).precision - at.scale, at.scale))} * {b})"

    def text(self, sql: str) -> str:
        return f"CAST({sql} AS VARCHAR)"

    def same(self, a: str, b: str) -> str:
        """``a`` equals ``b``, two NULLs included (a join key that may be NULL)."""
        return f"({a} IS NOT DISTINCT FROM {b})"

    def date(self, ordinal: int) -> str:
        return f"DATE '{dt.date.fromordinal(ordinal).isoformat()}'"

    def local_time(self, instant_us: str, zone: str) -> str:
        """The wall-clock TIMESTAMP of an instant (microseconds since the epoch, UTC) in an IANA zone."""
        return self.local_timestamp(instant_us, self.string(zone))

    def local_timestamp(self, instant_us: str, zone: str) -> str:
        """:meth:`local_time` with the zone a SQL string expression (a per-row zone); its CAST to DATE is the
        local calendar date."""
        return f"timezone({zone}, make_timestamptz(CAST({instant_us} AS BIGINT)))"

    def order_key(self, instant_us: str, line: str) -> str:
        """An exact, orderable ``instant * 2**32 + line`` (wider than BIGINT); ``line`` may be the literal 0."""
        return f"(CAST({instant_us} AS HUGEINT) << {LINE_BITS}) + {line}"

    def period_start(self, local: str, zone: str, unit: str) -> str:
        """The UTC microseconds of the start of the local ``unit`` (day, month, year) in ``zone`` (a SQL string
        expression) holding the wall-clock ``local`` (a :meth:`local_timestamp`)."""
        return f"epoch_us(timezone({zone}, date_trunc('{unit}', {local})))"

    def count_distinct(self, value: str, frames: Sequence[str]) -> str:
        """How many distinct non-NULL ``value`` the window ``frames`` (each the contents of an OVER clause) hold
        together: one frame here (:attr:`per_row_frames`)."""
        (frame,) = frames
        return f"COUNT(DISTINCT {value}) OVER ({frame})"

    def hour(self, ts: str) -> str:
        return f"hour({ts})"

    def to_date(self, ts: str) -> str:
        return f"CAST({ts} AS DATE)"


class SparkDialect(Dialect):
    name = "spark"

    def ident(self, name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    def string(self, value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    def multiply(self, a: str, at: DecimalType, b: str, bt: DecimalType) -> str:
        # Spark types a product DECIMAL(p1 + p2 + 1, s1 + s2); with allowPrecisionLoss off (the session sets it)
        # it never rounds, so the operands go as they are
        return f"({a} * {b})"

    def text(self, sql: str) -> str:
        return f"CAST({sql} AS STRING)"

    per_row_frames = False

    def local_timestamp(self, instant_us: str, zone: str) -> str:
        return f"from_utc_timestamp(timestamp_micros({instant_us}), {zone})"

    def count_distinct(self, value: str, frames: Sequence[str]) -> str:
        # Spark has no DISTINCT window aggregate: the frames' sets of values, united
        sets = [f"collect_set({value}) OVER ({frame})" for frame in frames]
        return f"size({functools.reduce(lambda a, b: f'array_union({a}, {b})', sets)})"
