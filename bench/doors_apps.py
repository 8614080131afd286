"""The two servers bench/doors.py compares, each run under uvicorn in a process of its own.

    python bench/doors_apps.py agentqueue --url sqlite:///tmp/q.db --port 8001
    python bench/doors_apps.py bare --template added.json --port 8002

* `agentqueue`: what `agentqueue serve --no-worker` serves (`create_app(Queue(url))` with the
  default settings: REST, dashboard, metrics, MCP at /mcp), without the demo job types.
* `bare`: a FastAPI app with one `POST /api/v1/jobs` route that validates a body of the same
  shape with pydantic and answers 201 with a copy of a real agentqueue answer (the template),
  its ids counted up. It is the floor: the framework and the server, no store.

Both run under the same uvicorn settings (loopback, no access log, h11 and asyncio as
installed) and the way `agentqueue serve` runs uvicorn (`agentqueue.cli.serve.run_uvicorn`,
when the agentqueue sources measured have it: an older `--baseline-src` runs plain
`uvicorn.run`), so the ratio of their rates is what agentqueue's request path costs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from agentqueue import Queue
from agentqueue.api import ApiSettings, create_app
from agentqueue.cli import serve as serve_cli
from agentqueue.models import JOB_TYPE_PATTERN

PATH = "/api/v1/jobs"


class BareJob(BaseModel):
    """The body the load generator sends, validated as agentqueue's `NewJob` would see it."""

    model_config = ConfigDict(extra="forbid")

    job_type: Annotated[str, Field(pattern=JOB_TYPE_PATTERN)]
    payload: Any = Field(default_factory=dict)


def bare_app(template: dict[str, Any]) -> FastAPI:
    """One route answering 201 with `template` (a real `AddedJob`), ids counted up."""
    app = FastAPI()
    ids = itertools.count(int(template["id"]) + 1)
    job_template = template["job"]

    @app.post(PATH, status_code=201)
    async def add_job(job: BareJob) -> JSONResponse:
        job_id = next(ids)
        # Shallow copies: the template is never changed, and copying costs next to nothing.
        answer = {**template, "id": job_id, "job": {**job_template, "id": job_id}}
        answer["job"]["payload"] = job.payload
        return JSONResponse(answer, status_code=201)

    return app


def agentqueue_app(url: str) -> FastAPI:
    """`agentqueue serve --no-worker` on `url`: the default settings, no worker."""
    return create_app(Queue(url), settings=ApiSettings())


def main() -> None:
    """Serve one of the two apps until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["agentqueue", "bare"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--url", help="the store (agentqueue)")
    parser.add_argument("--template", type=Path, help="a real POST answer, as JSON (bare)")
    args = parser.parse_args()
    if args.kind == "agentqueue":
        app = agentqueue_app(args.url)
    else:
        app = bare_app(json.loads(args.template.read_text()))
    # The MCP SDK configures a rich log handler on import; keep stderr plain and quiet.
    logging.basicConfig(level=logging.WARNING, force=True)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, lifespan="on"
    )
    run = getattr(serve_cli, "run_uvicorn", None)
    if run is None:
        uvicorn.Server(config).run()
    else:
        run(config)


if __name__ == "__main__":
    main()
