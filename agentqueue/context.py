"""`JobContext`: what a running handler can see and do.

Durable execution lives here: `step` memoizes results in the store, `wait_for` / `wait_until` /
`wait_for_token` park the job (`waiting`) and unwind the handler, which re-runs from the top
when the job resumes and replays its steps from the store. Replays are deterministic only if the
handler is: steps, waits and tokens are matched by name (waits and tokens by call order).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from agentqueue.clock import utc
from agentqueue.errors import AgentQueueError, InvalidArgument, LeaseLost, TokenNotFound
from agentqueue.models import (
    FOREVER,
    Job,
    Token,
    TokenResult,
    TokenStatus,
    check_tags,
    check_text,
)
from agentqueue.registry import check_plain_json, payload_value

if TYPE_CHECKING:
    from agentqueue.backends.base import Backend, Lease


class JobCancelled(AgentQueueError):
    """Raised inside a handler (by `raise_if_cancelled`) when the job's cancel was requested."""

    code = "job_cancelled"


class JobSuspended(BaseException):
    """Unwinds a handler whose job was parked (`waiting`); the worker frees its slot.

    A `BaseException`, like `asyncio.CancelledError`, so an `except Exception` in the handler
    does not swallow it. Do not catch it.
    """


_UNSET: Any = object()
_RESERVED_PREFIX = "aq:"
"""Step names the context keeps for itself (waits and tokens); handlers cannot use them."""
MAX_STEP_NAME = 200


@dataclass(frozen=True, slots=True)
class AttemptLink:
    """What a context needs to write to the store for its attempt (given by the worker)."""

    store: Backend
    worker_id: str
    lease: Lease
    store_now: Callable[[], datetime | None]
    """The time to pass to the store (None: the store's own clock)."""
    clock_now: Callable[[], datetime]
    """The queue's clock, for computing wake-up and expiry times."""


class JobContext:
    """Passed as the second argument of a handler that takes one.

    Synchronous methods are safe to call from async handlers and from sync handlers running in
    a thread. The `async` durable-execution methods (`step`, `wait_for`, `wait_until`,
    `create_token`, `wait_for_token`) are for async handlers.
    """

    def __init__(
        self,
        job: Job,
        *,
        worker_id: str,
        loop: asyncio.AbstractEventLoop,
        report_progress: Callable[[int, str | None], None],
        report_output: Callable[[Any], None] | None = None,
        link: AttemptLink | None = None,
    ) -> None:
        self.job = job
        """The job as claimed (status processing, attempts already counting this attempt)."""
        self.worker_id = worker_id
        self._logger: logging.LoggerAdapter[logging.Logger] | None = None
        self._loop = loop
        self._report_progress = report_progress
        self._report_output = report_output
        self._link = link
        # A threading.Event only where a sync handler may poll it: most jobs never look.
        self._cancel_flag = False
        self._cancel_event: threading.Event | None = None
        self._output: Any = _UNSET
        self._memo: dict[str, Any] | None = None
        self._names_used: set[str] = set()
        self._waits = 0
        self._tokens = 0
        self.deadline: float | None = None
        """Event-loop time at which the attempt times out (None: no timeout)."""

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose records carry job_id, job_type and attempt."""
        # Built on first use: most handlers never log through it, and a worker builds a
        # context for every job it runs.
        if self._logger is None:
            job = self.job
            self._logger = logging.LoggerAdapter(
                logging.getLogger("agentqueue.job"),
                {"job_id": job.id, "job_type": job.job_type, "attempt": job.attempts},
            )
        return self._logger

    # -- facts -------------------------------------------------------------------------------
    @property
    def job_id(self) -> int:
        """The job's id."""
        return self.job.id

    @property
    def attempt(self) -> int:
        """This attempt's number, starting at 1."""
        return self.job.attempts

    # -- cancellation ------------------------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        """True once an operator asked to cancel this job; the handler should stop."""
        return self._cancel_flag

    def raise_if_cancelled(self) -> None:
        """Raise `JobCancelled` if cancellation was requested (for sync handlers' loops)."""
        if self._cancel_flag:
            raise JobCancelled(f"job {self.job.id} was cancelled")

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Block (a sync handler's thread) until cancellation is requested or `timeout` passes;
        return True if it was requested. Async handlers are cancelled directly instead."""
        if self._cancel_event is None:
            self._cancel_event = threading.Event()
            if self._cancel_flag:
                self._cancel_event.set()
        return self._cancel_event.wait(timeout)

    def _request_cancel(self) -> None:
        self._cancel_flag = True
        if self._cancel_event is not None:
            self._cancel_event.set()

    # -- progress, output, deadline -----------------------------------------------------------
    def set_progress(self, progress: int, message: str | None = None) -> None:
        """Record progress (0-100) and an optional message; persisted and emitted as an event.

        Calls are coalesced: a burst of updates writes the latest one, never an older one last.

        Raises:
            InvalidArgument: progress is not a whole number from 0 to 100.
        """
        if isinstance(progress, bool) or not isinstance(progress, int) or not 0 <= progress <= 100:
            raise InvalidArgument(
                f"progress must be a whole number from 0 to 100, not {progress!r}"
            )
        self._on_loop(self._report_progress, progress, message)

    def set_output(self, data: Any) -> None:
        """Set the job's output: stored at once (an `output` event) and kept as the final
        output, winning over the handler's return value.

        Raises:
            InvalidArgument: `data` is not plain JSON data (or a pydantic model).
        """
        value = _json_value(data, "the output")
        self._output = value
        if self._report_output is not None:
            self._on_loop(self._report_output, value)

    def output_or(self, returned: Any) -> Any:
        """Return the output set with `set_output`, else `returned`."""
        return returned if self._output is _UNSET else self._output

    def prolong(self, seconds: float | None = None) -> None:
        """Move this attempt's deadline to `seconds` from now (default: the job's timeout).

        Does nothing for a job without a timeout. Leases are heartbeated separately and need
        no help from the handler.
        """
        span = seconds if seconds is not None else self.job.timeout
        if span is None or self.deadline is None:
            return
        if span <= 0:
            raise InvalidArgument(f"prolong takes a positive number of seconds, not {span!r}")
        self._on_loop(self._set_deadline, span)

    def _set_deadline(self, span: float) -> None:
        self.deadline = self._loop.time() + span

    # -- durable execution ---------------------------------------------------------------------
    async def step(self, name: str, fn: Callable[[], Any]) -> Any:
        """Run `fn()` once for this job and memoize its result under `name`.

        When the handler re-runs (after a wait, a crash, a reclaimed lease, a retry), a step
        that already completed returns its stored result without calling `fn` again. `fn` may
        be sync or async. The result must be JSON data (or a pydantic model, stored as its JSON
        form); it is returned in its stored JSON form on every run, so the first run and the
        replays see the same value. If `fn` raises, nothing is stored and the error propagates.

        Raises:
            InvalidArgument: a bad or reused name (names are unique within one run), or a
                result that is not JSON data.
            LeaseLost: this attempt lost its lease; the handler must stop.
        """
        self._claim_name(name, "step")
        memo = await self._steps()
        if name in memo:
            return memo[name]
        result = fn()
        if inspect.isawaitable(result):
            result = await result
        value = _json_value(result, f"the result of step {name!r}")
        await self._save(name, value)
        return value

    async def wait_for(self, seconds: float | timedelta) -> None:
        """Durable sleep: park the job for `seconds` (or a timedelta), releasing its slot.

        The handler is unwound (`JobSuspended`) and runs again from the top when the time
        comes; on that run this call returns at once (completed steps replay from the store).
        """
        span = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
        if span < 0:
            raise InvalidArgument(f"wait_for takes a duration of 0 or more, not {seconds!r}")
        await self._sleep_until(lambda: self._now() + timedelta(seconds=span))

    async def wait_until(self, when: datetime) -> None:
        """Durable sleep until `when` (an aware datetime); see `wait_for`."""
        if when.tzinfo is None:
            raise InvalidArgument("wait_until needs an aware datetime (with a time zone)")
        await self._sleep_until(lambda: utc(when))

    async def create_token(
        self,
        timeout: float | timedelta | None = None,
        *,
        tags: list[str] | None = None,
        name: str | None = None,
    ) -> Token:
        """Create a human-in-the-loop token for this job (memoized: a replay gets the same one).

        Hand its `id` to a person or a service; `Queue.complete_token(id, data)` completes it
        and resumes the job waiting on it. `timeout` (seconds or a timedelta) makes it expire;
        the job then resumes and `wait_for_token` returns `ok=False`. `name` keys the
        memoization (default: the call's order among this handler's `create_token` calls).
        """
        self._tokens += 1
        key = f"{_RESERVED_PREFIX}token:{self._tokens}" if name is None else name
        if name is not None:
            self._claim_name(name, "token")
        span = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        if span is not None and span <= 0:
            raise InvalidArgument(f"a token timeout must be positive, not {timeout!r}")
        try:
            checked_tags = check_tags(list(tags or []))
        except ValueError as error:
            raise InvalidArgument(str(error)) from None
        link = self._require_link("create_token")
        return await link.store.create_token(
            token_id=new_token_id(),
            job_id=self.job.id,
            step=key,
            expires_at=self._now() + timedelta(seconds=span) if span is not None else None,
            tags=checked_tags,
            now=link.store_now(),
        )

    async def wait_for_token(self, token: str | Token) -> TokenResult:
        """Wait until the token is completed (`ok=True`, its data) or expires (`ok=False`).

        If it is already completed or expired, this returns at once; otherwise the job is
        parked (`waiting`, no slot held) and the handler re-runs when the token settles.

        Raises:
            TokenNotFound: no such token.
        """
        token_id = token.id if isinstance(token, Token) else token
        link = self._require_link("wait_for_token")
        current = await link.store.get_token(token_id) if plausible_token_id(token_id) else None
        if current is None:
            raise TokenNotFound(token_id)
        if current.status is TokenStatus.PENDING:
            result = await link.store.suspend(
                worker_id=link.worker_id,
                lease=link.lease,
                until=current.expires_at or FOREVER,
                token_id=token_id,
                now=link.store_now(),
            )
            if result.lost:
                raise LeaseLost(f"job {self.job.id}: lease lost while waiting for a token")
            if result.suspended:
                raise JobSuspended(token_id)
            assert result.token is not None
            current = result.token
        return TokenResult(
            ok=current.status is TokenStatus.COMPLETED, data=current.data, token=current
        )

    # -- internals ---------------------------------------------------------------------------
    async def _sleep_until(self, target: Callable[[], datetime]) -> None:
        self._waits += 1
        key = f"{_RESERVED_PREFIX}wait:{self._waits}"
        memo = await self._steps()
        if key in memo:
            until = datetime.fromisoformat(memo[key])
        else:
            until = target()
            await self._save(key, until.isoformat())
        if self._now() >= until:
            return
        link = self._require_link("wait_for")
        result = await link.store.suspend(
            worker_id=link.worker_id, lease=link.lease, until=until, now=link.store_now()
        )
        if not result.suspended:
            raise LeaseLost(f"job {self.job.id}: lease lost before its wait")
        raise JobSuspended(key)

    def _claim_name(self, name: str, what: str) -> None:
        if not isinstance(name, str) or not name or len(name) > MAX_STEP_NAME:
            raise InvalidArgument(f"a {what} name must be 1-{MAX_STEP_NAME} characters: {name!r}")
        if name.startswith(_RESERVED_PREFIX):
            raise InvalidArgument(f"{what} names starting with {_RESERVED_PREFIX!r} are reserved")
        if name in self._names_used:
            raise InvalidArgument(
                f"{what} name {name!r} is used twice in one run of job {self.job.id}: names "
                "must be unique (they are how replays find stored results)"
            )
        self._names_used.add(name)

    async def _steps(self) -> dict[str, Any]:
        if self._memo is None:
            self._memo = await self._require_link("step").store.load_steps(self.job.id)
        return self._memo

    async def _save(self, name: str, value: Any) -> None:
        link = self._require_link("step")
        saved = await link.store.save_step(
            worker_id=link.worker_id,
            lease=link.lease,
            name=name,
            value=value,
            now=link.store_now(),
        )
        if not saved:
            raise LeaseLost(f"job {self.job.id}: lease lost; step {name!r} was not stored")
        assert self._memo is not None
        self._memo[name] = value

    def _require_link(self, what: str) -> AttemptLink:
        if self._link is None:
            raise InvalidArgument(
                f"{what} needs a job run by a worker (this context has no store), and is not "
                "available in a force_kill_on_timeout child process"
            )
        return self._link

    def _now(self) -> datetime:
        return self._link.clock_now() if self._link is not None else datetime.now(UTC)

    def _on_loop(self, fn: Callable[..., None], *args: Any) -> None:
        if _on_loop(self._loop):
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)


MAX_TOKEN_ID = 64


def new_token_id() -> str:
    """Return a fresh, unguessable token id."""
    return "tok_" + secrets.token_urlsafe(18)


def plausible_token_id(token_id: object) -> bool:
    """False for what no store can hold as a token id (so it cannot exist): not a string, empty,
    or longer than `MAX_TOKEN_ID`."""
    if not (isinstance(token_id, str) and 0 < len(token_id) <= MAX_TOKEN_ID):
        return False
    try:
        check_text(token_id)  # NUL or a lone surrogate: no store could hold it either
    except ValueError:
        return False
    return True


def _json_value(data: Any, what: str) -> Any:
    """Return `data` in its stored JSON form, or raise InvalidArgument naming `what`."""
    value = payload_value(data)
    try:
        check_plain_json(value)
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as error:
        raise InvalidArgument(f"{what} is not plain JSON data: {error}") from None


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
