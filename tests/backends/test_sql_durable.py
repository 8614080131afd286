"""Durable execution on the SQL stores (SQLite file, in-memory, PostgreSQL): fenced output,
steps and waits, tokens under concurrency, resumes, and purge with what it must leave alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa

from agentqueue import InvalidArgument
from agentqueue.backends.base import (
    InsertJob,
    Lease,
    Outcome,
    OutcomeKind,
    PurgeResult,
    SuspendResult,
    TokenCompletionKind,
)
from agentqueue.backends.sql.backend import SqlBackend
from agentqueue.backends.sql.postgres import PostgresBackend
from agentqueue.backends.sql.sqlite import SqliteBackend
from agentqueue.backends.sql.tables import (
    event_commits,
    job_events,
    job_steps,
    job_tags,
    token_tags,
    tokens,
)
from agentqueue.errors import TokenNotFound
from agentqueue.models import FOREVER, EventType, Job, TokenStatus
from tests.conftest import POSTGRES_URL, eventually, make_store_url

T0 = datetime(2030, 6, 1, 9, 0, tzinfo=UTC)
LATER = T0 + timedelta(hours=1)


def _open(url: str) -> SqlBackend:
    if url.startswith("postgres"):
        return PostgresBackend.from_url(url)
    return SqliteBackend.from_url(url)


@pytest.fixture(params=["sqlite", "memory", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlBackend]:
    """A migrated SQL store of each kind."""
    backend = _open(make_store_url(request.param, request, tmp_path))
    await backend.open(migrate=True)
    yield backend
    await backend.close()


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[PostgresBackend]:
    """A migrated PostgreSQL store."""
    backend = PostgresBackend.from_url(postgres_url)
    await backend.open(migrate=True)
    yield backend
    await backend.close()


def new_job(**changes: Any) -> InsertJob:
    values: dict[str, Any] = {
        "job_type": "t",
        "queue": "default",
        "payload": {},
        "priority": 0,
        "run_at": None,
        "delay": 0.0,
        "tags": [],
        "max_attempts": 3,
        "retry_delay": 1.0,
        "retry_backoff": False,
        "retry_delay_max": None,
        "timeout": None,
        "idempotency_key": None,
    }
    return InsertJob(**(values | changes))


async def running(store: SqlBackend, *, worker: str = "w1", **changes: Any) -> Job:
    """Insert a job at T0 and claim it for `worker`; return the claimed job."""
    (added,) = await store.insert_jobs([new_job(**changes)], now=T0)
    (job,) = await store.claim(
        worker_id=worker, queue=None, job_types=None, limit=1, lease_seconds=30, now=T0
    )
    assert job.id == added.id
    return job


def lease(job: Job) -> Lease:
    return Lease(job.id, job.attempts)


async def job_of(store: SqlBackend, job_id: int) -> Job:
    job = await store.get_job(job_id)
    assert job is not None
    return job


async def event_types(store: SqlBackend, job_id: int) -> list[str]:
    return [event.type.value for event in await store.job_events(job_id)]


async def count(store: SqlBackend, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
    query = sa.select(sa.func.count()).select_from(table).where(*where)
    return await store._read(lambda conn: conn.execute(query).scalar_one())


async def steal(store: SqlBackend, job: Job) -> Job:
    """Let `job`'s lease expire and have worker w2 claim it again (attempt + 1)."""
    after = T0 + timedelta(minutes=5)
    assert await store.rescue_expired(now=after) == [job.id]
    (again,) = await store.claim(
        worker_id="w2", queue=None, job_types=None, limit=1, lease_seconds=30, now=after
    )
    assert again.attempts == job.attempts + 1
    return again


# -- the new job columns ---------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "once"])
async def test_force_kill_on_timeout_is_stored_and_read_back(store: SqlBackend, key: Any) -> None:
    # Without a key PostgreSQL inserts in one statement (pg_statements.INSERT); with one it
    # takes the portable path: both write the new columns.
    (added,) = await store.insert_jobs(
        [new_job(force_kill_on_timeout=True, idempotency_key=key)], now=T0
    )
    (plain,) = await store.insert_jobs([new_job()], now=T0)
    job = await job_of(store, added.id)
    assert (job.force_kill_on_timeout, job.waiting_for) == (True, None)
    assert (await job_of(store, plain.id)).force_kill_on_timeout is False


# -- fenced writes ---------------------------------------------------------------------------


async def test_a_stale_lease_writes_no_output_step_or_wait(store: SqlBackend) -> None:
    stale = await running(store)
    current = await steal(store, stale)
    before = await event_types(store, stale.id)
    for worker, fence in (("w1", lease(stale)), ("w1", lease(current)), ("w2", lease(stale))):
        assert not await store.set_output(worker_id=worker, lease=fence, output=1, now=LATER)
        assert not await store.save_step(worker_id=worker, lease=fence, name="s", value=1)
        assert await store.suspend(worker_id=worker, lease=fence, until=LATER) == SuspendResult(
            suspended=False, lost=True
        )
    job = await job_of(store, stale.id)
    assert (job.status, job.locked_by, job.attempts, job.output) == ("processing", "w2", 2, None)
    assert await store.load_steps(stale.id) == {}
    assert await event_types(store, stale.id) == before


async def test_output_is_stored_now_with_an_event(store: SqlBackend) -> None:
    job = await running(store)
    assert await store.set_output(worker_id="w1", lease=lease(job), output={"part": 1}, now=T0)
    assert (await job_of(store, job.id)).output == {"part": 1}
    assert (await store.job_events(job.id))[-1].type is EventType.OUTPUT


async def test_a_step_keeps_its_first_value_and_writes_one_event(store: SqlBackend) -> None:
    job = await running(store)
    fence = lease(job)
    assert await store.save_step(worker_id="w1", lease=fence, name="fetch", value={"n": 1}, now=T0)
    assert await store.save_step(worker_id="w1", lease=fence, name="fetch", value={"n": 2}, now=T0)
    assert await store.save_step(worker_id="w1", lease=fence, name="none", value=None, now=T0)
    assert await store.load_steps(job.id) == {"fetch": {"n": 1}, "none": None}
    steps = [e for e in await store.job_events(job.id) if e.type is EventType.STEP]
    assert [e.data for e in steps] == [{"name": "fetch"}, {"name": "none"}]
    assert await store.load_steps(job.id + 1000) == {}


# -- suspend and resume ----------------------------------------------------------------------


async def test_a_durable_sleep_gives_the_attempt_back_and_resumes_when_due(
    store: SqlBackend,
) -> None:
    job = await running(store)
    wake = T0 + timedelta(minutes=10)
    result = await store.suspend(worker_id="w1", lease=lease(job), until=wake, now=T0)
    assert result == SuspendResult(suspended=True)
    waiting = await job_of(store, job.id)
    assert (waiting.status, waiting.attempts, waiting.run_at) == ("waiting", 0, wake)
    assert (waiting.locked_by, waiting.lease_expires_at, waiting.waiting_for) == (None, None, None)
    (wait,) = [e for e in await store.job_events(job.id) if e.type is EventType.WAIT]
    assert (wait.status, wait.data) == ("waiting", {"until": wake.isoformat(), "token": None})

    assert await store.resume_due(now=wake - timedelta(microseconds=1)) == []
    assert await store.resume_due(now=wake) == [job.id]
    assert await store.resume_due(now=wake) == []
    resumed = await job_of(store, job.id)
    assert (resumed.status, resumed.run_at) == ("pending", wake)
    assert (await store.job_events(job.id))[-1].type is EventType.RESUME
    (again,) = await store.claim(
        worker_id="w1", queue=None, job_types=None, limit=1, lease_seconds=30, now=wake
    )
    assert again.attempts == job.attempts  # the replay is the same attempt


async def test_resume_due_takes_at_most_limit_jobs_oldest_wake_first(store: SqlBackend) -> None:
    ids = []
    for minutes in (3, 1, 2):
        job = await running(store)
        until = T0 + timedelta(minutes=minutes)
        await store.suspend(worker_id="w1", lease=lease(job), until=until, now=T0)
        ids.append(job.id)
    assert await store.resume_due(now=LATER, limit=2) == sorted([ids[1], ids[2]])
    assert await store.resume_due(now=LATER, limit=2) == [ids[0]]


async def test_a_token_wait_is_resumed_by_completing_the_token(store: SqlBackend) -> None:
    job = await running(store)
    token = await store.create_token(
        token_id="tok-1", job_id=job.id, step="approve", expires_at=None, tags=["a"], now=T0
    )
    assert token.status is TokenStatus.PENDING
    result = await store.suspend(
        worker_id="w1", lease=lease(job), until=FOREVER, token_id="tok-1", now=T0
    )
    assert result == SuspendResult(suspended=True)
    waiting = await job_of(store, job.id)
    assert (waiting.status, waiting.waiting_for, waiting.run_at) == ("waiting", "tok-1", FOREVER)
    assert await store.resume_due(now=LATER) == []

    done = await store.complete_token("tok-1", {"ok": True}, now=LATER)
    assert (done.kind, done.resumed_job_id) == (TokenCompletionKind.COMPLETED, job.id)
    assert done.token is not None
    assert (done.token.status, done.token.data, done.token.completed_at) == (
        "completed",
        {"ok": True},
        LATER,
    )
    resumed = await job_of(store, job.id)
    assert (resumed.status, resumed.run_at, resumed.waiting_for) == ("pending", LATER, None)
    resume = (await store.job_events(job.id))[-1]
    assert (resume.type, resume.data) == (EventType.RESUME, {"token": "tok-1"})

    again = await store.complete_token("tok-1", {"ok": False}, now=LATER)
    assert (again.kind, again.resumed_job_id) == (TokenCompletionKind.NOT_PENDING, None)
    assert again.token is not None
    assert again.token.data == {"ok": True}
    assert (await store.complete_token("nope", 1)).kind is TokenCompletionKind.NOT_FOUND


async def test_a_token_completed_before_the_wait_is_returned_and_nothing_waits(
    store: SqlBackend,
) -> None:
    job = await running(store)
    await store.create_token(
        token_id="early", job_id=job.id, step="s", expires_at=None, tags=[], now=T0
    )
    assert (await store.complete_token("early", "yes", now=T0)).resumed_job_id is None
    result = await store.suspend(
        worker_id="w1", lease=lease(job), until=FOREVER, token_id="early", now=T0
    )
    assert (result.suspended, result.lost) == (False, False)
    assert result.token is not None
    assert (result.token.id, result.token.status, result.token.data) == (
        "early",
        "completed",
        "yes",
    )
    still = await job_of(store, job.id)
    assert (still.status, still.locked_by, still.attempts) == ("processing", "w1", 1)
    assert "wait" not in await event_types(store, job.id)


async def test_waiting_on_an_unknown_token_raises_and_writes_nothing(store: SqlBackend) -> None:
    job = await running(store)
    with pytest.raises(TokenNotFound):
        await store.suspend(worker_id="w1", lease=lease(job), until=FOREVER, token_id="x", now=T0)
    assert (await job_of(store, job.id)).status == "processing"


async def test_waiting_on_a_token_past_its_expiry_expires_it_instead(store: SqlBackend) -> None:
    job = await running(store)
    await store.create_token(
        token_id="late", job_id=job.id, step="s", expires_at=T0, tags=[], now=T0
    )
    result = await store.suspend(
        worker_id="w1", lease=lease(job), until=FOREVER, token_id="late", now=T0
    )
    assert result.suspended is False
    assert result.token is not None
    assert (result.token.status, result.token.completed_at) == ("expired", T0)
    assert (await job_of(store, job.id)).status == "processing"


async def test_a_token_completed_at_its_expiry_instant_is_expired_and_its_waiter_resumed(
    store: SqlBackend,
) -> None:
    job = await running(store)
    expiry = T0 + timedelta(minutes=5)
    await store.create_token(
        token_id="edge", job_id=job.id, step="s", expires_at=expiry, tags=[], now=T0
    )
    await store.suspend(worker_id="w1", lease=lease(job), until=expiry, token_id="edge", now=T0)
    result = await store.complete_token("edge", {"late": True}, now=expiry)
    assert (result.kind, result.resumed_job_id) == (TokenCompletionKind.NOT_PENDING, job.id)
    assert result.token is not None
    assert (result.token.status, result.token.data, result.token.completed_at) == (
        "expired",
        None,
        expiry,
    )
    resume = (await store.job_events(job.id))[-1]
    assert (resume.type, resume.data) == (EventType.RESUME, {"token": "edge", "expired": True})
    assert (await job_of(store, job.id)).status == "pending"


async def test_expire_tokens_expires_only_pending_tokens_past_expiry(store: SqlBackend) -> None:
    job = await running(store)
    soon = T0 + timedelta(seconds=1)
    for name, expiry in (("past", soon), ("future", LATER), ("never", None), ("done", soon)):
        await store.create_token(
            token_id=name, job_id=None, step=None, expires_at=expiry, tags=[], now=T0
        )
    await store.complete_token("done", 1, now=T0 - timedelta(seconds=1))
    await store.suspend(worker_id="w1", lease=lease(job), until=FOREVER, token_id="past", now=T0)
    assert await store.expire_tokens(now=soon) == ["past"]
    assert await store.expire_tokens(now=soon) == []
    statuses = {t.id: t.status.value for t in await store.list_tokens()}
    assert statuses == {
        "past": "expired",
        "future": "pending",
        "never": "pending",
        "done": "completed",
    }
    resumed = await job_of(store, job.id)
    assert (resumed.status, resumed.waiting_for) == ("pending", None)
    assert (await store.job_events(job.id))[-1].data == {"token": "past", "expired": True}


async def test_a_cancel_request_is_final_even_when_the_handler_then_waits(
    store: SqlBackend,
) -> None:
    job = await running(store)
    await store.cancel_job(job.id, now=T0)
    result = await store.suspend(worker_id="w1", lease=lease(job), until=LATER, now=T0)
    assert result.suspended is True
    assert (await job_of(store, job.id)).status == "cancelled"
    assert await store.resume_due(now=LATER) == []


async def test_a_cancelled_waiter_is_not_resumed_by_its_token(store: SqlBackend) -> None:
    job = await running(store)
    await store.create_token(token_id="k", job_id=job.id, step="s", expires_at=None, tags=[])
    await store.suspend(worker_id="w1", lease=lease(job), until=FOREVER, token_id="k", now=T0)
    cancelled = await store.cancel_job(job.id, now=T0)
    assert (cancelled.status, cancelled.waiting_for) == ("cancelled", None)
    done = await store.complete_token("k", None)
    assert (done.kind, done.resumed_job_id) == (TokenCompletionKind.COMPLETED, None)
    assert (await job_of(store, job.id)).status == "cancelled"


# -- tokens ----------------------------------------------------------------------------------


async def test_create_token_is_memoized_by_job_and_step(store: SqlBackend) -> None:
    job = await running(store)
    first = await store.create_token(
        token_id="t1", job_id=job.id, step="s", expires_at=LATER, tags=["x"], now=T0
    )
    replay = await store.create_token(
        token_id="t2", job_id=job.id, step="s", expires_at=None, tags=["y"], now=LATER
    )
    assert replay == first
    assert await store.get_token("t2") is None
    other = await store.create_token(
        token_id="t3", job_id=job.id, step="other", expires_at=None, tags=[], now=T0
    )
    assert other.id == "t3"
    # A standalone token created twice is the same token; an id taken by another is refused.
    solo = await store.create_token(
        token_id="solo", job_id=None, step=None, expires_at=None, tags=["a", "a"], now=T0
    )
    assert solo.tags == ["a"]
    assert (
        await store.create_token(
            token_id="solo", job_id=None, step=None, expires_at=None, tags=["a"], now=LATER
        )
        == solo
    )
    with pytest.raises(InvalidArgument, match="already used"):
        await store.create_token(
            token_id="t1", job_id=job.id, step="third", expires_at=None, tags=[], now=T0
        )


async def test_list_tokens_filters_and_returns_newest_first(store: SqlBackend) -> None:
    job = await running(store)
    specs = [
        ("a", job.id, ["red"]),
        ("b", None, ["blue", "red"]),
        ("c", job.id, []),
        ("d", None, ["green"]),
    ]
    for minute, (name, owner, tags) in enumerate(specs):
        await store.create_token(
            token_id=name,
            job_id=owner,
            step=name if owner else None,
            expires_at=None,
            tags=tags,
            now=T0 + timedelta(minutes=minute),
        )
    await store.complete_token("b", 1, now=LATER)

    async def ids(**filters: Any) -> list[str]:
        return [t.id for t in await store.list_tokens(**filters)]

    assert await ids() == ["d", "c", "b", "a"]
    assert await ids(limit=2) == ["d", "c"]
    assert await ids(tags=["red", "green"]) == ["d", "b", "a"]
    assert await ids(tags=[]) == []
    assert await ids(job_id=job.id) == ["c", "a"]
    assert await ids(status=[TokenStatus.COMPLETED]) == ["b"]
    assert await ids(status=[TokenStatus.PENDING], tags=["red"]) == ["a"]
    token = await store.get_token("b")
    assert token is not None
    assert (token.tags, token.job_id, token.data) == (["blue", "red"], None, 1)


async def test_fifty_concurrent_completions_complete_the_token_once(
    pg: PostgresBackend,
) -> None:
    job = await running(pg)
    await pg.create_token(token_id="race", job_id=job.id, step="s", expires_at=None, tags=[])
    await pg.suspend(worker_id="w1", lease=lease(job), until=FOREVER, token_id="race")
    results = await asyncio.gather(*(pg.complete_token("race", {"by": n}) for n in range(50)))
    kinds = [r.kind for r in results]
    assert kinds.count(TokenCompletionKind.COMPLETED) == 1
    assert kinds.count(TokenCompletionKind.NOT_PENDING) == 49
    (winner,) = [r for r in results if r.kind is TokenCompletionKind.COMPLETED]
    assert winner.resumed_job_id == job.id
    assert {r.resumed_job_id for r in results if r is not winner} == {None}
    # Every loser saw the winner's data, never a second success.
    assert winner.token is not None
    assert {r.token.data["by"] for r in results if r.token is not None} == {winner.token.data["by"]}
    assert (await event_types(pg, job.id)).count("resume") == 1


async def test_concurrent_creates_of_one_step_make_one_token(pg: PostgresBackend) -> None:
    job = await running(pg)
    made = await asyncio.gather(
        *(
            pg.create_token(
                token_id=f"t{n}", job_id=job.id, step="approve", expires_at=None, tags=["x"]
            )
            for n in range(20)
        )
    )
    assert len({token.id for token in made}) == 1
    assert len(await pg.list_tokens(job_id=job.id)) == 1
    assert await count(pg, token_tags) == 1


async def test_concurrent_sweeps_resume_and_expire_each_row_once(pg: PostgresBackend) -> None:
    for n in range(20):
        job = await running(pg)
        await pg.create_token(
            token_id=f"k{n}",
            job_id=job.id,
            step="s",
            expires_at=T0 + timedelta(minutes=1),
            now=T0,
            tags=[],
        )
        until = T0 if n % 2 else FOREVER
        token = None if n % 2 else f"k{n}"
        await pg.suspend(worker_id="w1", lease=lease(job), until=until, token_id=token, now=T0)
    # Both sweeps at once, eight supervisors each.
    resumed, expired = await asyncio.gather(
        asyncio.gather(*(pg.resume_due(now=LATER, limit=3) for _ in range(8))),
        asyncio.gather(*(pg.expire_tokens(now=LATER, limit=3) for _ in range(8))),
    )
    resumed_ids = [job_id for batch in resumed for job_id in batch]
    expired_ids = [token_id for batch in expired for token_id in batch]
    assert len(resumed_ids) == len(set(resumed_ids))
    assert len(expired_ids) == len(set(expired_ids))
    # Whatever the sweeps left, one more pass finishes; nothing is done twice.
    resumed_ids += await pg.resume_due(now=LATER)
    expired_ids += await pg.expire_tokens(now=LATER)
    assert len(resumed_ids) == len(set(resumed_ids)) == 10
    assert len(expired_ids) == len(set(expired_ids)) == 20
    waiting = await count(pg, job_events, job_events.c.type == "resume")
    assert waiting == 20  # ten sleeps resumed, ten token waits resumed by expiry


async def test_now_none_reads_the_store_clock(store: SqlBackend) -> None:
    token = await store.create_token(
        token_id="clock", job_id=None, step=None, expires_at=None, tags=[]
    )
    done = await store.complete_token("clock", 1)
    assert done.token is not None
    assert done.token.completed_at is not None
    assert abs(done.token.completed_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert token.created_at <= done.token.completed_at


# -- purge -----------------------------------------------------------------------------------


async def finished(store: SqlBackend, at: datetime, *, tag: str = "old") -> int:
    """A job completed at `at` with a step, a tag, a token (with a tag) and its events."""
    (added,) = await store.insert_jobs([new_job(tags=[tag])], now=at)
    (job,) = await store.claim(
        worker_id="w1", queue=None, job_types=None, limit=1, lease_seconds=30, now=at
    )
    assert job.id == added.id
    await store.save_step(worker_id="w1", lease=lease(job), name="s", value=1, now=at)
    await store.create_token(
        token_id=f"tok{job.id}", job_id=job.id, step="s", expires_at=None, tags=[tag], now=at
    )
    await store.finish(
        worker_id="w1", outcomes=[Outcome(OutcomeKind.COMPLETE, lease(job), output=1)], now=at
    )
    return job.id


async def test_purge_deletes_old_finished_jobs_with_everything_of_theirs(
    store: SqlBackend,
) -> None:
    old = [await finished(store, T0) for _ in range(3)]
    recent = await finished(store, LATER, tag="recent")
    keep = await running(store)  # active, and the newest job (see the SQLite test below)
    cutoff = T0 + timedelta(minutes=1)

    for deleted in (2, 1, 0):
        result = await store.purge(finished_before=cutoff, events_before=None, limit=2)
        assert result == PurgeResult(jobs=deleted, events=0)

    for job_id in old:
        assert await store.get_job(job_id) is None
        assert await store.load_steps(job_id) == {}
        assert await store.get_token(f"tok{job_id}") is None
        assert await store.job_events(job_id) == []
    assert await count(store, job_tags, job_tags.c.job_id.in_(old)) == 0
    assert await count(store, job_steps, job_steps.c.job_id.in_(old)) == 0
    assert await count(store, tokens, tokens.c.job_id.in_(old)) == 0
    assert await count(store, token_tags, token_tags.c.tag == "old") == 0
    assert await count(store, token_tags, token_tags.c.tag == "recent") == 1
    assert await store.load_steps(recent) == {"s": 1}
    assert await store.get_token(f"tok{recent}") is not None
    assert (await job_of(store, keep.id)).status == "processing"
    assert await event_types(store, recent) == ["added", "claim", "step", "complete"]


async def test_purge_frees_the_idempotency_keys_of_the_jobs_it_deletes(
    store: SqlBackend,
) -> None:
    first = await running(store, idempotency_key="once")
    await store.finish(
        worker_id="w1", outcomes=[Outcome(OutcomeKind.COMPLETE, lease(first))], now=T0
    )
    await running(store)  # the newest job (see the SQLite test below)
    assert (await store.purge(finished_before=LATER, events_before=None)).jobs == 1
    (again,) = await store.insert_jobs([new_job(idempotency_key="once")], now=LATER)
    assert again.created
    assert again.id != first.id


async def test_purge_deletes_old_events_of_jobs_it_keeps(store: SqlBackend) -> None:
    job = await running(store)  # added + claim at T0
    await store.set_progress(worker_id="w1", lease=lease(job), progress=5, message=None, now=LATER)
    other = await running(store)  # added + claim at T0, the newest events
    result = await store.purge(finished_before=None, events_before=T0 + timedelta(seconds=1))
    assert (result.jobs, result.events) == (0, 4)
    assert await event_types(store, job.id) == ["progress"]
    assert await store.job_events(other.id) == []
    assert (await job_of(store, job.id)).status == "processing"


async def test_sqlite_never_hands_out_a_purged_id_again(sqlite_url: str) -> None:
    store = _open(sqlite_url)
    await store.open(migrate=True)
    try:
        first = await finished(store, T0)
        newest = await finished(store, T0)
        cursor = await store.latest_event_cursor()
        assert cursor is not None
        result = await store.purge(finished_before=LATER, events_before=LATER)
        # The newest job stays (aq_jobs would give its id out again); every old event goes.
        assert (result.jobs, result.events) == (1, 4)  # the kept job's four
        assert await store.get_job(first) is None
        assert await store.get_job(newest) is not None
        assert await store.latest_event_cursor() is None
        (added,) = await store.insert_jobs([new_job()], now=LATER)
        assert added.id > newest
        events = await store.read_events(after=cursor, limit=10)
        assert [(e.job_id, e.type.value) for e in events] == [(added.id, "added")]
    finally:
        await store.close()


async def test_the_postgres_feed_continues_across_a_purge(pg: PostgresBackend) -> None:
    old = [await finished(pg, T0) for _ in range(3)]
    cursor = await pg.latest_event_cursor()
    assert cursor is not None
    commits = await count(pg, event_commits)
    result = await pg.purge(finished_before=LATER, events_before=LATER)
    assert result.jobs == 3
    assert await count(pg, job_events) == 0
    # Commits without events are gone with them; numbered or not, none is left behind.
    assert (
        await count(
            pg,
            event_commits,
            ~sa.exists().where(job_events.c.txid == event_commits.c.txid),
        )
        == 0
    )
    assert commits > 0
    assert await pg.latest_event_cursor() is None

    (added,) = await pg.insert_jobs([new_job()], now=LATER)
    assert added.id > max(old)
    after_old = await pg.read_events(after=cursor, limit=10)
    assert [(e.job_id, e.type.value) for e in after_old] == [(added.id, "added")]
    assert await pg.read_events(after=after_old[-1].cursor, limit=10) == []
    assert await pg.latest_event_cursor() == after_old[-1].cursor
    from_start = await pg.read_events(after=None, limit=10)
    assert [e.cursor for e in from_start] == [after_old[-1].cursor]


async def test_purge_leaves_commits_that_still_have_events(pg: PostgresBackend) -> None:
    # One transaction writes events of two jobs (a batch enqueue); purging one job keeps the
    # commit row the other job's event still needs.
    first, second = await pg.insert_jobs([new_job(), new_job()], now=T0)
    (job,) = await pg.claim(
        worker_id="w1", queue=None, job_types=None, limit=1, lease_seconds=30, now=T0
    )
    assert job.id == first.id
    await pg.finish(worker_id="w1", outcomes=[Outcome(OutcomeKind.COMPLETE, lease(job))], now=T0)
    cursor_before = await pg.latest_event_cursor()
    assert (await pg.purge(finished_before=LATER, events_before=None)).jobs == 1
    events = await pg.read_events(after=None, limit=10)
    assert [(e.job_id, e.type.value) for e in events] == [(second.id, "added")]
    (later,) = await pg.insert_jobs([new_job()], now=LATER)
    assert [e.job_id for e in await pg.read_events(after=cursor_before, limit=10)] == [later.id]


async def _blocked_behind(pg: PostgresBackend, statements: str, call: Any) -> Any:
    """Run `call` while another connection holds the uncommitted writes and locks of
    `statements`; commit them once `call` is blocked; return what `call` returned."""
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'SET search_path TO "{pg.schema}"')
        async with conn.transaction():
            await conn.execute(statements)
            task = asyncio.create_task(call())
            await eventually(lambda: _waiting_for_lock(conn))
            assert not task.done()
        return await asyncio.wait_for(task, 10)
    finally:
        await conn.close()


async def _waiting_for_lock(conn: Any) -> bool:
    """Whether some session waits for a lock this connection holds."""
    return bool(
        await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
            conn.get_server_pid(),
        )
    )


async def test_a_completion_blocked_behind_another_sees_not_pending(pg: PostgresBackend) -> None:
    await pg.create_token(token_id="k", job_id=None, step=None, expires_at=None, tags=[])
    result = await _blocked_behind(
        pg,
        "UPDATE aq_tokens SET status = 'completed', data = '\"first\"' WHERE id = 'k'",
        lambda: pg.complete_token("k", "second"),
    )
    assert result.kind is TokenCompletionKind.NOT_PENDING
    assert result.token is not None
    assert (result.token.status, result.token.data) == ("completed", "first")


async def test_a_create_blocked_behind_the_same_step_returns_that_token(
    pg: PostgresBackend,
) -> None:
    job = await running(pg)
    result = await _blocked_behind(
        pg,
        "INSERT INTO aq_tokens (id, job_id, step, status, created_at, tags) "
        f"VALUES ('first', {job.id}, 's', 'pending', now(), '[]')",
        lambda: pg.create_token(
            token_id="second", job_id=job.id, step="s", expires_at=None, tags=[]
        ),
    )
    assert result.id == "first"
    assert await pg.get_token("second") is None


async def test_purges_racing_over_one_commit_leave_no_commit_behind(pg: PostgresBackend) -> None:
    # Both jobs' events come from the same three transactions (batch insert, claim, finish).
    await pg.insert_jobs([new_job(), new_job()], now=T0)
    claimed = await pg.claim(
        worker_id="w1", queue=None, job_types=None, limit=2, lease_seconds=30, now=T0
    )
    await pg.finish(
        worker_id="w1",
        outcomes=[Outcome(OutcomeKind.COMPLETE, lease(job)) for job in claimed],
        now=T0,
    )
    first, second = sorted(job.id for job in claimed)
    # Another purge, mid-way: it has deleted the first job's events and locked their commits.
    other_purge = f"""
        SELECT id FROM aq_jobs WHERE id = {first} FOR UPDATE;
        SELECT txid FROM aq_event_commits WHERE txid IN (
            SELECT txid FROM aq_job_events WHERE job_id = {first}) ORDER BY txid FOR UPDATE;
        DELETE FROM aq_job_events WHERE job_id = {first};
        DELETE FROM aq_jobs WHERE id = {first};
    """
    result = await _blocked_behind(
        pg, other_purge, lambda: pg.purge(finished_before=LATER, events_before=None)
    )
    assert result.jobs == 1
    assert await pg.get_job(second) is None
    assert await count(pg, job_events) == 0
    assert await count(pg, event_commits) == 0
