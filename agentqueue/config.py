"""Settings read from the environment (`AGENTQUEUE_*`), with the defaults in one place."""

from __future__ import annotations

import os

from agentqueue.errors import ConfigError

DEFAULT_URL = "sqlite:///./agentqueue.db"
"""The store used when neither an argument nor AGENTQUEUE_URL names one."""

DEFAULT_QUEUE = "default"
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_RETRY_DELAY = 10.0
DEFAULT_RETRY_BACKOFF = True
DEFAULT_RETRY_DELAY_MAX = 3600.0

DEFAULT_CONCURRENCY = 10
DEFAULT_LEASE_SECONDS = 30.0
DEFAULT_SHUTDOWN_TIMEOUT = 30.0

DEFAULT_MAINTENANCE_INTERVAL = 1.0
"""Seconds between supervisor passes (rescue, resume due waits, expire tokens)."""
WORKER_BEAT_SECONDS = 5.0
"""Seconds between a worker's presence beats in the store."""
WORKER_ALIVE_SECONDS = 20.0
"""A worker is alive while its last beat is younger than this (four beats missed: gone)."""
WORKER_FORGET_SECONDS = 86_400.0
"""Workers not seen for this long (crashed ones) are deleted by the supervisor."""
AUDIT_RETENTION_DAYS = 90.0
"""Days audit records are kept (AGENTQUEUE_KEEP_AUDIT_DAYS; 0 keeps them forever)."""

DEFAULT_RETENTION_DAYS = 7.0
"""Days completed/failed/cancelled jobs and events are kept (0 keeps them forever)."""


def store_url(url: str | None = None) -> str:
    """Return `url`, else AGENTQUEUE_URL, else the embedded SQLite default."""
    return url or os.environ.get("AGENTQUEUE_URL") or DEFAULT_URL


def env_float(name: str, default: float, *, allow_zero: bool = False) -> float:
    """Read a positive number (or 0, with `allow_zero`) from the environment.

    Raises:
        ConfigError: the variable is set but is not such a number.
    """
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None
    if value < 0 or (value == 0 and not allow_zero):
        wanted = "0 or more" if allow_zero else "positive"
        raise ConfigError(f"{name} must be {wanted}, not {raw!r}")
    return value


def env_int(name: str, default: int) -> int:
    """Read a positive whole number from the environment (see `env_float`)."""
    value = env_float(name, default)
    if value != int(value):
        raise ConfigError(f"{name} must be a whole number, not {value}")
    return int(value)
