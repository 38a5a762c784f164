"""The decision log: an append-only JSON Lines record of every decision, enough to reproduce it later.

Each record holds the request (sensitive fields masked), the full decision and the pack's digest and version,
and the caller's trace context (``trace``: request id, W3C ``traceparent``/``tracestate``) when one was given.
Shadow packs add a ``"kind": "shadow"`` record per decision they shadowed (:meth:`AuditLog.write_shadow`).
Records are written with one ``write`` on a file opened ``O_APPEND``, so concurrent writers never interleave
inside a line and a crash leaves at most a partial last line (which ``replay`` reports and skips; the next
writer starts its first record on a new line).

fsync policy (``fsync=``):

* ``"always"`` (default): every record is on disk before ``evaluate`` returns. A decision the caller acted on
  is never lost to a crash or power cut. Costs one fsync per decision.
* ``"interval"``: fsync at most every ``interval_s`` seconds (and on close): a crash may lose the decisions of
  the last interval.
* ``"never"``: leave it to the OS (page cache); for tests and throwaway runs.

If the log file is deleted or renamed away while the engine runs, the next write notices (the open file has
no name any more) and starts a new file at the configured path, so decisions after the loss are kept; the
records already written stay wherever the old file went. If a record cannot be written at all, ``evaluate``
raises :class:`EvaluationError`: an unrecorded decision is not handed out.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import hmac
import json
import os
import stat
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from .decision import Decision, plain_json
from .errors import PolicyEngineError
from .jsonio import dumps
from .traffic import CallContext, ShadowResult

#: Fields masked by default: identifiers of people and instruments. Dotted paths into the request.
DEFAULT_MASK = ("payer.id", "payer.name", "payee.id", "payee.name", "device.id", "card_number",
                "funding_source.card_number", "funding_source.account_number")

FsyncPolicy = Literal["always", "interval", "never"]


class AuditError(PolicyEngineError):
    """The decision log could not be opened or written."""


def mask_value(value: Any, key: bytes | None) -> str:
    """A stable pseudonym: the same input masks to the same token, so records of one payer stay linkable.

    Without a key this is a plain SHA-256 prefix, which can be reversed by trying every value of a small space
    (phone numbers, card numbers): pass ``key=`` (HMAC-SHA-256) for anything that leaves the host."""
    data = json.dumps(value, sort_keys=True, default=str).encode("utf-8")
    digest = hmac.new(key, data, hashlib.sha256).hexdigest() if key else hashlib.sha256(data).hexdigest()
    return f"masked:{digest[:24]}"


def mask_request(request: Mapping[str, Any], paths: Sequence[str], key: bytes | None = None) -> dict[str, Any]:
    out = plain_json(request)  # a deep copy whose numbers read back exactly
    for path in paths:
        node: Any = out
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get(parts[-1]) is not None:
            node[parts[-1]] = mask_value(node[parts[-1]], key)
    return out


class AuditLog:
    """Append decisions to ``path``. Thread-safe; share one per engine."""

    def __init__(self, path: str | Path, mask: Sequence[str] = DEFAULT_MASK, fsync: FsyncPolicy = "always",
                 interval_s: float = 1.0, key: bytes | None = None):
        if fsync not in ("always", "interval", "never"):
            raise AuditError(f"fsync must be always, interval or never, not {fsync!r}")
        self.path = Path(path)
        self.mask = tuple(mask)
        self.fsync = fsync
        self.interval_s = interval_s
        self._key = key
        self._lock = threading.Lock()
        self._last_sync = time.monotonic()
        self._fd = self._open()

    def _open(self) -> int:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as exc:
            raise AuditError(f"cannot open decision log {self.path}: {exc.strerror}") from exc
        # A crash or a full disk can leave half a record without its newline: the next record must not be glued
        # to it, or a decision handed out would be unreadable in the log (replay names the cut line instead).
        self._cut = _ends_inside_a_line(fd, self.path)
        return fd

    def record(self, request: Mapping[str, Any], decision: Decision,
               context: CallContext | None = None) -> dict[str, Any]:
        record = {
            "logged_at": _now(),
            "request_id": decision.request_id,
            "ruleset": dict(decision.ruleset),
            "request": mask_request(request, self.mask, self._key),
            "masked": [p for p in self.mask if _has(request, p)],
            "decision": decision.to_dict(),
        }
        if context is not None:
            record["trace"] = context.to_dict()
        return record

    def write(self, request: Mapping[str, Any], decision: Decision, context: CallContext | None = None) -> None:
        """Append the record of a decision (with the caller's trace context, if given)."""
        self._append(self.record(request, decision, context))

    def write_shadow(self, decision: Decision, shadows: Sequence[ShadowResult],
                     context: CallContext | None = None) -> None:
        """Append what the shadow packs made of a decided request: a ``"kind": "shadow"`` record naming the
        decision it shadows (request id, outcome, pack digest) and each shadow's decision or error, with ``flip``
        when its outcome differs. The request itself is in the decision's own record."""
        record: dict[str, Any] = {
            "logged_at": _now(),
            "kind": "shadow",
            "request_id": decision.request_id,
            "ruleset": dict(decision.ruleset),
            "decided": decision.decision.value,
            "shadows": [s.to_dict(decision) for s in shadows],
        }
        if context is not None:
            record["trace"] = context.to_dict()
        self._append(record)

    def _append(self, record: Mapping[str, Any]) -> None:
        line = (dumps(record) + "\n").encode("utf-8")
        with self._lock:
            try:
                if os.fstat(self._fd).st_nlink == 0:  # deleted or moved away: start a new file at the path
                    os.close(self._fd)
                    self._fd = self._open()
                data = b"\n" + line if self._cut else line
                self._cut = True  # until the whole record is written (an extra blank line is harmless)
                written = os.write(self._fd, data)
                if written != len(data):
                    raise OSError(f"short write ({written} of {len(data)} bytes)")
                self._cut = False
                now = time.monotonic()
                if self.fsync == "always" or (self.fsync == "interval" and now - self._last_sync >= self.interval_s):
                    _sync(self._fd)
                    self._last_sync = now
            except OSError as exc:
                raise AuditError(f"cannot write decision log {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                fd, self._fd = self._fd, -1
                try:
                    if self.fsync != "never":
                        _sync(fd)
                except OSError as exc:
                    raise AuditError(f"cannot flush decision log {self.path} to disk: {exc}") from exc
                finally:
                    os.close(fd)

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def _sync(fd: int) -> None:
    """fsync, where there is something to sync: a pipe or a character device (``/dev/stderr``) has no disk
    behind it and refuses fsync with EINVAL."""
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise


def _ends_inside_a_line(fd: int, path: Path) -> bool:
    """Whether the regular file open on ``fd`` is not empty and does not end with a newline. A pipe or a device
    has no last byte to read; a log that cannot be read back is taken as whole."""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
            return False
        with open(path, "rb") as fh:
            return os.pread(fh.fileno(), 1, info.st_size - 1) != b"\n"
    except OSError:
        return False


def _has(request: Mapping[str, Any], path: str) -> bool:
    node: Any = request
    for part in path.split("."):
        if not isinstance(node, Mapping) or node.get(part) is None:
            return False
        node = node[part]
    return True
