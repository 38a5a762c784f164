"""Attacks on the command line, the readers, backtest, replay and the decision log that once broke the fail-closed
contract (session 23): each test is the exact input that did, through the public API or a real process."""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import base_request

from policy_engine import jsonio
from policy_engine.backtesting.run import WORKERS_PER_CORE
from policy_engine.cli import EXIT_BAD_INPUT, EXIT_OK, main

ROOT = Path(__file__).resolve().parent.parent


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def jsonl(path: Path, *records: dict) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def python(script: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120, check=False, env=env,
                          **kwargs)


# -- the decision log ------------------------------------------------------------------------------------------
def test_a_log_left_with_a_partial_last_line_keeps_the_next_runs_decisions_readable(tmp_path):
    # A crash or a full disk left half a record without its newline; the next run appended its first record to
    # it, so a decision that was handed out was unreadable in the log (replay: "Expecting ',' delimiter").
    log = tmp_path / "log.jsonl"
    log.write_bytes(b'{"logged_at": "2026-12-01T00:00:00+00:00", "request_id": "cut-sh')
    requests = jsonl(tmp_path / "r.jsonl", *(base_request(request_id=f"r-{n}") for n in range(3)))
    assert run("evaluate", "--json", "--audit", str(log), "--audit-key", "k", str(requests))[0] == EXIT_OK
    code, out, _ = run("replay", "--json", str(log))
    report = json.loads(out)
    assert code == EXIT_BAD_INPUT and [u["line"] for u in report["unreadable"]] == [1]  # the cut record, named
    assert report["records"] == report["same"] == 3  # every decision of the second run is readable


def test_a_short_write_does_not_swallow_the_next_record(tmp_path):
    # The library goes on after a failed write (a service keeps serving); the record after a short write must
    # start on its own line.
    log = tmp_path / "log.jsonl"
    script = f"""
import os
import resource
import pytest
from conftest import base_request
from policy_engine import PolicyEngine
from policy_engine.audit import AuditLog
from policy_engine.errors import EvaluationError
engine = PolicyEngine.from_path(None, audit=AuditLog({str(log)!r}, key=b"k"))
engine.evaluate(base_request(request_id="before"))
size = os.path.getsize({str(log)!r})
resource.setrlimit(resource.RLIMIT_FSIZE, (size + size // 2, resource.RLIM_INFINITY))
try:
    engine.evaluate(base_request(request_id="cut"))
    raise SystemExit("the short write was not noticed")
except EvaluationError:
    pass
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
engine.evaluate(base_request(request_id="after"))
"""
    proc = python(script)
    assert proc.returncode == 0, proc.stderr.decode()
    lines = log.read_bytes().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["request_id"] == "after"
    assert json.loads(lines[0])["request_id"] == "before"
    assert resource.getrlimit(resource.RLIMIT_FSIZE)[0] == resource.RLIM_INFINITY  # the test process untouched


def _log_of(tmp_path: Path, n: int) -> list[dict]:
    log = tmp_path / "good.jsonl"
    requests = jsonl(tmp_path / "r.jsonl", *(base_request(request_id=f"r-{i}") for i in range(n)))
    assert run("evaluate", "--audit", str(log), "--audit-key", "k", str(requests))[0] == EXIT_OK
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


TAMPERED = {  # a record edited by hand or by a broken tool: each crashed the whole replay with a TypeError & co
    "decision not an object": lambda r: r.update(decision=5),
    "ruleset not an object": lambda r: r.update(ruleset=[1]),
    "trail not a list": lambda r: r["decision"].update(trail="x"),
    "trail entry not an object": lambda r: r["decision"].update(trail=[5]),
    "trail entry without rule_id": lambda r: r["decision"].update(trail=[{"status": "fired"}]),
    "rule_id not text": lambda r: r["decision"].update(trail=[{"rule_id": [1], "status": "fired"}]),
    "masked not a list": lambda r: r.update(masked=5),
    "masked entry not text": lambda r: r.update(masked=[[1]]),
    "request not an object": lambda r: r.update(request=[1]),
}


@pytest.mark.parametrize("tamper", TAMPERED.values(), ids=TAMPERED.keys())
def test_a_tampered_log_record_is_named_by_line_and_the_replay_goes_on(tmp_path, tamper):
    first, second, third = _log_of(tmp_path, 3)
    tamper(second)
    log = tmp_path / "tampered.jsonl"
    jsonl(log, first, second, third)
    code, out, err = run("replay", "--json", str(log))
    assert err == "" and code == EXIT_BAD_INPUT
    report = json.loads(out)
    assert [u["line"] for u in report["unreadable"]] == [2] and report["records"] == report["same"] == 2


# -- backtest --------------------------------------------------------------------------------------------------
def test_backtest_refuses_more_workers_than_the_machine_can_use(tmp_path):
    # The pool forks every worker at once, each building its packs: `--workers 10000` forked ten thousand
    # processes for a seven-line file. The bound is checked before anything is started.
    history = jsonl(tmp_path / "h.jsonl", base_request())
    too_many = WORKERS_PER_CORE * (os.cpu_count() or 1) + 1
    code, out, err = run("backtest", "--workers", str(too_many), str(history))
    assert code == EXIT_BAD_INPUT and out == ""
    assert err.startswith("policy-engine backtest: workers must be between 1 and") and err.count("\n") == 1
    assert run("backtest", "--workers", str(too_many - 1), "--json", str(history))[0] == EXIT_OK


# -- generate --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dates", [["--start", "9999-12-31", "--days", "10"], ["--start", "1999-12-31"],
                                   ["--start", "2099-12-01", "--days", "32"], ["--days", str(10**12)]],
                         ids=["past year 9999", "before 2000", "into 2100", "a trillion days"])
def test_generate_refuses_days_outside_the_request_window(dates):
    # --start 9999-12-31 --days 10 was an internal error (OverflowError: date value out of range), exit 3
    code, out, err = run("generate", "--payers", "1", *dates)
    assert code == EXIT_BAD_INPUT and out == ""
    assert err.startswith("policy-engine generate: --start") and "2100-01-01" in err and err.count("\n") == 1


# -- test ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("threshold", ["nan", "inf", "-5", "101", "lots"])
def test_a_coverage_gate_that_cannot_be_met_or_missed_is_refused(threshold, capsys):
    # --min-coverage nan passed the gate whatever the coverage (every comparison with NaN is false): exit 0
    with pytest.raises(SystemExit) as exited:
        main(["test", str(ROOT / "rules"), "--min-coverage", threshold])
    assert exited.value.code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "--min-coverage" in err and "percentage from 0 to 100" in err


@pytest.mark.parametrize("label", [{"kind": ["fraud"]}, {"kind": True}, {"pattern": {"a": 1}}, {"kinds": "fraud"}],
                         ids=["kind a list", "kind a boolean", "pattern an object", "a misspelt key"])
def test_a_known_bad_label_of_the_wrong_shape_is_a_bad_line(tmp_path, label):
    # {"kind": ["fraud"]} was counted as a bad payment of kind "['fraud']"; a misspelt key was dropped unseen
    history = jsonl(tmp_path / "h.jsonl", {"request": base_request(request_id="a"), "label": label},
                    {"request": base_request(request_id="b"), "label": "legit"})
    code, out, _ = run("backtest", "--workers", "1", "--json", str(history))
    result = json.loads(out)
    assert code == EXIT_BAD_INPUT and result["evaluated"] == 1
    (bad,) = result["bad"]["lines"]
    assert bad["line"] == 1 and bad["error"] == "invalid_record" and bad["message"].startswith("label.")


def test_an_html_report_that_cannot_be_written_does_not_lose_the_result(tmp_path):
    # --html to a directory: the run finished, then an OSError (exit 2) and no result at all
    history = jsonl(tmp_path / "h.jsonl", base_request())
    code, out, err = run("backtest", "--workers", "1", "--json", "--html", str(tmp_path), str(history))
    assert code == EXIT_BAD_INPUT and json.loads(out)["evaluated"] == 1
    assert err.startswith(f"policy-engine backtest: cannot write the HTML report {tmp_path}") and err.count("\n") == 1


@pytest.mark.parametrize("where", ["middle", "last row"])
def test_one_stray_quote_in_a_csv_history_loses_one_row_not_the_rows_after_it(tmp_path, where):
    # A quote opening a field that never closes: the csv module read every later line into that field (up to its
    # 128 KiB limit, or to the end), and those payments vanished; the report said 1 bad line (414 of 3,000 lost).
    csv_path = tmp_path / "history.csv"
    assert run("generate", "--n", "600", "--seed", "3", "--format", "csv", "-o", str(csv_path))[0] == EXIT_OK
    lines = csv_path.read_bytes().splitlines(keepends=True)
    rows = len(lines) - 1
    at = 2 if where == "middle" else rows  # 0-based: line 3 of the file, or its last line
    lines[at] = b'"' + lines[at]
    csv_path.write_bytes(b"".join(lines))
    code, out, _ = run("backtest", "--workers", "1", "--json", str(csv_path))
    result = json.loads(out)
    assert code == EXIT_BAD_INPUT and result["records"] == rows and result["evaluated"] == rows - 1
    (bad,) = result["bad"]["lines"]
    assert bad["line"] == at + 1 and bad["error"] == "invalid_csv"


# -- outputs that are the input --------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["convert", "{input}", "{input}"],
    ["backtest", "--workers", "1", "--html", "{input}", "{input}"],
    ["evaluate", "--audit", "{input}", "--audit-key", "k", "{input}"],
], ids=["convert onto its input", "backtest --html onto its history", "evaluate --audit onto its requests"])
def test_an_output_that_is_the_input_is_refused_and_the_input_kept(tmp_path, argv):
    # `convert h.jsonl h.jsonl` replaced the history with a Parquet file of the rows read before it was truncated;
    # `--html` overwrote the history with the report; `--audit` appended log records to the requests being read
    if argv[0] == "convert":
        pytest.importorskip("pyarrow")  # the `columnar` extra
    history = jsonl(tmp_path / "h.jsonl", *(base_request(request_id=f"r-{n}") for n in range(3)))
    before = history.read_bytes()
    code, out, err = run(*(a.replace("{input}", str(history)) for a in argv))
    assert code == EXIT_BAD_INPUT and out == "" and err.count("\n") == 1 and "being read" in err
    assert history.read_bytes() == before


# -- the JSON Lines reader -------------------------------------------------------------------------------------
def test_lines_after_two_bad_first_lines_and_blank_ones_keep_their_numbers(tmp_path):
    # The two bad head lines were re-read without the blank lines between them: line 4 was reported as line 2,
    # line 6 as line 4.
    stream = tmp_path / "s.jsonl"
    stream.write_text('{"bad\n\n\n{"bad\n' + json.dumps(base_request()) + "\nnot json\n", encoding="utf-8")
    code, out, _ = run("evaluate", "--json", str(stream))
    records = [json.loads(line) for line in out.splitlines()]
    assert code == EXIT_BAD_INPUT
    assert [r.get("line") for r in records] == [1, 4, None, 6] and records[2]["decision"] == "allow"


def test_a_long_stream_with_two_bad_first_lines_is_read_as_it_comes(monkeypatch):
    # The whole input was read into memory first (to try it as one document), however long: a batch of
    # gigabytes whose first two lines were bad needed several times its size in memory before a line came out.
    monkeypatch.setattr(jsonio, "DOCUMENT_LIMIT", 4096)
    good = json.dumps(base_request()).encode() + b"\n"
    stream = io.BytesIO(b'{"bad\n{"bad\n' + good * 1000)
    records = jsonio.read_json_records(stream)
    assert [next(records)[0] for _ in range(3)] == [1, 2, 3]
    assert stream.tell() < 4096 + 2 * len(good)  # read as far as the limit and the line it cut, no further
    rest = list(records)
    assert len(rest) == 999 and all(problem is None and value == base_request() for _, value, problem in rest)
    assert rest[-1][0] == 1002
