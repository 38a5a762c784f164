"""Holes an adversarial sweep of the decision service found (session 23), each held closed against the real server
(`policy-engine serve` on a loopback port, as in test_service.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import RULES, base_request
from test_service import JSON, post
from test_service_faults import Client

pytest.importorskip("granian")
pytest.importorskip("prometheus_client")

from policy_engine.errors import Issue, RuleSetError
from policy_engine.service.app import App
from policy_engine.service.process import ServiceProcess, ServiceStartError
from policy_engine.service.settings import MAX_BATCH, Settings


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One server with a state store, so that status reports have payments to report on."""
    state = Path(tmp_path_factory.mktemp("state")) / "state.db"
    with ServiceProcess(["--rules", str(RULES), "--state", f"sqlite:///{state}"]) as service:
        yield service


def test_a_batch_of_more_items_than_the_limit_is_refused_whole_before_any_is_decided(svc):
    """Two bytes an item: a 1 MiB body of `[1,1,...]` made one worker build 500,000 error objects (39 s of CPU and
    a 68 MB answer), and `[{},{},...]` took it past 600 MB."""
    status, _, raw = svc.request("POST", "/v1/decisions", b"[" + b",".join([b"1"] * (MAX_BATCH + 1)) + b"]", JSON)
    got = json.loads(raw)
    assert status == 413 and got["error"] == "batch_too_large"
    assert f"{MAX_BATCH:,}" in got["message"] and "split" in got["message"]
    status, answers = post(svc, "/v1/decisions", [base_request(request_id="b-0")] + [{}] * (MAX_BATCH - 1))
    assert status == 200 and len(answers) == MAX_BATCH
    assert answers[0]["decision"] == "allow" and answers[-1]["index"] == MAX_BATCH - 1


def test_a_request_id_with_a_slash_or_any_character_is_reported_under_its_percent_encoding(svc):
    """The route matched the decoded path: `order%2F7` became `order/7`, so a payment whose request_id holds a `/`
    (the request schema allows any string) could never be reported ("no endpoint")."""
    for request_id in ("order/7", "order 8 ü?#%"):
        assert post(svc, "/v1/decisions", base_request(request_id=request_id))[0] == 200
        status, got = post(svc, f"/v1/payments/{quote(request_id, safe='')}/status", {"status": "reversed"})
        assert (status, got) == (200, {"request_id": request_id, "status": "reversed"})


def test_a_request_id_in_the_path_that_is_not_utf8_is_refused_not_replaced(svc):
    """`%FF` was decoded to U+FFFD: the status went to an id nobody sent (the payment `\\ufffd`, if one exists)."""
    assert post(svc, "/v1/decisions", base_request(request_id="\ufffd"))[0] == 200
    status, got = post(svc, "/v1/payments/%FF/status", {"status": "reversed"})
    assert status == 400 and got["error"] == "invalid_request" and "UTF-8" in got["message"]


@pytest.mark.parametrize("query, fragment", [
    ("rule=NOPE-1&rule=FS-001", "once"),  # the last one won: FS-001 explained, NOPE-1 never looked up
    ("rule=FS-001&rule=FS-001", "once"),
    ("rule=", "empty"),                   # dropped: every rule explained for a request about one
])
def test_an_explain_query_that_names_no_single_rule_is_refused(svc, query, fragment):
    status, got = post(svc, f"/v1/explain?{query}", base_request(request_id="x-1"))
    assert status == 400 and got["error"] == "invalid_query" and fragment in got["message"]
    assert "rules" not in got


@pytest.mark.parametrize("seconds", ["nan", "inf", "0", "-1"])
def test_a_body_timeout_that_is_not_a_positive_number_of_seconds_stops_serve_before_it_listens(seconds):
    """`nan` made every POST a 500 with a traceback in the log, `0` and `-1` every POST a 408 while /readyz said
    ready, and `inf` turned the slow-body guard off without a word."""
    service = ServiceProcess(["--rules", str(RULES), "--body-timeout", seconds])
    try:
        with pytest.raises(ServiceStartError, match=r"--body-timeout"):
            service.start()
    finally:
        service.stop()


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_a_port_out_of_range_is_a_usage_error_not_an_internal_one(port):
    """70000 ended in `internal error (OverflowError: ...); please report it`."""
    run = subprocess.run([sys.executable, "-m", "policy_engine.cli", "serve", "--rules", str(RULES), "--port", port],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "--port" in run.stderr and "internal error" not in run.stderr


def test_a_reload_asked_over_http_answers_with_a_reload_that_read_the_pack_after_it_was_asked(monkeypatch):
    """With several workers, a worker still in an earlier reload (started by an earlier SIGHUP, before the pack on
    disk was broken) answered POST /v1/pack/reload with that reload's `ok`: the caller was told a pack that the
    workers then refused was in. In process, the service is its own supervisor (the SIGHUP comes back to it)."""
    client = Client(App(Settings(rules=str(RULES), supervisor=os.getpid())))
    try:
        engine = client.app.service.engine
        real, calls = engine.reload, []

        def reload() -> object:
            calls.append(None)
            if len(calls) == 1:  # the earlier reload: slow, and of the pack as it was then
                time.sleep(0.5)
                return real()
            raise RuleSetError([Issue("rules/x.yaml", 1, 1, None, "broken now")])

        monkeypatch.setattr(engine, "reload", reload)
        os.kill(os.getpid(), signal.SIGHUP)  # the earlier reload starts...
        client.loop.run_until_complete(asyncio.sleep(0.1))
        status, got = client.post("/v1/pack/reload", {})  # ...and the pack breaks before this is asked
        assert (status, got["error"]) == (422, "reload_failed") and "broken now" in got["message"]
        assert len(calls) == 2
    finally:
        client.close()


def test_a_content_length_with_thousands_of_leading_zeros_is_read_as_its_number(svc):
    """`Content-Length: 000…0712` is valid HTTP (1*DIGIT) and the server frames the body by it, but int() of more
    than 4,300 digits raises: every such request was a 500 and a traceback in the log."""
    body = json.dumps(base_request(request_id="z-1")).encode()
    length = b"0" * 5000 + str(len(body)).encode()
    with socket.create_connection(("127.0.0.1", svc.port), timeout=10) as conn:
        conn.sendall(b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json"
                     b"\r\nContent-Length: " + length + b"\r\n\r\n" + body)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200") and b'"decision":"allow"' in answer


def test_did_you_mean_is_looked_for_on_the_first_unknown_keys_only(svc):
    """difflib took ~0.45 ms an unknown key: a 90 KB body of 5,000 made-up keys held a worker's event loop (and so
    every other request on it) for 2 s, 1 MiB for 6 s. Every key is still named; only the first few get a hint."""
    request = {**base_request(request_id="k-1"), **{f"payerx{i}": 1 for i in range(5000)}}
    status, got = post(svc, "/v1/decisions", request)
    unknown = [v for v in got["violations"] if v["message"].startswith("unknown field")]
    assert status == 400 and len(unknown) == 5000
    hinted = [v for v in unknown if "did you mean 'payer'?" in v["message"]]
    assert unknown[0] in hinted and 0 < len(hinted) <= 20
