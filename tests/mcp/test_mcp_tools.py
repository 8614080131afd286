"""Every MCP tool, with valid and invalid arguments, on every store and in both protocol eras."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from agentqueue import Queue
from agentqueue.testing import run_due_jobs
from tests.mcp.conftest import call, connect, details, refuse

EXPECTED_TOOLS = {
    "add_job",
    "add_jobs",
    "get_job",
    "list_jobs",
    "get_job_events",
    "cancel_job",
    "retry_job",
    "edit_job",
    "cancel_jobs",
    "retry_jobs",
    "wait_for_job",
    "explain_job",
    "list_job_types",
    "describe_job_type",
    "create_token",
    "complete_token",
    "get_token",
    "list_tokens",
    "add_cron_job",
    "list_cron_jobs",
    "edit_cron_job",
    "pause_cron_job",
    "resume_cron_job",
    "remove_cron_job",
    "queue_stats",
    "search_docs",
}


class Mail(BaseModel):
    """A typed payload."""

    to: str


def register(queue: Queue) -> None:
    """Handlers the tests publish and run."""

    @queue.handler("mail", description="Send one mail", examples=[{"to": "a@x.io"}])
    async def mail(payload: Mail) -> dict[str, str]:
        return {"sent": payload.to}

    @queue.handler("broken", max_attempts=1)
    async def broken(payload: dict[str, Any]) -> None:
        raise RuntimeError("down")


async def test_the_tool_list_is_complete_described_and_annotated(queue: Queue, mode: str) -> None:
    async with connect(queue, mode) as agent:
        tools = {tool.name: tool for tool in (await agent.list_tools()).tools}
        assert set(tools) == EXPECTED_TOOLS
        for tool in tools.values():
            assert tool.description, tool.name
            assert tool.output_schema is not None, tool.name
            assert tool.annotations is not None, tool.name
        assert tools["get_job"].annotations.read_only_hint is True  # type: ignore[union-attr]
        assert tools["cancel_jobs"].annotations.destructive_hint is True  # type: ignore[union-attr]
        props = tools["add_job"].input_schema["properties"]
        assert "description" in props["job_type"]
        assert props["job_type"]["type"] == "string"


async def test_jobs_are_added_read_listed_and_changed(queue: Queue, mode: str) -> None:
    async with connect(queue, mode) as agent:
        register(queue)
        added = await call(agent, "add_job", job_type="mail", payload={"to": "a@x.io"}, priority=3)
        job_id = added["id"]
        assert (added["created"], added["job"]["priority"]) == (True, 3)
        assert added["job"]["origin"]["door"] == "mcp"
        assert added["job"]["origin"]["actor"] == "local"
        batch = await call(
            agent,
            "add_jobs",
            jobs=[
                {"job_type": "mail", "payload": {"to": "b@x.io"}, "ref": "b"},
                {"job_type": "mail", "payload": {"to": "c@x.io"}, "depends_on": ["b"]},
            ],
        )
        assert batch["jobs"][1]["job"]["status"] == "blocked"
        assert (await call(agent, "get_job", job_id=job_id))["id"] == job_id
        mine = await call(agent, "list_jobs", mine=True)
        assert len(mine["items"]) == 3
        await queue.add_job("mail", {"to": "python@x.io"})  # not the agent's
        assert len((await call(agent, "list_jobs", mine=True))["items"]) == 3
        assert len((await call(agent, "list_jobs"))["items"]) == 4
        edited = await call(agent, "edit_job", job_id=job_id, changes={"priority": 9})
        assert edited["priority"] == 9
        events = await call(agent, "get_job_events", job_id=job_id)
        assert [e["type"] for e in events["events"]] == ["added", "edit"]
        assert (await call(agent, "cancel_job", job_id=job_id))["status"] == "cancelled"
        assert (await call(agent, "retry_job", job_id=job_id))["status"] == "pending"
        await run_due_jobs(queue)
        waited = await call(agent, "wait_for_job", job_id=job_id, timeout_seconds=1)
        assert (waited["done"], waited["job"]["output"]) == (True, {"sent": "a@x.io"})


async def test_bad_input_is_a_tool_error_an_agent_can_fix_and_nothing_is_stored(
    queue: Queue, mode: str
) -> None:
    async with connect(queue, mode) as agent:
        register(queue)
        text = await refuse(agent, "add_job", job_type="mail", payload={"too": "x"})
        assert "[payload_invalid]" in text
        assert "field to: Field required" in text
        assert details(text)["schema"]["required"] == ["to"]
        assert "[dependency_invalid]" in await refuse(
            agent, "add_job", job_type="x", depends_on=[77]
        )
        assert "job_type" in await refuse(agent, "add_job", payload={})  # missing argument
        assert "priority" in await refuse(agent, "add_job", job_type="x", priority="high")
        assert "[job_not_found]" in await refuse(agent, "get_job", job_id=424242)
        assert "job_id" in await refuse(agent, "get_job", job_id=0)
        assert "[job_not_found]" in await refuse(agent, "cancel_job", job_id=424242)
        assert "[job_not_found]" in await refuse(agent, "explain_job", job_id=424242)
        assert "[job_not_found]" in await refuse(agent, "get_job_events", job_id=424242)
        assert "edit" in await refuse(agent, "edit_job", job_id=1, changes={"nope": 1})
        assert "limit" in await refuse(agent, "list_jobs", limit=0)
        assert "[invalid_argument]" in await refuse(agent, "list_jobs", cursor="xx")
        assert (await queue.list_jobs()).items == []


async def test_bulk_changes_need_a_preview_and_its_confirmation(queue: Queue, mode: str) -> None:
    async with connect(queue, mode) as agent:
        register(queue)
        for _ in range(3):
            await queue.add_job("broken")
        await run_due_jobs(queue)
        text = await refuse(agent, "retry_jobs", status=["failed"], dry_run=False)
        assert "dry_run=true" in text
        preview = await call(agent, "retry_jobs", status=["failed"])
        assert (preview["result"]["matched"], preview["result"]["changed"]) == (3, 0)
        token = preview["confirmation_id"]
        other = await refuse(
            agent, "retry_jobs", job_type=["x"], dry_run=False, confirmation_id=token
        )
        assert "differs from the one previewed" in other
        fresh = (await call(agent, "retry_jobs", status=["failed"]))["confirmation_id"]
        done = await call(
            agent, "retry_jobs", status=["failed"], dry_run=False, confirmation_id=fresh
        )
        assert done["result"]["changed"] == 3
        reused = await refuse(
            agent, "retry_jobs", status=["failed"], dry_run=False, confirmation_id=fresh
        )
        assert "unknown or expired" in reused
        cancel = await call(agent, "cancel_jobs", status=["pending"])
        gone = await call(
            agent,
            "cancel_jobs",
            status=["pending"],
            dry_run=False,
            confirmation_id=cancel["confirmation_id"],
        )
        assert gone["result"]["changed"] == 3


async def test_explain_types_stats_and_docs(queue: Queue, mode: str) -> None:
    async with connect(queue, mode) as agent:
        register(queue)
        await queue.publish_job_types()
        job_id = (await call(agent, "add_job", job_type="mail", payload={"to": "z@x.io"}))["id"]
        explanation = await call(agent, "explain_job", job_id=job_id)
        assert explanation["reasons"][0]["code"] == "no_live_worker"
        types = await call(agent, "list_job_types")
        assert {t["name"] for t in types["job_types"]} == {"mail", "broken"}
        described = await call(agent, "describe_job_type", name="mail")
        assert described["payload_schema"]["required"] == ["to"]
        assert "known: broken, mail" in await refuse(agent, "describe_job_type", name="nope")
        stats = await call(agent, "queue_stats")
        assert stats["stats"]["totals"]["pending"] == 1
        hits = await call(agent, "search_docs", query="idempotency window")
        assert hits["hits"][0]["uri"] == "agentqueue://docs/guides/idempotency"
        assert "query" in await refuse(agent, "search_docs", query="")


async def test_tokens_through_tools(queue: Queue, mode: str) -> None:
    async with connect(queue, mode) as agent:
        token = await call(agent, "create_token", timeout_seconds=60, tags=["ops"])
        assert token["status"] == "pending"
        listed = await call(agent, "list_tokens", status=["pending"], tags=["ops"])
        assert [t["id"] for t in listed["tokens"]] == [token["id"]]
        done = await call(agent, "complete_token", token_id=token["id"], data={"approved": True})
        assert done["status"] == "completed"
        again = await refuse(agent, "complete_token", token_id=token["id"], data=1)
        assert "[token_not_pending]" in again
        assert (await call(agent, "get_token", token_id=token["id"]))["data"] == {"approved": True}
        assert "[token_not_found]" in await refuse(agent, "get_token", token_id="tok_nope")
        assert "[token_not_found]" in await refuse(agent, "complete_token", token_id="tok_nope")
        assert "timeout_seconds" in await refuse(agent, "create_token", timeout_seconds=-5)


async def test_cron_through_tools(queue: Queue, mode: str) -> None:
    async with connect(queue, mode) as agent:
        schedule = {"name": "nightly", "expression": "30 2 * * *", "job_type": "report"}
        made = await call(agent, "add_cron_job", schedule=schedule)
        assert made["status"] == "active"
        assert [c["name"] for c in (await call(agent, "list_cron_jobs"))["cron_jobs"]] == [
            "nightly"
        ]
        edited = await call(
            agent, "edit_cron_job", name="nightly", changes={"timezone": "Europe/Berlin"}
        )
        assert edited["timezone"] == "Europe/Berlin"
        assert (await call(agent, "pause_cron_job", name="nightly"))["status"] == "paused"
        assert (await call(agent, "resume_cron_job", name="nightly"))["status"] == "active"
        bad = await refuse(agent, "add_cron_job", schedule={**schedule, "expression": "99 * * * *"})
        assert "[invalid_argument]" in bad
        zone = await refuse(
            agent, "edit_cron_job", name="nightly", changes={"timezone": "Mars/Base"}
        )
        assert "[invalid_argument]" in zone
        assert "[cron_job_not_found]" in await refuse(agent, "pause_cron_job", name="nope")
        assert (await call(agent, "remove_cron_job", name="nightly"))["cron_jobs"] == []
        assert "[cron_job_not_found]" in await refuse(agent, "remove_cron_job", name="nightly")


async def test_mutations_are_audited_with_the_client_name(queue: Queue, mode: str) -> None:
    async with connect(queue, mode) as agent:
        await call(agent, "add_job", job_type="x")
        await refuse(agent, "cancel_job", job_id=999)
        log = await queue.list_audit()
        assert [(r.action, r.result, r.door) for r in reversed(log)] == [
            ("add_job", "ok", "mcp"),
            ("cancel_job", "job_not_found", "mcp"),
        ]
        assert log[0].details["client"] == "mcp"  # the SDK client's default name
