"""What a worker of the decision service needs to build itself: passed from ``serve`` to each worker process
as JSON in one environment variable (workers are spawned, so they cannot inherit objects)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import PolicyEngineError

#: The environment variable carrying :class:`Settings` to worker processes.
SETTINGS_ENV = "POLICY_ENGINE_SERVE_SETTINGS"
DEFAULT_MAX_BODY = 1 << 20
#: The most items one batch body may hold. Each item costs a decision or an error object whatever its size, so
#: without a count a body of `[1,1,...]` within --max-body made a worker build half a million of them (seconds of
#: CPU, hundreds of MB). 1,000 typical requests (~740 KB, inside the default --max-body) decide in about 50 ms.
MAX_BATCH = 1000


class ServiceConfigError(PolicyEngineError):
    """The service cannot start with these settings (an unreadable token file, a bad size...)."""


@dataclass(frozen=True, slots=True)
class Settings:
    rules: str | None = None
    state: str | None = None
    max_body: int = DEFAULT_MAX_BODY
    token_file: str | None = None
    verify_key: str | None = None
    watch: bool = False
    watch_interval: float = 1.0
    shadow: tuple[str, ...] = ()
    rollout: tuple[str, float] | None = None
    audit: str | None = None
    #: a whole body must arrive within this many seconds: a client trickling bytes cannot hold a worker forever
    body_timeout: float = 10.0
    #: the pid of the supervisor of several workers: a reload asked of one worker is passed to all through it
    supervisor: int | None = None

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> Settings:
        text = os.environ.get(SETTINGS_ENV)
        if text is None:
            raise ServiceConfigError(f"{SETTINGS_ENV} is not set: start the service with `policy-engine serve`")
        raw = json.loads(text)
        raw["shadow"] = tuple(raw["shadow"])
        raw["rollout"] = tuple(raw["rollout"]) if raw["rollout"] is not None else None
        return cls(**raw)

    def token(self) -> bytes | None:
        """The bearer token, read from ``token_file`` (surrounding whitespace stripped), or None: no auth."""
        if self.token_file is None:
            return None
        try:
            token = Path(self.token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ServiceConfigError(f"cannot read the token file {self.token_file}: {exc}") from exc
        if len(token) < 16:
            raise ServiceConfigError(f"the token in {self.token_file} is {len(token)} characters; use at least 16 "
                                     "random ones (e.g. `openssl rand -hex 32`)")
        return token.encode("utf-8")


def parse_size(text: str) -> int:
    """``1MiB``, ``512KiB``, ``65536``... as a number of bytes (a positive one)."""
    units = {"gib": 1 << 30, "mib": 1 << 20, "kib": 1 << 10, "gb": 10**9, "mb": 10**6, "kb": 10**3, "b": 1}
    lowered = text.strip().lower()
    for unit, scale in units.items():
        if lowered.endswith(unit):
            number, factor = lowered[: -len(unit)].strip(), scale
            break
    else:
        number, factor = lowered, 1
    try:
        size = int(number) * factor
    except ValueError:
        raise ServiceConfigError(f"{text!r} is not a size: write bytes or a number with KiB, MiB, kB, MB") from None
    if size <= 0:
        raise ServiceConfigError(f"{text!r}: a size must be positive")
    return size
