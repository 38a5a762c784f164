"""The fields rules may read: every leaf of the request schema plus the engine's derived fields.

The catalogue is built from ``schemas/payment_request.schema.json`` so that a field added to the request contract
becomes usable in rules without touching code, and a rule naming a field the contract lacks is a load error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .diagnostics import closest

Kind = Literal["str", "num", "bool"]


@dataclass(frozen=True, slots=True)
class FieldInfo:
    path: str
    kind: Kind
    enum: tuple[str | bool, ...] | None = None
    integer: bool = False


#: Fields the engine computes; callers never supply them (a ``derived`` object in a request is rejected).
DERIVED_FIELDS: tuple[FieldInfo, ...] = (
    FieldInfo("derived.amount_cny", "num"),
    FieldInfo("derived.amount_usd", "num"),
    FieldInfo("derived.amount_eur", "num"),
    FieldInfo("derived.local_hour", "num", integer=True),
)

#: The request contract's constraints on the derived fields, for checking rule constants against them.
DERIVED_SCHEMAS: dict[str, dict] = {
    "derived.amount_cny": {"type": "number", "exclusiveMinimum": 0},
    "derived.amount_usd": {"type": "number", "exclusiveMinimum": 0},
    "derived.amount_eur": {"type": "number", "exclusiveMinimum": 0},
    "derived.local_hour": {"type": "integer", "minimum": 0, "maximum": 23},
}


def _kind_of(schema: dict) -> tuple[Kind, tuple | None, bool] | None:
    if "enum" in schema:
        values = tuple(schema["enum"])
        if all(isinstance(v, str) for v in values):
            return "str", values, False
        if all(isinstance(v, bool) for v in values):
            return "bool", values, False
        return None
    types = schema.get("type")
    types = tuple(types) if isinstance(types, list) else (types,)
    if "boolean" in types:
        return "bool", None, False
    if "integer" in types and "number" not in types:
        return "num", None, True
    if "number" in types:
        return "num", None, False
    if "string" in types:
        return "str", None, False
    return None


def _always_present(schema: dict, prefix: str) -> list[str]:
    """Leaf paths every valid request has after normalisation: required all the way down, or defaulted."""
    out = []
    required = set(schema.get("required", ()))
    for name, sub in schema.get("properties", {}).items():
        if name not in required and "default" not in sub:
            continue
        if sub.get("type") == "object" or "properties" in sub:
            out += _always_present(sub, f"{prefix}{name}.")
        else:
            out.append(prefix + name)
    return out


class FieldCatalog:
    """Maps a dotted path to its :class:`FieldInfo`; suggests near misses for unknown paths."""

    def __init__(self, request_schema: dict):
        fields: dict[str, FieldInfo] = {}
        schemas: dict[str, dict] = dict(DERIVED_SCHEMAS)

        def walk(schema: dict, prefix: str) -> None:
            for name, sub in schema.get("properties", {}).items():
                path = f"{prefix}{name}"
                if sub.get("type") == "object" or "properties" in sub:
                    walk(sub, path + ".")
                    continue
                kind = _kind_of(sub)
                if kind is not None:
                    fields[path] = FieldInfo(path, kind[0], kind[1], kind[2])
                    schemas[path] = sub

        walk(request_schema, "")
        for info in DERIVED_FIELDS:
            fields[info.path] = info
        self._fields = fields
        self._schemas = schemas
        self.always_present = frozenset(_always_present(request_schema, "")) | {"derived.local_hour"}

    def get(self, path: str) -> FieldInfo | None:
        return self._fields.get(path)

    def schema(self, path: str) -> Mapping[str, Any] | None:
        """The field's JSON Schema in the request contract (its pattern, enum and bounds), or None."""
        return self._schemas.get(path)

    def __contains__(self, path: str) -> bool:
        return path in self._fields

    def paths(self) -> list[str]:
        return list(self._fields)

    def suggest(self, path: str) -> str | None:
        near = closest(path, self._fields)
        if near is None:
            # A wrong prefix is the common slip (`funding.type`), so also match on the last segment.
            tail = path.rsplit(".", 1)[-1]
            near = next((p for p in self._fields if p.rsplit(".", 1)[-1] == tail), None)
        return near
