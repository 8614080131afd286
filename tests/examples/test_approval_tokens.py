"""examples/approval_tokens: jobs wait on approval tokens; one is approved from Python
(approve.py), one rejected over REST; each job then finishes with the decision."""

from __future__ import annotations

import signal

import pytest

from agentqueue import Job, Queue
from tests.acceptance.procs import until
from tests.api.conftest import running_api
from tests.examples.conftest import Runner

pytestmark = pytest.mark.slow
EXAMPLE = "approval_tokens"


async def test_a_post_is_published_after_approval_and_dropped_after_rejection(
    runner: Runner,
) -> None:
    worker = runner.agentqueue(EXAMPLE, "worker", "--app", "jobs:queue", "--concurrency", "2")
    approved, rejected = map(
        int, runner.run(EXAMPLE, "request.py", "Hello world", "Long read").split()
    )

    async with Queue(runner.url) as queue:

        async def status(job_id: int) -> Job:
            job = await queue.get_job(job_id)
            assert job is not None
            return job

        async def both(wanted: str) -> bool:
            return all([(await status(j)).status == wanted for j in (approved, rejected)])

        await until(
            "both jobs wait for approval", lambda: both("waiting"), timeout=30, workers=[worker]
        )

        # A reviewer answers from Python ...
        said = runner.run(EXAMPLE, "approve.py", str(approved), "--by", "ana")
        assert "completed" in said
        # ... another over REST, as a web page or a chat bot would.
        async with running_api(Queue(runner.url)) as api:
            [token] = (
                await api.client.get(
                    "/api/v1/tokens", params={"job_id": rejected, "status": "pending"}
                )
            ).json()
            answer = await api.client.post(
                f"/api/v1/tokens/{token['id']}/complete",
                json={"data": {"approved": False, "by": "bo", "note": "too long"}},
            )
            assert answer.status_code == 200

        await until("both jobs finish", lambda: both("completed"), timeout=30, workers=[worker])
        assert (await status(approved)).output == {
            "published": True,
            "url": "https://blog.example/hello-world",
            "by": "ana",
        }
        assert (await status(rejected)).output == {
            "published": False,
            "reason": "too long",
            "by": "bo",
        }

    # The reviewer was asked once per job, although each handler ran twice (before and after
    # its wait): the notice is a step.
    assert worker.output().count("approval needed for") == 2
    worker.process.send_signal(signal.SIGTERM)
    assert worker.wait_exit(30) == 0, worker.output()
