"""Bulk operations with a preview: cancel, retry or edit every job a filter matches.

Each job is changed by its own atomic store operation (the same as `cancel_job`, `retry_job`,
`edit_job`), so a bulk call never half-applies one job; a job that moved on between the listing
and its change (it completed, say) is skipped and reported, not an error. `dry_run=True` changes
nothing and returns how many jobs would change and a sample of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from agentqueue.errors import DependencyInvalid, InvalidArgument, InvalidTransition, JobNotFound
from agentqueue.models import BulkResult, Job
from agentqueue.states import TERMINAL, JobStatus

if TYPE_CHECKING:
    from agentqueue.queue import Queue

SAMPLE = 10
"""Jobs shown in a result's sample."""
PAGE = 500


async def matching(
    queue: Queue, statuses: frozenset[JobStatus], filters: dict[str, Any]
) -> AsyncIterator[Job]:
    """Yield jobs matching `filters` whose status is one of `statuses` (oldest first)."""
    paging = sorted({"limit", "cursor", "order"} & filters.keys())
    if paging:
        raise InvalidArgument(
            f"{', '.join(paging)} cannot be given to a bulk operation: it acts on every match"
        )
    given = filters.pop("status", None)
    if given is not None:
        try:
            wanted = {JobStatus(s) for s in ([given] if isinstance(given, str) else given)}
        except ValueError as error:
            raise InvalidArgument(f"bad status filter: {error}") from None
        unknown = wanted - statuses
        if unknown:
            names = ", ".join(sorted(s.value for s in statuses))
            raise InvalidArgument(
                f"status {', '.join(sorted(s.value for s in unknown))} does not apply here; "
                f"this operation changes jobs that are {names}"
            )
        statuses = frozenset(wanted)
    cursor: str | None = None
    while True:
        page = await queue.list_jobs(
            status=sorted(statuses), order="oldest", limit=PAGE, cursor=cursor, **filters
        )
        for job in page.items:
            yield job
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def _preview(result: BulkResult, job: Job) -> None:
    """Count a match; with `dry_run`, keep it in the sample."""
    result.matched += 1
    if result.dry_run and len(result.sample) < SAMPLE:
        result.sample.append(job)


async def apply(
    queue: Queue,
    statuses: frozenset[JobStatus],
    filters: dict[str, Any],
    change: Callable[[Job], Awaitable[Job]],
    *,
    dry_run: bool,
) -> BulkResult:
    """Run `change` on every matching job (or only count them with `dry_run`)."""
    result = BulkResult(dry_run=dry_run)
    async for job in matching(queue, statuses, dict(filters)):
        _preview(result, job)
        if dry_run:
            continue
        try:
            changed = await change(job)
        except (InvalidTransition, JobNotFound, DependencyInvalid):
            result.skipped.append(job.id)
            continue
        result.changed += 1
        if len(result.sample) < SAMPLE:
            result.sample.append(changed)
    return result


async def purge(queue: Queue, filters: dict[str, Any], *, dry_run: bool) -> BulkResult:
    """Delete every finished job matching `filters` (or only count them with `dry_run`), a page
    at a time; a job retried since it was listed is skipped."""
    store = await queue._store()  # pyright: ignore[reportPrivateUsage]
    result = BulkResult(dry_run=dry_run)
    page: list[Job] = []

    async def delete(batch: list[Job]) -> None:
        deleted = set(await store.delete_jobs([job.id for job in batch]))
        result.changed += len(deleted)
        for job in batch:
            if job.id not in deleted:
                result.skipped.append(job.id)
            elif len(result.sample) < SAMPLE:
                result.sample.append(job)

    async for job in matching(queue, TERMINAL, dict(filters)):
        _preview(result, job)
        if dry_run:
            continue
        page.append(job)
        if len(page) == PAGE:
            await delete(page)
            page = []
    if page:
        await delete(page)
    return result
