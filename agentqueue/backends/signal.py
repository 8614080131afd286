"""Wake-up primitives: `ChangeSignal` (wake every waiter when the store changed; safe to fire
from other threads) and `Doorbell` (an `asyncio.Event` that also rings bells).

A *bell* is a plain future that several sources resolve, whichever comes first: a waiter that
awaits one bell resumes one event-loop turn after the first source fires. Waiting on several
events with `asyncio.wait` costs a task per event and several turns more (about 0.1 ms on a
small machine, measured on the path from a PostgreSQL NOTIFY to the worker's claim).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


def ring(bell: asyncio.Future[None]) -> None:
    """Resolve `bell` unless it already is (another source rang first, or it was cancelled)."""
    if not bell.done():
        bell.set_result(None)


def _keep() -> None:
    """Forget nothing: the bell was rung at once."""


class _Bells:
    """The bells hung on one source until it fires: rung all at once, each at most once."""

    def __init__(self) -> None:
        self._hung: set[asyncio.Future[None]] = set()

    def hang(self, bell: asyncio.Future[None], *, fired: bool) -> Callable[[], None]:
        """Ring `bell` at the next `ring_all` (at once when the source `fired` already);
        return what unhangs it."""
        if fired:
            ring(bell)
            return _keep
        self._hung.add(bell)
        return lambda: self._hung.discard(bell)

    def ring_all(self) -> None:
        """Ring every hung bell; later ones wait for the next time."""
        hung, self._hung = self._hung, set()
        for bell in hung:
            ring(bell)


class Doorbell(asyncio.Event):
    """An `asyncio.Event` whose `set()` also rings the bells hung on it (`ring_on_set`)."""

    def __init__(self) -> None:
        super().__init__()
        self._bells = _Bells()

    def set(self) -> None:
        """Set the event and ring every hung bell."""
        super().set()
        self._bells.ring_all()

    def ring_on_set(self, bell: asyncio.Future[None]) -> Callable[[], None]:
        """Ring `bell` when the event is set (at once if it is); return what unhangs it."""
        return self._bells.hang(bell, fired=self.is_set())


class ChangeSignal:
    """A broadcast wake-up. `wait()` returns when `notify()` is called after the wait began.

    Each notify replaces the event, so a waiter is woken once per change it waited through and
    a notify with no waiter costs nothing.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._bells = _Bells()
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
        self._bells.ring_all()

    def ring_on_change(self, bell: asyncio.Future[None], since: int) -> Callable[[], None]:
        """Ring `bell` at the next notify, or at once if one came after generation `since`;
        return what unhangs it (see `RingsOnChange.ring_on_change`)."""
        return self._bells.hang(bell, fired=since != self.generation)

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
