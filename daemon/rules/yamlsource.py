"""YAML read so that every value keeps its file, line and column, and YAML's traps become errors.

PyYAML's safe loader silently keeps the last of two equal keys, reads an unquoted `yes`, `no`, `on`
or `off` as a boolean, and reads `null` or an empty value as nothing. Operations teams editing policy
should hear about each of these at load time, at the line where it happened, so the file is composed
into nodes here and each scalar is resolved with its position in hand.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

# YAML 1.1 booleans that are words, not true/false: the classic "Norway problem".
WORD_BOOLEANS = frozenset({"yes", "no", "on", "off", "y", "n"})


@dataclass(frozen=True)
class Position:
    file: str
    line: int    # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass
class Problem:
    """An error or warning found in a file, with what would be right."""

    position: Position
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.position}: {self.severity}: {self.message}"


@dataclass
class Node:
    """A YAML value with where it stands. Mappings hold Nodes by key; sequences hold Nodes."""

    value: Any
    position: Position
    key_positions: dict[str, Position] = field(default_factory=dict)
    plain: bool = False     # an unquoted scalar
    text: str = ""          # a scalar as written
    trap: bool = False      # already reported (e.g. an unquoted yes); later checks stay quiet about it

    @property
    def is_mapping(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_sequence(self) -> bool:
        return isinstance(self.value, list)

    def items(self) -> Iterator[tuple[str, Position, "Node"]]:
        for key, child in self.value.items():
            yield key, self.key_positions[key], child

    def plain_value(self) -> Any:
        """The Python value, positions dropped (for test-case facts and other free-form data)."""
        if self.is_mapping:
            return {key: child.plain_value() for key, child in self.value.items()}
        if self.is_sequence:
            return [child.plain_value() for child in self.value]
        return self.value


class YamlFileError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def _position(file: str, mark: yaml.Mark | None) -> Position:
    if mark is None:
        return Position(file, 1, 1)
    return Position(file, mark.line + 1, mark.column + 1)


class _Reader:
    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.loader = yaml.SafeLoader(text)
        self.problems: list[Problem] = []

    def read(self) -> Node | None:
        try:
            root = self.loader.get_single_node()
        except yaml.composer.ComposerError as exc:
            if "single document" in str(exc.problem or exc):
                self.problems.append(Problem(_position(self.file, exc.problem_mark),
                                             "a rule file holds one YAML document; remove the extra '---'"))
                return None
            raise
        finally:
            self.loader.dispose()
        if root is None:
            return None
        return self.convert(root)

    def convert(self, node: yaml.Node) -> Node:
        position = _position(self.file, node.start_mark)
        if isinstance(node, yaml.MappingNode):
            result = Node({}, position)
            self._fill_mapping(node, result)
            return result
        if isinstance(node, yaml.SequenceNode):
            return Node([self.convert(child) for child in node.value], position)
        return self.scalar(node, position)

    def _fill_mapping(self, node: yaml.MappingNode, result: Node) -> None:
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                # `<<: *anchor` copies keys the mapping does not set itself.
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for source in sources:
                    merged = self.convert(source)
                    if not merged.is_mapping:
                        self.problems.append(Problem(merged.position, "'<<' merges a mapping, not a single value"))
                        continue
                    for key, key_position, child in merged.items():
                        if key not in result.value:
                            result.value[key] = child
                            result.key_positions[key] = key_position
                continue
            key = self.convert(key_node)
            if not isinstance(key.value, str):
                shown = "true/false" if isinstance(key.value, bool) else repr(key.value)
                self.problems.append(Problem(key.position, f"key {key.text!r} is read as {shown}, not as a name; quote it"))
                continue
            if key.value in result.value:
                first = result.key_positions[key.value]
                self.problems.append(Problem(key.position, f"key {key.value!r} appears twice in one mapping (first at line "
                                             f"{first.line}); YAML would silently keep only the last one"))
                continue
            result.value[key.value] = self.convert(value_node)
            result.key_positions[key.value] = key.position

    def scalar(self, node: yaml.ScalarNode, position: Position) -> Node:
        plain = node.style is None
        value = self.loader.construct_object(node, deep=True)
        trap = plain and isinstance(value, bool) and node.value.lower() in WORD_BOOLEANS
        if trap:
            self.problems.append(Problem(position, f"unquoted {node.value!r} is read by YAML as {str(value).lower()}: "
                                         f"write true or false for a yes/no field, or quote it ('{node.value}') for text"))
        return Node(value, position, plain=plain, text=node.value, trap=trap)


def read_yaml_with_problems(path: Path | str, text: str | None = None) -> tuple[Node | None, list[Problem]]:
    """The file as Nodes and the problems YAML itself hides (duplicate keys, word booleans), which leave
    the rest of the file readable so that every problem in it can be reported at once.
    YamlFileError when the file cannot be read as YAML at all."""
    name = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise YamlFileError([Problem(Position(name, 1, 1), f"not UTF-8 text ({exc.reason}); save the file as UTF-8")]) from None
        except OSError as exc:
            raise YamlFileError([Problem(Position(name, 1, 1), f"cannot read the file: {exc.strerror}")]) from None
    reader = _Reader(name, text)
    try:
        root = reader.read()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or str(exc)
        context = ""
        if exc.context:
            started = ""
            if exc.context_mark is not None and exc.problem_mark is not None and exc.context_mark.line != exc.problem_mark.line:
                started = f" that starts at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1}"
            context = f" ({exc.context}{started})"
        raise YamlFileError([Problem(_position(name, mark), f"not valid YAML: {what}{context}")]) from None
    except yaml.YAMLError as exc:
        raise YamlFileError([Problem(Position(name, 1, 1), f"not valid YAML: {exc}")]) from None
    return root, reader.problems


def read_yaml(path: Path | str, text: str | None = None) -> Node | None:
    """The file as Nodes; YamlFileError with every problem found (syntax error, duplicate key, word boolean)."""
    root, problems = read_yaml_with_problems(path, text)
    if problems:
        raise YamlFileError(problems)
    return root
