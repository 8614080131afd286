"""What routes take as dependencies: the queue, the caller's access per scope, the auditor."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

from fastapi import Depends, Request

from agentqueue import audit
from agentqueue.api.security import Access, Guard
from agentqueue.models import ApiScope
from agentqueue.queue import Queue
from agentqueue.throughput import ThroughputReader


async def queue_of(request: Request) -> Queue:
    """The app's queue.

    Async although it does not wait: FastAPI runs a plain function dependency in a worker
    thread, a hop that cost more than the rest of a request's dependencies together."""
    return request.app.state.queue


async def throughput_of(request: Request) -> ThroughputReader:
    """The app's cached reader of finished jobs per minute (the dashboard's charts); async
    for the reason `queue_of` is."""
    return request.app.state.throughput


def guard_of(request: Request) -> Guard:
    """The app's key checker."""
    return request.app.state.guard


async def _read(request: Request) -> Access:
    return await guard_of(request).check(request, ApiScope.READ)


async def _operate(request: Request) -> Access:
    return await guard_of(request).check(request, ApiScope.OPERATE)


async def _admin(request: Request) -> Access:
    return await guard_of(request).check(request, ApiScope.ADMIN)


QueueDep = Annotated[Queue, Depends(queue_of)]
ThroughputDep = Annotated[ThroughputReader, Depends(throughput_of)]
Reader = Annotated[Access, Depends(_read)]
"""A caller with at least `read` scope."""
Operator = Annotated[Access, Depends(_operate)]
"""A caller with at least `operate` scope."""
Admin = Annotated[Access, Depends(_admin)]
"""A caller with `admin` scope."""


def audited(
    queue: Queue, access: Access, action: str, target: Any = None, **details: Any
) -> AbstractAsyncContextManager[audit.AuditNote]:
    """The audit record of a REST call (see `agentqueue.audit.audited`)."""
    return audit.audited(
        queue, actor=access.actor, door="rest", action=action, target=target, **details
    )
