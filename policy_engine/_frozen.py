"""A fast positional constructor for frozen, slotted dataclasses built on the decision hot path.

A frozen dataclass's generated ``__init__`` sets each field through ``object.__setattr__`` looked up anew per
field; for the ten fields of a :class:`~policy_engine.decision.Decision` that is about 1.5 µs, a tenth of a
decision. The builder sets the slots through their descriptors instead (about 0.6 µs). The objects it makes
are the same as the dataclass's: same class, same fields, immutable afterwards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from .codegen import compile_function

T = TypeVar("T")


def positional_builder(cls: type[T]) -> Callable[..., T]:
    """``build(*values)`` taking every field of ``cls`` in declaration order (defaults are not applied)."""
    if not dataclasses.is_dataclass(cls) or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a slotted dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has __post_init__, which the builder would skip")
    names = [f.name for f in dataclasses.fields(cls)]
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    for i, name in enumerate(names):
        namespace[f"_set{i}"] = cls.__dict__[name].__set__  # the slot's member descriptor
    lines = [f"def build({', '.join(names)}):", "    self = _new(_cls)"]
    lines += [f"    _set{i}(self, {name})" for i, name in enumerate(names)]
    lines.append("    return self")
    return compile_function("\n".join(lines) + "\n", "build", f"builder {cls.__qualname__}", namespace)
