"""Cron expressions and time zones: validation and the next tick, DST included.

Expressions are the standard five fields (minute hour day-of-month month day-of-week), or six
with a leading seconds field, or one of the `@hourly`-style aliases. Ticks are computed in the
schedule's IANA time zone with `cronsim` (the parser of healthchecks.io), whose DST behaviour is
the one users expect from cron: on a spring-forward day a tick inside the skipped hour runs at
the first valid time after it (02:30 → 03:00); on a fall-back day a daily tick in the repeated
hour runs once, while an hourly schedule runs in both copies of the hour.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cached_property
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from agentqueue.errors import InvalidArgument

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""Shorthands accepted for `cron_expression`."""


def zone(name: str) -> ZoneInfo:
    """Return the IANA time zone `name`.

    Raises:
        InvalidArgument: no such zone.
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArgument(
            f"unknown time zone {name!r}: use an IANA name such as 'UTC', 'Europe/Berlin' or "
            "'America/New_York'"
        ) from None


class CronExpression:
    """A validated cron expression in a time zone.

    Raises:
        InvalidArgument: the expression or the time zone is not valid (with what is wrong).
    """

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        self.expression = " ".join(expression.split())
        self.timezone = timezone
        self.tz = zone(timezone)
        fields = ALIASES.get(self.expression.lower(), self.expression)
        if len(fields.split()) not in (5, 6):
            raise InvalidArgument(
                f"bad cron expression {expression!r}: give 5 fields (minute hour day month "
                "weekday), 6 with a leading seconds field, or an alias such as @daily"
            )
        self._fields = fields
        try:
            CronSim(fields, datetime(2000, 1, 1, tzinfo=self.tz))
        except CronSimError as error:
            raise InvalidArgument(f"bad cron expression {expression!r}: {error}") from None
        if self.next_after(datetime(2000, 1, 1, tzinfo=UTC)) is None:
            raise InvalidArgument(f"cron expression {expression!r} never fires")

    @cached_property
    def has_seconds(self) -> bool:
        """True when the expression has a seconds field."""
        return len(self._fields.split()) == 6

    def next_after(self, after: datetime) -> datetime | None:
        """Return the first tick strictly after `after` (aware) as a UTC datetime, or None if
        the expression has no tick within the next few years (e.g. 30 February)."""
        local = after.astimezone(self.tz)
        try:
            tick = next(CronSim(self._fields, local))
        except (StopIteration, CronSimError):
            return None
        return tick.astimezone(UTC)
