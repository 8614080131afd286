"""How the Redis store writes values as strings and reads them back into the core's models.

Times are integer epoch microseconds (exact and ordered, like the SQLite store); JSON values
(payload, output, tags, error history, event data) are JSON text made by Python, so the Lua
scripts never re-encode them (cjson cannot tell an empty list from an empty object). A field
that is absent from a job's hash is null.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from agentqueue.models import ErrorRecord, Job, JobEvent, JobTypeInfo, Token

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_TEXTS = (
    "queue",
    "job_type",
    "status",
    "locked_by",
    "last_error",
    "failure_reason",
    "idempotency_key",
    "progress_message",
    "waiting_for",
    "group",
)
_INTS = ("id", "priority", "attempts", "max_attempts", "progress")
_TIMES = (
    "run_at",
    "created_at",
    "updated_at",
    "started_at",
    "completed_at",
    "lease_expires_at",
    "idempotency_expires_at",
)
_JSON = ("payload", "output", "error_history", "tags", "origin")
_FLOATS = ("timeout", "retry_delay", "retry_delay_max")
_BOOLS = ("retry_backoff", "cancel_requested", "force_kill_on_timeout")


def micros(value: datetime) -> int:
    """Return an aware datetime as integer microseconds since the epoch."""
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int | str) -> datetime:
    """Return epoch microseconds (int or its text) as an aware UTC datetime."""
    return EPOCH + timedelta(microseconds=int(value))


_FIRST = datetime.min.replace(tzinfo=UTC)
_LAST = datetime.max.replace(tzinfo=UTC)


def due_from_micros(value: int | str) -> datetime:
    """Like `from_micros`, for a time read from a sorted-set score (a double, exact only to
    2**53 us): one past the last datetime (year 9999) is the last datetime."""
    try:
        return from_micros(value)
    except OverflowError:
        return _FIRST if int(value) < 0 else _LAST


def duration_us(seconds: float) -> int:
    """Return a duration in whole microseconds, rounded as `timedelta` rounds it."""
    return micros(EPOCH + timedelta(seconds=seconds))


def now_arg(now: datetime | None) -> str:
    """The `now` argument of every script: '' lets the script read Redis' clock."""
    return "" if now is None else str(micros(now))


_ENCODER = json.JSONEncoder(separators=(",", ":"))


def dumps(value: Any) -> str:
    """Encode JSON compactly (the stored form of payloads, outputs and event data).

    ASCII only: a lone surrogate in a string stays an escape instead of failing to encode.
    """
    # One encoder for every call: `json.dumps` with options builds a new one each time, a
    # cost paid per job on the enqueue path.
    return _ENCODER.encode(value)


def number(value: float | None) -> str:
    """Encode an optional float; '' is null."""
    return "" if value is None else repr(float(value))


def flag(value: bool) -> str:
    """Encode a boolean as '1' or '0'."""
    return "1" if value else "0"


def error_json(error: ErrorRecord) -> str:
    """Return an error record as stored in `error_history`."""
    return dumps(error.model_dump(mode="json"))


def job_from_flat(flat: list[str]) -> Job:
    """Build a `Job` from its hash as a flat list (field, value, field, value …)."""
    return job_from_hash(dict(zip(flat[::2], flat[1::2], strict=True)))


def job_reply(text: str) -> Job:
    """Build a `Job` from a script's reply: its hash as a JSON array (field, value, …)."""
    return job_from_flat(json.loads(text))


def _json_field(text: str) -> Any:
    """Decode a JSON field; the empty list (most jobs' tags and error history) without a
    parse."""
    return [] if text == "[]" else json.loads(text)


def _dead_letter_job_type(text: str) -> str:
    """The dead-letter job's insert arguments (JSON) hold its type first."""
    return json.loads(text)[0]


_JOB_FIELDS: dict[str, tuple[str, Any]] = {
    **{name: (name, None) for name in _TEXTS},
    **{name: (name, int) for name in _INTS},
    **{name: (name, from_micros) for name in _TIMES},
    **{name: (name, _json_field) for name in (*_JSON, "depends_on")},
    **{name: (name, float) for name in _FLOATS},
    "dead_letter": ("dead_letter_job_type", _dead_letter_job_type),
}
"""A job hash's field -> (the `Job` field, its decoder; None: the text as is). Booleans are
absent here: each is set whether or not its field is (absent is False)."""


def job_from_hash(fields: dict[str, str]) -> Job:
    """Build a `Job` from its hash (fields it does not know are ignored).

    One pass over the hash with a decoder per field: a claim builds one per job, on the
    worker's path to the handler.
    """
    values: dict[str, Any] = {name: fields.get(name) == "1" for name in _BOOLS}
    known = _JOB_FIELDS
    for name, value in fields.items():
        entry = known.get(name)
        if entry is not None:
            target, decode = entry
            values[target] = value if decode is None else decode(value)
    return Job.model_validate(values)


def token_from_flat(flat: list[str]) -> Token:
    """Build a `Token` from its hash as a flat list (field, value, field, value …)."""
    return token_from_hash(dict(zip(flat[::2], flat[1::2], strict=True)))


def token_from_hash(fields: dict[str, str]) -> Token:
    """Build a `Token` from its hash (the `step` field is only the memo key: not shown)."""
    values: dict[str, Any] = {"id": fields["id"], "status": fields["status"]}
    if "job_id" in fields:
        values["job_id"] = int(fields["job_id"])
    for name in ("created_at", "expires_at", "completed_at"):
        if name in fields:
            values[name] = from_micros(fields[name])
    for name in ("data", "tags"):
        if name in fields:
            values[name] = json.loads(fields[name])
    return Token.model_validate(values)


def token_reply(text: str) -> Token:
    """Build a `Token` from a script's reply: its hash as a JSON array (field, value, …)."""
    return token_from_flat(json.loads(text))


def event_from_entry(entry_id: str, fields: dict[str, str]) -> JobEvent:
    """Build a `JobEvent` from an entry of the events stream; its cursor is its event id."""
    event_id = entry_id.split("-", 1)[0]
    return JobEvent.model_validate(
        {
            "id": int(event_id),
            "job_id": int(fields["job_id"]),
            "job_type": fields["job_type"],
            "queue": fields["queue"],
            "type": fields["type"],
            "status": fields["status"],
            "at": from_micros(fields["at"]),
            "data": json.loads(fields["data"]),
            "cursor": event_id,
        }
    )


def job_type_json(info: JobTypeInfo) -> str:
    """Encode a registry entry (without `updated_at`, which the script stamps)."""
    data = info.model_dump(mode="json", exclude={"updated_at"})
    data["defaults"] = info.defaults.model_dump(mode="json", exclude_none=True)
    return dumps(data)


def job_type_from_json(text: str, updated_at: str | None) -> JobTypeInfo:
    """Decode a registry entry."""
    data = json.loads(text)
    data["updated_at"] = from_micros(updated_at) if updated_at is not None else None
    return JobTypeInfo.model_validate(data)
