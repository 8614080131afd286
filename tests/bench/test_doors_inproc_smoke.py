"""bench/doors_inproc.py runs end to end with tiny sizes: every variant answers, on a fresh
store, and the table and JSON lines come out (its figures are measured by running it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_the_in_process_breakdown_measures_every_variant(tmp_path: Path) -> None:
    command = [
        *(sys.executable, str(REPO / "bench" / "doors_inproc.py"), "--store", "sqlite"),
        *("--requests", "20", "--clients", "2", "--reps", "1"),
    ]
    env = {**os.environ, "AQB_RESULTS_DIR": str(tmp_path)}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "| store | variant | CPU ms/request (median) |" in done.stdout
    [results] = tmp_path.glob("*-doors-inproc.jsonl")
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [row["variant"] for row in rows] == ["full", "api-only", "bare"]
    for row in rows:
        assert row["store"] == "sqlite"
        assert row["cpu_ms"] > 0
        assert len(row["cpu_ms_runs"]) == 1
