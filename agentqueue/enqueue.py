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

from pydantic import TypeAdapter, ValidationError

from agentqueue import config
from agentqueue.backends.base import InsertJob
from agentqueue.errors import InvalidArgument
from agentqueue.models import JobOptions, JobTypeInfo, NewJob
from agentqueue.registry import HandlerSpec, check_plain_json, payload_value, validate_stored

if TYPE_CHECKING:
    from agentqueue.queue import Queue

REGISTRY_TTL = 2.0
"""Seconds a process trusts its copy of the store's job-type registry."""


class JobId(int):
    """A job id (an `int`) that also says whether the call that returned it created the job.

    `created` is False when an `idempotency_key` matched an existing job, whose id this is.
    """

    created: bool = True
    """Set on the instance only when False: most ids are new jobs', and this saves a write
    per id on the enqueue path."""

    def __new__(cls, value: int, created: bool = True) -> JobId:
        """Make the id `value`; `created` False for an idempotency-key duplicate."""
        job_id = super().__new__(cls, value)
        if not created:
            job_id.created = False
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


_JOBS = TypeAdapter(list[NewJob])


def parse_new_jobs(jobs: Sequence[NewJob | dict[str, Any]]) -> list[NewJob]:
    """Return `jobs` as `NewJob`s, validated in one call; raise `InvalidArgument` naming the
    bad fields of the first bad job (the error it gets alone)."""
    if all(isinstance(job, NewJob) for job in jobs):
        return list(jobs)  # pyright: ignore[reportReturnType]  (checked just above)
    raws: list[Any] = []
    for job in jobs:
        if isinstance(job, NewJob):
            raws.append(job)
        else:
            raw = dict(job)
            raw["payload"] = payload_value(raw.get("payload", {}))
            raws.append(raw)
    try:
        return _JOBS.validate_python(raws)
    except ValidationError:
        return [parse_new_job(job) for job in jobs]  # raises the first job's own error


_PICKED: dict[str, Any] = {
    "priority": 0,
    "max_attempts": config.DEFAULT_MAX_ATTEMPTS,
    "retry_delay": config.DEFAULT_RETRY_DELAY,
    "retry_backoff": config.DEFAULT_RETRY_BACKOFF,
    "retry_delay_max": config.DEFAULT_RETRY_DELAY_MAX,
    "timeout": None,
    "force_kill_on_timeout": False,
    "idempotency_window": None,
    "group": None,
    "dead_letter_job_type": None,
}
"""The options a job takes from itself, else its type's defaults, else these fallbacks."""

_PICKED_NAMES = frozenset(_PICKED)


class _TypeDefaults:
    """What every job of one type in a batch starts from: how its payload is validated, its
    default queue and the picked options' default values."""

    __slots__ = ("queue", "spec", "stored", "values")

    def __init__(
        self, spec: HandlerSpec | None, stored: JobTypeInfo | None, defaults: JobOptions
    ) -> None:
        self.spec = spec
        self.stored = stored
        self.queue = defaults.queue or config.DEFAULT_QUEUE
        self.values: dict[str, Any] = {}
        for name, fallback in _PICKED.items():
            default = getattr(defaults, name)
            self.values[name] = default if default is not None else fallback
        self.values["force_kill_on_timeout"] = bool(self.values["force_kill_on_timeout"])


class _BatchTypes:
    """The `_TypeDefaults` of each job type of one batch, looked up once per type."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.known: dict[str, _TypeDefaults] = {}

    async def get(self, job_type: str) -> _TypeDefaults:
        """The job type's defaults (resolved on its first job in the batch)."""
        kind = self.known.get(job_type)
        if kind is None:
            spec = self.resolver.queue.registry.get(job_type)
            stored = None if spec is not None else await self.resolver.stored_type(job_type)
            kind = _TypeDefaults(spec, stored, await self.resolver.defaults(job_type))
            self.known[job_type] = kind
        return kind


def _dependencies(
    job: NewJob, index: int, refs: dict[str, int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The job's prerequisites (existing ids, indexes of earlier jobs of the batch); records
    its own ref in `refs`."""
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
    return tuple(ids), tuple(batch)


def _check_plain(payload: Any) -> None:
    try:
        check_plain_json(payload)
    except (TypeError, ValueError) as error:
        raise InvalidArgument(f"payload must be plain JSON data: {error}") from None


def _all_plain_json(payloads: list[Any]) -> bool:
    """Whether every payload is plain JSON data (`check_plain_json`), checked in one call."""
    try:
        check_plain_json(payloads)
    except (TypeError, ValueError):
        return False
    return True


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

    async def resolve_batch(
        self,
        jobs: Sequence[NewJob | dict[str, Any]],
        *,
        origin: dict[str, Any] | None = None,
    ) -> list[InsertJob]:
        """Resolve the jobs of one `add_jobs` call, in order; `origin` (JSON data) is given to
        each of them.

        A `depends_on` entry that is a string names the `ref` of an earlier job of the same
        call; a job can only depend on jobs that exist or come before it, so a cycle cannot
        be formed.

        Raises:
            PayloadInvalid: a payload does not match its job type's schema.
            InvalidArgument: a malformed option, an unknown or later ref, a duplicate ref.
        """
        parsed = parse_new_jobs(jobs)
        payloads = [payload_value(job.payload) for job in parsed]
        # One encoding for the whole batch in the common case; when it fails, each job is
        # checked in turn below so the error is the one the first bad job gets alone.
        plain = _all_plain_json(payloads)
        types = _BatchTypes(self)
        refs: dict[str, int] = {}
        resolved: list[InsertJob] = []
        for index, job in enumerate(parsed):
            ids, batch = _dependencies(job, index, refs)
            resolved.append(
                await self._resolve_one(
                    job, payloads[index], plain, await types.get(job.job_type), ids, batch, origin
                )
            )
        return resolved

    async def _resolve_one(
        self,
        job: NewJob,
        payload: Any,
        plain: bool,
        kind: _TypeDefaults,
        depends_on: tuple[int, ...],
        depends_on_batch: tuple[int, ...],
        origin: dict[str, Any] | None,
    ) -> InsertJob:
        if job.run_at is not None and job.delay is not None:
            raise InvalidArgument("give run_at or delay, not both")
        if kind.spec is not None:
            kind.spec.parse(payload)
        elif kind.stored is not None:
            validate_stored(kind.stored, payload)
        if not plain:
            _check_plain(payload)
        values = dict(kind.values)
        for name in job.model_fields_set & _PICKED_NAMES:
            value = getattr(job, name)
            if value is not None:
                values[name] = value
        if values["force_kill_on_timeout"] and values["timeout"] is None:
            raise InvalidArgument(
                "force_kill_on_timeout needs a timeout (the deadline at which the child process "
                "is killed): give timeout=seconds"
            )
        dead_letter_type = values.pop("dead_letter_job_type")
        return InsertJob(
            job_type=job.job_type,
            queue=job.queue or kind.queue,
            payload=payload,
            run_at=job.run_at,
            delay=job.delay or 0.0,
            tags=job.tags,
            idempotency_key=job.idempotency_key,
            dead_letter=(
                await self.dead_letter_spec(dead_letter_type, job.job_type)
                if dead_letter_type is not None
                else None
            ),
            depends_on=depends_on,
            depends_on_batch=depends_on_batch,
            depends_on_tags=tuple(job.depends_on_tags),
            origin=origin,
            **values,
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
