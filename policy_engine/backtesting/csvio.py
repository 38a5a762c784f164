"""Payments as CSV: one payment per row, a header row of dotted request paths.

The column mapping, for analysts exporting history from a warehouse:

- The header names request fields by their dotted path: ``request_id,timestamp,payer.id,funding_source.type,
  purpose,amount.value,amount.currency,...``. Any subset of the request schema's fields, in any order, plus the
  backtest's ``label`` (``fraud``, ``chargeback``, ``legit``) or ``label.kind`` and ``label.pattern`` (a known-bad
  pattern; a row fills one form or the other), ``label_known_at``, ``status`` and ``decision`` (what happened to
  the payment: see :mod:`.history`) and the caller's own ``extra.*`` columns (text). Any other column
  is refused with the header, naming it (requests are strict: it would make every row invalid).
- An empty cell is a missing field; an object whose cells are all empty is absent (a row without a merchant).
- A cell is typed by the request schema: numbers (``amount.value``, ``history.*`` totals, ``available_credit_cny``)
  are parsed as exact ``Decimal``; integers (``payer.age``, counts) as ``int``; booleans are ``true`` or ``false``
  (any case); everything else, including ``merchant.mcc`` ("0742" keeps its zero), stays text.
- A cell that does not parse as its type makes that row a bad line (reported with its line number); the run goes on.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, TextIO

from ..errors import PolicyEngineError
from ..fields import DERIVED_FIELDS, FieldCatalog
from ..resources import load_schema

LABEL_COLUMNS = ("label.kind", "label.pattern")
RECORD_COLUMNS = ("label", "label_known_at", "status", "decision")
_STR, _INT, _NUM, _BOOL = "str", "int", "num", "bool"


class CsvLayoutError(PolicyEngineError):
    """The CSV header cannot be mapped to requests (the whole file is refused, naming the column)."""


def _catalog() -> FieldCatalog:
    return FieldCatalog(load_schema("payment_request"))


def request_columns() -> tuple[str, ...]:
    """Every request field in schema order, then the label columns: the header :func:`write_csv` writes."""
    derived = {f.path for f in DERIVED_FIELDS}
    return tuple(p for p in _catalog().paths() if p not in derived) + LABEL_COLUMNS


def _kind(catalog: FieldCatalog, path: str) -> str:
    info = catalog.get(path)
    if info is None:  # a label, record or extra.* column: text
        return _STR
    if info.kind == "num":
        return _INT if info.integer else _NUM
    return _BOOL if info.kind == "bool" else _STR


@dataclass(frozen=True, slots=True)
class CsvLayout:
    """How one CSV header maps onto requests: a path (split into keys) and a cell type per column."""

    columns: tuple[str, ...]
    keys: tuple[tuple[str, ...], ...]
    kinds: tuple[str, ...]

    @classmethod
    def from_header(cls, header: Sequence[str]) -> CsvLayout:
        catalog = _catalog()
        columns = tuple(name.strip() for name in header)
        seen: set[str] = set()
        for index, name in enumerate(columns, start=1):
            if not name or any(not part for part in name.split(".")):
                raise CsvLayoutError(f"CSV header column {index} ({name!r}) is not a dotted field path such as "
                                     "payer.id")
            if name in seen:
                raise CsvLayoutError(f"CSV header names column {name!r} twice; keep one")
            if name.startswith("derived."):
                raise CsvLayoutError(f"CSV column {name!r}: derived fields are computed by the engine; drop the "
                                     "column")
            seen.add(name)
        for name in columns:
            # "payer" and "payer.id" cannot both be columns: one would overwrite the other.
            # "label" (fraud, chargeback, legit) and "label.kind"/"label.pattern" (a known-bad object) are the
            # label's two forms: a row fills one or the other (to_request refuses a row with both)
            parts = name.split(".")
            for cut in range(1, len(parts)):
                if ".".join(parts[:cut]) in seen and name not in LABEL_COLUMNS:
                    raise CsvLayoutError(f"CSV columns {'.'.join(parts[:cut])!r} and {name!r} overlap; a column "
                                         "is either a value or a parent of other columns")
        for name in columns:
            if (name not in catalog and name not in LABEL_COLUMNS and name not in RECORD_COLUMNS
                    and not name.startswith("extra.")):
                near = catalog.suggest(name)
                raise CsvLayoutError(f"CSV column {name!r} is not a request field"
                                     + (f"; did you mean {near!r}?" if near else "")
                                     + " (data of your own goes in extra.* columns)")
        if "request_id" not in seen:
            raise CsvLayoutError("CSV header has no request_id column; the first row must name the columns "
                                 "(request_id,timestamp,payer.id,...)")
        return cls(columns, tuple(tuple(c.split(".")) for c in columns), tuple(_kind(catalog, c) for c in columns))

    def to_request(self, row: Sequence[str]) -> dict[str, Any]:
        """One row as a request dict; raises ``ValueError`` naming the column of a cell that does not parse."""
        if len(row) != len(self.columns):
            raise ValueError(f"row has {len(row)} cells, the header has {len(self.columns)} columns")
        request: dict[str, Any] = {}
        for cell, keys, kind, column in zip(row, self.keys, self.kinds, self.columns, strict=True):
            if cell == "":
                continue
            node = request
            for key in keys[:-1]:
                node = node.setdefault(key, {})
                if not isinstance(node, dict):
                    raise ValueError(f"column {column}: {key} has a value in another column; give one or the other")
            if isinstance(node.get(keys[-1]), dict):
                raise ValueError(f"column {column}: {keys[-1]} has values in other columns; give one or the other")
            node[keys[-1]] = _parse(cell, kind, column)
        return request


def _parse(cell: str, kind: str, column: str) -> Any:
    if kind == _STR:
        return cell
    if kind == _BOOL:
        lowered = cell.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        raise ValueError(f"column {column}: {cell!r} is not a boolean (write true or false)")
    if kind == _INT:
        try:
            return int(cell.strip())
        except ValueError:
            raise ValueError(f"column {column}: {cell!r} is not an integer") from None
    try:
        value = Decimal(cell.strip())
    except InvalidOperation:
        raise ValueError(f"column {column}: {cell!r} is not a number") from None
    if not value.is_finite():
        raise ValueError(f"column {column}: {cell!r} is not a finite number")
    return value


def _cell(value: Any) -> str:
    if value is None or isinstance(value, dict):  # an object's fields have columns of their own
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def write_csv(requests: Iterable[dict[str, Any]], out: TextIO, columns: Sequence[str] | None = None) -> int:
    """Write requests as CSV with :func:`request_columns` (or ``columns``); returns the number of rows.

    Fields outside the columns are not written; a missing field is an empty cell."""
    columns = tuple(columns or request_columns())
    keys = [c.split(".") for c in columns]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    count = 0
    for request in requests:
        row = []
        for path in keys:
            node: Any = request
            for key in path:
                node = node.get(key) if isinstance(node, dict) else None
            row.append(_cell(node))
        writer.writerow(row)
        count += 1
    return count
