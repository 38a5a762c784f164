"""JSON in and out, for every reader and writer of the package: exact numbers, one decoder, JSON Lines.

Numbers are read exactly (decimals as ``Decimal``; NaN and Infinity refused), so money read from a file or a
stream compares as the analyst wrote it. A key repeated in one object is refused (a :class:`RequestError` naming
its JSON path): the last one would silently win, and what is decided would not be what another reader of the
same text sees. JSON Lines readers report a bad line as ``(line, None, problem)`` and go on with the next line,
so one corrupt record never loses the rest of a stream.

Native libraries carry the hot path where their wheels are installed: msgspec decodes (numbers exactly, through
``Decimal``) and orjson encodes; measured in README "Performance". Each is optional: without it, or with
:data:`PURE_ENV` set, the standard library gives the same values and the same errors. The native decoder has no
duplicate-key hook, so it only vouches for a text it can prove has none (see :func:`_native_parse`); any other
text, and any text it refuses, goes through the standard decoder, whose answer (value or error) is the contract.
"""

from __future__ import annotations

import io
import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal, DecimalException
from typing import Any, BinaryIO

from .errors import RequestError, Violation, json_path_step

#: The longest input :func:`read_json_records` reads as one (pretty-printed) document: a request, at most
#: ``engine.MAX_REQUEST_TEXT`` bytes, with room for its indentation.
DOCUMENT_LIMIT = 16 << 20

#: ``(line_number, value, None)`` for a line that parses, ``(line_number, None, problem)`` for one that does not:
#: a message for text that is not JSON, a :class:`RequestError` for JSON that is ambiguous (a repeated key).
Record = tuple[int, Any, "str | RequestError | None"]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid amount or number")


def _exact_decimal(text: str) -> Decimal:
    """``parse_float``: the number exactly, or a ``ValueError`` (invalid JSON to every caller) for one whose
    exponent no Decimal holds (``1e999999999999999999999``), which ``Decimal`` refuses with an ArithmeticError."""
    try:
        return Decimal(text)
    except DecimalException:
        raise ValueError(f"number {text[:40]} is beyond the range this engine reads exactly") from None


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
_DECODER = json.JSONDecoder(parse_float=_exact_decimal, parse_constant=_reject_constant,
                            object_pairs_hook=_unique_keys)
_MARKING_DECODER = json.JSONDecoder(parse_float=_exact_decimal, parse_constant=_reject_constant,
                                    object_pairs_hook=_marking_keys)


#: Set this environment variable (to anything but "" or "0") before import to use the standard library only.
PURE_ENV = "POLICY_ENGINE_PURE_JSON"

_DECLINED = object()  # the native decoder cannot vouch for a text: the standard decoder decides


def _load_native_decoder() -> Callable[[str | bytes], Any] | None:
    if os.environ.get(PURE_ENV, "") not in ("", "0"):
        return None
    try:
        import msgspec
    except ImportError:
        return None
    decode = msgspec.json.Decoder(float_hook=Decimal).decode
    reencode = msgspec.json.Encoder().encode
    error = msgspec.MsgspecError

    def native_parse(text: str | bytes) -> Any:
        """The value, or :data:`_DECLINED`. A repeated key leaves one ``:`` of the text out of the decoded value,
        so the value is returned only when re-encoding it gives back every ``:`` of the text. Escapes are
        declined first: ``\\u003a`` decodes to a ``:`` the text does not show, which could hide a repeat."""
        if type(text) is str:
            if "\\" in text:
                return _DECLINED
            colons = text.count(":")
        else:
            if b"\\" in text:
                return _DECLINED
            colons = text.count(b":")
        try:
            value = decode(text)
            return value if reencode(value).count(b":") == colons else _DECLINED
        # malformed, too deep, a huge integer, a lone surrogate; an exponent no Decimal holds (the standard
        # decoder says so)
        except (error, UnicodeError, RecursionError, DecimalException):
            return _DECLINED

    return native_parse


def _load_native_encoder() -> Callable[[Any], bytes] | None:
    if os.environ.get(PURE_ENV, "") not in ("", "0"):
        return None
    try:
        import orjson
    except ImportError:
        return None
    encode, option = orjson.dumps, orjson.OPT_NON_STR_KEYS

    def native_dumps(obj: Any) -> bytes:
        try:
            return encode(obj, default=str, option=option)
        except TypeError:  # an integer beyond 64 bits, or a lone surrogate: the standard encoder writes both
            return _pure_dumps(obj)

    return native_dumps


def _pure_dumps(obj: Any) -> bytes:
    # surrogatepass: a lone surrogate (text that is not Unicode, which the validator refuses but an error record
    # may quote) stays what it was through dumps() instead of failing the writer
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8", "surrogatepass")


_native_parse = _load_native_decoder()
_encode = _load_native_encoder() or _pure_dumps


def native_json() -> dict[str, bool]:
    """Which native libraries are in use (for the benchmark and diagnostics)."""
    return {"msgspec": _native_parse is not None, "orjson": _encode is not _pure_dumps}


def parse_json(text: str | bytes) -> Any:
    """JSON with exact numbers: decimals become ``Decimal``; NaN and Infinity are refused (``ValueError``). A key
    repeated in one object is a :class:`RequestError` naming its JSON path."""
    if _native_parse is not None:
        value = _native_parse(text)
        if value is not _DECLINED:
            return value
    return _parse_standard(text)


def _parse_standard(text: str | bytes) -> Any:
    try:
        try:
            return _decode(text, _DECODER)
        except _RepeatedKey:
            pass
        # Rare, so a second pass names the place instead of the hot path tracking where it is.
        try:
            document = _decode(text, _MARKING_DECODER)
        except ValueError:  # the text goes wrong after the repeat (a huge integer...): the repeat is the answer
            document = None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    path, key = _find_repeated(document, "$") or ("$", "") if document is not None else ("$", "")
    rid = document.get("request_id") if isinstance(document, dict) else None
    raise RequestError([Violation(path + json_path_step(key), "key appears more than once in this object; a "
                                                               "repeated key is ambiguous, send it once")],
                       rid if isinstance(rid, str) else None)


def _decode(text: str | bytes, decoder: json.JSONDecoder) -> Any:
    if type(text) is not str:
        # JSON text is UTF-8 (RFC 8259 §8.1), strictly, as the native decoder reads it: json.loads would also take
        # UTF-16/32 and a BOM in bytes (never in a str) and lone surrogates, so one request's text was decided or
        # refused by the path and the type it came in.
        text = text.decode("utf-8")
    if text.startswith("\ufeff"):  # else the decoder's message would be "Expecting value"
        raise ValueError("the text starts with a byte order mark (U+FEFF); JSON text is UTF-8 without one "
                         "(RFC 8259 §8.1): save or send it without the mark")
    return decoder.decode(text)


def dumps_bytes(obj: Any) -> bytes:
    """One JSON document on one line, compact, in UTF-8; values JSON has no type for (``Decimal``, dates) are
    written as text. The native and the standard encoder write the same bytes, except that a float below 1e-4
    is written in full by one (``0.00001``) and with an exponent by the other (``1e-05``)."""
    return _encode(obj)


def dumps(obj: Any) -> str:
    """:func:`dumps_bytes` as text."""
    return _encode(obj).decode("utf-8", "surrogatepass")


def decode_line(raw: bytes) -> tuple[Any, str | RequestError | None]:
    """One line of JSON Lines: ``(value, None)``, or ``(None, problem)`` saying what is wrong with it."""
    if _native_parse is not None:  # on the bytes: msgspec checks the UTF-8 as it reads
        value = _native_parse(raw)
        if value is not _DECLINED:
            return value, None
    try:
        return _parse_standard(raw.decode("utf-8")), None
    except RequestError as exc:
        return None, exc
    except UnicodeDecodeError as exc:
        return None, f"line is not UTF-8 (byte {exc.start})"
    except ValueError as exc:
        return None, f"invalid JSON: {exc}"


def read_json_lines(lines: Iterable[bytes], first: int = 1, decode: bool = True) -> Iterator[Record]:
    """Each non-blank line decoded, numbered from ``first``; a bad line yields its problem and reading goes on.
    With ``decode`` false each line is yielded as its bytes, undecoded, for a caller that decodes it itself."""
    for number, raw in enumerate(lines, start=first):
        if raw and not raw.isspace():  # not blank (strip() would copy every line)
            if not decode:
                yield number, raw, None
                continue
            value, problem = decode_line(raw)
            yield number, value, problem


def read_json_records(stream: BinaryIO, decode: bool = True) -> Iterator[Record]:
    """The records of a JSON document or a JSON Lines stream, told apart by their first lines.

    Input is JSON Lines when the first non-empty line, or failing that the second, is a complete JSON value;
    those are read one line at a time, so a stream of any length runs in flat memory and a bad line only
    produces an error record for that line. Otherwise the input is one JSON document (possibly spread over many
    lines; one longer than :data:`DOCUMENT_LIMIT` is no document, and is read line by line as it comes); if that
    does not parse either, it is read line by line after all, so no good line is lost, unless
    no line is a JSON object on its own: then it is one (pretty-printed) document with a mistake, reported once
    with its line and column.

    With ``decode`` false the lines of a JSON Lines stream are yielded as their bytes (no JSON value is ever
    ``bytes``), for a caller that decodes and decides in one step (``PolicyEngine.evaluate_json``); a document is
    still yielded decoded.
    """
    head: list[tuple[int, bytes]] = []
    read: list[bytes] = []  # blank lines too: a fallback to lines must number them as the input does
    for raw in stream:
        read.append(raw)
        if raw.strip():
            head.append((len(read), raw))
            if len(head) == 2:
                break
    if not head:
        return
    if any(not isinstance(decode_line(raw)[1], str) for _, raw in head):  # JSON, if perhaps an ambiguous one
        for n, raw in head:
            yield (n, *decode_line(raw)) if decode else (n, raw, None)
        yield from read_json_lines(stream, len(read) + 1, decode)
        return
    first = head[0][0]
    rest = stream.read(DOCUMENT_LIMIT + 1)
    text = b"".join(read[first - 1:]) + rest
    if len(rest) > DOCUMENT_LIMIT:
        # No document is this long: a stream whose first lines are bad. It is read on line by line, in flat
        # memory (the whole input used to be read first, however large), from the end of the line cut here.
        text += b"" if text.endswith(b"\n") else stream.readline()
        yield from read_json_lines(itertools.chain(io.BytesIO(text), stream), first, decode)
        return
    try:
        yield first, parse_json(text.decode("utf-8")), None
    except RequestError as exc:
        yield first, None, exc
    except json.JSONDecodeError as exc:
        if any(_is_object_line(raw) for raw in text.splitlines()):
            yield from read_json_lines(io.BytesIO(text), first, decode)
        else:
            line = first + exc.lineno - 1
            yield line, None, f"invalid JSON: {exc.msg} at line {line}, column {exc.colno}"
    except (ValueError, UnicodeDecodeError):
        yield from read_json_lines(io.BytesIO(text), first, decode)


def _is_object_line(raw: bytes) -> bool:
    """Whether a line is a JSON object on its own, as the lines of a JSON Lines stream are (a line of a
    pretty-printed document never is: it holds a key, a bracket, or a value inside an array)."""
    stripped = raw.strip()
    return stripped.startswith(b"{") and stripped.endswith(b"}") and not isinstance(decode_line(stripped)[1], str)
