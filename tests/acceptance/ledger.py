"""The ledger: a SQLite file, separate from the queue under test, where handlers log each run.

Rows are (job_id, attempt, pid, event, at) with no unique constraint, so a job run twice shows
up twice. Worker processes append through `record`; tests read through `rows`.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    event TEXT NOT NULL,
    at REAL NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class Row:
    """One ledger entry; `at` is wall-clock seconds (time.time())."""

    job_id: int
    attempt: int
    pid: int
    event: str
    at: float


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    return conn


def create(path: str) -> None:
    """Create an empty ledger file."""
    with closing(_connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(SCHEMA)


def record(path: str, job_id: int, attempt: int, event: str) -> None:
    """Append one row for this process (safe from any thread or process)."""
    with closing(_connect(path)) as conn:
        conn.execute(
            "INSERT INTO runs (job_id, attempt, pid, event, at) VALUES (?, ?, ?, ?, ?)",
            (job_id, attempt, os.getpid(), event, time.time()),
        )


def rows(path: str, event: str | None = None) -> list[Row]:
    """Return the ledger's rows in the order they were written, optionally of one event."""
    query = "SELECT job_id, attempt, pid, event, at FROM runs"
    params: tuple[str, ...] = ()
    if event is not None:
        query += " WHERE event = ?"
        params = (event,)
    with closing(_connect(path)) as conn:
        return [Row(*found) for found in conn.execute(query + " ORDER BY id", params)]
