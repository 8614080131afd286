"""Store contracts through `queue.backend`: claim order and exclusivity, due times, leases,
fenced worker writes, release and rescue, declared capabilities."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from agentqueue import (
    Backend,
    ErrorRecord,
    EventType,
    FailureReason,
    FrozenClock,
    InvalidArgument,
    Job,
    Queue,
)
from agentqueue.backends.base import Capabilities, Lease, Outcome, OutcomeKind
from agentqueue.states import JobStatus

T0 = datetime(2030, 6, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
async def frozen(store_url: str, clock: FrozenClock) -> AsyncIterator[Queue]:
    """A queue on a fresh store whose time only moves with `clock.advance()`."""
    async with Queue(store_url, clock=clock) as opened:
        yield opened


async def claim(
    target: Queue,
    /,
    *,
    worker: str = "w1",
    limit: int = 1,
    lease: float = 30,
    queue: str | None = None,
    job_types: list[str] | None = None,
) -> list[Job]:
    return await target.backend.claim(
        worker_id=worker,
        queue=queue,
        job_types=job_types,
        limit=limit,
        lease_seconds=lease,
        now=target.now(),
    )


async def finish(queue: Queue, worker: str, *outcomes: Outcome) -> set[int]:
    return await queue.backend.finish(worker_id=worker, outcomes=outcomes, now=queue.now())


def error(attempt: int, message: str = "boom") -> ErrorRecord:
    return ErrorRecord(attempt=attempt, at=T0, reason=FailureReason.HANDLER_ERROR, message=message)


async def fetch(queue: Queue, job_id: int) -> Job:
    job = await queue.get_job(job_id)
    assert job is not None
    return job


async def test_claim_takes_jobs_by_priority_then_run_at_then_id(frozen: Queue) -> None:
    def at(seconds: float) -> datetime:
        return T0 - timedelta(seconds=seconds)

    ids = await frozen.add_jobs(
        [
            {"job_type": "j", "priority": 0, "run_at": at(seconds=10)},  # 0
            {"job_type": "j", "priority": 5, "run_at": at(seconds=1)},  # 1
            {"job_type": "j", "priority": 5, "run_at": at(seconds=5)},  # 2
            {"job_type": "j", "priority": 0, "run_at": at(seconds=10)},  # 3
            {"job_type": "j", "priority": -1},  # 4
            {"job_type": "j", "priority": 9, "run_at": T0 + timedelta(seconds=1)},  # 5: not due
        ]
    )
    expected = [ids[2], ids[1], ids[0], ids[3], ids[4]]
    one_by_one = [job.id for _ in range(6) for job in await claim(frozen)]
    assert one_by_one == expected


async def test_claim_returns_a_batch_in_claim_order(frozen: Queue) -> None:
    ids = await frozen.add_jobs([{"job_type": "j", "priority": p} for p in (1, 3, 2, 3)])
    jobs = await claim(frozen, limit=3)
    assert [job.id for job in jobs] == [ids[1], ids[3], ids[2]]


async def test_a_claimed_job_is_processing_under_a_lease(frozen: Queue, clock: FrozenClock) -> None:
    job_id = await frozen.add_job("j")
    clock.advance(2.5)  # claimed 2.5 s after it was due: the claim event's "waited"
    (job,) = await claim(frozen, worker="w-7", lease=45)
    assert job.id == job_id
    assert (job.status, job.attempts, job.locked_by) == (JobStatus.PROCESSING, 1, "w-7")
    assert job.lease_expires_at == T0 + timedelta(seconds=47.5)
    assert job.started_at == T0 + timedelta(seconds=2.5)
    assert await fetch(frozen, job_id) == job
    event = (await frozen.get_job_events(job_id))[-1]
    assert (event.type, event.status) == (EventType.CLAIM, JobStatus.PROCESSING)
    assert event.data == {"attempt": 1, "worker": "w-7", "waited": 2.5}


async def test_claim_serves_only_the_asked_queue_and_job_types(frozen: Queue) -> None:
    a, b, c = await frozen.add_jobs(
        [{"job_type": "x", "queue": "q1"}, {"job_type": "y", "queue": "q1"}, {"job_type": "x"}]
    )
    assert [j.id for j in await claim(frozen, limit=9, queue="q1", job_types=["x"])] == [a]
    assert [j.id for j in await claim(frozen, limit=9, job_types=["x", "y"])] == [b, c]
    assert await claim(frozen, limit=9) == []


async def test_concurrent_claims_never_hand_one_job_to_two_claimers(frozen: Queue) -> None:
    ids = await frozen.add_jobs([{"job_type": "j"} for _ in range(30)])
    seen: list[int] = []
    for _ in range(4):
        batches = await asyncio.gather(*(claim(frozen, worker=f"w{n}", limit=3) for n in range(5)))
        seen.extend(job.id for batch in batches for job in batch)
    assert sorted(seen) == sorted(ids)
    assert len(set(seen)) == len(seen)


async def test_two_queues_on_one_store_never_claim_the_same_job(shared_url: str) -> None:
    async with Queue(shared_url) as first, Queue(shared_url) as second:
        ids = await first.add_jobs([{"job_type": "j"} for _ in range(40)])
        seen: list[tuple[str, int]] = []
        while len(seen) < len(ids):
            batches = await asyncio.gather(
                claim(first, worker="a", limit=4),
                claim(second, worker="b", limit=4),
                claim(first, worker="c", limit=4),
                claim(second, worker="d", limit=4),
            )
            assert any(batches)
            seen.extend((job.locked_by or "", job.id) for batch in batches for job in batch)
        assert sorted(job_id for _w, job_id in seen) == sorted(ids)
        for worker, job_id in seen:
            assert (await fetch(first, job_id)).locked_by == worker


async def test_a_delayed_job_is_not_claimable_before_its_run_at(
    frozen: Queue, clock: FrozenClock
) -> None:
    job_id = await frozen.add_job("j", delay=60)
    assert await claim(frozen) == []
    assert await frozen.backend.next_due(queue=None, job_types=None) == T0 + timedelta(seconds=60)
    clock.advance(59.999)
    assert await claim(frozen) == []
    clock.advance(0.001)
    assert [job.id for job in await claim(frozen)] == [job_id]
    assert await frozen.backend.next_due(queue=None, job_types=None) is None


async def test_heartbeat_extends_the_leases_still_held(frozen: Queue, clock: FrozenClock) -> None:
    a, b = await frozen.add_jobs([{"job_type": "j"}, {"job_type": "j"}])
    await claim(frozen, limit=2, lease=30)
    clock.advance(20)
    beat = await frozen.backend.heartbeat(
        worker_id="w1", leases=[Lease(a, 1), Lease(b, 1)], lease_seconds=30, now=clock.now()
    )
    assert (beat.lost, beat.cancel_requested) == (set(), set())
    for job_id in (a, b):
        assert (await fetch(frozen, job_id)).lease_expires_at == T0 + timedelta(seconds=50)


async def test_heartbeat_reports_leases_of_a_wrong_attempt_worker_or_job_as_lost(
    frozen: Queue, clock: FrozenClock
) -> None:
    a, b = await frozen.add_jobs([{"job_type": "j"}, {"job_type": "j"}])
    await claim(frozen, worker="w1", limit=1)
    await claim(frozen, worker="w2", limit=1)
    clock.advance(10)
    beat = await frozen.backend.heartbeat(
        worker_id="w1",
        leases=[Lease(a, 2), Lease(b, 1), Lease(999_999, 1)],
        lease_seconds=30,
        now=clock.now(),
    )
    assert beat.lost == {a, b, 999_999}
    assert (await fetch(frozen, a)).lease_expires_at == T0 + timedelta(seconds=30)
    assert (await fetch(frozen, b)).lease_expires_at == T0 + timedelta(seconds=30)


async def test_finish_with_a_stale_lease_changes_nothing_and_reports_it_lost(
    frozen: Queue, clock: FrozenClock
) -> None:
    job_id = await frozen.add_job("j", max_attempts=5)
    await claim(frozen, worker="w1", lease=10)
    clock.advance(11)
    assert await frozen.backend.rescue_expired(now=clock.now()) == [job_id]
    (second,) = await claim(frozen, worker="w2", lease=10)
    assert second.attempts == 2
    events_before = await frozen.get_job_events(job_id)
    late = Outcome(OutcomeKind.COMPLETE, Lease(job_id, 1), output="stale")
    assert await finish(frozen, "w1", late) == {job_id}
    wrong_worker = Outcome(OutcomeKind.FAIL, Lease(job_id, 2), error=error(2))
    assert await finish(frozen, "w1", wrong_worker) == {job_id}
    assert await fetch(frozen, job_id) == second
    assert await frozen.get_job_events(job_id) == events_before


async def test_finish_applies_held_outcomes_and_drops_lost_ones_in_one_call(
    frozen: Queue,
) -> None:
    a, b = await frozen.add_jobs([{"job_type": "j"}, {"job_type": "j"}])
    await claim(frozen, limit=2)
    lost = await finish(
        frozen,
        "w1",
        Outcome(OutcomeKind.COMPLETE, Lease(a, 1), output={"r": 1}),
        Outcome(OutcomeKind.COMPLETE, Lease(b, 7), output={"r": 2}),
    )
    assert lost == {b}
    done = await fetch(frozen, a)
    assert (done.status, done.output, done.progress) == (JobStatus.COMPLETED, {"r": 1}, 100)
    assert done.completed_at == T0
    assert (await fetch(frozen, b)).status is JobStatus.PROCESSING


async def test_release_puts_the_job_back_and_gives_the_attempt_back(frozen: Queue) -> None:
    job_id = await frozen.add_job("j", run_at=T0 - timedelta(hours=1))
    await claim(frozen)
    assert await finish(frozen, "w1", Outcome(OutcomeKind.RELEASE, Lease(job_id, 1))) == set()
    job = await fetch(frozen, job_id)
    # It keeps its run_at: due first, it goes back to the head of the line.
    assert (job.status, job.attempts, job.locked_by, job.run_at) == (
        JobStatus.PENDING,
        0,
        None,
        T0 - timedelta(hours=1),
    )
    assert job.lease_expires_at is None
    assert (await frozen.get_job_events(job_id))[-1].type is EventType.RELEASE
    (again,) = await claim(frozen)
    assert again.attempts == 1


async def test_a_retried_attempt_waits_retry_in_and_keeps_its_error(
    frozen: Queue, clock: FrozenClock
) -> None:
    job_id = await frozen.add_job("j")
    await claim(frozen)
    outcome = Outcome(OutcomeKind.RETRY, Lease(job_id, 1), error=error(1), retry_in=30)
    assert await finish(frozen, "w1", outcome) == set()
    job = await fetch(frozen, job_id)
    assert (job.status, job.attempts, job.run_at) == (
        JobStatus.PENDING,
        1,
        T0 + timedelta(seconds=30),
    )
    assert [e.message for e in job.error_history] == ["boom"]
    assert (job.last_error, job.failure_reason) == ("boom", FailureReason.HANDLER_ERROR)
    event = (await frozen.get_job_events(job_id))[-1]
    assert (event.type, event.data["retry_in"]) == (EventType.RETRY_LATER, 30)
    assert await claim(frozen) == []
    clock.advance(30)
    assert [j.attempts for j in await claim(frozen)] == [2]


async def test_rescue_returns_an_expired_lease_to_pending_counting_the_attempt(
    frozen: Queue, clock: FrozenClock
) -> None:
    job_id = await frozen.add_job("j", max_attempts=3)
    await claim(frozen, worker="dead-worker", lease=30)
    clock.advance(29)
    assert await frozen.backend.rescue_expired(now=clock.now()) == []
    clock.advance(2)
    assert await frozen.backend.rescue_expired(now=clock.now()) == [job_id]
    job = await fetch(frozen, job_id)
    assert (job.status, job.attempts, job.locked_by) == (JobStatus.PENDING, 1, None)
    assert job.failure_reason is FailureReason.LEASE_EXPIRED
    assert "dead-worker" in job.error_history[-1].message
    event = (await frozen.get_job_events(job_id))[-1]
    assert (event.type, event.status) == (EventType.RESCUE, JobStatus.PENDING)
    assert event.data["worker"] == "dead-worker"
    assert event.data["reason"] == "lease_expired"
    (again,) = await claim(frozen, worker="w2")
    assert again.attempts == 2
    assert await frozen.backend.rescue_expired(now=clock.now()) == []


async def test_a_rescued_job_keeps_its_place_ahead_of_jobs_enqueued_after_it(
    frozen: Queue, clock: FrozenClock
) -> None:
    first = await frozen.add_job("j")
    await claim(frozen, worker="dead-worker", lease=5)
    clock.advance(1)
    later = await frozen.add_jobs([{"job_type": "j"} for _ in range(3)])
    clock.advance(5)
    assert await frozen.backend.rescue_expired(now=clock.now()) == [first]
    assert (await fetch(frozen, first)).run_at == T0
    assert [job.id for job in await claim(frozen, worker="w2", limit=4)] == [first, *later]


async def test_rescue_fails_a_job_whose_attempts_are_used_up(
    frozen: Queue, clock: FrozenClock
) -> None:
    job_id = await frozen.add_job("j", max_attempts=1)
    await claim(frozen, worker="dead-worker", lease=5)
    clock.advance(6)
    assert await frozen.backend.rescue_expired(now=clock.now()) == [job_id]
    job = await fetch(frozen, job_id)
    assert (job.status, job.failure_reason) == (JobStatus.FAILED, FailureReason.LEASE_EXPIRED)
    assert job.completed_at == clock.now()
    event = (await frozen.get_job_events(job_id))[-1]
    assert (event.type, event.status, event.data["worker"]) == (
        EventType.RESCUE,
        JobStatus.FAILED,
        "dead-worker",
    )
    assert await claim(frozen) == []


async def test_progress_is_recorded_only_under_the_held_lease(frozen: Queue) -> None:
    job_id = await frozen.add_job("j")
    await claim(frozen)
    held = await frozen.backend.set_progress(
        worker_id="w1", lease=Lease(job_id, 1), progress=40, message="half", now=T0
    )
    stale = await frozen.backend.set_progress(
        worker_id="w1", lease=Lease(job_id, 2), progress=90, message="no", now=T0
    )
    assert (held, stale) == (True, False)
    job = await fetch(frozen, job_id)
    assert (job.progress, job.progress_message) == (40, "half")
    event = (await frozen.get_job_events(job_id))[-1]
    assert (event.type, event.data) == (EventType.PROGRESS, {"progress": 40, "message": "half"})


# The whole capability matrix, so that no store's declaration can flip silently.
CAPABILITIES = {
    "sqlite": Capabilities(transactional_enqueue=True, cross_process_wakeup=True, durable=True),
    "memory": Capabilities(transactional_enqueue=False, cross_process_wakeup=False, durable=False),
    "postgresql": Capabilities(transactional_enqueue=True, cross_process_wakeup=True, durable=True),
    "redis": Capabilities(transactional_enqueue=False, cross_process_wakeup=True, durable=True),
}


async def test_every_store_declares_its_capabilities(queue: Queue, store_url: str) -> None:
    assert isinstance(queue.backend, Backend)
    kind = store_url.split(":", 1)[0]
    assert queue.backend.capabilities == CAPABILITIES[kind]


async def test_transactional_enqueue_is_refused_exactly_where_it_is_not_declared(
    queue: Queue,
) -> None:
    if queue.backend.capabilities.transactional_enqueue:
        return  # exercised with real connections in tests/backends/test_postgres_store.py
    with pytest.raises(InvalidArgument, match="transactional enqueue"):
        await queue.add_job("mail", connection=object())
    assert sum((await queue.stats()).totals.values()) == 0


async def test_a_durable_store_keeps_jobs_across_reopening(queue: Queue, store_url: str) -> None:
    job_id = await queue.add_job("keep", {"v": 1})
    await queue.close()
    async with Queue(store_url) as reopened:
        job = await reopened.get_job(job_id)
    assert (job is not None) is queue.backend.capabilities.durable
