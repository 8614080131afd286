"""Flow limits from the caller's side: which key a call names, and checked changes.

`Queue.set_limit`, `pause_job_type` and friends call these; the stores enforce the limits at
claim time (`backends/sql/limits.py`, the Redis claim script).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from agentqueue.errors import InvalidArgument
from agentqueue.models import ANY_GROUP, JOB_TYPE_PATTERN, Limit, LimitScope

SETTABLE = frozenset({"max_concurrent", "rate_limit", "rate_period"})
"""The fields `set_limit` changes (`paused` has its own calls)."""


def target(job_type: str | None, group: str | None) -> tuple[LimitScope, str]:
    """Return the (scope, key) named by exactly one of `job_type` and `group`.

    Raises:
        InvalidArgument: neither or both given, or a malformed name.
    """
    if (job_type is None) == (group is None):
        raise InvalidArgument(
            "name exactly one of job_type=... or group=... (group='*' for every group)"
        )
    if job_type is not None:
        if not re.fullmatch(JOB_TYPE_PATTERN, job_type):
            raise InvalidArgument(f"bad job type {job_type!r}: 1-200 letters, digits and _ . : -")
        return LimitScope.JOB_TYPE, job_type
    assert group is not None
    if not 1 <= len(group) <= 200:
        raise InvalidArgument(f"bad group {group!r}: 1-200 characters ('*' for every group)")
    return LimitScope.GROUP, group


def checked_changes(scope: LimitScope, key: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Return `changes` to a limit after checking names and values (None clears a limit).

    Raises:
        InvalidArgument: an unknown field, or a value out of range.
    """
    unknown = sorted(set(changes) - SETTABLE)
    if unknown:
        raise InvalidArgument(
            f"set_limit takes {', '.join(sorted(SETTABLE))}; not {', '.join(unknown)}"
            + (" (use pause_job_type / resume_job_type)" if "paused" in unknown else "")
        )
    if not changes:
        raise InvalidArgument(
            "give max_concurrent, rate_limit and/or rate_period (None removes that limit)"
        )
    try:
        Limit.model_validate({"scope": scope, "key": key, **changes})
    except ValidationError as error:
        from agentqueue.queue import invalid_from  # the queue module imports this one

        raise invalid_from(error, "limit") from None
    if changes.get("rate_period") is None and "rate_period" in changes:
        changes = {**changes, "rate_period": 1.0}
    return changes


def describe(scope: LimitScope, key: str) -> str:
    """How a message names a limit's key."""
    if scope is LimitScope.GROUP and key == ANY_GROUP:
        return "every group"
    return f"{scope.value.replace('_', ' ')} {key!r}"
