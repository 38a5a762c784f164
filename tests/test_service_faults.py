"""The decision service's answers when the engine itself fails: driven in process through the ASGI interface, with
the engine's evaluate replaced by one that fails the way the library can fail (or the way a bug would)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from conftest import RULES, base_request

pytest.importorskip("prometheus_client")

from policy_engine.audit import AuditError
from policy_engine.errors import EvaluationError, StoreUnavailableError
from policy_engine.service.app import App
from policy_engine.service.settings import Settings


class Client:
    """An ASGI conversation: lifespan startup, then requests, one at a time, on one event loop."""

    def __init__(self, app: App):
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self._start())

    async def _start(self) -> None:
        events: asyncio.Queue = asyncio.Queue()
        await events.put({"type": "lifespan.startup"})
        answers: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            answers.append(message)

        self._events = events
        self._task = asyncio.ensure_future(self.app({"type": "lifespan"}, events.get, send))
        while not answers:
            await asyncio.sleep(0.01)
        assert answers[0]["type"] == "lifespan.startup.complete", answers

    def post(self, path: str, value: Any) -> tuple[int, dict[str, Any]]:
        body = json.dumps(value, default=str).encode()
        scope = {"type": "http", "method": "POST", "path": path, "query_string": b"",
                 "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]}
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        self.loop.run_until_complete(self.app(scope, receive, send))
        return sent[0]["status"], json.loads(sent[1]["body"])

    def close(self) -> None:
        async def stop() -> None:
            await self._events.put({"type": "lifespan.shutdown"})
            await self._task

        self.loop.run_until_complete(stop())
        self.loop.close()


@pytest.fixture
def client():
    c = Client(App(Settings(rules=str(RULES))))
    yield c
    c.close()


def failing(exc: Exception):
    def evaluate(request: Any, context: Any = None) -> None:
        raise exc
    return evaluate


def fail_with(monkeypatch: pytest.MonkeyPatch, engine: Any, exc: Exception) -> None:
    """The engine fails on every request, whichever way in the service takes (an object body: evaluate_json)."""
    for name in ("evaluate", "evaluate_json"):
        monkeypatch.setattr(engine, name, failing(exc))


@pytest.mark.parametrize("exc, status, error", [
    (EvaluationError("matcher fault", "t-1"), 500, "evaluation_failed"),
    (StoreUnavailableError("state store redis://x is unreachable", "t-1"), 503, "unavailable"),
    (RuntimeError("a bug"), 500, "internal"),
])
def test_an_engine_failure_is_an_error_status_never_a_decision(client, monkeypatch, exc, status, error):
    fail_with(monkeypatch, client.app.service.engine, exc)
    got_status, got = client.post("/v1/decisions", base_request())
    assert (got_status, got["error"]) == (status, error)
    assert "decision" not in got and "allowed" not in got


def test_an_unwritable_decision_log_is_503(client, monkeypatch):
    cause = AuditError("cannot write decision log /x: disk full")
    exc = EvaluationError("could not evaluate request: AuditError", "t-1")
    exc.__cause__ = cause
    fail_with(monkeypatch, client.app.service.engine, exc)
    status, got = client.post("/v1/decisions", base_request())
    assert status == 503 and got["error"] == "unavailable"


def test_a_failing_item_of_a_batch_is_an_error_in_its_place(client, monkeypatch):
    real = client.app.service.engine.evaluate

    def evaluate(request: Any, context: Any = None):
        if request["request_id"] == "bad":
            raise EvaluationError("matcher fault", "bad")
        return real(request, context)

    monkeypatch.setattr(client.app.service.engine, "evaluate", evaluate)
    status, got = client.post("/v1/decisions", [base_request(request_id="a"), base_request(request_id="bad"),
                                                base_request(request_id="c")])
    assert status == 200
    assert [g.get("decision") for g in got] == ["allow", None, "allow"]
    assert got[1] == {"index": 1, "error": "evaluation_failed", "request_id": "bad", "message": "matcher fault"}
