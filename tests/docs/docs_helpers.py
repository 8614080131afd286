"""What the docs tests share: the pages, their code, and the reference generator.

The generator lives in docs/ (it is run as a script, not imported by agentqueue), so it is
loaded from its file.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"

_FENCE = re.compile(
    r"^(?P<indent> *)(?P<fence>```+|~~~+)(?P<info>[^\n`]*)\n"
    r"(?P<body>.*?)^(?P=indent)(?P=fence)\s*$",
    re.DOTALL | re.MULTILINE,
)
_SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")


@dataclass(frozen=True)
class CodeBlock:
    """One fenced code block of a page."""

    page: str
    language: str
    text: str


@functools.cache
def generator() -> ModuleType:
    """docs/gen_reference.py as a module."""
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pages() -> dict[str, str]:
    """Every hand-written Markdown page (README and docs/, not the generated reference)."""
    found = {"README.md": README.read_text(encoding="utf-8")}
    for path in sorted(DOCS.rglob("*.md")):
        name = path.relative_to(ROOT).as_posix()
        if not name.startswith("docs/reference/"):
            found[name] = path.read_text(encoding="utf-8")
    return found


def code_blocks(page: str, text: str) -> list[CodeBlock]:
    """The fenced code blocks of a page, with their language (`""` when none is given)."""
    return [
        CodeBlock(page, match["info"].strip().split(" ")[0].lower(), match["body"])
        for match in _FENCE.finditer(text)
    ]


def inline_code(text: str) -> list[str]:
    """The inline code spans of a page's prose (outside fenced blocks)."""
    prose = _FENCE.sub("", text)
    return _SPAN.findall(prose)
