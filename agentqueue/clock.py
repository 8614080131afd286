"""Time, injectable: the only module that reads the wall clock.

Stores receive `now` from the queue's clock when it is not the system clock, so a test can freeze
or move time; with the system clock a store may use its own clock (the database's, where it has
one) so that lease times agree across machines.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """A source of aware UTC datetimes."""

    def now(self) -> datetime:
        """Return the current time (aware, UTC)."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        """Return the current UTC time."""
        return datetime.now(UTC)


class FrozenClock:
    """A clock that stands still until moved; for tests.

    Args:
        start: the initial time (aware); defaults to the current wall-clock time.
    """

    def __init__(self, start: datetime | None = None) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime (e.g. datetime(..., tzinfo=UTC))")
        self._now = (start or datetime.now(UTC)).astimezone(UTC)

    def now(self) -> datetime:
        """Return the frozen time."""
        return self._now

    def advance(self, seconds: float = 0.0, **delta: float) -> datetime:
        """Move time forward by `seconds` (and/or timedelta keywords) and return the new time."""
        self._now += timedelta(seconds=seconds, **delta)
        return self._now

    def set(self, when: datetime) -> None:
        """Jump to `when` (aware)."""
        if when.tzinfo is None:
            raise ValueError("FrozenClock.set needs an aware datetime")
        self._now = when.astimezone(UTC)


SYSTEM_CLOCK = SystemClock()


def utc(value: datetime) -> datetime:
    """Return `value` as aware UTC; a naive datetime is rejected, never guessed."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value.isoformat()} has no time zone; pass an aware one")
    return value.astimezone(UTC)
