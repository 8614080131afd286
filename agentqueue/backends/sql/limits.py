"""Flow limits on the SQL stores: concurrency and rate limits per job type and per group,
paused job types — applied inside the claim transaction, so they hold across all workers.

`aq_limits` holds the limits (a handful of rows). A claim reads them in its write transaction;
with none, it is the plain claim. With limits, `claim` runs under one store-wide lock
(SQLite's single writer; a transaction-level advisory lock on PostgreSQL), counts the jobs
processing per limited job type and group (partial indexes on processing rows, which are few)
and the starts inside each rate window (`aq_rate_starts`), and admits candidates in claim
order: a job whose type or group is full is skipped (never blocks the jobs behind it), and
the claim looks further down for others.

Rates are sliding windows: at most `rate_limit` starts in any `rate_period` seconds. Each
start of a rate-limited job type or group writes one row, deleted once its window has passed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from agentqueue.backends.sql.dialect import SqlDialect
from agentqueue.backends.sql.tables import IS_PENDING, IS_PROCESSING, jobs, limits, rate_starts
from agentqueue.models import ANY_GROUP, Limit, LimitScope

ROUNDS = 4
"""Candidate reads per claim: each round skips the types and groups found full in the last."""
_TYPE, _GROUP = LimitScope.JOB_TYPE.value, LimitScope.GROUP.value


@dataclass(frozen=True)
class LimitSet:
    """The store's limits, by what they apply to."""

    types: dict[str, Limit]
    groups: dict[str, Limit]
    any_group: Limit | None

    def of_group(self, group: str | None) -> Limit | None:
        """The limit a job of `group` is held to (its own, else `*`'s; None without a group)."""
        if group is None:
            return None
        return self.groups.get(group) or self.any_group


def limit_from_row(row: Any) -> Limit:
    """Build a `Limit` from an `aq_limits` row."""
    return Limit.model_validate(dict(row._mapping))


_ALL_LIMITS = sa.select(limits)
"""Reused by every claim: its cache key is computed once (memoized on the statement)."""


def load(conn: sa.Connection) -> LimitSet | None:
    """Read every limit; None when there is none (the claim is then the plain one)."""
    found = [limit_from_row(row) for row in conn.execute(_ALL_LIMITS)]
    if not found:
        return None
    types = {lim.key: lim for lim in found if lim.scope is LimitScope.JOB_TYPE}
    groups = {lim.key: lim for lim in found if lim.scope is LimitScope.GROUP}
    return LimitSet(types, groups, groups.pop(ANY_GROUP, None))


@dataclass
class Admission:
    """What one claim transaction knows of the limited keys: jobs processing and the starts
    inside each rate window, updated as it admits jobs."""

    limits: LimitSet
    at: datetime
    running: Counter[tuple[str, str]] = field(default_factory=Counter[tuple[str, str]])
    starts: dict[tuple[str, str], list[datetime]] = field(
        default_factory=dict[tuple[str, str], list[datetime]]
    )
    taken: list[tuple[str, str]] = field(default_factory=list[tuple[str, str]])
    """Rate-limited keys of the jobs admitted (one per start), for `record_starts`."""
    _loaded_groups: set[str] = field(default_factory=set[str])

    @classmethod
    def read(cls, conn: sa.Connection, limit_set: LimitSet, at: datetime) -> Admission:
        """Count the job types' processing jobs and recent starts (groups come on demand)."""
        admission = cls(limit_set, at)
        typed = list(limit_set.types)
        if typed:
            counted = conn.execute(
                sa.select(jobs.c.job_type, sa.func.count())
                .where(IS_PROCESSING, jobs.c.job_type.in_(typed))
                .group_by(jobs.c.job_type)
            )
            for job_type, count in counted:
                admission.running[(_TYPE, job_type)] = count
            admission._read_starts(conn, _TYPE, limit_set.types.values())
        return admission

    def load_groups(self, conn: sa.Connection, groups: Iterable[str | None]) -> None:
        """Count processing jobs and recent starts of the limited groups among `groups`."""
        wanted = sorted(
            {
                g
                for g in groups
                if g is not None
                and g not in self._loaded_groups
                and self.limits.of_group(g) is not None
            }
        )
        if not wanted:
            return
        self._loaded_groups.update(wanted)
        counted = conn.execute(
            sa.select(jobs.c.job_group, sa.func.count())
            .where(IS_PROCESSING, jobs.c.job_group.in_(wanted))
            .group_by(jobs.c.job_group)
        )
        for group, count in counted:
            self.running[(_GROUP, group)] = count
        rated = [g for g in wanted if _rate_of(self.limits.of_group(g)) is not None]
        self._read_starts(conn, _GROUP, [], keys=rated)

    def _read_starts(
        self,
        conn: sa.Connection,
        scope: str,
        rated: Iterable[Limit],
        *,
        keys: Sequence[str] | None = None,
    ) -> None:
        names = list(keys) if keys is not None else [lim.key for lim in rated if lim.rate_limit]
        if not names:
            return
        periods = [self._period(scope, name) for name in names]
        since = self.at - timedelta(seconds=max(periods))
        rows = conn.execute(
            sa.select(rate_starts.c.key, rate_starts.c.at)
            .where(
                rate_starts.c.scope == scope,
                rate_starts.c.key.in_(names),
                rate_starts.c.at > since,
            )
            .order_by(rate_starts.c.at)
        )
        for name in names:
            self.starts[(scope, name)] = []
        for name, at in rows:
            if at > self.at - timedelta(seconds=self._period(scope, name)):
                self.starts[(scope, name)].append(at)

    def closed_groups(self, conn: sa.Connection) -> set[str]:
        """The groups that admit no job now. Only a group with jobs processing, starts in its
        rate window or a limit of its own can be full (`closes_every_group` covers the rest)."""
        candidates: set[str] = set(self.limits.groups)
        candidates.update(
            conn.execute(
                sa.select(jobs.c.job_group)
                .where(IS_PROCESSING, jobs.c.job_group.is_not(None))
                .group_by(jobs.c.job_group)
            ).scalars()
        )
        rated = [lim for lim in (*self.limits.groups.values(), self.limits.any_group) if lim]
        periods = [lim.rate_period for lim in rated if lim.rate_limit is not None]
        if periods:
            candidates.update(
                conn.execute(
                    sa.select(rate_starts.c.key)
                    .where(
                        rate_starts.c.scope == _GROUP,
                        rate_starts.c.at > self.at - timedelta(seconds=max(periods)),
                    )
                    .group_by(rate_starts.c.key)
                ).scalars()
            )
        self.load_groups(conn, candidates)
        return {g for g in candidates if not self.group_open(g)}

    @property
    def closes_every_group(self) -> bool:
        """Whether the `*` limit admits no job at all (max_concurrent 0): only groups with an
        open limit of their own run."""
        default = self.limits.any_group
        return default is not None and default.max_concurrent == 0

    def limit_of(self, scope: str, key: str) -> Limit | None:
        """The limit that `key` (a job type or a group) is held to, if any."""
        return self._limit(scope, key)

    def _limit(self, scope: str, key: str) -> Limit | None:
        if scope == _TYPE:
            return self.limits.types.get(key)
        return self.limits.of_group(key)

    def _period(self, scope: str, key: str) -> float:
        limit = self._limit(scope, key)
        assert limit is not None
        return limit.rate_period

    def _open(self, scope: str, key: str | None) -> bool:
        if key is None:
            return True
        limit = self._limit(scope, key)
        if limit is None:
            return True
        if limit.paused:
            return False
        if limit.max_concurrent is not None and self.running[(scope, key)] >= limit.max_concurrent:
            return False
        return limit.rate_limit is None or len(self.starts.get((scope, key), [])) < limit.rate_limit

    def type_open(self, job_type: str) -> bool:
        """Whether the job type admits one more job now."""
        return self._open(_TYPE, job_type)

    def group_open(self, group: str | None) -> bool:
        """Whether the group admits one more job now (groups must be loaded)."""
        return self._open(_GROUP, group)

    def take(self, job_type: str, group: str | None) -> None:
        """Count one admitted job against its type's and its group's limits."""
        for scope, key in ((_TYPE, job_type), (_GROUP, group)):
            if key is None:
                continue
            limit = self._limit(scope, key)
            if limit is None:
                continue
            self.running[(scope, key)] += 1
            if limit.rate_limit is not None:
                self.starts.setdefault((scope, key), []).append(self.at)
                self.taken.append((scope, key))

    def record_starts(self, conn: sa.Connection) -> None:
        """Write the admitted jobs' starts and delete the ones whose window has passed."""
        if not self.taken:
            return
        conn.execute(
            rate_starts.insert(),
            [{"scope": scope, "key": key, "at": self.at} for scope, key in self.taken],
        )
        for scope, key in sorted(set(self.taken)):
            conn.execute(
                sa.delete(rate_starts).where(
                    rate_starts.c.scope == scope,
                    rate_starts.c.key == key,
                    rate_starts.c.at <= self.at - timedelta(seconds=self._period(scope, key)),
                )
            )

    def reopens_at(self, scope: str, key: str) -> datetime | None:
        """When a rate-limited key admits a job again, if only its rate holds it back."""
        limit = self._limit(scope, key)
        if limit is None or limit.rate_limit is None:
            return None
        window = self.starts.get((scope, key), [])
        if len(window) < limit.rate_limit:
            return None
        return window[len(window) - limit.rate_limit] + timedelta(seconds=limit.rate_period)


def _rate_of(limit: Limit | None) -> int | None:
    return None if limit is None else limit.rate_limit


def candidates(
    queue: str | None,
    job_types: Sequence[str] | None,
    *,
    admission: Admission,
    blocked_types: set[str],
    blocked_groups: set[str],
    skip_ids: Sequence[int],
    limit: int,
    at: datetime,
) -> sa.Select[Any]:
    """Due pending jobs in claim order, without those of full types and groups."""
    from agentqueue.backends.sql.consume import claim_statement  # consume imports this module

    query = claim_statement(
        queue, job_types, limit, at, columns=(jobs.c.id, jobs.c.job_type, jobs.c.job_group)
    )
    return _excluding(query, admission, blocked_types, blocked_groups).where(
        *([jobs.c.id.not_in(list(skip_ids))] if skip_ids else [])
    )


def _excluding(
    query: sa.Select[Any], admission: Admission, blocked_types: set[str], blocked_groups: set[str]
) -> sa.Select[Any]:
    """`query` without jobs of the blocked types and groups."""
    if blocked_types:
        query = query.where(jobs.c.job_type.not_in(sorted(blocked_types)))
    if admission.closes_every_group:
        # Only the groups whose own limit is open run.
        own = sorted(g for g in admission.limits.groups if g not in blocked_groups)
        return query.where(sa.or_(jobs.c.job_group.is_(None), jobs.c.job_group.in_(own)))
    if blocked_groups:
        query = query.where(
            sa.or_(jobs.c.job_group.is_(None), jobs.c.job_group.not_in(sorted(blocked_groups)))
        )
    return query


def admit(
    conn: sa.Connection,
    dialect: SqlDialect,
    limit_set: LimitSet,
    *,
    queue: str | None,
    job_types: Sequence[str] | None,
    limit: int,
    at: datetime,
) -> tuple[list[int], Admission]:
    """Pick up to `limit` due jobs the limits admit (ids in claim order), inside a write
    transaction; the caller claims them and then calls `Admission.record_starts`."""
    dialect.serialize_limited_claims(conn)
    admission = Admission.read(conn, limit_set, at)
    blocked_types = {t for t in limit_set.types if not admission.type_open(t)}
    blocked_groups = admission.closed_groups(conn)
    chosen: list[int] = []
    for _ in range(ROUNDS):
        want = limit - len(chosen)
        window = want * 2 + 8
        query = candidates(
            queue,
            job_types,
            admission=admission,
            blocked_types=blocked_types,
            blocked_groups=blocked_groups,
            skip_ids=chosen,
            limit=window,
            at=at,
        )
        rows = conn.execute(dialect.lock(query)).all()
        admission.load_groups(conn, [row.job_group for row in rows])
        for row in rows:
            if row.job_type in blocked_types or row.job_group in blocked_groups:
                continue
            if not admission.type_open(row.job_type):
                blocked_types.add(row.job_type)
            elif not admission.group_open(row.job_group):
                blocked_groups.add(row.job_group)
            else:
                chosen.append(row.id)
                admission.take(row.job_type, row.job_group)
                if len(chosen) == limit:
                    return chosen, admission
        if len(rows) < window:
            break
    return chosen, admission


def next_due(
    conn: sa.Connection,
    limit_set: LimitSet,
    *,
    queue: str | None,
    job_types: Sequence[str] | None,
    at: datetime,
) -> datetime | None:
    """The earliest time a job the claimer could take may be admitted: the earliest run_at of
    a pending job whose type and group are open, or when a rate window reopens for one that is
    held back only by its rate (None: nothing until something changes)."""
    admission = Admission.read(conn, limit_set, at)
    closed_types = {t for t in limit_set.types if not admission.type_open(t)}
    closed_groups = admission.closed_groups(conn)
    query = sa.select(sa.func.min(jobs.c.run_at)).where(IS_PENDING)
    if queue is not None:
        query = query.where(jobs.c.queue == queue)
    if job_types:
        query = query.where(jobs.c.job_type.in_(list(job_types)))
    earliest = conn.execute(_excluding(query, admission, closed_types, closed_groups)).scalar()
    # A key held back by its rate alone opens again when its oldest start leaves the window.
    reopen = [
        when
        for scope, names in ((_TYPE, closed_types), (_GROUP, closed_groups))
        for name in names
        if (when := admission.reopens_at(scope, name)) is not None
        and _only_rate_holds(admission, scope, name)
    ]
    times = [t for t in (earliest, *reopen) if t is not None]
    return min(times) if times else None


def _only_rate_holds(admission: Admission, scope: str, key: str) -> bool:
    limit = admission.limit_of(scope, key)
    if limit is None or limit.paused:
        return False
    return limit.max_concurrent is None or admission.running[(scope, key)] < limit.max_concurrent


def update(
    conn: sa.Connection,
    lock: Callable[[Any], Any],
    scope: LimitScope,
    key: str,
    changes: dict[str, Any],
    at: datetime,
) -> Limit | None:
    """Change some fields of a key's limit (a new one starts empty); delete it when it then
    limits nothing. Returns the stored limit, or None when there is none left.

    Raises:
        pydantic.ValidationError: the changed limit is not valid.
    """
    where = sa.and_(limits.c.scope == scope.value, limits.c.key == key)
    row = conn.execute(lock(sa.select(limits).where(where))).first()
    current = limit_from_row(row) if row is not None else Limit(scope=scope, key=key)
    changed = Limit.model_validate(
        current.model_dump() | changes | {"scope": scope, "key": key, "updated_at": at}
    )
    if changed.empty:
        if row is not None:
            conn.execute(sa.delete(limits).where(where))
        return None
    values = changed.model_dump() | {"scope": scope.value}
    if row is None:
        conn.execute(limits.insert().values(values))
    else:
        conn.execute(sa.update(limits).where(where).values(values))
    return changed


def remove(conn: sa.Connection, scope: LimitScope, key: str) -> bool:
    """Delete a key's limit (and its rate starts); False when it had none."""
    deleted = conn.execute(
        sa.delete(limits).where(limits.c.scope == scope.value, limits.c.key == key)
    ).rowcount
    conn.execute(
        sa.delete(rate_starts).where(rate_starts.c.scope == scope.value, rate_starts.c.key == key)
    )
    return bool(deleted)
