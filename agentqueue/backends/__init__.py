"""Stores, chosen by URL scheme: `open_backend(url)`."""

from __future__ import annotations

from agentqueue.backends.base import Backend, Capabilities
from agentqueue.errors import ConfigError

__all__ = ["Backend", "Capabilities", "backend_from_url", "scheme_of"]


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
    raise ConfigError(f"the {kind} store is not available in this version of agentqueue")
