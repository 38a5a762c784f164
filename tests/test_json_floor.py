"""JSON text in, decision JSON out (issue 15): ``evaluate_json`` against ``evaluate``, the native decoder against
the standard one on any text, and the pure-Python path (no msgspec, no orjson) giving the same values, errors
and bytes."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from conftest import load_cases
from hypothesis import given
from hypothesis import strategies as st

from policy_engine import PolicyEngine, RequestError, jsonio
from policy_engine.engine import MAX_REQUEST_TEXT
from policy_engine.synthetic import dumps_request, iter_payments
from policy_engine.testing.strategies import invalid_requests, requests


@pytest.fixture(scope="module")
def engine() -> Iterator[PolicyEngine]:
    eng = PolicyEngine.from_path()
    yield eng
    eng.close()


@pytest.fixture(params=["native", "pure"])
def json_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """jsonio reloaded with its native libraries, or forced to the standard library. The reload reuses the
    module's namespace, so every function already imported elsewhere (the engine's, the CLI's) reads the choice."""
    if request.param == "pure":
        monkeypatch.setenv(jsonio.PURE_ENV, "1")
    importlib.reload(jsonio)
    if request.param == "native" and not any(jsonio.native_json().values()):
        pytest.skip("neither msgspec nor orjson is in use")
    assert any(jsonio.native_json().values()) is (request.param == "native")
    yield request.param
    monkeypatch.undo()  # the environment as the run found it, then the module as it was
    importlib.reload(jsonio)


def _texts() -> list[str]:
    synthetic = []
    for payment in iter_payments(n=150, seed=11):
        payment.pop("label", None)
        synthetic.append(dumps_request(payment))
    return synthetic + [dumps_request(case["request"]) for case in load_cases()]


def _without_elapsed(document: bytes) -> dict[str, Any]:
    value = json.loads(document)
    value.pop("elapsed_us")
    return value


def test_evaluate_json_writes_the_decisions_document(engine, json_mode):
    for text in _texts():
        expected = engine.evaluate(jsonio.parse_json(text))
        out = engine.evaluate_json(text)
        assert _without_elapsed(out) == _without_elapsed(engine.evaluate_json(text.encode("utf-8")))
        reference = json.loads(json.dumps(expected.to_dict(), default=str))
        reference.pop("elapsed_us")
        assert _without_elapsed(out) == reference
        document = expected.to_dict()
        document["elapsed_us"] = json.loads(out)["elapsed_us"]
        assert out == jsonio.dumps_bytes(document)  # byte for byte, written without making the Decision
        assert out == jsonio.dumps_bytes(json.loads(out))  # the bytes are a function of the document


def test_native_and_pure_encoders_write_the_same_bytes(engine, monkeypatch):
    if not jsonio.native_json()["orjson"]:
        pytest.skip("orjson is not in use")
    documents = [engine.evaluate(jsonio.parse_json(t)).to_dict() for t in _texts()]
    documents.append({"big": 2**70, "small": -(2**65), 1: "non-string key", "text": "é\u2028\x00\"\\", "d": None})
    native = [jsonio.dumps_bytes(d) for d in documents]
    monkeypatch.setenv(jsonio.PURE_ENV, "1")
    importlib.reload(jsonio)
    try:
        assert [jsonio.dumps_bytes(d) for d in documents] == native
    finally:
        monkeypatch.undo()
        importlib.reload(jsonio)


def test_dumps_keeps_text_that_is_not_unicode(json_mode):
    value = {"request_id": "r\ud800", "n": 2**70}
    assert jsonio.dumps(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@given(request=requests())
def test_evaluate_json_decides_as_evaluate(engine, request):
    text = dumps_request(request)
    assert _without_elapsed(engine.evaluate_json(text)) == \
        _without_elapsed(jsonio.dumps_bytes(engine.evaluate(jsonio.parse_json(text)).to_dict()))


@given(request=requests())
def test_evaluate_json_writes_the_bytes_of_the_decisions_document(engine, request):
    """Byte for byte, key order included: without listeners the text path writes the document without making the
    Decision (fired, undecided and skipped entries, obligations, defaulted fields, Fraction and Decimal evidence,
    reasons in Chinese)."""
    text = dumps_request(request)
    out = engine.evaluate_json(text)
    document = engine.evaluate(jsonio.parse_json(text)).to_dict()
    document["elapsed_us"] = json.loads(out)["elapsed_us"]  # the one value that differs; its place stays
    assert out == jsonio.dumps_bytes(document)


@given(request=invalid_requests())
def test_evaluate_json_refuses_what_evaluate_refuses(engine, request):
    text = dumps_request(request)
    with pytest.raises(RequestError) as got:
        engine.evaluate_json(text)
    try:
        parsed = jsonio.parse_json(text)
    except ValueError:  # NaN or Infinity written into the text: not JSON this engine reads, refused at the root
        assert [v.path for v in got.value.violations] == ["$"]
        return
    with pytest.raises(RequestError) as expected:
        engine.evaluate(parsed)
    assert got.value.violations == expected.value.violations


@pytest.mark.parametrize("text, path, words", [
    ('{"request_id": "r1", "amount": {"value": 1, "value": 2}}', "$.amount.value", "more than once"),
    ('{"request_id": "r1", "a": 1, "a": "\\u003a"}', "$.a", "more than once"),  # the escape hides a colon
    ('{"amount": {"value": NaN}}', "$", "not valid JSON"),
    ('{"amount": ', "$", "not valid JSON"),
    (b'{"payer": "\xff"}', "$", "not valid JSON"),
    ("[]", "$", "JSON object"),
    (" " * (MAX_REQUEST_TEXT + 1), "$", "beyond"),
])
def test_evaluate_json_errors_name_the_place(engine, json_mode, text, path, words):
    with pytest.raises(RequestError) as exc:
        engine.evaluate_json(text)
    assert [v.path for v in exc.value.violations] == [path] and words in exc.value.violations[0].message


# -- the native decoder vouches only for what the standard one would answer the same ------------------------------
_KEYS = st.sampled_from(["a", "b", "a:b", ":", "é", "\u2028", "x\\y", "\"q\""]) | st.text(max_size=4)


def _number() -> st.SearchStrategy[str]:
    ints = st.integers(min_value=-(10**30), max_value=10**30).map(str)
    decimals = st.decimals(allow_nan=False, allow_infinity=False).map(str)
    return ints | decimals | st.sampled_from(["-0", "1e400", "0.1e-3", "1" * 4400, "NaN", "2.50"])


@st.composite
def _json_text(draw: st.DrawFn, depth: int = 0) -> str:
    """JSON text (sometimes not quite JSON) whose objects may repeat a key and whose strings may be escaped."""
    kind = draw(st.sampled_from(["scalar", "array", "object"] if depth < 3 else ["scalar"]))
    sep = draw(st.sampled_from([",", ", ", " ,\n"]))
    if kind == "array":
        return "[" + sep.join(draw(st.lists(_json_text(depth + 1), max_size=3))) + "]"
    if kind == "object":
        pairs = draw(st.lists(st.tuples(_KEYS, _json_text(depth + 1)), max_size=4))
        colon = draw(st.sampled_from([":", " : "]))
        return "{" + sep.join(json.dumps(k, ensure_ascii=draw(st.booleans())) + colon + v for k, v in pairs) + "}"
    return draw(st.one_of(st.none().map(json.dumps), st.booleans().map(json.dumps), _number(),
                          st.text(max_size=6).map(lambda s: json.dumps(s, ensure_ascii=False)), _KEYS.map(json.dumps),
                          st.sampled_from(['"\\u003a"', '"a\\u003a\\u003ab"'])))  # colons the text does not show


def _standard(text: str | bytes) -> Any:
    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in pairs}) != len(pairs):
            raise KeyError("repeated")
        return dict(pairs)

    def refuse(name: str) -> Any:
        raise ValueError(name)

    return json.loads(text, parse_float=Decimal, parse_constant=refuse, object_pairs_hook=unique)


def _outcome(parse: Any, text: str | bytes) -> str:
    try:
        return repr(parse(text))  # repr: Decimal("1.10") and 1.1 and 1 must stay apart
    except (KeyError, RequestError):
        return "repeated key"
    except ValueError:
        return "not JSON"


@given(text=_json_text(), as_bytes=st.booleans())
def test_parse_json_answers_as_the_standard_decoder(text, as_bytes):
    data = text.encode("utf-8", "surrogatepass") if as_bytes else text
    assert _outcome(jsonio.parse_json, data) == _outcome(_standard, data)
    if as_bytes:  # a JSON Lines line too
        value, problem = jsonio.decode_line(data)
        answer = ("repeated key" if isinstance(problem, RequestError) else "not JSON") if problem else repr(value)
        assert answer == _outcome(_standard, data)
