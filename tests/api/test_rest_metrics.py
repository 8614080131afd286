"""`/metrics` on every store: gauges equal the store's counts, counters follow the feed."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from agentqueue.models import WorkerInfo
from agentqueue.testing import run_due_jobs
from tests.api.conftest import Api
from tests.conftest import eventually


async def scrape(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The samples of one scrape, by (name, sorted labels)."""
    answer = await api.client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


async def test_metrics_match_the_store_and_count_outcomes(api: Api) -> None:
    attempts: dict[int, int] = {}

    @api.queue.handler("ok")
    async def ok(payload: dict[str, Any]) -> None:
        return None

    @api.queue.handler("flaky", max_attempts=2, retry_delay=0)
    async def flaky(payload: dict[str, Any], ctx: Any) -> None:
        attempts[ctx.job_id] = ctx.attempt
        raise RuntimeError("no")

    await api.app.state.metrics.ready.wait()
    for _ in range(3):
        await api.client.post("/api/v1/jobs", json={"job_type": "ok"})
    await api.client.post("/api/v1/jobs", json={"job_type": "flaky"})
    waiting = await api.client.post("/api/v1/jobs", json={"job_type": "later", "delay": 3600})
    assert waiting.status_code == 201
    await run_due_jobs(api.queue)
    await api.queue.backend.beat_worker(
        WorkerInfo(
            id="w",
            hostname="h",
            pid=1,
            concurrency=8,
            running=3,
            started_at=api.queue.clock.now(),
            last_seen_at=api.queue.clock.now(),
        )
    )

    async def counted() -> Any:
        samples = await scrape(api)
        done = samples.get(("agentqueue_jobs_failed_total", (("job_type", "flaky"),)), 0)
        return samples if done == 1 else None

    samples = await eventually(counted)
    stats = await api.queue.stats()
    for job_type, counts in stats.by_type.items():
        for status, count in counts.items():
            key = ("agentqueue_jobs", (("job_type", job_type), ("status", status.value)))
            assert samples[key] == count, key
    assert samples[("agentqueue_jobs_enqueued_total", (("job_type", "ok"),))] == 3
    assert samples[("agentqueue_jobs_completed_total", (("job_type", "ok"),))] == 3
    assert samples[("agentqueue_jobs_retried_total", (("job_type", "flaky"),))] == 1
    assert samples[("agentqueue_job_run_seconds_count", (("job_type", "ok"),))] == 3
    assert samples[("agentqueue_job_wait_seconds_count", (("job_type", "flaky"),))] == 2
    assert samples[("agentqueue_workers_alive", ())] == 1
    assert samples[("agentqueue_worker_running_jobs", ())] == 3
    assert samples[("agentqueue_worker_slots", ())] == 8
    assert samples[("agentqueue_oldest_pending_seconds", ())] == 0  # the pending one is not due
