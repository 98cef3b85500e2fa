"""Supervised periodic jobs: each runs on its schedule whatever it raises.

A job that fails is counted (``failures``, exported as ``mdns_gateway_job_failures_total``) and
keeps its schedule. A burst of failures (a job failing on every run, 4 times a second for the
sweep) is logged once, with its traceback, when it starts, then at most once per
``const.LOG_RATE_LIMIT_INTERVAL`` with the count, and once more when the job runs cleanly
again: a bug in a periodic job neither stops the gateway nor floods its log.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass

from . import const

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Job:
    """One periodic job and its failure record."""

    name: str
    interval: float  # s between runs
    fn: Callable[[], object]  # may return an awaitable (a coroutine): it is awaited
    first: float  # s from start() to the first run
    failures: int = 0  # every failure since start-up
    burst: int = 0  # failures in a row, up to now
    logged_at: float | None = None  # clock time the current burst was last logged


class Periodic:
    """The gateway's periodic jobs, run as one task each on the event loop.

    ``clock`` is the event loop's time (it paces the log of a failure burst).
    """

    def __init__(
        self, clock: Callable[[], float], log_interval: float = const.LOG_RATE_LIMIT_INTERVAL
    ) -> None:
        self.clock = clock
        self.log_interval = log_interval
        self.jobs: dict[str, Job] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def add(
        self, name: str, interval: float, fn: Callable[[], object], first: float | None = None
    ) -> None:
        """Register a job: it runs every ``interval`` seconds from ``first`` (default: one
        interval) after :meth:`start`."""
        if name in self.jobs:
            raise ValueError(f"periodic job {name!r} registered twice")
        self.jobs[name] = Job(name, interval, fn, interval if first is None else first)

    def run(self, name: str) -> None:
        """Run a (synchronous) job now, supervised: it never raises; a failure is counted."""
        job = self.jobs[name]
        try:
            job.fn()
        except Exception as exc:  # a periodic job must survive its own bugs
            self._failed(job, exc)
        else:
            self._succeeded(job)

    async def _run_async(self, job: Job) -> None:
        try:
            result = job.fn()
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # a periodic job must survive its own bugs
            self._failed(job, exc)
        else:
            self._succeeded(job)

    def _succeeded(self, job: Job) -> None:
        if job.burst:
            log.info("periodic job %s runs again after %d failures", job.name, job.burst)
            job.burst = 0
            job.logged_at = None

    def _failed(self, job: Job, exc: Exception) -> None:
        job.failures += 1
        job.burst += 1
        now = self.clock()
        if job.logged_at is None:
            job.logged_at = now
            log.exception("periodic job %s failed; it keeps its schedule", job.name)
        elif now - job.logged_at >= self.log_interval:
            job.logged_at = now
            log.error(
                "periodic job %s still failing: %d times in a row, last: %s: %s",
                job.name,
                job.burst,
                type(exc).__name__,
                exc,
            )

    async def _every(self, job: Job) -> None:
        delay = job.first
        while True:
            await asyncio.sleep(delay)
            delay = job.interval
            await self._run_async(job)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._every(job), name=f"periodic {job.name}")
            for job in self.jobs.values()
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
