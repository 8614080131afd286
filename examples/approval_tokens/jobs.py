"""An agent's action that needs a person's approval first: the job makes a token, waits for it
(parked in the store, no worker slot held), then acts on the answer.

    agentqueue worker --app jobs:queue
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel

from agentqueue import JobContext, Queue

queue = Queue()  # $AGENTQUEUE_URL, else sqlite:///./agentqueue.db


class Post(BaseModel):
    """A post an agent drafted and wants to publish."""

    title: str
    body: str


@queue.handler("publish_post", description="Publish a drafted post once a person approves it")
async def publish_post(post: Post, ctx: JobContext) -> dict[str, object]:
    """Ask for approval, wait for the answer (up to a day), then publish or drop the post."""
    # create_token returns the same token when the job resumes, so this runs once in effect.
    token = await ctx.create_token(timeout=timedelta(days=1), tags=["post-approval"])
    # A side effect such as notifying a reviewer goes in a step: it runs once, not on resume.
    await ctx.step("ask", lambda: print(f"approval needed for {post.title!r}: token {token.id}"))
    answer = await ctx.wait_for_token(token)
    if not answer.ok:
        return {"published": False, "reason": "no answer within a day"}
    decision = answer.data or {}
    if not decision.get("approved"):
        return {
            "published": False,
            "reason": decision.get("note") or "rejected",
            "by": decision.get("by"),
        }
    # Publishing is the real effect: a step, so a retry after a crash does not post twice.
    url = await ctx.step(
        "publish", lambda: f"https://blog.example/{post.title.lower().replace(' ', '-')}"
    )
    return {"published": True, "url": url, "by": decision.get("by")}
