"""examples/fastapi_sse: a FastAPI app enqueues a report and streams its progress over SSE."""

from __future__ import annotations

import signal

import httpx
import pytest

from tests.acceptance.procs import until
from tests.api.conftest import free_port
from tests.api.sse import messages
from tests.examples.conftest import Runner, answers

pytestmark = pytest.mark.slow


async def test_the_app_streams_a_reports_progress_until_it_completes(runner: Runner) -> None:
    port = free_port()
    server = runner.start("fastapi_sse", "-m", "uvicorn", "app:app", "--port", str(port))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        await until(
            "the app answers", lambda: answers(client, "/docs"), timeout=30, workers=[server]
        )
        made = await client.post(
            "/reports", json={"title": "Q3", "pages": 4, "seconds_per_page": 0.05}
        )
        assert made.status_code == 201
        async with client.stream("GET", made.json()["events"]) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            seen = [message async for message in messages(stream)]
        assert (await client.get("/reports/999/events")).status_code == 404

    *progress, last = seen
    assert [m.event for m in progress] == ["progress"] * len(progress)
    values = [m.data["data"]["progress"] for m in progress]
    # Progress writes are coalesced, so steps may be merged (the last one may even land after
    # the completion and be dropped); the order never goes back.
    assert values
    assert values == sorted(values)
    assert set(values) <= {25, 50, 75, 100}
    assert last.event == "completed"
    assert last.data == {"output": {"title": "Q3", "pages": 4}}
    # SIGTERM: the app's lifespan drains the in-process worker (uvicorn then re-raises the
    # signal, so the exit code is -SIGTERM rather than 0).
    server.process.send_signal(signal.SIGTERM)
    assert server.wait_exit(20) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in server.output()
