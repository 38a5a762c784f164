"""The decision service against the real server: `policy-engine serve` as a child process on a free loopback port,
started with a bounded wait and always stopped (policy_engine.service.process)."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RULES, base_request, fresh_redis, load_cases, needs_redis

pytest.importorskip("granian")
pytest.importorskip("prometheus_client")

from policy_engine.service.process import ServiceProcess, ServiceStartError, free_port

CASES = load_cases()
JSON = {"content-type": "application/json"}
MARKER = """\
rules:
  - id: ZZ-001
    category: risk
    title: Marker of pack B
    when:
      all:
        - {field: amount.value, op: gt, value: 0}
    outcome: review
    reason: Pack B is deciding.
    source: "Test marker."
    verified: true
"""


def post(svc: ServiceProcess, path: str, value: object, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    status, _, body = svc.request("POST", path, json.dumps(value, default=str).encode(), headers)
    return status, json.loads(body)


def get(svc: ServiceProcess, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    status, _, body = svc.request("GET", path, headers=headers)
    return status, json.loads(body)


@pytest.fixture(scope="module")
def svc() -> Iterator[ServiceProcess]:
    with ServiceProcess(["--rules", str(RULES), "--max-body", "64KiB"]) as service:
        yield service


@pytest.fixture
def pack_dir(tmp_path: Path) -> Path:
    target = tmp_path / "pack"
    shutil.copytree(RULES, target, ignore=shutil.ignore_patterns("tests", "README.md"))
    return target


# -- decisions ---------------------------------------------------------------------------------------------------
def test_the_acceptance_cases_over_http(svc):
    for case in CASES:
        status, got = post(svc, "/v1/decisions", case["request"])
        assert status == 200, got
        assert got["decision"] == case["expected"]["decision"], case["id"]
        assert {t["rule_id"] for t in got["trail"] if t["status"] == "fired"} == set(case["expected"]["rules"])
        assert {o["report"] for o in got["obligations"]} == set(case["expected"].get("reports") or [])


def test_a_batch_answers_each_item_in_order_and_a_bad_item_names_its_index(svc):
    items = [CASES[0]["request"], {"request_id": "broken"}, "not an object", CASES[1]["request"]]
    status, got = post(svc, "/v1/decisions", items)
    assert status == 200
    assert [g.get("request_id") for g in got] == [CASES[0]["id"], "broken", None, CASES[1]["id"]]
    assert got[0]["decision"] == CASES[0]["expected"]["decision"]
    assert got[1]["index"] == 1 and got[1]["error"] == "invalid_request"
    assert {v["path"] for v in got[1]["violations"]} >= {"$.timestamp", "$.payer"}
    assert got[2]["index"] == 2 and got[2]["error"] == "invalid_request"
    assert "decision" not in got[1] and "decision" not in got[2]


def test_an_invalid_request_is_400_with_every_violation_and_its_path(svc):
    status, got = post(svc, "/v1/decisions", base_request(amount__value="1e400", purpose=7))
    assert status == 400
    assert got["error"] == "invalid_request"
    assert {"$.amount.value", "$.purpose"} <= {v["path"] for v in got["violations"]}


@pytest.mark.parametrize("body, fragment", [
    (b"{", "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"amount": ' + b"9" * 5000 + b"}", "not valid JSON"),
    (b'{"request_id": "a", "request_id": "b"}', "more than once"),
    (b"NaN", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b'"a string"', "JSON object"),
])
def test_malformed_bodies_are_400_never_a_decision(svc, body, fragment):
    status, _, raw = svc.request("POST", "/v1/decisions", body, JSON)
    assert status in (400, 413)
    got = json.loads(raw)
    assert "decision" not in got
    if status == 400:
        assert fragment in json.dumps(got)


@pytest.mark.parametrize("body, error", [
    (b"{", "invalid_json"),                                       # an object body takes evaluate_json: not JSON,
    (b'{"amount": 1} trailing', "invalid_json"),                  # answered as before
    (b'{"a": "\xff"}', "invalid_json"),
    (b'{"request_id": "a", "request_id": "b"}', "invalid_request"),
    (b'{"request_id": "r-1"}', "invalid_request"),
])
def test_an_object_body_keeps_the_error_answers(svc, body, error):
    from policy_engine.jsonio import parse_json

    status, _, raw = svc.request("POST", "/v1/decisions", body, JSON)
    got = json.loads(raw)
    assert status == 400 and got["error"] == error
    if error == "invalid_json":  # the decoder's own message, as the array and non-object bodies get it
        with pytest.raises(ValueError) as decoding:
            parse_json(body)
        assert got["message"] == f"the body is not valid JSON: {decoding.value}"
    else:
        assert got["violations"] and "decision" not in got


def test_an_object_body_is_decided_as_the_library_decides_it(svc):
    from policy_engine import PolicyEngine

    engine = PolicyEngine.from_path(RULES)
    for case in CASES[:10]:
        text = json.dumps(case["request"], default=str).encode()
        status, _, raw = svc.request("POST", "/v1/decisions", text, JSON)
        assert status == 200
        got, want = json.loads(raw), json.loads(engine.evaluate_json(text))
        assert {**got, "elapsed_us": 0} == {**want, "elapsed_us": 0}


def test_the_body_limit_is_checked_while_reading(svc):
    big = json.dumps({**base_request(), "pad": "x" * 70_000}).encode()
    status, _, _ = svc.request("POST", "/v1/decisions", big, JSON)
    assert status == 413
    # no Content-Length: a chunked body is cut off once past the limit, not buffered to its end
    with socket.create_connection(("127.0.0.1", svc.port), timeout=10) as conn:
        conn.sendall(b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"[" + b" " * 8191
        answer = b""
        for _ in range(64):  # up to 512 KiB, far past the 64 KiB limit
            try:
                conn.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except OSError:  # the server answered and closed
                break
            conn.settimeout(0.01)
            try:
                answer += conn.recv(4096)
            except TimeoutError:
                continue
            if answer:
                break
        conn.settimeout(10)
        while b"\r\n\r\n" not in answer:
            answer += conn.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413")


def test_a_slow_body_times_out(tmp_path):
    with ServiceProcess(["--rules", str(RULES), "--body-timeout", "1"]) as service, \
            socket.create_connection(("127.0.0.1", service.port), timeout=10) as conn:
        conn.sendall(b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"request_id\"")
        started = time.monotonic()
        answer = conn.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408")
        assert time.monotonic() - started < 5


@pytest.mark.parametrize("method, path, headers, status", [
    ("POST", "/v1/decisions", {"content-type": "text/plain"}, 415),
    ("POST", "/v1/decisions", {"content-type": ""}, 415),
    ("GET", "/v1/decisions", {}, 405),
    ("DELETE", "/v1/pack", {}, 405),
    ("GET", "/v2/anything", {}, 404),
])
def test_wrong_media_type_method_or_path(svc, method, path, headers, status):
    body = json.dumps(CASES[0]["request"]).encode() if method == "POST" else None
    got, answer_headers, raw = svc.request(method, path, body, headers)
    assert got == status
    assert "decision" not in json.loads(raw)
    if status == 405:
        assert answer_headers["allow"]


def test_explain_pack_health_openapi_and_request_id(svc):
    status, headers, raw = svc.request("POST", "/v1/explain?rule=FS-001", json.dumps(CASES[0]["request"]).encode(),
                                       {**JSON, "x-request-id": "req-42"})
    assert status == 200 and headers["x-request-id"] == "req-42"
    assert [r["rule_id"] for r in json.loads(raw)["rules"]] == ["FS-001"]
    assert post(svc, "/v1/explain?rule=NOPE-1", CASES[0]["request"])[0] == 404
    status, pack = get(svc, "/v1/pack")
    assert status == 200 and pack["pack"] == "default-cn-intl" and pack["digest"].startswith("sha256:")
    assert get(svc, "/healthz") == (200, {"status": "ok"})
    status, ready = get(svc, "/readyz")
    assert status == 200 and ready["ready"] and ready["pack"]["digest"] == pack["digest"]
    status, doc = get(svc, "/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")


def test_metrics_count_decisions_rule_hits_latency_and_errors(svc):
    post(svc, "/v1/decisions", CASES[0]["request"])  # AC-01: FS-001 denies
    post(svc, "/v1/decisions", {"request_id": 1})
    status, headers, raw = svc.request("GET", "/metrics")
    text = raw.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert 'policy_engine_decisions_total{outcome="deny"}' in text
    assert 'policy_engine_rule_hits_total{rule_id="FS-001"}' in text
    assert "policy_engine_decision_seconds_bucket" in text
    assert 'policy_engine_errors_total{kind="invalid_request"}' in text


# -- auth ----------------------------------------------------------------------------------------------------------
def test_bearer_token(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token-0123456789abcdef\n")
    with ServiceProcess(["--rules", str(RULES), "--token-file", str(token_file)]) as service:
        body = json.dumps(CASES[0]["request"]).encode()
        assert service.request("POST", "/v1/decisions", body, JSON)[0] == 401
        wrong = {**JSON, "authorization": "Bearer s3cret-token-0123456789abcdeX"}
        status, headers, _ = service.request("POST", "/v1/decisions", body, wrong)
        assert status == 401 and headers["www-authenticate"].startswith("Bearer")
        right = {**JSON, "authorization": "Bearer s3cret-token-0123456789abcdef"}
        assert service.request("POST", "/v1/decisions", body, right)[0] == 200
        assert service.request("GET", "/metrics")[0] == 401
        assert service.request("GET", "/healthz")[0] == 200
        assert service.request("GET", "/readyz")[0] == 200


def test_a_weak_token_or_a_bad_pack_stops_serve_before_it_listens(tmp_path, pack_dir):
    (tmp_path / "token").write_text("short")
    with pytest.raises(ServiceStartError, match="at least 16"):
        ServiceProcess(["--rules", str(RULES), "--token-file", str(tmp_path / "token")]).start()
    (pack_dir / "broken.yaml").write_text("rules:\n  - id: X-1\n    when: {all: [{field: nope, op: eq, value: 1}]}\n")
    with pytest.raises(ServiceStartError, match=r"broken\.yaml"):
        ServiceProcess(["--rules", str(pack_dir)]).start()


# -- state -----------------------------------------------------------------------------------------------------------
def test_counters_conflict_status_reports_and_unknown_ids(tmp_path):
    with ServiceProcess(["--rules", str(RULES), "--state", f"sqlite:///{tmp_path / 'state.db'}"]) as service:
        first = base_request(request_id="s-1")
        status, decision = post(service, "/v1/decisions", first)
        assert status == 200
        assert post(service, "/v1/decisions", first) == (200, decision)  # a retry gets the recorded decision
        status, got = post(service, "/v1/decisions", base_request(request_id="s-1", amount__value=101))
        assert status == 409 and got["error"] == "conflict"
        assert post(service, "/v1/payments/s-1/status", {"status": "reversed"}) == (
            200, {"request_id": "s-1", "status": "reversed"})
        status, got = post(service, "/v1/payments/nope/status", {"status": "completed"})
        assert status == 404 and got["error"] == "unknown_request"
        assert post(service, "/v1/payments/s-1/status", {"status": "lost"})[0] == 400
        assert post(service, "/v1/payments/s-1/status", {"status": "failed", "x": 1})[0] == 400
        assert get(service, "/readyz")[1]["store"]["reachable"] is True


def test_an_unreachable_store_is_503_and_not_ready_never_a_decision():
    pytest.importorskip("redis")
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with ServiceProcess(["--rules", str(RULES), "--state", url]) as service:
        status, got = post(service, "/v1/decisions", base_request())
        assert status == 503 and "decision" not in got
        status, ready = get(service, "/readyz")
        assert status == 503 and not ready["ready"] and "unreachable" in ready["reason"]
        assert service.request("POST", "/v1/pack/reload")[0] == 503


@needs_redis
def test_two_servers_sharing_one_redis_enforce_one_payers_daily_limit():
    """CNY 100 static-QR payments for one payer sent alternately to two servers on one Redis: the CNY 500 daily
    cap lets exactly five through."""
    url = fresh_redis()
    with ServiceProcess(["--rules", str(RULES), "--state", url]) as a, \
            ServiceProcess(["--rules", str(RULES), "--state", url]) as b:
        outcomes = []
        for i in range(10):
            request = base_request(request_id=f"r-{i}", channel="qr_static", amount__value=100,
                                   timestamp=f"2025-06-10T1{i}:00:00+08:00")
            status, decision = post((a, b)[i % 2], "/v1/decisions", request)
            assert status == 200, decision
            outcomes.append(decision["decision"])
        assert outcomes == ["allow"] * 5 + ["deny"] * 5


# -- reload ------------------------------------------------------------------------------------------------------------
def _digest(svc: ServiceProcess) -> str:
    return get(svc, "/v1/pack")[1]["digest"]


def test_reload_under_load_never_fails_or_mixes_packs(pack_dir):
    """A client thread decides without pause while the pack flips between A and B (B adds a rule that fires on
    every request) eight times, by POST /v1/pack/reload and by SIGHUP: every response is a 200 from A or B, and
    B's rule is in the trail exactly when B's digest is on the decision."""
    marker = pack_dir / "zz_marker.yaml"
    with ServiceProcess(["--rules", str(pack_dir)]) as service:
        digest_a = _digest(service)
        stop = threading.Event()
        seen: list[tuple[int, dict]] = []

        def hammer() -> None:
            i = 0
            while not stop.is_set():
                seen.append(post(service, "/v1/decisions", base_request(request_id=f"h-{i}")))
                i += 1

        thread = threading.Thread(target=hammer)
        thread.start()
        digests = {digest_a}
        try:
            for flip in range(8):
                if flip % 2 == 0:
                    marker.write_text(MARKER)
                else:
                    marker.unlink()
                if flip % 4 < 2:
                    assert service.request("POST", "/v1/pack/reload")[0] == 200
                else:
                    service.signal(signal.SIGHUP)
                    deadline = time.monotonic() + 10
                    while _digest(service) in digests - ({digest_a} if flip % 2 else set()) and \
                            time.monotonic() < deadline:
                        time.sleep(0.05)
                digests.add(_digest(service))
                time.sleep(0.2)
        finally:
            stop.set()
            thread.join(30)
    assert len(digests) == 2
    (digest_b,) = digests - {digest_a}
    assert len(seen) > 50
    for status, decision in seen:
        assert status == 200, decision
        digest = decision["ruleset"]["digest"]
        assert digest in digests
        fired = {t["rule_id"] for t in decision["trail"] if t["status"] == "fired"}
        assert ("ZZ-001" in fired) == (digest == digest_b)
    assert {d["ruleset"]["digest"] for _, d in seen} == digests


def test_a_failing_reload_keeps_the_old_pack_and_shows_in_readyz_and_metrics(pack_dir):
    with ServiceProcess(["--rules", str(pack_dir)]) as service:
        before = _digest(service)
        (pack_dir / "zz_broken.yaml").write_text("rules: [{id: ZZ-9, when: {all: []}}]\n")
        status, got = post(service, "/v1/pack/reload", {})
        assert status == 422 and "zz_broken.yaml" in got["message"]
        assert _digest(service) == before
        status, decision = post(service, "/v1/decisions", base_request())
        assert status == 200 and decision["ruleset"]["digest"] == before
        status, ready = get(service, "/readyz")
        assert status == 200 and ready["last_reload"]["ok"] is False
        assert "zz_broken.yaml" in ready["last_reload"]["error"]
        assert 'policy_engine_reloads_total{result="failed"} 1.0' in service.request("GET", "/metrics")[2].decode()


def test_watch_reloads_when_the_pack_changes(pack_dir):
    with ServiceProcess(["--rules", str(pack_dir), "--watch"]) as service:
        before = _digest(service)
        (pack_dir / "zz_marker.yaml").write_text(MARKER)
        deadline = time.monotonic() + 30
        while _digest(service) == before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _digest(service) != before
        assert post(service, "/v1/decisions", base_request())[1]["decision"] == "review"


def test_sighup_to_the_supervisor_reloads_every_worker(pack_dir):
    with ServiceProcess(["--rules", str(pack_dir), "--workers", "2", "--state", f"sqlite:///{pack_dir}/s.db"]) \
            as service:
        before = _digest(service)
        (pack_dir / "zz_marker.yaml").write_text(MARKER)
        service.signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        answers: list[str] = []
        while time.monotonic() < deadline:
            answers = [_digest(service) for _ in range(20)]  # new connections: spread over both workers
            if before not in answers:
                break
            time.sleep(0.2)
        assert before not in answers
        before_post = _reloads(service)
        status, _, raw = service.request("POST", "/v1/pack/reload")  # through the supervisor, to every worker
        assert status == 200 and json.loads(raw)["ok"] is True
        while _reloads(service) < before_post + 2 and time.monotonic() < deadline + 30:
            time.sleep(0.1)
        assert _reloads(service) == before_post + 2


def _reloads(service: ServiceProcess) -> float:
    """Successful reloads counted by every worker (/metrics adds them up, whichever worker answers)."""
    text = service.request("GET", "/metrics")[2].decode()
    found = re.search(r'^policy_engine_reloads_total\{result="ok"\} (\S+)$', text, re.M)
    return float(found[1]) if found else 0.0


def test_sigterm_finishes_the_request_in_flight_and_flushes_the_decision_log(tmp_path):
    log = tmp_path / "decisions.jsonl"
    service = ServiceProcess(["--rules", str(RULES), "--audit", str(log)],
                             env={"POLICY_ENGINE_AUDIT_KEY": "k" * 32}).start()
    try:
        body = json.dumps(CASES[0]["request"]).encode()
        with socket.create_connection(("127.0.0.1", service.port), timeout=20) as conn:
            conn.sendall(b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"X-Request-Id: in-flight\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
                         + body[:10])
            time.sleep(0.5)
            service.signal(signal.SIGTERM)  # the request is in flight: its body is still arriving
            time.sleep(0.5)
            conn.sendall(body[10:])
            answer = b""
            while b'"elapsed_us"' not in answer:
                chunk = conn.recv(65536)
                assert chunk, answer
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200")
        assert service.proc is not None and service.proc.wait(30) == 0
    finally:
        service.stop()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["request_id"] for r in records] == [CASES[0]["id"]]
    assert "decision log flushed" in service.output()


# -- signed packs, trace context, shadow and rollout -------------------------------------------------------------
def test_a_tampered_pack_is_refused_at_start_and_on_reload(tmp_path, pack_dir):
    pytest.importorskip("cryptography")
    from policy_engine.signing import generate_keypair, sign_pack

    key, pub = tmp_path / "key.pem", tmp_path / "key.pub"
    generate_keypair(key, pub)
    sign_pack(pack_dir, key)
    rules = pack_dir / "funding_sources.yaml"
    with ServiceProcess(["--rules", str(pack_dir), "--verify-key", str(pub)]) as service:
        info = get(service, "/v1/pack")[1]
        assert info["signature"]["state"] == "verified"
        rules.write_text(rules.read_text().replace("cannot repay a credit card", "may repay a credit card", 1))
        status, got = post(service, "/v1/pack/reload", {})
        assert status == 422 and "pack.sig" in got["message"]
        assert _digest(service) == info["digest"]  # the signed pack still decides
        assert get(service, "/readyz")[1]["last_reload"]["ok"] is False
        sign_pack(pack_dir, key)  # the change signed: now it is accepted
        assert service.request("POST", "/v1/pack/reload")[0] == 200
        assert _digest(service) != info["digest"]
    rules.write_text(rules.read_text().replace("may repay a credit card", "can repay a credit card", 1))
    with pytest.raises(ServiceStartError, match=r"pack\.sig"):
        ServiceProcess(["--rules", str(pack_dir), "--verify-key", str(pub)]).start()


def test_request_id_and_trace_context_reach_the_decision_log(tmp_path):
    log = tmp_path / "decisions.jsonl"
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with ServiceProcess(["--rules", str(RULES), "--audit", str(log)],
                        env={"POLICY_ENGINE_AUDIT_KEY": "k" * 32}) as service:
        post(service, "/v1/decisions", CASES[0]["request"],
             {"x-request-id": "req-7", "traceparent": parent, "tracestate": "vendor=1"})
        post(service, "/v1/decisions", CASES[1]["request"], {"traceparent": "not-a-traceparent"})
    first, second = (json.loads(line) for line in log.read_text().splitlines())
    assert first["trace"] == {"request_id": "req-7", "traceparent": parent, "tracestate": "vendor=1"}
    assert "trace" not in second  # a malformed header is dropped, never an error


def test_shadow_flips_reach_the_metrics_and_rollout_arms_every_decision(tmp_path, pack_dir):
    (pack_dir / "zz_marker.yaml").write_text(MARKER)  # the candidate reviews every payment
    with ServiceProcess(["--rules", str(RULES), "--shadow", str(pack_dir)]) as service:
        status, decision = post(service, "/v1/decisions", base_request())
        assert (status, decision["decision"]) == (200, "allow")  # the shadow never decides
        assert len(get(service, "/v1/pack")[1]["shadow"]) == 1
        deadline, text = time.monotonic() + 20, ""
        while "policy_engine_shadow_flips_total{" not in text and time.monotonic() < deadline:
            time.sleep(0.1)
            text = service.request("GET", "/metrics")[2].decode()
        assert 'decided="allow"' in text and 'shadow_decided="review"' in text
    with ServiceProcess(["--rules", str(RULES), "--rollout", f"{pack_dir}=0.5"]) as service:
        arms = []
        for i in range(40):
            decision = post(service, "/v1/decisions", base_request(request_id=f"p-{i}", payer__id=f"u-{i}"))[1]
            arms.append(decision["rollout"]["arm"])
            assert (decision["rollout"]["arm"] == "candidate") == (decision["decision"] == "review")
        assert set(arms) == {"primary", "candidate"}
