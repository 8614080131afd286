"""`/api/v1/tokens`: human-in-the-loop tokens — create, read, list, complete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from agentqueue.api.deps import Operator, QueueDep, Reader, audited
from agentqueue.errors import TokenNotFound
from agentqueue.models import MAX_JOB_ID, Token, TokenStatus
from agentqueue.requests import TokenComplete, TokenCreate

router = APIRouter(prefix="/tokens", tags=["tokens"])


@router.post("", status_code=201, summary="Create a token")
async def create_token(body: TokenCreate, queue: QueueDep, access: Operator) -> Token:
    """A token no handler made: give its id to whoever will complete it."""
    async with audited(queue, access, "create_token") as note:
        token = await queue.create_token(timeout=body.timeout, tags=body.tags)
        note["token_id"] = token.id
    return token


@router.get("", summary="List tokens")
async def list_tokens(
    queue: QueueDep,
    access: Reader,
    status: Annotated[list[TokenStatus] | None, Query()] = None,
    tag: Annotated[list[str] | None, Query()] = None,
    job_id: Annotated[int | None, Query(ge=1, le=MAX_JOB_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[Token]:
    """Tokens, newest first (by status, tags, or the job that made them)."""
    return await queue.list_tokens(status=status, tags=tag, job_id=job_id, limit=limit)


@router.get("/{token_id}", summary="Get a token")
async def get_token(token_id: str, queue: QueueDep, access: Reader) -> Token:
    """One token."""
    token = await queue.get_token(token_id)
    if token is None:
        raise TokenNotFound(token_id)
    return token


@router.post("/{token_id}/complete", summary="Complete a token")
async def complete_token(
    token_id: str, body: TokenComplete, queue: QueueDep, access: Operator
) -> Token:
    """Complete a pending token with data; the job waiting on it resumes and receives it.
    404 unknown, 409 already completed or expired."""
    async with audited(queue, access, "complete_token", token_id):
        return await queue.complete_token(token_id, body.data)
