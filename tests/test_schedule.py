"""Cron expressions: validation messages and ticks across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from agentqueue.errors import InvalidArgument
from agentqueue.schedule import CronExpression

BERLIN = ZoneInfo("Europe/Berlin")


def ticks(expr: CronExpression, start: datetime, count: int) -> list[str]:
    """`count` ticks after `start`, as local ISO strings of the expression's zone."""
    out: list[str] = []
    current = start
    for _ in range(count):
        nxt = expr.next_after(current)
        assert nxt is not None
        assert nxt.tzinfo is UTC
        out.append(nxt.astimezone(expr.tz).isoformat())
        current = nxt
    return out


def test_daily_tick_in_the_skipped_spring_hour_runs_at_the_next_valid_time() -> None:
    expr = CronExpression("30 2 * * *", "Europe/Berlin")
    assert ticks(expr, datetime(2026, 3, 28, 3, tzinfo=BERLIN), 3) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]


def test_daily_tick_in_the_repeated_fall_hour_runs_once() -> None:
    expr = CronExpression("30 2 * * *", "Europe/Berlin")
    assert ticks(expr, datetime(2026, 10, 24, 3, tzinfo=BERLIN), 3) == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]


def test_hourly_ticks_run_in_both_copies_of_the_repeated_hour() -> None:
    expr = CronExpression("@hourly", "Europe/Berlin")
    assert ticks(expr, datetime(2026, 10, 25, 0, 30, tzinfo=BERLIN), 4) == [
        "2026-10-25T01:00:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T03:00:00+01:00",
    ]


def test_a_leading_seconds_field() -> None:
    expr = CronExpression("*/20 * * * * *")
    assert expr.has_seconds
    assert ticks(expr, datetime(2026, 1, 1, tzinfo=UTC), 3) == [
        "2026-01-01T00:00:20+00:00",
        "2026-01-01T00:00:40+00:00",
        "2026-01-01T00:01:00+00:00",
    ]


@pytest.mark.parametrize(
    ("expression", "timezone", "message"),
    [
        ("61 * * * *", "UTC", "Bad minute"),
        ("* * *", "UTC", "5 fields"),
        ("0 0 30 2 *", "UTC", "day-of-month"),
        ("0 9 * * 1", "Mars/Olympus", "unknown time zone"),
        ("", "UTC", "5 fields"),
    ],
)
def test_bad_expressions_and_zones_are_refused_with_the_reason(
    expression: str, timezone: str, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        CronExpression(expression, timezone)
