"""Who used the CPU while a benchmark ran: the run's own process tree, kernel threads, others.

    python bench/cpu_sampler.py ROOT_PID OUT.json      # samples every 0.5 s until ROOT_PID exits

Started by bench/run_peers.sh next to the harness (ROOT_PID = the harness's run_all.sh). Reads
/proc/<pid>/stat (utime + stime) of every process at each sample and attributes the CPU used
between samples to: the harness tree (ROOT_PID and its descendants), kernel threads (children
of kthreadd, e.g. jbd2/kworker doing the run's fsyncs), and everything else (other people's
tests, editors, servers). Processes born and dead between two samples are missed (< 0.5 s).
Writes cores-used averages and the top other commands, so a run disturbed by someone else's
work can be recognised.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

HZ = os.sysconf("SC_CLK_TCK")


def snapshot() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, utime+stime ticks, comm)."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        out[int(name)] = (int(fields[1]), int(fields[11]) + int(fields[12]), comm)
    return out


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return raw.replace(b"\0", b" ").decode(errors="replace")[:120].strip()
    except OSError:
        return ""


def main() -> None:
    root, out_path = int(sys.argv[1]), sys.argv[2]
    me = os.getpid()
    t0 = time.time()
    prev = snapshot()
    used = {"harness": 0, "kernel": 0, "other": 0}
    by_other: dict[str, int] = {}
    names: dict[int, str] = {}
    tree = {root}
    while True:
        time.sleep(0.5)
        cur = snapshot()
        for pid, (ppid, _t, _c) in cur.items():
            if ppid in tree:
                tree.add(pid)
        for pid, (ppid, ticks, comm) in cur.items():
            # a process born since the last sample used all its ticks in this interval
            delta = ticks - prev[pid][1] if pid in prev else ticks
            if delta <= 0 or pid == me:
                continue
            if pid in tree:
                used["harness"] += delta
            elif ppid == 2 or pid == 2:
                used["kernel"] += delta
            else:
                used["other"] += delta
                key = names.setdefault(pid, cmdline(pid) or comm)
                by_other[key] = by_other.get(key, 0) + delta
        prev = cur
        if root not in cur:
            break
    wall = time.time() - t0
    result = {
        "wall_s": round(wall, 1),
        "cores_harness": round(used["harness"] / HZ / wall, 2),
        "cores_kernel_threads": round(used["kernel"] / HZ / wall, 2),
        "cores_other_processes": round(used["other"] / HZ / wall, 2),
        "top_other": [
            {"cmd": k, "cpu_s": round(v / HZ, 1)}
            for k, v in sorted(by_other.items(), key=lambda kv: -kv[1])[:5]
            if v >= HZ // 10
        ],
    }
    Path(out_path).write_text(json.dumps(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
