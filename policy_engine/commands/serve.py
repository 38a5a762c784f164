"""`policy-engine serve`: the decision service over HTTP (extra `server`)."""

from __future__ import annotations

import argparse
import math
import os
from typing import TextIO

from ..cli import EXIT_BAD_INPUT, EXIT_ENGINE, EXIT_OK
from ..errors import PolicyEngineError


class ServeArgumentError(PolicyEngineError):
    """A `serve` option that cannot work (a bad size, share or combination)."""


def register(sub: argparse._SubParsersAction) -> None:
    sv = sub.add_parser("serve", help="serve decisions over HTTP (needs the `server` extra)",
                        description="Serve decisions over HTTP: POST /v1/decisions, /v1/explain, "
                                    "/v1/payments/{id}/status, GET /v1/pack, /healthz, /readyz, /metrics, "
                                    "/openapi.json, POST /v1/pack/reload. SIGHUP, --watch and POST /v1/pack/reload "
                                    "reload the pack atomically in every worker; a pack that fails to load keeps "
                                    "the old one deciding. SIGTERM drains in-flight requests and flushes the "
                                    "decision log. Needs: pip install 'payment-policy-engine[server]'.")
    sv.add_argument("--rules", required=True, help="rule pack directory or file")
    sv.add_argument("--state", metavar="URL", help="state store for the pack's counters: sqlite:///path or "
                    "redis://host:port/db (shared by several instances); memory:// only with one worker")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: loopback only)")
    sv.add_argument("--port", type=int, default=8181, help="port (default 8181)")
    sv.add_argument("--workers", type=int, default=1, help="worker processes (default 1; about one per core)")
    sv.add_argument("--max-body", default="1MiB", help="largest request body (default 1MiB); larger is 413")
    sv.add_argument("--body-timeout", type=float, default=10.0, metavar="SECONDS", help="a request body must "
                    "arrive within this time (default 10); slower is 408")
    sv.add_argument("--token-file", metavar="F", help="require `Authorization: Bearer <token>` with the token in "
                    "this file (except /healthz, /readyz, /openapi.json)")
    sv.add_argument("--verify-key", metavar="PUB", help="refuse a pack not signed with this Ed25519 public key, at "
                    "start and on every reload")
    sv.add_argument("--watch", action="store_true", help="reload when the pack's files change (polled each second)")
    sv.add_argument("--shadow", metavar="PACK", action="append", default=[], help="also evaluate this pack on every "
                    "request, off the decision path (repeatable); flips go to the decision log and the metrics")
    sv.add_argument("--rollout", metavar="PACK=SHARE", help="let a candidate pack decide for a deterministic share "
                    "of payers (0 < SHARE < 1, e.g. rules-next=0.05)")
    sv.add_argument("--audit", metavar="LOG", help="append every decision to this decision log (JSON Lines); the "
                    "pseudonym key comes from POLICY_ENGINE_AUDIT_KEY")
    sv.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    sv.set_defaults(func=cmd_serve)


def _rollout(text: str | None) -> tuple[str, float] | None:
    if text is None:
        return None
    pack, sep, share = text.rpartition("=")
    try:
        value = float(share)
    except ValueError:
        value = -1.0
    if not sep or not pack or not 0 < value < 1:
        raise ServeArgumentError(f"--rollout {text!r}: write PACK=SHARE with 0 < SHARE < 1, e.g. rules-next=0.05")
    return os.path.abspath(pack), value


def cmd_serve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        from ..service.server import serve
    except ModuleNotFoundError as exc:
        err.write(f"policy-engine: serve needs the server extra ({exc.name} is missing): pip install "
                  "'payment-policy-engine[server]'\n")
        return EXIT_BAD_INPUT
    from ..loader import load_ruleset
    from ..service.settings import Settings, parse_size

    if args.workers < 1:
        raise ServeArgumentError("--workers must be at least 1")
    # granian takes these unchecked: a port past 65535 was an internal error, a timeout of nan a 500 on every
    # request, 0 or less a 408 on every request, and inf no guard against a trickled body at all
    if not 0 <= args.port <= 65535:
        raise ServeArgumentError(f"--port {args.port}: a TCP port is 0 to 65535")
    if not 0 < args.body_timeout < math.inf:
        raise ServeArgumentError(f"--body-timeout {args.body_timeout}: give the seconds a body may take to arrive "
                                 "as a positive number (default 10)")
    if args.workers > 1 and args.state == "memory://":
        raise ServeArgumentError("memory:// is one process's memory: with several workers each would count alone "
                                 "and limits would not hold; use sqlite:///path or redis://")
    settings = Settings(rules=os.path.abspath(args.rules), state=args.state, max_body=parse_size(args.max_body),
                        token_file=args.token_file, verify_key=args.verify_key, watch=args.watch,
                        shadow=tuple(os.path.abspath(p) for p in args.shadow), rollout=_rollout(args.rollout),
                        audit=args.audit and os.path.abspath(args.audit), body_timeout=args.body_timeout)
    settings.token()  # an unreadable or weak token fails here, not in every worker
    # a bad or (with --verify-key) unsigned or tampered pack fails here with every issue, before anything listens
    for pack in (settings.rules, *settings.shadow, *((settings.rollout[0],) if settings.rollout else ())):
        ruleset = load_ruleset(pack)
        if settings.verify_key is not None:
            from ..signing import verify_digest

            verify_digest(ruleset.path, ruleset.digest, settings.verify_key)
    return EXIT_OK if serve(settings, args.host, args.port, args.workers, args.log_level) else EXIT_ENGINE
