"""The project's own errors: one root, a stable `code` on each, no driver exception escapes a store.

Doors map these to their own shapes (HTTP status, MCP tool error, CLI exit code 2) by `code`,
so the message a user sees is the one written here.
"""

from __future__ import annotations

from typing import Any, ClassVar


class AgentQueueError(Exception):
    """Root of every error agentqueue raises on purpose."""

    code: ClassVar[str] = "agentqueue_error"
    """Stable machine-readable name of the error kind."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """Return the error as JSON-ready data: code, message and details."""
        return {"code": self.code, "message": self.message, **self.details}


class ConfigError(AgentQueueError):
    """A setting or URL is malformed or names something that does not exist."""

    code = "config_error"


class MissingExtra(ConfigError):
    """A store's driver is not installed; the message names the pip extra that brings it."""

    code = "missing_extra"


class BackendUnavailable(AgentQueueError):
    """The store cannot be reached or refused the operation for a reason outside the caller."""

    code = "backend_unavailable"


class StoreFull(BackendUnavailable):
    """The store is out of space: SQLite's disk (or `max_page_count`) is full, PostgreSQL's disk
    is full, or Redis reached `maxmemory` under `noeviction`. Nothing was written; the store
    works again once space is freed. A subclass of `BackendUnavailable`, so code that retries
    an unavailable store retries this too."""

    code = "store_full"


class SchemaMismatch(AgentQueueError):
    """The store's schema is older (run `agentqueue migrate`) or newer than this code."""

    code = "schema_mismatch"

    @classmethod
    def behind(cls, current: int, latest: int) -> SchemaMismatch:
        """The store needs migrating to `latest`."""
        return cls(
            f"the store's schema is at version {current}, this code needs {latest}: "
            "run `agentqueue migrate` (or open the queue with migrate=True)",
            current=current,
            latest=latest,
        )

    @classmethod
    def ahead(cls, current: int, latest: int) -> SchemaMismatch:
        """The store was migrated by a newer agentqueue."""
        return cls(
            f"the store's schema is at version {current}, newer than this code ({latest}): "
            "upgrade agentqueue",
            current=current,
            latest=latest,
        )

    @classmethod
    def check(cls, current: int, latest: int) -> None:
        """Raise unless `current` is exactly `latest`."""
        if current < latest:
            raise cls.behind(current, latest)
        if current > latest:
            raise cls.ahead(current, latest)


class JobNotFound(AgentQueueError):
    """No job has the given id."""

    code = "job_not_found"

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} does not exist", job_id=job_id)
        self.job_id = job_id


class InvalidTransition(AgentQueueError):
    """The job is not in a state the requested change applies to."""

    code = "invalid_transition"


class LeaseLost(AgentQueueError):
    """A worker wrote to a job it no longer owns (lease expired, job cancelled or reclaimed)."""

    code = "lease_lost"


class PayloadInvalid(AgentQueueError):
    """A job's payload does not match its job type's schema; `errors` lists each problem."""

    code = "payload_invalid"

    def __init__(
        self, job_type: str, errors: list[dict[str, Any]], schema: dict[str, Any] | None = None
    ) -> None:
        problems = "; ".join(f"{e['loc'] or '(payload)'}: {e['msg']}" for e in errors)
        super().__init__(
            f"invalid payload for job type {job_type!r}: {problems}",
            job_type=job_type,
            errors=errors,
            schema=schema,
        )
        self.job_type = job_type
        self.errors = errors
        self.schema = schema


class TokenNotFound(AgentQueueError):
    """No token has the given id."""

    code = "token_not_found"

    def __init__(self, token_id: str) -> None:
        super().__init__(
            f"token {token_id!r} does not exist (list_tokens shows the pending ones)",
            token_id=token_id,
        )
        self.token_id = token_id


class TokenNotPending(InvalidTransition):
    """The token was already completed, or it expired: it cannot be completed (again)."""

    code = "token_not_pending"

    def __init__(self, token_id: str, status: str) -> None:
        super().__init__(
            f"token {token_id!r} is {status}, not pending: it cannot be completed",
            token_id=token_id,
            status=status,
        )
        self.token_id = token_id
        self.status = status


class CronJobNotFound(AgentQueueError):
    """No cron schedule has the given name."""

    code = "cron_job_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"cron schedule {name!r} does not exist (list_cron_jobs shows them)", name=name
        )
        self.name = name


class InvalidArgument(AgentQueueError):
    """An argument is out of range or malformed (a negative delay, an unknown filter mode …)."""

    code = "invalid_argument"


class DependencyInvalid(InvalidArgument):
    """A `depends_on` prerequisite does not exist, or ended in a way its dependent never could
    run after (failed or cancelled)."""

    code = "dependency_invalid"

    def __init__(self, job_id: int, status: str | None) -> None:
        if status is None:
            message = f"depends_on names job {job_id}, which does not exist (or was purged)"
        else:
            message = (
                f"depends_on names job {job_id}, which is {status}: a job that depends on it "
                f"would never run; retry job {job_id} first"
            )
        super().__init__(message, job_id=job_id, status=status)
        self.job_id = job_id
        self.status = status


class DuplicateHandler(AgentQueueError):
    """Two handlers were registered for one job type."""

    code = "duplicate_handler"
