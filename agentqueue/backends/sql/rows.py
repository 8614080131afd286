"""Conversions between SQL rows and the core's models, and builders of event rows."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from agentqueue.backends.sql.tables import job_events, jobs, tokens
from agentqueue.models import ErrorRecord, EventType, Job, JobEvent, JobTypeInfo, Token
from agentqueue.states import JobStatus


def job_from_row(row: sa.Row[Any]) -> Job:
    """Build a `Job` from a full `aq_jobs` row."""
    return job_from_values(row._mapping)  # pyright: ignore[reportPrivateUsage]


def job_from_values(mapping: Mapping[Any, Any], *, skip: tuple[str, ...] = ()) -> Job:
    """Build a `Job` from the columns of an `aq_jobs` row (leaving out the names in `skip`)."""
    values = {name: value for name, value in mapping.items() if name not in skip}
    values["group"] = values.pop("job_group", None)
    dead_letter = values.pop("dead_letter", None)
    values["dead_letter_job_type"] = dead_letter["job_type"] if dead_letter else None
    values["depends_on"] = values.get("depends_on") or []
    values.pop("has_dependents", None)
    values.pop("created_by", None)
    return Job.model_validate(values)


def event_from_row(row: sa.Row[Any], cursor: str) -> JobEvent:
    """Build a `JobEvent` from an `aq_job_events` row and its feed cursor."""
    values = dict(row._mapping)  # pyright: ignore[reportPrivateUsage]
    return JobEvent.model_validate({**values, "cursor": cursor})


def job_type_from_row(row: sa.Row[Any]) -> JobTypeInfo:
    """Build a `JobTypeInfo` from an `aq_job_types` row."""
    return JobTypeInfo.model_validate(dict(row._mapping))  # pyright: ignore[reportPrivateUsage]


def token_from_row(row: sa.Row[Any]) -> Token:
    """Build a `Token` from a row of `TOKEN_COLUMNS`."""
    return Token.model_validate(dict(row._mapping))  # pyright: ignore[reportPrivateUsage]


def event_row(
    job: Mapping[Any, Any],
    type: EventType,
    status: JobStatus,
    at: datetime,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the values of one event row for `job` (a mapping with id, job_type and queue)."""
    return {
        "job_id": job["id"],
        "job_type": job["job_type"],
        "queue": job["queue"],
        "type": type.value,
        "status": status.value,
        "at": at,
        "data": data or {},
    }


def error_json(error: ErrorRecord) -> dict[str, Any]:
    """Return an error record as stored in `error_history`."""
    return error.model_dump(mode="json")


_INSERT_EVENTS = job_events.insert()
"""One statement object for every event insert: its cache key is computed once (memoized on
the object), not per call."""


def insert_events(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Insert event rows in one statement (nothing when `rows` is empty)."""
    if rows:
        conn.execute(_INSERT_EVENTS, rows)


JOB_COLUMNS = tuple(jobs.c)
"""Every column of `aq_jobs`, for RETURNING and SELECT."""

TOKEN_COLUMNS = tuple(column for column in tokens.c if column.name != "step")
"""The columns of `aq_tokens` that make a `Token` (the step is only the memo key)."""
