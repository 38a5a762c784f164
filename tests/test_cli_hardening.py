"""The command line never prints a traceback: a decision log it cannot open or write, a broken pretty-printed
document, hostile request strings, a missing pack each get one line and the right exit code; the decision log's
pseudonyms are keyed from the command line."""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import base_request, decision_json_lines

from policy_engine.audit import mask_value
from policy_engine.cli import EXIT_BAD_INPUT, EXIT_ENGINE, EXIT_OK, main


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def requests_file(tmp_path: Path, *requests: dict, name: str = "requests.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in requests), encoding="utf-8")
    return path


def cli(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    return subprocess.run([sys.executable, "-m", "policy_engine.cli", *argv], capture_output=True, timeout=120,
                          check=False, env=env, **kwargs)


# -- the decision log ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["missing/dir/log.jsonl", "."], ids=["missing directory", "a directory"])
def test_a_decision_log_that_cannot_be_opened_is_one_line_and_exit_2(tmp_path, where):
    requests = requests_file(tmp_path, base_request())
    code, out, err = run("evaluate", "--audit", str(tmp_path / where), str(requests))
    assert code == EXIT_BAD_INPUT and out == ""
    assert err.count("\n") == 1 and err.startswith("policy-engine: cannot open decision log")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_full_disk_stops_the_stream_and_no_decision_goes_out_unrecorded(tmp_path):
    requests = requests_file(tmp_path, base_request(request_id="a"), base_request(request_id="b"))
    code, out, err = run("evaluate", "--json", "--audit", "/dev/full", "--audit-key", "k", str(requests))
    assert code == EXIT_ENGINE
    (record,) = decision_json_lines(out)  # line 1 failed, line 2 was never decided
    assert record["error"] == "evaluation_failed" and record["line"] == 1
    assert err.count("\n") == 1 and "No space left on device" in err and "stopped at line 1" in err


def test_a_write_failure_mid_stream_stops_the_stream_with_every_decision_recorded(tmp_path):
    # A file-size limit makes the log's third record fail to write (EFBIG), after two were written.
    log = tmp_path / "log.jsonl"
    requests = requests_file(tmp_path, *(base_request(request_id=f"r-{n}") for n in range(5)))
    probe = cli("evaluate", "--audit", str(tmp_path / "probe.jsonl"), "--audit-key", "k", str(requests))
    assert probe.returncode == EXIT_OK, probe.stderr
    sizes = [len(line) + 1 for line in (tmp_path / "probe.jsonl").read_bytes().splitlines()]
    limit = sum(sizes[:2]) + sizes[2] // 2

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = cli("evaluate", "--json", "--audit", str(log), "--audit-key", "k", str(requests), preexec_fn=limited)
    assert proc.returncode == EXIT_ENGINE
    records = decision_json_lines(proc.stdout.decode())
    assert [r.get("request_id") for r in records[:2]] == ["r-0", "r-1"] and "error" not in records[0]
    assert records[2]["error"] == "evaluation_failed" and len(records) == 3
    logged = [json.loads(line)["request_id"] for line in log.read_bytes().splitlines() if line.endswith(b"}")]
    assert logged == ["r-0", "r-1"]  # every decision handed out is in the log
    assert b"Traceback" not in proc.stderr and proc.stderr.decode().count("\n") == 1


@pytest.mark.parametrize("how", ["option", "environment"])
def test_an_audit_key_gives_keyed_pseudonyms_without_a_warning(tmp_path, monkeypatch, how):
    log = tmp_path / "log.jsonl"
    requests = requests_file(tmp_path, base_request(payer__id="u-1001"))
    if how == "option":
        code, _, err = run("evaluate", "--audit", str(log), "--audit-key", "s3cret", str(requests))
    else:
        monkeypatch.setenv("POLICY_ENGINE_AUDIT_KEY", "s3cret")
        code, _, err = run("evaluate", "--audit", str(log), str(requests))
    assert code == EXIT_OK and err == ""
    (record,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert record["request"]["payer"]["id"] == mask_value("u-1001", b"s3cret") != mask_value("u-1001", None)


def test_unkeyed_pseudonyms_warn_once(tmp_path, monkeypatch):
    monkeypatch.delenv("POLICY_ENGINE_AUDIT_KEY", raising=False)
    log = tmp_path / "log.jsonl"
    requests = requests_file(tmp_path, *(base_request(request_id=f"r-{n}", payer__id="u-1001") for n in range(3)))
    code, _, err = run("evaluate", "--audit", str(log), str(requests))
    assert code == EXIT_OK
    assert err.count("\n") == 1 and "warning" in err and "POLICY_ENGINE_AUDIT_KEY" in err
    assert json.loads(log.read_text().splitlines()[0])["request"]["payer"]["id"] == mask_value("u-1001", None)


def test_an_empty_audit_key_is_refused(tmp_path):
    code, out, err = run("evaluate", "--audit", str(tmp_path / "log"), "--audit-key", "",
                         str(requests_file(tmp_path, base_request())))
    assert code == EXIT_BAD_INPUT and out == "" and "key is empty" in err


# -- input and output --------------------------------------------------------------------------------------------
PRETTY_BROKEN = """\

{
  "request_id": "pretty",
  "timestamp": "2025-06-10T14:30:00+08:00"
  "payer": {"id": "u-1"},
  "funding_source": {"type": "debit_card"},
  "purpose": "merchant_purchase",
  "amount": {"value": 100, "currency": "CNY"}
}
"""


@pytest.mark.parametrize("as_json", [False, True], ids=["readable", "json"])
def test_a_pretty_printed_document_with_one_mistake_gets_one_error_naming_line_and_column(tmp_path, as_json):
    path = tmp_path / "request.json"
    path.write_text(PRETTY_BROKEN, encoding="utf-8")
    code, out, _ = run("evaluate", *(["--json"] if as_json else []), str(path))
    assert code == EXIT_BAD_INPUT
    if as_json:
        (record,) = decision_json_lines(out)
        assert record["error"] == "invalid_json" and record["line"] == 5
        assert "line 5, column 3" in record["message"]
    else:
        assert out.count("\n") == 1 and "line 5, column 3" in out


def test_a_pretty_printed_document_without_mistakes_is_decided(tmp_path):
    path = tmp_path / "request.json"
    path.write_text(json.dumps(base_request(), indent=2), encoding="utf-8")
    code, out, err = run("evaluate", str(path))
    assert code == EXIT_OK and out.startswith("ALLOW"), err


def test_control_characters_in_request_strings_are_escaped_in_readable_output(tmp_path):
    hostile = base_request(request_id="x\x1b[31mred\u202e", funding_source__type="bnpl",
                           funding_source__product="bai\x1b[2Jtiao", purpose="credit_card_repayment")
    path = requests_file(tmp_path, hostile)
    for command in ("evaluate", "explain"):
        code, out, _ = run(command, str(path))
        assert code == EXIT_OK
        assert "\x1b" not in out and "\u202e" not in out
        assert "x\\x1b[31mred\\u202e" in out
    _, out, _ = run("evaluate", "--json", str(path))
    assert json.loads(out)["request_id"] == hostile["request_id"]  # JSON output keeps the value exactly


def test_verify_on_a_missing_pack_says_so(tmp_path):
    code, out, err = run("verify", str(tmp_path / "no-such-pack"))
    assert code == EXIT_BAD_INPUT and out == ""
    assert err == f"policy-engine verify: no rule pack at {tmp_path / 'no-such-pack'}\n"


def test_an_internal_error_is_one_line_and_never_success(tmp_path, monkeypatch):
    from policy_engine.commands import evaluate

    def broken(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(evaluate.PolicyEngine, "from_path", broken)
    code, out, err = run("evaluate", str(requests_file(tmp_path, base_request())))
    assert code == EXIT_ENGINE and out == ""
    assert err == "policy-engine: internal error (RuntimeError: boom); please report it\n"


@pytest.mark.parametrize("argv", [
    ["evaluate", "--audit", "/nonexistent-dir/log.jsonl", "-"],
    ["evaluate", "--audit", "/", "-"],
    ["evaluate", "-"],
    ["verify", "/nonexistent-pack"],
], ids=["audit-missing-dir", "audit-directory", "pretty-broken", "verify-missing-pack"])
def test_no_traceback_reaches_stderr(argv):
    proc = cli(*argv, input=PRETTY_BROKEN.encode())
    assert proc.returncode == EXIT_BAD_INPUT
    assert b"Traceback" not in proc.stderr and proc.stderr.count(b"\n") <= 1
