"""Redis: the claim and finish scripts gather their index writes (status sets, counts, ready and
scheduled sets, leases, the finished index, running groups) and write each key once per batch.
After big batches every index must still say exactly what the job hashes say."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis

from agentqueue import FailureReason, JobStatus, Queue
from agentqueue.backends.base import Lease, Outcome, OutcomeKind
from agentqueue.backends.redis import RedisBackend
from agentqueue.models import ErrorRecord

SETS = ("ready", "sched")
T0 = datetime.now(UTC) + timedelta(hours=1)
"""The claims' clock: every job added without `run_at` is due by then."""


def store_of(queue: Queue) -> RedisBackend:
    backend = queue.backend
    assert isinstance(backend, RedisBackend)
    return backend


async def indexes_agree_with_hashes(raw: aioredis.Redis, queue: Queue, now_us: int) -> None:
    """Rebuild every index from the job hashes and compare it with what the store holds."""
    keys = store_of(queue)._db.keys
    ids = [int(i) for i in await raw.zrange(keys.all, 0, -1)]
    jobs: list[dict[str, str]] = [await raw.hgetall(keys.job(i)) for i in ids]
    counts: Counter[str] = Counter()
    statuses: dict[str, set[str]] = {}
    groups: Counter[str] = Counter()
    expected_sets: dict[str, set[str]] = {}
    for job in jobs:
        status, job_type, name = job["status"], job["job_type"], job["queue"]
        counts[f"{status}:{job_type}"] += 1
        statuses.setdefault(status, set()).add(job["id"])
        if status == "processing" and "group" in job:
            groups[job["group"]] += 1
        if status == "pending":
            due = int(job["run_at"]) <= now_us
            kind = "ready" if due else "sched"
            member = f"{int(job['run_at']):016d}:{int(job['id']):016d}" if due else job["id"]
            for filter_queue in (None, name):
                for filter_type in (None, job_type):
                    key = keys.variant(kind, filter_queue, filter_type)
                    expected_sets.setdefault(key, set()).add(member)
    stored_counts = {k: int(v) for k, v in (await raw.hgetall(keys.counts)).items()}
    assert {k: v for k, v in stored_counts.items() if v} == dict(counts)
    for status in ("pending", "processing", "completed", "failed", "cancelled"):
        assert set(await raw.zrange(keys.status(status), 0, -1)) == statuses.get(status, set())
    running = {k: int(v) for k, v in (await raw.hgetall(f"{keys.tag}:running_groups")).items()}
    assert {k: v for k, v in running.items() if v} == dict(groups)
    assert set(await raw.zrange(keys.leases, 0, -1)) == statuses.get("processing", set())
    ended = statuses.get("completed", set()) | statuses.get("failed", set())
    assert set(await raw.zrange(f"{keys.tag}:finished", 0, -1)) == ended
    for name in ("default", "q2"):
        for job_type in (None, "a", "b"):
            for filter_queue in (None, name):
                for kind in SETS:
                    key = keys.variant(kind, filter_queue, job_type)
                    stored = set(await raw.zrange(key, 0, -1))
                    assert stored == expected_sets.get(key, set()), key


def _spec(n: int) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "job_type": "a" if n % 2 else "b",
        "queue": "q2" if n % 3 == 0 else "default",
        "payload": {"n": n},
    }
    if n % 4 == 0:
        spec["group"] = "g1"
    if n % 5 == 0:
        spec["run_at"] = T0 + timedelta(seconds=30)  # due only for the second claim
    return spec


async def test_big_claim_and_finish_batches_keep_every_index_in_step(redis_url: str) -> None:
    raw = aioredis.Redis.from_url(redis_url.split("?")[0], decode_responses=True)
    async with Queue(redis_url) as queue:
        store = store_of(queue)
        await queue.add_jobs([_spec(n) for n in range(1, 61)])

        def us(delta: float) -> int:
            return int((T0 + timedelta(seconds=delta)).timestamp() * 1_000_000)

        # The first claim takes every due job; the scheduled ones stay where they are.
        first = await store.claim(
            worker_id="w", queue=None, job_types=None, limit=100, lease_seconds=60, now=T0
        )
        assert len(first) == 48
        await indexes_agree_with_hashes(raw, queue, us(0))

        # One finish of 48 outcomes of every kind; the retried ones go back at once.
        error = ErrorRecord(attempt=1, at=T0, reason=FailureReason.HANDLER_ERROR, message="x")
        outcomes = []
        for n, job in enumerate(first):
            lease = Lease(job.id, job.attempts)
            if n % 3 == 0:
                outcomes.append(Outcome(OutcomeKind.COMPLETE, lease, output=n))
            elif n % 3 == 1:
                outcomes.append(Outcome(OutcomeKind.RETRY, lease, error=error, retry_in=0))
            else:
                outcomes.append(Outcome(OutcomeKind.FAIL, lease, error=error))
        lost = await store.finish(worker_id="w", outcomes=outcomes, now=T0)
        assert lost == set()
        await indexes_agree_with_hashes(raw, queue, us(0))

        # A claim that promotes the scheduled jobs and takes them in the same script, with the
        # retried ones.
        second = await store.claim(
            worker_id="w",
            queue=None,
            job_types=None,
            limit=100,
            lease_seconds=60,
            now=T0 + timedelta(seconds=31),
        )
        assert len(second) == 12 + 16
        await indexes_agree_with_hashes(raw, queue, us(31))
        done = [Outcome(OutcomeKind.COMPLETE, Lease(j.id, j.attempts)) for j in second]
        assert (
            await store.finish(worker_id="w", outcomes=done, now=T0 + timedelta(seconds=31))
            == set()
        )
        await indexes_agree_with_hashes(raw, queue, us(31))
        totals = (await queue.stats()).totals
        assert totals.get(JobStatus.COMPLETED, 0) + totals.get(JobStatus.FAILED, 0) == 60
    await raw.aclose()
