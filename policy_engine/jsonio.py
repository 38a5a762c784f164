"""JSON in and out, for every reader and writer of the package: exact numbers, one decoder, JSON Lines.

Numbers are read exactly (decimals as ``Decimal``; NaN and Infinity refused), so money read from a file or a
stream compares as the analyst wrote it. A key repeated in one object is refused (a :class:`RequestError` naming
its JSON path): the last one would silently win, and what is decided would not be what another reader of the
same text sees. JSON Lines readers report a bad line as ``(line, None, problem)`` and go on with the next line,
so one corrupt record never loses the rest of a stream.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any, BinaryIO

from .errors import RequestError, Violation, json_path_step

#: ``(line_number, value, None)`` for a line that parses, ``(line_number, None, problem)`` for one that does not:
#: a message for text that is not JSON, a :class:`RequestError` for JSON that is ambiguous (a repeated key).
Record = tuple[int, Any, "str | RequestError | None"]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid amount or number")


class _RepeatedKey(Exception):
    """Raised inside the decoder; :func:`parse_json` turns it into a :class:`RequestError` with the JSON path."""


def _unique_keys(pairs: list[tuple[str, Any]], dict: type = dict, len: Any = len) -> dict[str, Any]:
    """``object_pairs_hook`` that refuses a repeated key (builtins bound as defaults: it runs for every object)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _RepeatedKey
    return obj


class _Repeated(dict):
    """An object that had a repeated key (the slow second pass, to name where)."""

    key: str = ""


def _marking_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    marked = _Repeated(pairs)
    marked.key = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
    return marked


def _find_repeated(value: Any, path: str) -> tuple[str, str] | None:
    """``(path, key)`` of the first object, depth first, that had a repeated key."""
    if isinstance(value, _Repeated):
        return path, value.key
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for name, child in children:
        found = _find_repeated(child, path + (json_path_step(name) if isinstance(name, str) else f"[{name}]"))
        if found is not None:
            return found
    return None


#: One decoder for every line: ``json.loads`` with options builds a new decoder per call (2 µs of a 10 µs parse).
#: The duplicate-key hook costs about 3.5 µs of a request's 10.5 (the C scanner builds a list of pairs per
#: object instead of the dict; measured on the acceptance requests).
_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
_MARKING_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant,
                                    object_pairs_hook=_marking_keys)


def parse_json(text: str | bytes) -> Any:
    """JSON with exact numbers: decimals become ``Decimal``; NaN and Infinity are refused (``ValueError``). A key
    repeated in one object is a :class:`RequestError` naming its JSON path."""
    try:
        try:
            return _decode(text, _DECODER)
        except _RepeatedKey:
            pass
        # Rare, so a second pass names the place instead of the hot path tracking where it is.
        document = _decode(text, _MARKING_DECODER)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    path, key = _find_repeated(document, "$") or ("$", "")
    rid = document.get("request_id") if isinstance(document, dict) else None
    raise RequestError([Violation(path + json_path_step(key), "key appears more than once in this object; a "
                                                               "repeated key is ambiguous, send it once")],
                       rid if isinstance(rid, str) else None)


def _decode(text: str | bytes, decoder: json.JSONDecoder) -> Any:
    if type(text) is str and not text.startswith("\ufeff"):
        return decoder.decode(text)
    # bytes (json.loads detects the encoding) and a leading BOM (json.loads says that is what is wrong)
    return json.loads(text, parse_float=decoder.parse_float, parse_constant=_reject_constant,
                      object_pairs_hook=decoder.object_pairs_hook)


def dumps(obj: Any) -> str:
    """One JSON document on one line; values JSON has no type for (``Decimal``, dates) are written as text."""
    return json.dumps(obj, ensure_ascii=False, default=str)


def decode_line(raw: bytes) -> tuple[Any, str | RequestError | None]:
    """One line of JSON Lines: ``(value, None)``, or ``(None, problem)`` saying what is wrong with it."""
    try:
        return parse_json(raw.decode("utf-8")), None
    except RequestError as exc:
        return None, exc
    except UnicodeDecodeError as exc:
        return None, f"line is not UTF-8 (byte {exc.start})"
    except ValueError as exc:
        return None, f"invalid JSON: {exc}"


def read_json_lines(lines: Iterable[bytes], first: int = 1) -> Iterator[Record]:
    """Each non-blank line decoded, numbered from ``first``; a bad line yields its problem and reading goes on."""
    for number, raw in enumerate(lines, start=first):
        if raw.strip():
            value, problem = decode_line(raw)
            yield number, value, problem


def read_json_records(stream: BinaryIO) -> Iterator[Record]:
    """The records of a JSON document or a JSON Lines stream, told apart by their first lines.

    Input is JSON Lines when the first non-empty line, or failing that the second, is a complete JSON value;
    those are read one line at a time, so a stream of any length runs in flat memory and a bad line only
    produces an error record for that line. Otherwise the input is one JSON document (possibly spread over many
    lines); if that does not parse either, it is read line by line after all, so no good line is lost, unless
    no line is a JSON object on its own: then it is one (pretty-printed) document with a mistake, reported once
    with its line and column.
    """
    head: list[tuple[int, bytes]] = []
    number = 0
    for raw in stream:
        number += 1
        if raw.strip():
            head.append((number, raw))
            if len(head) == 2:
                break
    if not head:
        return
    if any(not isinstance(decode_line(raw)[1], str) for _, raw in head):  # JSON, if perhaps an ambiguous one
        for n, raw in head:
            value, problem = decode_line(raw)
            yield n, value, problem
        yield from read_json_lines(stream, number + 1)
        return
    text = b"".join(raw for _, raw in head) + stream.read()
    first = head[0][0]
    try:
        yield first, parse_json(text.decode("utf-8")), None
    except RequestError as exc:
        yield first, None, exc
    except json.JSONDecodeError as exc:
        if any(_is_object_line(raw) for raw in text.splitlines()):
            yield from read_json_lines(io.BytesIO(text), first)
        else:
            line = first + exc.lineno - 1
            yield line, None, f"invalid JSON: {exc.msg} at line {line}, column {exc.colno}"
    except (ValueError, UnicodeDecodeError):
        yield from read_json_lines(io.BytesIO(text), first)


def _is_object_line(raw: bytes) -> bool:
    """Whether a line is a JSON object on its own, as the lines of a JSON Lines stream are (a line of a
    pretty-printed document never is: it holds a key, a bracket, or a value inside an array)."""
    stripped = raw.strip()
    return stripped.startswith(b"{") and stripped.endswith(b"}") and not isinstance(decode_line(stripped)[1], str)
