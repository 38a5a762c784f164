"""How the package tells a person what is wrong: near-miss suggestions and lists of positioned issues.

One wording everywhere: a misspelt key, operator, list, field, rule id or base gets the same
``; did you mean 'x'?``, and every file of problems (a rule pack, rule tests, invariants) is printed the same way.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import TextIO

from .errors import IssueListError
from .jsonio import dumps


def closest(word: str, options: Iterable[str]) -> str | None:
    """The option ``word`` is most likely a misspelling of, or ``None`` when none is close."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return close[0] if close else None


def hint(suggestion: str | None) -> str:
    """The suffix ``; did you mean 'x'?`` for a suggestion, or an empty string for none."""
    return f"; did you mean {suggestion!r}?" if suggestion is not None else ""


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """The hint for the closest option, or an empty string when none is close."""
    return hint(closest(word, options))


def write_issues(out: TextIO, err: TextIO, error: IssueListError, as_json: bool) -> None:
    """Every issue of ``error``: one JSON object on ``out``, or ``file:line:col id: message`` lines and a summary
    on ``err``."""
    if as_json:
        out.write(dumps({"ok": False, "errors": [
            {"file": i.file, "line": i.line, "col": i.col, error.id_key: i.rule_id, "message": i.message}
            for i in error.issues]}) + "\n")
        return
    for issue in error.issues:
        err.write(f"{issue}\n")
    err.write(f"{error.summary}\n")
