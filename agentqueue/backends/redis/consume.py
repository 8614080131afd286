"""The worker side of the Redis store: claim, heartbeat, outcomes, progress, rescue.

Each write is one script call; fencing (status processing, same worker, same attempt) is
checked inside the script, so nothing can change between the check and the write.

Costs: a claim is O(k log n + limit) for k job types (one ready set per type, merged), plus
O(log n) once per delayed job when it falls due; heartbeat, finish and progress are O(log n)
per job; a rescue sweep with nothing expired is one ZRANGEBYSCORE.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agentqueue.backends.base import HeartbeatResult, Lease, Outcome, OutcomeKind
from agentqueue.backends.redis import codec
from agentqueue.backends.redis.client import RedisClient
from agentqueue.models import ErrorRecord, FailureReason, Job

logger = logging.getLogger(__name__)

RESCUE_BATCH = 500
"""Expired leases taken back per script call (a sweep repeats until none is left)."""


async def claim(
    client: RedisClient,
    *,
    worker_id: str,
    queue: str | None,
    job_types: Sequence[str] | None,
    limit: int,
    lease_seconds: float,
    now: datetime | None,
) -> tuple[list[Job], int, Due]:
    """Claim due jobs; return them in claim order, the last event id (0: none) and what
    `next_due` would answer for the same filter right after the claim."""
    args = _claim_args(worker_id, queue, job_types, limit, lease_seconds, now)
    return _claimed(await client.run("claim", args))


async def claim_after_change(
    client: RedisClient,
    *,
    worker_id: str,
    queue: str | None,
    job_types: Sequence[str] | None,
    limit: int,
    lease_seconds: float,
    after: int,
    timeout: float,
    interrupt: asyncio.Event,
) -> tuple[list[Job], int, Due]:
    """`claim`, run by the server once an event newer than `after` is written (or `timeout`
    passed, or `interrupt` was set): see `RedisClient.run_after_change`. Redis' clock."""
    args = _claim_args(worker_id, queue, job_types, limit, lease_seconds, None)
    reply = await client.run_after_change(
        "claim", args, after=after, timeout=timeout, interrupt=interrupt
    )
    return _claimed(reply)


def _claim_args(
    worker_id: str,
    queue: str | None,
    job_types: Sequence[str] | None,
    limit: int,
    lease_seconds: float,
    now: datetime | None,
) -> list[str]:
    """The arguments of claim.lua."""
    types = list(dict.fromkeys(job_types or ()))  # a type named twice would be taken twice
    return [
        codec.now_arg(now),
        worker_id,
        str(limit),
        str(codec.duration_us(lease_seconds)),
        "" if queue is None else queue,
        *types,
    ]


def _claimed(reply: list[Any]) -> tuple[list[Job], int, Due]:
    """Read claim.lua's reply: the jobs, the last event id and the filter's `next_due`."""
    jobs = [codec.job_reply(text) for text in reply[3:]]
    due = Due(int(reply[1]), codec.due_from_micros(reply[2]) if reply[2] else None)
    return jobs, int(reply[0]), due


@dataclass(frozen=True, slots=True)
class Due:
    """`next_due` of one claim filter, as of an event counter."""

    as_of: int
    """The newest event id when it was read: it holds until an event newer than that."""
    run_at: datetime | None
    """The earliest run_at of a pending job the filter could take (None: no such job)."""


def filter_key(queue: str | None, job_types: Sequence[str] | None) -> tuple[Any, ...]:
    """One key per claim filter (the job types as a claim takes them: ordered, each once)."""
    return (queue, *dict.fromkeys(job_types or ()))


def _lease_args(leases: Sequence[Lease]) -> list[str]:
    return [str(value) for lease in leases for value in (lease.job_id, lease.attempt)]


async def heartbeat(
    client: RedisClient,
    *,
    worker_id: str,
    leases: Sequence[Lease],
    lease_seconds: float,
    now: datetime | None,
) -> HeartbeatResult:
    """Extend held leases; see `Backend.heartbeat`."""
    args = [codec.now_arg(now), worker_id, str(codec.duration_us(lease_seconds))]
    lost, cancel = await client.run("heartbeat", args + _lease_args(leases))
    return HeartbeatResult(
        lost={int(job_id) for job_id in lost},
        cancel_requested={int(job_id) for job_id in cancel},
    )


def event_data(outcome: Outcome, *, worker: str | None = None) -> str:
    """The event data of an outcome, as the SQL stores write it."""
    if outcome.error is None and worker is None and outcome.kind is not OutcomeKind.RETRY:
        # The common case (a completion) without building and encoding a dict: the same text
        # `codec.dumps` writes for {"attempt": n}.
        return f'{{"attempt":{outcome.lease.attempt:d}}}'
    data: dict[str, Any] = {"attempt": outcome.lease.attempt}
    if outcome.error is not None:
        data |= {"error": outcome.error.message, "reason": outcome.error.reason.value}
    if outcome.kind is OutcomeKind.RETRY:
        data["retry_in"] = outcome.retry_in
    if worker is not None:
        data["worker"] = worker
    return codec.dumps(data)


def _error_args(outcome: Outcome) -> list[str]:
    error = outcome.error
    if error is None:
        return ["", "", ""]
    return [codec.error_json(error), error.message, error.reason.value]


async def finish(
    client: RedisClient, *, worker_id: str, outcomes: Sequence[Outcome], now: datetime | None
) -> tuple[set[int], int]:
    """Apply outcomes of held leases; return the lost job ids and the last event id."""
    args = [codec.now_arg(now), worker_id]
    for outcome in outcomes:
        args += [
            str(outcome.lease.job_id),
            str(outcome.lease.attempt),
            outcome.kind.value,
            "null" if outcome.output is None else codec.dumps(outcome.output),
            *_error_args(outcome),
            str(codec.duration_us(outcome.retry_in)) if outcome.retry_in else "0",
            event_data(outcome),
        ]
    reply = await client.run("finish", args)
    return {int(job_id) for job_id in reply[1:]}, int(reply[0])


async def set_progress(
    client: RedisClient,
    *,
    worker_id: str,
    lease: Lease,
    progress: int,
    message: str | None,
    now: datetime | None,
) -> tuple[bool, int]:
    """Record progress under a held lease; return whether it was held and the event id."""
    args = [
        codec.now_arg(now),
        worker_id,
        str(lease.job_id),
        str(lease.attempt),
        str(progress),
        message or "",
        codec.flag(message is not None),
        codec.dumps({"progress": progress, "message": message}),
    ]
    event_id, held = await client.run("progress", args)
    return int(held) == 1, int(event_id)


async def server_now(client: RedisClient) -> datetime:
    """Return Redis' clock."""
    seconds, microseconds = await client.call(lambda r: r.time())
    return codec.from_micros(int(seconds) * 1_000_000 + int(microseconds))


async def rescue(client: RedisClient, now: datetime | None) -> tuple[list[int], int]:
    """Take back expired leases; return the rescued ids (sorted) and the last event id."""
    at = now if now is not None else await server_now(client)
    at_us = codec.micros(at)
    keys = client.keys
    rescued: list[int] = []
    last_event = 0
    while True:
        expired: list[str] = await client.call(
            lambda r: r.zrangebyscore(keys.leases, "-inf", f"({at_us}", start=0, num=RESCUE_BATCH)
        )
        if not expired:
            break

        async def read_rows(r: Any, ids: list[str] = expired) -> list[list[str | None]]:
            async with r.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hmget(keys.job(int(job_id)), "attempts", "max_attempts", "locked_by")
                return await pipe.execute()

        args = [str(at_us)]
        for job_id, (attempts, max_attempts, worker) in zip(
            expired, await client.call(read_rows), strict=True
        ):
            if attempts is None or worker is None:
                continue  # not processing any more; the script re-checks anyway
            attempt = int(attempts)
            kind = OutcomeKind.RETRY if attempt < int(max_attempts or 0) else OutcomeKind.FAIL
            error = ErrorRecord(
                attempt=attempt,
                at=at,
                reason=FailureReason.LEASE_EXPIRED,
                message=f"lease expired on worker {worker} (crashed, killed or stalled)",
            )
            outcome = Outcome(kind=kind, lease=Lease(int(job_id), attempt), error=error)
            args += [job_id, attempts, worker, kind.value, *_error_args(outcome)]
            args.append(event_data(outcome, worker=worker))
        reply = await client.run("rescue", args)
        rescued += [int(job_id) for job_id in reply[1:]]
        last_event = max(last_event, int(reply[0]))
        if len(expired) < RESCUE_BATCH or len(reply) == 1:
            break
    if rescued:
        logger.warning("rescued %d job(s) with expired leases: %s", len(rescued), sorted(rescued))
    return sorted(rescued), last_event
