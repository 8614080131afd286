"""Operator-side reads and changes of the Redis store: get, list, stats, cancel, retry, edit.

`list_jobs` walks one id index in id order (the smallest of the candidate indexes: the
statuses, job types or queues asked for, a tag, or all jobs), reads the jobs in batches and
applies every filter here. Cost: O(jobs walked), which is the page size when the walked index
is the only filter and grows with how many jobs other filters reject. `stats` reads one hash
that every script keeps up to date.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from agentqueue.backends.redis import codec
from agentqueue.backends.redis.client import RedisClient, ScriptRefused
from agentqueue.errors import InvalidTransition, JobNotFound
from agentqueue.models import Job, JobEdit, JobFilter, ListOrder, QueueStats, TagMode
from agentqueue.states import JobStatus, Transition, allowed_sources


async def get_job(client: RedisClient, job_id: int) -> Job | None:
    """Return one job, or None."""
    fields = await client.call(lambda r: r.hgetall(client.keys.job(job_id)))
    return codec.job_from_hash(fields) if fields else None


async def _fetch(client: RedisClient, ids: list[int]) -> list[Job]:
    if not ids:
        return []
    found: list[list[str]] = json.loads(await client.run("read_jobs", [str(i) for i in ids]))
    return [codec.job_from_flat(flat) for flat in found]


def _tags_match(job: Job, tags: list[str], mode: TagMode) -> bool:
    have, wanted = set(job.tags), set(tags)
    if mode is TagMode.ANY:
        return bool(have & wanted)
    if mode is TagMode.NONE:
        return not have & wanted
    if mode is TagMode.ALL:
        return wanted <= have
    return have == wanted


def _matches(job: Job, f: JobFilter) -> bool:
    checks = (
        not f.status or job.status in f.status,
        not f.job_type or job.job_type in f.job_type,
        not f.queue or job.queue in f.queue,
        f.tags is None or _tags_match(job, f.tags, f.tag_mode),
        f.created_after is None or job.created_at >= f.created_after,
        f.created_before is None or job.created_at < f.created_before,
        f.run_at_after is None or job.run_at >= f.run_at_after,
        f.run_at_before is None or job.run_at < f.run_at_before,
        f.created_by is None or (job.origin is not None and job.origin.actor == f.created_by),
    )
    return all(checks)


def _candidate_indexes(client: RedisClient, f: JobFilter) -> list[list[str]]:
    """Index sets whose union holds every job the filter can match (each option alone)."""
    keys = client.keys
    options = [[keys.all]]
    if f.status:
        options.append([keys.status(s.value) for s in f.status])
    if f.job_type:
        options.append([keys.job_type(t) for t in f.job_type])
    if f.queue:
        options.append([keys.queue(q) for q in f.queue])
    if f.created_by is not None:
        options.append([keys.created_by(f.created_by)])
    if f.tags and f.tag_mode is TagMode.ANY:
        options.append([keys.tag_ids(t) for t in f.tags])
    elif f.tags and f.tag_mode in (TagMode.ALL, TagMode.EXACT):
        options += [[keys.tag_ids(t)] for t in f.tags]
    return options


async def _smallest(client: RedisClient, options: list[list[str]]) -> list[str]:
    async def sizes(r: Any) -> list[int]:
        async with r.pipeline(transaction=False) as pipe:
            for option in options:
                for key in option:
                    pipe.zcard(key)
            return await pipe.execute()

    counts = iter(await client.call(sizes))
    totals = [sum(next(counts) for _ in option) for option in options]
    return options[totals.index(min(totals))]


async def _walk(
    client: RedisClient, sources: list[str], after_id: int | None, newest: bool, batch: int
) -> AsyncIterator[list[int]]:
    """Yield the ids of the union of `sources` in id order, batch by batch, after the cursor."""
    cursor = after_id
    while True:
        low = "-inf" if cursor is None or newest else f"({cursor}"
        high = "+inf" if cursor is None or not newest else f"({cursor}"

        async def page(r: Any, low: str = low, high: str = high) -> list[list[str]]:
            async with r.pipeline(transaction=False) as pipe:
                for key in sources:
                    if newest:
                        pipe.zrevrangebyscore(key, high, low, start=0, num=batch)
                    else:
                        pipe.zrangebyscore(key, low, high, start=0, num=batch)
                return await pipe.execute()

        pages = [[int(i) for i in ids] for ids in await client.call(page)]
        ids = sorted({i for ids in pages for i in ids}, reverse=newest)
        full = [ids for ids in pages if len(ids) == batch]
        if not full:
            yield ids
            return
        # Past the last id of a full page, that source may hold more ids: stop at the nearest.
        bound = max(p[-1] for p in full) if newest else min(p[-1] for p in full)
        yield [i for i in ids if (i >= bound if newest else i <= bound)]
        cursor = bound


async def list_jobs(
    client: RedisClient, f: JobFilter, *, limit: int, after_id: int | None, order: ListOrder
) -> list[Job]:
    """See `Backend.list_jobs`."""
    if f.tags == [] and f.tag_mode is TagMode.ANY:
        return []  # "at least one of no tags" matches nothing
    sources = await _smallest(client, _candidate_indexes(client, f))
    found: list[Job] = []
    batch = max(limit, 100)
    async for ids in _walk(client, sources, after_id, order is ListOrder.NEWEST, batch):
        for job in await _fetch(client, ids):
            if _matches(job, f):
                found.append(job)
                if len(found) == limit:
                    return found
    return found


async def stats(client: RedisClient) -> QueueStats:
    """Count jobs per job type and status."""
    counts = await client.call(lambda r: r.hgetall(client.keys.counts))
    by_type: dict[str, dict[JobStatus, int]] = {}
    totals = dict.fromkeys(JobStatus, 0)
    for field, value in counts.items():
        status, job_type = field.split(":", 1)
        if int(value) > 0:
            per_type = by_type.setdefault(job_type, dict.fromkeys(JobStatus, 0))
            per_type[JobStatus(status)] += int(value)
            totals[JobStatus(status)] += int(value)
    return QueueStats(by_type=by_type, totals=totals)


async def finished_counts(
    client: RedisClient, since: datetime, bucket_seconds: int
) -> list[tuple[int, JobStatus, int]]:
    """See `Backend.finished_counts`: one read-only script over the `finished` index."""
    found: dict[str, int] = json.loads(
        await client.run("read_finished", [codec.micros(since), bucket_seconds * 1_000_000])
    )
    rows: list[tuple[int, JobStatus, int]] = []
    for name, count in found.items():
        bucket, status = name.split(":", 1)
        rows.append((int(bucket), JobStatus(status), int(count)))
    return rows


def _sources(transition: Transition) -> str:
    return "," + ",".join(sorted(s.value for s in allowed_sources(transition))) + ","


async def _change(
    client: RedisClient,
    script: str,
    job_id: int,
    transition: Transition,
    action: str,
    args: list[str],
    seen: Callable[[int], None],
) -> Job:
    try:
        event_id, fields = await client.run(script, args)
    except ScriptRefused as refused:
        if refused.reason == "not_found":
            raise JobNotFound(job_id) from None
        allowed = sorted(s.value for s in allowed_sources(transition))
        raise InvalidTransition(
            f"cannot {action} job {job_id}: it is {refused.status}; {action} applies to "
            f"{', '.join(allowed)} jobs",
            job_id=job_id,
            status=refused.status,
            allowed=allowed,
        ) from None
    seen(int(event_id))
    return codec.job_reply(fields)


async def cancel(
    client: RedisClient, job_id: int, now: datetime | None, seen: Callable[[int], None]
) -> Job:
    """Cancel a pending/waiting job, or ask a processing one to stop (once)."""
    args = [codec.now_arg(now), str(job_id), _sources(Transition.CANCEL)]
    return await _change(client, "cancel", job_id, Transition.CANCEL, "cancel", args, seen)


async def retry(
    client: RedisClient, job_id: int, now: datetime | None, seen: Callable[[int], None]
) -> Job:
    """Put a failed or cancelled job back to pending now with fresh attempts."""
    args = [codec.now_arg(now), str(job_id), _sources(Transition.RETRY)]
    return await _change(client, "retry", job_id, Transition.RETRY, "retry", args, seen)


_ENCODE: dict[str, Callable[[Any], str]] = {
    "payload": codec.dumps,
    "priority": str,
    "run_at": lambda value: str(codec.micros(value)),
    "tags": codec.dumps,
    "max_attempts": str,
    "retry_delay": codec.number,
    "retry_backoff": codec.flag,
    "retry_delay_max": codec.number,
    "timeout": codec.number,
    "queue": str,
}


async def edit(
    client: RedisClient,
    job_id: int,
    change: JobEdit,
    now: datetime | None,
    seen: Callable[[int], None],
) -> Job:
    """Apply `change` to a pending job and record which fields changed."""
    values = change.model_dump(exclude_unset=True)
    to_set: list[str] = []
    to_drop: list[str] = []
    for name, value in values.items():
        if value is None and name != "payload":
            to_drop.append(name)  # no timeout / no cap: the field is absent, i.e. null
        else:
            to_set += [name, _ENCODE[name](value)]
    args = [
        codec.now_arg(now),
        str(job_id),
        _sources(Transition.EDIT),
        codec.dumps({"fields": sorted(values)}),
        codec.flag("tags" in values),
        str(len(to_set) // 2),
        *to_set,
        *to_drop,
    ]
    return await _change(client, "edit", job_id, Transition.EDIT, "edit", args, seen)
