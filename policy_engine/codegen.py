"""Compiling generated code so that it can be debugged like any other code.

Several hot paths are Python source generated at load time (the request validator and its fast path, the python
matcher, the durable matcher's fact encoder, the decision builder). Each is compiled here, under a file name that
says what it is, e.g. ``<policy-engine matcher default-cn-intl@2026.11.0 #3f9a1c07>``, and its source is
registered with :mod:`linecache`, so tracebacks, ``pdb`` and profilers show the generated lines themselves. The
suffix is a hash of the source: two different sources never share a name, and a pack reloaded unchanged keeps its
name. A registration lasts as long as some function compiled from that source is alive.
"""

from __future__ import annotations

import hashlib
import linecache
import threading
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any

_lock = threading.Lock()
_live: dict[str, int] = {}  # file name -> functions alive compiled under it


def compile_function(source: str, name: str, what: str, namespace: dict[str, Any]) -> Callable[..., Any]:
    """Execute ``source`` in ``namespace`` and return the function it defines as ``name``.

    ``what`` says what the code is (``"matcher default-cn-intl@2026.11.0"``); the file name is built from it."""
    filename = f"<policy-engine {what} #{hashlib.sha256(source.encode()).hexdigest()[:8]}>"
    exec(compile(source, filename, "exec"), namespace)
    function = namespace[name]
    with _lock:
        _live[filename] = _live.get(filename, 0) + 1
        # mtime None: linecache.checkcache() keeps the entry, since there is no file to compare it with
        linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    weakref.finalize(function, _release, filename)
    return function


def _release(filename: str) -> None:
    with _lock:
        _live[filename] -= 1
        if not _live[filename]:
            del _live[filename]
            linecache.cache.pop(filename, None)


def failing_line(traceback: TracebackType | None, function: Callable[..., Any]) -> int | None:
    """The line of ``function``'s generated source that was running when the exception with ``traceback`` was
    raised (the innermost, if the code called itself), or ``None`` if it was not raised inside that code."""
    filename = function.__code__.co_filename
    line = None
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename == filename:
            line = traceback.tb_lineno
        traceback = traceback.tb_next
    return line
