"""The shared JSON layer: exact numbers, JSON Lines with line numbers, a bad line reported and the rest read."""

from __future__ import annotations

import io
import json
from decimal import Decimal

import pytest
from conftest import base_request

from policy_engine import PolicyEngine, RequestError
from policy_engine.cli import main
from policy_engine.jsonio import dumps, parse_json, read_json_lines, read_json_records


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine.from_path()


def test_numbers_are_exact_and_constants_refused():
    assert parse_json('{"v": 0.1}')["v"] == Decimal("0.1")
    assert parse_json(b'{"v": 12}')["v"] == 12
    for text in ('{"v": NaN}', '{"v": Infinity}', "[" * 100_000):
        with pytest.raises(ValueError):
            parse_json(text)
    assert dumps({"v": Decimal("0.10"), "s": "元"}) == '{"v":"0.10","s":"元"}'


@pytest.mark.parametrize("number", ["1e999999999999999999999", "-1E-999999999999999999999"])
def test_a_number_no_decimal_holds_is_invalid_json_not_an_arithmetic_error(engine, number):
    """Decimal refuses an exponent beyond its range with an ArithmeticError; every reader says "invalid JSON"."""
    text = f'{{"v": {number}}}'
    for given in (text, text.encode()):
        with pytest.raises(ValueError, match="beyond the range"):
            parse_json(given)
    assert "beyond the range" in read_json_lines([text.encode()]).__next__()[2]
    request = json.dumps(base_request()).replace('"value": 100', f'"value": {number}')
    assert number in request
    with pytest.raises(RequestError) as got:
        engine.evaluate_json(request.encode())
    assert [v.path for v in got.value.violations] == ["$"]


@pytest.mark.parametrize("encode, problem", [
    (lambda text: b"\xef\xbb\xbf" + text.encode(), "byte order mark"),
    (lambda text: text.encode("utf-16"), "utf-8"),  # with its BOM
    (lambda text: text.replace("u-1", "u-1\ud800").encode("utf-8", "surrogatepass"), "utf-8"),  # a lone surrogate
])
def test_a_text_that_is_not_plain_utf8_is_refused_whatever_its_type_or_path(engine, tmp_path, encode, problem):
    """JSON text is UTF-8 (RFC 8259 8.1). json.loads took a BOM, UTF-16 and lone surrogates in bytes (never in a
    str), so a request was decided or refused by the type it came in: `evaluate --json` decided a BOM line that
    `evaluate` refused."""
    data = encode(json.dumps(base_request()))
    with pytest.raises(ValueError, match=f"(?i){problem}"):
        parse_json(data)
    with pytest.raises(RequestError, match=f"(?i){problem}"):
        engine.evaluate_json(data)
    if problem == "byte order mark":  # the first line of a file, where an editor leaves one
        (tmp_path / "r.jsonl").write_bytes(data + b"\n" + json.dumps(base_request()).encode() + b"\n")
        out = io.StringIO()
        main(["evaluate", "--json", str(tmp_path / "r.jsonl")], out, io.StringIO())
        first, second = map(json.loads, out.getvalue().splitlines())
        assert first["line"] == 1 and problem in first["message"] and second["decision"] == "allow"
        out = io.StringIO()
        main(["evaluate", str(tmp_path / "r.jsonl")], out, io.StringIO())
        assert "line 1" in out.getvalue() and problem in out.getvalue() and "ALLOW" in out.getvalue()


def test_json_lines_report_bad_lines_with_their_numbers_and_go_on():
    lines = [b'{"a": 1}\n', b"\n", b"{broken\n", b'"caf\xe9"\n', b'{"a": NaN}\n', b'{"a": 2.5}\n']
    records = list(read_json_lines(lines))
    assert [(n, value) for n, value, problem in records if problem is None] == [(1, {"a": 1}),
                                                                               (6, {"a": Decimal("2.5")})]
    problems = {n: problem for n, _, problem in records if problem is not None}
    assert sorted(problems) == [3, 4, 5]  # the blank line 2 is no record at all
    assert problems[3].startswith("invalid JSON") and "UTF-8" in problems[4] and "NaN" in problems[5]


@pytest.mark.parametrize("text, expected", [
    (b'{\n  "a": 1,\n  "b": [1,\n 2]\n}\n', [(1, {"a": 1, "b": [1, 2]}, None)]),  # one document over lines
    (b'\n{"a": 1}\n{"a": 2}\n', [(2, {"a": 1}, None), (3, {"a": 2}, None)]),  # JSON Lines
    (b'{broken\n{"a": 2}\n\n{"a": 3}\n', [(1, None, "x"), (2, {"a": 2}, None), (4, {"a": 3}, None)]),
    (b"", []),
])
def test_records_of_a_document_or_a_stream(text, expected):
    got = list(read_json_records(io.BytesIO(text)))
    assert [(n, v, p and "x") for n, v, p in got] == expected


def test_explain_reports_a_bad_line_and_explains_the_others(tmp_path):
    batch = tmp_path / "three.jsonl"
    batch.write_bytes(json.dumps(base_request(request_id="a")).encode() + b"\n{not json\n"
                      + json.dumps(base_request(request_id="c")).encode() + b"\n")
    out, err = io.StringIO(), io.StringIO()
    assert main(["explain", "--json", "--rule", "RSK-001", str(batch)], out=out, err=err) == 2
    assert [json.loads(line)["request_id"] for line in out.getvalue().splitlines()] == ["a", "c"]
    assert "line 2: invalid JSON" in err.getvalue()

