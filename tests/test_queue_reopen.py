"""A closed queue opens again: a script may use one `Queue` in several `asyncio.run` calls
(the CLI does, when two commands load the same `--app` module in one process)."""

from __future__ import annotations

import asyncio

from agentqueue import Queue


def test_a_closed_queue_opens_again_in_a_new_event_loop(store_url: str) -> None:
    queue = Queue(store_url)

    async def session() -> str:
        async with queue:
            job_id = await queue.add_job("mail", {"to": "a"})
            job = await queue.get_job(job_id)
            assert job is not None
            return job.status.value

    assert asyncio.run(session()) == "pending"
    assert asyncio.run(session()) == "pending"  # raised "cannot schedule new futures" on SQLite


def test_a_reopened_queue_still_hears_commits_of_other_connections(shared_url: str) -> None:
    queue = Queue(shared_url)

    async def first() -> None:
        async with queue:
            await queue.add_job("mail")

    async def second() -> bool:
        async with queue, Queue(shared_url) as other:
            token = queue.backend.change_token()
            await other.add_job("mail")
            # SQLite's watcher thread of the first session was stopped by its close; without a
            # new one this wait sleeps out its whole timeout.
            return await queue.backend.wait_for_change(10, token)

    asyncio.run(first())
    assert asyncio.run(second()) is True
