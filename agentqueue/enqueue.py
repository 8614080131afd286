"""From what a caller asks to enqueue to what a store inserts.

`Resolver` validates a `NewJob` (payload against the handler's model or the store's published
schema, options), applies the handler's defaults and the queue's, resolves the dead-letter job
type's options and the batch's dependency refs, and returns `InsertJob`s every store can
insert without further thought. `JobId` is what `add_job` returns: an id that says whether
this call created the job.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from agentqueue import config
from agentqueue.backends.base import InsertJob
from agentqueue.errors import InvalidArgument
from agentqueue.models import JobOptions, JobTypeInfo, NewJob
from agentqueue.registry import check_plain_json, payload_value, validate_stored

if TYPE_CHECKING:
    from agentqueue.queue import Queue

REGISTRY_TTL = 2.0
"""Seconds a process trusts its copy of the store's job-type registry."""


class JobId(int):
    """A job id (an `int`) that also says whether the call that returned it created the job.

    `created` is False when an `idempotency_key` matched an existing job, whose id this is.
    """

    created: bool

    def __new__(cls, value: int, created: bool = True) -> JobId:
        """Make the id `value`; `created` False for an idempotency-key duplicate."""
        job_id = super().__new__(cls, value)
        job_id.created = created
        return job_id

    def __repr__(self) -> str:
        return f"JobId({int(self)}, created={self.created})"

    def __str__(self) -> str:
        # int's str() falls back to repr(): keep the plain number for keys, logs and text.
        return int.__repr__(self)


def parse_new_job(job: NewJob | dict[str, Any]) -> NewJob:
    """Return `job` as a `NewJob`, or raise `InvalidArgument` naming the bad fields."""
    if isinstance(job, NewJob):
        return job
    raw = dict(job)
    raw["payload"] = payload_value(raw.get("payload", {}))
    try:
        return NewJob.model_validate(raw)
    except ValidationError as error:
        from agentqueue.queue import invalid_from  # the queue module imports this one

        raise invalid_from(error, "job") from None


class Resolver:
    """Turns `NewJob`s into `InsertJob`s for one queue (its registry and its store)."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self._stored_types: dict[str, JobTypeInfo] = {}
        self._stored_types_at = -REGISTRY_TTL

    def forget_stored_types(self) -> None:
        """Reread the store's registry at the next lookup (after publishing to it)."""
        self._stored_types_at = -REGISTRY_TTL

    async def stored_type(self, name: str) -> JobTypeInfo | None:
        """Return the job type as published in the store (cached for `REGISTRY_TTL`)."""
        if time.monotonic() - self._stored_types_at > REGISTRY_TTL:
            store = await self.queue._store()  # pyright: ignore[reportPrivateUsage]
            self._stored_types = {info.name: info for info in await store.list_job_types()}
            self._stored_types_at = time.monotonic()
        return self._stored_types.get(name)

    async def check_payload(self, job_type: str, payload: Any) -> None:
        """Validate a payload against the local handler, else the published schema, if any.

        Raises:
            PayloadInvalid: with one entry per problem.
        """
        spec = self.queue.registry.get(job_type)
        if spec is not None:
            spec.parse(payload)
        elif (stored := await self.stored_type(job_type)) is not None:
            validate_stored(stored, payload)

    async def defaults(self, job_type: str) -> JobOptions:
        """Return the options a job of this type gets unless the caller sets them: the local
        handler's, else those published by a process that has the handler (with its queue)."""
        spec = self.queue.registry.get(job_type)
        if spec is not None:
            return spec.defaults
        stored = await self.stored_type(job_type)
        if stored is not None:
            # A process without the handler (the CLI, another service) must still give the job
            # its handler's queue and options, or workers serving that queue miss it.
            return stored.defaults.model_copy(update={"queue": stored.queue})
        return JobOptions()

    async def resolve(self, job: NewJob | dict[str, Any]) -> InsertJob:
        """Resolve one job that names no batch refs (see `resolve_batch`)."""
        return (await self.resolve_batch([job]))[0]

    async def resolve_batch(self, jobs: Sequence[NewJob | dict[str, Any]]) -> list[InsertJob]:
        """Resolve the jobs of one `add_jobs` call, in order.

        A `depends_on` entry that is a string names the `ref` of an earlier job of the same
        call; a job can only depend on jobs that exist or come before it, so a cycle cannot
        be formed.

        Raises:
            PayloadInvalid: a payload does not match its job type's schema.
            InvalidArgument: a malformed option, an unknown or later ref, a duplicate ref.
        """
        parsed = [parse_new_job(job) for job in jobs]
        refs: dict[str, int] = {}
        resolved: list[InsertJob] = []
        for index, job in enumerate(parsed):
            ids: list[int] = []
            batch: list[int] = []
            for item in job.depends_on:
                if isinstance(item, int):
                    ids.append(item)
                elif item in refs:
                    batch.append(refs[item])
                else:
                    raise InvalidArgument(
                        f"job {index} depends on {item!r}, which is not the ref of an earlier "
                        "job in this add_jobs call: list a job before the jobs that depend on "
                        "it (dependencies cannot form a cycle)"
                    )
            if job.ref is not None:
                if job.ref in refs:
                    raise InvalidArgument(f"ref {job.ref!r} is given to two jobs of this call")
                refs[job.ref] = index
            resolved.append(await self._resolve_one(job, tuple(ids), tuple(batch)))
        return resolved

    async def _resolve_one(
        self, job: NewJob, depends_on: tuple[int, ...], depends_on_batch: tuple[int, ...]
    ) -> InsertJob:
        if job.run_at is not None and job.delay is not None:
            raise InvalidArgument("give run_at or delay, not both")
        payload = payload_value(job.payload)
        await self.check_payload(job.job_type, payload)
        defaults = await self.defaults(job.job_type)
        try:
            check_plain_json(payload)
        except (TypeError, ValueError) as error:
            raise InvalidArgument(f"payload must be plain JSON data: {error}") from None

        def pick(name: str, fallback: Any) -> Any:
            value = getattr(job, name)
            if name in job.model_fields_set and value is not None:
                return value
            default = getattr(defaults, name)
            return default if default is not None else fallback

        timeout = pick("timeout", None)
        force_kill = bool(pick("force_kill_on_timeout", False))
        if force_kill and timeout is None:
            raise InvalidArgument(
                "force_kill_on_timeout needs a timeout (the deadline at which the child process "
                "is killed): give timeout=seconds"
            )
        dead_letter_type = pick("dead_letter_job_type", None)
        return InsertJob(
            job_type=job.job_type,
            queue=job.queue or defaults.queue or config.DEFAULT_QUEUE,
            payload=payload,
            priority=pick("priority", 0),
            run_at=job.run_at,
            delay=job.delay or 0.0,
            tags=job.tags,
            max_attempts=pick("max_attempts", config.DEFAULT_MAX_ATTEMPTS),
            retry_delay=pick("retry_delay", config.DEFAULT_RETRY_DELAY),
            retry_backoff=pick("retry_backoff", config.DEFAULT_RETRY_BACKOFF),
            retry_delay_max=pick("retry_delay_max", config.DEFAULT_RETRY_DELAY_MAX),
            timeout=timeout,
            idempotency_key=job.idempotency_key,
            force_kill_on_timeout=force_kill,
            idempotency_window=pick("idempotency_window", None),
            group=pick("group", None),
            dead_letter=(
                await self.dead_letter_spec(dead_letter_type, job.job_type)
                if dead_letter_type is not None
                else None
            ),
            depends_on=depends_on,
            depends_on_batch=depends_on_batch,
            depends_on_tags=tuple(job.depends_on_tags),
        )

    async def dead_letter_spec(self, job_type: str, failing_type: str) -> dict[str, Any]:
        """Return the dead-letter job a store enqueues when a job of `failing_type` fails for
        good: its type, queue and options, resolved now from the dead-letter type's handler
        (or the queue's defaults), so the store only copies them."""
        if job_type == failing_type:
            raise InvalidArgument(
                f"dead_letter_job_type {job_type!r} is the job's own type: a failing dead-letter "
                "handler would feed itself; use a separate job type"
            )
        defaults = await self.defaults(job_type)

        def value(name: str, fallback: Any) -> Any:
            given = getattr(defaults, name)
            return given if given is not None else fallback

        return {
            "job_type": job_type,
            "queue": defaults.queue or config.DEFAULT_QUEUE,
            "priority": value("priority", 0),
            "max_attempts": value("max_attempts", config.DEFAULT_MAX_ATTEMPTS),
            "retry_delay": value("retry_delay", config.DEFAULT_RETRY_DELAY),
            "retry_backoff": value("retry_backoff", config.DEFAULT_RETRY_BACKOFF),
            "retry_delay_max": value("retry_delay_max", config.DEFAULT_RETRY_DELAY_MAX),
            "timeout": value("timeout", None),
            "tags": list(defaults.tags),
        }
