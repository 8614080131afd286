"""Logging of the worker and the server: every line about a job names it, text or JSON lines,
and no secret is ever written.

- **Job fields.** The worker runs each job in an asyncio task (and a sync handler in a thread)
  whose context carries the job (`bound_to`), so every record logged while the job runs, by
  agentqueue or by the handler's own code, gets `job_id`, `job_type` and `attempt`
  (`JobFields`). Lines the worker logs about a job from elsewhere pass them as
  `extra=job_fields(job)`.
- **Formats.** `text` (the default) is one line per record, the job fields appended as
  `job=42 type=send_email attempt=1`; `json` is one JSON object per line with the same fields
  as keys, for log shippers. `--log-format` or AGENTQUEUE_LOG_FORMAT chooses.
- **Secrets.** `redact` masks the password of a URL (`postgresql://app:***@db/jobs`), the
  secret of an API key (its id stays: `aq_<id>_***`), bearer tokens and secret query
  parameters, in the message, its arguments and tracebacks, in both formats; the filter sits
  on the handler, so records of every logger (uvicorn's, the app's) pass through it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agentqueue.errors import InvalidArgument

if TYPE_CHECKING:
    from agentqueue.models import Job

LOG_FORMATS = ("text", "json")
FORMAT_ENV = "AGENTQUEUE_LOG_FORMAT"
JOB_FIELDS = ("job_id", "job_type", "attempt")
"""Attributes every record gets (None outside a job)."""

_current_job: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "agentqueue_job", default=None
)
_SECRETS = [
    # The password of a URL's user info: scheme://user:password@host
    (re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@"), r"\1***@"),
    # An API key's secret part (agentqueue.api_keys: aq_<12 hex>_<secret>); the id stays.
    (re.compile(r"\b(aq_[0-9a-f]{12}_)[A-Za-z0-9_-]+"), r"\1***"),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
    (
        re.compile(r"(?i)([?&;](?:api_key|apikey|key|token|access_token|password|secret)=)[^&\s]+"),
        r"\1***",
    ),
]


def redact(text: str) -> str:
    """Mask the secrets in `text` (see the module docstring)."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def job_fields(job: Job) -> dict[str, Any]:
    """The fields of a log line about `job` (pass as `extra=`)."""
    return {"job_id": job.id, "job_type": job.job_type, "attempt": job.attempts}


def bound_to(job: Job) -> contextvars.Context:
    """A copy of the current context in which every log record names `job`: run the job's
    task in it (`asyncio.create_task(..., context=...)`)."""
    context = contextvars.copy_context()
    context.run(_current_job.set, job_fields(job))
    return context


class JobFields(logging.Filter):
    """Give every record `job_id`, `job_type` and `attempt`: from `extra=` when the call
    passed them, else from the job whose task (or handler thread) logs, else None."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the fields; never drops a record."""
        current = _current_job.get() or {}
        for name in JOB_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, current.get(name))
        return True


class Redact(logging.Filter):
    """Mask secrets in the record's message (with its arguments) before any formatter sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the message by its redacted text; never drops a record."""
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message job=… type=… attempt=…`, tracebacks redacted too."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """One line (plus a traceback, if any)."""
        text = super().format(record)
        job_id = getattr(record, "job_id", None)
        if job_id is not None:
            head, newline, rest = text.partition("\n")
            fields = (
                f" job={job_id} type={getattr(record, 'job_type', None)}"
                f" attempt={getattr(record, 'attempt', None)}"
            )
            text = head + fields + newline + rest
        return redact(text)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, the job
    fields when the record is about a job, and `exception` (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for name in JOB_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = redact(record.exc_text)
        return json.dumps(entry, ensure_ascii=False, default=str)


def log_format(value: str | None) -> str:
    """The format to use: `value`, else $AGENTQUEUE_LOG_FORMAT, else text.

    Raises:
        InvalidArgument: not one of LOG_FORMATS.
    """
    chosen = (value or os.environ.get(FORMAT_ENV) or "text").strip().lower()
    if chosen not in LOG_FORMATS:
        source = "--log-format" if value else FORMAT_ENV
        raise InvalidArgument(f"{source} {chosen!r} is not one of {', '.join(LOG_FORMATS)}")
    return chosen


def install(level: int, fmt: str | None) -> None:
    """Log records of `level` and above to stderr in format `fmt` (None: the environment's,
    else text).

    An app that configured logging itself on import keeps its handlers unless a format was
    asked for (option or environment); either way every handler of the root logger gets the
    job fields and the redaction.
    """
    root = logging.getLogger()
    asked = fmt is not None or bool(os.environ.get(FORMAT_ENV))
    chosen = log_format(fmt)
    if asked or not root.handlers:
        for old in list(root.handlers):
            root.removeHandler(old)
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
        root.addHandler(handler)
        root.setLevel(level)
    for handler in root.handlers:
        for kind in (JobFields, Redact):
            if not any(isinstance(present, kind) for present in handler.filters):
                handler.addFilter(kind())
    logging.getLogger("agentqueue").setLevel(level)
