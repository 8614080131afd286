"""The SQL a store really runs for a call, and its query plans on the store's data.

`capture` records every data statement (with its parameters) that the store's engines send
while a block runs (SQLAlchemy `before_cursor_execute`); `explain` asks the database for the
plan of one of them: PostgreSQL `EXPLAIN (ANALYZE, BUFFERS)` inside a transaction that is rolled
back (the statement runs, nothing stays), SQLite `EXPLAIN QUERY PLAN` (nothing runs).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from agentqueue import Queue

DATA_STATEMENTS = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")


def engines(queue: Queue) -> list[sa.Engine]:
    """The sync engines the SQL store runs its statements on (none on Redis)."""
    backend: Any = queue.backend
    found: dict[int, sa.Engine] = {}
    for name in ("engine", "_claim_engine"):  # PostgreSQL claims on their own engine
        engine = getattr(backend, name, None)
        if engine is not None:
            engine = getattr(engine, "sync_engine", engine)
            found[id(engine)] = engine
    return list(found.values())


def first_params(statement: str, params: Any, many: bool) -> tuple[Any, ...]:
    """The parameters of one execution of `statement`: with executemany (or a multi-row
    VALUES batch) the parameter sets are flattened until the placeholders are filled."""
    if not many:
        return tuple(params or ())
    wanted = max(statement.count("?"), len(set(re.findall(r"\$\d+", statement))))
    rows = params if params and isinstance(params[0], list | tuple) else [params]
    return tuple(value for row in rows for value in row)[:wanted]


@contextmanager
def capture(queue: Queue) -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
    """Yield a list that fills with (statement, parameters) of the store's data statements,
    each distinct statement once."""
    seen: list[tuple[str, tuple[Any, ...]]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool):
        head = statement.lstrip().split(None, 1)[0].upper()
        if head in DATA_STATEMENTS and all(statement != known for known, _ in seen):
            seen.append((statement, first_params(statement, params, many)))

    targets = engines(queue)
    for engine in targets:
        sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in targets:
            sa.event.remove(engine, "before_cursor_execute", record)


@contextmanager
def explain_in_place(queue: Queue) -> Iterator[list[tuple[str, str]]]:
    """PostgreSQL: run the block's data statements under `EXPLAIN (ANALYZE, BUFFERS)` and yield
    a list that fills with (statement, plan). They still run and commit as they would; the store
    reads an empty result. Only for calls whose result may be empty (`finish`: no lease lost):
    a statement explained after it ran would find its rows already changed."""
    plans: list[tuple[str, str]] = []

    def before(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool):
        head = statement.lstrip().split(None, 1)[0].upper()
        if head in DATA_STATEMENTS and not many:
            statement = "EXPLAIN (ANALYZE, BUFFERS) " + statement
        return statement, params

    def after(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool):
        if statement.startswith("EXPLAIN (ANALYZE, BUFFERS) "):
            plan = "\n".join(row[0] for row in cursor.fetchall())
            plans.append((statement.removeprefix("EXPLAIN (ANALYZE, BUFFERS) "), plan))

    targets = engines(queue)
    for engine in targets:
        sa.event.listen(engine, "before_cursor_execute", before, retval=True)
        sa.event.listen(engine, "after_cursor_execute", after)
    try:
        yield plans
    finally:
        for engine in targets:
            sa.event.remove(engine, "before_cursor_execute", before)
            sa.event.remove(engine, "after_cursor_execute", after)


def _sqlite_plan(path: Path, statement: str, params: tuple[Any, ...]) -> str:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("EXPLAIN QUERY PLAN " + statement, params).fetchall()
    finally:
        conn.close()
    parents = {row[0]: row[1] for row in rows}

    def depth(parent: int) -> int:
        return 0 if parent not in parents else 1 + depth(parents[parent])

    return "\n".join("  " * depth(row[1]) + row[3] for row in rows) or "(no plan: plain INSERT)"


async def explain(queue: Queue, statement: str, params: tuple[Any, ...]) -> str:
    """The plan of one captured statement on the store's data (nothing is left changed)."""
    backend: Any = queue.backend
    path = getattr(getattr(backend, "options", None), "path", None)
    if path is not None:  # SQLite
        return _sqlite_plan(Path(path), statement, params)
    async with backend.engine.connect() as conn:
        transaction = await conn.begin()
        try:
            result = await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
            return "\n".join(row[0] for row in result)
        finally:
            await transaction.rollback()


def shorten(statement: str, limit: int = 600) -> str:
    """One line of `statement`, cut at `limit` characters."""
    line = " ".join(statement.split())
    return line if len(line) <= limit else line[:limit] + " …"


async def section(
    queue: Queue,
    title: str,
    calls: dict[str, list[tuple[str, tuple[Any, ...]]]],
    explained: dict[str, list[tuple[str, str]]] | None = None,
) -> str:
    """Markdown: each captured statement of each call with its plan (explained now), then the
    statements `explain_in_place` explained as they ran."""
    found = {
        call: [(statement, await explain(queue, statement, params)) for statement, params in rows]
        for call, rows in calls.items()
    } | (explained or {})
    out = [f"### {title}\n"]
    for call, rows in found.items():
        for statement, plan in rows:
            if "aq_jobs" not in statement:
                continue  # flow-limit and registry lookups on empty tables
            out.append(f"**{call}**: `{shorten(statement)}`\n\n```\n{plan}\n```\n")
    return "\n".join(out)
