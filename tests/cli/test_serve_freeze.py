"""`agentqueue serve` moves its start-up objects out of the collector's way once serving."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from agentqueue.cli.serve import _freeze_when_started  # pyright: ignore[reportPrivateUsage]


@dataclass
class Starting:
    """What `_freeze_when_started` reads of a `uvicorn.Server`."""

    started: bool = False
    should_exit: bool = False


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Leave the test process's collector as it found it."""
    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("unfrozen")
async def test_objects_are_frozen_once_the_server_has_started() -> None:
    server = Starting()
    freezing = asyncio.create_task(_freeze_when_started(server))
    await asyncio.sleep(0.15)
    assert gc.get_freeze_count() == 0  # not before start-up is done
    server.started = True
    await asyncio.wait_for(freezing, 5)
    assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("unfrozen")
async def test_a_server_that_stops_before_starting_freezes_nothing() -> None:
    server = Starting(should_exit=True)
    await asyncio.wait_for(_freeze_when_started(server), 5)
    assert gc.get_freeze_count() == 0
