"""The audit log's writer, shared by the doors: one record per mutating call, however it ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from pydantic_core import to_jsonable_python

from agentqueue.errors import AgentQueueError
from agentqueue.models import AuditRecord

if TYPE_CHECKING:
    from agentqueue.queue import Queue


def error_code(error: AgentQueueError) -> str:
    """The code a record keeps for an error (a door's own code wins over the core's)."""
    return getattr(error, "http_code", None) or error.code


@asynccontextmanager
async def audited(
    queue: Queue,
    *,
    actor: str,
    door: str,
    action: str,
    target: Any = None,
    **details: Any,
) -> AsyncIterator[dict[str, Any]]:
    """Write one audit record for the call inside: `ok`, or the code of the error it raised
    (the error still propagates). The yielded dict takes details learned inside (a new id)."""
    learned: dict[str, Any] = dict(details)
    result = "ok"
    try:
        yield learned
    except AgentQueueError as error:
        result = error_code(error)
        raise
    except Exception:
        result = "internal_error"
        raise
    finally:
        record = AuditRecord(
            at=queue.clock.now(),
            actor=actor,
            door=door,
            action=action,
            target=None if target is None else str(target),
            result=result,
            details=to_jsonable_python(learned),
        )
        store = await queue._store()  # pyright: ignore[reportPrivateUsage]
        await store.write_audit(record)
