"""Safe YAML loading that remembers where every value came from.

PyYAML's ``safe_load`` forgets positions, so the loader composes the node graph itself and converts it to plain
Python data while recording the ``(line, col)`` of every node by its path. JSON Schema errors and semantic
errors are then mapped back to ``file:line:col``. Only the YAML core types are constructed (no Python tags), and
aliases are expanded under a node budget so an alias bomb is refused instead of exhausting memory.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import stat
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

import yaml

from .errors import Issue

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_NODES = 200_000
#: Nodes reached again through an alias. A few hundred bytes of nested aliases expand to MAX_NODES and cost
#: seconds to convert, validate and parse; a pack sharing a condition or a list by anchor needs far fewer.
MAX_ALIAS_NODES = 20_000
MAX_DEPTH = 64

Path_ = tuple[str | int, ...]
_PLAIN_COLLECTION_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
_TAG_NAMES = {"tag:yaml.org,2002:timestamp": "date", "tag:yaml.org,2002:int": "integer",
              "tag:yaml.org,2002:float": "number", "tag:yaml.org,2002:bool": "boolean"}
_PLAIN_DECIMAL = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
#: YAML 1.1 numbers that read as another number than they show: `010` is octal (8), `1:30` base 60 (90).
_MISREAD_NUMBER = re.compile(r"[-+]?(?:0[0-7_]+|[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?)")
#: C0/C1 controls (tab and newline allowed), DEL, lone surrogates, and bidirectional overrides that make a
#: reason read differently from what it says (Trojan Source); none belongs in a rule file.
_UNSAFE_TEXT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")


@dataclass(slots=True)
class SourceDoc:
    """One YAML file as plain data plus the position of every node, keyed by its path from the root."""

    file: str
    data: Any
    marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def mark(self, path: Path_) -> tuple[int, int]:
        """The position of ``path``, or of its nearest ancestor that has one."""
        while path not in self.marks and path:
            path = path[:-1]
        return self.marks.get(path, (1, 1))

    def issue(self, path: Path_, rule_id: str | None, message: str) -> Issue:
        line, col = self.mark(path)
        return Issue(self.file, line, col, rule_id, message)


class _Budget:
    def __init__(self) -> None:
        self.nodes = 0
        self.aliased = 0
        self.seen: set[int] = set()  # ids of the nodes converted: the composer gives an alias its anchor's node


class YamlSourceError(Exception):
    def __init__(self, issue: Issue):
        self.issue = issue
        super().__init__(str(issue))


def yaml_files(root: Path, skip_dir: str | None = None) -> list[tuple[Path, str]]:
    """Every ``*.yaml`` / ``*.yml`` entry under the directory ``root``, at any depth, as (path, path relative to
    ``root``), sorted by the relative path; directories named ``skip_dir`` are left out.

    Symbolic links to directories are followed (each directory is read once, so a link back up the tree is no
    loop), and every entry that is not a directory is listed, whatever it is: a file under a linked directory, a
    broken link or a FIFO named ``*.yaml`` is then read or refused, never silently left out of the pack. A
    directory that cannot be read raises ``YamlSourceError`` naming it (os.walk would skip it, and its rules with
    it)."""
    found: list[tuple[Path, str]] = []
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, onerror=_unreadable_directory, followlinks=True):
        try:
            info = os.stat(dirpath)
        except OSError as exc:
            _unreadable_directory(exc)
        if (info.st_dev, info.st_ino) in seen:
            dirnames.clear()
            continue
        seen.add((info.st_dev, info.st_ino))
        dirnames[:] = sorted(d for d in dirnames if d != skip_dir)
        here = Path(dirpath)
        for name in filenames:
            path = here / name
            if path.suffix in (".yaml", ".yml"):
                found.append((path, path.relative_to(root).as_posix()))
    return sorted(found, key=lambda entry: entry[1])


def _unreadable_directory(exc: OSError) -> NoReturn:
    raise YamlSourceError(Issue(str(exc.filename), 1, 1, None, f"cannot read the directory: "
                                                               f"{exc.strerror or exc}; the rule files in it would "
                                                               "be left out")) from exc


def load_yaml(path: Path, display: str | None = None) -> SourceDoc:
    """Read and convert one YAML file; raises ``YamlSourceError`` with a positioned issue."""
    name = display or str(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # reading a FIFO would block the load for good
            raise YamlSourceError(Issue(name, 1, 1, None, "not a regular file (a FIFO, socket or device); a rule "
                                                          "file must be one"))
        size = info.st_size
        if size > MAX_FILE_BYTES:
            raise YamlSourceError(Issue(name, 1, 1, None, f"file is {size} bytes; the limit is {MAX_FILE_BYTES}"))
        raw = path.read_bytes()
    except OSError as exc:
        broken = " (a symbolic link to nothing: restore its target or remove it)" if path.is_symlink() else ""
        raise YamlSourceError(Issue(name, 1, 1, None, f"cannot read file: {exc.strerror or exc}{broken}")) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start].decode("utf-8")  # valid up to the first bad byte
        line, col = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
        raise YamlSourceError(Issue(name, line, col, None, f"file is not UTF-8 (byte {exc.start}: "
                                                           f"{raw[exc.start]:#04x}); save it as UTF-8")) from exc
    return parse_yaml(text, name)


#: libyaml's parser when PyYAML has it (about 10x faster), the pure-Python one otherwise; both build the same
#: nodes with the same marks, and only the safe constructor is ever used on them.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _unprintable(exc: yaml.reader.ReaderError, text: str, name: str, utf8_offset: bool) -> YamlSourceError:
    """A character the YAML reader refuses, at its line and column (the reader only gives its offset: in
    characters from PyYAML's reader, in UTF-8 bytes from libyaml's)."""
    before = text.encode("utf-8")[: exc.position].decode("utf-8") if utf8_offset else text[: exc.position]
    line, col = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
    return YamlSourceError(Issue(name, line, col, None, f"character U+{exc.character:04X} is not allowed in YAML "
                                                        "(control characters are refused); delete it"))


def parse_yaml(text: str, name: str) -> SourceDoc:
    try:
        loader = _Loader(text)  # the pure-Python reader refuses non-printable characters here
    except yaml.reader.ReaderError as exc:
        raise _unprintable(exc, text, name, utf8_offset=False) from exc
    try:
        try:
            node = loader.get_single_node()
        except yaml.reader.ReaderError as exc:  # libyaml's reader refuses them only as it reaches them
            raise _unprintable(exc, text, name, utf8_offset=True) from exc
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            raise YamlSourceError(Issue(name, line, col, None, f"YAML syntax: {exc.problem or exc}")) from exc
        except yaml.YAMLError as exc:
            raise YamlSourceError(Issue(name, 1, 1, None, f"YAML syntax: {exc}")) from exc
        except RecursionError as exc:  # PyYAML composes recursively: `[[[[...]]]]` thousands deep
            raise YamlSourceError(Issue(name, 1, 1, None, f"nesting deeper than {MAX_DEPTH} levels")) from exc
        doc = SourceDoc(name, None)
        if node is not None:
            doc.data = _convert(loader, node, (), doc, _Budget(), 0)
        return doc
    finally:
        loader.dispose()


def _convert(loader: Any, node: yaml.Node, path: Path_, doc: SourceDoc, budget: _Budget,
             depth: int) -> Any:
    budget.nodes += 1
    mark = (node.start_mark.line + 1, node.start_mark.column + 1)
    if budget.nodes > MAX_NODES:
        raise YamlSourceError(Issue(doc.file, *mark, None,
                                    f"document expands to more than {MAX_NODES} nodes (alias bomb?)"))
    if id(node) in budget.seen:
        budget.aliased += 1
        if budget.aliased > MAX_ALIAS_NODES:
            raise YamlSourceError(Issue(doc.file, *mark, None, f"aliases expand to more than {MAX_ALIAS_NODES} "
                                                               "nodes (alias bomb?); write the repeated part out, "
                                                               "or share values with a named list"))
    else:
        budget.seen.add(id(node))
    if depth > MAX_DEPTH:
        raise YamlSourceError(Issue(doc.file, *mark, None, f"nesting deeper than {MAX_DEPTH} levels"))
    doc.marks.setdefault(path, mark)
    if isinstance(node, yaml.CollectionNode) and node.tag not in _PLAIN_COLLECTION_TAGS:
        raise YamlSourceError(Issue(doc.file, *mark, None, f"YAML tag {node.tag!r} is not allowed in rule files"))
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves `<<` merge keys the way safe_load does
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(loader, key_node, doc) if isinstance(key_node, yaml.ScalarNode) else None
            kmark = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if not isinstance(key, str):
                quote = (f"; quote it (\"{clip(key_node.value)}\"): YAML reads NO/yes/on as booleans and 6012 as a "
                         "number" if isinstance(key_node, yaml.ScalarNode) else "")
                raise YamlSourceError(Issue(doc.file, *kmark, None, f"mapping keys must be strings, got "
                                                                    f"{shown(key)}{quote}"))
            if key in out:
                raise YamlSourceError(Issue(doc.file, *kmark, None, f"duplicate key {key!r} in one mapping"))
            doc.marks[(*path, key)] = kmark
            out[key] = _convert(loader, value_node, (*path, key), doc, budget, depth + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(loader, item, (*path, i), doc, budget, depth + 1) for i, item in enumerate(node.value)]
    return _scalar(loader, node, doc)


def _scalar(loader: Any, node: yaml.Node, doc: SourceDoc) -> Any:
    mark = (node.start_mark.line + 1, node.start_mark.column + 1)
    try:
        value = loader.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        # the problem alone: str(exc) adds PyYAML's own 'in "<unicode string>", line N' under the issue's position
        problem = exc.problem if isinstance(exc, yaml.MarkedYAMLError) and exc.problem else exc
        raise YamlSourceError(Issue(doc.file, *mark, None, f"unsupported YAML value: {problem}; rule files hold "
                                                           "plain YAML values (remove the tag)")) from exc
    except (ValueError, KeyError, AttributeError) as exc:
        # ValueError: an impossible date (2025-02-30) or an integer beyond Python's digit limit. An explicit tag
        # on text it does not fit fails inside PyYAML: `!!bool maybe` with KeyError, `!!timestamp x` with
        # AttributeError.
        what = _TAG_NAMES.get(node.tag, "value")
        why = str(exc).split(";")[0] if isinstance(exc, ValueError) else f"YAML cannot read it as one ({node.tag})"
        raise YamlSourceError(Issue(doc.file, *mark, None, f"{clip(node.value)!r} is not a valid {what}: "
                                                           f"{why}")) from exc
    if isinstance(value, int | float) and not isinstance(value, bool) and _MISREAD_NUMBER.fullmatch(node.value):
        why = "a colon makes it base 60" if ":" in node.value else "a leading 0 makes it octal"
        raise YamlSourceError(Issue(doc.file, *mark, None, f"{clip(node.value)} reads as {value!r} ({why} in "
                                                           f"YAML); write {value!r}, or quote it if it is text"))
    if isinstance(value, float) and not math.isfinite(value):
        raise YamlSourceError(Issue(doc.file, *mark, None, f"{node.value} is not a finite number; rule files "
                                                           "hold finite numbers only"))
    if isinstance(value, float) and not _float_is_exact(node.value, value):
        raise YamlSourceError(Issue(doc.file, *mark, None, f"{clip(node.value)} has more digits than a YAML "
                                                           f"number keeps (it reads as {value!r}); write fewer "
                                                           "digits"))
    if isinstance(value, str) and _UNSAFE_TEXT.search(value):
        bad = _UNSAFE_TEXT.search(value).group()  # type: ignore[union-attr]
        raise YamlSourceError(Issue(doc.file, *mark, None, f"control or invisible character U+{ord(bad):04X} in text; "
                                                           "rule files hold printable text only"))
    # Dates are kept as ISO strings: the schema and the as-of logic work on one representation.
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        raise YamlSourceError(Issue(doc.file, *mark, None, "binary values are not allowed in rule files"))
    return value


def _float_is_exact(text: str, value: float) -> bool:
    """Whether a YAML float kept every digit written: ``0.10000000000000000001`` would silently become 0.1.

    Only decimal notation is compared (sexagesimal ``1:30.5`` is refused before this)."""
    plain = text.replace("_", "")
    if not _PLAIN_DECIMAL.fullmatch(plain):
        return True
    return Decimal(plain) == Decimal(repr(value))


def clip(text: str, limit: int = 40) -> str:
    """A scalar as quoted in a message: a 5,000-digit number is shown by its first digits."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def shown(value: object) -> str:
    """A value as a message quotes it (its repr), a megabyte string or list shown by its start."""
    return clip(repr(value), 80)
