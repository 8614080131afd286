"""Take the dashboard screenshots of docs/guides/dashboard.md.

    .venv/bin/python docs/screenshots/make.py

Serves the built-in demo (`agentqueue serve`, its own worker) on a fresh SQLite file with one
API key, adds a few more jobs and two schedules, waits until they settle, then photographs each
page in Debian's chromium. Times and ids differ from run to run; nothing else should.
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the repository, for tests.api.dashboard_server

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

from agentqueue import Queue  # noqa: E402
from tests.api.dashboard_server import CHROMIUM, Served, launch, serving  # noqa: E402
from tests.conftest import run_aside  # noqa: E402

SETTLE_SECONDS = 30.0
LIVE_OR_DONE = re.compile(r"^(live|finished)$")
TEXT = "Durable queues survive crashes. Workers come and go. The job still runs once."


def main() -> None:
    """Serve the demo, fill it, photograph every page into this folder."""
    if not CHROMIUM.exists():
        sys.exit(f"needs chromium at {CHROMIUM} (make chromium)")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        url = f"sqlite:///{tmp / 'demo.db'}"
        key = run_aside(lambda: _make_key(url))
        with serving(tmp, app=None, store_url=url) as served:
            jobs = _fill(served, key)
            _settle(served, key)
            _photograph(served, key, jobs)
    print(f"screenshots written to {HERE}")  # noqa: T201 (a script's one line of output)


async def _make_key(url: str) -> str:
    async with Queue(url) as queue:
        return (await queue.create_api_key("docs", "operate"))[1]


def _fill(served: Served, key: str) -> dict[str, int]:
    """More demo jobs (one that fails for good) and two schedules; the ids worth showing."""
    with served.api(key) as api:

        def add(job_type: str, payload: Any, **options: Any) -> int:
            body = {"job_type": job_type, "payload": payload, **options}
            answer = api.post("/api/v1/jobs", json=body)
            answer.raise_for_status()
            return answer.json()["id"]

        summary = add("demo.summarize", {"text": TEXT, "sentences": 2}, tags=["demo", "docs"])
        add("demo.thumbnail", {"url": "https://example.com/cat.png", "width": 256}, priority=5)
        failed = add("demo.flaky", {"source": "crm"}, max_attempts=1, tags=["demo", "import"])
        add("demo.flaky", {"source": "billing"}, tags=["demo", "import"])
        for schedule in (
            {"name": "nightly-digest", "expression": "30 2 * * *", "timezone": "Europe/Berlin"},
            {"name": "weekly-cleanup", "expression": "0 6 * * MON"},
        ):
            body = {**schedule, "job_type": "demo.summarize", "payload": {"text": TEXT}}
            api.post("/api/v1/cron", json=body).raise_for_status()
        api.post("/api/v1/cron/weekly-cleanup/pause").raise_for_status()
        waiting = api.get("/api/v1/jobs", params={"status": "waiting"}).json()["items"][0]["id"]
    return {"summary": summary, "failed": failed, "waiting": waiting}


def _settle(served: Served, key: str) -> None:
    """Wait (bounded) until only the approval job is still open."""
    deadline = time.monotonic() + SETTLE_SECONDS
    with served.api(key) as api:
        while True:
            totals = api.get("/api/v1/stats").json()["totals"]
            if not totals.get("pending") and not totals.get("processing"):
                return
            if time.monotonic() > deadline:
                sys.exit(f"jobs did not settle within {SETTLE_SECONDS} s: {totals}")
            time.sleep(0.2)


def _photograph(served: Served, key: str, jobs: dict[str, int]) -> None:
    with sync_playwright() as driver:
        browser = launch(driver)
        context = browser.new_context(viewport={"width": 1280, "height": 760})
        page = context.new_page()
        page.goto(served.base_url + "/")
        expect(page.get_by_label("API key")).to_be_visible()
        page.screenshot(path=str(HERE / "login.png"))
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#jobs")).to_be_visible()
        _shot(page, "jobs")
        for name, path in (
            ("job-waiting", f"/jobs/{jobs['waiting']}"),
            ("job-failed", f"/jobs/{jobs['failed']}"),
            ("job-completed", f"/jobs/{jobs['summary']}"),
            ("tokens", "/tokens"),
            ("cron", "/cron"),
            ("workers", "/workers"),
        ):
            page.goto(served.base_url + path)
            _shot(page, name)
        browser.close()


def _shot(page: Page, name: str) -> None:
    # Once the page's stream is open (or a finished job's has ended), the page is complete.
    expect(page.locator("#live-state")).to_have_attribute("data-state", LIVE_OR_DONE)
    page.screenshot(path=str(HERE / f"{name}.png"), full_page=True)


if __name__ == "__main__":
    main()
