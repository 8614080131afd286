"""The dashboard's throughput and failure-rate charts and their data route,
`GET /api/v1/stats/throughput`, on every store (the live update in a browser is in
test_dashboard_browser.py)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agentqueue import Queue
from agentqueue.testing import run_due_jobs
from tests.api.conftest import Api, running_api


def _handlers(queue: Queue) -> None:
    @queue.handler("ok")
    async def ok(payload: dict[str, Any]) -> None:
        return None

    @queue.handler("bad", max_attempts=1)
    async def bad(payload: dict[str, Any]) -> None:
        raise RuntimeError("down")


async def _finish(queue: Queue, ok: int, bad: int) -> None:
    _handlers(queue)
    await queue.add_jobs([{"job_type": "ok"} for _ in range(ok)] + [{"job_type": "bad"}] * bad)
    await run_due_jobs(queue)


async def test_the_data_route_counts_finished_jobs_per_minute(api: Api) -> None:
    await _finish(api.queue, ok=2, bad=1)
    answer = await api.client.get("/api/v1/stats/throughput", params={"minutes": 5})
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["bucket_seconds"] == 60
    assert len(data["buckets"]) == 5
    # The jobs just finished: in the last minute, or the one before when it just turned.
    recent = data["buckets"][-2:]
    assert sum(b["completed"] for b in recent) == 2
    assert sum(b["failed"] for b in recent) == 1
    assert all(b["completed"] == b["failed"] == 0 for b in data["buckets"][:-2])
    rates = [b["failure_rate"] for b in recent if b["failure_rate"] is not None]
    assert rates
    assert all(0 <= rate <= 1 for rate in rates)
    default = (await api.client.get("/api/v1/stats/throughput")).json()
    assert len(default["buckets"]) == 60


@pytest.fixture
async def dash(tmp_path: Path) -> AsyncIterator[Api]:
    """The app with its dashboard, open (loopback, no keys), on a fresh SQLite file."""
    async with running_api(Queue(f"sqlite:///{tmp_path / 'dash.db'}"), dashboard=True) as api:
        yield api


@pytest.mark.parametrize("minutes", ["0", "1441", "many"])
async def test_the_data_route_refuses_a_window_out_of_range(dash: Api, minutes: str) -> None:
    # Checked before any store is asked: one store is enough.
    answer = await dash.client.get("/api/v1/stats/throughput", params={"minutes": minutes})
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_argument"


def _minutes(html: str) -> list[tuple[str, int, int]]:
    found = re.findall(
        r'<g class="minute" data-minute="(\d\d:\d\d)" data-completed="(\d+)" data-failed="(\d+)"',
        html,
    )
    return [(minute, int(done), int(failed)) for minute, done, failed in found]


async def test_the_job_list_draws_both_charts_as_inline_svg(dash: Api) -> None:
    empty = (await dash.client.get("/")).text
    assert len(_minutes(empty)) == 60
    assert "no job finished" in empty
    assert 'class="rate-point"' not in empty

    await _finish(dash.queue, ok=3, bad=1)
    page = await dash.client.get("/")
    html = page.text
    minutes = _minutes(html)
    assert len(minutes) == 60
    assert sum(done for _, done, _ in minutes) == 3
    assert sum(failed for _, _, failed in minutes) == 1
    assert re.search(r'id="charts" class="charts" data-live data-peak="[1-4]"', html)
    assert html.count('class="bar-completed"') in (1, 2)  # one minute, or two if it turned
    points = re.findall(r'class="rate-point"[^>]*data-rate="([0-9.]+)"', html)
    assert points
    assert all(0 < float(rate) <= 1 for rate in points)
    assert "25% over the window" in html
    # Drawn without scripts or styles of the page's own (the policy allows neither inline).
    charts = html.split('id="charts"')[1].split("</section>")[0]
    assert "<script" not in charts
    assert "style=" not in charts
    assert "script-src 'self'" in page.headers["content-security-policy"]
