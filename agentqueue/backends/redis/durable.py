"""Durable execution on the Redis store: output now, memoized steps, waits, tokens, retention.

Each write is one script (`scripts/<name>.lua`; the ones that close tokens or resume jobs
share `_durable.lua`), so it is atomic and writes its events in the same step. Worker writes
(output, steps, suspend) are fenced inside the script like `set_progress`.

- **Steps**: one hash per job, `job:<id>:steps` (name -> JSON); HSETNX keeps a name's first
  value, and only a stored step writes a `step` event.
- **Waits**: a waiting job is in `waiting` by wake-up time (`run_at`) and, when it waits on a
  token, in `token_waiters:<token>`. `resume_due` reads the due ones and a script re-checks
  and resumes them (like the rescue sweep), so the `resume` event can carry the wake-up time
  as ISO text, which Lua cannot format.
- **Tokens**: a hash per token; `tokens`, `token_status:<s>` and `token_tag:<tag>` (by
  created_at) and `job:<id>:tokens` serve `list_tokens`; `token_expiry` holds the pending
  tokens by expiry for `expire_tokens`; `job:<id>:token_steps` (step -> token id) makes a
  replayed `create_token` return the token its first run made, checked and written in the
  same script. Closing a token (complete or expire) resumes its waiters in the same script;
  Redis runs one script at a time, so one of any number of concurrent completions wins.
- **Retention**: scripts that end a job index it in `finished` by completed_at; the purge
  deletes the oldest with every key of theirs (events, steps, tokens, index entries, counts,
  idempotency key). Old events are cut from the head of the stream (stream ids are event ids,
  not times) and from the head of each job's history list.

Costs: output, step and suspend are O(log n); a token close is O(log n) per index plus its
waiters; `list_tokens` walks the smallest candidate index newest first (O(tokens walked));
the purge is O(log n) per deleted job plus its events and tokens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from agentqueue.backends.base import (
    Lease,
    PurgeResult,
    SuspendResult,
    TokenCompletion,
    TokenCompletionKind,
)
from agentqueue.backends.redis import codec
from agentqueue.backends.redis.client import RedisClient, ScriptRefused
from agentqueue.backends.redis.consume import server_now
from agentqueue.errors import InvalidArgument, TokenNotFound
from agentqueue.models import Token, TokenStatus


def _fence(worker_id: str, lease: Lease, now: datetime | None) -> list[str]:
    return [codec.now_arg(now), worker_id, str(lease.job_id), str(lease.attempt)]


async def set_output(
    client: RedisClient, *, worker_id: str, lease: Lease, output: Any, now: datetime | None
) -> tuple[bool, int]:
    """Store a running job's output; return whether the lease was held and the event id."""
    args = [*_fence(worker_id, lease, now), codec.dumps(output)]
    event_id, held = await client.run("output", args)
    return int(held) == 1, int(event_id)


async def load_steps(client: RedisClient, job_id: int) -> dict[str, Any]:
    """Return a job's memoized steps by name."""
    stored = await client.call(lambda r: r.hgetall(client.keys.job_steps(job_id)))
    return {name: json.loads(value) for name, value in stored.items()}


async def save_step(
    client: RedisClient,
    *,
    worker_id: str,
    lease: Lease,
    name: str,
    value: Any,
    now: datetime | None,
) -> tuple[bool, int]:
    """Memoize a step under a held lease; return whether it was held and the event id."""
    args = [
        *_fence(worker_id, lease, now),
        name,
        codec.dumps(value),
        codec.dumps({"name": name}),
    ]
    event_id, held = await client.run("save_step", args)
    return int(held) == 1, int(event_id)


async def suspend(
    client: RedisClient,
    *,
    worker_id: str,
    lease: Lease,
    until: datetime,
    token_id: str | None,
    now: datetime | None,
) -> tuple[SuspendResult, int]:
    """processing -> waiting under a held lease; see `Backend.suspend`.

    Raises:
        TokenNotFound: `token_id` names no token (nothing is written).
    """
    wait = {"until": until.astimezone(UTC).isoformat(), "token": token_id}
    args = [
        *_fence(worker_id, lease, now),
        str(codec.micros(until)),
        token_id or "",
        codec.dumps(wait),
        codec.dumps({"attempt": lease.attempt}),
    ]
    try:
        reply = await client.run("suspend", args)
    except ScriptRefused as refused:
        if refused.reason == "token_not_found" and token_id is not None:
            raise TokenNotFound(token_id) from None
        raise
    if reply[0] == "lost":
        return SuspendResult(suspended=False, lost=True), 0
    if reply[0] == "suspended":
        return SuspendResult(suspended=True), int(reply[1])
    return SuspendResult(suspended=False, token=codec.token_reply(reply[2])), int(reply[1])


async def resume_due(
    client: RedisClient, now: datetime | None, limit: int
) -> tuple[list[int], int]:
    """Resume waiting jobs whose time came; return their ids (sorted) and the last event id."""
    at_us = codec.micros(now if now is not None else await server_now(client))
    keys = client.keys
    due: list[str] = await client.call(
        lambda r: r.zrangebyscore(keys.waiting, "-inf", at_us, start=0, num=limit)
    )
    if not due:
        return [], 0

    async def read_rows(r: Any) -> list[list[str | None]]:
        async with r.pipeline(transaction=False) as pipe:
            for job_id in due:
                pipe.hmget(keys.job(int(job_id)), "run_at", "waiting_for")
            return await pipe.execute()

    args = [str(at_us)]
    for job_id, (run_at, token_id) in zip(due, await client.call(read_rows), strict=True):
        if run_at is None:
            continue  # gone; the script would skip it anyway
        data: dict[str, Any] = {"until": codec.from_micros(run_at).isoformat()}
        if token_id is not None:
            data["token"] = token_id
        args += [job_id, run_at, codec.dumps(data)]
    if len(args) == 1:
        return [], 0
    reply = await client.run("resume", args)
    return sorted(int(job_id) for job_id in reply[1:]), int(reply[0])


async def create_token(
    client: RedisClient,
    *,
    token_id: str,
    job_id: int | None,
    step: str | None,
    expires_at: datetime | None,
    tags: Sequence[str],
    now: datetime | None,
) -> Token:
    """Store a pending token, or return the one this job step made before.

    Raises:
        InvalidArgument: the id belongs to a token of another job or step.
    """
    unique_tags = list(dict.fromkeys(tags))
    args = [
        codec.now_arg(now),
        token_id,
        "" if job_id is None else str(job_id),
        step or "",
        "" if expires_at is None else str(codec.micros(expires_at)),
        codec.dumps(unique_tags),
        *unique_tags,
    ]
    try:
        _created, token = await client.run("create_token", args)
    except ScriptRefused as refused:
        if refused.reason != "token_taken":
            raise
        raise InvalidArgument(
            f"token id {token_id!r} is already used by another token; pick a new id",
            token_id=token_id,
        ) from None
    return codec.token_reply(token)


async def complete_token(
    client: RedisClient, token_id: str, data: Any, now: datetime | None
) -> tuple[TokenCompletion, int]:
    """Complete a pending token and resume its waiters; see `Backend.complete_token`."""
    kind, event_id, resumed, token = await client.run(
        "complete_token", [codec.now_arg(now), token_id, codec.dumps(data)]
    )
    return (
        TokenCompletion(
            TokenCompletionKind(kind),
            codec.token_reply(token) if token else None,
            int(resumed) if resumed else None,
        ),
        int(event_id),
    )


async def get_token(client: RedisClient, token_id: str) -> Token | None:
    """Return one token, or None."""
    fields = await client.call(lambda r: r.hgetall(client.keys.token(token_id)))
    return codec.token_from_hash(fields) if fields else None


async def list_tokens(
    client: RedisClient,
    *,
    status: Sequence[TokenStatus] | None,
    tags: Sequence[str] | None,
    job_id: int | None,
    limit: int,
) -> list[Token]:
    """Return tokens newest first; see `Backend.list_tokens`."""
    if limit <= 0 or (tags is not None and not tags):
        return []  # "any of no tags" matches nothing
    statuses = sorted({TokenStatus(s).value for s in status or ()})
    args = [
        str(limit),
        "" if job_id is None else str(job_id),
        "," + ",".join(statuses) + "," if statuses else "",
        codec.flag(tags is not None),
        *dict.fromkeys(tags or ()),
    ]
    found: list[list[str]] = json.loads(await client.run("read_tokens", args))
    return [codec.token_from_flat(flat) for flat in found]


async def expire_tokens(
    client: RedisClient, now: datetime | None, limit: int
) -> tuple[list[str], int]:
    """Expire pending tokens past their expiry; return their ids (sorted), last event id."""
    reply = await client.run("expire_tokens", [codec.now_arg(now), str(limit)])
    return sorted(reply[1:]), int(reply[0])


async def purge(
    client: RedisClient,
    *,
    finished_before: datetime | None,
    events_before: datetime | None,
    limit: int,
) -> PurgeResult:
    """Delete a batch of old finished jobs and a batch of old events; see `Backend.purge`.

    `events` counts the events deleted for their age, not those deleted with their job.
    """
    args = [
        "" if finished_before is None else str(codec.micros(finished_before)),
        "" if events_before is None else str(codec.micros(events_before)),
        str(limit),
    ]
    jobs, events = await client.run("purge", args)
    return PurgeResult(jobs=int(jobs), events=int(events))


async def delete_jobs(client: RedisClient, ids: Sequence[int]) -> list[int]:
    """Delete those of `ids` that are finished; see `Backend.delete_jobs`."""
    args = ["", "", "0", *(str(job_id) for job_id in ids)]
    _jobs, _events, *deleted = await client.run("purge", args)
    return [int(job_id) for job_id in deleted]
