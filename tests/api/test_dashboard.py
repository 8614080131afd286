"""The dashboard's routes in-process (httpx on the ASGI app): pages, filters, paging, static
files, sign-in and its cookie, and that no key ever lands in a page or a URL."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path

import httpx
import pytest

from agentqueue import Queue
from agentqueue.api.security import COOKIE
from agentqueue.testing import run_due_jobs
from tests.api.conftest import Api, running_api


@pytest.fixture
async def dash(tmp_path: Path) -> AsyncIterator[Api]:
    """The app with its dashboard, open (loopback, no keys), on a fresh SQLite file."""
    async with running_api(Queue(f"sqlite:///{tmp_path / 'dash.db'}"), dashboard=True) as api:
        yield api


@pytest.fixture
async def keyed(tmp_path: Path) -> AsyncIterator[tuple[Api, str]]:
    """The dashboard of a store that has a key (so pages need one), and that key."""
    queue = Queue(f"sqlite:///{tmp_path / 'keyed.db'}")
    async with running_api(queue, dashboard=True) as api:
        _, key = await queue.create_api_key("ops", "operate")
        api.app.state.guard.forget()
        yield api, key


def signed_in(api: Api, key: str) -> httpx.AsyncClient:
    """A client of the app whose cookie jar holds `key`, as a browser's after sign-in."""
    transport = httpx.ASGITransport(app=api.app)
    return httpx.AsyncClient(transport=transport, base_url="http://api", cookies={COOKIE: key})


def rows(html: str) -> list[int]:
    """The job ids of a job list page, in order."""
    return [int(found) for found in re.findall(r'<tr id="job-(\d+)"', html)]


async def test_the_pages_answer_html_with_a_strict_content_policy(dash: Api) -> None:
    job_id = await dash.queue.add_job("report", {"day": "monday"}, tags=["daily"])
    for path in ("/", f"/jobs/{job_id}", "/tokens", "/cron", "/workers", "/login"):
        answer = await dash.client.get(path)
        assert answer.status_code == 200, path
        assert answer.headers["content-type"].startswith("text/html")
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        assert "http://" not in answer.text.split("<main>")[0]  # no resource of another origin


async def test_the_job_list_shows_jobs_totals_and_the_filtered_event_stream(dash: Api) -> None:
    first = await dash.queue.add_job("report", {"day": 1}, tags=["daily"])
    second = await dash.queue.add_job("mail", {"to": "a@x.io"})
    page = (await dash.client.get("/")).text
    assert rows(page) == [second, first]
    assert 'data-stream="/api/v1/events"' in page
    assert re.search(r'data-status="pending">\s*<span class="count">2</span>', page)

    filtered = (await dash.client.get("/", params={"job_type": "report", "tag": "daily"})).text
    assert rows(filtered) == [first]
    assert 'data-stream="/api/v1/events?job_type=report&amp;tag=daily"' in filtered
    assert rows((await dash.client.get("/", params={"status": "completed"})).text) == []
    # With a job type chosen, the totals count that type's jobs and their links keep it.
    assert re.search(r'data-status="pending">\s*<span class="count">1</span>', filtered)
    assert 'href="/?status=failed&amp;job_type=report"' in filtered


async def test_the_job_list_pages_with_next_cursor(dash: Api) -> None:
    ids = [int(i) for i in await dash.queue.add_jobs([{"job_type": "bulk"}] * 53)]
    page = (await dash.client.get("/", params={"job_type": "bulk"})).text
    assert rows(page) == ids[::-1][:50]
    older = re.search(r'href="(/\?[^"]*cursor=[^"]+)" rel="next"', page)
    assert older is not None
    rest = (await dash.client.get(older.group(1).replace("&amp;", "&"))).text
    assert rows(rest) == ids[::-1][50:]
    assert 'rel="next"' not in rest
    assert 'href="/?job_type=bulk" rel="first"' in rest


async def test_a_bad_filter_or_cursor_is_explained_on_the_page(dash: Api) -> None:
    for params in ({"status": "sleeping"}, {"cursor": "not-a-cursor"}):
        answer = await dash.client.get("/", params=params)
        assert answer.status_code == 200
        assert 'class="error" role="alert"' in answer.text


async def test_a_job_page_shows_payload_output_errors_and_buttons(dash: Api) -> None:
    @dash.queue.handler("flaky", max_attempts=1)
    async def flaky(payload: dict[str, str]) -> None:
        raise ValueError("upstream <b>down</b>")

    job_id = await dash.queue.add_job("flaky", {"note": "<script>alert(1)</script>"})
    await run_due_jobs(dash.queue)
    page = (await dash.client.get(f"/jobs/{job_id}")).text
    assert 'data-status="failed"' in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # escaped, never markup
    assert "<script>alert" not in page
    assert "upstream &lt;b&gt;down&lt;/b&gt;" in page
    assert f'data-post="/api/v1/jobs/{job_id}/retry"' in page
    assert f'data-post="/api/v1/jobs/{job_id}/cancel"' not in page
    assert f'data-stream="/api/v1/jobs/{job_id}/stream"' in page

    missing = await dash.client.get("/jobs/987654")
    assert missing.status_code == 404
    assert "There is no job 987654." in missing.text


async def test_static_files_are_served_from_the_package(dash: Api) -> None:
    package = resources.files("agentqueue.api.dashboard")
    for name, kind in (
        ("agentqueue.js", "javascript"),
        ("dashboard.js", "javascript"),
        ("dashboard.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ):
        answer = await dash.client.get(f"/static/{name}")
        assert answer.status_code == 200, name
        assert kind in answer.headers["content-type"]
        assert answer.content == (package / "static" / name).read_bytes()
    assert (await dash.client.get("/static/../render.py")).status_code == 404


async def test_dashboard_routes_stay_out_of_the_openapi_document(dash: Api) -> None:
    paths = (await dash.client.get("/openapi.json")).json()["paths"]
    assert all(path.startswith(("/api/v1", "/healthz", "/metrics")) for path in paths)


async def test_without_the_dashboard_there_is_no_page(tmp_path: Path) -> None:
    async with running_api(Queue(f"sqlite:///{tmp_path / 'q.db'}")) as api:
        assert (await api.client.get("/")).status_code == 404
        assert (await api.client.get("/static/agentqueue.js")).status_code == 404


# -- sign-in -----------------------------------------------------------------------------------
async def test_pages_send_a_browser_without_a_key_to_sign_in(keyed: tuple[Api, str]) -> None:
    api, _ = keyed
    for path, target in (("/", "%2F"), ("/jobs/7?x=1", "%2Fjobs%2F7%3Fx%3D1")):
        answer = await api.client.get(path)
        assert answer.status_code == 303
        assert answer.headers["location"] == f"/login?next={target}"
    form = await api.client.get("/login", params={"next": "/cron"})
    assert form.status_code == 200
    assert 'name="next" value="/cron"' in form.text
    assert "This server is open" not in form.text
    assert (await api.client.get("/api/v1/jobs")).status_code == 401  # the API still answers JSON


async def test_signing_in_sets_a_strict_httponly_cookie_and_goes_on(keyed: tuple[Api, str]) -> None:
    api, key = keyed
    answer = await api.client.post("/login", data={"key": key, "next": "/tokens"})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/tokens"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}={key};")
    assert {"httponly", "path=/", "samesite=strict"} <= {
        part.strip().lower() for part in cookie.split(";")
    }
    assert "secure" not in cookie.lower()  # plain http
    assert key not in answer.headers["location"]

    async with signed_in(api, key) as browser:
        page = await browser.get("/tokens")
    assert page.status_code == 200
    assert "ops · operate" in page.text
    assert key not in page.text


async def test_over_https_the_cookie_is_secure(keyed: tuple[Api, str]) -> None:
    api, key = keyed
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="https://dash") as client:
        answer = await client.post("/login", data={"key": key})
    assert "; secure" in answer.headers["set-cookie"].lower()


async def test_a_wrong_key_or_another_sites_form_cannot_sign_in(keyed: tuple[Api, str]) -> None:
    api, key = keyed
    wrong = await api.client.post("/login", data={"key": "aq_000000000000_nope"})
    assert wrong.status_code == 401
    assert "That key is unknown or revoked." in wrong.text
    assert "set-cookie" not in wrong.headers
    empty = await api.client.post("/login", data={"key": ""})
    assert (empty.status_code, "Paste an API key." in empty.text) == (401, True)
    forged = await api.client.post(
        "/login", data={"key": key}, headers={"Origin": "http://evil.example"}
    )
    assert forged.status_code == 403
    assert "set-cookie" not in forged.headers
    same = await api.client.post("/login", data={"key": key}, headers={"Origin": "http://api"})
    assert same.status_code == 303


async def test_after_sign_in_only_local_paths_are_followed(keyed: tuple[Api, str]) -> None:
    api, key = keyed
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "cron"):
        answer = await api.client.post("/login", data={"key": key, "next": target})
        assert answer.headers["location"] == "/", target


async def test_a_revoked_key_in_the_cookie_is_forgotten(keyed: tuple[Api, str]) -> None:
    api, key = keyed
    await api.queue.revoke_api_key("ops")
    api.app.state.guard.forget()
    async with signed_in(api, key) as browser:
        answer = await browser.get("/cron")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Fcron&rejected=1"
    assert answer.headers["set-cookie"].startswith(f'{COOKIE}="";')
    again = await api.client.get(answer.headers["location"])
    assert "not accepted" in again.text


async def test_signing_out_clears_the_cookie(keyed: tuple[Api, str]) -> None:
    api, key = keyed
    async with signed_in(api, key) as browser:
        answer = await browser.post("/logout")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login"
    assert answer.headers["set-cookie"].startswith(f'{COOKIE}="";')
    assert "max-age=0" in answer.headers["set-cookie"].lower()


async def test_no_page_carries_the_key(keyed: tuple[Api, str]) -> None:
    api, key = keyed
    job_id = await api.queue.add_job("report", {})
    token = await api.queue.create_token()
    async with signed_in(api, key) as browser:
        for path in ("/", f"/jobs/{job_id}", "/tokens", "/cron", "/workers", "/login"):
            answer = await browser.get(path)
            assert answer.status_code == 200, path
            assert key not in answer.text, path
            # The secret is everything after `aq_<id>_`; it may itself hold "_" (URL-safe base64).
            assert key.split("_", 2)[2] not in answer.text, path
        assert token.id in (await browser.get("/tokens")).text


async def test_off_loopback_every_page_needs_a_key_even_without_keys(tmp_path: Path) -> None:
    queue = Queue(f"sqlite:///{tmp_path / 'q.db'}")
    async with running_api(queue, dashboard=True, host="0.0.0.0") as api:
        assert (await api.client.get("/")).status_code == 303
        assert "This server is open" not in (await api.client.get("/login")).text


async def test_on_open_loopback_pages_need_no_key(dash: Api) -> None:
    page = await dash.client.get("/")
    assert page.status_code == 200
    assert "open · local" in page.text
    assert "This server is open" in (await dash.client.get("/login")).text
