"""The decision service as a plain ASGI application: one :class:`Service` (engine, metrics, reloads) per worker
process and a small router in front of it.

Every answer that is not a computed decision is an error status with a JSON body (``error``, ``message``, and
for an invalid request every violation with its JSON path): a request the engine could not decide never gets a
200, and nothing here turns a fault into ``allow``. Bodies are read with a size limit checked while reading and a
deadline for the whole body, so a client can neither make a worker buffer without bound nor hold it by
trickling bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import hmac
import logging
import os
import re
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote_to_bytes

from ..audit import AuditError, AuditLog
from ..engine import PolicyEngine
from ..errors import (
    EvaluationError,
    PolicyEngineError,
    RequestError,
    RequestTextError,
    StateError,
    StoreUnavailableError,
)
from ..explain import UnknownRuleError
from ..jsonio import dumps_bytes, parse_json
from ..state import Store, open_store, redacted
from ..traffic import CallContext, Rollout
from .metrics import CONTENT_TYPE, Metrics
from .openapi import document
from .settings import MAX_BATCH, Settings

log = logging.getLogger("policy_engine.service")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

_JSON = b"application/json"
#: matched on the raw path: decoded, an id holding `%2F` would be split in two
_STATUS_PATH = re.compile(rb"/v1/payments/(?P<request_id>[^/]+)/status")
#: how long a reload asked of one worker waits for the supervisor to pass it to every worker (itself included)
RELOAD_FANOUT_TIMEOUT = 60.0


class HTTPError(Exception):
    """An error answer: status, JSON body, extra headers."""

    def __init__(self, status: int, error: str, message: str, headers: Headers | None = None,
                 body: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.body = body if body is not None else {"error": error, "message": message}
        self.headers = headers or []


@dataclass(frozen=True, slots=True)
class ReloadResult:
    ok: bool
    at: str
    trigger: str
    digest: str | None
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "at": self.at, "trigger": self.trigger, "digest": self.digest, "error": self.error}


def error_for(exc: PolicyEngineError) -> HTTPError:
    """The answer to a library error; the body is the library's own ``to_dict()`` where it has one."""
    if isinstance(exc, RequestError):
        return HTTPError(400, "invalid_request", str(exc), body=exc.to_dict())
    if isinstance(exc, StateError):
        status = {"conflict": 409, "unknown_request": 404, "no_store": 404}.get(exc.code, 400)
        return HTTPError(status, exc.code, str(exc), body=exc.to_dict())
    if isinstance(exc, StoreUnavailableError) or isinstance(exc.__cause__, AuditError):
        # the store or the decision log cannot be reached: nothing was decided, and a retry may succeed
        body = {**exc.to_dict(), "error": "unavailable"} if isinstance(exc, EvaluationError) else None
        return HTTPError(503, "unavailable", str(exc), [(b"retry-after", b"1")], body)
    if isinstance(exc, EvaluationError):
        return HTTPError(500, "evaluation_failed", str(exc), body=exc.to_dict())
    if isinstance(exc, UnknownRuleError):
        return HTTPError(404, "unknown_rule", str(exc))
    return HTTPError(400, type(exc).__name__, str(exc))


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def fingerprint(paths: list[Path]) -> tuple[tuple[str, int, int], ...]:
    """What ``--watch`` compares: every file of the packs with its mtime and size (empty when unreadable)."""
    try:
        files = sorted(f for p in paths for f in (p.rglob("*") if p.is_dir() else [p]) if f.is_file())
        return tuple((str(f), (st := f.stat()).st_mtime_ns, st.st_size) for f in files)
    except OSError:
        return ()


class Service:
    """The engine of one worker and what is kept around it: readiness, reloads, metrics, the decision log."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.metrics = Metrics()
        self.token = settings.token()
        self.engine: PolicyEngine | None = None
        self.store: Store | None = None
        self.audit: AuditLog | None = None
        #: why there is no engine yet (the state store could not be reached at start; retried in the background)
        self.unavailable: str | None = "starting"
        self.last_reload: ReloadResult | None = None
        #: a state store or a decision log does I/O per decision: run those off the event loop
        self.offload = settings.state is not None or settings.audit is not None
        #: held for the whole of a reload, so one holding it knows that no reload is halfway (see reload_everywhere)
        self._reloaded = asyncio.Condition()
        self._generation = 0
        self._tasks: set[asyncio.Task] = set()
        self._hangup_pending = False

    # -- life cycle ----------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.settings.audit is not None:
            key = os.environ.get("POLICY_ENGINE_AUDIT_KEY")
            self.audit = AuditLog(self.settings.audit, key=key.encode("utf-8") if key else None)
        # before the pack is loaded: a SIGHUP from now on is never lost (one during the load reloads after it)
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._hangup)
        try:
            await asyncio.to_thread(self._build)
            self._started()
        except StoreUnavailableError as exc:
            self.unavailable = str(exc)
            log.warning("not ready: %s; retrying every second", exc)
            self._spawn(self._retry_build())

    def _hangup(self) -> None:
        if self.engine is None:
            self._hangup_pending = True
        else:
            self._spawn(self.reload("sighup"))

    def _build(self) -> None:
        store = open_store(self.settings.state) if self.settings.state is not None else None
        try:
            settings = self.settings
            rollout = Rollout(*settings.rollout) if settings.rollout is not None else None
            self.engine = PolicyEngine.from_path(settings.rules, audit=self.audit, state=store,
                                                 verify_key=settings.verify_key, shadow=settings.shadow,
                                                 rollout=rollout)
        except BaseException:
            if store is not None:
                store.close()
            raise
        self.engine.add_listener(self.metrics.observe)
        self.store = store
        self.unavailable = None

    def _started(self) -> None:
        # What exists now (the compiled pack, the server, the libraries) lives as long as the worker: out of the
        # collector's way, a full collection no longer walks it and stalls requests for milliseconds.
        gc.freeze()
        if self._hangup_pending:
            self._hangup_pending = False
            self._spawn(self.reload("sighup"))
        if self.settings.watch:
            rollout = (self.settings.rollout[0],) if self.settings.rollout is not None else ()
            paths = [Path(p) for p in (self.settings.rules or "", *self.settings.shadow, *rollout)]
            self._spawn(self._watch(paths))

    async def _retry_build(self) -> None:
        while self.engine is None:
            await asyncio.sleep(1.0)
            try:
                await asyncio.to_thread(self._build)
            except PolicyEngineError as exc:  # the store still down, or the pack changed meanwhile and is bad
                self.unavailable = str(exc)
        self._started()
        log.info("ready: the state store answers")

    async def stop(self) -> None:
        """After the server has drained in-flight requests: stop background work, close the engine (and its
        store) and flush the decision log."""
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        if self.engine is not None:
            self.engine.close()
        if self.audit is not None:
            self.audit.close()
        log.info("stopped: engine closed%s", ", decision log flushed" if self.audit is not None else "")

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def ready_engine(self) -> PolicyEngine:
        if self.engine is None:
            raise HTTPError(503, "unavailable", f"no pack is deciding yet: {self.unavailable}",
                            [(b"retry-after", b"1")])
        return self.engine

    # -- reload --------------------------------------------------------------------------------------------
    async def reload(self, trigger: str) -> ReloadResult:
        """Reload the pack from where it was loaded. In-flight evaluations finish on the pack they started with;
        a pack that fails to load leaves the old one deciding and is reported in /readyz and the metrics."""
        engine = self.ready_engine()
        async with self._reloaded:
            gc.unfreeze()  # the old pack must be collectable once the new one is in
            try:
                ruleset = await asyncio.to_thread(engine.reload)
            except Exception as exc:  # any failure keeps the old pack; the reason is what /readyz shows
                message = str(exc) if isinstance(exc, PolicyEngineError) else f"{type(exc).__name__}: {exc}"
                result = ReloadResult(False, _now(), trigger, None, message)
                log.error("reload (%s) failed, the old pack still decides: %s", trigger, message)
            else:
                result = ReloadResult(True, _now(), trigger, ruleset.digest, None)
                log.info("reloaded pack %s %s (%s)", ruleset.pack, ruleset.version, trigger)
            await asyncio.to_thread(_settle)
            self.metrics.reloaded(result.ok)
            self.last_reload = result
            self._generation += 1
            self._reloaded.notify_all()
        return result

    async def reload_everywhere(self) -> ReloadResult:
        """A reload asked over HTTP: with several workers the supervisor passes it to every worker (this one
        included) as SIGHUP, and the answer is this worker's result; alone, this worker reloads."""
        if self.settings.supervisor is None:
            return await self.reload("http")
        self.ready_engine()
        # Counted with no reload halfway: one that was (started by an earlier signal, of the pack as it was then)
        # would have ended the wait below and answered for a reload it never did.
        async with self._reloaded:
            generation = self._generation
            os.kill(self.settings.supervisor, signal.SIGHUP)
            try:
                async with asyncio.timeout(RELOAD_FANOUT_TIMEOUT):
                    await self._reloaded.wait_for(lambda: self._generation > generation)
            except TimeoutError:
                raise HTTPError(503, "unavailable", "the supervisor did not pass the reload on within "
                                f"{RELOAD_FANOUT_TIMEOUT:.0f}s") from None
        assert self.last_reload is not None
        return self.last_reload

    async def _watch(self, paths: list[Path]) -> None:
        """Reload when the packs' files (primary, shadow, candidate) change and have stayed unchanged for one
        interval (an editor or a deployment writes several files; reloading halfway would only fail or load half
        a change)."""
        loaded = seen = await asyncio.to_thread(fingerprint, paths)
        while True:
            await asyncio.sleep(self.settings.watch_interval)
            now = await asyncio.to_thread(fingerprint, paths)
            if now == seen and now != loaded:
                loaded = now
                await self.reload("watch")
            seen = now

    # -- probes --------------------------------------------------------------------------------------------
    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        engine = self.engine
        details: dict[str, Any] = {"pack": None, "store": None,
                                   "last_reload": self.last_reload.to_dict() if self.last_reload else None}
        if engine is None:
            details["reason"] = self.unavailable
            return False, details
        details["pack"] = dict(engine.pack.ruleset_info)
        ready = True
        if self.store is not None:
            try:
                await asyncio.to_thread(self.store.ping)
                details["store"] = {"url": redacted(self.store.url), "reachable": True}
            except PolicyEngineError as exc:
                details["store"] = {"url": redacted(self.store.url), "reachable": False, "error": str(exc)}
                ready = False
        return ready, details

    def pack_info(self) -> dict[str, Any]:
        return self.ready_engine().pack_info()


def _settle() -> None:
    """After a reload: collect the old pack, then freeze what remains (see :meth:`Service._started`)."""
    gc.collect()
    gc.freeze()


class App:
    """The ASGI application. ``App(settings)`` is built once per worker (see :func:`create_app`)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.service: Service | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.service = Service(self.settings)
                    await self.service.start()
                except Exception as exc:  # the server reports it and exits: a worker that cannot decide
                    log.error("cannot start: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.service is not None:
                    await self.service.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- HTTP ----------------------------------------------------------------------------------------------
    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope["headers"])
        context = _context(headers)
        echo = [(b"x-request-id", context.request_id.encode("ascii"))] if context and context.request_id else []
        service = self.service
        try:
            if service is None:
                raise HTTPError(503, "unavailable", "the service is starting")
            status, body, content_type = await self._route(service, scope, receive, headers, context)
        except HTTPError as exc:
            if service is not None:
                service.metrics.error(exc.body.get("error", "error"))
            status, body, content_type = exc.status, dumps_bytes(exc.body), _JSON
            echo = echo + exc.headers
        except Exception:  # a bug: logged, answered 500, never a decision
            log.exception("internal error on %s %s", scope["method"], scope["path"])
            if service is not None:
                service.metrics.error("internal")
            status, body, content_type = 500, b'{"error":"internal","message":"internal error; see the log"}', _JSON
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", content_type), (b"content-length", str(len(body)).encode("ascii")), *echo]})
        await send({"type": "http.response.body", "body": body})

    async def _route(self, service: Service, scope: Scope, receive: Receive, headers: dict[bytes, bytes],
                     context: CallContext | None) -> tuple[int, bytes, bytes]:
        path, method = scope["path"], scope["method"]
        public = path in ("/healthz", "/readyz", "/openapi.json")
        if not public and service.token is not None:
            _authorize(headers.get(b"authorization"), service.token)
        if path == "/v1/decisions":
            _allow(method, "POST")
            return await self._decisions(service, await self._body(scope, receive, headers), context)
        if path == "/v1/explain":
            _allow(method, "POST")
            return await self._explain(service, scope, await self._body(scope, receive, headers))
        if (match := _STATUS_PATH.fullmatch(_raw_path(scope))) is not None:
            _allow(method, "POST")
            return await self._status(service, _path_id(match["request_id"]),
                                      await self._body(scope, receive, headers))
        if path == "/v1/pack":
            _allow(method, "GET")
            return 200, dumps_bytes(service.pack_info()), _JSON
        if path == "/v1/pack/reload":
            _allow(method, "POST")
            result = await service.reload_everywhere()
            if not result.ok:
                raise HTTPError(422, "reload_failed", f"the new pack was refused and the old one still decides: "
                                f"{result.error}")
            return 200, dumps_bytes({**result.to_dict(), "pack": service.pack_info()}), _JSON
        if path == "/healthz":
            _allow(method, "GET")
            return 200, b'{"status":"ok"}', _JSON
        if path == "/readyz":
            _allow(method, "GET")
            ready, details = await service.readiness()
            return (200 if ready else 503), dumps_bytes({"ready": ready, **details}), _JSON
        if path == "/metrics":
            _allow(method, "GET")
            return 200, service.metrics.exposition(), CONTENT_TYPE.encode("ascii")
        if path == "/openapi.json":
            _allow(method, "GET")
            return 200, dumps_bytes(document()), _JSON
        raise HTTPError(404, "not_found", f"no endpoint {path}; see /openapi.json")

    async def _body(self, scope: Scope, receive: Receive, headers: dict[bytes, bytes]) -> bytes:
        media = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if media != _JSON:
            raise HTTPError(415, "unsupported_media_type", "send the body as application/json")
        limit = self.settings.max_body
        declared = headers.get(b"content-length")
        # leading zeros are valid HTTP, and int() of more than 4,300 digits raises: compared by length first
        digits = (declared or b"").lstrip(b"0")
        if declared is not None and (not declared.isdigit() or len(digits) > len(str(limit))
                                     or int(digits or b"0") > limit):
            # closing the connection stops the client sending a body nobody reads
            raise HTTPError(413, "body_too_large", f"the body may be at most {limit:,} bytes",
                            [(b"connection", b"close")])
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.settings.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise HTTPError(400, "disconnected", "the client went away before sending the body")
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:  # checked per chunk: a body without a length is cut off here too
                        raise HTTPError(413, "body_too_large", f"the body may be at most {limit:,} bytes",
                                        [(b"connection", b"close")])
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            raise HTTPError(408, "body_timeout", f"the body did not arrive within {self.settings.body_timeout:g}s",
                            [(b"connection", b"close")]) from None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    @staticmethod
    def _json(body: bytes) -> Any:
        try:
            return parse_json(body)
        except RequestError as exc:  # a repeated key, named by its JSON path
            raise error_for(exc) from None
        except ValueError as exc:  # UnicodeDecodeError included
            raise HTTPError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None

    async def _decisions(self, service: Service, body: bytes, context: CallContext | None) -> tuple[int, bytes, bytes]:
        if body[:1] == b"{":  # one request: the engine reads the text itself, in its native pass when it can
            engine = service.ready_engine()
            try:
                return 200, (await asyncio.to_thread(engine.evaluate_json, body, context) if service.offload
                             else engine.evaluate_json(body, context)), _JSON
            except RequestTextError as exc:  # answered as any body that is not JSON
                raise HTTPError(400, "invalid_json", f"the body is not valid JSON: {exc.detail}") from None
            except PolicyEngineError as exc:
                raise error_for(exc) from None
        value = self._json(body)
        engine = service.ready_engine()
        if isinstance(value, dict):
            try:
                decision = (await asyncio.to_thread(engine.evaluate, value, context) if service.offload
                            else engine.evaluate(value, context))
            except PolicyEngineError as exc:
                raise error_for(exc) from None
            return 200, dumps_bytes(decision.to_dict()), _JSON
        if isinstance(value, list):
            if len(value) > MAX_BATCH:
                raise HTTPError(413, "batch_too_large", f"a batch may hold at most {MAX_BATCH:,} requests, this one "
                                f"holds {len(value):,}; split it into several requests")
            return 200, dumps_bytes(await asyncio.to_thread(_batch, service, engine, value, context)), _JSON
        raise HTTPError(400, "invalid_request", "the body must be a payment request (a JSON object) or a batch of "
                        "them (a JSON array)")

    async def _explain(self, service: Service, scope: Scope, body: bytes) -> tuple[int, bytes, bytes]:
        request = self._json(body)
        rule = _rule(scope)
        engine = service.ready_engine()
        try:
            explanation = await asyncio.to_thread(engine.explain, request, rule)
        except PolicyEngineError as exc:
            raise error_for(exc) from None
        return 200, dumps_bytes(explanation.to_dict()), _JSON

    async def _status(self, service: Service, request_id: str, body: bytes) -> tuple[int, bytes, bytes]:
        value = self._json(body)
        if not isinstance(value, dict) or set(value) != {"status"} or not isinstance(value["status"], str):
            raise HTTPError(400, "invalid_request", 'the body must be {"status": "completed" | "failed" | '
                            '"reversed"}')
        engine = service.ready_engine()
        try:
            await asyncio.to_thread(engine.report, request_id, value["status"])
        except PolicyEngineError as exc:
            raise error_for(exc) from None
        return 200, dumps_bytes({"request_id": request_id, "status": value["status"]}), _JSON


def _batch(service: Service, engine: PolicyEngine, items: list[Any],
           context: CallContext | None) -> list[dict[str, Any]]:
    """Each item's decision or error (with its index), in order: a bad item never stops the batch."""
    out: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            out.append(engine.evaluate(item, context).to_dict())
        except PolicyEngineError as exc:
            failure = error_for(exc)
            service.metrics.error(failure.body.get("error", "error"))
            out.append({"index": index, **failure.body})
    return out


def _headers(raw: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    # ASGI gives lower-case names; a repeated header keeps its first value, which is all the service reads
    out: dict[bytes, bytes] = {}
    for name, value in raw:
        out.setdefault(name, value)
    return out


_TRACE_HEADERS = (b"x-request-id", b"traceparent", b"tracestate")


def _context(headers: dict[bytes, bytes]) -> CallContext | None:
    """The caller's request id and W3C trace context for the decision log (malformed values dropped, as W3C
    Trace Context asks of a receiver); None when the call carries none."""
    given = {name.decode("ascii"): headers[name].decode("latin-1") for name in _TRACE_HEADERS if name in headers}
    if not given:
        return None
    context = CallContext.from_headers(given)
    return context if context.to_dict() else None


def _authorize(header: bytes | None, token: bytes) -> None:
    scheme, _, given = (header or b"").partition(b" ")
    # compare_digest takes the same time whatever the given token shares with the real one
    if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), token):
        raise HTTPError(401, "unauthorized", "a valid bearer token is required (Authorization: Bearer ...)",
                        [(b"www-authenticate", b'Bearer realm="policy-engine"')])


def _raw_path(scope: Scope) -> bytes:
    # ASGI lets a server leave raw_path out; the decoded path, quoted again, is then the nearest thing to it
    raw = scope.get("raw_path")
    return raw if raw is not None else quote(scope["path"], safe="/").encode("ascii")


def _path_id(segment: bytes) -> str:
    """A request id from its percent-encoded path segment: UTF-8, strictly (the server's own decoding puts U+FFFD
    in place of bytes that are not, and the status would go to an id nobody sent)."""
    try:
        return unquote_to_bytes(segment).decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPError(400, "invalid_request", "the request id in the path is not UTF-8 once percent-decoded: "
                        "percent-encode the UTF-8 bytes of the request_id the decision was made for") from None


def _allow(method: str, allowed: str) -> None:
    if method != allowed:
        raise HTTPError(405, "method_not_allowed", f"use {allowed}", [(b"allow", allowed.encode("ascii"))])


def _rule(scope: Scope) -> str | None:
    """The ``rule`` of /v1/explain's query, or None. Given twice or empty it is refused, as a repeated JSON key is:
    the last one silently won and an empty one explained every rule, neither what the caller asked about."""
    query = scope.get("query_string", b"").decode("latin-1")
    given = [value for name, value in parse_qsl(query, keep_blank_values=True) if name == "rule"]
    if len(given) > 1:
        raise HTTPError(400, "invalid_query", f"?rule= is given {len(given)} times: give it once (explain one rule "
                        "per call) or leave it out to explain every rule")
    if given == [""]:
        raise HTTPError(400, "invalid_query", "?rule= is empty: name a rule id (?rule=FS-001) or leave it out to "
                        "explain every rule")
    return given[0] if given else None


def create_app() -> App:
    """The application of one worker process, configured from :data:`~.settings.SETTINGS_ENV` (the
    server's factory mode)."""
    # A SIGHUP before the lifespan installs the reload handler would end the worker (the default action); the
    # pack it is about to load is the current one anyway, so until then the signal has nothing to do.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    return App(Settings.from_env())
