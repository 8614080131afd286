"""Draw docs/benchmarks.svg: agentqueue against the fastest peer of each store, from harness runs.

    .venv/bin/python bench/plot_ratios.py bench/results/<stamp>-agentqueue.jsonl [...] \
        --out docs/benchmarks.svg

For each store and each figure of the harness (enqueue single, enqueue bulk, process, latency
p50 and p99) it takes the median over the given runs, for agentqueue and for the fastest peer on
that figure (raw limits are not peers), and draws the ratio as a bar: higher is better for
agentqueue (rates: ours / theirs; latencies: theirs / ours), on a log scale with a line at 1x.
Plain SVG, no plotting library.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

METRICS = (
    ("enqueue_single_jps", "enqueue single", True),
    ("enqueue_bulk_jps", "enqueue bulk", True),
    ("process_jps", "process", True),
    ("lat_p50_ms", "latency p50", False),
    ("lat_p99_ms", "latency p99", False),
)
STORES = (("sqlite", "SQLite"), ("postgres", "PostgreSQL"), ("redis", "Redis"))
OURS = "agentqueue"


def medians(paths: list[Path]) -> dict[tuple[str, str], dict[str, float]]:
    """(store, peer) -> metric -> median over the runs (metrics a peer lacks are left out)."""
    values: dict[tuple[str, str], dict[str, list[float]]] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            row: dict[str, Any] = json.loads(line)
            if "peer" not in row or "backend" not in row:
                continue
            found = values.setdefault((row["backend"], row["peer"]), {})
            for metric, _, _ in METRICS:
                value = row.get(metric)
                if isinstance(value, (int, float)) and value > 0:
                    found.setdefault(metric, []).append(float(value))
    return {key: {m: statistics.median(v) for m, v in got.items()} for key, got in values.items()}


def ratios(
    table: dict[tuple[str, str], dict[str, float]],
) -> dict[str, list[tuple[str, float, str]]]:
    """store -> [(figure, ratio, fastest peer)]: above 1 agentqueue is ahead."""
    result: dict[str, list[tuple[str, float, str]]] = {}
    for store, _ in STORES:
        ours = next((m for (s, p), m in table.items() if s == store and p.startswith(OURS)), None)
        peers = {
            p: m
            for (s, p), m in table.items()
            if s == store and not p.startswith(OURS) and not p.startswith("raw")
        }
        if ours is None or not peers:
            continue
        rows: list[tuple[str, float, str]] = []
        for metric, label, higher_better in METRICS:
            theirs = {p: m[metric] for p, m in peers.items() if metric in m}
            if metric not in ours or not theirs:
                continue
            pick = max if higher_better else min
            peer = pick(theirs, key=lambda name: theirs[name])
            ratio = ours[metric] / theirs[peer] if higher_better else theirs[peer] / ours[metric]
            rows.append((label, ratio, peer.split(" ")[0]))
        result[store] = rows
    return result


def svg(data: dict[str, list[tuple[str, float, str]]], title: str) -> str:
    """The chart: one panel per store, one bar per figure, log scale from 0.1x to 10x."""
    width, left, bar_h, gap = 760, 150, 18, 8
    low, high = math.log10(0.1), math.log10(10)
    plot_w = width - left - 40

    def x(ratio: float) -> float:
        clamped = min(max(math.log10(ratio), low), high)
        return left + (clamped - low) / (high - low) * plot_w

    parts = [f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">{title}</text>']
    y = 40
    for store, name in STORES:
        rows = data.get(store)
        if not rows:
            continue
        parts.append(f'<text x="8" y="{y + 14}" font-size="13" font-weight="bold">{name}</text>')
        top = y + 22
        for index, (label, ratio, peer) in enumerate(rows):
            bar_y = top + index * (bar_h + gap)
            start, end = sorted((x(1.0), x(ratio)))
            color = "#2e7d32" if ratio >= 1 else "#c62828"
            parts.append(
                f'<text x="{left - 6}" y="{bar_y + 13}" text-anchor="end" font-size="11">'
                f"{label}</text>"
            )
            parts.append(
                f'<rect x="{start:.1f}" y="{bar_y}" width="{max(end - start, 1):.1f}" '
                f'height="{bar_h}" fill="{color}"/>'
            )
            parts.append(
                f'<text x="{max(end, x(1.0)) + 4:.1f}" y="{bar_y + 13}" font-size="11">'
                f"{ratio:.2f}x vs {peer}</text>"
            )
        y = top + len(rows) * (bar_h + gap) + 10
    for tick in (0.1, 0.25, 0.5, 1, 2, 4, 10):
        tx = x(tick)
        dash = "" if tick == 1 else ' stroke-dasharray="2,3"'
        parts.append(f'<line x1="{tx:.1f}" y1="36" x2="{tx:.1f}" y2="{y}" stroke="#666"{dash}/>')
        parts.append(
            f'<text x="{tx:.1f}" y="{y + 14}" text-anchor="middle" font-size="10">{tick:g}x</text>'
        )
    height = y + 24
    body = "\n  ".join(parts)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif">\n'
        f'  <rect width="100%" height="100%" fill="white"/>\n  {body}\n</svg>\n'
    )


def main() -> None:
    """Read the runs, write the SVG, print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="harness .jsonl files (one per run)")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.svg"))
    parser.add_argument("--title", default="agentqueue vs the fastest peer (higher is better)")
    args = parser.parse_args()
    data = ratios(medians(args.runs))
    args.out.write_text(svg(data, args.title))
    for store, rows in data.items():
        print(store, ", ".join(f"{label} {ratio:.2f}x ({peer})" for label, ratio, peer in rows))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
