"""What the engine knows about a call beyond the request: the caller's trace context, the rollout arm a payer
falls in, and the event each decision produces for listeners (a service's metrics).

>>> engine = PolicyEngine.from_path("rules/", rollout=Rollout("candidate/", 0.05))
>>> engine.add_listener(lambda event: metrics.observe(event))
>>> engine.evaluate(request, context=CallContext.from_headers(headers))
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .decision import Decision
from .errors import PolicyEngineError

if TYPE_CHECKING:  # typing only: the model layer does not load packs
    from .ruleset import RuleSet

#: Payers are spread over this many buckets; a share is rounded to whole buckets (0.01% steps).
BUCKETS = 10_000

#: W3C Trace Context level 1: version 00 (future versions keep this prefix and may append fields), a trace id
#: and a parent id that are not all zeros, and the flags.
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}(-[ -~]*)?$")
#: What a caller's request id or tracestate may be in the decision log: printable ASCII, bounded (tracestate:
#: the 512 characters W3C asks every vendor to propagate).
_REQUEST_ID = re.compile(r"^[!-~]{1,200}$")
_TRACESTATE = re.compile(r"^[ -~]{1,512}$")


class CallContextError(PolicyEngineError, ValueError):
    """A trace context value that is not what its header may carry."""


@dataclass(frozen=True, slots=True)
class CallContext:
    """Where a call came from, for the decision log: the caller's request id (``X-Request-Id``) and its W3C trace
    context (``traceparent``, ``tracestate``). Built directly, a malformed value is a :class:`CallContextError`;
    :meth:`from_headers` drops malformed headers instead, as W3C asks of a receiver."""

    request_id: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None

    def __post_init__(self) -> None:
        for name, value, pattern in (("request_id", self.request_id, _REQUEST_ID),
                                     ("traceparent", self.traceparent, _TRACEPARENT),
                                     ("tracestate", self.tracestate, _TRACESTATE)):
            if value is not None and not (isinstance(value, str) and pattern.match(value)):
                raise CallContextError(f"{name} {str(value)[:80]!r} is not a valid {name} (see CallContext)")

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> CallContext:
        """The context of a call from its HTTP headers (names in any case); a malformed one is left out, never
        an error: a bad trace header must not fail a payment."""
        lowered = {k.lower(): v for k, v in headers.items()}
        pairs = (("request_id", "x-request-id", _REQUEST_ID), ("traceparent", "traceparent", _TRACEPARENT),
                 ("tracestate", "tracestate", _TRACESTATE))
        return cls(**{name: lowered[header].strip() for name, header, pattern in pairs
                      if isinstance(lowered.get(header), str) and pattern.match(lowered[header].strip())})

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("request_id", self.request_id), ("traceparent", self.traceparent),
                                  ("tracestate", self.tracestate)) if v is not None}


class RolloutError(PolicyEngineError, ValueError):
    """A rollout that cannot be applied (a share outside 0..1)."""


@dataclass(frozen=True, slots=True)
class Rollout:
    """Send ``share`` (a fraction, 0..1) of payers to the ``candidate`` pack (a path or a :class:`RuleSet`).

    Which payers is decided by a stable hash of ``payer.id`` (:func:`bucket`), so a payer stays in one arm for
    as long as the share stays, on every instance, and raising the share only adds payers to the candidate."""

    candidate: str | Path | RuleSet
    share: float

    def __post_init__(self) -> None:
        if isinstance(self.share, bool) or not isinstance(self.share, int | float) or not 0 <= self.share <= 1:
            raise RolloutError(f"a rollout share is a fraction from 0 to 1 (0.05 for 5% of payers), not "
                               f"{self.share!r}")

    @property
    def threshold(self) -> int:
        """Payers whose bucket is below this go to the candidate."""
        return round(self.share * BUCKETS)


def bucket(payer_id: str) -> int:
    """The payer's rollout bucket in ``0..BUCKETS-1``: the first 8 bytes of SHA-256 of the id (UTF-8), so every
    host and Python version (no hash randomisation) puts a payer in the same bucket."""
    digest = hashlib.sha256(payer_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


PRIMARY, CANDIDATE = "primary", "candidate"


@dataclass(frozen=True, slots=True)
class ShadowResult:
    """What one shadow pack made of a request: its decision (``None`` if it failed, with ``error`` saying why)
    and whether that outcome differs from the decision returned (a flip)."""

    pack: Mapping[str, str]  # pack, version, digest
    decision: Decision | None
    error: str | None = None

    @property
    def outcome(self) -> str | None:
        return None if self.decision is None else self.decision.decision.value

    def flipped(self, primary: Decision) -> bool:
        return self.decision is not None and self.decision.decision is not primary.decision

    def to_dict(self, primary: Decision) -> dict[str, Any]:
        out: dict[str, Any] = {"ruleset": dict(self.pack)}
        if self.decision is None:
            out["error"] = self.error
        else:
            out["decision"] = self.decision.to_dict()
            out["flip"] = self.flipped(primary)
        return out


@dataclass(frozen=True, slots=True)
class DecisionEvent:
    """One decision, as listeners see it: after the shadow packs ran (or were skipped: ``shadow_dropped``)."""

    request_id: str
    decision: Decision  # the decision returned to the caller
    pack: Mapping[str, str]  # pack, version, digest of the pack that decided
    arm: str | None  # primary / candidate with a rollout, else None
    latency_us: int  # the decision's own time (``decision.elapsed_us``), for histograms
    shadows: tuple[ShadowResult, ...] = ()
    shadow_dropped: bool = False  # the shadow queue was full: no shadow ran for this decision
    context: CallContext | None = None

    @property
    def flips(self) -> tuple[ShadowResult, ...]:
        """The shadow results whose outcome differs from the decision returned."""
        return tuple(s for s in self.shadows if s.flipped(self.decision))
