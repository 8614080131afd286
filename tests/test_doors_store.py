"""What the doors keep in the store, on every store: worker presence, API keys, audit."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from agentqueue import FrozenClock, InvalidArgument, Queue, audit
from agentqueue.api_keys import authenticate, digest
from agentqueue.errors import AgentQueueError
from agentqueue.models import ApiScope, AuditRecord, WorkerInfo
from tests.worker.worker_kit import eventually, fast_worker, running


async def test_a_running_worker_is_listed_and_removed_when_it_stops(queue: Queue) -> None:
    @queue.handler("ping")
    async def ping(payload: dict[str, Any]) -> None:
        return None

    worker = fast_worker(queue, queues={"ai": 2, "default": 1})
    async with running(worker):

        async def listed() -> list[WorkerInfo]:
            return await queue.list_workers()

        [info] = await eventually(listed)
        assert info.id == worker.worker_id
        assert (info.concurrency, sorted(info.queues), info.job_types) == (
            3,
            ["ai", "default"],
            ["ping"],
        )
        assert info.pid > 0
        assert info.hostname
    assert await queue.list_workers(alive=False) == []


async def test_workers_that_stopped_beating_are_not_alive_then_forgotten(
    timed: Queue, clock: FrozenClock
) -> None:
    store = timed.backend
    info = WorkerInfo(
        id="w1",
        hostname="h",
        pid=1,
        concurrency=4,
        started_at=clock.now(),
        last_seen_at=clock.now(),
    )
    await store.beat_worker(info, now=clock.now())
    [seen] = await timed.list_workers()
    assert seen.last_seen_at == clock.now()
    clock.advance(30)
    assert await timed.list_workers() == []  # four beats missed
    assert [w.id for w in await timed.list_workers(alive=False)] == ["w1"]
    await store.beat_worker(info.model_copy(update={"running": 2}), now=clock.now())
    [again] = await timed.list_workers()
    assert again.running == 2
    assert await store.forget_workers(seen_before=clock.now() + timedelta(seconds=1)) == 1
    assert await timed.list_workers(alive=False) == []


async def test_api_keys_are_stored_by_hash_and_checked(queue: Queue) -> None:
    key, secret = await queue.create_api_key("ci", "operate")
    assert secret.startswith(f"aq_{key.id}_")
    assert (key.name, key.scope, key.revoked_at) == ("ci", ApiScope.OPERATE, None)
    found = await authenticate(queue.backend, secret)
    assert found == key
    assert await authenticate(queue.backend, secret + "x") is None
    assert await authenticate(queue.backend, "not a key") is None
    # Only the hash is kept: the secret appears nowhere in what the store returns.
    listed = await queue.list_api_keys()
    assert listed == [key]
    assert secret not in repr(listed)
    assert await queue.backend.find_api_key(digest(secret)) == key


async def test_key_names_are_unique_among_active_keys_and_revocation_is_final(
    queue: Queue,
) -> None:
    first, secret = await queue.create_api_key("deploy", ApiScope.ADMIN)
    with pytest.raises(InvalidArgument, match="named 'deploy' exists"):
        await queue.create_api_key("deploy", "read")
    revoked = await queue.revoke_api_key("deploy")
    assert revoked.id == first.id
    assert revoked.revoked_at is not None
    assert await authenticate(queue.backend, secret) is None
    with pytest.raises(InvalidArgument, match="no active API key"):
        await queue.revoke_api_key("deploy")
    second, _ = await queue.create_api_key("deploy", "read")  # the name is free again
    assert [k.id for k in await queue.list_api_keys()] == [first.id, second.id]


@pytest.mark.parametrize(("name", "scope"), [("bad name", "read"), ("ok", "root"), ("", "read")])
async def test_bad_key_names_and_scopes_are_refused(queue: Queue, name: str, scope: str) -> None:
    with pytest.raises(InvalidArgument):
        await queue.create_api_key(name, scope)
    assert await queue.list_api_keys() == []


async def test_concurrent_keys_with_one_name_give_one_key(queue: Queue) -> None:
    results = await asyncio.gather(
        *(queue.create_api_key("race", "read") for _ in range(10)), return_exceptions=True
    )
    made = [r for r in results if not isinstance(r, BaseException)]
    assert len(made) == 1
    assert all(isinstance(r, InvalidArgument) for r in results if isinstance(r, BaseException))


def test_scopes_include_the_lower_ones() -> None:
    assert ApiScope.ADMIN.allows(ApiScope.READ)
    assert ApiScope.OPERATE.allows(ApiScope.OPERATE)
    assert not ApiScope.READ.allows(ApiScope.OPERATE)
    assert not ApiScope.OPERATE.allows(ApiScope.ADMIN)


async def test_audit_records_are_listed_newest_first_and_purged_by_age(
    timed: Queue, clock: FrozenClock
) -> None:
    store = timed.backend
    written = []
    for n in range(5):
        record = AuditRecord(
            at=clock.now(),
            actor="ci",
            door="rest",
            action="add_job",
            target=str(n),
            result="ok",
            details={"n": n},
        )
        written.append(await store.write_audit(record))
        clock.advance(60)
    assert [r.id for r in written] == sorted({r.id for r in written})
    listed = await timed.list_audit()
    assert [r.target for r in listed] == ["4", "3", "2", "1", "0"]
    assert listed[0].details == {"n": 4}
    assert listed[-1] == written[0]
    page = await timed.list_audit(limit=2, before_id=listed[1].id)
    assert [r.target for r in page] == ["2", "1"]
    assert await store.purge_audit(before=written[2].at) == 2
    assert [r.target for r in await timed.list_audit()] == ["4", "3", "2"]
    with pytest.raises(InvalidArgument, match="limit"):
        await timed.list_audit(limit=0)


async def test_an_add_writes_its_audit_record_with_its_jobs_or_only_its_failure(
    queue: Queue,
) -> None:
    async with audit.audited(queue, actor="a", door="rest", action="add_jobs") as note:
        ids = await queue.add_jobs(
            [{"job_type": "t"}, {"job_type": "t"}], audit=note.adding(audit.added_many)
        )
    [record] = await queue.list_audit()
    assert (record.result, record.details) == ("ok", {"job_ids": [int(i) for i in ids]})
    # Refused inside the store's transaction (an unknown dependency): no job, no ok record,
    # one record of the failure.
    with pytest.raises(AgentQueueError):
        async with audit.audited(queue, actor="a", door="rest", action="add_job") as note:
            await queue.add_jobs(
                [{"job_type": "t", "depends_on": [999_999]}], audit=note.adding(audit.added_one)
            )
    failed, ok = await queue.list_audit()
    assert ok.id == record.id
    assert failed.result != "ok"
    assert failed.details == {}
    assert len((await queue.list_jobs()).items) == 2
