"""Print the reliability figures as the Markdown table of docs/reliability.md.

    .venv/bin/python -m tests.reliability.report [results.jsonl]

Reads the figures file (`figures.results_path()` by default) and prints, per scenario and
store, the latest row: jobs, lost, completed twice, stuck, and the other figures it recorded
(names ending in `_s` are seconds).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.reliability.figures import results_path

COUNTS = ("jobs", "lost", "completed_twice", "stuck")


def latest_rows(path: Path) -> dict[tuple[str, str], dict[str, object]]:
    """The last row recorded for each (scenario, store)."""
    rows: dict[tuple[str, str], dict[str, object]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            rows[(str(row["scenario"]), str(row["store"]))] = row
    return rows


def cell(row: dict[str, object], name: str) -> str:
    """A count, or a dash when the scenario does not record it."""
    value = row.get(name)
    return "n/a" if value is None else str(value)


SKIP = {"scenario", "store", "at", *COUNTS}


def figures_of(row: dict[str, object]) -> str:
    """The row's other figures: timings (`*_s`) as `name 1.23 s`, the rest as `name value`."""
    parts = []
    for name, value in sorted(row.items()):
        if name in SKIP or isinstance(value, dict | list):
            continue
        if name.endswith("_s") and isinstance(value, int | float):
            parts.append(f"{name[:-2].replace('_', ' ')} {value} s")
        else:
            parts.append(f"{name.replace('_', ' ')} {value}")
    return "; ".join(parts) or "n/a"


def table(rows: dict[tuple[str, str], dict[str, object]]) -> str:
    """The Markdown table, scenarios in their numbered order."""

    def order(key: tuple[str, str]) -> tuple[int, str, str]:
        number = key[0].split("-", 1)[0]
        return (int(number) if number.isdigit() else 99, key[0], key[1])

    lines = [
        "| scenario | store | jobs | lost | completed twice | stuck | figures |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for key in sorted(rows, key=order):
        row = rows[key]
        counts = " | ".join(cell(row, name) for name in COUNTS)
        lines.append(f"| {key[0]} | {key[1]} | {counts} | {figures_of(row)} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Print the table of the given figures file (or the default one)."""
    path = Path(argv[0]) if argv else results_path()
    if not path.exists():
        print(f"no figures at {path}: run the reliability tests first", file=sys.stderr)
        return 2
    print(table(latest_rows(path)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
