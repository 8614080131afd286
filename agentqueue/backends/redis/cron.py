"""Cron schedules on the Redis store: store and read schedules, find due ones, fire a tick once.

- **Schedules**: one hash per schedule, `cron:<name>` (times in epoch microseconds, payload
  and options as JSON text; a field that is absent is null). `options` holds only the fields
  the schedule set (`model_dump(mode="json", exclude_unset=True)`), so it loads back as an
  equal `JobOptions` with the same fields set. `crons` (score 0, so by name) lists them;
  `cron_due` holds the active ones that have a next tick, by `next_run_at`.
- **Writes** are one script each (`scripts/cron_*.lua`): `cron_put` (a replaced schedule keeps
  its created_at, last_run_at and last_job_id), `cron_remove`, and `cron_fire`, which checks
  "still active, and `next_run_at` is still this tick", moves the schedule on, checks the
  previous job (overlap) and inserts the tick's job with the insert script's own code
  (`_insert.lua`: the same hash, indexes, counts, `added` event and wake-up; a taken
  idempotency key gives the existing job). Redis runs one script at a time, so of any number
  of schedulers firing a tick exactly one finds it still there.
- **Due schedules** are one read script (`read_cron_due`: the server's clock, the due names
  and their hashes in one round trip), as the supervisor asks every second in every worker.

Costs: put, remove and fire are O(log n) in the number of schedules (a fire adds the cost of
an insert); `due_cron_jobs` is O(log n + due); `list_cron_jobs` reads every schedule.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from datetime import datetime
from typing import Any

from agentqueue.backends.base import CronFire, InsertJob
from agentqueue.backends.redis import codec
from agentqueue.backends.redis.client import RedisClient
from agentqueue.backends.redis.consume import server_now
from agentqueue.backends.redis.produce import job_args
from agentqueue.models import CronJob, CronStatus

_TIMES = ("next_run_at", "last_run_at", "created_at", "updated_at")


def cron_from_hash(fields: dict[str, str]) -> CronJob:
    """Build a `CronJob` from its hash."""
    values: dict[str, Any] = {
        name: fields[name]
        for name in ("name", "expression", "timezone", "job_type", "status")
        if name in fields
    }
    values["payload"] = json.loads(fields["payload"])
    values["options"] = json.loads(fields["options"])
    values["allow_overlap"] = fields.get("allow_overlap") == "1"
    values["dead_letter_job_type"] = fields.get("dead_letter_job_type")
    values["last_job_id"] = int(fields["last_job_id"]) if "last_job_id" in fields else None
    for name in _TIMES:
        values[name] = codec.from_micros(fields[name]) if name in fields else None
    return CronJob.model_validate(values)


def cron_reply(text: str) -> CronJob | None:
    """Build a `CronJob` from a script's reply: its hash as a JSON array (None: no hash)."""
    flat = json.loads(text)
    if not flat:  # cjson encodes an empty table as {}
        return None
    return cron_from_hash(dict(zip(flat[::2], flat[1::2], strict=True)))


def _optional_time(value: datetime | None) -> str:
    return "" if value is None else str(codec.micros(value))


def _definition(cron: CronJob) -> list[str]:
    """The fields `put` replaces, as field, value pairs (see cron_put.lua)."""
    pairs = [
        "expression",
        cron.expression,
        "timezone",
        cron.timezone,
        "job_type",
        cron.job_type,
        "payload",
        codec.dumps(cron.payload),
        "options",
        codec.dumps(cron.options.model_dump(mode="json", exclude_unset=True)),
        "allow_overlap",
        codec.flag(cron.allow_overlap),
    ]
    if cron.dead_letter_job_type is not None:
        pairs += ["dead_letter_job_type", cron.dead_letter_job_type]
    return pairs


async def put(client: RedisClient, cron: CronJob, now: datetime | None) -> CronJob:
    """Insert or replace a schedule; see `Backend.put_cron_job`."""
    args = [
        codec.now_arg(now),
        cron.name,
        CronStatus(cron.status).value,
        _optional_time(cron.next_run_at),
        _optional_time(cron.created_at),
        _optional_time(cron.last_run_at),
        "" if cron.last_job_id is None else str(cron.last_job_id),
        *_definition(cron),
    ]
    stored = cron_reply(await client.run("cron_put", args))
    assert stored is not None  # the script just wrote it
    return stored


async def get(client: RedisClient, name: str) -> CronJob | None:
    """Return one schedule, or None."""
    fields = await client.call(lambda r: r.hgetall(client.keys.cron(name)))
    return cron_from_hash(fields) if fields else None


async def list_all(client: RedisClient, status: CronStatus | None) -> list[CronJob]:
    """Return the schedules by name, all or those of one status."""
    keys = client.keys

    async def read(r: Any) -> list[dict[str, str]]:
        names: list[str] = await r.zrange(keys.crons, 0, -1)
        if not names:
            return []
        async with r.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(keys.cron(name))
            return await pipe.execute()

    wanted = None if status is None else CronStatus(status).value
    # A schedule removed between the two reads has no hash any more: skipped.
    return [
        cron_from_hash(fields)
        for fields in await client.call(read)
        if fields and (wanted is None or fields.get("status") == wanted)
    ]


async def remove(client: RedisClient, name: str) -> bool:
    """Delete a schedule (its jobs stay); False if there was none."""
    return int(await client.run("cron_remove", [name])) == 1


async def due(client: RedisClient, now: datetime | None, limit: int) -> list[CronJob]:
    """Return active schedules whose next tick is at or before now, earliest first."""
    found: list[str] = await client.run("read_cron_due", [codec.now_arg(now), str(limit)])
    return [cron for cron in map(cron_reply, found) if cron is not None]


async def fire(
    client: RedisClient,
    *,
    name: str,
    tick: datetime,
    next_run_at: datetime | None,
    job: InsertJob,
    now: datetime | None,
) -> tuple[CronFire, int]:
    """Fire one tick of a schedule; see `Backend.fire_cron`. Return the result and the last
    event id written (0: none)."""
    args = [
        codec.now_arg(now),
        name,
        str(codec.micros(tick)),
        _optional_time(next_run_at),
        *job_args(job),  # the insert script's arguments of one job
    ]
    won, job_id, skipped, event_id = await client.run("cron_fire", args)
    result = CronFire(
        won=int(won) == 1,
        job_id=int(job_id) if job_id else None,
        skipped_overlap=int(skipped) == 1,
    )
    return result, int(event_id)


class CronStore(ABC):
    """The cron methods of the `Backend` protocol on Redis (a base of `RedisBackend`, which
    supplies the client and the local wake-up)."""

    @property
    @abstractmethod
    def _db(self) -> RedisClient:
        """The store's client."""

    @abstractmethod
    def _seen(self, event_id: int) -> None:
        """A write of this process committed events up to `event_id`: wake local waiters."""

    async def put_cron_job(self, cron: CronJob, *, now: datetime | None = None) -> CronJob:
        """See `Backend.put_cron_job`."""
        return await put(self._db, cron, now)

    async def get_cron_job(self, name: str) -> CronJob | None:
        """See `Backend.get_cron_job`."""
        return await get(self._db, name)

    async def list_cron_jobs(self, *, status: CronStatus | None = None) -> list[CronJob]:
        """See `Backend.list_cron_jobs`."""
        return await list_all(self._db, status)

    async def remove_cron_job(self, name: str) -> bool:
        """See `Backend.remove_cron_job`."""
        return await remove(self._db, name)

    async def due_cron_jobs(
        self, *, now: datetime | None = None, limit: int = 100
    ) -> list[CronJob]:
        """See `Backend.due_cron_jobs`."""
        if limit <= 0:
            return []
        return await due(self._db, now, limit)

    async def store_now(self) -> datetime:
        """See `Backend.store_now`: Redis' `TIME`."""
        return await server_now(self._db)

    async def fire_cron(
        self,
        *,
        name: str,
        tick: datetime,
        next_run_at: datetime | None,
        job: InsertJob,
        now: datetime | None = None,
    ) -> CronFire:
        """See `Backend.fire_cron`: one script (`cron_fire.lua`)."""
        result, event_id = await fire(
            self._db, name=name, tick=tick, next_run_at=next_run_at, job=job, now=now
        )
        self._seen(event_id)
        return result
