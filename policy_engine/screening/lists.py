"""Party lists as compliance teams receive them: OpenSanctions "simple" CSV, OFAC SDN CSV with its alias file.

Each list becomes a tuple of :class:`Party` entries, dated like every list item of a pack: an entry is on the
list from its start date (a date ordinal; ``None``: always). OpenSanctions' ``first_seen`` is that date (its
``last_seen`` is the last crawl that saw the entry, not an end date, so it is ignored); entries without one, and
every OFAC entry (the SDN files carry no dates), take the ``from:`` date the pack states for the list. A file's
modification time is never used: a fresh checkout would move it and change what a backtest of last year hits.

Problems are :class:`ListFileError` with ``file:line`` and are reported by the loader with every other issue.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PolicyEngineError
from .party import Party

if TYPE_CHECKING:  # the index imports rapidfuzz; reading a file does not need it
    from .index import ScreenIndex

#: The columns of the OpenSanctions simple CSV the screener reads (the file has more; they are ignored).
OPENSANCTIONS_COLUMNS = ("id", "name", "aliases", "countries", "first_seen")
#: OFAC writes an empty field as ``-0-``.
_OFAC_NULL = "-0-"
#: A CSV field larger than this is a broken file, not a name (the csv module's own limit is 128 KiB).
MAX_FIELD = 65_536


class ListFileError(PolicyEngineError, ValueError):
    """A party-list file that cannot be read as its format: ``where`` is ``file:line``."""

    def __init__(self, file: str, line: int, message: str):
        self.file, self.line, self.problem = file, line, message
        super().__init__(f"{file}:{line}: {message}")


@dataclass(frozen=True, slots=True)
class PartyList:
    """A screening list of a pack, with the index its ``screen`` leaves search."""

    name: str
    format: str
    files: tuple[str, ...]  # the files read (the pack names them relative to its directory)
    digest: str  # sha256 of the files' bytes, in order: the pack digest covers the list contents
    index: ScreenIndex = field(compare=False, repr=False)

    @property
    def parties(self) -> tuple[Party, ...]:
        return self.index.parties


def _rows(path: Path, display: str, header: tuple[str, ...] | None) -> Iterator[tuple[int, list[str] | dict[str, str]]]:
    """The rows of a CSV file with their line numbers; with ``header``, as dicts, after checking the header has
    those columns."""
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise ListFileError(display, 1, f"cannot read the list file: {exc.strerror or exc}") from exc
    with handle:
        reader: Any = csv.DictReader(handle) if header is not None else csv.reader(handle)
        try:
            if header is not None:
                missing = [c for c in header if c not in (reader.fieldnames or ())]  # type: ignore[union-attr]
                if missing:
                    raise ListFileError(display, 1, f"no column {', '.join(missing)} in the header line")
            for row in reader:
                yield reader.line_num, row
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ListFileError(display, reader.line_num + 1, f"not a readable CSV file: {exc}") from exc


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(";") if v.strip()]


def _day(value: str, display: str, line: int, column: str) -> int:
    try:
        return dt.date.fromisoformat(value[:10]).toordinal()
    except ValueError:
        raise ListFileError(display, line, f"{column} {value[:40]!r} is not a date (YYYY-MM-DD...)") from None


def read_opensanctions(path: Path, display: str, default_start: int | None) -> list[Party]:
    parties: list[Party] = []
    for line, row in _rows(path, display, OPENSANCTIONS_COLUMNS):
        assert isinstance(row, dict)
        if None in row or any(v is None for v in row.values()):
            raise ListFileError(display, line, "the row has a different number of fields than the header")
        if any(len(v) > MAX_FIELD for v in row.values()):
            raise ListFileError(display, line, f"a field is longer than {MAX_FIELD} characters")
        names = [row["name"].strip(), *_split(row["aliases"])]
        if not row["id"].strip() or not names[0]:
            raise ListFileError(display, line, "an entry needs an id and a name")
        first_seen = row["first_seen"].strip()
        start = _day(first_seen, display, line, "first_seen") if first_seen else default_start
        parties.append(Party(row["id"].strip(), tuple(dict.fromkeys(names)),
                             frozenset(c.upper() for c in _split(row["countries"])), start=start))
    return parties


def read_ofac(sdn: Path, sdn_display: str, aliases: Path | None, alias_display: str,
              start: int) -> list[Party]:
    """``sdn.csv`` (ent_num, SDN_Name, SDN_Type, ...; no header) and ``alt.csv`` (ent_num, alt_num, alt_type,
    alt_name, alt_remarks)."""
    entries: dict[str, list[str]] = {}
    for line, row in _rows(sdn, sdn_display, None):
        assert isinstance(row, list)
        if not row or row == ["\x1a"]:  # OFAC ends its files with an EOF control character
            continue
        if len(row) < 3 or not row[0].strip().isdigit() or row[1].strip() in ("", _OFAC_NULL):
            raise ListFileError(sdn_display, line, "not an OFAC SDN row (ent_num, SDN_Name, SDN_Type, ...)")
        entries.setdefault(row[0].strip(), []).append(row[1].strip())
    if aliases is not None:
        for line, row in _rows(aliases, alias_display, None):
            assert isinstance(row, list)
            if not row or row == ["\x1a"]:
                continue
            if len(row) < 4 or not row[0].strip().isdigit():
                raise ListFileError(alias_display, line, "not an OFAC alias row (ent_num, alt_num, alt_type, "
                                                         "alt_name, ...)")
            if row[0].strip() not in entries:
                raise ListFileError(alias_display, line, f"alias of ent_num {row[0].strip()}, which the SDN file "
                                                         "does not list")
            if row[3].strip() not in ("", _OFAC_NULL):
                entries[row[0].strip()].append(row[3].strip())
    return [Party(f"ofac-{num}", tuple(dict.fromkeys(names)), start=start) for num, names in entries.items()]


def file_digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
        h.update(b"\0")
    return "sha256:" + h.hexdigest()
