"""MCP resources: a job (`agentqueue://jobs/{id}`, with updates pushed to subscribers while it
changes), the stats, the job types, and the documentation pages; and the prompts."""

from __future__ import annotations

import json
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError

from agentqueue.mcp import docs
from agentqueue.models import JobIdValue
from agentqueue.queue import Queue

JOB_URI = "agentqueue://jobs/{job_id}"


def job_uri(job_id: int) -> str:
    """The resource URI of a job."""
    return f"agentqueue://jobs/{job_id}"


def register(server: MCPServer[Any], queue: Queue) -> None:
    """Add the resources and prompts to `server`."""

    @server.resource(JOB_URI, mime_type="application/json", description="One job, live")
    async def job(job_id: JobIdValue) -> str:
        """A job as JSON; subscribers get resource-updated notifications while it changes."""
        found = await queue.get_job(job_id)
        if found is None:
            raise ResourceError(f"job {job_id} does not exist")
        return found.model_dump_json()

    @server.resource("agentqueue://stats", mime_type="application/json")
    async def stats() -> str:
        """Jobs per type and status, and the live workers."""
        workers = [w.model_dump(mode="json") for w in await queue.list_workers()]
        return json.dumps(
            {"stats": (await queue.stats()).model_dump(mode="json"), "workers": workers}
        )

    @server.resource("agentqueue://job-types", mime_type="application/json")
    async def job_types() -> str:
        """The job types with their payload schemas."""
        return json.dumps([info.model_dump(mode="json") for info in await queue.list_job_types()])

    for page in docs.pages():
        _add_page(server, page)

    @server.prompt()
    def triage_failed_jobs(job_type: str | None = None) -> str:
        """Find failed jobs, explain each failure, and propose what to retry or fix."""
        scope = f" of type {job_type!r}" if job_type else ""
        return (
            f"List the failed jobs{scope} with list_jobs(status=['failed']). For each, call "
            "explain_job and group them by cause (the same last_error or failure_reason). For "
            "each group say whether a retry can succeed (a transient error: timeout, upstream "
            "down) or not (a bad payload, a missing handler), and propose the fix. Redrive the "
            "retryable ones with retry_jobs: first dry_run=true to show me the count and "
            "sample, and only with my go-ahead call it again with the confirmation_id."
        )

    @server.prompt()
    def schedule_recurring_task(what: str, when: str, timezone: str = "UTC") -> str:
        """Turn a plain-language schedule into a cron schedule and add it."""
        return (
            f"I want this to run on a schedule: {what!r}, {when!r} (time zone {timezone}). "
            "Find the job type that does it with list_job_types and describe_job_type, build a "
            "payload that matches its schema, turn the timing into a 5-field cron expression "
            "(say it back to me in words), then call add_cron_job with allow_overlap=false. "
            "Show me the next run time from the result."
        )

    @server.prompt()
    def approve_pending_tokens() -> str:
        """Walk through the approvals waiting for an answer."""
        return (
            "Call list_tokens(status=['pending']). For each token with a job_id, get_job to "
            "see what the job wants approved (its payload and progress message). Present each "
            "to me one by one and ask approve or reject; complete_token with "
            "{'approved': true} or {'approved': false, 'why': ...} as I answer."
        )


def _add_page(server: MCPServer[Any], page: docs.Page) -> None:
    @server.resource(page.uri, name=page.name, title=page.title, mime_type="text/markdown")
    def read() -> str:
        return page.text
