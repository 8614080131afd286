"""The SQLite store's wake-up on another connection's commit: inotify, and polling without it."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest

from agentqueue import Queue
from agentqueue.backends.sql import file_watch as file_watch_module
from agentqueue.backends.sql.file_watch import FileWatch
from agentqueue.backends.sql.sqlite import SqliteBackend
from tests.conftest import eventually

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")


@linux_only
def test_a_write_to_a_watched_file_is_reported_and_others_are_not(tmp_path: Path) -> None:
    watch = FileWatch.open(str(tmp_path), ["jobs.db-wal"])
    assert watch is not None
    try:
        (tmp_path / "other.txt").write_bytes(b"x")
        assert watch.wait(0.05) is False
        (tmp_path / "jobs.db-wal").write_bytes(b"frame")
        assert watch.wait(1.0) is True
        assert watch.drain() is False  # everything was read
    finally:
        watch.close()
        watch.close()  # twice is harmless


@linux_only
def test_interrupt_ends_a_blocked_wait(tmp_path: Path) -> None:
    watch = FileWatch.open(str(tmp_path), ["jobs.db"])
    assert watch is not None
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(watch.wait(30.0)))
    started = time.monotonic()
    waiter.start()
    time.sleep(0.05)
    watch.interrupt()
    waiter.join(5.0)
    watch.close()
    watch.interrupt()  # after close: ignored, never writes to a reused descriptor
    assert result == [False]
    assert time.monotonic() - started < 5.0


@contextlib.asynccontextmanager
async def _stores(path: Path) -> AsyncIterator[tuple[SqliteBackend, Queue]]:
    """A store that waits for changes and a second queue on the same file that writes."""
    watcher, writer = Queue(f"sqlite:///{path}"), Queue(f"sqlite:///{path}")
    await watcher.open()
    await writer.open()
    try:
        backend = watcher.backend
        assert isinstance(backend, SqliteBackend)
        yield backend, writer
    finally:
        await watcher.close()
        await writer.close()


async def _woken_by_other_commits(backend: SqliteBackend, writer: Queue, times: int) -> None:
    """Each of `times` adds through `writer` (another connection) wakes `backend`'s waiters."""
    for n in range(times):
        token = backend.change_token()
        waiting = asyncio.ensure_future(backend.wait_for_change(5.0, since=token))
        await asyncio.sleep(0.02)
        await writer.add_job("x", {"n": n})
        assert await waiting, f"commit {n} woke no one"


@linux_only
async def test_another_connections_commit_wakes_the_store_through_inotify(
    tmp_path: Path,
) -> None:
    async with _stores(tmp_path / "jobs.db") as (backend, writer):
        backend.change_token()  # starts the watcher
        await asyncio.sleep(0.05)
        assert backend._file_watch is not None  # pyright: ignore[reportPrivateUsage]
        await _woken_by_other_commits(backend, writer, 5)


async def test_without_inotify_the_store_polls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FileWatch, "open", classmethod(lambda cls, directory, names: None))
    async with _stores(tmp_path / "jobs.db") as (backend, writer):
        backend.change_token()
        await asyncio.sleep(0.05)
        assert backend._file_watch is None  # pyright: ignore[reportPrivateUsage]
        await _woken_by_other_commits(backend, writer, 3)


@linux_only
async def test_a_file_system_without_events_falls_back_to_polling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A watch on a directory nobody writes to: as on a mount that reports no other writes.
    silent = tmp_path / "silent"
    silent.mkdir()
    real_open = file_watch_module.FileWatch.open.__func__  # type: ignore[attr-defined]

    def open_silent(cls: type[FileWatch], directory: str, names: Iterable[str]) -> FileWatch:
        return real_open(cls, str(silent), names)

    monkeypatch.setattr(FileWatch, "open", classmethod(open_silent))
    async with _stores(tmp_path / "jobs.db") as (backend, writer):
        backend.change_token()
        await asyncio.sleep(0.05)
        assert backend._file_watch is not None  # pyright: ignore[reportPrivateUsage]
        await _woken_by_other_commits(backend, writer, 3)  # each seen by the safety check

        async def polling() -> bool:
            return backend._file_watch is None  # pyright: ignore[reportPrivateUsage]

        await eventually(polling)
        await _woken_by_other_commits(backend, writer, 2)  # now by polling


async def test_a_claim_after_another_connections_commit_goes_straight_to_the_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _stores(tmp_path / "jobs.db") as (backend, writer):
        reads: list[str] = []
        real_read = backend._read  # pyright: ignore[reportPrivateUsage]

        async def counted_read(work: Any) -> Any:
            reads.append(getattr(work, "__name__", "?"))
            return await real_read(work)

        monkeypatch.setattr(backend, "_read", counted_read)
        backend.change_token()
        # The watcher tells another connection's commit from this store's own only when it
        # sees them in separate looks; on a loaded machine one look may hold both, and the
        # claim then reads first (a wasted read, nothing worse). So: a few rounds, one of which
        # must skip the read; a store that never skips fails them all.
        skipped = 0
        for n in range(5):
            await asyncio.sleep(0.1)  # the watcher has seen our last write
            token = backend.change_token()
            waiting = asyncio.ensure_future(backend.wait_for_change(5.0, since=token))
            await asyncio.sleep(0.02)
            await writer.add_job("x", {"n": n})
            assert await waiting
            before = reads.count("probe")
            jobs = await backend.claim(
                worker_id="w", queue=None, job_types=None, limit=5, lease_seconds=30
            )
            assert len(jobs) == 1
            skipped += reads.count("probe") == before
        assert skipped >= 1
        # With nothing new since, a claim reads first (and finds nothing).
        before = reads.count("probe")
        jobs = await backend.claim(
            worker_id="w", queue=None, job_types=None, limit=5, lease_seconds=30
        )
        assert jobs == []
        assert reads.count("probe") == before + 1


async def test_claims_skip_the_read_only_while_that_finds_work(tmp_path: Path) -> None:
    # The policy alone, driven as the watcher would drive it (a count of other connections'
    # commits), so no timing is involved.
    async with _stores(tmp_path / "jobs.db") as (backend, _writer):
        policy = backend

        def foreign_commit() -> None:
            policy._foreign_commits += 1  # pyright: ignore[reportPrivateUsage]

        assert policy._probe_before_claim() is True  # pyright: ignore[reportPrivateUsage]
        foreign_commit()
        assert policy._probe_before_claim() is False  # pyright: ignore[reportPrivateUsage]
        assert policy._probe_before_claim() is True  # that commit was acted on already
        policy._claimed(probed=False, found=False)  # pyright: ignore[reportPrivateUsage]
        foreign_commit()
        assert policy._probe_before_claim() is True  # skipping found nothing: read first
        policy._claimed(probed=True, found=False)  # pyright: ignore[reportPrivateUsage]
        foreign_commit()
        assert policy._probe_before_claim() is True  # still nothing found
        policy._claimed(probed=True, found=True)  # pyright: ignore[reportPrivateUsage]
        foreign_commit()
        assert policy._probe_before_claim() is False  # work found again: skip again
