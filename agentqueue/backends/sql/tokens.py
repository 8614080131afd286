"""Human-in-the-loop tokens on the SQL stores: create, complete, expire, read.

A token is `pending` until exactly one `complete_token` (or its expiry) closes it; both are
conditional updates on `status = 'pending'`, so of any number of concurrent closers one wins
and the others see it closed. Closing a token resumes the jobs waiting on it in the same
transaction (`waiting.resume_waiters`). Lock order is token, then job: `durable.suspend` holds
its own job first, but that job is `processing`, which the resume never matches, so the two
never wait for each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from agentqueue.backends.base import TokenCompletion, TokenCompletionKind
from agentqueue.backends.sql.dialect import SqlDialect
from agentqueue.backends.sql.rows import TOKEN_COLUMNS, token_from_row
from agentqueue.backends.sql.tables import TOKEN_IS_PENDING, token_tags, tokens
from agentqueue.backends.sql.waiting import resume_waiters
from agentqueue.errors import InvalidArgument
from agentqueue.models import Token, TokenStatus


def create(
    conn: sa.Connection,
    dialect: SqlDialect,
    *,
    token_id: str,
    job_id: int | None,
    step: str | None,
    expires_at: datetime | None,
    tags: Sequence[str],
    at: datetime,
) -> Token:
    """Store a pending token, or return the one a job's step made before; see
    `Backend.create_token`.

    The insert does nothing on a conflict (the id, or the unique (job_id, step)), so a replay
    racing its first run still gets one token; the row it conflicted with is then read.

    Raises:
        InvalidArgument: the id belongs to a token of another job or step.
    """
    unique_tags = list(dict.fromkeys(tags))
    inserted = conn.execute(
        dialect.insert_ignoring_conflicts(tokens)
        .values(
            id=token_id,
            job_id=job_id,
            step=step,
            status=TokenStatus.PENDING.value,
            created_at=at,
            expires_at=expires_at,
            tags=unique_tags,
        )
        .returning(*TOKEN_COLUMNS)
    ).first()
    if inserted is not None:
        if unique_tags:
            conn.execute(
                token_tags.insert(), [{"token_id": token_id, "tag": tag} for tag in unique_tags]
            )
        return token_from_row(inserted)
    if job_id is not None and step is not None:
        memo = conn.execute(
            sa.select(*TOKEN_COLUMNS).where(tokens.c.job_id == job_id, tokens.c.step == step)
        ).first()
        if memo is not None:
            return token_from_row(memo)
    same = conn.execute(
        sa.select(*TOKEN_COLUMNS, tokens.c.step).where(tokens.c.id == token_id)
    ).first()
    if same is not None and (same.job_id, same.step) == (job_id, step):
        return token_from_row(same)  # the same call again (a standalone token's retry)
    raise InvalidArgument(
        f"token id {token_id!r} is already used by another token; pick a new id",
        token_id=token_id,
    )


def complete(
    conn: sa.Connection, dialect: SqlDialect, token_id: str, data: Any, at: datetime
) -> TokenCompletion:
    """Complete a pending token and resume its waiters; see `Backend.complete_token`.

    On PostgreSQL (READ COMMITTED) a concurrent call blocks on the winner's row lock and then
    re-checks the condition against the committed row: `completed`, so it updates nothing and
    falls through to the locked read below, which sees the winner's result.
    """
    completed = conn.execute(
        sa.update(tokens)
        .where(
            tokens.c.id == token_id,
            TOKEN_IS_PENDING,
            sa.or_(tokens.c.expires_at.is_(None), tokens.c.expires_at > at),
        )
        .values(status=TokenStatus.COMPLETED.value, data=data, completed_at=at)
        .returning(*TOKEN_COLUMNS)
    ).first()
    if completed is not None:
        resumed = resume_waiters(conn, dialect, [token_id], at, expired=False)
        return TokenCompletion(
            TokenCompletionKind.COMPLETED, token_from_row(completed), _first(resumed)
        )
    row = lock(conn, dialect, token_id)
    if row is None:
        return TokenCompletion(TokenCompletionKind.NOT_FOUND)
    if row.status == TokenStatus.PENDING.value:
        # Pending yet not completed above: its expiry has passed. Expire it now, so the job
        # waiting on it does not wait for the supervisor's sweep.
        token, resumed = expire_locked(conn, dialect, token_id, at)
        return TokenCompletion(TokenCompletionKind.NOT_PENDING, token, _first(resumed))
    return TokenCompletion(TokenCompletionKind.NOT_PENDING, token_from_row(row))


def _first(ids: list[int]) -> int | None:
    return ids[0] if ids else None


def lock(conn: sa.Connection, dialect: SqlDialect, token_id: str) -> sa.Row[Any] | None:
    """Read a token inside a write transaction, locked (waiting for another holder)."""
    query = sa.select(*TOKEN_COLUMNS).where(tokens.c.id == token_id)
    return conn.execute(dialect.lock_wait(query)).first()


def is_past(row: sa.Row[Any], at: datetime) -> bool:
    """Whether a token row's expiry is at or before `at`."""
    return row.expires_at is not None and row.expires_at <= at


def expire_locked(
    conn: sa.Connection, dialect: SqlDialect, token_id: str, at: datetime
) -> tuple[Token, list[int]]:
    """Expire a pending token the caller has locked; resume its waiters (ids returned)."""
    row = conn.execute(
        sa.update(tokens)
        .where(tokens.c.id == token_id, TOKEN_IS_PENDING)
        .values(status=TokenStatus.EXPIRED.value, completed_at=at)
        .returning(*TOKEN_COLUMNS)
    ).one()
    return token_from_row(row), resume_waiters(conn, dialect, [token_id], at, expired=True)


def expiry_probe(at: datetime) -> sa.Select[Any]:
    """Select one id of a pending token past its expiry (a cheap check before writing)."""
    return sa.select(tokens.c.id).where(TOKEN_IS_PENDING, tokens.c.expires_at <= at).limit(1)


def expire_due(conn: sa.Connection, dialect: SqlDialect, at: datetime, limit: int) -> list[str]:
    """Expire up to `limit` pending tokens past their expiry and resume their waiters; see
    `Backend.expire_tokens`. Tokens another transaction holds are skipped (PostgreSQL), so
    sweeps running at once expire disjoint tokens, and a token being completed is left to
    its completer."""
    due = dialect.lock(
        sa.select(tokens.c.id)
        .where(TOKEN_IS_PENDING, tokens.c.expires_at <= at)
        .order_by(tokens.c.expires_at)
        .limit(limit)
    )
    expired = (
        conn.execute(
            sa.update(tokens)
            .where(tokens.c.id.in_(due.scalar_subquery()), TOKEN_IS_PENDING)
            .values(status=TokenStatus.EXPIRED.value, completed_at=at)
            .returning(tokens.c.id)
        )
        .scalars()
        .all()
    )
    if expired:
        resume_waiters(conn, dialect, expired, at, expired=True)
    return sorted(expired)


def get_statement(token_id: str) -> sa.Select[Any]:
    """Select one token by id."""
    return sa.select(*TOKEN_COLUMNS).where(tokens.c.id == token_id)


def list_statement(
    *,
    status: Sequence[TokenStatus] | None,
    tags: Sequence[str] | None,
    job_id: int | None,
    limit: int,
) -> sa.Select[Any]:
    """Select tokens newest first; `tags` keeps tokens having any of them (none: no token)."""
    query = sa.select(*TOKEN_COLUMNS)
    if status:
        query = query.where(tokens.c.status.in_([TokenStatus(s).value for s in status]))
    if tags is not None:
        tagged = sa.select(token_tags.c.token_id).where(token_tags.c.tag.in_(list(tags)))
        query = query.where(tokens.c.id.in_(tagged))
    if job_id is not None:
        query = query.where(tokens.c.job_id == job_id)
    return query.order_by(tokens.c.created_at.desc(), tokens.c.id.desc()).limit(limit)
