"""Retry delays: constant, doubling with equal jitter, capped."""

from __future__ import annotations

import pytest

from agentqueue.retry import retry_delay


@pytest.mark.parametrize("attempt", [1, 2, 5, 30])
def test_without_backoff_the_delay_is_the_same_for_every_attempt(attempt: int) -> None:
    delay = retry_delay(attempt, delay=7.5, backoff=False, delay_max=None, rand=lambda: 0.9)
    assert delay == 7.5


@pytest.mark.parametrize(("attempt", "full"), [(1, 10.0), (2, 20.0), (3, 40.0), (6, 320.0)])
def test_with_backoff_the_delay_doubles_each_attempt_at_full_jitter(
    attempt: int, full: float
) -> None:
    # rand() is in [0, 1): 1.0 is the upper bound of the jitter range.
    assert retry_delay(attempt, delay=10, backoff=True, delay_max=None, rand=lambda: 1.0) == full


@pytest.mark.parametrize("attempt", [1, 2, 3, 4])
def test_equal_jitter_keeps_the_delay_between_half_and_all_of_the_doubled_delay(
    attempt: int,
) -> None:
    full = 10 * 2 ** (attempt - 1)
    low = retry_delay(attempt, delay=10, backoff=True, delay_max=None, rand=lambda: 0.0)
    mid = retry_delay(attempt, delay=10, backoff=True, delay_max=None, rand=lambda: 0.5)
    high = retry_delay(attempt, delay=10, backoff=True, delay_max=None, rand=lambda: 0.999999)
    assert low == full / 2
    assert mid == full * 0.75
    assert low < mid < high < full


def test_jitter_uses_the_real_random_source_by_default_and_stays_in_bounds() -> None:
    delays = {retry_delay(3, delay=4, backoff=True, delay_max=None) for _ in range(200)}
    assert all(8 <= d <= 16 for d in delays)
    assert len(delays) > 1  # the jitter actually varies


def test_the_cap_limits_a_doubled_delay() -> None:
    assert retry_delay(20, delay=10, backoff=True, delay_max=3600, rand=lambda: 1.0) == 3600
    # jitter applies below the cap: half of the capped value at the bottom of the range
    assert retry_delay(20, delay=10, backoff=True, delay_max=3600, rand=lambda: 0.0) == 1800


def test_the_cap_limits_a_constant_delay_too() -> None:
    assert retry_delay(1, delay=100, backoff=False, delay_max=30, rand=lambda: 0.5) == 30


def test_huge_attempt_numbers_do_not_overflow() -> None:
    delay = retry_delay(10_000, delay=1, backoff=True, delay_max=60, rand=lambda: 1.0)
    assert delay == 60
    uncapped = retry_delay(10_000, delay=1, backoff=True, delay_max=None, rand=lambda: 1.0)
    assert uncapped == 2.0**62


def test_attempt_zero_or_below_is_treated_as_the_first_attempt() -> None:
    assert retry_delay(0, delay=5, backoff=True, delay_max=None, rand=lambda: 1.0) == 5
    assert retry_delay(-3, delay=5, backoff=True, delay_max=None, rand=lambda: 1.0) == 5


def test_a_zero_delay_retries_immediately() -> None:
    assert retry_delay(4, delay=0, backoff=True, delay_max=None, rand=lambda: 0.7) == 0.0
    assert retry_delay(4, delay=0, backoff=False, delay_max=None) == 0.0
