"""`ChangeSignal`: wake every waiter when the store changed; safe to fire from other threads."""

from __future__ import annotations

import asyncio
import contextlib


class ChangeSignal:
    """A broadcast wake-up. `wait()` returns when `notify()` is called after the wait began.

    Each notify replaces the event, so a waiter is woken once per change it waited through and
    a notify with no waiter costs nothing.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.generation = 0
        """Counts notifications; a waiter that read it before checking for work passes it to
        `wait(since=...)` so a change between its check and its wait is never missed."""

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Remember the loop that waits, so other threads can notify it."""
        self._loop = loop

    def notify(self) -> None:
        """Wake every current waiter (call from the loop's thread)."""
        self.generation += 1
        event, self._event = self._event, asyncio.Event()
        event.set()

    def notify_threadsafe(self) -> None:
        """Wake every current waiter from any thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            # The loop may close between the check and the call.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.notify)

    async def wait(self, timeout: float, since: int | None = None) -> bool:
        """Return True when notified within `timeout` seconds (or since generation `since`)."""
        if since is not None and since != self.generation:
            return True
        event = self._event
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                await event.wait()
        except TimeoutError:
            return False
        return True
