"""Who is calling: API keys (bearer header or the dashboard's cookie), scopes, open loopback.

`Access` is what a route learns about its caller. A key comes as `Authorization: Bearer
<key>`, `X-API-Key: <key>`, or the `agentqueue_key` cookie the dashboard's sign-in sets
(HttpOnly, SameSite=Strict: another site's page cannot send it). On a loopback-bound app whose
store has no API key, every call is allowed as the actor `local`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fastapi import Request

from agentqueue import api_keys
from agentqueue.api.errors import HttpError
from agentqueue.api.settings import ApiSettings
from agentqueue.models import ApiScope
from agentqueue.queue import Queue

COOKIE = "agentqueue_key"
LOCAL_ACTOR = "local"


@dataclass(frozen=True)
class Access:
    """The caller of one request: the key's name (or `local`) and its scope."""

    actor: str
    scope: ApiScope


class Guard:
    """Checks each request's key against the store (keys are looked up by hash)."""

    def __init__(self, queue: Queue, settings: ApiSettings) -> None:
        self.queue = queue
        self.settings = settings
        self._keys_seen = False
        self._checked_at = -1e9

    async def open_access(self) -> bool:
        """Whether calls need no key: bound to loopback, and the store has no active key."""
        if not self.settings.loopback:
            return False
        if time.monotonic() - self._checked_at > self.settings.key_cache_seconds:
            keys = await self.queue.list_api_keys()
            self._keys_seen = any(key.revoked_at is None for key in keys)
            self._checked_at = time.monotonic()
        return not self._keys_seen

    def forget(self) -> None:
        """Look at the store's keys again at the next request (a key was made or revoked)."""
        self._checked_at = -1e9

    async def check(self, request: Request, needed: ApiScope) -> Access:
        """Return the caller's access, or raise 401 (no or unknown key) / 403 (low scope)."""
        presented = presented_key(request)
        if presented is None and await self.open_access():
            return Access(LOCAL_ACTOR, ApiScope.ADMIN)
        if presented is None:
            raise HttpError(
                "unauthorized",
                "an API key is required: send 'Authorization: Bearer <key>' (make one with "
                "`agentqueue api-keys create --name NAME --scope read|operate|admin`)",
            )
        if presented == AMBIGUOUS:
            raise HttpError(
                "unauthorized",
                "the request carries different API keys (Authorization, X-API-Key, cookie); "
                "send one",
            )
        key = await api_keys.authenticate(await self.queue._store(), presented)  # pyright: ignore[reportPrivateUsage]
        if key is None:
            raise HttpError("unauthorized", "unknown or revoked API key")
        if not key.scope.allows(needed):
            raise HttpError(
                "forbidden",
                f"key {key.name!r} has scope {key.scope.value}; this needs {needed.value}",
                needed=needed.value,
            )
        return Access(key.name, key.scope)


AMBIGUOUS = "\x00ambiguous"
"""What `presented_key` returns for a request carrying different keys: no stored key matches
it, so such a request is refused as an unknown key."""


def presented_key(request: Request) -> str | None:
    """The key a request carries, if any. A request that carries different keys (a bearer
    key and another `X-API-Key` or cookie) gets none of them: which one it meant is unknown,
    and accepting the valid one would ignore a credential that is wrong."""
    header = request.headers.get("authorization", "")
    # Every credential sent counts, an empty one too: a valid bearer key next to an empty or
    # wrong X-API-Key is a request whose credentials disagree.
    keys = {
        value.strip()
        for value in (
            header[7:] if header[:7].lower() == "bearer " else None,
            request.headers.get("x-api-key"),
            request.cookies.get(COOKIE),
        )
        if value is not None
    }
    if len(keys) > 1:
        return AMBIGUOUS
    return keys.pop() or None if keys else None
