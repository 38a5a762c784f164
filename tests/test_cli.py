"""`policy-engine evaluate`: readable and JSON decisions, JSON Lines streams with error records, exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from conftest import EXAMPLES, MATCHERS, base_request, decision_json_lines, needs_durable

from policy_engine.cli import main
from policy_engine.resources import load_schema

DECISION_SCHEMA = jsonschema.Draft202012Validator(load_schema("decision"))
BAITIAO = EXAMPLES / "baitiao_credit_card_repayment.json"
BATCH = EXAMPLES / "batch.jsonl"
BATCH_DECIDED = ["AC-01", "AC-03", "AC-22", "AC-33", "AC-35"]  # lines 1-4 and 7; line 5 is invalid, 6 not JSON


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_baitiao_credit_card_repayment_is_denied_with_a_readable_reason():
    code, out, err = run("evaluate", str(BAITIAO))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["DENY", "AC-01"]
    (at,) = [i for i, line in enumerate(lines) if line.strip().startswith("FS-001 [deny]")]
    reason = lines[at + 1]
    assert "credit card" in reason and "own funds" in reason


def test_text_output_lists_the_deciding_rule_first_and_marks_skipped_rules():
    # AC-30: RSK-001 denies, RSK-006 steps up, CMP-025 and RSK-016 lack optional enrichment (skipped); the trail
    # is in pack order (CMP-025 first), the text puts what decided first and says "skipped", not the outcome
    code, out, err = run("evaluate", str(EXAMPLES / "high_risk_new_device.json"))
    assert code == 0, err
    heads = [line.split("]")[0].strip() + "]" for line in out.splitlines()
             if line.startswith("  ") and not line.startswith("    ") and "[" in line]
    assert heads == ["RSK-001 [deny]", "RSK-006 [step_up]", "CMP-025 [skipped]", "RSK-016 [skipped]"]


@pytest.mark.parametrize("matcher", MATCHERS)
@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.json*")))
def test_json_output_follows_the_decision_schema(example, matcher):
    code, out, err = run("evaluate", "--json", "--matcher", matcher, str(EXAMPLES / example))
    records = decision_json_lines(out)
    decisions = [r for r in records if "error" not in r]
    assert decisions, err
    for decision in decisions:
        problems = [f"{list(e.absolute_path)}: {e.message}" for e in DECISION_SCHEMA.iter_errors(decision)]
        assert problems == []
        assert decision["engine"]["matcher"] == matcher
        assert decision["allowed"] is (decision["decision"] == "allow")
    assert code == (2 if len(decisions) < len(records) else 0)


def _check_batch_records(records: list[dict]) -> None:
    assert len(records) == 7  # one object per input line
    assert [r.get("request_id") for r in records if "error" not in r] == BATCH_DECIDED
    errors = [r for r in records if "error" in r]
    assert [(r["error"], r["line"]) for r in errors] == [("invalid_request", 5), ("invalid_json", 6)]
    assert errors[0]["request_id"] == "broken"
    assert {v["path"] for v in errors[0]["violations"]} >= {"$.timestamp", "$.amount.value"}
    assert records.index(errors[0]) == 4 and records.index(errors[1]) == 5  # in input order


def test_batch_stream_json():
    code, out, _ = run("evaluate", "--json", str(BATCH))
    assert code == 2
    _check_batch_records(decision_json_lines(out))


def test_batch_stream_readable():
    code, out, _ = run("evaluate", str(BATCH))
    assert code == 2
    heads = [line.split()[:2] for line in out.splitlines() if line and not line.startswith(" ")]
    assert [h[1] for h in heads if h[0] != "ERROR"] == BATCH_DECIDED
    assert [h for h in heads if h[0] == "ERROR"] == [["ERROR", "line"], ["ERROR", "line"]]
    assert "ERROR    line 5: invalid request broken" in out
    assert "ERROR    line 6: invalid_json" in out


def _stream(tmp_path: Path, lines: list[bytes]) -> Path:
    path = tmp_path / "stream.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _request_line(rid: str) -> bytes:
    return json.dumps(base_request(request_id=rid)).encode()


def test_non_utf8_line_is_an_error_record_and_the_rest_is_decided(tmp_path):
    path = _stream(tmp_path, [_request_line("r-1"), b'{"request_id": "caf\xe9"}', b"", _request_line("r-4")])
    code, out, _ = run("evaluate", "--json", str(path))
    assert code == 2
    records = decision_json_lines(out)
    assert [r.get("request_id") for r in records if "error" not in r] == ["r-1", "r-4"]
    (error,) = [r for r in records if "error" in r]
    assert error["line"] == 2 and "UTF-8" in error["message"]


@pytest.mark.parametrize("first", [b"this is not json", b'{"request_id": "caf\xe9"}', b'{"request_id": '],
                         ids=["not-json", "not-utf8", "truncated"])
def test_a_bad_first_line_does_not_sink_the_stream(tmp_path, first):
    # DESIGN §7: a bad line in a stream yields an error record naming the line and the batch goes on --
    # the first line included.
    path = _stream(tmp_path, [first, _request_line("r-2"), _request_line("r-3")])
    code, out, _ = run("evaluate", "--json", str(path))
    assert code == 2
    records = decision_json_lines(out)
    assert [r["line"] for r in records if "error" in r] == [1]
    assert [r["request_id"] for r in records if "error" not in r] == ["r-2", "r-3"]


def test_pretty_printed_single_request_is_one_document():
    code, out, _ = run("evaluate", "--json", str(BAITIAO))
    assert code == 0
    (decision,) = decision_json_lines(out)
    assert decision["request_id"] == "AC-01" and decision["decision"] == "deny"


def test_stdin_when_no_file_is_given(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(BATCH.read_bytes()), encoding="utf-8"))
    code, out, _ = run("evaluate", "--json")
    assert code == 2
    _check_batch_records(decision_json_lines(out))


def test_installed_console_script_reads_stdin():
    script = Path(sys.executable).with_name("policy-engine")
    assert script.exists(), f"console script not installed next to {sys.executable}"
    proc = subprocess.run([str(script), "evaluate", "--json", "-"], input=BATCH.read_bytes(),
                          capture_output=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr.decode()
    _check_batch_records(decision_json_lines(proc.stdout.decode("utf-8")))


def test_bad_pack_decides_nothing(make_pack):
    pack = make_pack("""\
        - id: BAD-OP
          category: risk
          title: Unknown operator
          when: {field: amount.value, op: gtx, value: 100}
          outcome: review
          reason: Big.
          source: test
          verified: false
        """)
    code, out, err = run("evaluate", "--rules", str(pack), str(BATCH))
    assert code == 2
    assert out == ""
    assert f"{pack}:" in err and "BAD-OP: unknown operator 'gtx'" in err
    code, out, _ = run("evaluate", "--json", "--rules", str(pack), str(BATCH))
    assert code == 2
    (report,) = decision_json_lines(out)
    assert report["ok"] is False and [e["rule_id"] for e in report["errors"]] == ["BAD-OP"]
    assert "decision" not in report


def test_missing_request_file_is_bad_input(tmp_path):
    code, out, err = run("evaluate", str(tmp_path / "nope.json"))
    assert code == 2 and out == "" and "nope.json" in err


@needs_durable
def test_durable_matcher_decides_like_the_python_matcher():
    results = {}
    for matcher in ("durable", "python"):
        code, out, _ = run("evaluate", "--json", "--matcher", matcher, str(BATCH))
        assert code == 2
        records = decision_json_lines(out)
        _check_batch_records(records)
        assert {r["engine"]["matcher"] for r in records if "error" not in r} == {matcher}
        results[matcher] = [(r.get("decision"), [(e["rule_id"], e["status"]) for e in r.get("trail", [])])
                            for r in records]
    assert results["durable"] == results["python"]
    # the examples send no names: name screening (CMP-025) is skipped, visibly
    assert results["durable"][0] == ("deny", [("CMP-025", "skipped"), ("FS-001", "fired")])


def test_json_stream_lines_are_decided_as_the_decoded_requests_would_be(tmp_path):
    """`evaluate --json` hands each line of a stream to evaluate_json undecoded; every record, decision or error,
    is what deciding the decoded request gives (a line that is not JSON, not UTF-8, ambiguous or invalid included)."""
    from policy_engine import PolicyEngine
    from policy_engine.jsonio import read_json_records

    lines = [_request_line("a"), b"{broken", b'"caf\xe9"', _request_line("b").replace(b"{", b'{"request_id":"x",', 1),
             json.dumps(base_request(request_id="c", amount={"value": -1, "currency": "CNY"})).encode(),
             json.dumps(base_request(request_id="d", payer={"id": "p", "name": "Иван"})).encode(), b"[]",
             _request_line("e").replace(b'"value": 100', b'"value": 1e999999999999999999999')]
    path = _stream(tmp_path, lines)
    code, out, err = run("evaluate", "--json", str(path))
    got = [json.loads(line) for line in out.splitlines()]
    engine = PolicyEngine.from_path()
    expected = []
    with path.open("rb") as stream:
        for number, request, problem in read_json_records(stream):
            if isinstance(problem, str):
                expected.append({"error": "invalid_json", "line": number, "message": problem})
                continue
            try:
                if problem is not None:
                    raise problem
                expected.append(engine.evaluate(request).to_dict())
            except Exception as exc:  # the error records of the decoded path
                expected.append({**exc.to_dict(), "line": number})
    for record in got + expected:
        record.pop("elapsed_us", None)
    assert code == 2, err
    assert len(got) == len(lines) and got == json.loads(json.dumps(expected, default=str))
    assert [r.get("error") for r in got] == [None, "invalid_json", "invalid_json", "invalid_request",
                                             "invalid_request", None, "invalid_request", "invalid_json"]
