"""Dead letters on every store: a job that fails for good enqueues its dead-letter job."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agentqueue import DeadLetter, FailureReason, FrozenClock, JobStatus, Queue
from agentqueue.testing import run_due_jobs


def register(queue: Queue, letters: list[DeadLetter]) -> None:
    """A handler `charge` that always fails, and a dead-letter handler `charge_failed`."""

    @queue.handler("charge", max_attempts=2, retry_delay=0)
    async def charge(payload: dict[str, Any]) -> None:
        raise ValueError(f"card {payload['card']} declined")

    @queue.handler("charge_failed", queue="graveyard", priority=7, max_attempts=3)
    async def charge_failed(letter: DeadLetter) -> str:
        letters.append(letter)
        return "noted"


async def test_the_last_failed_attempt_enqueues_the_dead_letter_with_an_envelope(
    timed: Queue, clock: FrozenClock
) -> None:
    letters: list[DeadLetter] = []
    register(timed, letters)
    job_id = await timed.add_job(
        "charge",
        {"card": "4242"},
        dead_letter_job_type="charge_failed",
        tags=["billing"],
        group="tenant-9",
    )
    await run_due_jobs(timed)
    job = await timed.get_job(job_id)
    assert job is not None
    assert (job.status, job.attempts, job.dead_letter_job_type) == (
        JobStatus.FAILED,
        2,
        "charge_failed",
    )

    [letter] = letters
    assert (letter.job_id, letter.job_type, letter.payload) == (job_id, "charge", {"card": "4242"})
    assert (letter.attempts, letter.tags, letter.group, letter.queue) == (
        2,
        ["billing"],
        "tenant-9",
        "default",
    )
    assert letter.error is not None
    assert letter.error.message == "ValueError: card 4242 declined"
    assert letter.error.reason is FailureReason.HANDLER_ERROR
    assert [e.attempt for e in letter.error_history] == [1, 2]
    assert letter.failed_at == clock.now()

    [stored] = (await timed.list_jobs(job_type="charge_failed")).items
    # The dead-letter job has its own handler's options, and ran once.
    assert (stored.queue, stored.priority, stored.max_attempts) == ("graveyard", 7, 3)
    assert (stored.status, stored.output) == (JobStatus.COMPLETED, "noted")
    raw = stored.payload
    assert raw["failed_at"] == clock.now().isoformat(timespec="microseconds")


async def test_a_retried_attempt_enqueues_no_dead_letter(timed: Queue) -> None:
    attempts: list[int] = []

    @timed.handler("flaky", max_attempts=3, retry_delay=0)
    async def flaky(payload: dict[str, Any]) -> None:
        attempts.append(1)
        if len(attempts) < 2:
            raise RuntimeError("once")

    @timed.handler("flaky_failed")
    async def flaky_failed(letter: DeadLetter) -> None:
        raise AssertionError("must not run")

    await timed.add_job("flaky", dead_letter_job_type="flaky_failed")
    await run_due_jobs(timed)
    assert len(attempts) == 2
    assert (await timed.list_jobs(job_type="flaky_failed")).items == []


async def test_a_job_type_can_declare_its_dead_letter_type(timed: Queue) -> None:
    letters: list[DeadLetter] = []
    register(timed, letters)

    @timed.handler("notify", max_attempts=1, dead_letter_job_type="charge_failed")
    async def notify(payload: dict[str, Any]) -> None:
        raise RuntimeError("smtp down")

    job_id = await timed.add_job("notify")
    job = await timed.get_job(job_id)
    assert job is not None
    assert job.dead_letter_job_type == "charge_failed"
    await run_due_jobs(timed)
    assert [letter.job_id for letter in letters] == [job_id]


async def test_a_worker_that_died_on_the_last_attempt_dead_letters_the_job(
    timed: Queue, clock: FrozenClock
) -> None:
    job_id = await timed.add_job("orphan", max_attempts=1, dead_letter_job_type="orphan_failed")
    [claimed] = await timed.backend.claim(
        worker_id="dead-worker",
        queue=None,
        job_types=None,
        limit=1,
        lease_seconds=30,
        now=clock.now(),
    )
    assert claimed.id == job_id
    clock.advance(31)
    assert (await timed.maintain()).rescued == [job_id]
    [letter] = (await timed.list_jobs(job_type="orphan_failed")).items
    envelope = DeadLetter.model_validate(letter.payload)
    assert envelope.job_id == job_id
    assert envelope.error is not None
    assert envelope.error.reason is FailureReason.LEASE_EXPIRED
    assert envelope.failed_at == clock.now()


async def test_cancelled_jobs_are_not_dead_lettered(timed: Queue) -> None:
    job_id = await timed.add_job("charge", dead_letter_job_type="charge_failed")
    await timed.cancel_job(job_id)
    assert (await timed.list_jobs(job_type="charge_failed")).items == []


async def test_each_failure_after_a_manual_retry_enqueues_its_own_dead_letter(
    timed: Queue,
) -> None:
    letters: list[DeadLetter] = []
    register(timed, letters)
    job_id = await timed.add_job("charge", {"card": "1"}, dead_letter_job_type="charge_failed")
    await run_due_jobs(timed)
    await timed.retry_job(job_id)
    await run_due_jobs(timed)
    assert [letter.job_id for letter in letters] == [job_id, job_id]
    assert len(letters[1].error_history) == 4  # the history is kept across the retry
    assert isinstance(letters[1].failed_at, datetime)
