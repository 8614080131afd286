"""`RedisBackend`: the `Backend` protocol on Redis (`redis://host:6379/0?prefix=myapp`).

Every write operation is one Lua script call (`scripts/*.lua`), so each is atomic and writes
its job events in the same step; reads are plain commands. The data model is in `keys.py`,
the encoding of values in `codec.py`; the operations are split like the SQL store's:
`produce.py` (enqueue), `consume.py` (claim, heartbeat, outcomes, rescue), `operate.py`
(operator reads and changes), `events.py` (the feed and the wake-ups), `registry.py`,
`durable.py` (steps, waits, tokens, retention), and `cron.py` (schedules: the cron methods, in
its `CronStore` base class).

Time is Redis' own clock (`TIME`, read inside the scripts) unless the caller passes `now`, so
leases agree across machines. Needs Redis 7.0 or newer with `maxmemory-policy noeviction`
(checked when the store opens; see `schema.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from agentqueue.backends.base import (
    Capabilities,
    HeartbeatResult,
    InsertJob,
    InsertResult,
    Lease,
    Outcome,
    PurgeResult,
    SuspendResult,
    TokenCompletion,
)
from agentqueue.backends.redis import (
    admin,
    consume,
    durable,
    events,
    limits,
    operate,
    produce,
    registry,
    schema,
)
from agentqueue.backends.redis.client import RedisClient, options_from_client
from agentqueue.backends.redis.cron import CronStore
from agentqueue.backends.redis.events import ChangeWatcher
from agentqueue.backends.redis.keys import DEFAULT_PREFIX, RedisOptions, parse_url
from agentqueue.errors import InvalidArgument
from agentqueue.models import (
    ApiKey,
    AuditRecord,
    Job,
    JobEdit,
    JobEvent,
    JobFilter,
    JobTypeInfo,
    Limit,
    LimitScope,
    ListOrder,
    QueueStats,
    Token,
    TokenStatus,
    WorkerInfo,
)
from agentqueue.states import JobStatus


class RedisBackend(CronStore):
    """The Redis store; see the module docstring."""

    capabilities = Capabilities(
        transactional_enqueue=False, cross_process_wakeup=True, durable=True
    )

    def __init__(self, options: RedisOptions) -> None:
        self.options = options
        self.eviction_policy: str | None = None
        """The server's `maxmemory-policy` as read at open (None: unknown, CONFIG disabled).
        Anything but `noeviction` can silently delete jobs; opening logs a warning."""
        self._client: RedisClient | None = None
        self._watcher: ChangeWatcher | None = None
        self._due: dict[tuple[Any, ...], consume.Due] = {}
        """`next_due` per claim filter as the last claim saw it (see `next_due`)."""
        self._claimed_as_of: dict[tuple[Any, ...], int] = {}
        """The event counter of each worker's last claim, by (worker id, claim filter)."""

    @classmethod
    def from_url(cls, url: str) -> RedisBackend:
        """Build the store from a URL (see `keys.parse_url`)."""
        return cls(parse_url(url))

    @classmethod
    def from_client(cls, client: Any, *, prefix: str = DEFAULT_PREFIX) -> RedisBackend:
        """Build the store on the server of a redis-py asyncio client the caller owns.

        The store connects with the client's settings on connections of its own and never
        closes the client (see `client.options_from_client`).

        Raises:
            ConfigError: not a redis-py asyncio client, or a bad prefix.
        """
        return cls(options_from_client(client, prefix))

    @property
    def _db(self) -> RedisClient:
        # Connections are made on first use, so a closed store can be opened again.
        if self._client is None:
            self._client = RedisClient(self.options)
        return self._client

    @property
    def _changes(self) -> ChangeWatcher:
        if self._watcher is None:
            self._watcher = ChangeWatcher(self._db, 0)
        return self._watcher

    def _seen(self, event_id: int) -> None:
        """A write of this process committed events up to `event_id`: wake local waiters."""
        if event_id:
            self._changes.seen(event_id)

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self, *, migrate: bool = False) -> None:
        """See `Backend.open`."""
        self.eviction_policy = await schema.check_server(self._db)
        if migrate:
            await schema.migrate(self._db)
        else:
            await schema.check(self._db)
        self._seen(await events.last_event_id(self._db))

    async def other_libraries(self) -> list[str]:
        """The agentqueue function libraries of other versions on the server (see
        `RedisClient.other_libraries`); `agentqueue doctor` reports them."""
        return await self._db.other_libraries()

    async def close(self) -> None:
        """See `Backend.close`."""
        self._due.clear()
        self._claimed_as_of.clear()
        watcher, self._watcher = self._watcher, None
        client, self._client = self._client, None
        if watcher is not None:
            await watcher.stop()
        if client is not None:
            await client.close()

    async def migrate(self) -> list[str]:
        """See `Backend.migrate`."""
        return await schema.migrate(self._db)

    # -- produce -----------------------------------------------------------------------------
    async def insert_jobs(
        self,
        new_jobs: Sequence[InsertJob],
        *,
        now: datetime | None = None,
        connection: Any = None,
        audit: Callable[[list[InsertResult]], AuditRecord] | None = None,
    ) -> list[InsertResult]:
        """See `Backend.insert_jobs` (no `connection`: Redis has no transaction to join; the
        `audit` record is appended right after the jobs)."""
        if connection is not None:
            raise InvalidArgument(
                "transactional enqueue (connection=...) needs the PostgreSQL store; "
                "Redis has no transaction to join"
            )
        if not new_jobs:
            return []
        results, event_id = await produce.insert(self._db, new_jobs, now)
        self._seen(event_id)
        if audit is not None:
            await self.write_audit(audit(results))
        return results

    # -- consume -----------------------------------------------------------------------------
    async def claim(
        self,
        *,
        worker_id: str,
        queue: str | None,
        job_types: Sequence[str] | None,
        limit: int,
        lease_seconds: float,
        now: datetime | None = None,
    ) -> list[Job]:
        """See `Backend.claim`."""
        if limit <= 0:
            return []
        return await self._claim(worker_id, queue, job_types, limit, lease_seconds, now)

    async def _claim(
        self,
        worker_id: str,
        queue: str | None,
        job_types: Sequence[str] | None,
        limit: int,
        lease_seconds: float,
        now: datetime | None,
    ) -> list[Job]:
        """Run the claim script (limit 0: take nothing, learn `next_due`)."""
        jobs, _last_event, due = await consume.claim(
            self._db,
            worker_id=worker_id,
            queue=queue,
            job_types=job_types,
            limit=limit,
            lease_seconds=lease_seconds,
            now=now,
        )
        self._claimed(worker_id, queue, job_types, due)
        return jobs

    async def claim_after_change(
        self,
        *,
        worker_id: str,
        queue: str | None,
        job_types: Sequence[str] | None,
        limit: int,
        lease_seconds: float,
        since: int,
        timeout: float,
        interrupt: asyncio.Event,
    ) -> list[Job]:
        """See `ClaimsAfterChange.claim_after_change`.

        The wait is a blocking read of the events stream pipelined before the claim script
        (`RedisClient.run_after_change`): the server starts the claim as it writes the event,
        so a job enqueued for an idle worker costs no round trip after its insert. It waits
        from this worker's last claim of the filter (its event counter covers everything that
        claim saw) or from `since`, whichever is newer.
        """
        if limit <= 0:
            return []
        key = consume.filter_key(queue, job_types)
        after = max(since, self._claimed_as_of.get((worker_id, key), 0))
        jobs, _last_event, due = await consume.claim_after_change(
            self._db,
            worker_id=worker_id,
            queue=queue,
            job_types=job_types,
            limit=limit,
            lease_seconds=lease_seconds,
            after=after,
            timeout=timeout,
            interrupt=interrupt,
        )
        self._claimed(worker_id, queue, job_types, due)
        return jobs

    def _claimed(
        self, worker_id: str, queue: str | None, job_types: Sequence[str] | None, due: consume.Due
    ) -> None:
        """Remember what a claim saw: for `next_due` and the next `claim_after_change`."""
        # The counter covers this claim's own events and any other commit before it.
        self._seen(due.as_of)
        key = consume.filter_key(queue, job_types)
        self._due[key] = due
        self._claimed_as_of[worker_id, key] = due.as_of

    async def heartbeat(
        self,
        *,
        worker_id: str,
        leases: Sequence[Lease],
        lease_seconds: float,
        now: datetime | None = None,
    ) -> HeartbeatResult:
        """See `Backend.heartbeat`."""
        if not leases:
            return HeartbeatResult()
        return await consume.heartbeat(
            self._db, worker_id=worker_id, leases=leases, lease_seconds=lease_seconds, now=now
        )

    async def finish(
        self, *, worker_id: str, outcomes: Sequence[Outcome], now: datetime | None = None
    ) -> set[int]:
        """See `Backend.finish`."""
        if not outcomes:
            return set()
        lost, event_id = await consume.finish(
            self._db, worker_id=worker_id, outcomes=outcomes, now=now
        )
        self._seen(event_id)
        return lost

    async def set_progress(
        self,
        *,
        worker_id: str,
        lease: Lease,
        progress: int,
        message: str | None,
        now: datetime | None = None,
    ) -> bool:
        """See `Backend.set_progress`."""
        held, event_id = await consume.set_progress(
            self._db, worker_id=worker_id, lease=lease, progress=progress, message=message, now=now
        )
        self._seen(event_id)
        return held

    async def set_output(
        self, *, worker_id: str, lease: Lease, output: Any, now: datetime | None = None
    ) -> bool:
        """See `Backend.set_output`."""
        held, event_id = await durable.set_output(
            self._db, worker_id=worker_id, lease=lease, output=output, now=now
        )
        self._seen(event_id)
        return held

    # -- durable execution -------------------------------------------------------------------
    async def load_steps(self, job_id: int) -> dict[str, Any]:
        """See `Backend.load_steps`."""
        return await durable.load_steps(self._db, job_id)

    async def save_step(
        self,
        *,
        worker_id: str,
        lease: Lease,
        name: str,
        value: Any,
        now: datetime | None = None,
    ) -> bool:
        """See `Backend.save_step`."""
        held, event_id = await durable.save_step(
            self._db, worker_id=worker_id, lease=lease, name=name, value=value, now=now
        )
        self._seen(event_id)
        return held

    async def suspend(
        self,
        *,
        worker_id: str,
        lease: Lease,
        until: datetime,
        token_id: str | None = None,
        now: datetime | None = None,
    ) -> SuspendResult:
        """See `Backend.suspend`."""
        result, event_id = await durable.suspend(
            self._db, worker_id=worker_id, lease=lease, until=until, token_id=token_id, now=now
        )
        self._seen(event_id)
        return result

    async def resume_due(self, *, now: datetime | None = None, limit: int = 1000) -> list[int]:
        """See `Backend.resume_due`."""
        if limit <= 0:
            return []
        resumed, event_id = await durable.resume_due(self._db, now, limit)
        self._seen(event_id)
        return resumed

    async def create_token(
        self,
        *,
        token_id: str,
        job_id: int | None,
        step: str | None,
        expires_at: datetime | None,
        tags: Sequence[str],
        now: datetime | None = None,
    ) -> Token:
        """See `Backend.create_token`."""
        return await durable.create_token(
            self._db,
            token_id=token_id,
            job_id=job_id,
            step=step,
            expires_at=expires_at,
            tags=tags,
            now=now,
        )

    async def complete_token(
        self, token_id: str, data: Any, *, now: datetime | None = None
    ) -> TokenCompletion:
        """See `Backend.complete_token`."""
        result, event_id = await durable.complete_token(self._db, token_id, data, now)
        self._seen(event_id)
        return result

    async def get_token(self, token_id: str) -> Token | None:
        """See `Backend.get_token`."""
        return await durable.get_token(self._db, token_id)

    async def list_tokens(
        self,
        *,
        status: Sequence[TokenStatus] | None = None,
        tags: Sequence[str] | None = None,
        job_id: int | None = None,
        limit: int = 100,
    ) -> list[Token]:
        """See `Backend.list_tokens`."""
        return await durable.list_tokens(
            self._db, status=status, tags=tags, job_id=job_id, limit=limit
        )

    async def expire_tokens(self, *, now: datetime | None = None, limit: int = 1000) -> list[str]:
        """See `Backend.expire_tokens`."""
        if limit <= 0:
            return []
        expired, event_id = await durable.expire_tokens(self._db, now, limit)
        self._seen(event_id)
        return expired

    async def purge(
        self,
        *,
        finished_before: datetime | None,
        events_before: datetime | None,
        limit: int = 1000,
    ) -> PurgeResult:
        """See `Backend.purge`."""
        if limit <= 0 or (finished_before is None and events_before is None):
            return PurgeResult()
        return await durable.purge(
            self._db, finished_before=finished_before, events_before=events_before, limit=limit
        )

    async def delete_jobs(self, ids: Sequence[int]) -> list[int]:
        """See `Backend.delete_jobs`."""
        if not ids:
            return []
        return await durable.delete_jobs(self._db, ids)

    async def next_due(
        self,
        *,
        queue: str | None,
        job_types: Sequence[str] | None,
        now: datetime | None = None,
    ) -> datetime | None:
        """See `Backend.next_due` (for due jobs: the run_at of the next one in claim order, or
        the next one flow limits admit).

        A worker asks right after a claim that came back short. The claim's reply carries the
        answer as of its event counter; while this process has seen no newer event (and its
        watcher is subscribed, so it would have), that is still the answer, without a round
        trip. An event whose message is still on its way is no loss: it wakes the waiter, which
        claims and asks again.
        """
        key = consume.filter_key(queue, job_types)
        known = self._due.get(key)
        watcher = self._watcher
        if known and watcher and watcher.live and known.as_of == watcher.latest:
            return known.run_at
        # The claim script answers for the filter (flow limits included) when told to take none.
        await self._claim("", queue, job_types, 0, 0, now)
        return self._due[key].run_at

    # -- doors -------------------------------------------------------------------------------
    async def beat_worker(self, info: WorkerInfo, *, now: datetime | None = None) -> None:
        """See `Backend.beat_worker`."""
        await admin.beat_worker(self._db, info, now)

    async def remove_worker(self, worker_id: str) -> None:
        """See `Backend.remove_worker`."""
        await admin.remove_worker(self._db, worker_id)

    async def list_workers(self, *, seen_after: datetime | None = None) -> list[WorkerInfo]:
        """See `Backend.list_workers`."""
        return await admin.list_workers(self._db, seen_after)

    async def forget_workers(self, *, seen_before: datetime) -> int:
        """See `Backend.forget_workers`."""
        return await admin.forget_workers(self._db, seen_before)

    async def put_api_key(self, key: ApiKey, secret_hash: str) -> None:
        """See `Backend.put_api_key`."""
        await admin.put_api_key(self._db, key, secret_hash)

    async def find_api_key(self, secret_hash: str) -> ApiKey | None:
        """See `Backend.find_api_key`."""
        return await admin.find_api_key(self._db, secret_hash)

    async def list_api_keys(self) -> list[ApiKey]:
        """See `Backend.list_api_keys`."""
        return await admin.list_api_keys(self._db)

    async def revoke_api_key(self, name: str, *, now: datetime | None = None) -> ApiKey | None:
        """See `Backend.revoke_api_key`."""
        return await admin.revoke_api_key(self._db, name, now)

    async def write_audit(self, record: AuditRecord) -> AuditRecord:
        """See `Backend.write_audit`."""
        return await admin.write_audit(self._db, record)

    async def list_audit(
        self, *, limit: int = 100, before_id: int | None = None
    ) -> list[AuditRecord]:
        """See `Backend.list_audit`."""
        return await admin.list_audit(self._db, limit, before_id)

    async def purge_audit(self, *, before: datetime, limit: int = 1000) -> int:
        """See `Backend.purge_audit`."""
        return await admin.purge_audit(self._db, before, limit)

    # -- flow limits -------------------------------------------------------------------------
    async def update_limit(
        self,
        scope: LimitScope,
        key: str,
        changes: dict[str, Any],
        *,
        now: datetime | None = None,
    ) -> Limit | None:
        """See `Backend.update_limit`."""
        stored, event_id = await limits.update(self._db, scope, key, changes, now)
        self._seen(event_id)
        return stored

    async def list_limits(self) -> list[Limit]:
        """See `Backend.list_limits`."""
        return await limits.list_all(self._db)

    async def remove_limit(self, scope: LimitScope, key: str) -> bool:
        """See `Backend.remove_limit`."""
        removed, event_id = await limits.remove(self._db, scope, key)
        self._seen(event_id)
        return removed

    def change_token(self) -> int:
        """See `Backend.change_token`: the newest event id this process knows of."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self._changes.latest
        self._changes.start()
        return self._changes.latest

    async def wait_for_change(self, timeout: float, since: int | None = None) -> bool:
        """See `Backend.wait_for_change`."""
        if since is None:
            since = self.change_token()
        return await self._changes.wait(timeout, since)

    # -- operate -----------------------------------------------------------------------------
    async def get_job(self, job_id: int) -> Job | None:
        """See `Backend.get_job`."""
        return await operate.get_job(self._db, job_id)

    async def list_jobs(
        self, filter: JobFilter, *, limit: int, after_id: int | None, order: ListOrder
    ) -> list[Job]:
        """See `Backend.list_jobs`."""
        return await operate.list_jobs(
            self._db, filter, limit=limit, after_id=after_id, order=order
        )

    async def cancel_job(self, job_id: int, *, now: datetime | None = None) -> Job:
        """See `Backend.cancel_job`."""
        return await operate.cancel(self._db, job_id, now, self._seen)

    async def retry_job(self, job_id: int, *, now: datetime | None = None) -> Job:
        """See `Backend.retry_job`."""
        return await operate.retry(self._db, job_id, now, self._seen)

    async def edit_job(self, job_id: int, edit: JobEdit, *, now: datetime | None = None) -> Job:
        """See `Backend.edit_job`."""
        return await operate.edit(self._db, job_id, edit, now, self._seen)

    async def stats(self) -> QueueStats:
        """See `Backend.stats`."""
        return await operate.stats(self._db)

    async def finished_counts(
        self, *, since: datetime, bucket_seconds: int
    ) -> list[tuple[int, JobStatus, int]]:
        """See `Backend.finished_counts`."""
        return await operate.finished_counts(self._db, since, bucket_seconds)

    # -- maintain ----------------------------------------------------------------------------
    async def rescue_expired(self, *, now: datetime | None = None) -> list[int]:
        """See `Backend.rescue_expired`."""
        rescued, event_id = await consume.rescue(self._db, now)
        self._seen(event_id)
        return rescued

    # -- events ------------------------------------------------------------------------------
    async def job_events(self, job_id: int) -> list[JobEvent]:
        """See `Backend.job_events`."""
        return await events.job_events(self._db, job_id)

    async def read_events(
        self,
        *,
        after: str | None,
        limit: int,
        job_id: int | None = None,
        job_types: Sequence[str] | None = None,
        queues: Sequence[str] | None = None,
    ) -> list[JobEvent]:
        """See `Backend.read_events`."""
        return await events.read_events(
            self._db, after=after, limit=limit, job_id=job_id, job_types=job_types, queues=queues
        )

    async def latest_event_cursor(self) -> str | None:
        """See `Backend.latest_event_cursor`."""
        latest = await events.last_event_id(self._db)
        return str(latest) if latest else None

    # -- registry ----------------------------------------------------------------------------
    async def publish_job_types(
        self, types: Sequence[JobTypeInfo], *, now: datetime | None = None
    ) -> None:
        """See `Backend.publish_job_types`."""
        if types:
            await registry.publish(self._db, types, now)

    async def list_job_types(self) -> list[JobTypeInfo]:
        """See `Backend.list_job_types`."""
        return await registry.list_types(self._db)
