"""`AckBatcher`: attempt outcomes written in batches, one store transaction per flush."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from agentqueue.backends.base import Backend, Outcome
from agentqueue.errors import AgentQueueError

logger = logging.getLogger(__name__)


class AckBatcher:
    """Collects outcomes and writes them together.

    A flush starts `delay` seconds after the first outcome of a batch arrives (or at once when
    `max_batch` are waiting), so jobs finishing together share one commit. A failed flush is
    retried with backoff until `give_up_after` seconds: an outcome is never dropped while its
    lease could still be valid; after that the supervisor's rescue takes the job back.
    """

    def __init__(
        self,
        backend: Backend,
        worker_id: str,
        *,
        now: Callable[[], datetime | None] = lambda: None,
        delay: float = 0.001,
        max_batch: int = 200,
        give_up_after: float = 30.0,
    ) -> None:
        self._backend = backend
        self._worker_id = worker_id
        self._now = now
        self._delay = delay
        self._max_batch = max_batch
        self._give_up_after = give_up_after
        self._buffer: list[tuple[Outcome, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()

    def submit(self, outcome: Outcome) -> asyncio.Future[bool]:
        """Queue an outcome; the future says whether it was applied (False: lease lost)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._buffer.append((outcome, future))
        if len(self._buffer) >= self._max_batch:
            self._kick.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon(), name="agentqueue-acks")
        return future

    async def _flush_soon(self) -> None:
        while self._buffer:
            if len(self._buffer) < self._max_batch:
                try:
                    async with asyncio.timeout(self._delay):
                        await self._kick.wait()
                except TimeoutError:
                    pass
            self._kick.clear()
            batch = self.take()
            if batch:  # a claim may have taken the buffer along (`take`) while this waited
                await self._write(batch)

    def take(self) -> list[tuple[Outcome, asyncio.Future[bool]]]:
        """Hand the outcomes not yet being written to a caller that writes them itself (a
        claim in the same transaction, `FinishesWithClaim`); it must then call `settle` with
        the result, or `give_back` when its write failed."""
        batch, self._buffer = self._buffer[: self._max_batch], self._buffer[self._max_batch :]
        return batch

    @staticmethod
    def settle(batch: list[tuple[Outcome, asyncio.Future[bool]]], lost: set[int]) -> None:
        """Resolve the futures of a taken batch that was written; `lost`: lost leases."""
        for outcome, future in batch:
            if not future.done():
                future.set_result(outcome.lease.job_id not in lost)

    def give_back(self, batch: list[tuple[Outcome, asyncio.Future[bool]]]) -> None:
        """Return a taken batch whose write failed: this batcher writes it (retrying) next."""
        self._buffer[:0] = batch
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon(), name="agentqueue-acks")

    async def _write(self, batch: list[tuple[Outcome, asyncio.Future[bool]]]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._give_up_after
        pause = 0.05
        while True:
            try:
                now = self._now()
                lost = await self._backend.finish(
                    worker_id=self._worker_id, outcomes=[o for o, _ in batch], now=now
                )
            except Exception as error:
                # A store's own error, or any other: an outcome dropped here would be lost
                # until its lease ran out and the job ran again, so every failure retries.
                # A store's errors read as sentences; any other names its type too.
                reason = str(error) if isinstance(error, AgentQueueError) else repr(error)
                if loop.time() >= deadline:
                    logger.error("giving up writing %d outcome(s): %s", len(batch), reason)
                    for _, future in batch:
                        if not future.done():
                            future.set_result(False)
                    return
                logger.warning("writing %d outcome(s) failed, retrying: %s", len(batch), reason)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
                continue
            self.settle(batch, lost)
            return

    async def drain(self) -> None:
        """Write everything submitted so far."""
        while self._flusher is not None and not self._flusher.done():
            self._kick.set()
            await asyncio.shield(self._flusher)
