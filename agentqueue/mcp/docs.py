"""The project's documentation as MCP resources (`agentqueue://docs/<page>`) and a search.

Pages are the Markdown files of `docs/` and the README. A wheel carries them inside the
package (`agentqueue/_docs`, see pyproject's force-include); a source checkout reads `docs/`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from agentqueue.mcp.replies import DocHit, DocHits

URI_PREFIX = "agentqueue://docs/"
_WORD = re.compile(r"[a-z0-9_]+")


@dataclass(frozen=True)
class Page:
    """One docs page."""

    name: str
    """Its path under docs without `.md` (`guides/dependencies`), or `README`."""
    title: str
    text: str

    @property
    def uri(self) -> str:
        """Its resource URI."""
        return URI_PREFIX + self.name


def docs_root() -> Path | None:
    """Where the pages are: inside the package (a wheel), else the checkout's `docs/`."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "_docs", package.parent / "docs"):
        if candidate.is_dir():
            return candidate
    return None


@functools.cache
def pages() -> tuple[Page, ...]:
    """Every page, by name."""
    root = docs_root()
    if root is None:
        return ()
    found: list[Page] = []
    files = sorted(root.rglob("*.md"))
    readme = root.parent / "README.md" if (root.parent / "README.md").is_file() else None
    if readme is None and (root / "README.md").is_file():
        readme = root / "README.md"
    for path in files:
        if path == readme:
            continue
        name = path.relative_to(root).with_suffix("").as_posix()
        found.append(_page(name, path.read_text(encoding="utf-8")))
    if readme is not None:
        found.append(_page("README", readme.read_text(encoding="utf-8")))
    return tuple(sorted(found, key=lambda p: p.name))


def _page(name: str, text: str) -> Page:
    heading = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), name)
    return Page(name, heading, text)


def find(name: str) -> Page | None:
    """The page of that name, if any."""
    return next((page for page in pages() if page.name == name), None)


def search(query: str, limit: int = 5) -> DocHits:
    """Pages ranked by how often the query's words occur (title words count five times)."""
    words = [w for w in _WORD.findall(query.lower()) if len(w) > 1]
    hits: list[DocHit] = []
    for page in pages():
        body = page.text.lower()
        title = page.title.lower()
        score = sum(body.count(w) + 5 * title.count(w) for w in words)
        if score and all(w in body or w in title for w in words[:3]):
            hits.append(
                DocHit(
                    uri=page.uri, title=page.title, score=score, excerpt=_excerpt(page.text, words)
                )
            )
    hits.sort(key=lambda hit: (-hit.score, hit.uri))
    return DocHits(hits=hits[:limit])


def _excerpt(text: str, words: list[str], width: int = 300) -> str:
    lower = text.lower()
    positions = [lower.find(w) for w in words if lower.find(w) >= 0]
    start = max(min(positions) - width // 3, 0) if positions else 0
    snippet = " ".join(text[start : start + width].split())
    return ("…" if start else "") + snippet + "…"
