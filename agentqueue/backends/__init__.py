"""Stores, chosen by URL scheme: `open_backend(url)`."""

from __future__ import annotations

import importlib.util
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from agentqueue.backends.base import Backend, Capabilities
from agentqueue.errors import ConfigError, MissingExtra

__all__ = ["Backend", "Capabilities", "backend_for", "backend_from_url", "describe", "scheme_of"]


def scheme_of(url: str) -> str:
    """Return the store kind a URL names: sqlite, postgres, redis or memory."""
    head = url.split("://", 1)[0].lower() if "://" in url else ""
    if head in ("sqlite", "sqlite+aiosqlite"):
        return "sqlite"
    if head == "memory":
        return "memory"
    if head in ("postgres", "postgresql", "postgresql+asyncpg"):
        return "postgres"
    if head in ("redis", "rediss"):
        return "redis"
    raise ConfigError(
        f"unsupported store URL {url!r}: use sqlite:///path.db, memory://, "
        "postgresql://user@host/db or redis://host:6379/0"
    )


def backend_from_url(url: str) -> Backend:
    """Build (not yet open) the store a URL names.

    Raises:
        ConfigError: the URL is malformed or names an unknown store.
        MissingExtra: the store's driver is not installed.
    """
    kind = scheme_of(url)
    if kind in ("sqlite", "memory"):
        from agentqueue.backends.sql.sqlite import SqliteBackend

        return SqliteBackend.from_url(url)
    if kind == "postgres":
        from agentqueue.backends.sql.postgres import PostgresBackend

        return PostgresBackend.from_url(url)
    if kind == "redis":
        if importlib.util.find_spec("redis") is None:
            raise MissingExtra(
                "the Redis store needs the redis package: pip install 'agentqueue[redis]'"
            )
        from agentqueue.backends.redis import RedisBackend

        return RedisBackend.from_url(url)
    raise ConfigError(f"the {kind} store is not available in this version of agentqueue")


def backend_for(target: Any) -> Backend:
    """Build the store for a URL, or around a connection object the caller owns.

    Accepted objects: a SQLAlchemy `AsyncEngine` (PostgreSQL through asyncpg, or SQLite — the
    store opens its own connections to that file) and a redis-py asyncio client. What the
    caller passed in is never closed by the store.

    Raises:
        ConfigError: an unsupported object or URL.
    """
    if isinstance(target, str):
        return backend_from_url(target)
    from sqlalchemy.ext.asyncio import AsyncEngine

    if isinstance(target, AsyncEngine):
        dialect = target.dialect.name
        if dialect == "postgresql":
            from agentqueue.backends.sql.postgres import PostgresBackend

            return PostgresBackend.from_engine(target)
        if dialect == "sqlite" and target.url.database not in (None, "", ":memory:"):
            return backend_from_url(f"sqlite:///{target.url.database}")
        raise ConfigError(f"an AsyncEngine for {dialect} {target.url} cannot hold a queue")
    if type(target).__module__.startswith("redis"):
        from agentqueue.backends.redis import RedisBackend

        return RedisBackend.from_client(target)
    raise ConfigError(
        f"cannot build a store from {type(target).__name__}: pass a URL, a SQLAlchemy "
        "AsyncEngine or a redis-py asyncio client"
    )


def describe(target: Any) -> str:
    """Return a printable name of a store target, without passwords."""
    if isinstance(target, str):
        return redact(target)
    url = getattr(target, "url", None)
    if url is not None and hasattr(url, "render_as_string"):
        return url.render_as_string(hide_password=True)
    return f"<{type(target).__module__}.{type(target).__name__}>"


def redact(url: str) -> str:
    """`url` with its password (if any) replaced by `***`: safe for logs and answers."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
