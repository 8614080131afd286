"""The dashboard: server-rendered pages over the same `Queue` the REST API calls, kept live by
the API's SSE streams, plus `agentqueue.js`, a small browser client for any web app.

`mount(app)` adds the pages (`/`, `/jobs/{id}`, `/tokens`, `/cron`, `/workers`), the sign-in
(`/login`, `/logout`) and the static files (`/static/...`). Nothing is built or fetched from
elsewhere: the templates and static files ship inside the package.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from agentqueue.api.dashboard import pages, signin
from agentqueue.api.dashboard.render import STATIC_DIR


def mount(app: FastAPI) -> None:
    """Add the dashboard's pages, sign-in and static files to `app` (built by `create_app`)."""
    app.include_router(pages.router)
    app.include_router(signin.router)
    app.add_exception_handler(signin.SignInNeeded, signin.to_sign_in)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
