"""Read one YAML file into plain values plus the line of every key, at libyaml speed.

Called by ``config.tree`` and ``config.system``; hands on a ``YamlDoc`` (data, lines, problems).
libyaml composes the node graph; we convert nodes ourselves so every key keeps its line, merge
keys (``<<:``) and anchors work, and duplicate keys are reported instead of silently dropped.
"""

from __future__ import annotations

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
    def __init__(self, node: Node, message: str) -> None:
        super().__init__(message)
        self.line = node.start_mark.line + 1


class _Converter:
    def __init__(self, doc: YamlDoc) -> None:
        self.doc = doc
        self.active: set[int] = set()

    def value(self, node: Node, path: Path_) -> object:
        if isinstance(node, ScalarNode):
            return self.scalar(node)
        if id(node) in self.active:
            raise _Unsupported(node, "a recursive alias is not supported")
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

    def scalar(self, node: ScalarNode) -> object:
        tag = node.tag
        value = node.value
        if tag == _TAG + "str":
            return value
        if tag == _TAG + "int":
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


def parse_yaml(text: str | bytes, file: str) -> YamlDoc:
    """Parse ``text``; syntax errors become problems with the file and line, never exceptions."""
    doc = YamlDoc(file=file, data=None)
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
        # its str() spans two lines and names "<byte string>": say what a person can act on
        what = "a text file" if err.reason.startswith("control") else "UTF-8 text"
        code = ord(err.character) if isinstance(err.character, str) else int(err.character)
        doc.problems.append(
            ConfigProblem(
                file,
                0,
                "",
                "",
                f"not YAML: expected {what}, found #x{code:02x} at offset "
                f"{err.position} ({err.reason})",
            )
        )
        return doc
    except yaml.YAMLError as err:
        detail = " ".join(str(err).split())
        doc.problems.append(ConfigProblem(file, 0, "", "", f"YAML syntax error: {detail}"))
        return doc
    except (UnicodeDecodeError, ValueError) as err:
        doc.problems.append(ConfigProblem(file, 0, "", "", f"not readable as YAML: {err}"))
        return doc
    if node is None:
        return doc
    try:
        doc.data = _Converter(doc).value(node, ())
    except _Unsupported as err:
        doc.problems.append(ConfigProblem(file, err.line, "", "", str(err)))
        doc.data = None
    except RecursionError:
        doc.problems.append(ConfigProblem(file, 0, "", "", "YAML document is nested too deeply"))
        doc.data = None
    return doc


def load_yaml(path: Path, file: str | None = None) -> YamlDoc:
    """Read and parse ``path``; ``file`` is how the path is shown in messages."""
    shown = file if file is not None else str(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        doc = YamlDoc(file=shown, data=None)
        doc.problems.append(ConfigProblem(shown, 0, "", "", f"cannot read: {err.strerror}"))
        return doc
    return parse_yaml(raw, shown)
