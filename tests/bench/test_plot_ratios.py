"""bench/plot_ratios.py draws the committed harness runs into a well-formed SVG."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUNS = [
    REPO / "bench" / "results" / f"{stamp}-agentqueue.jsonl"
    for stamp in ("20261203T145531Z", "20261203T152526Z", "20261203T154147Z")
]


def test_the_chart_shows_each_store_and_the_ratios_it_prints(tmp_path: Path) -> None:
    out = tmp_path / "chart.svg"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "plot_ratios.py"),
            *map(str, RUNS),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    root = ElementTree.fromstring(out.read_text())
    texts = [node.text or "" for node in root.iter("{http://www.w3.org/2000/svg}text")]
    for store in ("SQLite", "PostgreSQL", "Redis"):
        assert store in texts
    # PostgreSQL's process ratio, as printed, is on the chart: median 5,424 / 4,773 jobs/s.
    assert "process 1.14x (pgqueuer)" in done.stdout
    assert "1.14x vs pgqueuer" in texts
    bars = list(root.iter("{http://www.w3.org/2000/svg}rect"))
    assert len(bars) == 1 + 13  # the background, and one bar per figure a peer also has
