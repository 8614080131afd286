"""Retry delays as a pure function of the attempt number."""

from __future__ import annotations

import random
from collections.abc import Callable


def retry_delay(
    attempt: int,
    *,
    delay: float,
    backoff: bool,
    delay_max: float | None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Return the seconds to wait before retrying after failed attempt number `attempt` (1-based).

    Without backoff the delay is constant. With backoff it doubles each attempt
    (delay, 2*delay, 4*delay …) with "equal jitter": a random value between half and all of it,
    so a burst of failures does not retry in lock step. `delay_max` caps the result.
    """
    if not backoff:
        seconds = delay
    else:
        exponent = min(max(attempt - 1, 0), 62)
        base = delay * (2.0**exponent)
        if delay_max is not None:
            base = min(base, delay_max)
        seconds = base * (0.5 + 0.5 * rand())
    if delay_max is not None:
        seconds = min(seconds, delay_max)
    return max(seconds, 0.0)
