"""The Redis store's URL options and key names.

Every key of one queue starts with the hash tag `{<prefix>}` (default prefix `aq`), so all of
them live in one Redis Cluster slot and every Lua script touches a single slot. The scripts
build the same names (`scripts/_lib.lua`); this module builds them for reads.

| key | type | holds |
|---|---|---|
| `{p}:schema` | string | schema version |
| `{p}:next_job_id`, `{p}:next_event_id` | string | INCR counters |
| `{p}:job:<id>` | hash | one job's fields (times in epoch microseconds, JSON as text) |
| `{p}:job:<id>:events` | list | the job's event ids, oldest first |
| `{p}:events` | stream | every event, entry id `<event id>-0` |
| `{p}:changes` | shard channel | not a key: each writing script publishes its last event id |
| `{p}:idem:<len>:<job_type>:<key>` | string | job id of an idempotency key |
| `{p}:all`, `{p}:status:<s>`, `{p}:type:<t>` | zset | job ids (score = id), for `list_jobs` |
| `{p}:queue:<q>`, `{p}:tag:<tag>` | zset | job ids (score = id), for `list_jobs` |
| `{p}:created_by:<actor>` | zset | ids of the jobs an actor added (`Job.origin`) |
| `{p}:counts` | hash | `<status>:<job_type>` -> count, for `stats` |
| `{p}:ready:<variant>` | zset | due pending jobs, score -priority, member `<run_at:016>:<id:016>` |
| `{p}:sched:<variant>` | zset | pending jobs not yet due, score run_at, member id |
| `{p}:leases` | zset | processing job ids by lease expiry |
| `{p}:types`, `{p}:types_updated_at` | hash | the job-type registry |
| `{p}:waiting` | zset | waiting job ids by wake-up time (`run_at`), for `resume_due` |
| `{p}:finished` | zset | completed, failed and cancelled job ids by completed_at, for `purge` |
| `{p}:job:<id>:steps` | hash | the job's memoized steps: name -> JSON |
| `{p}:job:<id>:tokens` | zset | ids of the tokens the job created (score = created_at) |
| `{p}:job:<id>:token_steps` | hash | step -> id of the token the job created in it (the memo) |
| `{p}:token:<id>` | hash | one token's fields (times in epoch microseconds, JSON as text) |
| `{p}:token_waiters:<id>` | zset | ids of the jobs waiting on a token (score = id) |
| `{p}:tokens`, `{p}:token_status:<s>` | zset | token ids (score = created_at), for `list_tokens` |
| `{p}:token_tag:<tag>` | zset | token ids (score = created_at), for `list_tokens` |
| `{p}:token_expiry` | zset | pending token ids by expires_at (if set), for `expire_tokens` |
| `{p}:cron:<name>` | hash | one cron schedule's fields (times in epoch us, JSON as text) |
| `{p}:crons` | zset | schedule names (score 0: by name), for `list_cron_jobs` |
| `{p}:cron_due` | zset | active schedule names by next_run_at, for `due_cron_jobs` |
| `{p}:job:<id>:dependents` | set | ids of the jobs that depend on the job (`has_dependents` set) |
| `{p}:limits` | hash | `<scope>:<key>` -> one flow limit as JSON (limits.py) |
| `{p}:running_groups` | hash | group -> jobs processing, for group limits |
| `{p}:rate:<scope>:<key>` | zset | starts inside a rate limit's window (score = start time) |
| `{p}:workers`, `{p}:workers_seen`, `{p}:api_key*`, `{p}:audit` | | the doors' data (admin.py) |

A ready or scheduled job is in four sets, one per claim filter (`<variant>`): `all`, `q:<queue>`,
`t:<job_type>` and `qt:<len(queue)>:<queue>:<job_type>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from agentqueue.errors import ConfigError

DEFAULT_PREFIX = "aq"
PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")

_PASSED_TO_DRIVER = ("socket_connect_timeout", "ssl_cert_reqs", "ssl_ca_certs")
"""URL options handed to redis-py unchanged (the rest of the query is ours or refused)."""


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """Where the store connects: a `redis://host:port/db?prefix=name` URL, or the connection
    settings of a caller's own redis-py client (`client_settings`)."""

    url: str | None
    """The URL for redis-py: scheme, credentials, host, port, db and driver options."""
    prefix: str = DEFAULT_PREFIX
    """Name of this queue's keys; several apps (or tests) share one Redis with different ones."""
    client_settings: tuple[type, dict[str, Any]] | None = field(default=None, compare=False)
    """Connection class and keyword arguments of a caller's pool (instead of `url`)."""


def check_prefix(prefix: str) -> str:
    """Return `prefix` if it can name a queue's keys.

    Raises:
        ConfigError: it is empty, too long, or has characters outside [A-Za-z0-9_.:-] (a brace
            would break the hash tag).
    """
    if not PREFIX_PATTERN.match(prefix):
        raise ConfigError(
            f"bad Redis key prefix {prefix!r}: use 1-64 letters, digits, '_', '.', ':' or '-'"
        )
    return prefix


def parse_url(url: str) -> RedisOptions:
    """Read a `redis://` or `rediss://` URL.

    Raises:
        ConfigError: unknown option, bad prefix or malformed URL.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ConfigError(f"bad Redis URL {url!r}: use redis://host:6379/0?prefix=myapp")
    if parts.path not in ("", "/") and not parts.path[1:].isdigit():
        raise ConfigError(f"bad Redis URL {url!r}: the path must be a database number, e.g. /0")
    prefix = DEFAULT_PREFIX
    passed: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "prefix":
            prefix = check_prefix(value)
        elif name in _PASSED_TO_DRIVER:
            passed.append((name, value))
        else:
            known = ", ".join(("prefix", *_PASSED_TO_DRIVER))
            raise ConfigError(f"unknown Redis URL option {name!r} (known: {known})")
    driver_url = urlunsplit(parts._replace(query=urlencode(passed), fragment=""))
    return RedisOptions(url=driver_url, prefix=prefix)


class Keys:
    """Key names of one prefix (see the module docstring)."""

    def __init__(self, prefix: str) -> None:
        self.tag = "{" + prefix + "}"
        """The hash tag every key starts with; passed as KEYS[1] to every script."""
        self.schema = self._key("schema")
        self.next_event_id = self._key("next_event_id")
        self.events = self._key("events")
        self.changes = self._key("changes")
        """The shard channel (SPUBLISH) of new event ids; in the keys' Cluster slot."""
        self.all = self._key("all")
        self.counts = self._key("counts")
        self.leases = self._key("leases")
        self.types = self._key("types")
        self.types_updated_at = self._key("types_updated_at")
        self.waiting = self._key("waiting")
        self.crons = self._key("crons")
        self.cron_due = self._key("cron_due")
        self.limits = self._key("limits")
        self.workers = self._key("workers")
        self.workers_seen = self._key("workers_seen")
        self.api_keys = self._key("api_keys")
        self.api_key_hashes = self._key("api_key_hashes")
        self.audit = self._key("audit")

    def _key(self, *parts: str | int) -> str:
        return ":".join((self.tag, *(str(part) for part in parts)))

    def job(self, job_id: int) -> str:
        """The hash of one job."""
        return self._key("job", job_id)

    def job_events(self, job_id: int) -> str:
        """The list of one job's event ids."""
        return self._key("job", job_id, "events")

    def status(self, status: str) -> str:
        """Ids of the jobs in one status."""
        return self._key("status", status)

    def job_type(self, job_type: str) -> str:
        """Ids of the jobs of one type."""
        return self._key("type", job_type)

    def queue(self, queue: str) -> str:
        """Ids of the jobs of one queue."""
        return self._key("queue", queue)

    def created_by(self, actor: str) -> str:
        """The ids of the jobs an actor asked for (`JobFilter.created_by`)."""
        return self._key("created_by", actor)

    def tag_ids(self, tag: str) -> str:
        """Ids of the jobs carrying one tag."""
        return self._key("tag", tag)

    def job_steps(self, job_id: int) -> str:
        """The hash of one job's memoized steps."""
        return self._key("job", job_id, "steps")

    def token(self, token_id: str) -> str:
        """The hash of one token."""
        return self._key("token", token_id)

    def cron(self, name: str) -> str:
        """The hash of one cron schedule."""
        return self._key("cron", name)

    def variant(self, kind: str, queue: str | None, job_type: str | None) -> str:
        """The `ready` or `sched` set serving a claim filter (queue and/or one job type)."""
        if queue is None:
            return self._key(kind, "all") if job_type is None else self._key(kind, "t", job_type)
        if job_type is None:
            return self._key(kind, "q", queue)
        # Length in bytes, as Lua's `#` counts it.
        return self._key(kind, "qt", f"{len(queue.encode())}:{queue}", job_type)
