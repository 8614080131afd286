"""`add_jobs_returning`: each added job as stored, known from the write where the store can.

On every store the job it answers with equals the job read back, for every option a new job
can carry; every store reports the creation time, so created jobs are answered without a
read.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentqueue import Queue
from agentqueue.models import Origin

_MIXED: list[dict[str, Any]] = [
    {"job_type": "plain"},
    {"job_type": "plain", "payload": {"n": [1, 2.5, None, (3, 4)], "é": {"deep": True}}},
    {
        "job_type": "full",
        "payload": [1, "two"],
        "priority": 5,
        "delay": 30.0000015,
        "tags": ["a", "b"],
        "max_attempts": 7,
        "retry_delay": 2.5,
        "retry_backoff": False,
        "retry_delay_max": 60,
        "timeout": 12.5,
        "force_kill_on_timeout": True,
        "group": "tenant-1",
        "dead_letter_job_type": "full.dead",
        "queue": "other",
    },
    {"job_type": "later", "run_at": datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)},
    {"job_type": "keyed", "idempotency_key": "k1"},
    {"job_type": "keyed", "idempotency_key": "k2", "idempotency_window": 90.5},
]


def _reads(queue: Queue) -> list[int]:
    calls = [0]
    original = queue.backend.get_job

    async def counted(job_id: int) -> Any:
        calls[0] += 1
        return await original(job_id)

    queue.backend.get_job = counted  # type: ignore[method-assign]
    return calls


async def test_each_added_job_equals_the_job_read_back(queue: Queue) -> None:
    await queue.open()
    reads = _reads(queue)
    origin = Origin(door="rest", actor="ann", client="cli")
    added = await queue.add_jobs_returning(_MIXED, origin=origin)
    fresh_reads = reads[0]
    for (job_id, stored), spec in zip(added, _MIXED, strict=True):
        assert job_id.created
        assert stored.id == job_id
        assert stored == await queue.get_job(job_id), spec
        assert stored.origin == origin
    assert fresh_reads == 0  # known from the write: every store reports its creation time


async def test_a_job_an_idempotency_key_returned_or_one_with_prerequisites_is_read(
    queue: Queue,
) -> None:
    await queue.open()
    [(first, _)] = await queue.add_jobs_returning([{"job_type": "k", "idempotency_key": "x"}])
    reads = _reads(queue)
    [(again, stored)] = await queue.add_jobs_returning(
        [{"job_type": "k", "idempotency_key": "x", "priority": 9}]
    )
    assert not again.created
    assert again == first
    assert stored == await queue.get_job(first)
    assert stored.priority == 0  # the earlier job, as it is
    assert reads[0] >= 1
    [(child, blocked)] = await queue.add_jobs_returning([{"job_type": "c", "depends_on": [first]}])
    assert blocked == await queue.get_job(child)
    assert blocked.status == "blocked"


@pytest.mark.parametrize("delay", [0.0, 0.5, 1e-6, 3600.9999995])
async def test_the_run_at_of_a_delayed_job_is_the_stored_one_to_the_microsecond(
    queue: Queue, delay: float
) -> None:
    await queue.open()
    [(job_id, stored)] = await queue.add_jobs_returning([{"job_type": "d", "delay": delay}])
    read = await queue.get_job(job_id)
    assert read is not None
    assert stored.run_at == read.run_at
    assert stored.run_at - stored.created_at == timedelta(seconds=delay)
