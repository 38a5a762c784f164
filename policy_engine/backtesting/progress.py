"""A one-line progress bar with rate and ETA, for long runs on a terminal (the CLI shows it only on a TTY)."""

from __future__ import annotations

import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class ProgressBar:
    """Call it with ``(done, done_bytes, total_bytes)``; redraws at most every ``interval`` seconds.

    The fraction comes from bytes (a stream's length in payments is unknown until it has been read); without a
    total (standard input) it shows the count and rate only."""

    def __init__(self, stream: TextIO, unit: str = "payments", interval: float = 0.25, width: int = 28):
        self._stream = stream
        self._unit = unit
        self._interval = interval
        self._width = width
        self._start = time.monotonic()
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int, done_bytes: int = 0, total_bytes: int | None = None, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last < self._interval:
            return
        self._last = now
        elapsed = max(now - self._start, 1e-9)
        rate = done / elapsed
        text = f"{done:,} {self._unit}  {rate:,.0f}/s  {_clock(elapsed)}"
        if total_bytes:
            fraction = min(1.0, done_bytes / total_bytes)
            filled = int(fraction * self._width)
            eta = elapsed * (1 - fraction) / fraction if fraction > 0 else 0.0
            bar = "#" * filled + "." * (self._width - filled)
            text = f"[{bar}] {fraction:6.1%}  {text}  ETA {_clock(eta)}"
        self._stream.write("\r" + text + "\x1b[K")
        self._stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
