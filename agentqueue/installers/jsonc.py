"""JSON with comments (JSONC), edited in place: one member set or removed, every other byte kept.

Editors' settings files (VS Code, Zed, opencode) carry comments and trailing commas; a
`json.load` / `json.dump` round trip would drop them, and a parser that gives up would tempt
an installer to start from `{}` and wipe the file. This module parses JSONC into nodes that
know their offsets, and `set_member` / `remove_member` splice text at those offsets. Removing
a member is the exact inverse of inserting it, so an uninstall restores the file byte for byte.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_STRING = re.compile(r'"(?:[^"\\\x00-\x1f]|\\.)*"')
_LITERALS = {"true": True, "false": False, "null": None}


class JsoncError(ValueError):
    """The text is not JSON (comments and trailing commas allowed); says where."""

    def __init__(self, message: str, text: str, offset: int) -> None:
        line = text.count("\n", 0, offset) + 1
        column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        super().__init__(f"{message} at line {line}, column {column}")


@dataclass
class Node:
    """A parsed value: its span in the text, its Python value, and (objects) its members."""

    start: int
    end: int
    value: Any
    members: list[Member] = field(default_factory=list)

    def get(self, key: str) -> Member | None:
        """The member named `key` (the last one, as JSON parsers do), if this is an object."""
        found = [member for member in self.members if member.key == key]
        return found[-1] if found else None

    @property
    def is_object(self) -> bool:
        """Whether the value is an object."""
        return isinstance(self.value, dict)


@dataclass
class Member:
    """`"key": value` inside an object; `start` is the key's opening quote."""

    key: str
    start: int
    value: Node


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, message: str) -> JsoncError:
        return JsoncError(message, self.text, self.pos)

    def skip(self) -> None:
        """Skip whitespace and comments."""
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char in " \t\r\n\ufeff":
                self.pos += 1
            elif text.startswith("//", self.pos):
                newline = text.find("\n", self.pos)
                self.pos = len(text) if newline < 0 else newline
            elif text.startswith("/*", self.pos):
                close = text.find("*/", self.pos + 2)
                if close < 0:
                    raise self.fail("unclosed /* comment")
                self.pos = close + 2
            else:
                return

    def value(self) -> Node:
        self.skip()
        if self.pos >= len(self.text):
            raise self.fail("unexpected end of text")
        char = self.text[self.pos]
        if char == "{":
            return self.container("}", self.member)
        if char == "[":
            return self.container("]", self.value)
        start = self.pos
        if char == '"':
            return Node(start, self.string_end(), json.loads(self.text[start : self.pos]))
        for word, literal in _LITERALS.items():
            if self.text.startswith(word, start):
                self.pos += len(word)
                return Node(start, self.pos, literal)
        number = _NUMBER.match(self.text, start)
        if number is None:
            raise self.fail(f"unexpected {char!r}")
        self.pos = number.end()
        return Node(start, self.pos, json.loads(number.group()))

    def string_end(self) -> int:
        match = _STRING.match(self.text, self.pos)
        if match is None:
            raise self.fail("bad string")
        self.pos = match.end()
        return self.pos

    def member(self) -> Member:
        if self.text[self.pos] != '"':
            raise self.fail("expected a quoted key")
        start = self.pos
        key = json.loads(self.text[start : self.string_end()])
        self.skip()
        if self.text[self.pos : self.pos + 1] != ":":
            raise self.fail("expected ':'")
        self.pos += 1
        return Member(key, start, self.value())

    def container(self, close: str, item: Any) -> Node:
        start = self.pos
        self.pos += 1
        items: list[Any] = []
        while True:
            self.skip()
            if self.text[self.pos : self.pos + 1] == close:
                self.pos += 1
                break
            items.append(item())
            self.skip()
            separator = self.text[self.pos : self.pos + 1]
            if separator == ",":
                self.pos += 1
            elif separator != close:
                raise self.fail(f"expected ',' or {close!r}")
        if close == "]":
            return Node(start, self.pos, [node.value for node in items])
        return Node(start, self.pos, {m.key: m.value.value for m in items}, members=items)


def parse(text: str) -> Node:
    """Parse JSONC text (comments, trailing commas) into a node tree.

    Raises:
        JsoncError: the text is not JSON; the message gives the line and column.
    """
    parser = _Parser(text)
    node = parser.value()
    parser.skip()
    if parser.pos != len(text):
        raise parser.fail("unexpected text after the value")
    return node


def loads(text: str) -> Any:
    """The Python value of JSONC text (see `parse`)."""
    return parse(text).value


# -- editing ------------------------------------------------------------------------------------
def _indent_unit(text: str, root: Node) -> str:
    """The file's indentation step, read from the root's first member (default two spaces)."""
    if root.members:
        start = root.members[0].start
        line_start = text.rfind("\n", 0, start) + 1
        lead = text[line_start:start]
        if lead and not lead.strip():
            return lead
    return "  "


def _format(value: Any, unit: str, depth: int) -> str:
    """`value` as indented JSON whose inner lines sit `depth` steps in (lists of plain values
    stay on one line, as people write `"args": ["mcp"]`)."""
    if isinstance(value, dict) and value:
        inner = unit * (depth + 1)
        items = [f"{inner}{json.dumps(k)}: {_format(v, unit, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + unit * depth + "}"
    if isinstance(value, list) and any(isinstance(item, dict | list) for item in value):
        inner = unit * (depth + 1)
        items = [f"{inner}{_format(item, unit, depth + 1)}" for item in value]
        return "[\n" + ",\n".join(items) + "\n" + unit * depth + "]"
    return json.dumps(value, ensure_ascii=False)


def _next_token(text: str, pos: int) -> int:
    """The offset of the next character that is not whitespace or a comment."""
    parser = _Parser(text)
    parser.pos = pos
    parser.skip()
    return parser.pos


def _line_end(text: str, pos: int) -> int | None:
    """The newline ending the line at `pos` when only blanks or a comment come before it."""
    newline = text.find("\n", pos)
    if newline < 0:
        return None
    rest = text[pos:newline].strip()
    if not rest or (rest.startswith("//")) or (rest.startswith("/*") and rest.endswith("*/")):
        return newline
    return None


def _insert(text: str, obj: Node, key: str, value: Any, unit: str, depth: int) -> str:
    """Insert `"key": value` as the last member of `obj` (which is `depth` steps in)."""
    inner = unit * (depth + 1)
    entry = f"{json.dumps(key)}: {_format(value, unit, depth + 1)}"
    if not obj.members:
        interior = text[obj.start + 1 : obj.end - 1]
        if not interior.strip():
            return f"{text[: obj.start + 1]}\n{inner}{entry}\n{unit * depth}{text[obj.end - 1 :]}"
        return f"{text[: obj.start + 1]}\n{inner}{entry}{text[obj.start + 1 :]}"
    last = obj.members[-1].value.end
    after = _next_token(text, last)
    trailing = text[after] == ","
    anchor = after + 1 if trailing else last
    newline = _line_end(text, anchor)
    if newline is None:
        comma = "" if trailing else ","
        tail = "," if trailing else ""
        return f"{text[:anchor]}{comma}\n{inner}{entry}{tail}{text[anchor:]}"
    if trailing:
        return f"{text[:newline]}\n{inner}{entry},{text[newline:]}"
    return f"{text[:last]},{text[last:newline]}\n{inner}{entry}{text[newline:]}"


def _remove(text: str, obj: Node, member: Member) -> str:
    """Remove `member` from `obj`: the inverse of `_insert` for the last member."""
    index = obj.members.index(member)
    after = _next_token(text, member.value.end)
    has_comma = text[after] == ","
    line_start = text.rfind("\n", 0, member.start)
    own_line = line_start >= 0 and not text[line_start + 1 : member.start].strip()
    if len(obj.members) == 1:
        interior = (
            text[obj.start + 1 : member.start]
            + text[(after + 1 if has_comma else member.value.end) : obj.end - 1]
        )
        if not interior.strip():
            return text[: obj.start + 1] + text[obj.end - 1 :]
        start = line_start if own_line else member.start
        return text[:start] + text[(after + 1 if has_comma else member.value.end) :]
    start = line_start if own_line else member.start
    last = index == len(obj.members) - 1
    if has_comma:
        # A member followed by its comma (a middle one, or a trailing-comma style last one).
        return text[:start] + text[after + 1 :]
    if last:
        previous = obj.members[index - 1].value.end
        comma = _next_token(text, previous)
        if own_line:
            return text[:comma] + text[comma + 1 : start] + text[member.value.end :]
        return text[:comma] + text[member.value.end :]
    return text[:start] + text[member.value.end :]


def _walk(text: str, path: tuple[str, ...]) -> tuple[Node, list[tuple[Node, Member]]]:
    """The root and the chain of (object, member) along `path` that exists."""
    root = parse(text)
    if not root.is_object:
        raise JsoncError("the top level is not an object", text, root.start)
    chain: list[tuple[Node, Member]] = []
    node = root
    for name in path:
        member = node.get(name)
        if member is None:
            break
        if not member.value.is_object:
            raise JsoncError(f"{name!r} is not an object", text, member.value.start)
        chain.append((node, member))
        node = member.value
    return root, chain


def get_member(text: str, path: tuple[str, ...], key: str) -> Any:
    """The value at `path` + `key`, or None when any part is missing."""
    _, chain = _walk(text, path)
    if len(chain) < len(path):
        return None
    node = chain[-1][1].value if chain else parse(text)
    member = node.get(key)
    return None if member is None else member.value.value


def set_member(text: str, path: tuple[str, ...], key: str, value: Any) -> str:
    """Return `text` with the object at `path` holding `key: value` (objects made as needed).

    An existing member's value is replaced in place; a new one goes last. Nothing else changes.

    Raises:
        JsoncError: the text does not parse, or a part of `path` is not an object.
    """
    if not text.strip():
        text = "{}\n"
    root, chain = _walk(text, path)
    unit = _indent_unit(text, root)
    node = chain[-1][1].value if chain else root
    missing = path[len(chain) :]
    if missing:
        nested: Any = {key: value}
        for name in reversed(missing[1:]):
            nested = {name: nested}
        return _insert(text, node, missing[0], nested, unit, len(chain))
    member = node.get(key)
    if member is None:
        return _insert(text, node, key, value, unit, len(path))
    replaced = _format(value, unit, len(path) + 1)
    return text[: member.value.start] + replaced + text[member.value.end :]


def remove_member(text: str, path: tuple[str, ...], key: str) -> str:
    """Return `text` without `key` at `path`; objects on `path` left empty go too.

    Raises:
        JsoncError: the text does not parse.
    """
    root, chain = _walk(text, path)
    if len(chain) < len(path):
        return text
    node = chain[-1][1].value if chain else root
    member = node.get(key)
    if member is None:
        return text
    text = _remove(text, node, member)
    for depth in range(len(path), 0, -1):
        _, chain = _walk(text, path[:depth])
        parent, container = chain[-1]
        if container.value.members or text[container.value.start + 1 : container.value.end - 1]:
            break
        text = _remove(text, parent, container)
    return text


def is_empty_object(text: str) -> bool:
    """Whether the text is `{}` (blanks around it allowed, no comments)."""
    return text.strip() == "{}"
