"""API keys: made here, kept in the store by hash only, checked by the REST and MCP doors.

A key reads `aq_<id>_<secret>`: the id names it in listings and logs (never the secret), the
secret is 32 random bytes (URL-safe base64). The store keeps SHA-256 of the whole key: a
high-entropy random secret needs no slow password hash, and a lookup is one indexed read.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime

from agentqueue.backends.base import Backend
from agentqueue.errors import InvalidArgument
from agentqueue.models import ApiKey, ApiScope

PREFIX = "aq_"
_NAME = re.compile(r"^[A-Za-z0-9_.:@\-]{1,200}$")


def digest(key: str) -> str:
    """The hash a store keeps of a key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


async def create(
    store: Backend, name: str, scope: ApiScope | str, now: datetime
) -> tuple[ApiKey, str]:
    """Make and store a key; return it and its secret text (shown once, never stored).

    Raises:
        InvalidArgument: a bad name or scope, or an active key with that name.
    """
    if not _NAME.fullmatch(name):
        raise InvalidArgument(f"bad key name {name!r}: 1-200 letters, digits and _ . : @ -")
    try:
        level = ApiScope(scope)
    except ValueError:
        raise InvalidArgument(
            f"bad scope {scope!r}: one of {', '.join(s.value for s in ApiScope)}"
        ) from None
    key_id = secrets.token_hex(6)
    text = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    key = ApiKey(id=key_id, name=name, scope=level, created_at=now)
    await store.put_api_key(key, digest(text))
    return key, text


async def authenticate(store: Backend, text: str) -> ApiKey | None:
    """Return the active key a presented secret belongs to, or None."""
    if not text.startswith(PREFIX) or len(text) > 200:
        return None
    return await store.find_api_key(digest(text))
