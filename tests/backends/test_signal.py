"""The wake-up primitives (`agentqueue.backends.signal`): bells rung by a change signal or a
doorbell, at once when the change already happened, never after they were forgotten."""

from __future__ import annotations

import asyncio

from agentqueue.backends.signal import ChangeSignal, Doorbell, ring


async def test_a_bell_rings_at_the_next_notify_and_resumes_its_waiter_one_turn_later() -> None:
    signal = ChangeSignal()
    bell: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    signal.ring_on_change(bell, signal.generation)
    assert not bell.done()
    signal.notify()
    assert bell.done()  # rung inside notify, no task in between
    await asyncio.wait_for(bell, 1)


async def test_a_bell_hung_after_a_change_it_missed_rings_at_once() -> None:
    signal = ChangeSignal()
    token = signal.generation
    signal.notify()  # between the token and the wait: must not be missed
    bell: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    signal.ring_on_change(bell, token)
    assert bell.done()


async def test_a_forgotten_bell_is_not_rung_and_later_notifies_do_not_keep_it() -> None:
    signal = ChangeSignal()
    loop = asyncio.get_running_loop()
    kept, forgotten = loop.create_future(), loop.create_future()
    signal.ring_on_change(kept, signal.generation)
    forget = signal.ring_on_change(forgotten, signal.generation)
    forget()
    signal.notify()
    assert kept.done()
    assert not forgotten.done()
    again: asyncio.Future[None] = loop.create_future()
    signal.ring_on_change(again, signal.generation)
    signal.notify()
    assert again.done()
    assert not forgotten.done()


async def test_one_bell_on_a_doorbell_and_a_signal_resumes_on_whichever_comes_first() -> None:
    signal, doorbell = ChangeSignal(), Doorbell()
    loop = asyncio.get_running_loop()
    bell: asyncio.Future[None] = loop.create_future()
    forget = [doorbell.ring_on_set(bell), signal.ring_on_change(bell, signal.generation)]
    doorbell.set()
    assert bell.done()
    for unhang in forget:
        unhang()
    signal.notify()  # rings nothing: the bell was forgotten (and is already resolved)
    assert bell.result() is None


async def test_a_doorbell_already_set_rings_at_once_and_clear_rearms_it() -> None:
    doorbell = Doorbell()
    loop = asyncio.get_running_loop()
    doorbell.set()
    first: asyncio.Future[None] = loop.create_future()
    doorbell.ring_on_set(first)
    assert first.done()
    doorbell.clear()
    second: asyncio.Future[None] = loop.create_future()
    doorbell.ring_on_set(second)
    assert not second.done()
    assert not doorbell.is_set()
    doorbell.set()
    assert second.done()


async def test_ring_leaves_a_cancelled_bell_alone() -> None:
    bell: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    bell.cancel()
    ring(bell)  # no InvalidStateError
    assert bell.cancelled()
