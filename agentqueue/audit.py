"""The audit log's writer, shared by the doors: one record per mutating call, however it ends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
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


class AuditNote(dict[str, Any]):
    """The details of a call's audit record, learned inside `audited` (a new id, say), and a
    way to have the record written in the call's own transaction (`adding`)."""

    def __init__(self, details: dict[str, Any], make: Callable[[dict[str, Any]], AuditRecord]):
        super().__init__(details)
        self._make = make
        self.in_transaction = False
        """Whether a store built the record to write it with the call's jobs."""

    def adding(
        self, learn: Callable[[Sequence[Any]], dict[str, Any]]
    ) -> Callable[[Sequence[Any]], AuditRecord]:
        """For `Queue.add_jobs(audit=...)`: the success record, built by the store from the
        new ids (`learn` turns them into details) and written in the same transaction as the
        jobs, so an add costs one commit, not two. When the add fails the store wrote nothing,
        and `audited` writes the failure's record as for any call."""

        def record(ids: Sequence[Any]) -> AuditRecord:
            self.update(learn(ids))
            self.in_transaction = True
            return self._make(dict(self))

        return record


def added_one(ids: Sequence[Any]) -> dict[str, Any]:
    """The details of adding one job: its id, and whether the call created it."""
    return {"job_id": int(ids[0]), "created": ids[0].created}


def added_id(ids: Sequence[Any]) -> dict[str, Any]:
    """The details of adding one job: its id."""
    return {"job_id": int(ids[0])}


def added_many(ids: Sequence[Any]) -> dict[str, Any]:
    """The details of adding jobs: their ids."""
    return {"job_ids": [int(job_id) for job_id in ids]}


@asynccontextmanager
async def audited(
    queue: Queue,
    *,
    actor: str,
    door: str,
    action: str,
    target: Any = None,
    **details: Any,
) -> AsyncIterator[AuditNote]:
    """Write one audit record for the call inside: `ok`, or the code of the error it raised
    (the error still propagates). The yielded note takes details learned inside (a new id);
    an add can have its success record written with its jobs (`AuditNote.adding`)."""

    def make(learned: dict[str, Any], result: str = "ok") -> AuditRecord:
        return AuditRecord(
            at=queue.clock.now(),
            actor=actor,
            door=door,
            action=action,
            target=None if target is None else str(target),
            result=result,
            details=to_jsonable_python(learned),
        )

    note = AuditNote(details, make)
    result = "ok"
    try:
        yield note
    except AgentQueueError as error:
        result = error_code(error)
        raise
    except Exception:
        result = "internal_error"
        raise
    finally:
        # A call that ended well after its store wrote the record with its jobs is recorded.
        if result != "ok" or not note.in_transaction:
            store = await queue._store()  # pyright: ignore[reportPrivateUsage]
            await store.write_audit(make(dict(note), result))
