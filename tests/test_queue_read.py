"""Reading: get_job, list_jobs filters and pagination, stats, events of a job, job types."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from agentqueue import FrozenClock, InvalidArgument, JobNotFound, JobTypeInfo, Queue
from agentqueue.states import JobStatus

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


async def ids_of(queue: Queue, /, **filters: Any) -> set[int]:
    page = await queue.list_jobs(limit=1000, **filters)
    assert page.next_cursor is None
    return {job.id for job in page.items}


async def test_get_job_returns_the_stored_job(queue: Queue) -> None:
    job_id = await queue.add_job("a", {"k": "v"}, tags=["t"])
    job = await queue.get_job(job_id)
    assert job is not None
    assert (job.id, job.job_type, job.payload, job.tags) == (job_id, "a", {"k": "v"}, ["t"])


async def test_get_job_returns_none_for_an_unknown_id(queue: Queue) -> None:
    assert await queue.get_job(424242) is None


async def test_list_jobs_filters_by_one_status_or_several(queue: Queue) -> None:
    a, b, c = await queue.add_jobs([{"job_type": "x"}, {"job_type": "x"}, {"job_type": "x"}])
    await queue.cancel_job(b)
    assert await ids_of(queue, status="pending") == {a, c}
    assert await ids_of(queue, status=JobStatus.CANCELLED) == {b}
    assert await ids_of(queue, status=["pending", JobStatus.CANCELLED]) == {a, b, c}
    assert await ids_of(queue, status="failed") == set()


async def test_list_jobs_filters_by_job_type_and_queue(queue: Queue) -> None:
    a, b, c = await queue.add_jobs(
        [
            {"job_type": "email"},
            {"job_type": "email", "queue": "slow"},
            {"job_type": "report", "queue": "slow"},
        ]
    )
    assert await ids_of(queue, job_type="email") == {a, b}
    assert await ids_of(queue, job_type=["email", "report"]) == {a, b, c}
    assert await ids_of(queue, queue="slow") == {b, c}
    assert await ids_of(queue, queue="slow", job_type="email") == {b}
    assert await ids_of(queue, queue=["default"]) == {a}


TAG_SETS: dict[str, list[str]] = {
    "none": [],
    "a": ["a"],
    "b": ["b"],
    "ab": ["a", "b"],
    "abc": ["a", "b", "c"],
    "c": ["c"],
}


@pytest.mark.parametrize(
    ("tags", "mode", "expected"),
    [
        (["a", "b"], "any", {"a", "b", "ab", "abc"}),
        (["a", "b"], "all", {"ab", "abc"}),
        (["a", "b"], "exact", {"ab"}),
        (["a", "b"], "none", {"none", "c"}),
        (["b", "a"], "exact", {"ab"}),
        (["a"], "any", {"a", "ab", "abc"}),
        (["a"], "exact", {"a"}),
        (["c"], "none", {"none", "a", "b", "ab"}),
        (["a", "b", "c"], "all", {"abc"}),
        (["zzz"], "any", set()),
        (["zzz"], "none", set(TAG_SETS)),
        ([], "exact", {"none"}),
    ],
)
async def test_tag_filters_match_jobs_by_mode(
    queue: Queue, tags: list[str], mode: str, expected: set[str]
) -> None:
    ids = await queue.add_jobs([{"job_type": "t", "tags": t} for t in TAG_SETS.values()])
    by_name = dict(zip(TAG_SETS, ids, strict=True))
    assert await ids_of(queue, tags=tags, tag_mode=mode) == {by_name[n] for n in expected}


async def test_tag_filters_default_to_matching_any_tag(queue: Queue) -> None:
    a, _b, c = await queue.add_jobs(
        [{"job_type": "t", "tags": ["x"]}, {"job_type": "t"}, {"job_type": "t", "tags": ["y"]}]
    )
    assert await ids_of(queue, tags=["x", "y"]) == {a, c}


async def test_created_after_is_inclusive_and_created_before_exclusive(store_url: str) -> None:
    clock = FrozenClock(T0)
    async with Queue(store_url, clock=clock) as queue:
        early = await queue.add_job("a")
        clock.advance(60)
        middle = await queue.add_job("a")
        clock.advance(60)
        late = await queue.add_job("a")
        job = await queue.get_job(middle)
        assert job is not None
        assert job.created_at == T0 + timedelta(seconds=60)
        at = T0 + timedelta(seconds=60)
        assert await ids_of(queue, created_after=at) == {middle, late}
        assert await ids_of(queue, created_before=at) == {early}
        window = {"created_after": T0, "created_before": T0 + timedelta(seconds=120)}
        assert await ids_of(queue, **window) == {early, middle}


async def test_run_at_ranges_select_jobs_scheduled_in_the_window(queue: Queue) -> None:
    ids = await queue.add_jobs(
        [{"job_type": "a", "run_at": T0 + timedelta(hours=h)} for h in range(4)]
    )
    assert await ids_of(queue, run_at_after=T0 + timedelta(hours=2)) == set(ids[2:])
    assert await ids_of(queue, run_at_before=T0 + timedelta(hours=1)) == {ids[0]}
    window = {"run_at_after": T0 + timedelta(hours=1), "run_at_before": T0 + timedelta(hours=3)}
    assert await ids_of(queue, **window) == {ids[1], ids[2]}


async def test_a_naive_datetime_filter_is_rejected(queue: Queue) -> None:
    with pytest.raises(InvalidArgument, match="created_after"):
        await queue.list_jobs(created_after=datetime(2030, 1, 1))


async def test_list_jobs_orders_newest_first_by_default_or_oldest_first(queue: Queue) -> None:
    ids = await queue.add_jobs([{"job_type": "a"} for _ in range(4)])
    newest = await queue.list_jobs()
    oldest = await queue.list_jobs(order="oldest")
    assert [job.id for job in newest.items] == sorted(ids, reverse=True)
    assert [job.id for job in oldest.items] == sorted(ids)


@pytest.mark.parametrize("order", ["newest", "oldest"])
@pytest.mark.parametrize(("count", "limit"), [(23, 5), (20, 5), (3, 10)])
async def test_following_next_cursor_visits_every_job_once_in_order(
    queue: Queue, order: str, count: int, limit: int
) -> None:
    ids = await queue.add_jobs([{"job_type": "p", "payload": {"n": n}} for n in range(count)])
    await queue.add_job("other")  # filtered out on every page
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await queue.list_jobs(job_type="p", limit=limit, cursor=cursor, order=order)
        pages += 1
        assert len(page.items) <= limit
        seen.extend(job.id for job in page.items)
        if page.next_cursor is None:
            break
        assert len(page.items) == limit
        cursor = page.next_cursor
    assert seen == sorted(ids, reverse=order == "newest")
    assert pages == max(1, -(-count // limit))


@pytest.mark.parametrize("cursor", ["abc", "-1", "1.5", "12x"])
async def test_a_malformed_cursor_is_rejected(queue: Queue, cursor: str) -> None:
    with pytest.raises(InvalidArgument, match="cursor"):
        await queue.list_jobs(cursor=cursor)


async def test_an_unknown_status_is_rejected(queue: Queue) -> None:
    with pytest.raises(InvalidArgument, match="status"):
        await queue.list_jobs(status="sleeping")


@pytest.mark.parametrize(("name", "value"), [("tag_mode", "some"), ("order", "random")])
async def test_an_unknown_tag_mode_or_order_is_rejected(
    queue: Queue, name: str, value: str
) -> None:
    with pytest.raises(InvalidArgument, match=name):
        await queue.list_jobs(**{name: value})


@pytest.mark.parametrize("limit", [0, -5, 1001])
async def test_a_limit_outside_1_to_1000_is_rejected(queue: Queue, limit: int) -> None:
    with pytest.raises(InvalidArgument, match="limit"):
        await queue.list_jobs(limit=limit)


async def test_limits_at_the_bounds_are_accepted(queue: Queue) -> None:
    await queue.add_jobs([{"job_type": "a"}, {"job_type": "a"}])
    one = await queue.list_jobs(limit=1)
    assert len(one.items) == 1
    assert one.next_cursor is not None
    assert len((await queue.list_jobs(limit=1000)).items) == 2


async def test_stats_count_jobs_per_type_and_status_with_zeros_for_the_rest(
    queue: Queue,
) -> None:
    a1, a2, a3, _b1 = await queue.add_jobs(
        [{"job_type": "a"}, {"job_type": "a"}, {"job_type": "a"}, {"job_type": "b"}]
    )
    await queue.cancel_job(a1)
    claimed = await queue.backend.claim(
        worker_id="w", queue=None, job_types=["a"], limit=1, lease_seconds=30
    )
    assert [job.id for job in claimed] == [a2]  # a1 is cancelled
    stats = await queue.stats()
    assert set(stats.by_type) == {"a", "b"}
    assert stats.by_type["a"] == {
        JobStatus.BLOCKED: 0,
        JobStatus.PENDING: 1,
        JobStatus.PROCESSING: 1,
        JobStatus.WAITING: 0,
        JobStatus.COMPLETED: 0,
        JobStatus.FAILED: 0,
        JobStatus.CANCELLED: 1,
    }
    assert stats.by_type["b"][JobStatus.PENDING] == 1
    assert set(stats.by_type["b"]) == set(JobStatus)
    assert stats.totals == {
        JobStatus.BLOCKED: 0,
        JobStatus.PENDING: 2,
        JobStatus.PROCESSING: 1,
        JobStatus.WAITING: 0,
        JobStatus.COMPLETED: 0,
        JobStatus.FAILED: 0,
        JobStatus.CANCELLED: 1,
    }
    assert a3 in await ids_of(queue, status=["pending", "processing"])


async def test_stats_of_an_empty_store_has_every_status_at_zero(queue: Queue) -> None:
    stats = await queue.stats()
    assert stats.by_type == {}
    assert stats.totals == dict.fromkeys(JobStatus, 0)


async def test_get_job_events_of_an_unknown_job_raises_job_not_found(queue: Queue) -> None:
    with pytest.raises(JobNotFound) as caught:
        await queue.get_job_events(999_999)
    assert caught.value.job_id == 999_999
    assert caught.value.code == "job_not_found"


class Resize(BaseModel):
    """Payload of a resize job."""

    url: str
    width: int


async def test_list_job_types_merges_the_stores_registry_with_local_handlers(
    queue: Queue,
) -> None:
    @queue.handler("resize", description="Resize an image.", queue="media", examples=[{"w": 1}])
    async def resize(payload: Resize) -> None:
        return None

    await queue.backend.publish_job_types(
        [JobTypeInfo(name="archive", description="from another process", queue="cold")]
    )
    types = await queue.list_job_types()
    assert [t.name for t in types] == ["archive", "resize"]
    archive, local = types
    assert (archive.description, archive.queue) == ("from another process", "cold")
    assert (local.description, local.queue, local.examples) == (
        "Resize an image.",
        "media",
        [{"w": 1}],
    )
    assert local.payload_schema == Resize.model_json_schema()
    assert local.payload_schema["required"] == ["url", "width"]


async def test_published_job_types_are_listed_with_their_schema(queue: Queue) -> None:
    @queue.handler("resize")
    async def resize(payload: Resize) -> None:
        """Resize an image.

        More text that is not part of the description."""

    await queue.publish_job_types()
    stored = await queue.backend.list_job_types()
    assert [t.name for t in stored] == ["resize"]
    assert stored[0].description == "Resize an image."
    assert stored[0].payload_schema["properties"]["width"]["type"] == "integer"
    assert stored[0].updated_at is not None
    assert [t.name for t in await queue.list_job_types()] == ["resize"]


async def test_a_handler_without_a_payload_annotation_has_an_empty_schema(queue: Queue) -> None:
    @queue.handler("anything")
    async def anything(payload) -> None:  # type: ignore[no-untyped-def]
        return None

    (info,) = await queue.list_job_types()
    assert info.payload_schema == {}
    assert info.queue == "default"


async def test_jobs_added_with_an_origin_are_listed_by_their_actor(queue: Queue) -> None:
    from agentqueue import Origin

    agent = Origin(door="mcp", actor="ci-bot", client="claude-code", session="s1")
    ids = await queue.add_jobs([{"job_type": "a"}, {"job_type": "b"}], origin=agent)
    other = await queue.add_job("a", origin=Origin(door="rest", actor="human"))
    plain = await queue.add_job("a")
    job = await queue.get_job(ids[0])
    assert job is not None
    assert job.origin == agent
    assert (await queue.get_job(plain)).origin is None  # type: ignore[union-attr]
    page = await queue.list_jobs(created_by="ci-bot", order="oldest")
    assert [j.id for j in page.items] == ids
    assert [j.id for j in (await queue.list_jobs(created_by="human")).items] == [other]
    assert [j.id for j in (await queue.list_jobs(created_by="ci-bot", job_type="b")).items] == [
        ids[1]
    ]
    await queue.cancel_job(other)
    await queue.add_job("later")
    assert (await queue.purge_jobs(created_by="human")).changed == 1
    assert (await queue.list_jobs(created_by="human")).items == []
