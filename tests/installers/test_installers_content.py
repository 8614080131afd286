"""Every shipped skill and rule file is valid (frontmatter, name rules, sizes), found through
importlib.resources, and every Python example in it runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from agentqueue.installers import content, rules
from agentqueue.installers.clients import CLIENTS

REPO = Path(__file__).resolve().parents[2]
NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
EXPECTED_SKILLS = {
    "agentqueue-usage",
    "agentqueue-handlers",
    "agentqueue-durable",
    "agentqueue-operations",
}


def frontmatter(text: str) -> dict[str, str]:
    """The `key: value` lines of a Markdown file's YAML frontmatter (flat, as ours are)."""
    assert text.startswith("---\n"), "no frontmatter"
    block = text[4 : text.index("\n---\n", 4)]
    fields = {}
    for line in block.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip().strip('"')
    return fields


def examples() -> list[tuple[str, str]]:
    """(where, code) of every ```python block shipped."""
    found = []
    files = [("ai_rules", content.rules_text())]
    files += [(skill.name, text) for skill in content.skills() for text in skill.files.values()]
    for where, text in files:
        for number, code in enumerate(re.findall(r"```python\n(.*?)```", text, re.S), 1):
            found.append((f"{where}#{number}", code))
    return found


def test_the_skills_are_found_through_importlib_resources() -> None:
    assert {skill.name for skill in content.skills()} == EXPECTED_SKILLS


@pytest.mark.parametrize("skill", content.skills(), ids=lambda skill: skill.name)
def test_each_skill_follows_the_agent_skills_format(skill: content.Skill) -> None:
    text = skill.files["SKILL.md"]
    fields = frontmatter(text)
    assert fields["name"] == skill.name
    assert NAME.match(skill.name)
    assert len(skill.name) <= 64
    assert 1 <= len(fields["description"]) <= 1024
    assert fields["description"].startswith("Use when")
    assert set(fields) <= {"name", "description", "license", "compatibility", "metadata"}
    assert len(text.splitlines()) < 500
    assert all(name.endswith(".md") for name in skill.files)  # our stamp is a Markdown comment


def test_the_rules_are_short_and_their_frontmatter_right() -> None:
    text = content.rules_text()
    assert not text.startswith("---")
    # Windsurf's global rules file holds 6,000 characters; Codex reads 32 KiB of AGENTS.md.
    assert len(text) < 6000
    assert len(text.splitlines()) < 500
    for client in CLIENTS:
        if client.rules is None or client.rules.frontmatter is None:
            continue
        fields = frontmatter(rules.owned_rule(client.rules.frontmatter))
        assert fields["description"]
        if client.name == "cursor":
            assert fields["alwaysApply"] == "true"
        if client.name == "vscode":
            assert fields["applyTo"] == "**"
        if client.name == "windsurf":
            assert fields["trigger"] == "always_on"


@pytest.mark.slow
@pytest.mark.parametrize(("where", "code"), examples(), ids=[where for where, _ in examples()])
def test_every_python_example_runs(where: str, code: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, f"{where}:\n{result.stderr}"
