"""Where the bundled default pack and the schemas are, installed or in a source checkout."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _bundled(name: str) -> Path:
    # A wheel carries copies under policy_engine/_bundled/; a source checkout (or an editable install)
    # uses the top-level directories of the repository.
    installed = _PACKAGE_DIR / "_bundled" / name
    return installed if installed.is_dir() else _PACKAGE_DIR.parent / name


def default_pack_path() -> Path:
    return _bundled("rules")


def schemas_dir() -> Path:
    return _bundled("schemas")


@cache
def load_schema(name: str) -> dict:
    """``name`` is one of ``payment_request``, ``ruleset``, ``decision``."""
    with open(schemas_dir() / f"{name}.schema.json", encoding="utf-8") as fh:
        return json.load(fh)
