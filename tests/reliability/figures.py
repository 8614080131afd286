"""The figures file of the reliability suite: every scenario records what it measured.

Each call of `record` appends one JSON line ``{"scenario", "store", "at", ...figures}`` to the
file named by ``AGENTQUEUE_RELIABILITY_RESULTS`` (default ``.reliability/results.jsonl`` under the
repository), so a CI run leaves one file with every scenario's jobs, lost, duplicates, stuck and
recovery times; ``docs/reliability.md`` quotes the latest figures from it. Appends of one short
line are atomic on POSIX, so the suite's parallel processes (pytest-xdist) share the file safely.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def results_path() -> Path:
    """Where the figures go (the env override, or `.reliability/results.jsonl` in the repo)."""
    configured = os.environ.get("AGENTQUEUE_RELIABILITY_RESULTS")
    return Path(configured) if configured else REPO / ".reliability" / "results.jsonl"


def store_of(url: str) -> str:
    """`sqlite`, `postgres`, `redis` or `memory`: the store column of a store URL."""
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    return "postgres" if scheme.startswith("postgres") else scheme


def record(scenario: str, store: str, **figures: object) -> dict[str, object]:
    """Append one scenario's figures (JSON-serialisable values), print them and return the row.

    Printing puts the figures in the test's captured output too (`pytest -rA` shows them).
    """
    row: dict[str, object] = {"scenario": scenario, "store": store, "at": time.time(), **figures}
    line = json.dumps(row, sort_keys=True, default=str)
    path = results_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(line + "\n")
    print(f"[reliability] {line}")
    return row
