"""The pure-Python matcher: the lowered rules compiled to one generated function, indexed on one field.

Rules that require a particular value of the most commonly tested field (usually ``funding_source.type`` or
``purpose``) are only checked when the request has that value; the rest are checked on every request.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..compiler import CompiledRule, LAll, LAny, LNode, Program, Test

_CMP = {"eq": "==", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _required_values(tree: LNode) -> tuple[str, frozenset] | None:
    """If the rule can only fire when one key equals one of a few constants, that key and those values."""
    conjuncts = tree.children if isinstance(tree, LAll) else (tree,)
    for c in conjuncts:
        if isinstance(c, Test) and c.op == "eq" and c.ref_key is None:
            return c.key, frozenset([c.const])
        if isinstance(c, LAny) and c.children and all(
            isinstance(t, Test) and t.op == "eq" and t.ref_key is None for t in c.children
        ):
            keys = {t.key for t in c.children}  # type: ignore[union-attr]
            if len(keys) == 1:
                return keys.pop(), frozenset(t.const for t in c.children)  # type: ignore[union-attr]
    return None


class _Codegen:
    def __init__(self) -> None:
        self.consts: dict[str, Any] = {}

    def const(self, value: Any) -> str:
        if isinstance(value, bool | int | str) or value is None:
            return repr(value)
        name = f"_k{len(self.consts)}"
        self.consts[name] = value
        return name

    def expr(self, node: LNode) -> str:
        if isinstance(node, Test):
            v = node.key
            if node.op == "exists":
                return f"{v} is not None"
            if node.op == "missing":
                return f"{v} is None"
            if node.ref_key is not None:
                return f"({v} is not None and {node.ref_key} is not None and {v} {_CMP[node.op]} {node.ref_key})"
            if node.op == "eq":
                return f"{v} == {self.const(node.const)}"  # None never equals a constant
            return f"({v} is not None and {v} {_CMP[node.op]} {self.const(node.const)})"
        if isinstance(node, LAny):
            if not node.children:
                return "False"
            eqs = [t for t in node.children if isinstance(t, Test) and t.op == "eq" and t.ref_key is None]
            if len(eqs) == len(node.children) and len({t.key for t in eqs}) == 1 and len(eqs) > 3:
                return f"{eqs[0].key} in {self.const(frozenset(t.const for t in eqs))}"
            return "(" + " or ".join(self.expr(c) for c in node.children) + ")"
        if not node.children:
            return "True"
        return "(" + " and ".join(self.expr(c) for c in node.children) + ")"


class PythonMatcher:
    name = "python"

    def __init__(self, program: Program):
        self.program = program
        self._match, self.source = self._build(program.rules, program)

    @staticmethod
    def _build(rules: tuple[CompiledRule, ...], program: Program):
        gen = _Codegen()
        keys = sorted({*program.layout.plain.values(), *program.layout.sums.values(),
                       *program.layout.cmps.values(), "d"})
        required = {r.index: _required_values(r.tree) for r in rules}
        counts = Counter(req[0] for req in required.values() if req)
        index_key = counts.most_common(1)[0][0] if counts else None
        always = [r for r in rules if not required[r.index] or required[r.index][0] != index_key]
        by_value: dict[Any, list[CompiledRule]] = {}
        for r in rules:
            req = required[r.index]
            if req and req[0] == index_key:
                for value in req[1]:
                    by_value.setdefault(value, []).append(r)

        def body(group: list[CompiledRule], indent: str) -> list[str]:
            return [f"{indent}if {gen.expr(r.tree)}: out.append({r.index})" for r in group] or [f"{indent}pass"]

        lines = ["def match(facts):", "    g = facts.get"]
        lines += [f"    {k} = g({k!r})" for k in keys]
        lines.append("    out = []")
        lines += body(always, "    ")
        if index_key is not None:
            branches = {}
            for n, (value, group) in enumerate(by_value.items()):
                fname = f"_branch{n}"
                sub = [f"def {fname}(out, {', '.join(keys)}):", *body(group, "    ")]
                branches[value] = fname
                lines = [*sub, "", *lines]
            table = "{" + ", ".join(f"{gen.const(v)}: {f}" for v, f in branches.items()) + "}"
            lines.append(f"    branch = _DISPATCH.get({index_key})")
            lines.append("    if branch is not None:")
            lines.append(f"        branch(out, {', '.join(keys)})")
            lines.append("        out.sort()")
            lines.append("    return out")
            src = "\n".join(lines) + f"\n_DISPATCH = {table}\n"
        else:
            lines.append("    return out")
            src = "\n".join(lines) + "\n"
        namespace: dict[str, Any] = dict(gen.consts)
        exec(compile(src, "<policy_engine.python_matcher>", "exec"), namespace)
        return namespace["match"], src

    def match(self, facts: dict[str, Any]) -> list[int]:
        return self._match(facts)

    def close(self) -> None:
        pass
