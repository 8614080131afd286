"""Private database servers and a TCP proxy for the reliability tests that stop, kill or fill one.

Tests that restart, kill or fill a database never touch the machine's shared PostgreSQL and
Redis: they start their own here and stop them by pid.

- `PrivatePostgres`: a cluster `initdb`-ed into a temp dir (run as the `postgres` user when the
  tests run as root, which `initdb` refuses), listening on a free loopback port; `restart("fast")`
  and `restart("immediate")` (crash recovery) go through `pg_ctl`; `start_refusing_sessions()`
  makes it answer 57P03 (as while starting up) until `promote()`.
- `PrivateRedis`: `redis-server` on a free port with AOF on (`appendfsync always`) and
  `noeviction`; `kill()` is SIGKILL, `start()` brings it back on the same port and dir.
- `small_disk(mb)`: a tmpfs that fills up for real (`resize` gives the space back).
- `TcpProxy`: an asyncio loopback proxy (in a thread of its own, so a test's blocking calls don't
  stall it) whose `drop(seconds)` closes every connection and refuses new ones for a while.

Shared with the other reliability tests (the races helper imports it): keep the API stable.
Each class is a context manager that stops what it started, and `private_postgres()` /
`private_redis()` skip the test when the binaries are missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import math
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from tests.conftest import require


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> float:
    """Wait until something accepts connections on `port`; return the seconds it took."""
    started = time.monotonic()
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return time.monotonic() - started
        except OSError:
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"nothing listens on port {port} after {timeout} s") from None
            time.sleep(0.02)


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


class PrivatePostgres:
    """A throwaway PostgreSQL cluster of one test (or module), on a free port."""

    def __init__(self, bindir: Path, *, data_in: Path | None = None) -> None:
        """`data_in`: put the data directory there (a `SmallDisk`), the WAL stays in a temp
        dir: a full disk then fails writes to tables (53100), not the WAL (a PANIC)."""
        self.bindir = bindir
        # Not under pytest's tmp_path: that is private to root, and the server runs as postgres.
        self.root = Path(tempfile.mkdtemp(prefix="aq-pg-"))
        self.data = (data_in or self.root) / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
            if data_in is not None:
                shutil.chown(data_in, "postgres", "postgres")
        where = ["-D", str(self.data), "--waldir", str(self.root / "wal")]
        self._run("initdb", *where, "-U", "postgres", "-A", "trust", "--no-sync")

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stdout}{done.stderr}")
        return done

    @property
    def url(self) -> str:
        """The URL of the cluster's `postgres` database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url_via(self, port: int) -> str:
        """The same database reached through another port (a `TcpProxy`)."""
        return f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _options(self) -> str:
        return (
            # fsync off is safe against a crash of the server process (the OS keeps what was
            # written), which is all `-m immediate` does; synchronous_commit stays on, or an
            # acknowledged commit could be lost in that crash.
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
            "-c full_page_writes=off -c max_connections=200"
        )

    def start(self) -> float:
        """Start the server and wait until it accepts connections; return the seconds taken."""
        started = time.monotonic()
        options = self._options()
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        return time.monotonic() - started

    def start_refusing_sessions(self) -> None:
        """Start the server as a standby with hot standby off (stopping it first if it runs):
        it listens but refuses every session with 57P03, as a server still starting up does,
        until `promote()`."""
        if self.pid() is not None:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        signal_file = self.data / "standby.signal"
        signal_file.touch()
        if self._as_postgres:
            shutil.chown(signal_file, "postgres", "postgres")
        options = self._options() + " -c hot_standby=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-W", "start")
        wait_for_port(self.port)

    def promote(self) -> None:
        """End the standby mode of `start_refusing_sessions`: the server accepts sessions."""
        self._run("pg_ctl", "-D", str(self.data), "-w", "promote")

    def restart(self, mode: Literal["fast", "immediate"]) -> float:
        """`pg_ctl restart -m mode` (immediate = crash recovery); return the outage in seconds."""
        started = time.monotonic()
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
        self.start()
        return time.monotonic() - started

    def pid(self) -> int | None:
        """The postmaster's pid, None when it is not running."""
        pidfile = self.data / "postmaster.pid"
        try:
            return int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """Stop the server (immediately, by its pid) and delete its files."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)  # the postmaster's "immediate shutdown"
            deadline = time.monotonic() + 10
            while self.pid() is not None and _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def private_postgres(*, data_in: Path | None = None) -> Iterator[PrivatePostgres]:
    """A started private cluster, stopped afterwards; skips when PostgreSQL isn't installed.
    `data_in`: see `PrivatePostgres`."""
    bindir = _pg_bin()
    require(
        bindir is not None, "PostgreSQL server binaries not installed (/usr/lib/postgresql/*/bin)"
    )
    assert bindir is not None
    with PrivatePostgres(bindir, data_in=data_in) as server:
        yield server


class SmallDisk:
    """A tmpfs of a few MB: a real file system that runs out of space (needs root)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def resize(self, megabytes: int) -> None:
        """Grow (or shrink) the file system: a full disk gets its space back."""
        subprocess.run(
            ["mount", "-o", f"remount,size={megabytes}m", str(self.path)],
            check=True,
            capture_output=True,
            timeout=30,
        )

    def leave_free(self, megabytes: int) -> None:
        """Shrink the file system to what is used now plus `megabytes`: a test that needs room
        to set up (a server's files vary by a few MB from run to run) fills up after a known
        amount."""
        used = shutil.disk_usage(self.path).used
        self.resize(math.ceil(used / 2**20) + megabytes)


@contextlib.contextmanager
def small_disk(megabytes: int) -> Iterator[SmallDisk]:
    """A `SmallDisk` mounted for the test and unmounted after; skips where mounting is not
    allowed (not root, or a container without the capability), except in CI."""
    path = Path(tempfile.mkdtemp(prefix="aq-disk-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    try:
        require(mounted.returncode == 0, f"cannot mount a tmpfs: {mounted.stderr.strip()}")
        try:
            yield SmallDisk(path)
        finally:
            subprocess.run(
                ["umount", "-l", str(path)], capture_output=True, timeout=30, check=False
            )
    finally:
        shutil.rmtree(path, ignore_errors=True)


class PrivateRedis:
    """A throwaway `redis-server` with AOF (`appendfsync always`) and `noeviction`."""

    def __init__(self, binary: str, *extra: str) -> None:
        self.binary = binary
        self.extra = extra
        self.root = Path(tempfile.mkdtemp(prefix="aq-redis-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def url_via(self, port: int) -> str:
        """The same database reached through another port (a `TcpProxy`)."""
        return f"redis://127.0.0.1:{port}/0"

    def start(self) -> float:
        """Start (or restart, same port and dir) and wait for connections; return the seconds."""
        started = time.monotonic()
        with (self.root / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.root),
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                    "--save",
                    "",
                    "--maxmemory-policy",
                    "noeviction",
                    *self.extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port)
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL the server (its AOF stays on disk for the next `start`)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        """Kill the server and delete its files."""
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def private_redis(*extra: str) -> Iterator[PrivateRedis]:
    """A started private Redis (extra server arguments appended), killed afterwards; skips when
    `redis-server` isn't installed."""
    binary = shutil.which("redis-server")
    require(binary is not None, "redis-server not installed")
    assert binary is not None
    with PrivateRedis(binary, *extra) as server:
        yield server


class TcpProxy:
    """A loopback TCP proxy to `target_port` that can drop every connection on demand."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.connections = 0
        """How many client connections it has accepted (refused ones included)."""
        self._refuse_until = 0.0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="tcp-proxy", daemon=True)
        self._server: asyncio.Server | None = None

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def listen() -> None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
            self._ready.set()

        self._loop.run_until_complete(listen())
        self._loop.run_forever()
        self._loop.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if time.monotonic() < self._refuse_until:
            writer.close()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
        except OSError:
            writer.close()
            return
        self._writers.update((writer, upstream_writer))
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
        )

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while chunk := await source.read(65536):
                sink.write(chunk)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(sink)
            sink.close()

    def drop(self, seconds: float) -> None:
        """Close every open connection now and refuse new ones for `seconds`."""

        def cut() -> None:
            self._refuse_until = time.monotonic() + seconds
            for writer in list(self._writers):
                # abort, not close: the peers see a reset at once, as when a link dies.
                writer.transport.abort()
            self._writers.clear()

        done = threading.Event()
        self._loop.call_soon_threadsafe(lambda: (cut(), done.set()))
        done.wait(5)

    def __enter__(self) -> Self:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        def shut() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            self._loop.stop()

        self._loop.call_soon_threadsafe(shut)
        self._thread.join(10)
