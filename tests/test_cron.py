"""Cron schedules on every store: validation, management, exactly one job per tick, overlap,
missed ticks, DST — on a frozen clock, never a real minute-long wait."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from agentqueue import FrozenClock, JobStatus, Queue
from agentqueue.errors import CronJobNotFound, InvalidArgument, PayloadInvalid
from agentqueue.models import CronStatus
from agentqueue.testing import run_due_jobs

START = datetime(2030, 1, 7, 8, 58, 30, tzinfo=UTC)  # a Monday


@pytest.fixture
def clock() -> FrozenClock:
    """Frozen time shared by a test's queues."""
    return FrozenClock(START)


@pytest.fixture
async def timed(store_url: str, clock: FrozenClock) -> Any:
    """A queue on a fresh store on the frozen clock, with a `report` handler."""
    async with Queue(store_url, clock=clock) as queue:

        @queue.handler("report")
        async def report(payload: dict[str, Any]) -> None:
            return None

        yield queue


async def _jobs(queue: Queue, job_type: str = "report") -> list[Any]:
    return (await queue.list_jobs(job_type=job_type, order="oldest", limit=1000)).items


async def test_schedules_are_validated_and_nothing_is_stored_on_error(timed: Queue) -> None:
    bad: list[tuple[tuple[Any, ...], dict[str, Any], str]] = [
        (("a", "61 * * * *", "report"), {}, "Bad minute"),
        (("a", "0 9 * * 1", "report"), {"timezone": "Mars/Base"}, "unknown time zone"),
        (("a", "0 9 * * 1", "report"), {"priority": "high"}, "priority"),
        (("a", "0 9 * * 1", "report"), {"delay": 5}, "sets delay itself"),
        (("a", "0 9 * * 1", "report", [1, 2]), {}, "payload"),
        (("bad name!", "0 9 * * 1", "report"), {}, "schedule name"),
        (("a", "0 9 * * 1", "no such/type"), {}, "job_type"),
    ]
    for args, kwargs, message in bad:
        with pytest.raises((InvalidArgument, PayloadInvalid), match=message):
            await timed.add_cron_job(*args, **kwargs)
    assert await timed.list_cron_jobs() == []


async def test_add_get_list_edit_pause_resume_remove(timed: Queue, clock: FrozenClock) -> None:
    cron = await timed.add_cron_job(
        "weekly-report",
        "0 9 * * MON",
        "report",
        {"kind": "weekly"},
        timezone="Europe/Berlin",
        priority=5,
        tags=["reports"],
        max_attempts=2,
    )
    assert cron.status is CronStatus.ACTIVE
    assert cron.next_run_at == datetime(2030, 1, 14, 8, tzinfo=UTC)  # 09:00 Berlin = 08:00 UTC
    assert cron.options.priority == 5
    assert await timed.get_cron_job("weekly-report") == cron
    assert [c.name for c in await timed.list_cron_jobs()] == ["weekly-report"]

    edited = await timed.edit_cron_job("weekly-report", cron_expression="0 10 * * MON", priority=7)
    assert edited.expression == "0 10 * * MON"
    assert (edited.options.priority, edited.options.tags) == (7, ["reports"])
    assert edited.next_run_at == datetime(2030, 1, 7, 9, tzinfo=UTC)  # today 10:00 Berlin

    paused = await timed.pause_cron_job("weekly-report")
    assert (paused.status, paused.next_run_at) == (CronStatus.PAUSED, None)
    assert [c.name for c in await timed.list_cron_jobs(CronStatus.PAUSED)] == ["weekly-report"]
    assert await timed.list_cron_jobs("active") == []
    clock.advance(days=8)
    assert (await timed.maintain()).cron_fired == []
    resumed = await timed.resume_cron_job("weekly-report")
    assert resumed.next_run_at is not None
    assert resumed.next_run_at > clock.now()

    await timed.remove_cron_job("weekly-report")
    assert await timed.get_cron_job("weekly-report") is None
    for call in (
        timed.remove_cron_job("weekly-report"),
        timed.pause_cron_job("weekly-report"),
        timed.edit_cron_job("weekly-report", priority=1),
    ):
        with pytest.raises(CronJobNotFound):
            await call


async def test_each_tick_fires_one_job_and_missed_ticks_fire_once(
    timed: Queue, clock: FrozenClock
) -> None:
    await timed.add_cron_job("every-minute", "* * * * *", "report", {"n": 1}, priority=3)
    assert (await timed.maintain()).cron_fired == []
    clock.set(datetime(2030, 1, 7, 8, 59, tzinfo=UTC))
    [first] = (await timed.maintain()).cron_fired
    job = await timed.get_job(first)
    assert job is not None
    assert (job.payload, job.priority) == ({"n": 1}, 3)
    assert job.idempotency_key == "cron:every-minute:2030-01-07T08:59:00+00:00"
    assert (await timed.maintain()).cron_fired == []  # the same tick never fires twice
    await run_due_jobs(timed)

    clock.set(datetime(2030, 1, 7, 10, 30, 10, tzinfo=UTC))  # 91 ticks missed
    assert len((await timed.maintain()).cron_fired) == 1
    cron = await timed.get_cron_job("every-minute")
    assert cron is not None
    assert cron.next_run_at == datetime(2030, 1, 7, 10, 31, tzinfo=UTC)
    assert cron.last_run_at == datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
    assert len(await _jobs(timed)) == 2


async def test_redeclaring_a_schedule_keeps_a_due_tick(timed: Queue, clock: FrozenClock) -> None:
    await timed.add_cron_job("every-minute", "* * * * *", "report")
    clock.set(datetime(2030, 1, 7, 9, 30, tzinfo=UTC))  # down since 08:59; 09:00 is due
    again = await timed.add_cron_job("every-minute", "* * * * *", "report", priority=2)
    assert again.next_run_at == datetime(2030, 1, 7, 8, 59, tzinfo=UTC)
    assert len((await timed.maintain()).cron_fired) == 1
    moved = await timed.edit_cron_job("every-minute", cron_expression="*/5 * * * *")
    assert moved.next_run_at == datetime(2030, 1, 7, 9, 35, tzinfo=UTC)


async def test_a_tick_is_skipped_while_the_previous_job_is_still_active(
    timed: Queue, clock: FrozenClock
) -> None:
    await timed.add_cron_job("guarded", "* * * * *", "report")
    await timed.add_cron_job("overlapping", "* * * * *", "report", allow_overlap=True)
    clock.set(datetime(2030, 1, 7, 8, 59, tzinfo=UTC))
    assert len((await timed.maintain()).cron_fired) == 2
    clock.advance(60)  # nothing ran: the guarded schedule's job is still pending
    assert len((await timed.maintain()).cron_fired) == 1
    guarded = await timed.get_cron_job("guarded")
    assert guarded is not None
    assert guarded.last_run_at == datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
    await run_due_jobs(timed)
    clock.advance(60)
    assert len((await timed.maintain()).cron_fired) == 2


async def test_three_schedulers_fire_each_tick_once_across_a_restart(
    shared_url: str, clock: FrozenClock
) -> None:
    queues = [Queue(shared_url, clock=clock) for _ in range(3)]
    for queue in queues:
        await queue.open()
    await queues[0].add_cron_job("busy", "*/10 * * * * *", "report", allow_overlap=True)
    fired: list[int] = []
    for round_number in range(12):
        clock.advance(10)
        reports = await asyncio.gather(*(queue.maintain() for queue in queues))
        fired += [job for report in reports for job in report.cron_fired]
        if round_number == 5:  # every scheduler restarts
            for queue in queues:
                await queue.close()
            queues = [Queue(shared_url, clock=clock) for _ in range(3)]
            for queue in queues:
                await queue.open()
    assert len(fired) == len(set(fired)) == 12
    keys = [job.idempotency_key for job in await _jobs(queues[0])]
    assert len(keys) == len(set(keys)) == 12
    for queue in queues:
        await queue.close()


async def test_dst_ticks_in_berlin(timed: Queue, clock: FrozenClock) -> None:
    clock.set(datetime(2030, 3, 30, 12, tzinfo=UTC))
    await timed.add_cron_job("nightly", "30 2 * * *", "report", timezone="Europe/Berlin")
    ticks = []
    for _ in range(2):
        cron = await timed.get_cron_job("nightly")
        assert cron is not None
        assert cron.next_run_at is not None
        ticks.append(cron.next_run_at)
        clock.set(cron.next_run_at)
        await timed.maintain()
    # 2030-03-31 is spring-forward: 02:30 does not exist, it runs at 03:00 CEST (01:00 UTC).
    assert ticks == [
        datetime(2030, 3, 31, 1, 0, tzinfo=UTC),
        datetime(2030, 4, 1, 0, 30, tzinfo=UTC),
    ]
    clock.set(datetime(2030, 10, 26, 12, tzinfo=UTC))
    await timed.pause_cron_job("nightly")
    await timed.resume_cron_job("nightly")  # the next tick from now
    cron = await timed.get_cron_job("nightly")
    assert cron is not None
    # 2030-10-27 is fall-back: 02:30 happens twice, the job runs once (the first, CEST).
    fall_tick = datetime(2030, 10, 27, 0, 30, tzinfo=UTC)
    assert cron.next_run_at == fall_tick
    clock.set(fall_tick)
    await timed.maintain()
    after = await timed.get_cron_job("nightly")
    assert after is not None
    assert after.next_run_at == datetime(2030, 10, 28, 1, 30, tzinfo=UTC)


async def test_schedules_declared_in_code_are_upserted_when_a_worker_starts(
    store_url: str, clock: FrozenClock
) -> None:
    async with Queue(store_url, clock=clock) as queue:

        @queue.cron("0 * * * *", payload={"from": "code"}, tags=["cron"])
        @queue.handler("hourly")
        async def hourly(payload: dict[str, Any]) -> None:
            return None

        assert await queue.list_cron_jobs() == []
        await run_due_jobs(queue)
        cron = await queue.get_cron_job("hourly")
        assert cron is not None
        assert (cron.expression, cron.payload, cron.options.tags) == (
            "0 * * * *",
            {"from": "code"},
            ["cron"],
        )
        await queue.pause_cron_job("hourly")
        await run_due_jobs(queue)  # a restart keeps the operator's pause
        paused = await queue.get_cron_job("hourly")
        assert paused is not None
        assert paused.status is CronStatus.PAUSED
        clock.advance(3600)
        await queue.resume_cron_job("hourly")
        clock.advance(3600)
        assert await run_due_jobs(queue) == {"complete": 1}
        [job] = await _jobs(queue, "hourly")
        assert job.status is JobStatus.COMPLETED


def test_cron_needs_a_handler_below_it(tmp_path: Any) -> None:
    queue = Queue("memory://")

    async def loose(payload: dict[str, Any]) -> None:
        return None

    with pytest.raises(InvalidArgument, match="above"):
        queue.cron("0 * * * *")(loose)
    with pytest.raises(InvalidArgument, match="Bad hour"):
        queue.cron("0 25 * * *")
