"""bench/doors.py runs end to end with tiny sizes and writes the tables and JSON lines it
promises (its figures are measured by running it, not here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_doors_benchmark_prints_its_tables_and_writes_one_row_per_measurement(
    tmp_path: Path,
) -> None:
    command = [
        *(sys.executable, str(REPO / "bench" / "doors.py"), "--store", "sqlite"),
        # A second and a half: under a loaded machine the first answers can take half a second.
        *("--seconds", "1.5", "--warmup", "0.5", "--clients", "2"),
        *("--mcp-calls", "3", "--mcp-warmup", "1", "--out", str(tmp_path)),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "| store | app | requests/s |" in done.stdout
    assert "| store | agentqueue / bare requests/s |" in done.stdout
    assert "| store | MCP transport |" in done.stdout
    [results] = tmp_path.glob("*-doors.jsonl")
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert {(row["door"], row.get("app")) for row in rows} == {
        ("rest", "agentqueue"),
        ("rest", "bare"),
        ("mcp-http", "agentqueue"),
        ("mcp-stdio", "agentqueue"),
        ("ratio", None),
    }
    for row in rows:
        assert row["store"] == "sqlite"
        assert {"run", "commit", "loadavg_start", "loadavg_end"} <= row.keys()
        if row["door"] == "rest":
            assert row["requests"] > 0
            assert row["errors"] == 0
            assert row["p50_ms"] <= row["p99_ms"]
            assert {"cores_server", "cores_client", "server_cpu_ms"} <= row.keys()
        elif row["door"].startswith("mcp"):
            assert row["calls"] == 3
            assert 0 < row["p50_ms"] <= row["p99_ms"]
        else:
            assert row["ratio"] > 0
