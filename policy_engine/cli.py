"""The ``policy-engine`` command. Subcommands live in ``policy_engine/commands/``.

Exit codes: 0 success; 1 checks failed; 2 bad input (an invalid request or line), a bad pack or a bad
argument (such as a decision log that cannot be opened); 3 the engine could not evaluate a valid request, or
could not record a decision (never reported as allow). Whatever goes wrong, the command prints a one-line
error, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import TextIO

from ._version import __version__
from .commands import COMMANDS
from .diagnostics import write_issues
from .errors import EvaluationError, IssueListError, MatcherUnavailableError, PolicyEngineError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_ENGINE = 0, 1, 2, 3


def printable(text: str) -> str:
    """``text`` for a terminal: every character it would act on or not show (ESC and other controls, bidi and
    zero-width characters, ...) escaped as ``\\xNN`` / ``\\uNNNN``, so a request string cannot recolour,
    clear or reorder what an analyst reads. Newlines stay."""
    return "\n".join(line if line.isprintable() else "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in line)
        for line in text.split("\n"))


def same_file(output: str | None, source: str | None) -> bool:
    """Whether an output path names the very file a command reads (``convert h.csv h.csv``, ``--html`` or
    ``--audit`` given the input's name), which writing would destroy while it is read."""
    if not output or not source or source == "-":
        return False
    try:
        return os.path.samefile(output, source)
    except OSError:  # the output does not exist yet, or the input does not: nothing to destroy
        return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="policy-engine", description="Payment policy engine: decide payments "
                                     "against YAML rule packs, with a reason trail.")
    parser.add_argument("--version", action="version", version=f"policy-engine {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"policy_engine.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(argv)
    try:
        return args.func(args, out, err)
    except IssueListError as exc:  # a bad pack, rule tests or invariants file: nothing was run
        write_issues(out, err, exc, getattr(args, "json", False))
        return EXIT_BAD_INPUT
    except MatcherUnavailableError as exc:
        err.write(f"policy-engine: {exc}\n")
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        # the reader went away (`| head`): stop quietly, and keep the interpreter's final flush quiet too
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:
        err.write(f"policy-engine: {exc}\n")
        return EXIT_BAD_INPUT
    except EvaluationError as exc:
        err.write(f"policy-engine: {exc}\n")
        return EXIT_ENGINE
    except PolicyEngineError as exc:
        err.write(f"policy-engine: {exc}\n")
        return EXIT_BAD_INPUT
    except Exception as exc:  # a bug: still one line, and never an exit code that reads as success
        err.write(f"policy-engine: internal error ({type(exc).__name__}: {exc}); please report it\n")
        return EXIT_ENGINE


if __name__ == "__main__":
    sys.exit(main())
