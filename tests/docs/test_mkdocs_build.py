"""The docs build as a static site with `mkdocs build --strict` (a `once` test: ~5 s)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.docs_helpers import ROOT


@pytest.mark.once
def test_mkdocs_builds_the_site_strictly(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (site / "index.html").is_file()
    assert (site / "reference" / "cli" / "index.html").is_file()
    concepts = (site / "concepts" / "index.html").read_text(encoding="utf-8")
    assert 'class="mermaid"' in concepts, "the state diagram is not rendered as mermaid"
