"""Reliability scenario 4: the database restarts (or the network drops) while 4 workers run.

Each fault hits a private server (tests/reliability/servers.py), never the machine's shared one:
PostgreSQL `pg_ctl restart -m fast` and `-m immediate` (crash recovery), Redis SIGKILL and a
restart on the same port and AOF dir, and a TCP proxy between the workers and the server that
drops every connection and refuses new ones for 5 s. Criteria: no worker exits, no job is lost
or completed twice, nothing is left processing, and once the database is back a job enqueued
on an idle queue is picked up by the wake-up path (PostgreSQL LISTEN, Redis blocking pop) well
inside the workers' poll interval (5 s here), so that path was re-established, not replaced by
polling (the good_job#303 failure).
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from agentqueue import BackendUnavailable, Queue
from tests.acceptance import ledger
from tests.acceptance.procs import Env, kill_all, statuses, until
from tests.conftest import fresh_name
from tests.reliability import figures
from tests.reliability.servers import (
    PrivatePostgres,
    PrivateRedis,
    TcpProxy,
    private_postgres,
    private_redis,
)

pytestmark = pytest.mark.slow

JOBS = 400
POLL = 5.0
"""The workers' poll interval: a pickup faster than this came through the wake-up path."""
OUTAGE = 5.0
"""How long the proxy refuses connections."""


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PrivatePostgres]:
    """One private cluster for the module's PostgreSQL faults (each test has its own schema)."""
    with private_postgres() as server:
        yield server


@pytest.fixture
def redis_server() -> Iterator[PrivateRedis]:
    """A private Redis per test (a SIGKILL must not hit another test's data)."""
    with private_redis() as server:
        yield server


class Fault:
    """A store URL for the workers, one for the test, and the fault to inject."""

    def __init__(self, worker_url: str, test_url: str, inject: Callable[[], float]) -> None:
        self.worker_url = worker_url
        self.test_url = test_url
        self.inject = inject
        """Break the connection to the database; return the seconds until it was back."""


def _drop(proxy: TcpProxy) -> Callable[[], float]:
    def inject() -> float:
        proxy.drop(OUTAGE)
        # The outage itself (the proxy refuses connections meanwhile), not a wait for a
        # condition: the database is "back" when the proxy lets connections through again.
        time.sleep(OUTAGE)
        return OUTAGE

    return inject


@pytest.fixture(
    params=[
        "postgres-fast",
        "postgres-proxy",
        "redis-kill",
        # The per-push tier keeps one restart per store plus the proxy (the plan's budget).
        pytest.param("postgres-immediate", marks=pytest.mark.soak),
        pytest.param("redis-proxy", marks=pytest.mark.soak),
    ]
)
def fault(request: pytest.FixtureRequest) -> Iterator[Fault]:
    """The store and fault of one run."""
    kind: str = request.param
    with ExitStack() as stack:
        if kind.startswith("postgres"):
            pg: PrivatePostgres = request.getfixturevalue("postgres_server")
            query = f"?schema={fresh_name('aqr_')}"
            direct = pg.url + query
            if kind == "postgres-proxy":
                proxy = stack.enter_context(TcpProxy(pg.port))
                yield Fault(pg.url_via(proxy.port) + query, direct, _drop(proxy))
            else:
                mode = "fast" if kind == "postgres-fast" else "immediate"
                yield Fault(direct, direct, lambda: pg.restart(mode))
        else:
            server: PrivateRedis = request.getfixturevalue("redis_server")
            query = f"?prefix={fresh_name('aqr')}"
            direct = server.url + query
            if kind == "redis-proxy":
                proxy = stack.enter_context(TcpProxy(server.port))
                yield Fault(server.url_via(proxy.port) + query, direct, _drop(proxy))
            else:

                def kill_and_restart() -> float:
                    started = time.monotonic()
                    server.kill()
                    server.start()
                    return time.monotonic() - started

                yield Fault(direct, direct, kill_and_restart)


@pytest.fixture
async def fault_env(fault: Fault, tmp_path: Path) -> AsyncIterator[Env]:
    """The workers' environment on the faulty store (migrated first); workers killed after."""
    ledger_path = tmp_path / "ledger.db"
    ledger.create(str(ledger_path))
    async with Queue(fault.test_url):
        pass  # migrate before any worker starts
    setup = Env(fault.worker_url, str(ledger_path), tmp_path, [])
    try:
        yield setup
    finally:
        kill_all(setup.started)


async def _completed(queue: Queue) -> int:
    """Completed jobs, or -1 while the test's own connection is still down."""
    try:
        return (await statuses(queue))["completed"]
    except BackendUnavailable:
        return -1


async def test_workers_survive_a_database_restart_and_pick_up_new_work_at_once(
    fault: Fault, fault_env: Env, request: pytest.FixtureRequest
) -> None:
    env = fault_env
    kind = request.node.callspec.params["fault"]
    # A lease longer than the proxy's outage: no lease may expire just because the network
    # was down, so any duplicate effect would be a bug.
    lease = 2.0 if not kind.endswith("proxy") else 3 * OUTAGE
    args = ("--concurrency", "4", "--lease", str(lease), "--poll-interval", str(POLL))
    workers = [env.start(*args) for _ in range(4)]
    await until("4 workers ready", lambda: len(env.rows("ready")) == 4, timeout=30, workers=workers)
    async with Queue(fault.test_url) as queue:
        await queue.add_jobs(
            [{"job_type": "work", "payload": {"sleep_ms": 50}} for _ in range(JOBS)]
        )
        await until(
            "a quarter of the jobs done",
            lambda: len(env.rows("done")) >= JOBS // 4,
            timeout=30,
            workers=workers,
        )
    outage = fault.inject()
    back_at = time.time()

    # A fresh connection of the test's own: the old one died with the server.
    async with Queue(fault.test_url) as queue:

        async def all_done() -> bool:
            return await _completed(queue) == JOBS

        await until("every job completed", all_done, timeout=60, workers=workers)
        resumed = min((r.at for r in env.rows("done") if r.at >= back_at), default=None)

        pickups: list[float] = []
        for _ in range(3):
            before = len(env.rows("start"))
            enqueued = time.time()
            await queue.add_jobs([{"job_type": "work", "payload": {}}])
            await until(
                "the new job started",
                lambda before=before: len(env.rows("start")) > before,
                timeout=2 * POLL,
                workers=workers,
            )
            pickups.append(env.rows("start")[-1].at - enqueued)

        async def pickups_done() -> bool:
            return await _completed(queue) == JOBS + len(pickups)

        await until("the new jobs completed", pickups_done, timeout=10, workers=workers)
        totals = await statuses(queue)

    alive = [w for w in workers if w.process.poll() is None]
    for worker in workers:
        worker.process.terminate()
    codes = [worker.wait_exit(15) for worker in workers]
    done = Counter(r.job_id for r in env.rows("done"))
    row = figures.record(
        "4-db-restart",
        "postgres" if kind.startswith("postgres") else "redis",
        fault=kind,
        jobs=JOBS,
        outage_s=round(outage, 2),
        resume_after_db_ready_s=round(resumed - back_at, 2) if resumed else None,
        worker_exits=len(workers) - len(alive),
        lost=JOBS + 3 - totals["completed"],
        dup_effects=sum(1 for count in done.values() if count > 1),
        stuck=totals["processing"],
        pickup_after_recovery_s=[round(p, 3) for p in pickups],
        pickup_median_s=round(statistics.median(pickups), 3),
    )
    assert row["worker_exits"] == 0
    assert codes == [0, 0, 0, 0], [w.output() for w in workers]
    assert row["lost"] == 0
    assert row["stuck"] == 0
    assert row["dup_effects"] == 0
    assert max(pickups) < POLL / 5, f"pickups {pickups}: the wake-up path is not back"
