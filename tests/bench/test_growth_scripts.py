"""Smoke tests of the issue-10 benchmarks (bench/growth.py, scale_out.py, memory.py,
drain_rate.py).

Each script runs with tiny sizes on SQLite (no server needed), writing into a temporary
results folder; the tests check the shape of what it prints and writes, never the speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"

pytestmark = pytest.mark.slow


def run_script(script: str, tmp_path: Path, *args: str) -> str:
    """Run a bench script with its results and SQLite files in `tmp_path`; return its stdout."""
    env = os.environ | {"AQB_RESULTS_DIR": str(tmp_path), "AQB_SQLITE_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def run(script: str, tmp_path: Path, *args: str) -> tuple[str, list[dict]]:
    """Run a bench script; return its stdout and the JSON lines it wrote."""
    out = run_script(script, tmp_path, *args)
    [results] = tmp_path.glob("*.jsonl")
    return out, [json.loads(line) for line in results.read_text().splitlines()]


def test_growth_measures_both_windows_and_writes_plans(tmp_path: Path) -> None:
    args = ("--store", "sqlite", "--big", "300", "--small", "100", "--calls", "4", "--rounds", "2")
    out, rows = run("growth.py", tmp_path, *args)
    states = [(row["state"], row["pending"], row["completed"]) for row in rows]
    assert states == [
        ("small", 100, 0),
        ("big pending", 300, 0),
        ("small", 100, 0),
        ("big completed", 100, 200),
    ]
    for row in rows:
        for metric in ("enqueue", "claim1", "claim10"):
            assert row[metric]["p50"] > 0
    assert "| sqlite | big completed / small |" in out
    [plans] = tmp_path.glob("*-growth-plans.md")
    text = plans.read_text()
    assert "aq_jobs_claim_any" in text  # the claim walks the claim index
    assert "### sqlite, big completed" in text


def test_scale_out_reports_a_rate_per_worker_count(tmp_path: Path) -> None:
    out, rows = run(
        "scale_out.py", tmp_path, "--store", "sqlite", "--jobs", "200", "--workers", "1,2"
    )
    assert [row["workers"] for row in rows] == [1, 2]
    for row in rows:
        assert row["left"] == 0
        assert sum(row["per_worker"]) == 200
        assert row["rate"] > 0
    assert "| sqlite | 2 |" in out


def test_memory_samples_rss_at_each_mark(tmp_path: Path) -> None:
    out, rows = run("memory.py", tmp_path, "--store", "sqlite", "--jobs", "400", "--idle", "0.3")
    [row] = rows
    labels = [sample["at"] for sample in row["samples"]]
    assert labels[0] == "idle"
    assert labels[-1] == "idle after"
    assert "400 jobs" in labels
    assert "200 jobs" in labels
    assert all(sample["rss_kib"] > 10_000 for sample in row["samples"])
    assert row["counts"]["complete"] == 400
    assert "half -> end" in out


def test_drain_rate_reports_the_rate_cpu_and_store_calls(tmp_path: Path) -> None:
    out = run_script("drain_rate.py", tmp_path, "--store", "sqlite", "--jobs", "300")
    [row] = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert row["store"] == "sqlite"
    assert row["counts"] == {"complete": 300}
    assert row["jobs_per_s"] > 0
    assert row["cpu_us_per_job"] > 0
    assert sum(row["store_calls"].values()) > 0
