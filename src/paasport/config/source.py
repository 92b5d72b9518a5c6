"""Read one YAML file into plain values plus the line of every key, at libyaml speed.

Called by ``config.tree`` and ``config.system``; hands on a ``YamlDoc`` (data, lines, problems).
libyaml composes the node graph; we convert nodes ourselves so every key keeps its line, merge
keys (``<<:``) and anchors work, and duplicate keys are reported instead of silently dropped.
Bounded: file size, nodes, alias expansions (billion laughs) and nesting depth are capped.
"""

from __future__ import annotations

import gc
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from paasport.errors import ConfigProblem

Path_ = tuple[str | int, ...]

_TAG = "tag:yaml.org,2002:"
_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_BOOL = {"yes": True, "true": True, "on": True, "no": False, "false": False, "off": False}

MAX_FILE_BYTES = 5 * 1024 * 1024  # no soa-configs file comes near; a bigger one is refused unread
MAX_NODES = 250_000  # values produced from one document, alias expansions included
MIN_ALIAS_BUDGET = 10_000  # values produced through aliases: max(this, 10 x the document's own)
MAX_DEPTH = 100  # nesting levels; deeper data would only overflow the checks that walk it


@dataclass
class YamlDoc:
    """One parsed file: its data, the 1-based line of each key path, and load problems."""

    file: str
    data: object
    lines: dict[Path_, int] = field(default_factory=dict)
    problems: list[ConfigProblem] = field(default_factory=list)

    def line_of(self, path: Iterable[str | int]) -> int:
        """Line of ``path`` or of its longest prefix that exists (1 when nothing matches)."""
        key = tuple(path)
        while key:
            line = self.lines.get(key)
            if line is not None:
                return line
            key = key[:-1]
        return 1

    def has(self, path: Iterable[str | int]) -> bool:
        return tuple(path) in self.lines


class _Unsupported(Exception):
    def __init__(self, node: Node, message: str, path: Path_ = ()) -> None:
        super().__init__(message)
        self.line = node.start_mark.line + 1
        self.field = ".".join(str(p) for p in path)


class _Converter:
    def __init__(self, doc: YamlDoc) -> None:
        self.doc = doc
        self.active: set[int] = set()
        self.seen: set[int] = set()  # collections converted once; meeting one again: an alias
        self.produced = 1  # values produced (the root and every item), expansions included
        self.own = 1  # values the document writes itself
        self.expanded = 0  # values produced again through aliases

    def count(self, node: Node) -> None:
        """Account for a collection's items; scalars are counted as items of their parent."""
        size = len(node.value)
        self.produced += size
        if self.produced > MAX_NODES:
            raise _Unsupported(node, f"too many values: expected at most {MAX_NODES:,} in a file")
        key = id(node)
        if key not in self.seen:
            self.seen.add(key)
            self.own += size
            return
        self.expanded += size
        budget = max(MIN_ALIAS_BUDGET, 10 * self.own)
        if self.expanded > budget:
            raise _Unsupported(
                node,
                f"aliases expand to too many values: expected at most {budget:,} "
                "(10 times the file's own, at least 10,000)",
            )

    def value(self, node: Node, path: Path_) -> object:
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if len(path) >= MAX_DEPTH:
            raise _Unsupported(node, f"nested too deeply: expected at most {MAX_DEPTH} levels")
        if id(node) in self.active:
            raise _Unsupported(node, "a recursive alias is not supported")
        self.count(node)
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                if node.tag != _TAG + "seq":
                    raise _Unsupported(node, f"YAML tag {node.tag} is not supported")
                lines = self.doc.lines
                out: list[object] = []
                for i, item in enumerate(node.value):
                    sub = (*path, i)
                    lines[sub] = item.start_mark.line + 1
                    out.append(self.value(item, sub))
                return out
            assert isinstance(node, MappingNode)
            if node.tag != _TAG + "map":
                raise _Unsupported(node, f"YAML tag {node.tag} is not supported")
            return self.mapping(node, path)
        finally:
            self.active.discard(id(node))

    def mapping(self, node: MappingNode, path: Path_) -> dict[str, object]:
        lines = self.doc.lines
        merged: dict[str, object] = {}
        explicit: dict[str, object] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _TAG + "merge":
                self.merge_into(merged, value_node, path)
                continue
            if not isinstance(key_node, ScalarNode):
                raise _Unsupported(key_node, "a mapping key must be a plain scalar")
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first_line:
                self.doc.problems.append(
                    ConfigProblem(
                        self.doc.file,
                        line,
                        "",
                        ".".join(str(p) for p in (*path, key)),
                        f"duplicate key, first defined on line {first_line[key]}",
                    )
                )
            first_line[key] = line
            sub = (*path, key)
            lines[sub] = line
            explicit[key] = self.value(value_node, sub)
        if not merged:
            return explicit
        merged.update(explicit)
        return merged

    def merge_into(self, merged: dict[str, object], node: Node, path: Path_) -> None:
        sources = node.value if isinstance(node, SequenceNode) else [node]
        # earlier mappings in a `<<: [*a, *b]` list win over later ones
        for source in reversed(sources):
            if not isinstance(source, MappingNode):
                raise _Unsupported(source, "a merge key (<<) needs a mapping or a list of them")
            value = self.value(source, path)
            assert isinstance(value, dict)
            merged.update(value)

    def scalar(self, node: ScalarNode, path: Path_) -> object:
        tag = node.tag
        value = node.value
        if tag == _TAG + "str":
            return value
        if tag == _TAG + "int":
            if len(value) > 100:  # int() of thousands of digits raises; no field needs 100
                raise _Unsupported(
                    node, f"expected a number of at most 100 digits, found {len(value)}", path
                )
            return _CONSTRUCTOR.construct_yaml_int(node)
        if tag == _TAG + "float":
            return _CONSTRUCTOR.construct_yaml_float(node)
        if tag == _TAG + "bool":
            return _BOOL.get(value.lower(), bool(value))
        if tag == _TAG + "null":
            return None
        if tag == _TAG + "timestamp":
            return value  # dates stay text: no field of ours is a date
        raise _Unsupported(node, f"YAML tag {tag} is not supported")


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _decode(raw: bytes, file: str) -> str | ConfigProblem:
    """UTF-8 text (a BOM is dropped), or the problem naming the bad byte and its line."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        bad = raw[err.start : err.start + 1]
        start = raw.rfind(b"\n", 0, err.start) + 1
        line = raw.count(b"\n", 0, err.start) + 1
        return ConfigProblem(
            file,
            line,
            "",
            "",
            f"not YAML: expected UTF-8 text, found byte \\x{bad[0]:02x} "
            f"(column {err.start - start + 1})",
        )


def parse_yaml(text: str | bytes, file: str) -> YamlDoc:
    """Parse ``text``; syntax errors become problems with the file and line, never exceptions."""
    doc = YamlDoc(file=file, data=None)
    if len(text) > MAX_FILE_BYTES:
        doc.problems.append(_too_large(file, len(text)))
        return doc
    if isinstance(text, bytes):
        decoded = _decode(text, file)
        if isinstance(decoded, ConfigProblem):
            doc.problems.append(decoded)
            return doc
        text = decoded
    was_enabled = gc.isenabled()
    gc.disable()  # every node lives until the end: collecting meanwhile only makes it quadratic
    try:
        return _parse(text, doc)
    finally:
        if was_enabled:
            gc.enable()


def _parse(text: str, doc: YamlDoc) -> YamlDoc:
    file = doc.file
    try:
        node = yaml.compose(text, Loader=yaml.CSafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else 0
        detail = err.problem or "invalid YAML"
        if err.context:
            detail = f"{detail} ({err.context})"
        doc.problems.append(ConfigProblem(file, line, "", "", f"YAML syntax error: {detail}"))
        return doc
    except yaml.reader.ReaderError as err:
        # its str() spans two lines and names "<unicode string>": say what a person can act on
        code = ord(err.character) if isinstance(err.character, str) else int(err.character)
        line, column = _line_col(text, err.position)
        char = f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
        doc.problems.append(
            ConfigProblem(
                file,
                line,
                "",
                "",
                f"not YAML: expected a text file, found control character {char} (column {column})",
            )
        )
        return doc
    except yaml.YAMLError as err:
        detail = " ".join(str(err).split())
        doc.problems.append(ConfigProblem(file, 0, "", "", f"YAML syntax error: {detail}"))
        return doc
    except (RecursionError, ValueError) as err:
        doc.problems.append(ConfigProblem(file, 0, "", "", f"not readable as YAML: {err}"))
        return doc
    if node is None:
        return doc
    try:
        doc.data = _Converter(doc).value(node, ())
    except _Unsupported as err:
        doc.problems.append(ConfigProblem(file, err.line, "", err.field, str(err)))
        doc.data = None
    except (RecursionError, ValueError, OverflowError) as err:
        # the depth cap keeps recursion far off; a constructor refusing a value ends up here
        doc.problems.append(ConfigProblem(file, 0, "", "", f"not readable as YAML: {err}"))
        doc.data = None
    return doc


def _too_large(file: str, size: int) -> ConfigProblem:
    return ConfigProblem(
        file,
        1,
        "",
        "",
        f"file too large: expected at most {MAX_FILE_BYTES // (1024 * 1024)} MB, "
        f"found {size:,} bytes",
    )


def load_yaml(path: Path, file: str | None = None) -> YamlDoc:
    """Read and parse ``path``; ``file`` is how the path is shown in messages."""
    shown = file if file is not None else str(path)
    try:
        # non-blocking: a FIFO where a file should be must not hang the loader
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                doc = YamlDoc(file=shown, data=None)
                doc.problems.append(ConfigProblem(shown, 0, "", "", "expected a file"))
                return doc
            size = st.st_size
            raw = fh.read(size + 1) if size <= MAX_FILE_BYTES else b""
            if len(raw) > size:  # it grew while read: up to one byte past the cap, no more
                raw += fh.read(MAX_FILE_BYTES + 1 - len(raw))
    except OSError as err:
        doc = YamlDoc(file=shown, data=None)
        why = err.strerror or str(err)
        doc.problems.append(ConfigProblem(shown, 0, "", "", f"cannot read: {why}"))
        return doc
    if size > MAX_FILE_BYTES or len(raw) > MAX_FILE_BYTES:
        doc = YamlDoc(file=shown, data=None)
        doc.problems.append(_too_large(shown, max(size, len(raw))))
        return doc
    return parse_yaml(raw, shown)
