"""A worker's presence in the store: who runs, where, serving what, seen when.

The dashboard, `/metrics` (live workers) and `explain_job` ("no live worker serves this
type") read it. A beat every `config.WORKER_BEAT_SECONDS`; a clean stop removes the worker; a
crashed one ages out (not alive after `WORKER_ALIVE_SECONDS`, deleted by the supervisor after a
day).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime

from agentqueue import config
from agentqueue.backends.base import Backend
from agentqueue.errors import AgentQueueError
from agentqueue.models import WorkerInfo

logger = logging.getLogger(__name__)


class Presence:
    """Beats one worker's `WorkerInfo` into the store until stopped."""

    def __init__(
        self,
        store: Backend,
        info: WorkerInfo,
        running: Callable[[], int],
        *,
        interval: float = config.WORKER_BEAT_SECONDS,
    ) -> None:
        self.store = store
        self.info = info
        self.running = running
        self.interval = interval

    @classmethod
    def of(
        cls,
        store: Backend,
        worker_id: str,
        *,
        queues: list[str],
        job_types: list[str],
        concurrency: int,
        running: Callable[[], int],
    ) -> Presence:
        """The presence of a worker of this process."""
        now = datetime.now(UTC)
        info = WorkerInfo(
            id=worker_id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            queues=queues,
            job_types=job_types,
            concurrency=concurrency,
            started_at=now,
            last_seen_at=now,
        )
        return cls(store, info, running)

    async def run(self, stop: asyncio.Event) -> None:
        """Beat until `stop` is set, then remove the worker from the store."""
        try:
            while not stop.is_set():
                await self._beat()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval):
                        await stop.wait()
        finally:
            with contextlib.suppress(AgentQueueError):
                await self.store.remove_worker(self.info.id)

    async def _beat(self) -> None:
        info = self.info.model_copy(update={"running": self.running()})
        try:
            await self.store.beat_worker(info)
        except AgentQueueError as error:  # presence is advisory: never stop the worker for it
            logger.warning("worker presence beat failed: %s", error)
