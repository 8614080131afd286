"""Fresh, isolated stores for bench/doors.py: a SQLite file, a PostgreSQL schema, a Redis prefix.

Each is removed afterwards. PostgreSQL schemas live in their own database (`bench_doors`,
created when missing) so nothing is left in anyone else's; Redis keys use a fresh prefix.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis
from benchkit import PG_DSN, REDIS_URL, STORES

PG_DATABASE = "bench_doors"


def _fresh(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def _pg_dsn(database: str) -> str:
    parts = urlsplit(PG_DSN)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def _pg_create_database() -> None:
    conn = await asyncpg.connect(PG_DSN, timeout=10)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", PG_DATABASE):
            await conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
    finally:
        await conn.close()


async def _pg_drop_schema(schema: str) -> None:
    conn = await asyncpg.connect(_pg_dsn(PG_DATABASE), timeout=10)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def _redis_drop_prefix(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        # Every key of a prefix starts with its hash tag.
        keys = list(client.scan_iter(match=f"{{{prefix}}}*", count=1000))
        for start in range(0, len(keys), 500):
            client.unlink(*keys[start : start + 500])
    finally:
        client.close()


@contextmanager
def fresh_store(kind: str) -> Iterator[str]:
    """Yield the URL of a new, empty store of `kind`; delete it afterwards."""
    if kind == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="bench-doors-"))
        try:
            yield f"sqlite:///{folder / 'agentqueue.db'}"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    elif kind == "postgres":
        asyncio.run(_pg_create_database())
        schema = _fresh("doors_")
        try:
            yield f"{_pg_dsn(PG_DATABASE)}?schema={schema}"
        finally:
            asyncio.run(_pg_drop_schema(schema))
    elif kind == "redis":
        prefix = _fresh("doors")
        try:
            yield f"{REDIS_URL}?prefix={prefix}"
        finally:
            _redis_drop_prefix(prefix)
    else:
        raise ValueError(f"unknown store {kind!r}; one of {', '.join(STORES)}")
