"""Summarise a py-spy raw (collapsed-stack) profile recorded with --threads [--idle].

    .venv/bin/python bench/pyspy_summary.py PROFILE.txt [--top 25] [--incl name,name,...]
        [--process TEXT] [--exclude TEXT]   # keep / drop stacks of processes whose command has TEXT

Prints, per thread group (threads named the same after stripping the pid/number), the number of
samples, the top "self" frames (leaf function, file:line stripped to the function) and the
inclusive share of a few key frames (default: the ones that matter for agentqueue's hot paths).
Samples are wall-clock when recorded with --idle (a thread blocked in fsync or select counts).
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

DEFAULT_INCL = [
    # event-loop side
    "Queue.add_job ",
    "Queue.add_jobs ",
    "Queue._resolve ",
    "NewJob",
    "model_validate",
    "HandlerSpec.parse",
    "SqliteBackend._write ",
    "SqliteBackend._read ",
    "BaseEventLoop.run_in_executor",
    "BaseSelectorEventLoop.select",
    "EpollSelector.select",
    "Worker._claim_all",
    "Worker._idle",
    "Worker._start",
    "Worker._finished",
    "AckBatcher._write",
    "execute (agentqueue/worker/executor.py",
    "job_from_row",
    "SqliteBackend.change_token",
    "ChangeSignal.notify",
    # writer / reader threads
    "SqliteBackend._run_write",
    "SqliteBackend._run ",
    "produce.py",
    "insert (",
    "claim (",
    "finish (",
    "apply_outcomes",
    "insert_events",
    "Connection.execute ",
    "SQLCompiler.__init__",
    "Compiled.__init__",
    "_compile_w_cache",
    "DefaultExecutionContext._init_compiled",
    "do_execute ",
    "do_executemany",
    "do_commit",
    "Connection.commit",
    "_begin_impl",
    "_on_begin",
    "process_bind_param",
    "_json_serializer",
    "dumps (json",
    "Future.set_result",
    "call_soon_threadsafe",
    "_worker (concurrent/futures/thread.py",
    "SimpleQueue.get",
    "_WorkItem.run",
    # watcher
    "SqliteBackend._watch",
]

FRAME_RE = re.compile(r"^(?P<fn>.*?) \((?P<file>[^():]*)(?::(?P<line>\d+))?\)$")


def short(frame: str) -> str:
    m = FRAME_RE.match(frame)
    if not m:
        return frame
    file = m.group("file")
    for marker in ("site-packages/", "python3.11/", "agentqueue-src-"):
        if marker in file:
            file = file.split(marker, 1)[1]
    if (
        file.startswith(
            ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c", "d", "e", "f")
        )
        and "/" in file
    ):
        file = file.split("/", 1)[1]  # snapshot dir hash
    return f"{m.group('fn')} ({file})"


def thread_group(root: str) -> str:
    # "thread (12345): agentqueue-sqlite-writer_0" / "thread (123)" / "process 123:..."
    name = root.split(":", 1)[1].strip() if ":" in root else "main"
    return re.sub(r"_\d+$", "", name) or "main"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("profile")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--incl", default=None, help="comma-separated frame substrings")
    ap.add_argument("--process", default=None, help="only stacks whose root mentions this")
    ap.add_argument("--exclude", default=None, help="drop stacks whose roots mention this")
    a = ap.parse_args()
    incl = a.incl.split(",") if a.incl else DEFAULT_INCL

    per_group: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    incl_count: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    totals: collections.Counter[str] = collections.Counter()
    for line in Path(a.profile).read_text().splitlines():
        if not line:
            continue
        stack, _, count_s = line.rpartition(" ")
        count = int(count_s)
        frames = stack.split(";")
        roots = [f for f in frames if f.startswith(("thread (", "process "))]
        if a.process and not any(a.process in r for r in roots):
            continue
        if a.exclude and any(a.exclude in r for r in roots):
            continue
        thread_root = next((f for f in frames if f.startswith("thread (")), "main")
        group = thread_group(thread_root)
        body = [f for f in frames if not f.startswith(("thread (", "process "))]
        totals[group] += count
        leaf = short(body[-1]) if body else "(no python frame)"
        per_group[group][leaf] += count
        seen = set()
        for f in body:
            for key in incl:
                if key in f and key not in seen:
                    seen.add(key)
                    incl_count[group][key] += count
    grand = sum(totals.values())
    for group, n in totals.most_common():
        print(f"\n## thread group {group!r}: {n} samples ({100 * n / grand:.1f} % of all)")
        print("\n  top self frames (share of this thread group):")
        for frame, c in per_group[group].most_common(a.top):
            print(f"  {100 * c / n:6.1f} %  {c:6d}  {frame}")
        print("\n  inclusive (share of this thread group):")
        for key in incl:
            c = incl_count[group].get(key, 0)
            if c:
                print(f"  {100 * c / n:6.1f} %  {c:6d}  {key}")


if __name__ == "__main__":
    main()
