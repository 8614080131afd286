"""`agentqueue serve`: the REST API, the dashboard, metrics and a worker, in one process."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from typing import Annotated, Any

import typer

from agentqueue import logs
from agentqueue.cli.common import AppOption, UrlOption, make_queue
from agentqueue.cli.worker import LOG_LEVELS, LogFormatOption, configure_logging
from agentqueue.queue import Queue

logger = logging.getLogger(__name__)


def serve(
    host: Annotated[
        str,
        typer.Option(help="Address to bind. Not loopback: every route needs an API key."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = 8000,
    url: UrlOption = None,
    app_spec: AppOption = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Serve only; run workers elsewhere.")
    ] = False,
    concurrency: Annotated[int, typer.Option(help="Slots of the in-process worker.", min=1)] = 10,
    log_level: Annotated[
        str, typer.Option(help=f"One of {', '.join(LOG_LEVELS)} (uvicorn's too).")
    ] = "info",
    log_format: LogFormatOption = None,
) -> None:
    """Serve the REST API (/api/v1, /docs), the live dashboard (/) and /metrics, with a worker.

    Without --app the demo job types are loaded (and a first round of demo jobs is added to an
    empty store), so a newcomer sees jobs run, report progress, retry and wait for approval.

    Examples:

        agentqueue serve
        agentqueue serve --app myapp.jobs:queue --url postgresql://app@db/jobs --port 8000
        agentqueue serve --no-worker --log-format json
    """
    import uvicorn

    from agentqueue.api import ApiSettings, create_app

    demo = app_spec is None
    queue = _demo_queue(url) if demo else make_queue(url, app_spec)
    worker = None if no_worker else {"concurrency": concurrency}
    root = logging.getLogger()
    apps_own = list(root.handlers)  # an app that configured logging on import keeps its own
    app = create_app(
        queue, settings=ApiSettings(host=host), worker=worker, startup=_seed if demo else None
    )
    # The MCP SDK's server calls logging.basicConfig with a rich handler when it is built
    # (80-column wrapped lines, mangled in containers): that one is not the app's choice.
    for handler in list(root.handlers):
        if handler not in apps_own:
            root.removeHandler(handler)
    configure_logging(log_level, log_format)
    # queue.url never shows a password: Queue keeps the URL redacted for display.
    where = f"agentqueue serving {queue.url} on http://{_shown(host)}:{port}/"
    if logs.log_format(log_format) == "json":
        logger.warning("%s", where)  # JSON lines only on stderr
    else:
        typer.echo(where, err=True)
    # log_config=None: uvicorn's loggers propagate to the handler configured above (one
    # format, job fields, secrets masked) instead of getting handlers of their own.
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, log_config=None, lifespan="on"
    )
    run_uvicorn(config)


def run_uvicorn(config: Any) -> None:
    """Serve a `uvicorn.Config` the way `agentqueue serve` does, until SIGTERM / SIGINT
    (bench/doors.py runs its servers with this too)."""
    import uvicorn

    asyncio.run(_serve(uvicorn.Server(config)))


async def _serve(server: Any) -> None:
    """Run uvicorn until SIGTERM / SIGINT: the first drains (the in-process worker finishes its
    jobs), a second stops at once. uvicorn re-raises a signal it caught after its shutdown,
    which would end the process as killed; a clean stop should exit 0."""
    server.capture_signals = contextlib.nullcontext
    freezing = asyncio.create_task(_freeze_when_started(server), name="agentqueue-gc-freeze")
    loop = asyncio.get_running_loop()

    def stop() -> None:
        if server.should_exit:
            server.force_exit = True
        server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop)
    try:
        await server.serve()
    finally:
        freezing.cancel()


async def _freeze_when_started(server: Any) -> None:
    """Once the app has started (imports done, queue open), move every object alive to the
    collector's permanent generation. The app's own objects (FastAPI, pydantic, SQLAlchemy,
    the MCP SDK: about 160 000) never die, yet a full collection walked them all every few
    thousand requests, about 0.1 s of CPU each time (a p99 spike; some 3 % of a busy
    server's CPU)."""
    while not server.started:
        if server.should_exit:
            return
        await asyncio.sleep(0.05)
    gc.collect()
    gc.freeze()


def _demo_queue(url: str | None) -> Queue:
    from agentqueue import demo

    if url is not None:
        demo.queue.use_url(url)
    return demo.queue


async def _seed(queue: Queue) -> None:
    """One round of demo jobs when the store has none (a restart does not pile them up)."""
    from agentqueue import demo

    if not (await queue.list_jobs(limit=1)).items:
        await demo.enqueue_round(1, approval=True)


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host
