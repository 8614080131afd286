"""Assertions shared by tests that follow the acceptance app's jobs from outside."""

from __future__ import annotations


def check_progress_seen(seen: list[float], steps: int = 4) -> None:
    """Assert what a follower saw of a `progress` job: progress writes are coalesced (latest
    wins, documented on `JobContext.set_progress`), so a store slower than the handler's steps
    may skip a middle value, but never reorders one or loses the last."""
    expected = [step * 100 // steps for step in range(1, steps + 1)]
    assert seen, "no progress seen"
    assert seen[-1] == 100, seen
    assert list(seen) == sorted(set(seen)), seen
    assert set(seen) <= set(expected), seen
