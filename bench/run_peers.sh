#!/usr/bin/env bash
# Run the peer benchmark harness with agentqueue's adapter (bench/peers/bench_agentqueue.py)
# in the same run as the peers, then copy the run's results (.jsonl) into bench/results/, next
# to <stamp>-agentqueue.load.json: the CPU other processes used meanwhile (cpu_sampler.py).
# Method, results and profiles: bench/README.md.
#
#   bench/run_peers.sh                                  # raw_sqlite, huey, agentqueue (~1-2 min)
#   AQB_PEERS="raw_sqlite huey saq bench_agentqueue" bench/run_peers.sh
#   AQB_N=5000 bench/run_peers.sh                       # any harness knob (AQB_*) passes through
#
# Env:
#   AQB_PEERS_DIR         the harness copy to run (default /work/peers-run); it must be writable
#                         and have its own .venv (see its README.md)
#   AQB_PEERS             peers to run (default: the raw limit and the fastest peers of each
#                         store, and agentqueue)
#   AQB_ADAPTER_BACKENDS  stores per adapter (default "bench_agentqueue.py:sqlite,postgres,redis")
#   AQB_WAIT_QUIET=SECS   first wait up to SECS for the machine to be quiet (< 0.3 busy cores over
#                         2 s, i.e. nobody else's tests running); default 0 = start at once
#   AQB_AQ_REF            measure this commit of agentqueue (e.g. HEAD, a hash) instead of the
#                         working tree: `git archive` of its agentqueue/ into a temp dir, put first
#                         on sys.path by the adapter, so edits made by others during the run do not
#                         leak into it. Default: the working tree as it is (the editable install).
# The harness checks that Postgres and Redis answer before it runs anything, even for a
# SQLite-only subset: start them with its servers.sh if needed (see bench/README.md).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PEERS_DIR=${AQB_PEERS_DIR:-/work/peers-run}

if [ ! -f "$PEERS_DIR/run_all.sh" ] || [ ! -x "$PEERS_DIR/.venv/bin/python" ]; then
  SHARED=/work/shared/bench/peers
  [ -d "$SHARED" ] || SHARED="$REPO/../shared/bench/peers"
  cat >&2 <<EOF
No usable peer harness at $PEERS_DIR (needs run_all.sh and .venv/bin/python).
Set it up once (see the harness's README.md), then point AQB_PEERS_DIR at it:

  cp -r $SHARED /tmp/peers-run          # the read-only original; copy it somewhere writable
  cd /tmp/peers-run
  python3.11 -m venv .venv && .venv/bin/pip install -r requirements-lock.txt
  eval "\$(./servers.sh start)"         # only if no Postgres/Redis runs (the harness checks both)
  AQB_PEERS_DIR=/tmp/peers-run $0
EOF
  exit 2
fi

PY=$REPO/.venv/bin/python
if [ ! -x "$PY" ]; then
  echo "agentqueue's venv is missing: $PY (create it and 'pip install -e .' in $REPO)" >&2
  exit 2
fi

if [ -n "${AQB_AQ_REF:-}" ]; then
  COMMIT=$(git -C "$REPO" rev-parse --verify "${AQB_AQ_REF}^{commit}")
  SNAP="${TMPDIR:-/tmp}/agentqueue-src-$COMMIT"
  if [ ! -f "$SNAP/agentqueue/__init__.py" ]; then
    rm -rf "$SNAP.tmp" && mkdir -p "$SNAP.tmp"
    git -C "$REPO" archive "$COMMIT" agentqueue | tar -x -C "$SNAP.tmp"
    rm -rf "$SNAP" && mv "$SNAP.tmp" "$SNAP"
  fi
  export AQB_AGENTQUEUE_SRC="$SNAP" AQB_AGENTQUEUE_COMMIT="$COMMIT"
  echo "measuring agentqueue at commit $COMMIT (snapshot $SNAP)" >&2
else
  echo "measuring agentqueue's working tree $REPO/agentqueue (git $(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" status --porcelain -- agentqueue | grep -q . && echo ' + local edits'))" >&2
fi

# CPU busy time of the whole machine (jiffies, 100/s), to report load from other processes.
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
if [ "${AQB_WAIT_QUIET:-0}" -gt 0 ]; then
  deadline=$(( $(date +%s) + AQB_WAIT_QUIET ))
  while :; do
    b0=$(busy); sleep 2; b1=$(busy)
    if [ $(( b1 - b0 )) -lt 60 ]; then break; fi   # < 0.3 cores over 2 s
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "machine still busy after ${AQB_WAIT_QUIET}s ($(( (b1 - b0) / 2 ))% of a core); starting anyway" >&2
      break
    fi
  done
fi

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT="$PEERS_DIR/results/$STAMP-agentqueue.jsonl"
mkdir -p "$PEERS_DIR/results" "$REPO/bench/results"

AQB_ADAPTERS="$REPO/bench/peers" \
AQB_ADAPTERS_PY="$PY" \
AQB_ADAPTER_BACKENDS="${AQB_ADAPTER_BACKENDS:-bench_agentqueue.py:sqlite,postgres,redis}" \
AQB_PEERS="${AQB_PEERS:-raw_sqlite huey raw_pg pgqueuer raw_redis taskiq saq bench_agentqueue}" \
AQB_OUT="$OUT" \
  "$PEERS_DIR/run_all.sh" &
HARNESS=$!
# Who else used the CPU meanwhile (other people's tests on this shared machine): see cpu_sampler.py
LOADF=$(mktemp)
"$PY" "$REPO/bench/cpu_sampler.py" "$HARNESS" "$LOADF" >/dev/null &
SAMPLER=$!
RC=0; wait "$HARNESS" || RC=$?
wait "$SAMPLER" || true
LOAD=$(cat "$LOADF" 2>/dev/null || echo '{}'); rm -f "$LOADF"
echo "CPU use during the run (cores of 2): $LOAD" >&2
[ "$RC" = 0 ] || echo "run_all.sh exited with $RC" >&2

if [ ! -s "$OUT" ]; then
  echo "no results written ($OUT)" >&2
  exit 1
fi
cp "$OUT" "$REPO/bench/results/"
echo "$LOAD" >"$REPO/bench/results/$(basename "$OUT" .jsonl).load.json"
echo "results: $REPO/bench/results/$(basename "$OUT")" >&2

# The orchestrator and each worker subprocess import agentqueue separately: if the source hash
# differs between them, the tree changed during the run and its agentqueue row is not one build.
"$PY" - "$OUT" <<'PYEOF'
import json, re, sys
bad = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    if not str(r.get("peer", "")).startswith("agentqueue") or "error" in r:
        continue
    m = re.search(r"src (\w+)", r.get("version", ""))
    src = m.group(1) if m else None
    for phase in ("drain", "latency"):
        w = (r.get(phase) or {}).get("src", "")
        if w and src not in w:
            bad += 1
            print(f"WARNING: {r['peer']}: {phase} worker imported other agentqueue sources "
                  f"({w}) than the enqueuer (src {src}): the tree changed during the run; "
                  "discard it or use AQB_AQ_REF", file=sys.stderr)
sys.exit(3 if bad else 0)
PYEOF
