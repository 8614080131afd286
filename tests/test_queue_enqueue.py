"""Enqueueing: add_job / add_jobs, defaults, validation, atomicity and idempotency keys."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from agentqueue import FrozenClock, InvalidArgument, NewJob, PayloadInvalid, Queue
from agentqueue.models import Origin
from agentqueue.states import JobStatus


class Email(BaseModel):
    to: str
    subject: str
    retries: int = 0


def register_email(target: Queue, **defaults: Any) -> None:
    @target.handler("send_email", description="Send one email.", **defaults)
    async def send_email(payload: Email) -> None:
        return None


async def assert_nothing_stored(queue: Queue) -> None:
    page = await queue.list_jobs()
    assert page.items == []
    stats = await queue.stats()
    assert sum(stats.totals.values()) == 0


async def test_add_job_returns_distinct_increasing_ids(queue: Queue) -> None:
    first = await queue.add_job("a", {"n": 1})
    second = await queue.add_job("a", {"n": 2})
    assert isinstance(first, int)
    assert second > first


async def test_add_jobs_returns_ids_in_input_order(queue: Queue) -> None:
    ids = await queue.add_jobs([{"job_type": "a", "payload": {"n": n}} for n in range(5)])
    assert len(set(ids)) == 5
    for n, job_id in enumerate(ids):
        job = await queue.get_job(job_id)
        assert job is not None
        assert job.payload == {"n": n}


async def test_add_jobs_with_an_empty_list_stores_nothing(queue: Queue) -> None:
    assert await queue.add_jobs([]) == []
    await assert_nothing_stored(queue)


async def test_a_job_without_options_gets_the_queue_defaults(queue: Queue) -> None:
    job = await queue.get_job(await queue.add_job("plain"))
    assert job is not None
    assert job.status is JobStatus.PENDING
    assert job.queue == "default"
    assert job.payload == {}
    assert job.priority == 0
    assert job.attempts == 0
    assert job.max_attempts == 3
    assert job.retry_delay == 10
    assert job.retry_backoff is True
    assert job.retry_delay_max == 3600
    assert job.timeout is None
    assert job.tags == []
    assert job.idempotency_key is None
    assert job.run_at == job.created_at


async def test_handler_defaults_apply_unless_add_job_overrides_them(queue: Queue) -> None:
    register_email(queue, queue="mail", max_attempts=7, retry_delay=2, priority=5, timeout=9)
    payload = {"to": "a@x.io", "subject": "hi"}
    defaulted = await queue.get_job(await queue.add_job("send_email", payload))
    explicit = await queue.get_job(
        await queue.add_job(
            "send_email", payload, queue="urgent", max_attempts=1, retry_delay=0, priority=-1
        )
    )
    assert defaulted is not None
    assert explicit is not None
    assert (defaulted.queue, defaulted.max_attempts, defaulted.retry_delay) == ("mail", 7, 2)
    assert (defaulted.priority, defaulted.timeout) == (5, 9)
    assert (explicit.queue, explicit.max_attempts, explicit.retry_delay) == ("urgent", 1, 0)
    assert (explicit.priority, explicit.timeout) == (-1, 9)


async def test_run_at_schedules_the_job_at_that_time(queue: Queue) -> None:
    when = datetime.now(UTC) + timedelta(hours=2)
    job = await queue.get_job(await queue.add_job("later", run_at=when))
    assert job is not None
    assert job.run_at == when


async def test_delay_schedules_the_job_that_many_seconds_after_it_was_created(queue: Queue) -> None:
    job = await queue.get_job(await queue.add_job("later", delay=90))
    assert job is not None
    assert job.run_at - job.created_at == timedelta(seconds=90)


async def test_run_at_and_delay_together_are_rejected(queue: Queue) -> None:
    with pytest.raises(InvalidArgument, match="run_at or delay"):
        await queue.add_job("later", run_at=datetime.now(UTC), delay=5)
    await assert_nothing_stored(queue)


async def test_a_naive_run_at_is_rejected(queue: Queue) -> None:
    with pytest.raises(InvalidArgument, match="run_at"):
        await queue.add_job("later", run_at=datetime(2030, 1, 1, 12, 0))
    await assert_nothing_stored(queue)


async def test_a_negative_delay_is_rejected(queue: Queue) -> None:
    with pytest.raises(InvalidArgument, match="delay"):
        await queue.add_job("later", delay=-1)


async def test_tags_are_stored_once_each_in_first_seen_order(queue: Queue) -> None:
    job = await queue.get_job(await queue.add_job("t", tags=["b", "a", "b", "c", "a"]))
    assert job is not None
    assert job.tags == ["b", "a", "c"]


@pytest.mark.parametrize("bad", ["", "x" * 201])
async def test_an_empty_or_overlong_tag_is_rejected(queue: Queue, bad: str) -> None:
    with pytest.raises(InvalidArgument, match="tag"):
        await queue.add_job("t", tags=["ok", bad])
    await assert_nothing_stored(queue)


@pytest.mark.parametrize("priority", [-1_000_000, 0, 1_000_000])
async def test_priorities_within_bounds_are_stored(queue: Queue, priority: int) -> None:
    job = await queue.get_job(await queue.add_job("p", priority=priority))
    assert job is not None
    assert job.priority == priority


@pytest.mark.parametrize("priority", [-1_000_001, 1_000_001])
async def test_priorities_out_of_bounds_are_rejected(queue: Queue, priority: int) -> None:
    with pytest.raises(InvalidArgument, match="priority"):
        await queue.add_job("p", priority=priority)


@pytest.mark.parametrize(
    "option", [{"max_attempts": 0}, {"retry_delay": -1}, {"timeout": 0}, {"queue": "bad queue"}]
)
async def test_out_of_range_options_are_rejected(queue: Queue, option: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument, match=next(iter(option))):
        await queue.add_job("p", **option)
    await assert_nothing_stored(queue)


async def test_an_unknown_option_is_rejected(queue: Queue) -> None:
    with pytest.raises(InvalidArgument, match="colour"):
        await queue.add_job("p", colour="red")


async def test_a_malformed_job_type_is_rejected(queue: Queue) -> None:
    with pytest.raises(InvalidArgument, match="job_type"):
        await queue.add_job("has spaces")


@pytest.mark.parametrize(
    "payload", [{"s": {1, 2}}, {"when": datetime.now(UTC)}, {"x": float("nan")}, object()]
)
async def test_a_payload_that_is_not_plain_json_is_rejected(queue: Queue, payload: Any) -> None:
    with pytest.raises(InvalidArgument, match="JSON"):
        await queue.add_job("p", payload)
    await assert_nothing_stored(queue)


async def test_a_pydantic_model_payload_is_stored_as_its_json_data(queue: Queue) -> None:
    job_id = await queue.add_job("unregistered", Email(to="a@x.io", subject="hi"))
    job = await queue.get_job(job_id)
    assert job is not None
    assert job.payload == {"to": "a@x.io", "subject": "hi", "retries": 0}


async def test_a_payload_is_validated_against_the_local_handlers_model(queue: Queue) -> None:
    register_email(queue)
    with pytest.raises(PayloadInvalid) as caught:
        await queue.add_job("send_email", {"to": "a@x.io", "retries": "many"})
    error = caught.value
    assert error.job_type == "send_email"
    assert {e["loc"] for e in error.errors} == {"subject", "retries"}
    assert "subject" in str(error)
    assert error.schema is not None
    assert "subject" in error.schema["properties"]
    await assert_nothing_stored(queue)


async def test_a_model_instance_is_accepted_by_its_handler(queue: Queue) -> None:
    register_email(queue)
    job = await queue.get_job(await queue.add_job("send_email", Email(to="b@x.io", subject="s")))
    assert job is not None
    assert job.payload["to"] == "b@x.io"


async def test_a_process_without_the_handler_validates_against_the_published_registry(
    shared_url: str,
) -> None:
    async with Queue(shared_url) as worker_side, Queue(shared_url) as api_side:
        register_email(worker_side)
        await worker_side.publish_job_types()
        assert api_side.registry.get("send_email") is None
        with pytest.raises(PayloadInvalid) as caught:
            await api_side.add_job("send_email", {"to": "a@x.io"})
        assert caught.value.job_type == "send_email"
        assert [e["loc"] for e in caught.value.errors] == [""]
        assert "subject" in caught.value.errors[0]["msg"]
        with pytest.raises(PayloadInvalid, match="retries"):
            await api_side.add_job("send_email", {"to": "a", "subject": "s", "retries": "x"})
        await assert_nothing_stored(api_side)
        job_id = await api_side.add_job("send_email", {"to": "a@x.io", "subject": "hi"})
        assert (await worker_side.get_job(job_id)) is not None


async def test_a_process_without_the_handler_applies_the_published_handler_defaults(
    shared_url: str,
) -> None:
    async with Queue(shared_url) as worker_side, Queue(shared_url) as api_side:

        @worker_side.handler("report", queue="slow", max_attempts=7, retry_delay=2, timeout=30)
        async def report(payload: dict[str, Any]) -> None:
            """Build a report."""

        await worker_side.publish_job_types()
        job_id = await api_side.add_job("report", {"month": 11})
        overridden = await api_side.add_job("report", {}, max_attempts=2, queue="fast")
        job = await api_side.get_job(job_id)
        other = await api_side.get_job(overridden)
    assert job is not None
    assert other is not None
    assert (job.queue, job.max_attempts, job.retry_delay, job.timeout) == ("slow", 7, 2.0, 30.0)
    assert (other.queue, other.max_attempts, other.retry_delay) == ("fast", 2, 2.0)


async def test_add_jobs_stores_nothing_when_one_item_is_invalid(queue: Queue) -> None:
    register_email(queue)
    batch: list[NewJob | dict[str, Any]] = [
        {"job_type": "plain"},
        {"job_type": "send_email", "payload": {"to": "a@x.io", "subject": "ok"}},
        {"job_type": "send_email", "payload": {"to": "a@x.io"}},
    ]
    with pytest.raises(PayloadInvalid):
        await queue.add_jobs(batch)
    await assert_nothing_stored(queue)
    with pytest.raises(InvalidArgument):
        await queue.add_jobs([{"job_type": "plain"}, {"job_type": "plain", "priority": "high"}])
    await assert_nothing_stored(queue)


async def test_a_bad_batch_gets_the_error_its_first_bad_job_gets_alone(queue: Queue) -> None:
    # The batch is parsed and checked for plain JSON in one call each; a failure there must
    # still name the first bad job's own problem, in input order.
    register_email(queue)
    nan = {"job_type": "plain", "payload": {"x": float("nan")}}
    unmatched = {"job_type": "send_email", "payload": {"to": "a@x.io"}}
    with pytest.raises(PayloadInvalid) as schema:
        await queue.add_jobs([{"job_type": "plain"}, unmatched, nan])
    assert schema.value.job_type == "send_email"
    with pytest.raises(InvalidArgument, match="plain JSON"):
        await queue.add_jobs([{"job_type": "plain"}, nan, unmatched])
    alone = None
    try:
        await queue.add_job("plain", priority="high")
    except InvalidArgument as error:
        alone = error
    with pytest.raises(InvalidArgument) as parsed:
        await queue.add_jobs([{"job_type": "plain"}, {"job_type": "plain", "priority": "high"}])
    assert alone is not None
    assert parsed.value.to_dict() == alone.to_dict()
    await assert_nothing_stored(queue)


async def test_add_jobs_accepts_new_job_models_and_dicts_mixed(queue: Queue) -> None:
    ids = await queue.add_jobs(
        [
            NewJob(job_type="a", payload={"n": 1}, priority=3),
            {"job_type": "b", "payload": {"n": 2}, "tags": ["x"]},
            NewJob(job_type="c", queue="other"),
        ]
    )
    jobs = [await queue.get_job(job_id) for job_id in ids]
    assert [(j.job_type, j.payload) for j in jobs if j] == [
        ("a", {"n": 1}),
        ("b", {"n": 2}),
        ("c", {}),
    ]
    assert [(j.priority, j.tags, j.queue) for j in jobs if j] == [
        (3, [], "default"),
        (0, ["x"], "default"),
        (0, [], "other"),
    ]


async def test_the_same_idempotency_key_returns_the_first_jobs_id(queue: Queue) -> None:
    first = await queue.add_job("report", {"day": 1}, idempotency_key="day-1")
    again = await queue.add_job("report", {"day": 99}, idempotency_key="day-1")
    assert again == first
    assert (first.created, again.created) == (True, False)  # the duplicate says so
    job = await queue.get_job(first)
    assert job is not None
    assert job.payload == {"day": 1}
    assert job.idempotency_key == "day-1"
    assert (await queue.stats()).totals[JobStatus.PENDING] == 1


async def test_duplicate_idempotency_keys_inside_one_batch_resolve_to_the_first(
    queue: Queue,
) -> None:
    ids = await queue.add_jobs(
        [
            {"job_type": "report", "idempotency_key": "k", "payload": {"v": 1}},
            {"job_type": "report", "payload": {"v": 2}},
            {"job_type": "report", "idempotency_key": "k", "payload": {"v": 3}},
        ]
    )
    assert ids[0] == ids[2]
    assert ids[1] != ids[0]
    assert [job_id.created for job_id in ids] == [True, True, False]
    assert (await queue.stats()).totals[JobStatus.PENDING] == 2
    later = await queue.add_jobs([{"job_type": "report", "idempotency_key": "k"}])
    assert later == [ids[0]]


async def test_the_same_idempotency_key_on_different_job_types_does_not_collide(
    queue: Queue,
) -> None:
    a = await queue.add_job("report", idempotency_key="shared")
    b = await queue.add_job("invoice", idempotency_key="shared")
    assert a != b
    assert (await queue.stats()).totals[JobStatus.PENDING] == 2


async def test_every_added_job_records_an_added_event(queue: Queue) -> None:
    ids = await queue.add_jobs([{"job_type": "a"}, {"job_type": "b", "queue": "q2"}])
    for job_id in ids:
        events = await queue.get_job_events(job_id)
        assert [(e.type.value, e.status) for e in events] == [("added", JobStatus.PENDING)]
    second = (await queue.get_job_events(ids[1]))[0]
    assert (second.job_type, second.queue) == ("b", "q2")


async def test_concurrent_adds_with_one_idempotency_key_store_one_job(queue: Queue) -> None:
    adds = (queue.add_job("r", {"i": i}, idempotency_key="k") for i in range(8))
    ids = await asyncio.gather(*adds)
    assert len(set(ids)) == 1
    assert (await queue.stats()).totals[JobStatus.PENDING] == 1


async def test_two_queues_on_one_store_share_idempotency_keys(shared_url: str) -> None:
    async with Queue(shared_url) as first, Queue(shared_url) as second:
        ids = await asyncio.gather(
            *((first, second)[i % 2].add_job("r", idempotency_key="k") for i in range(8))
        )
        assert len(set(ids)) == 1
        assert (await second.stats()).totals[JobStatus.PENDING] == 1


def test_a_handler_whose_payload_annotation_cannot_be_resolved_is_refused_at_registration(
    queue: Queue,
) -> None:
    def handler(payload: NotDefinedAnywhere) -> None:  # type: ignore[name-defined]  # noqa: F821
        """A handler annotated with a name nobody can resolve."""

    with pytest.raises(InvalidArgument, match="module level"):
        queue.handler("unresolvable")(handler)
    assert queue.registry.get("unresolvable") is None


async def test_group_and_dead_letter_type_are_stored_with_the_job(queue: Queue) -> None:
    @queue.handler("on_dead", queue="graveyard", max_attempts=5)
    async def on_dead(payload: dict[str, Any]) -> None:
        return None

    job_id = await queue.add_job(
        "report", group="tenant-42", dead_letter_job_type="on_dead", idempotency_key="k"
    )
    job = await queue.get_job(job_id)
    assert job is not None
    assert (job.group, job.dead_letter_job_type) == ("tenant-42", "on_dead")
    assert job.idempotency_expires_at is None  # no window: the key holds while the job is kept
    plain = await queue.get_job(await queue.add_job("report"))
    assert plain is not None
    assert (plain.group, plain.dead_letter_job_type) == (None, None)


async def test_a_job_cannot_be_its_own_dead_letter_type(queue: Queue) -> None:
    with pytest.raises(InvalidArgument, match="own type"):
        await queue.add_job("report", dead_letter_job_type="report")
    await assert_nothing_stored(queue)


async def test_a_batch_ref_must_name_an_earlier_job(queue: Queue) -> None:
    with pytest.raises(InvalidArgument, match="not the ref of an earlier job"):
        await queue.add_jobs(
            [
                {"job_type": "a", "ref": "first", "depends_on": ["second"]},
                {"job_type": "b", "ref": "second", "depends_on": ["first"]},
            ]
        )
    with pytest.raises(InvalidArgument, match="two jobs"):
        await queue.add_jobs([{"job_type": "a", "ref": "x"}, {"job_type": "b", "ref": "x"}])
    await assert_nothing_stored(queue)


async def test_a_hundred_concurrent_adds_with_one_key_make_one_job(queue: Queue) -> None:
    ids = await asyncio.gather(
        *(queue.add_job("report", {"n": n}, idempotency_key="once") for n in range(100))
    )
    assert len(set(ids)) == 1
    assert sum(job_id.created for job_id in ids) == 1  # exactly one caller created it
    page = await queue.list_jobs(job_type="report")
    assert [job.id for job in page.items] == [ids[0]]


async def test_an_idempotency_window_lets_the_key_make_a_new_job_after_it(
    store_url: str,
) -> None:
    clock = FrozenClock(datetime(2030, 1, 1, tzinfo=UTC))
    async with Queue(store_url, clock=clock) as queue:
        first = await queue.add_job("report", {"v": 1}, idempotency_key="k", idempotency_window=60)
        job = await queue.get_job(first)
        assert job is not None
        assert job.idempotency_expires_at == clock.now() + timedelta(seconds=60)
        clock.advance(59)
        inside = await queue.add_job("report", {"v": 2}, idempotency_key="k")
        assert (inside, inside.created) == (first, False)
        clock.advance(1)
        after = await queue.add_job("report", {"v": 3}, idempotency_key="k")
        assert after.created
        assert after != first
        again = await queue.add_job("report", {"v": 4}, idempotency_key="k")
        assert (again, again.created) == (after, False)  # the new job holds the key now
        old = await queue.get_job(first)
        assert old is not None
        assert old.idempotency_key is None  # the key moved to the new job
        new = await queue.get_job(after)
        assert new is not None
        assert (new.idempotency_key, new.idempotency_expires_at) == ("k", None)
        assert (await queue.stats()).totals[JobStatus.PENDING] == 2


async def test_a_handler_can_give_its_jobs_an_idempotency_window(store_url: str) -> None:
    clock = FrozenClock(datetime(2030, 1, 1, tzinfo=UTC))
    async with Queue(store_url, clock=clock) as queue:

        @queue.handler("sync", idempotency_window=10)
        async def sync(payload: dict[str, Any]) -> None:
            return None

        first = await queue.add_job("sync", idempotency_key="user-1")
        clock.advance(10)
        second = await queue.add_job("sync", idempotency_key="user-1")
        assert second.created
        assert second != first


async def test_a_batch_of_jobs_with_different_options_stores_each_one_as_given(
    queue: Queue,
) -> None:
    # One insert statement carries every job's values (PostgreSQL: one array per column;
    # SQLite: one executemany): each job must get its own.
    run_at = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    given: list[dict[str, Any]] = [
        {},
        {"tags": ["a", "b"], "priority": 5, "delay": 30.5},
        {"run_at": run_at, "timeout": 2.5, "max_attempts": 7, "retry_delay": 1.5},
        {"retry_backoff": False, "retry_delay_max": 9.0, "group": "g", "queue": "other"},
        {"dead_letter_job_type": "dead", "force_kill_on_timeout": True, "timeout": 1.0},
    ]
    origin = Origin(door="rest", actor="me")
    ids = await queue.add_jobs(
        [{"job_type": "t", "payload": {"n": i}, **o} for i, o in enumerate(given)], origin=origin
    )
    jobs = [job for job in [await queue.get_job(job_id) for job_id in ids] if job is not None]
    assert [job.payload for job in jobs] == [{"n": i} for i in range(5)]
    for options, job in zip(given, jobs, strict=True):
        assert job.origin == origin
        for name, value in options.items():
            if name != "delay":
                assert getattr(job, name) == value, name
    plain, delayed, timed, _grouped, dead = jobs
    assert (plain.queue, plain.priority, plain.tags, plain.group) == ("default", 0, [], None)
    assert delayed.run_at - delayed.created_at == timedelta(seconds=30.5)
    assert (timed.run_at, timed.timeout) == (run_at, 2.5)
    assert (dead.dead_letter_job_type, dead.timeout, plain.dead_letter_job_type) == (
        "dead",
        1.0,
        None,
    )
