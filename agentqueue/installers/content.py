"""The shipped content: `ai_rules/` and `skills/`, found with importlib.resources.

A wheel carries them inside the package (`agentqueue/_ai_rules`, `agentqueue/_skills`, see
pyproject's force-include); a source checkout reads the top-level folders.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

RULES_FILE = "agentqueue.md"


def _root(name: str) -> Traversable:
    packaged = resources.files("agentqueue") / f"_{name}"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / name


def rules_root() -> Traversable:
    """The folder of rule texts."""
    return _root("ai_rules")


def skills_root() -> Traversable:
    """The folder of Agent Skills (one folder per skill)."""
    return _root("skills")


def rules_text() -> str:
    """The always-on rules every client gets (Markdown, no frontmatter)."""
    return (rules_root() / RULES_FILE).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Skill:
    """One shipped skill: its folder name and its files (relative path → text)."""

    name: str
    files: dict[str, str]


def _files(folder: Traversable, prefix: str = "") -> dict[str, str]:
    found: dict[str, str] = {}
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        if entry.is_dir():
            found.update(_files(entry, f"{prefix}{entry.name}/"))
        elif entry.is_file():
            found[prefix + entry.name] = entry.read_text(encoding="utf-8")
    return found


def skills() -> list[Skill]:
    """Every shipped skill, by name."""
    root = skills_root()
    return [
        Skill(entry.name, _files(entry))
        for entry in sorted(root.iterdir(), key=lambda item: item.name)
        if entry.is_dir() and (entry / "SKILL.md").is_file()
    ]
