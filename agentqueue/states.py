"""Job states and the one transition table every store obeys.

The table is data: backends build their conditional writes from `allowed_sources()`, and
`docs/architecture.md` draws the same edges (a test keeps the two in step).
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Where a job is in its life."""

    BLOCKED = "blocked"
    """Added with `depends_on`: waits until every prerequisite completed (then `pending`)."""
    PENDING = "pending"
    """Stored and runnable once `run_at` has passed (new, retrying, released or resumed)."""
    PROCESSING = "processing"
    """Claimed by a worker that holds a lease on it."""
    WAITING = "waiting"
    """Parked by its handler (durable sleep or token wait); holds no worker slot and no lease."""
    COMPLETED = "completed"
    """The handler returned; its output is stored. Terminal."""
    FAILED = "failed"
    """Attempts are used up (or the failure was not retryable). Terminal until retried by hand."""
    CANCELLED = "cancelled"
    """Cancelled before or while running. Terminal until retried by hand."""


class Transition(StrEnum):
    """Every named edge of the state machine; each one writes a job event of the same name."""

    CLAIM = "claim"  # pending -> processing (a worker takes it; attempts += 1)
    COMPLETE = "complete"  # processing -> completed
    RETRY_LATER = "retry_later"  # processing -> pending (attempt failed, attempts left)
    FAIL = "fail"  # processing -> failed (attempts used up or not retryable)
    RELEASE = "release"  # processing -> pending (shutdown; the attempt is given back)
    RESCUE = "rescue"  # processing -> pending | failed (lease expired; the attempt counts)
    WAIT = "wait"  # processing -> waiting (durable sleep or token wait)
    RESUME = "resume"  # waiting -> pending
    UNBLOCK = "unblock"  # blocked -> pending (the last prerequisite completed)
    CANCEL = "cancel"  # blocked | pending | waiting -> cancelled; processing -> by its handler
    RETRY = "retry"  # failed | cancelled -> pending, or blocked (prerequisites unfinished)
    EDIT = "edit"  # pending -> pending (fields changed)


TRANSITIONS: dict[Transition, tuple[frozenset[JobStatus], frozenset[JobStatus]]] = {
    Transition.CLAIM: (frozenset({JobStatus.PENDING}), frozenset({JobStatus.PROCESSING})),
    Transition.COMPLETE: (frozenset({JobStatus.PROCESSING}), frozenset({JobStatus.COMPLETED})),
    Transition.RETRY_LATER: (frozenset({JobStatus.PROCESSING}), frozenset({JobStatus.PENDING})),
    Transition.FAIL: (frozenset({JobStatus.PROCESSING}), frozenset({JobStatus.FAILED})),
    Transition.RELEASE: (frozenset({JobStatus.PROCESSING}), frozenset({JobStatus.PENDING})),
    Transition.RESCUE: (
        frozenset({JobStatus.PROCESSING}),
        frozenset({JobStatus.PENDING, JobStatus.FAILED}),
    ),
    Transition.WAIT: (frozenset({JobStatus.PROCESSING}), frozenset({JobStatus.WAITING})),
    Transition.RESUME: (frozenset({JobStatus.WAITING}), frozenset({JobStatus.PENDING})),
    Transition.UNBLOCK: (frozenset({JobStatus.BLOCKED}), frozenset({JobStatus.PENDING})),
    Transition.CANCEL: (
        frozenset({JobStatus.BLOCKED, JobStatus.PENDING, JobStatus.WAITING, JobStatus.PROCESSING}),
        frozenset({JobStatus.CANCELLED}),
    ),
    Transition.RETRY: (
        frozenset({JobStatus.FAILED, JobStatus.CANCELLED}),
        frozenset({JobStatus.PENDING, JobStatus.BLOCKED}),
    ),
    Transition.EDIT: (frozenset({JobStatus.PENDING}), frozenset({JobStatus.PENDING})),
}

TERMINAL: frozenset[JobStatus] = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
)
"""States a job leaves only by an operator's `retry_job`."""

ACTIVE: frozenset[JobStatus] = frozenset(
    {JobStatus.BLOCKED, JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.WAITING}
)
"""States of a job that is still going to run (or is running)."""


def allowed_sources(transition: Transition) -> frozenset[JobStatus]:
    """Return the states a job may be in for `transition` to apply."""
    return TRANSITIONS[transition][0]


def edges() -> set[tuple[JobStatus, JobStatus]]:
    """Return every (from, to) pair the table allows, for drawing and for checks."""
    return {
        (source, target)
        for sources, targets in TRANSITIONS.values()
        for source in sources
        for target in targets
    }


def can_transition(transition: Transition, source: JobStatus, target: JobStatus) -> bool:
    """Say whether `transition` may take a job from `source` to `target`."""
    sources, targets = TRANSITIONS[transition]
    return source in sources and target in targets
