"""Subcommands of `policy-engine`. Each module has `register(subparsers)`; add new ones to COMMANDS."""

COMMANDS = (
    "evaluate",
    "validate",
    "test",
    "replay",
    "explain",
    "verify",
    "generate",
    "backtest",
    "signing",
    "serve",
    "convert",
)
