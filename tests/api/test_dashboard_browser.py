"""The dashboard in a real browser: Debian's chromium (driven by playwright) against a real
`agentqueue serve` process, with a real worker process running the jobs.

Handlers wait at barriers the test opens (tests/api/dashboard_jobs.py), so every step of a
job happens when the test says; the browser side waits with playwright's own expectations.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, Route, expect, sync_playwright

from agentqueue import Queue
from tests.api.dashboard_server import Served, launch, require_chromium, serving
from tests.conftest import run_aside

pytestmark = pytest.mark.slow

WAIT_MS = 15_000
"""How long a browser expectation may take (a heartbeat, a worker on a busy 2-core CI box)."""

expect.set_options(timeout=WAIT_MS)


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Playwright's driver, once per module (no browser download: see `launch`)."""
    require_chromium()
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """One headless chromium for the module; each test gets its own context (cookies)."""
    opened = launch(playwright)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """An open dashboard (loopback, no keys) and a worker, shared by the module's tests."""
    with serving(tmp_path_factory.mktemp("dashboard")) as running:
        yield running


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, dict[str, str]]]:
    """A dashboard whose store has keys (so every page needs one), no worker: its keys by
    name (`operator`: operate scope, `viewer`: read)."""
    tmp = tmp_path_factory.mktemp("keyed")
    url = f"sqlite:///{tmp / 'keyed.db'}"

    async def make_keys() -> dict[str, str]:
        async with Queue(url) as queue:
            return {
                name: (await queue.create_api_key(name, scope))[1]
                for name, scope in (("operator", "operate"), ("viewer", "read"))
            }

    keys = run_aside(make_keys)
    with serving(tmp, worker=False, store_url=url) as running:
        yield running, keys


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page in its own browser context; fails the test on any uncaught script error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert errors == [], f"script errors in the page: {errors}"


# -- helpers -----------------------------------------------------------------------------------
def add(served: Served, job_type: str, payload: Any, key: str | None = None, **options: Any) -> int:
    """Enqueue a job through the REST API; return its id."""
    with served.api(key) as api:
        answer = api.post(
            "/api/v1/jobs", json={"job_type": job_type, "payload": payload, **options}
        )
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def get_job(served: Served, job_id: int, key: str | None = None) -> dict[str, Any]:
    """The job as the REST API answers it."""
    with served.api(key) as api:
        answer = api.get(f"/api/v1/jobs/{job_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_status(served: Served, job_id: int, status: str) -> dict[str, Any]:
    """Poll the API until the job has `status` (bounded; fails with the processes' logs)."""
    found: dict[str, Any] = {}

    def check() -> bool:
        found.update(get_job(served, job_id))
        return found["status"] == status

    served.until(f"job {job_id} becomes {status}", check, timeout=WAIT_MS / 1000)
    return found


def unique_tag() -> str:
    """A tag no other test uses, to list only this test's jobs."""
    return f"t{uuid.uuid4().hex[:10]}"


def sign_in(page: Page, served: Served, key: str, target: str = "/") -> None:
    """Open `target`, land on the sign-in page, paste `key`, arrive at `target`."""
    page.goto(served.base_url + target)
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(served.base_url + target)


# -- the open dashboard ------------------------------------------------------------------------
def test_the_job_list_shows_a_new_job_and_its_progress_live(served: Served, page: Page) -> None:
    tag = unique_tag()
    page.goto(f"{served.base_url}/?tag={tag}")
    expect(page.locator("#jobs tr.empty")).to_contain_text("No jobs match these filters")
    expect(page.locator("#live-state")).to_have_attribute("data-state", "live")
    page.evaluate("window.sameDocument = true")  # gone if the page were reloaded

    job_id = add(served, "stepper", {"steps": 2}, tags=[tag])
    row = page.locator(f"#job-{job_id}")
    # The row arrives over the event stream, and the worker's claim after it.
    expect(row).to_have_attribute("data-status", "processing")
    expect(row.locator("td").nth(1)).to_have_text("stepper")
    expect(row.locator(".tag")).to_have_text(tag)
    served.open_gate(job_id, 1)
    expect(row.locator("progress")).to_have_attribute("value", "50")
    expect(row).to_contain_text("step 1 of 2")
    served.open_gate(job_id, 2)
    expect(row).to_have_attribute("data-status", "completed")
    expect(row.locator("progress")).to_have_attribute("value", "100")
    assert page.evaluate("window.sameDocument") is True


def test_the_charts_draw_finished_and_failed_jobs_live(served: Served, page: Page) -> None:
    page.goto(f"{served.base_url}/")
    expect(page.locator("#live-state")).to_have_attribute("data-state", "live")
    expect(page.locator("#throughput-chart .minute")).to_have_count(60)
    page.evaluate("window.sameDocument = true")  # gone if the page were reloaded
    charts = page.locator("#charts")
    before = {
        name: int(charts.get_attribute(f"data-{name}") or 0) for name in ("completed", "failed")
    }

    def counted_at_least(name: str, count: int) -> None:
        # Other tests' jobs may finish meanwhile: at least ours must be counted.
        page.wait_for_function(
            "([name, count]) => Number(document.getElementById('charts').dataset[name]) >= count",
            arg=[name, count],
        )

    failing = add(served, "fragile", {})
    counted_at_least("failed", before["failed"] + 1)
    done = add(served, "stepper", {"steps": 1})
    served.open_gate(done, 1)
    counted_at_least("completed", before["completed"] + 1)
    assert get_job(served, failing)["status"] == "failed"
    # Both are drawn: a red bar in the throughput chart, a point on the failure-rate line.
    # Retrying assertions, not one bounding_box() read: the live update swaps the chart in,
    # and an element read mid-swap has no box.
    failed_bar = page.locator("#throughput-chart .bar-failed").last
    expect(failed_bar).to_be_visible()
    expect(failed_bar).to_have_attribute("height", re.compile(r"^(?!0+(\.0+)?$)[0-9.]+$"))
    expect(page.locator("#failure-chart .rate-point").last).to_be_visible()
    expect(page.locator("#failure-chart figcaption")).to_contain_text("% over the window")
    assert page.evaluate("window.sameDocument") is True


def test_the_filters_and_totals_narrow_the_list(served: Served, page: Page) -> None:
    tag = unique_tag()
    done = add(served, "stepper", {"steps": 1}, tags=[tag])
    served.open_gate(done, 1)
    wait_status(served, done, "completed")
    failing = add(served, "fragile", {}, tags=[tag])
    wait_status(served, failing, "failed")

    page.goto(f"{served.base_url}/?tag={tag}")
    expect(page.locator("#jobs tbody tr")).to_have_count(2)
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"status=failed"))
    expect(page.locator("#jobs tbody tr")).to_have_count(1)
    expect(page.locator(f"#job-{failing}")).to_be_visible()
    expect(page.locator(".total-failed")).to_have_class(re.compile(r"\bchosen\b"))


def test_a_job_page_shows_live_progress_from_the_worker(served: Served, page: Page) -> None:
    job_id = add(served, "stepper", {"steps": 4}, tags=["progress"])
    page.goto(f"{served.base_url}/jobs/{job_id}")
    head = page.locator("#job-head")
    expect(head).to_have_attribute("data-status", "processing")
    bar = page.locator("#job-progress progress")
    expect(bar).to_have_attribute("value", "0")
    for step in range(1, 5):
        served.open_gate(job_id, step)
        expect(bar).to_have_attribute("value", str(step * 25))
        expect(page.locator("#job-progress")).to_contain_text(f"step {step} of 4")
    expect(head).to_have_attribute("data-status", "completed")
    expect(page.locator("#job-output pre")).to_contain_text('"steps": 4')
    expect(page.locator("#job-payload")).to_contain_text('"steps": 4')
    expect(page.locator("#job-events tr[data-event=progress]")).to_have_count(4)
    expect(page.locator("#job-events tr[data-event=complete]")).to_have_count(1)
    expect(page.locator("#live-state")).to_have_text("finished")  # the job's stream ended
    expect(head.get_by_role("button")).to_have_count(0)  # nothing to cancel or retry


def test_the_cancel_button_cancels_a_running_job(served: Served, page: Page) -> None:
    job_id = add(served, "stepper", {"steps": 1})
    page.goto(f"{served.base_url}/jobs/{job_id}")
    head = page.locator("#job-head")
    expect(head).to_have_attribute("data-status", "processing")
    asked: list[str] = []

    def accept(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#notice")).to_have_text(f"Cancel sent for job {job_id}.")
    assert asked == [f"Cancel job {job_id}?"]
    job = wait_status(served, job_id, "cancelled")  # the worker stopped the handler
    assert job["progress"] == 0
    expect(head).to_have_attribute("data-status", "cancelled")
    expect(head.get_by_role("button", name="Retry")).to_be_visible()


def test_errors_are_listed_and_retry_runs_the_job_again(served: Served, page: Page) -> None:
    job_id = add(served, "fragile", {})
    page.goto(f"{served.base_url}/jobs/{job_id}")
    head = page.locator("#job-head")
    expect(head).to_have_attribute("data-status", "failed")
    errors = page.locator("#job-errors tbody tr")
    expect(errors).to_have_count(1)
    expect(errors).to_contain_text("the upstream is down")
    expect(errors.locator("summary")).to_have_text("traceback")
    expect(page.locator("#live-state")).to_have_text("finished")

    served.open_gate(job_id, "fixed")
    head.get_by_role("button", name="Retry").click()
    expect(page.locator("#notice")).to_have_text(f"Job {job_id} will run again.")
    # The page follows the job again and sees it through to the end.
    expect(head).to_have_attribute("data-status", "completed")
    expect(page.locator("#job-output pre")).to_have_text('"fixed"')
    expect(errors).to_have_count(1)  # the first attempt's error stays in the history
    assert get_job(served, job_id)["output"] == "fixed"


def test_a_token_completed_on_the_tokens_page_resumes_its_job(served: Served, page: Page) -> None:
    page.goto(f"{served.base_url}/tokens")
    expect(page.locator("#live-state")).to_have_attribute("data-state", "live")
    job_id = add(served, "approval", {"what": "ship it"})
    row = page.locator("#tokens tbody tr").filter(has=page.locator(f"a[href='/jobs/{job_id}']"))
    expect(row).to_have_count(1)  # appears live once the handler made it

    form = row.locator("form")
    form.locator("textarea").fill("{not json")
    form.get_by_role("button", name="Complete token").click()
    expect(page.locator("#notice")).to_contain_text("The data is not valid JSON")
    form.locator("textarea").fill('{"approved": true, "by": "tests"}')
    form.get_by_role("button", name="Complete token").click()
    expect(page.locator("#notice")).to_contain_text("Completed token tok_")
    expect(row).to_have_count(0)  # no longer pending
    job = wait_status(served, job_id, "completed")
    assert job["output"] == {"ok": True, "data": {"approved": True, "by": "tests"}}


def test_a_waiting_job_shows_the_token_it_waits_on(served: Served, page: Page) -> None:
    job_id = add(served, "approval", {"what": "look"})
    waiting = wait_status(served, job_id, "waiting")
    page.goto(f"{served.base_url}/jobs/{job_id}")
    waited = page.locator("#job-tokens tr.waited")
    expect(waited).to_have_attribute("data-token-id", waiting["waiting_for"])
    expect(waited).to_contain_text("waited on")
    waited.get_by_role("button", name="Complete token").click()
    expect(page.locator("#job-head")).to_have_attribute("data-status", "completed")
    expect(page.locator("#job-output pre")).to_contain_text('"approved": true')


def test_cron_schedules_pause_and_resume(served: Served, page: Page) -> None:
    name = unique_tag()
    with served.api() as api:
        created = api.post(
            "/api/v1/cron",
            json={"name": name, "expression": "0 0 1 1 *", "job_type": "stepper"},
        )
        assert created.status_code == 201, created.text
    page.goto(f"{served.base_url}/cron")
    row = page.locator(f"tr[data-cron='{name}']")
    expect(row).to_have_attribute("data-status", "active")
    row.get_by_role("button", name="Pause").click()
    expect(row).to_have_attribute("data-status", "paused")
    with served.api() as api:
        assert api.get(f"/api/v1/cron/{name}").json()["status"] == "paused"
    row.get_by_role("button", name="Resume").click()
    expect(row).to_have_attribute("data-status", "active")
    with served.api() as api:
        assert api.get(f"/api/v1/cron/{name}").json()["status"] == "active"


def test_the_workers_page_lists_the_worker(served: Served, page: Page) -> None:
    page.goto(f"{served.base_url}/workers")
    worker = next(proc for name, proc, _ in served.processes if name == "worker")
    expect(page.locator("#workers tbody tr[data-worker]")).to_have_count(1)
    expect(page.locator("#workers tbody tr")).to_contain_text(str(worker.pid))


# -- agentqueue.js, the client for other web apps ----------------------------------------------
def test_the_client_adds_and_reads_jobs_and_reports_api_errors(served: Served, page: Page) -> None:
    page.goto(f"{served.base_url}/workers")  # any page of the server loads the client
    tag = unique_tag()
    result = page.evaluate(
        """async (tag) => {
            const queue = AgentQueue({ baseUrl: "" });
            const added = await queue.addJob("stepper", { steps: 1 }, { tags: [tag], priority: 3 });
            const job = await queue.getJob(added.id);
            let missing = null;
            try { await queue.getJob(987654321); } catch (error) {
                missing = { name: error.name, status: error.status, code: error.code };
            }
            let invalid = null;
            try { await queue.addJob("stepper", { steps: 99 }); } catch (error) {
                invalid = { status: error.status, code: error.code };
            }
            return { added, job, missing, invalid };
        }""",
        tag,
    )
    job_id = result["added"]["id"]
    served.open_gate(job_id, 1)
    assert result["added"]["created"] is True
    assert (result["job"]["id"], result["job"]["tags"], result["job"]["priority"]) == (
        job_id,
        [tag],
        3,
    )
    assert result["missing"] == {"name": "AgentQueueError", "status": 404, "code": "job_not_found"}
    assert result["invalid"] == {"status": 422, "code": "payload_invalid"}
    assert wait_status(served, job_id, "completed")["tags"] == [tag]


def test_following_a_job_resumes_after_a_drop_with_last_event_id(
    served: Served, page: Page
) -> None:
    job_id = add(served, "stepper", {"steps": 2})
    wait_status(served, job_id, "processing")
    with served.api() as api:
        first_event = api.get(f"/api/v1/jobs/{job_id}/events").json()[0]
        snapshot = api.get(f"/api/v1/jobs/{job_id}").json()
    assert first_event["type"] == "added"
    asked_after: list[str | None] = []

    def drop_the_first_stream(route: Route) -> None:
        """The first stream sends a snapshot and one event, then ends: a dropped connection.
        Later ones reach the server."""
        asked_after.append(route.request.headers.get("last-event-id"))
        if len(asked_after) > 1:
            route.continue_()
            return
        body = (
            f"event: snapshot\r\ndata: {json.dumps(snapshot)}\r\n\r\n"
            f"id: {first_event['cursor']}\r\nevent: added\r\n"
            f"data: {json.dumps(first_event)}\r\n\r\n"
        )
        route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body)

    page.route(f"**/api/v1/jobs/{job_id}/stream", drop_the_first_stream)
    page.goto(f"{served.base_url}/workers")
    page.evaluate(
        """(id) => {
            window.seen = { snapshots: [], events: [], progress: [], errors: [], done: null };
            window.following = AgentQueue({ retryMinMs: 50 }).followJob(id, {
                onSnapshot: (job) => seen.snapshots.push(job.status),
                onEvent: (event) => seen.events.push(event.type),
                onProgress: (percent, message) => seen.progress.push([percent, message]),
                onError: (error, willRetry) => seen.errors.push([error.code, willRetry]),
                onDone: (job) => { seen.done = job; },
            });
        }""",
        job_id,
    )
    page.wait_for_function("() => window.seen.events.includes('claim')")
    served.open_gate(job_id, 1)
    page.wait_for_function("() => window.seen.progress.some(([percent]) => percent === 50)")
    served.open_gate(job_id, 2)
    page.wait_for_function("() => window.seen.done !== null")
    seen = page.evaluate("window.seen")

    assert asked_after == [None, first_event["cursor"]]
    assert seen["errors"] == [["stream_ended", True]]  # the drop, then a quiet resume
    assert seen["events"][:2] == ["added", "claim"]  # nothing lost, nothing twice
    assert seen["events"].count("added") == 1
    assert seen["events"][-1] == "complete"
    assert seen["progress"] == [[0, None], [50, "step 1 of 2"], [100, "step 2 of 2"]]
    assert (seen["done"]["status"], seen["done"]["output"]) == ("completed", {"steps": 2})
    assert seen["snapshots"][-1] == "completed"


def test_the_stream_reader_parses_any_chunking_of_the_wire_format(
    served: Served, page: Page
) -> None:
    page.goto(f"{served.base_url}/workers")
    messages = page.evaluate(
        """() => new Promise((resolve) => {
            // Line breaks split between chunks, CRLF and LF, comments, a multi-line data field,
            // an event without a name, a retry field.
            const chunks = [": ping\\r\\n\\r\\nid: 1\\r", "\\nevent: one\\r\\ndata: {\\"a\\"",
                ":1}\\r\\n\\r", "\\ndata: line 1\\ndata: line 2\\nretry: 10\\n\\n", "id: 7\\n",
                "event: two\\ndata:x\\n\\n"];
            const encoder = new TextEncoder();
            const fakeFetch = async () => new Response(new ReadableStream({
                start(controller) {
                    chunks.forEach((chunk) => controller.enqueue(encoder.encode(chunk)));
                    controller.close();
                },
            }), { status: 200, headers: { "Content-Type": "text/event-stream" } });
            const got = [];
            AgentQueue({ fetch: fakeFetch }).stream("/anything", {
                onMessage: (message) => got.push(message),
                shouldResume: () => false,
                onEnd: () => resolve(got),
            });
        })"""
    )
    assert messages == [
        {"event": "one", "data": '{"a":1}', "id": "1"},
        {"event": "message", "data": "line 1\nline 2", "id": "1"},
        {"event": "two", "data": "x", "id": "7"},
    ]


# -- sign-in -----------------------------------------------------------------------------------
def test_signing_in_with_a_key_opens_the_dashboard_and_signing_out_closes_it(
    keyed: tuple[Served, dict[str, str]], page: Page
) -> None:
    served, keys = keyed
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    page.goto(f"{served.base_url}/cron")
    expect(page).to_have_url(f"{served.base_url}/login?next=%2Fcron")
    page.get_by_label("API key").fill("aq_0123456789ab_not-a-key-of-this-server")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".login .error")).to_have_text("That key is unknown or revoked.")

    page.get_by_label("API key").fill(keys["operator"])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{served.base_url}/cron")
    expect(page.locator(".who")).to_contain_text("operator · operate")
    expect(page.locator("#live-state")).to_have_attribute("data-state", "live")  # cookie on SSE
    (cookie,) = page.context.cookies()
    assert (cookie["name"], cookie["value"]) == ("agentqueue_key", keys["operator"])
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"], cookie["secure"]) == (
        True,
        "Strict",
        "/",
        False,  # plain http here; the cookie is Secure when the request is https
    )
    assert page.evaluate("document.cookie") == ""  # scripts cannot read it
    assert keys["operator"] not in page.content()
    assert not [url for url in urls if keys["operator"] in url]

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{served.base_url}/login")
    assert page.context.cookies() == []
    page.goto(f"{served.base_url}/")
    expect(page).to_have_url(f"{served.base_url}/login?next=%2F")


def test_a_read_key_sees_jobs_but_its_cancel_is_refused_with_the_reason(
    keyed: tuple[Served, dict[str, str]], page: Page
) -> None:
    served, keys = keyed
    job_id = add(served, "stepper", {"steps": 1}, key=keys["operator"])
    sign_in(page, served, keys["viewer"], f"/jobs/{job_id}")
    head = page.locator("#job-head")
    expect(head).to_have_attribute("data-status", "pending")  # no worker on this server
    page.once("dialog", lambda dialog: dialog.accept())
    head.get_by_role("button", name="Cancel").click()
    expect(page.locator("#notice")).to_have_text(
        "Not allowed: key 'viewer' has scope read; this needs operate"
    )
    expect(page.locator("#notice")).to_have_class(re.compile(r"\berror\b"))
    assert get_job(served, job_id, keys["operator"])["status"] == "pending"


def test_a_revoked_key_sends_the_browser_back_to_sign_in(
    keyed: tuple[Served, dict[str, str]], page: Page
) -> None:
    served, _ = keyed

    async def temporary_key() -> str:
        async with Queue(served.store_url) as queue:
            return (await queue.create_api_key("temporary", "read"))[1]

    async def revoke() -> None:
        async with Queue(served.store_url) as queue:
            await queue.revoke_api_key("temporary")

    key = run_aside(temporary_key)
    sign_in(page, served, key, "/tokens")
    run_aside(revoke)
    page.reload()
    expect(page).to_have_url(f"{served.base_url}/login?next=%2Ftokens&rejected=1")
    expect(page.locator(".login .error")).to_contain_text("not accepted")
    assert page.context.cookies() == []
