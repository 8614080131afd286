"""How an app built by `create_app` behaves: where it is bound, what it accepts."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or name a server binds to) is reachable only from here."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ApiSettings:
    """Settings of one app.

    Attributes:
        host: the address the server binds to. On a non-loopback address every route but
            `/healthz` needs an API key; on loopback the app runs open for local development
            while the store has no key (and needs one as soon as it has any).
        max_body_bytes: largest request body (413 beyond).
        key_cache_seconds: how long the app trusts its view of whether keys exist.
        metrics: serve `/metrics`.
        dashboard: serve the dashboard at `/`.
        mcp: serve MCP over streamable HTTP at `/mcp`.
        allowed_hosts: host names the app is reached by when not bound to loopback (MCP's
            Host/Origin check; empty: no check there, keys are required anyway).
    """

    host: str = "127.0.0.1"
    max_body_bytes: int = 1 << 20
    key_cache_seconds: float = 1.0
    metrics: bool = True
    dashboard: bool = True
    mcp: bool = True
    allowed_hosts: tuple[str, ...] = ()

    @property
    def loopback(self) -> bool:
        """Whether the app is bound to loopback only."""
        return is_loopback(self.host)
