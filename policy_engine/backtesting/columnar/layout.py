"""The Parquet layout of a payment history (written by ``policy-engine convert``, read by every engine).

One row per payment:

- the request as nested STRUCT columns, one per object of the request contract (``payer``, ``merchant``, ...),
  with every field of the contract; a NULL struct is an absent object (a payment with no ``merchant`` keeps the
  "not applicable" meaning) and a NULL field a missing one. ``extra`` (the caller's own data, which no rule reads)
  is its JSON text.
- types from the contract: text, booleans, integers as BIGINT, and every other number (money: amounts have at
  most three decimals, money fields two) as DECIMAL(19, 3), exact;
- the record's own fields as top-level columns: ``label`` (its JSON text), ``label_known_at``, ``status``,
  ``decision``;
- ``__line``: the record's line (JSON Lines) or row (CSV) number in the converted file, the number every report
  names; ``__instant_us``: the payment's instant in microseconds since the epoch, UTC, as the engine reads the
  timestamp.

Only this module knows the layout; :mod:`.plan` compiles against it and :func:`record_of` turns a row back into
the record the row engine reads.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ...errors import PolicyEngineError
from ...fields import DERIVED_FIELDS, FieldCatalog
from ...resources import load_schema
from .dialect import DecimalType

LINE = "__line"
INSTANT = "__instant_us"
#: record-level keys: a history record is a request plus these
RECORD_FIELDS = ("label", "label_known_at", "status", "decision")
EXTRA = "extra"
#: every non-integer number of the request contract is money with at most three decimals, below 10**15 + 1
MONEY = DecimalType(16, 3)
INTEGER = DecimalType(19, 0)  # BIGINT
#: The file metadata ``convert`` writes (key, value): its rows passed the engine's own request validation. The
#: columnar engine checks in SQL only what depends on the pack (timezones, counters read); a file without the mark,
#: written by another tool, may hold rows the row engine refuses (an enum in the wrong case, an age of -5).
CONVERTED = (b"policy_engine.rows", b"validated by policy-engine convert")
_TODO = "convert the JSON Lines or CSV history first (policy-engine convert IN OUT.parquet), or use --engine row"


@dataclass(frozen=True, slots=True)
class Field:
    path: str
    kind: str  # str | bool | int | num
    parent: str | None  # the object it is in (None: top level)

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1]


def request_fields() -> tuple[Field, ...]:
    """Every field of the request contract, in schema order (derived fields are the engine's, not stored)."""
    catalog = FieldCatalog(load_schema("payment_request"))
    derived = {f.path for f in DERIVED_FIELDS}
    out = []
    for path in catalog.paths():
        if path in derived:
            continue
        info = catalog.get(path)
        assert info is not None
        kind = "int" if info.kind == "num" and info.integer else info.kind
        parent, _, _ = path.rpartition(".")
        out.append(Field(path, kind, parent or None))
    return tuple(out)


def objects(fields: tuple[Field, ...]) -> dict[str, list[Field]]:
    """The request's objects (struct columns) and their fields, in schema order."""
    out: dict[str, list[Field]] = {}
    for f in fields:
        if f.parent is not None:
            if "." in f.parent:
                raise AssertionError(f"the Parquet layout stores objects one level deep, not {f.path}")
            out.setdefault(f.parent, []).append(f)
    return out


def arrow_schema() -> Any:
    """The Parquet schema (pyarrow) of a converted history."""
    import pyarrow as pa

    def arrow_type(kind: str) -> Any:
        return {"str": pa.string(), "bool": pa.bool_(), "int": pa.int64(),
                "num": pa.decimal128(MONEY.precision, MONEY.scale)}[kind]

    fields = request_fields()
    structs = objects(fields)
    columns = [pa.field(LINE, pa.int64(), nullable=False), pa.field(INSTANT, pa.int64())]
    columns += [pa.field(name, pa.string()) for name in RECORD_FIELDS]
    done: set[str] = set()
    for f in fields:
        if f.parent is None:
            columns.append(pa.field(f.path, arrow_type(f.kind)))
        elif f.parent not in done:
            done.add(f.parent)
            columns.append(pa.field(f.parent, pa.struct([pa.field(g.name, arrow_type(g.kind))
                                                         for g in structs[f.parent]])))
    columns.append(pa.field(EXTRA, pa.string()))
    return pa.schema(columns, metadata=dict([CONVERTED]))


def check_layout(path: str) -> None:
    """Raise :class:`LayoutError` unless ``path`` is a history ``convert`` wrote, in this layout: the columnar
    engine decides its rows as valid requests."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise LayoutError(f"cannot read {path} as Parquet: {exc}") from None
    expected = arrow_schema()
    if not schema.remove_metadata().equals(expected.remove_metadata()):
        missing = [name for name in expected.names if name not in schema.names]
        what = (f"has no {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} column" if missing
                else "has columns of other types than the layout's")
        raise LayoutError(f"{path} {what}: it was not written by `policy-engine convert` (of this version); {_TODO}")
    key, value = CONVERTED
    if (schema.metadata or {}).get(key) != value:
        raise LayoutError(f"{path} was not written by `policy-engine convert` (its rows carry no mark that they "
                          f"were checked as requests, which the columnar engine relies on; a file convert wrote "
                          f"before it marked its files needs converting again); {_TODO}")


def row_of(line: int, instant_us: int, request: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    """A valid request and its record fields as a row of :func:`arrow_schema` (a Python dict for pyarrow)."""
    row: dict[str, Any] = {LINE: line, INSTANT: instant_us}
    for name in RECORD_FIELDS:
        value = record.get(name)
        row[name] = None if value is None else (value if name != "label" else json.dumps(value, default=str,
                                                                                          separators=(",", ":")))
    kinds = _kinds()
    for key, value in request.items():
        if key == EXTRA:
            row[EXTRA] = json.dumps(value, default=str, separators=(",", ":"))
        elif isinstance(value, dict):
            row[key] = {k: _number(v, kinds.get(f"{key}.{k}")) for k, v in value.items()}
        else:
            row[key] = _number(value, kinds.get(key))
    return row


@functools.cache
def _kinds() -> dict[str, str]:
    return {f.path: f.kind for f in request_fields()}


def _number(value: Any, kind: str | None) -> Any:
    """A valid request's number as its exact column takes it: an amount sent as a string ("12.50") or a float
    becomes its Decimal, an integer sent as 5.0 its int."""
    if kind == "num" and isinstance(value, str | float):
        return Decimal(value if isinstance(value, str) else repr(value))
    if kind == "int" and isinstance(value, Decimal | float) and value == int(value):
        return int(value)
    return value


def _plain(value: Any) -> Any:
    """A stored DECIMAL as the number it was written as: 12.500 -> 12.5, 1000.000 -> 1000."""
    if isinstance(value, Decimal):
        if value == value.to_integral_value():
            return int(value)
        return value.normalize()
    return value


def record_of(row: Mapping[str, Any], fields: tuple[Field, ...]) -> dict[str, Any]:
    """A stored row as the record the row engine reads: the request, plus its record fields where present."""
    record: dict[str, Any] = {}
    structs = objects(fields)
    for f in fields:
        if f.parent is None and row.get(f.path) is not None:
            record[f.path] = _plain(row[f.path])
    for name, members in structs.items():
        value = row.get(name)
        if value is not None:
            record[name] = {g.name: _plain(value[g.name]) for g in members if value.get(g.name) is not None}
    if row.get(EXTRA) is not None:
        record[EXTRA] = json.loads(row[EXTRA], parse_float=Decimal)
    for name in RECORD_FIELDS:
        if row.get(name) is not None:
            record[name] = json.loads(row[name], parse_float=Decimal) if name == "label" else row[name]
    return record


def read_records(path: str, batch_rows: int = 1000) -> Iterator[list[tuple[int, dict[str, Any]]]]:
    """The records of a converted Parquet file in batches of ``(line, record)`` (the row engine's input)."""
    import pyarrow.parquet as pq

    fields = request_fields()
    with pq.ParquetFile(path) as parquet:
        missing = [name for name in (LINE, INSTANT) if name not in parquet.schema_arrow.names]
        if missing:
            raise LayoutError(f"{path} has no {', '.join(missing)} column: it was not written by "
                              "`policy-engine convert` (convert the JSON Lines or CSV history first)")
        for batch in parquet.iter_batches(batch_size=batch_rows):
            yield [(row[LINE], record_of(row, fields)) for row in batch.to_pylist()]


class LayoutError(PolicyEngineError, ValueError):
    """A Parquet file whose columns are not a converted history's."""
