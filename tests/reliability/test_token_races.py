"""Reliability scenario 7: token completion races and expiry at the boundary, through the
Python API, REST and MCP at once.

Every token is completed concurrently from the three doors of one store (the REST app on
httpx's ASGI transport, the MCP server through the SDK's in-memory client): exactly one caller
wins, every other one gets the typed "not pending" error of its door, and the waiting job resumes
once with the winner's data. At the expiry instant (a frozen clock, so the instant is exact) the
completions race the supervisor's expiry sweep: the token ends one way, never both, and the job
sees that outcome. On the real clock, completions fired around the expiry instant while sweeps
run give the same: completed or expired, and the job agrees.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from mcp.client import Client

from agentqueue import FrozenClock, JobContext, JobStatus, Queue
from agentqueue.errors import TokenNotPending
from agentqueue.models import TokenStatus
from agentqueue.testing import run_due_jobs
from tests.api.conftest import running_api
from tests.conftest import eventually
from tests.mcp.conftest import connect, details
from tests.reliability.figures import record
from tests.worker.worker_kit import fast_worker, running

DOORS = ("python", "rest", "mcp")


@dataclass(frozen=True)
class Attempt:
    """One door's answer to a completion: won, or the error code (and token status) it got."""

    door: str
    data: str
    won: bool
    code: str | None = None
    status: str | None = None


@dataclass
class Doors:
    """The three ways into one queue."""

    queue: Queue
    rest: httpx.AsyncClient
    mcp: Client

    async def complete(self, door: str, token_id: str, data: str) -> Attempt:
        """Complete `token_id` with `data` through `door`; a loss must be that door's typed
        "not pending" error (anything else fails the test)."""
        if door == "python":
            try:
                await self.queue.complete_token(token_id, data)
            except TokenNotPending as error:
                return Attempt(door, data, False, error.code, error.status)
            return Attempt(door, data, True)
        if door == "rest":
            answer = await self.rest.post(
                f"/api/v1/tokens/{token_id}/complete", json={"data": data}
            )
            if answer.status_code == 200:
                return Attempt(door, data, True)
            assert answer.status_code == 409, answer.text
            error = answer.json()["error"]
            return Attempt(door, data, False, error["code"], error.get("status"))
        result = await self.mcp.call_tool("complete_token", {"token_id": token_id, "data": data})
        if not result.is_error:
            return Attempt(door, data, True)
        text = result.content[0].text  # type: ignore[union-attr]
        assert "[token_not_pending]" in text, text
        return Attempt(door, data, False, "token_not_pending", details(text).get("status"))

    async def race(self, token_id: str, per_door: int) -> list[Attempt]:
        """`per_door` concurrent completions from each door, each with its own data."""
        calls = [
            self.complete(door, token_id, f"{door}-{n}") for n in range(per_door) for door in DOORS
        ]
        return list(await asyncio.gather(*calls))


@contextlib.asynccontextmanager
async def doors(queue: Queue) -> AsyncIterator[Doors]:
    """The REST app and an MCP session on `queue`, both entered in the test's own task."""
    async with running_api(queue) as api, connect(queue, "legacy") as mcp:
        yield Doors(queue, api.client, mcp)


def gate(queue: Queue, timeout: float | None) -> None:
    """A handler that parks on its own token and returns what the wait gave it."""

    @queue.handler("gate")
    async def _gate(payload: Any, ctx: JobContext) -> dict[str, Any]:
        token = await ctx.create_token(timeout=timeout)
        answer = await ctx.wait_for_token(token)
        return {"ok": answer.ok, "data": answer.data, "status": answer.token.status.value}


async def resumes(queue: Queue, job_id: int) -> int:
    """How many times the store resumed the job."""
    return sum(1 for event in await queue.get_job_events(job_id) if event.type == "resume")


async def parked_tokens(queue: Queue, count: int) -> dict[int, str]:
    """Add `count` gate jobs, run them until each waits; return job id → its token id."""
    ids = [int(await queue.add_job("gate")) for _ in range(count)]
    assert await run_due_jobs(queue) == {"wait": count}
    tokens: dict[int, str] = {}
    for job_id in ids:
        (token,) = await queue.list_tokens(job_id=job_id)
        tokens[job_id] = token.id
    return tokens


async def test_concurrent_completions_from_three_doors_have_one_winner(
    timed: Queue, store_url: str
) -> None:
    gate(timed, timeout=None)
    tokens = await parked_tokens(timed, 8)
    wins: Counter[str] = Counter()
    loser_codes: Counter[str] = Counter()
    # The app's lifespan closes the queue when it stops: every check runs inside.
    async with doors(timed) as door:
        outcomes = {job_id: await door.race(token, per_door=4) for job_id, token in tokens.items()}
        await check_single_winners(timed, outcomes, wins, loser_codes)
    record(
        "7-token-race-doors",
        store_url.split(":", 1)[0],
        tokens=len(tokens),
        callers_per_token=4 * len(DOORS),
        wins_per_door=dict(wins),
        loser_errors=dict(loser_codes),
        double_wins=0,
        resumes_per_job=1,
    )


async def check_single_winners(
    queue: Queue,
    outcomes: dict[int, list[Attempt]],
    wins: Counter[str],
    loser_codes: Counter[str],
) -> None:
    """One winner per token, typed losses, one resume, and the job got the winner's data."""
    for job_id, attempts in outcomes.items():
        winners = [a for a in attempts if a.won]
        assert len(winners) == 1, (job_id, attempts)
        wins[winners[0].door] += 1
        for loser in (a for a in attempts if not a.won):
            assert (loser.code, loser.status) == ("token_not_pending", "completed"), loser
            loser_codes[f"{loser.door}:{loser.code}"] += 1
        assert await resumes(queue, job_id) == 1
    assert await run_due_jobs(queue) == {"complete": len(outcomes)}
    for job_id, attempts in outcomes.items():
        job = await queue.get_job(job_id)
        assert job is not None
        winner = next(a for a in attempts if a.won)
        assert job.output == {"ok": True, "data": winner.data, "status": "completed"}
        assert await resumes(queue, job_id) == 1


@pytest.mark.parametrize("offset_us", [-1, 0, 1], ids=["before", "at", "after"])
async def test_completion_racing_the_expiry_sweep_at_the_instant_has_one_outcome(
    timed: Queue, clock: FrozenClock, store_url: str, offset_us: int
) -> None:
    gate(timed, timeout=10)
    tokens = await parked_tokens(timed, 3)
    (expires_at,) = {
        token.expires_at for token in await timed.list_tokens() if token.expires_at is not None
    }
    clock.set(expires_at + timedelta(microseconds=offset_us))
    async with doors(timed) as door:
        races = [door.race(token, per_door=2) for token in tokens.values()]
        sweeps = [timed.supervisor().run_once(purge=False) for _ in range(3)]
        outcomes, _ = await asyncio.gather(asyncio.gather(*races), asyncio.gather(*sweeps))
        await check_one_outcome(timed, tokens, outcomes, offset_us)
    record(
        "7-token-expiry-instant",
        store_url.split(":", 1)[0],
        offset_us=offset_us,
        tokens=len(tokens),
        outcome="completed" if offset_us < 0 else "expired",
        both_or_neither=0,
        resumes_per_job=1,
    )


async def check_one_outcome(
    timed: Queue, tokens: dict[int, str], outcomes: list[list[Attempt]], offset_us: int
) -> None:
    """Before the instant the completion wins; at or after it the token expired; never both,
    and the job resumed once with that outcome."""
    expected = TokenStatus.COMPLETED if offset_us < 0 else TokenStatus.EXPIRED
    for (job_id, token_id), attempts in zip(tokens.items(), outcomes, strict=True):
        token = await timed.get_token(token_id)
        assert token is not None
        assert token.status is expected, (offset_us, token)
        winners = [a for a in attempts if a.won]
        assert len(winners) == (1 if expected is TokenStatus.COMPLETED else 0), attempts
        for loser in (a for a in attempts if not a.won):
            assert (loser.code, loser.status) == ("token_not_pending", expected.value), loser
        assert await resumes(timed, job_id) == 1
    assert await run_due_jobs(timed) == {"complete": len(tokens)}
    for (job_id, token_id), attempts in zip(tokens.items(), outcomes, strict=True):
        job = await timed.get_job(job_id)
        assert job is not None
        winners = [a.data for a in attempts if a.won]
        assert job.output == {
            "ok": expected is TokenStatus.COMPLETED,
            "data": winners[0] if winners else None,
            "status": expected.value,
        }, token_id


@pytest.mark.slow
async def test_completions_around_the_real_expiry_instant_agree_with_the_job(
    shared_url: str,
) -> None:
    """Real clock, a live worker and sweeps: each completion lands 0-20 ms either side of the
    token's expiry, from a door picked at random; whatever wins, the job sees it."""
    trials = 24
    rng = random.Random(7)
    async with Queue(shared_url) as queue:
        gate(queue, timeout=1.5)
        async with doors(queue) as door, running(fast_worker(queue)):
            ids = [int(await queue.add_job("gate")) for _ in range(trials)]

            async def all_parked() -> list[Any] | None:
                # Any status: on a loaded machine a token may expire before the last job
                # parks; its completion then simply lands after the instant.
                found = await queue.list_tokens(limit=trials)
                return found if len(found) == trials else None

            parked = await eventually(all_parked, timeout=20)
            by_job = {token.job_id: token for token in parked}

            async def near_expiry(job_id: int) -> Attempt:
                token = by_job[job_id]
                assert token.expires_at is not None
                fire_at = token.expires_at + timedelta(milliseconds=rng.uniform(-20, 20))
                # Not a wait for a condition: it places the call at the instant under test.
                await asyncio.sleep(max(0.0, (fire_at - datetime.now(UTC)).total_seconds()))
                return await door.complete(rng.choice(DOORS), token.id, f"answer-{job_id}")

            async def sweep_meanwhile() -> None:
                for _ in range(40):
                    await queue.supervisor().run_once(purge=False)
                    await asyncio.sleep(0.01)

            attempts, _ = await asyncio.gather(
                asyncio.gather(*(near_expiry(job_id) for job_id in ids)), sweep_meanwhile()
            )

            async def all_done() -> bool:
                jobs = [await queue.get_job(job_id) for job_id in ids]
                return all(job is not None and job.status is JobStatus.COMPLETED for job in jobs)

            await eventually(all_done, timeout=20)
            split: Counter[str] = Counter()
            for job_id, attempt in zip(ids, attempts, strict=True):
                token = await queue.get_token(by_job[job_id].id)
                job = await queue.get_job(job_id)
                assert token is not None
                assert job is not None
                assert token.status in (TokenStatus.COMPLETED, TokenStatus.EXPIRED)
                # The caller's answer, the token and the job tell one story.
                assert attempt.won is (token.status is TokenStatus.COMPLETED), (attempt, token)
                if not attempt.won:
                    assert (attempt.code, attempt.status) == ("token_not_pending", "expired")
                assert job.output == {
                    "ok": attempt.won,
                    "data": attempt.data if attempt.won else None,
                    "status": token.status.value,
                }
                assert await resumes(queue, job_id) == 1
                split[token.status.value] += 1
    record(
        "7-token-expiry-real-clock",
        shared_url.split(":", 1)[0],
        trials=trials,
        jitter_ms=20,
        split=dict(split),
        disagreements=0,
        resumes_per_job=1,
    )
    assert sum(split.values()) == trials
