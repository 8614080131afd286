"""A JSON boolean is not a number: every number field of a request refuses `true`/`false`
(pydantic's lax mode used to read `{"timeout": true}` as one second)."""

from __future__ import annotations

import pytest

from agentqueue import InvalidArgument, Queue
from tests.api.conftest import Api

BOOLEAN_NUMBERS = [
    ("POST", "/api/v1/jobs", {"job_type": "j", "timeout": True}),
    ("POST", "/api/v1/jobs", {"job_type": "j", "priority": False}),
    ("POST", "/api/v1/jobs", {"job_type": "j", "delay": True}),
    ("POST", "/api/v1/jobs", {"job_type": "j", "max_attempts": True}),
    ("POST", "/api/v1/jobs", {"job_type": "j", "retry_delay": True}),
    ("POST", "/api/v1/tokens", {"timeout": True}),
]


@pytest.mark.parametrize(("method", "path", "body"), BOOLEAN_NUMBERS)
async def test_rest_refuses_a_boolean_where_a_number_goes_and_stores_nothing(
    api: Api, method: str, path: str, body: dict[str, object]
) -> None:
    answer = await api.client.request(method, path, json=body)
    assert answer.status_code == 422, answer.text
    field = next(name for name in body if name != "job_type")
    assert field in answer.text
    assert (await api.queue.list_jobs()).items == []
    assert await api.queue.list_tokens() == []


async def test_numbers_still_take_integers_and_floats(api: Api) -> None:
    added = await api.client.post(
        "/api/v1/jobs", json={"job_type": "j", "timeout": 2, "delay": 0.5, "priority": 3}
    )
    assert added.status_code == 201, added.text
    job = added.json()["job"]
    assert (job["timeout"], job["priority"]) == (2.0, 3)


async def test_python_refuses_a_boolean_timeout_and_an_edit_with_one(queue: Queue) -> None:
    with pytest.raises(InvalidArgument, match="timeout"):
        await queue.add_job("j", timeout=True)  # type: ignore[arg-type]
    job_id = await queue.add_job("j")
    with pytest.raises(InvalidArgument, match="priority"):
        await queue.edit_job(job_id, priority=True)  # type: ignore[arg-type]
    job = await queue.get_job(job_id)
    assert job is not None
    assert job.priority == 0
