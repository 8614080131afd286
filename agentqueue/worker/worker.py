"""`Worker`: claims jobs into free slots, runs them, heartbeats leases, drains on shutdown.

One loop per worker: it claims up to the free slots of each lane (a named queue with its own
concurrency, or one lane for every queue) in one store call, then sleeps until a slot frees,
the store changes (an enqueue in any process), the next delayed job falls due, or a stop is
requested. Outcomes are written in batches (`AckBatcher`); leases are extended for all running
jobs in one call per heartbeat; expired leases of dead workers are rescued by every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentqueue import config, logs
from agentqueue.backends.base import (
    ClaimsAfterChange,
    FinishesWithClaim,
    KnowsWhatIsDue,
    Lease,
    Outcome,
    OutcomeKind,
    RingsOnChange,
)
from agentqueue.backends.signal import Doorbell, ring
from agentqueue.context import AttemptLink, JobContext
from agentqueue.errors import AgentQueueError, InvalidArgument
from agentqueue.models import Job
from agentqueue.worker.acks import AckBatcher
from agentqueue.worker.executor import HandlerThreads, Parked, Running, StopReason, execute
from agentqueue.worker.presence import Presence

if TYPE_CHECKING:
    from agentqueue.queue import Queue

logger = logging.getLogger(__name__)

PREFETCH_BELOW_SECONDS = 0.025
"""Claim ahead only while the average handler finishes within this time."""


def parse_queues(spec: str) -> dict[str, int]:
    """Parse `--queues ai:2,default:10` into {"ai": 2, "default": 10}.

    Raises:
        InvalidArgument: malformed entry or a concurrency below 1.
    """
    lanes: dict[str, int] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, _, size = part.partition(":")
        if not name or not size.strip().isdigit() or int(size) < 1:
            raise InvalidArgument(
                f"bad queue entry {part!r}: write name:concurrency, e.g. ai:2,default:10"
            )
        lanes[name.strip()] = int(size)
    if not lanes:
        raise InvalidArgument("--queues is empty: write name:concurrency, e.g. ai:2,default:10")
    return lanes


@dataclass(slots=True)
class Claimed:
    """A job claimed ahead, waiting in a lane's buffer for a free slot."""

    job: Job
    at: float
    """Event-loop time of the claim."""

    @property
    def lease(self) -> Lease:
        """The fence for this attempt's writes."""
        return Lease(self.job.id, self.job.attempts)


@dataclass(slots=True, eq=False)  # lanes are compared by identity
class Lane:
    """A set of slots: one named queue, or every queue when `queue` is None.

    `ready` holds jobs claimed ahead (at most `prefetch`): they start the moment a slot frees,
    without a round trip to the store.
    """

    queue: str | None
    limit: int
    prefetch: int = 0
    """Most jobs held in `ready`; claimed ahead only while jobs are short (see `ahead`)."""
    running: dict[int, Running] = field(default_factory=dict[int, Running])
    ready: deque[Claimed] = field(default_factory=deque[Claimed])
    run_time: float | None = None
    """Moving average of handler run time (seconds); None until a job has finished."""
    waiting: bool = False
    """In `Worker._claim_after_change`: its claim runs with the next change."""

    @property
    def free(self) -> int:
        """Slots not running a job."""
        return self.limit - len(self.running)

    @property
    def ahead(self) -> int:
        """How many jobs to hold claimed ahead now: `prefetch` while jobs are short, else 0.

        Holding long jobs would starve other workers (Celery's prefetch problem), so claiming
        ahead starts only once jobs are seen to finish quickly.
        """
        short = self.run_time is not None and self.run_time <= PREFETCH_BELOW_SECONDS
        return self.prefetch if short else 0

    @property
    def wanted(self) -> int:
        """Jobs to claim now: the free slots, plus room in the claim-ahead buffer."""
        return self.free + self.ahead - len(self.ready)

    def to_claim(self, *, while_busy: bool) -> int:
        """Jobs to claim now, 0 for none: `wanted` once a slot is free; with every slot busy,
        only `while_busy` and once half the buffer has room (a claim for each job that moved
        from the buffer to a slot would cost a store call per job)."""
        wanted = self.wanted
        if self.free > 0:
            return wanted
        if not while_busy or wanted < max(1, self.ahead // 2):
            return 0
        return wanted

    def ran(self, seconds: float) -> None:
        """Fold one handler's run time into the moving average."""
        self.run_time = seconds if self.run_time is None else 0.8 * self.run_time + 0.2 * seconds


class Worker:
    """Runs a queue's handlers.

    Args:
        queue: the queue (its handlers and store).
        concurrency: jobs run at once when `queues` is not given (one lane for every queue).
        queues: per-queue concurrency, e.g. {"ai": 2, "default": 10}; only these queues are served.
        job_types: claim only these job types (default: every type in the served queues; a
            job whose type has no handler here fails with reason `no_handler`).
        lease_seconds: how long a claim is valid without a heartbeat.
        heartbeat_interval: seconds between lease extensions (default min(lease/3, 2)); also how
            quickly a cancel request reaches a running handler.
        shutdown_timeout: seconds in-flight jobs get to finish after a stop request; the rest are
            released to pending without using an attempt.
        poll_interval: longest idle sleep when nothing signals (a safety net; enqueues wake the
            worker at once).
        rescue_interval: seconds between supervisor passes in this worker: rescue expired
            leases, resume due waits, expire tokens, and (each minute) delete finished jobs
            and events past retention (default AGENTQUEUE_MAINTENANCE_INTERVAL or 1 s).
        supervise: run those passes here (default). Turn it off only when an
            `agentqueue supervisor` runs elsewhere, or expired leases are never rescued.
        ack_delay: seconds outcomes wait to share one commit.
        prefetch: most jobs per lane claimed ahead of a free slot, so short jobs start without
            a round trip to the store (default: the lane's concurrency; 0 turns it off). Used
            only while handlers average under 25 ms; a job held longer than `prefetch_hold`
            seconds is released for other workers, its attempt given back.
        prefetch_hold: see `prefetch`.
        worker_id: name recorded in `locked_by` (default host:pid:random).
        handle_signals: stop on SIGTERM/SIGINT (a second signal stops at once).
        freeze_gc: while running, keep the objects alive at start (modules, the application's
            setup) out of the garbage collector's passes (`gc.freeze`, undone at stop): its
            full passes then look only at objects made since. A drain of no-op jobs spent
            about a third less time collecting. Skipped when something already froze objects.
    """

    def __init__(
        self,
        queue: Queue,
        *,
        concurrency: int | None = None,
        queues: dict[str, int] | None = None,
        job_types: list[str] | None = None,
        lease_seconds: float | None = None,
        heartbeat_interval: float | None = None,
        shutdown_timeout: float | None = None,
        poll_interval: float = 1.0,
        rescue_interval: float | None = None,
        supervise: bool = True,
        ack_delay: float = 0.001,
        prefetch: int | None = None,
        prefetch_hold: float = 1.0,
        worker_id: str | None = None,
        handle_signals: bool = True,
        freeze_gc: bool = True,
    ) -> None:
        concurrency = concurrency or config.env_int(
            "AGENTQUEUE_CONCURRENCY", config.DEFAULT_CONCURRENCY
        )
        self.lease_seconds = lease_seconds or config.env_float(
            "AGENTQUEUE_LEASE_SECONDS", config.DEFAULT_LEASE_SECONDS
        )
        self.heartbeat_interval = heartbeat_interval or min(self.lease_seconds / 3, 2.0)
        if self.heartbeat_interval >= self.lease_seconds:
            raise InvalidArgument("heartbeat_interval must be shorter than lease_seconds")
        if concurrency < 1:
            raise InvalidArgument(f"concurrency must be at least 1, not {concurrency}")
        self.shutdown_timeout = (
            shutdown_timeout
            if shutdown_timeout is not None
            else config.env_float("AGENTQUEUE_SHUTDOWN_TIMEOUT", config.DEFAULT_SHUTDOWN_TIMEOUT)
        )
        self.queue = queue
        if prefetch is not None and prefetch < 0:
            raise InvalidArgument(f"prefetch must be 0 or more, not {prefetch}")
        self.lanes = [
            Lane(name, size, prefetch=2 * size if prefetch is None else prefetch)
            for name, size in (queues.items() if queues else [(None, concurrency)])
        ]
        self.prefetch_hold = prefetch_hold
        self.job_types = list(job_types) if job_types else None
        self.poll_interval = poll_interval
        self.rescue_interval = rescue_interval or config.env_float(
            "AGENTQUEUE_MAINTENANCE_INTERVAL", config.DEFAULT_MAINTENANCE_INTERVAL
        )
        self.supervise = supervise
        self.ack_delay = ack_delay
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.handle_signals = handle_signals
        self.freeze_gc = freeze_gc
        self.counts: Counter[str] = Counter()
        """Outcomes applied by this worker, by kind (complete, retry, fail, release, cancel)."""
        self._running: dict[int, Running] = {}
        self._stopping = asyncio.Event()
        self._force = asyncio.Event()
        self._wake = Doorbell()
        self._loops_done = asyncio.Event()
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self._reports: dict[tuple[int, str], Any] = {}
        # Progress/output writers still running per job: the job's outcome waits for them.
        self._report_writers: dict[int, set[asyncio.Task[None]]] = {}
        self._deferred_acks: set[asyncio.Task[None]] = set()
        self._threads: HandlerThreads | None = None
        self._acks: AckBatcher | None = None
        self._claims_after_change: ClaimsAfterChange | None = None
        self._finishes_with_claim: FinishesWithClaim | None = None
        self._knows_due: KnowsWhatIsDue | None = None
        self._rings_on_change: RingsOnChange | None = None
        """The store, when it has the capability (each set by `run`)."""

    # -- control -----------------------------------------------------------------------------
    def request_stop(self, *, force: bool = False) -> None:
        """Stop claiming and drain in-flight jobs; with `force`, release them at once."""
        if self._stopping.is_set() or force:
            self._force.set()
        self._stopping.set()
        self._wake.set()

    @property
    def running_jobs(self) -> list[Job]:
        """The jobs this worker is running now."""
        return [running.job for running in self._running.values()]

    async def run(self, *, once: bool = False) -> Counter[str]:
        """Run until stopped (or, with `once`, until one claimed batch is done); return counts."""
        await self.queue.open()
        if len(self.queue.registry):
            await self.queue.publish_job_types()
        await self.queue.publish_cron_jobs()
        self._threads = HandlerThreads()
        store = self.queue.backend
        # Checked once: a protocol isinstance check costs ~10 us, and `_idle` runs per wake-up.
        self._claims_after_change = store if isinstance(store, ClaimsAfterChange) else None
        self._finishes_with_claim = store if isinstance(store, FinishesWithClaim) else None
        self._knows_due = store if isinstance(store, KnowsWhatIsDue) else None
        self._rings_on_change = store if isinstance(store, RingsOnChange) else None
        self._acks = AckBatcher(
            self.queue.backend,
            self.worker_id,
            now=self.queue.now,
            delay=self.ack_delay,
            give_up_after=self.lease_seconds,
        )
        removers = self._install_signals()
        frozen = self._freeze_gc()
        heartbeat = asyncio.create_task(self._heartbeat_loop(), name="agentqueue-heartbeat")
        loops = [heartbeat]
        if not once:
            presence = Presence.of(
                self.queue.backend,
                self.worker_id,
                queues=[lane.queue for lane in self.lanes if lane.queue is not None],
                job_types=sorted(self.job_types or self.queue.registry.names()),
                concurrency=sum(lane.limit for lane in self.lanes),
                running=lambda: len(self._running),
            )
            loops.append(
                asyncio.create_task(presence.run(self._loops_done), name="agentqueue-presence")
            )
        if self.supervise:
            supervisor = self.queue.supervisor(interval=self.rescue_interval)
            loops.append(
                asyncio.create_task(supervisor.run(self._loops_done), name="agentqueue-supervisor")
            )
        logger.info(
            "worker %s started: lanes %s, job types %s",
            self.worker_id,
            {lane.queue or "*": lane.limit for lane in self.lanes},
            self.job_types or "all",
        )
        try:
            if once:
                await self._claim_all()
                await self._wait_running(None)
            else:
                await self._loop()
        finally:
            await self._drain()
            # The loops end on a flag, not by cancellation alone: a store call that swallows a
            # cancellation (redis-py under Python 3.11's wait_for) must not hang the exit.
            self._loops_done.set()
            _, stuck = await asyncio.wait(loops, timeout=2.0)
            for task in stuck:
                task.cancel()
            if stuck:
                await asyncio.wait(stuck, timeout=2.0)
            for remove in removers:
                remove()
            if frozen:
                gc.unfreeze()
            logger.info("worker %s stopped: %s", self.worker_id, dict(self.counts))
        return self.counts

    def _freeze_gc(self) -> bool:
        """Freeze the objects alive now (see `freeze_gc`); True when this call froze them."""
        if not self.freeze_gc or gc.get_freeze_count():
            return False  # off, or frozen by the application (or another worker): left alone
        # No collection first (a full pass can take 100 ms in a big process, and tests start
        # many workers): garbage made before the start is freed once the worker stops.
        gc.freeze()
        return True

    def _install_signals(self) -> list[Any]:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return []
        loop = asyncio.get_running_loop()
        removers: list[Any] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            # Loops without signal support (Windows' Proactor) raise; Ctrl+C still works there.
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal, sig)
                removers.append(lambda s=sig: loop.remove_signal_handler(s))
        return removers

    def _on_signal(self, sig: signal.Signals) -> None:
        logger.info(
            "worker %s got %s: %s",
            self.worker_id,
            sig.name,
            "releasing in-flight jobs now" if self._stopping.is_set() else "draining",
        )
        self.request_stop()

    # -- claiming ----------------------------------------------------------------------------
    async def _loop(self) -> None:
        store = self.queue.backend
        claimed = False
        token = store.change_token()
        while not self._stopping.is_set():
            if not claimed:
                # Before looking for work: a change after it wakes the idle wait.
                token = store.change_token()
            self._wake.clear()
            try:
                if not claimed and await self._claim_all():
                    continue
                # `claimed`: the idle wait's own claims came back short, so nothing more is due
                # for them; wait again from the same token.
                claimed = await self._idle(token)
            except AgentQueueError as error:
                logger.warning("claim failed, retrying: %s", error)
                claimed = False
                await self._sleep(min(self.poll_interval, 1.0))

    async def _claim_all(self) -> bool:
        """Fill free slots and claim-ahead buffers in every lane; True when a lane got all it
        asked for (maybe more).

        A lane claims while its buffer has room, not only once a slot is free: the next batch
        is then on its way while the held jobs run, and short jobs do not wait a round trip
        for their claim (the buffer holds at most `ahead` jobs all the same). Not on a store
        that finishes with a claim (SQLite): there a claim waits for a free slot and carries
        the outcomes of the jobs that freed it, one commit for both; a claim ahead of them
        would cost a commit of its own.
        """
        more = False
        while_busy = self._finishes_with_claim is None
        for lane in self.lanes:
            wanted = lane.to_claim(while_busy=while_busy)
            if wanted <= 0 or self._stopping.is_set() or self._nothing_due(lane):
                continue
            more = await self._claim_into(lane, wanted) == wanted or more
        return more

    def _nothing_due(self, lane: Lane) -> bool:
        """Whether the store knows, with no round trip, that a claim for the lane would come
        back empty (`KnowsWhatIsDue`): after a short claim, the wake-ups of this worker's own
        claim and of its freed slots change nothing a claim could find."""
        store = self._knows_due
        if store is None or self.queue.now() is not None:
            return False
        known, run_at = store.due_known(queue=lane.queue, job_types=self.job_types)
        return known and (run_at is None or run_at > self.queue.clock.now())

    async def _claim_into(self, lane: Lane, wanted: int) -> int:
        """Claim up to `wanted` jobs into the lane's buffer, start what fits; return the count.

        On a store that finishes with a claim (SQLite), the outcomes waiting to be written go
        along: one transaction, one commit for both.
        """
        store = self._finishes_with_claim
        batch = self._acks.take() if store is not None and self._acks is not None else []
        if store is not None and batch:
            assert self._acks is not None
            try:
                lost, jobs = await store.finish_and_claim(
                    worker_id=self.worker_id,
                    outcomes=[outcome for outcome, _ in batch],
                    queue=lane.queue,
                    job_types=self.job_types,
                    limit=wanted,
                    lease_seconds=self.lease_seconds,
                    now=self.queue.now(),
                )
            except BaseException:
                self._acks.give_back(batch)  # nothing was written: the batcher retries them
                raise
            self._acks.settle(batch, lost)
        else:
            jobs = await self.queue.backend.claim(
                worker_id=self.worker_id,
                queue=lane.queue,
                job_types=self.job_types,
                limit=wanted,
                lease_seconds=self.lease_seconds,
                now=self.queue.now(),
            )
        at = asyncio.get_running_loop().time()
        lane.ready.extend(Claimed(job, at) for job in jobs)
        running = len(lane.running)
        self._fill(lane)
        if len(lane.running) > running:
            # Let the handlers just started take their first step before this loop's next store
            # call: its own work until it first waits on I/O (SQLAlchemy's pool checkout, say)
            # would otherwise delay every handler start.
            await asyncio.sleep(0)
        return len(jobs)

    def _fill(self, lane: Lane) -> None:
        """Start buffered jobs in the lane's free slots."""
        while lane.ready and lane.free > 0 and not self._stopping.is_set():
            self._start(lane, lane.ready.popleft().job)

    def _release_held(self, *, everything: bool = False) -> float | None:
        """Release buffered jobs held too long (or all); return seconds until the next is due."""
        now = asyncio.get_running_loop().time()
        due: float | None = None
        for lane in self.lanes:
            while lane.ready:
                left = lane.ready[0].at + self.prefetch_hold - now
                if left > 0 and not everything:
                    due = left if due is None else min(due, left)
                    break
                self._give_back(lane.ready.popleft(), OutcomeKind.RELEASE)
        return due

    def _give_back(self, claimed: Claimed, kind: OutcomeKind) -> None:
        """Store `kind` (release or cancel) for a job that was claimed but never started."""
        assert self._acks is not None
        outcome = Outcome(kind, claimed.lease)
        done = self._acks.submit(outcome)
        done.add_done_callback(
            lambda applied: (
                self._count(outcome) if not applied.cancelled() and applied.result() else None
            )
        )

    def _count(self, outcome: Outcome) -> None:
        self.counts[outcome.kind.value] += 1

    async def _idle(self, token: int) -> bool:
        """Sleep until a slot frees, the store changes, a delayed job falls due, or a stop.

        On a store that claims after a change (`ClaimsAfterChange`), the lanes waiting for work
        claim as they wake; True then means they all came back short (and no other lane has a
        free slot), so there is nothing to claim until the next change.
        """
        timeout = self.poll_interval
        waiting_for_work = [lane for lane in self.lanes if lane.free > 0]
        store = self._claims_after_change
        if waiting_for_work and store is None and self.queue.backend.change_token() != token:
            # The store changed while this worker claimed (an enqueue landing during an empty
            # claim): claim again now; the wait below would return at once anyway, after a
            # `next_due` read that only delays the job. (A store that claims after a change
            # waits from the token itself, below.)
            return False
        for lane in waiting_for_work:
            due = await self.queue.backend.next_due(
                queue=lane.queue, job_types=self.job_types, now=self.queue.now()
            )
            if due is not None:
                timeout = min(timeout, (due - self.queue.clock.now()).total_seconds())
        held = self._release_held()
        if held is not None:
            timeout = min(timeout, held)
        if timeout <= 0:
            return False
        # Only on the store's own clock: the claim runs later than an injected `now` was read.
        if waiting_for_work and store is not None and self.queue.now() is None:
            return await self._claim_after_change(store, waiting_for_work, token, timeout)
        if not waiting_for_work and self._finishes_with_claim is None:
            # Every slot busy: only `_wake` (a slot or buffer room freed, a stop) matters. A
            # plain wait resumes this loop in the next event-loop turn; the `asyncio.wait`
            # below takes several, and a buffer of short jobs drains in that time, so the
            # claim ahead would start only once the buffer is empty. (A store that finishes
            # with a claim gains from the later wake: the claim carries more outcomes.)
            await self._sleep_until_woken(timeout)
            return False
        # One bell, rung by whichever comes first: `_wake`, or the store's change signal
        # (directly where the store can, else by a task waiting for the change).
        bell: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        forget = [self._wake.ring_on_set(bell)]
        change_wait: asyncio.Future[bool] | None = None
        if waiting_for_work:
            rings = self._rings_on_change
            if rings is not None:
                forget.append(rings.ring_on_change(bell, token))
            else:
                change_wait = asyncio.ensure_future(
                    self.queue.backend.wait_for_change(timeout, since=token)
                )
                change_wait.add_done_callback(lambda _done: ring(bell))
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await bell
        finally:
            for unhang in forget:
                unhang()
            if change_wait is not None:
                change_wait.cancel()
                await asyncio.gather(change_wait, return_exceptions=True)
        return False

    async def _claim_after_change(
        self, store: ClaimsAfterChange, lanes: list[Lane], token: int, timeout: float
    ) -> bool:
        """Each lane claims once the store changes (or at `timeout`, or when `_wake` is set: a
        stop, or a slot freed in a lane not waiting here); see `_idle` for what True means."""

        async def claim(lane: Lane) -> bool:
            wanted = lane.wanted
            jobs = await store.claim_after_change(
                worker_id=self.worker_id,
                queue=lane.queue,
                job_types=self.job_types,
                limit=wanted,
                lease_seconds=self.lease_seconds,
                since=token,
                timeout=timeout,
                interrupt=self._wake,
            )
            at = asyncio.get_running_loop().time()
            lane.ready.extend(Claimed(job, at) for job in jobs)
            self._fill(lane)
            return len(jobs) < wanted

        for lane in lanes:
            lane.waiting = True
        try:
            # Every lane's claim is awaited to its end: a claim left behind would hold its jobs
            # leased to this worker without running them.
            short = await asyncio.gather(*(claim(lane) for lane in lanes), return_exceptions=True)
        finally:
            for lane in lanes:
                lane.waiting = False
        for result in short:
            if isinstance(result, BaseException):
                raise result
        return all(short) and all(lane.free <= 0 or lane in lanes for lane in self.lanes)

    async def _sleep_until_woken(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    # -- running -----------------------------------------------------------------------------
    def _start(self, lane: Lane, job: Job) -> None:
        stale = self._running.get(job.id)
        if stale is not None and stale.task is not None and not stale.task.done():
            # The store handed out a job this worker still runs: that attempt's lease expired
            # (heartbeats were late) and it was rescued. Stop it as a heartbeat would have, so
            # one worker never runs two attempts of a job at once.
            logger.warning(
                "job %s: claimed again, stopping its stale attempt here",
                job.id,
                extra=logs.job_fields(job),
            )
            stale.stop(StopReason.LEASE_LOST)
        loop = asyncio.get_running_loop()
        ctx = JobContext(
            job,
            worker_id=self.worker_id,
            loop=loop,
            report_progress=lambda progress, message: self._report(
                job.id, "progress", (progress, message)
            ),
            report_output=lambda output: self._report(job.id, "output", output),
            link=AttemptLink(
                store=self.queue.backend,
                worker_id=self.worker_id,
                lease=Lease(job.id, job.attempts),
                store_now=self.queue.now,
                clock_now=self.queue.clock.now,
            ),
        )
        running = Running(job, ctx, started=loop.time())
        lane.running[job.id] = running
        self._running[job.id] = running
        assert self._threads is not None
        running.task = asyncio.create_task(
            execute(
                running,
                self.queue.registry.get(job.job_type),
                self._threads,
                self.queue.clock.now,
                self.queue.registry.names,
            ),
            name=f"agentqueue-job-{job.id}",
            # Every record logged while the job runs names it (agentqueue.logs).
            context=logs.bound_to(job),
        )
        running.task.add_done_callback(lambda task: self._finished(lane, running, task))

    def _finished(
        self, lane: Lane, running: Running, task: asyncio.Task[Outcome | Parked | None]
    ) -> None:
        # A stale attempt must not remove the entry of the job's newer attempt.
        if lane.running.get(running.job.id) is running:
            del lane.running[running.job.id]
        if self._running.get(running.job.id) is running:
            del self._running[running.job.id]
        lane.ran(asyncio.get_running_loop().time() - running.started)
        self._fill(lane)
        if not lane.waiting:  # a lane waiting in `claim_after_change` has free slots already
            self._wake.set()
        if task.cancelled():
            logger.error(
                "job %s: its task was cancelled without a reason",
                running.job.id,
                extra=logs.job_fields(running.job),
            )
            return
        error = task.exception()
        if error is not None:
            logger.error(
                "job %s: the executor failed: %r",
                running.job.id,
                error,
                extra=logs.job_fields(running.job),
            )
            return
        outcome = task.result()
        if isinstance(outcome, Parked):
            self.counts["wait"] += 1  # already stored by the handler's wait
            return
        if outcome is None:
            logger.warning(
                "job %s: lease lost (expired or reclaimed); its result was dropped",
                running.job.id,
                extra=logs.job_fields(running.job),
            )
            return
        writers = self._report_writers.get(running.job.id)
        if writers:
            # A progress or output write of this attempt is still on its way: the outcome goes
            # after it, or the write would meet an ended job and be refused (the last
            # progress lost; on PostgreSQL the two take different connections).
            task = asyncio.ensure_future(self._submit_after(writers, running, outcome))
            self._deferred_acks.add(task)
            task.add_done_callback(self._deferred_acks.discard)
            return
        self._submit(running, outcome)

    def _submit(self, running: Running, outcome: Outcome) -> None:
        assert self._acks is not None
        applied = self._acks.submit(outcome)
        # A callback, not a task per job: most outcomes need only counting.
        applied.add_done_callback(lambda done: self._acked(running, outcome, done))

    async def _submit_after(
        self, writers: set[asyncio.Task[None]], running: Running, outcome: Outcome
    ) -> None:
        # `writers` is the live set: its last writer may end before this task first runs
        # (asyncio.wait refuses an empty set, and the outcome was then never written). The
        # outcome is submitted whatever happens here, even on a cancellation.
        try:
            pending = list(writers)
            if pending:
                await asyncio.wait(pending)
        finally:
            self._submit(running, outcome)

    def _acked(self, running: Running, outcome: Outcome, done: asyncio.Future[bool]) -> None:
        """Count an outcome once it is stored, log failures, and start the job type's hook."""
        if done.cancelled() or not done.result():
            logger.warning(
                "job %s: outcome %s not applied (lease lost)",
                running.job.id,
                outcome.kind,
                extra=logs.job_fields(running.job),
            )
            return
        self._count(outcome)
        job = running.job
        if outcome.error is not None and outcome.kind in (OutcomeKind.RETRY, OutcomeKind.FAIL):
            logger.warning(
                "job %s (%s) attempt %d failed%s: %s",
                job.id,
                job.job_type,
                job.attempts,
                f", retry in {outcome.retry_in:.1f} s" if outcome.kind is OutcomeKind.RETRY else "",
                outcome.error.message,
                extra=logs.job_fields(job),
            )
        spec = self.queue.registry.get(job.job_type)
        if spec is None:
            return
        if outcome.kind is OutcomeKind.COMPLETE and spec.on_success is not None:
            self._spawn(_call_hook(spec.on_success, job, outcome.output))
        elif outcome.error is not None and spec.on_failure is not None:
            self._spawn(
                _call_hook(spec.on_failure, job, outcome.error, outcome.kind is OutcomeKind.RETRY)
            )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    def _report(self, job_id: int, kind: str, value: Any) -> None:
        """Coalesce progress and output writes: one writer per job and kind, always writing
        the latest value (never an older one last)."""
        running = self._running.get(job_id)
        if running is None:
            return  # the attempt ended: nothing more of it is written
        fresh = (job_id, kind) not in self._reports
        self._reports[job_id, kind] = value
        if fresh:
            task = asyncio.ensure_future(self._write_report(running, kind))
            self._side_tasks.add(task)
            writers = self._report_writers.setdefault(job_id, set())
            writers.add(task)

            def done(task: asyncio.Task[None]) -> None:
                self._side_tasks.discard(task)
                writers.discard(task)
                if not writers and self._report_writers.get(job_id) is writers:
                    del self._report_writers[job_id]

            task.add_done_callback(done)

    async def _write_report(self, running: Running, kind: str) -> None:
        """Write the latest value of one kind of report until no newer one is waiting."""
        job_id = running.job.id
        key = (job_id, kind)
        try:
            while key in self._reports:
                value = self._reports[key]
                try:
                    await self._store_report(running, kind, value)
                except AgentQueueError as error:
                    logger.warning(
                        "job %s: %s not saved: %s",
                        job_id,
                        kind,
                        error,
                        extra=logs.job_fields(running.job),
                    )
                if self._reports.get(key) is value:
                    break
        finally:
            self._reports.pop(key, None)

    async def _store_report(self, running: Running, kind: str, value: Any) -> None:
        store, now = self.queue.backend, self.queue.now()
        if kind == "progress":
            progress, message = value
            await store.set_progress(
                worker_id=self.worker_id,
                lease=running.lease,
                progress=progress,
                message=message,
                now=now,
            )
        else:
            await store.set_output(
                worker_id=self.worker_id, lease=running.lease, output=value, now=now
            )

    # -- leases ------------------------------------------------------------------------------
    async def _pause(self, seconds: float) -> bool:
        """Sleep `seconds`; return False at once when the worker's loops must end."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._loops_done.wait()
        return not self._loops_done.is_set()

    async def _heartbeat_loop(self) -> None:
        while True:
            started = time.monotonic()
            if not await self._pause(self.heartbeat_interval):
                return
            if self._running:
                try:
                    await self._heartbeat()
                except Exception:  # the loop must outlive any one failure, or leases expire
                    logger.exception("heartbeat failed unexpectedly; retrying next interval")
            # The whole cycle counts: the loop can be blocked during the pause or while the
            # heartbeat's own store call waits for it.
            late = time.monotonic() - started - self.heartbeat_interval
            if late > self.lease_seconds / 2:
                # Heartbeats run on the event loop: a handler that blocks it (a sync call in an
                # `async def`) stops them too, and its lease may expire under it. Say so, or
                # the only trace is the "lease lost" that follows.
                logger.warning(
                    "heartbeat ran %.1f s late: the event loop was blocked (a blocking call in "
                    "an async handler? make the handler sync, or await asyncio.to_thread) or "
                    "the store answered slowly; leases of %g s may have expired",
                    late,
                    self.lease_seconds,
                )

    async def _heartbeat(self) -> None:
        running = list(self._running.values())
        held = [claimed for lane in self.lanes for claimed in lane.ready]
        try:
            result = await self.queue.backend.heartbeat(
                worker_id=self.worker_id,
                leases=[r.lease for r in running] + [c.lease for c in held],
                lease_seconds=self.lease_seconds,
                now=self.queue.now(),
            )
        except AgentQueueError as error:
            logger.warning("heartbeat failed (leases not extended): %s", error)
            return
        self._settle_held(result.lost, result.cancel_requested)
        for item in running:
            job_id = item.job.id
            if job_id in result.lost and item.task is not None and not item.task.done():
                logger.warning(
                    "job %s: lease lost, stopping its handler",
                    job_id,
                    extra=logs.job_fields(item.job),
                )
                item.stop(StopReason.LEASE_LOST)
            elif job_id in result.cancel_requested and item.stop_reason is None:
                logger.info(
                    "job %s: cancel requested, stopping its handler",
                    job_id,
                    extra=logs.job_fields(item.job),
                )
                item.ctx._request_cancel()  # pyright: ignore[reportPrivateUsage]
                spec = self.queue.registry.get(item.job.job_type)
                # A sync handler runs in a thread that cannot be interrupted: it sees
                # ctx.cancelled and stops itself.
                if spec is not None and spec.is_async:
                    item.stop(StopReason.CANCEL_REQUESTED)

    def _settle_held(self, lost: Collection[int], cancel_requested: Collection[int]) -> None:
        """Drop buffered jobs whose lease was lost; store the cancel of those cancelled."""
        for lane in self.lanes:
            keep: deque[Claimed] = deque()
            for claimed in lane.ready:
                if claimed.job.id in lost:
                    logger.warning(
                        "job %s: lease lost before it started",
                        claimed.job.id,
                        extra=logs.job_fields(claimed.job),
                    )
                elif claimed.job.id in cancel_requested:
                    self._give_back(claimed, OutcomeKind.CANCEL)
                else:
                    keep.append(claimed)
            lane.ready = keep

    # -- shutdown ----------------------------------------------------------------------------
    async def _wait_running(self, timeout: float | None) -> None:
        tasks = [r.task for r in self._running.values() if r.task is not None]
        if not tasks:
            return
        everything = asyncio.ensure_future(asyncio.wait(tasks))
        force = asyncio.ensure_future(self._force.wait())
        try:
            await asyncio.wait(
                [everything, force], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in (everything, force):
                waiter.cancel()
            await asyncio.gather(everything, force, return_exceptions=True)

    async def _drain(self) -> None:
        if self._acks is not None:
            self._release_held(everything=True)  # other workers can take them at once
        if self._running:
            logger.info(
                "worker %s: waiting up to %g s for %d running job(s)",
                self.worker_id,
                self.shutdown_timeout,
                len(self._running),
            )
            await self._wait_running(self.shutdown_timeout)
        leftovers = [r for r in self._running.values() if r.task is not None and not r.task.done()]
        for item in leftovers:
            item.stop(StopReason.SHUTDOWN)
        await asyncio.gather(*(r.task for r in leftovers if r.task), return_exceptions=True)
        if self._deferred_acks:
            await asyncio.wait(list(self._deferred_acks), timeout=self.shutdown_timeout)
        if self._acks is not None:
            await self._acks.drain()
        # Hooks and progress writes get the shutdown timeout too: a hung hook must not keep a
        # stopped worker alive.
        if self._side_tasks:
            _, hung = await asyncio.wait(list(self._side_tasks), timeout=self.shutdown_timeout)
            for task in hung:
                task.cancel()
            if hung:
                logger.warning(
                    "worker %s: %d hook(s) still running, cancelled", self.worker_id, len(hung)
                )
                await asyncio.gather(*hung, return_exceptions=True)


async def _call_hook(hook: Any, *args: Any) -> None:
    try:
        result = hook(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("hook %r raised (the job's outcome is unchanged)", hook)
