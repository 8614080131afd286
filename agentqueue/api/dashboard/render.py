"""Templates and how a page is answered: the Jinja environment, its filters, the headers."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from agentqueue import __version__
from agentqueue.api.security import COOKIE, Access
from agentqueue.models import FOREVER

HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"
"""Package data, found next to this module (an installed wheel unpacks it there too)."""

# Every script and style is a static file of the app: the policy refuses inline code, so an
# injected string can never run, and nothing is loaded from another origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def when(value: datetime | None) -> str:
    """A time as the dashboard shows it (UTC, to the second); a dash for none or 'forever'."""
    if value is None or value >= FOREVER:
        return "—"
    # No-break spaces: a table column never wraps a time in the middle.
    return value.strftime("%Y-%m-%d\u00a0%H:%M:%S\u00a0UTC")


def pretty(value: Any) -> str:
    """JSON data, indented for a `<pre>` (autoescaping makes it safe to show)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def compact(value: Any) -> str:
    """JSON data on one line (an event's details)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt name fails a test instead of vanishing
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["pretty"] = pretty
    env.filters["compact"] = compact
    return env


templates = Jinja2Templates(env=_environment())


def base_path(request: Request) -> str:
    """The path the app is served under (behind a proxy's prefix), without a trailing slash."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def page(
    request: Request,
    name: str,
    access: Access | None,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render template `name` with what every page shows (who is signed in, the nav)."""
    values = {
        "access": access,
        "base": base_path(request),
        "version": __version__,
        "signed_in": COOKIE in request.cookies,
        "path": request.url.path,
        **context,
    }
    return templates.TemplateResponse(
        request, name, values, status_code=status_code, headers=SECURITY_HEADERS
    )
