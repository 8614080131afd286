"""The ack batcher never drops an outcome because its store raised something unexpected."""

from __future__ import annotations

from typing import Any

from agentqueue import JobStatus, Queue
from agentqueue.backends.base import Lease, Outcome, OutcomeKind
from agentqueue.worker.acks import AckBatcher


class _FailsOnce:
    """The queue's real store, whose first `finish` raises an error no store should raise
    (as an asyncpg quirk once did): a bug somewhere below must not lose the outcome."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def finish(self, **kwargs: Any) -> set[int]:
        if not self.failed:
            self.failed = True
            raise RuntimeError("cannot switch to state 12; another operation is in progress")
        return await self._store.finish(**kwargs)


async def test_an_outcome_whose_write_raised_an_unexpected_error_is_written_on_retry(
    queue: Queue,
) -> None:
    job_id = await queue.add_job("a")
    [job] = await queue.backend.claim(
        worker_id="w", queue=None, job_types=None, limit=1, lease_seconds=30
    )
    store = _FailsOnce(queue.backend)
    acks = AckBatcher(store, "w", give_up_after=30)  # pyright: ignore[reportArgumentType]
    applied = acks.submit(Outcome(OutcomeKind.COMPLETE, Lease(job.id, job.attempts), output=1))
    await acks.drain()
    assert store.failed
    assert await applied is True
    done = await queue.get_job(job_id)
    assert done is not None
    assert (done.status, done.output) == (JobStatus.COMPLETED, 1)
