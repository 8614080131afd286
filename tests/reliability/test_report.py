"""The figures table of docs/reliability.md, made from a figures file."""

from __future__ import annotations

import json
from pathlib import Path

from tests.reliability.report import latest_rows, main, table


def test_the_table_keeps_the_latest_row_per_scenario_and_store_in_scenario_order(
    tmp_path: Path,
) -> None:
    path = tmp_path / "results.jsonl"
    rows = [
        {"scenario": "10-redis-oom", "store": "redis", "at": 1, "evicted": 0},
        {"scenario": "1-kill", "store": "sqlite", "at": 1, "jobs": 5, "lost": 3},
        {"scenario": "1-kill", "store": "sqlite", "at": 2, "jobs": 9, "lost": 0, "took_s": 1.5},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    lines = table(latest_rows(path)).splitlines()
    assert lines[2] == "| 1-kill | sqlite | 9 | 0 | n/a | n/a | took 1.5 s |"
    assert lines[3] == "| 10-redis-oom | redis | n/a | n/a | n/a | n/a | evicted 0 |"
    assert len(lines) == 4
    assert main([str(tmp_path / "missing.jsonl")]) == 2
