"""Block until a file in a directory is written: Linux inotify through ctypes, or nothing.

The SQLite store learns of another process's commit from `PRAGMA data_version`, which it must
poll. Polling every 2 ms costs an idle worker ~500 queries a second and still adds a 1 ms wait
on average to every job it picks up. A commit in WAL mode is a `write()` to the `-wal` file (in
rollback-journal mode, to the database file), which inotify reports to a blocked reader at
once: the watcher sleeps on it and checks `data_version` only when something was written.

inotify has no Python binding in the standard library; the four libc calls it needs are
declared here. Where it is missing (macOS, Windows, a seccomp profile that refuses it) `open`
returns None and the store polls as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import select
import struct
import sys
import threading
from collections.abc import Iterable

# <sys/inotify.h>
_IN_MODIFY = 0x00000002
_IN_CLOSE_WRITE = 0x00000008
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_Q_OVERFLOW = 0x00004000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_MASK = _IN_MODIFY | _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then `len` bytes of name)


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    except (OSError, AttributeError):
        return None
    return libc


class FileWatch:
    """An inotify watch on one directory that reports writes to a few of its files."""

    def __init__(self, fd: int, names: frozenset[bytes]) -> None:
        self._fd = fd
        self._names = names
        # `interrupt` writes to this pipe to end a blocked `wait` from another thread.
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)
        self._poll.register(self._wake_r, select.POLLIN)
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def open(cls, directory: str, names: Iterable[str]) -> FileWatch | None:
        """Watch `directory` for writes to the files `names`; None where inotify is missing."""
        libc = _libc()
        if libc is None:
            return None
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            return None
        if libc.inotify_add_watch(fd, os.fsencode(directory), _MASK) < 0:
            os.close(fd)
            return None
        return cls(fd, frozenset(os.fsencode(name) for name in names))

    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` seconds; True when one of the files was written meanwhile
        (or the kernel's queue overflowed, which may have hidden such a write)."""
        if not self._poll.poll(max(0, round(timeout * 1000))):
            return False
        with contextlib.suppress(OSError):  # empty: it was the inotify descriptor
            os.read(self._wake_r, 4096)
        return self.drain()

    def interrupt(self) -> None:
        """End a `wait` blocked in another thread (it returns what it has read)."""
        with self._lock:
            if not self._closed:
                with contextlib.suppress(OSError):
                    os.write(self._wake_w, b"x")

    def drain(self) -> bool:
        """Read every queued event without blocking; True when one concerns our files."""
        hit = False
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return hit
            except OSError as error:
                if error.errno == errno.EINTR:
                    continue
                return True  # cannot tell: let the caller look
            if not data:
                return hit
            hit = self._concerns_us(data) or hit

    def _concerns_us(self, data: bytes) -> bool:
        offset = 0
        while offset + _EVENT.size <= len(data):
            _wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            name = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
            offset += _EVENT.size + length
            if mask & _IN_Q_OVERFLOW or name in self._names:
                return True
        return False

    def close(self) -> None:
        """Release the descriptors (under the lock: a late `interrupt` must not write to a
        descriptor number the process has since reused)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for fd in (self._fd, self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
