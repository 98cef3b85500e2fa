"""Supervised periodic jobs (bridge/periodic.py): a failing job is counted, logged once per
burst and keeps its schedule; the failures are exported."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from bridge.metrics import JobsCollector
from bridge.periodic import Periodic


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_failing_job_is_counted_logged_once_per_burst_and_keeps_its_schedule(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        clock = Clock()
        periodic = Periodic(clock, log_interval=10.0)
        calls: list[int] = []
        done = asyncio.Event()

        def job() -> None:
            calls.append(len(calls))
            if len(calls) == 8:
                done.set()
            if len(calls) <= 5:  # a burst of five failures, then it works again
                raise RuntimeError(f"bug {len(calls)}")

        periodic.add("flaky", 0.001, job)
        periodic.start()
        await asyncio.wait_for(done.wait(), 10.0)  # it ran on after the failures
        await periodic.stop()
        assert periodic.jobs["flaky"].failures == 5
        assert periodic.jobs["flaky"].burst == 0

        registry = CollectorRegistry(auto_describe=False)
        registry.register(JobsCollector(periodic))
        text = generate_latest(registry).decode()
        assert 'mdns_gateway_job_failures_total{job="flaky"} 5.0' in text

    with caplog.at_level(logging.INFO, logger="bridge.periodic"):
        asyncio.run(main())
    records = [r for r in caplog.records if r.name == "bridge.periodic"]
    assert [r.levelno for r in records] == [logging.ERROR, logging.INFO]
    assert records[0].exc_info is not None and "bug 1" in str(records[0].exc_info[1])
    assert "after 5 failures" in records[1].getMessage()


def test_a_long_burst_is_logged_again_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    periodic = Periodic(clock, log_interval=10.0)

    def broken() -> None:
        raise ValueError("still broken")

    periodic.add("broken", 0.25, broken)
    with caplog.at_level(logging.INFO, logger="bridge.periodic"):
        for i in range(100):  # 25 s of runs every 0.25 s
            clock.now = i * 0.25
            periodic.run("broken")
    records = [r for r in caplog.records if r.name == "bridge.periodic"]
    # at 0 s (with the traceback), at 10 s and at 20 s, the count in the message
    assert len(records) == 3
    assert records[0].exc_info is not None
    assert "41 times in a row" in records[1].getMessage()
    assert "81 times in a row" in records[2].getMessage()
    assert periodic.jobs["broken"].failures == 100


def test_async_jobs_are_awaited_and_run_first_when_asked() -> None:
    async def main() -> None:
        periodic = Periodic(Clock())
        ran = asyncio.Event()

        async def poll() -> None:
            await asyncio.sleep(0)
            ran.set()

        periodic.add("poll", 3600.0, poll, first=0.0)
        periodic.start()
        await asyncio.wait_for(ran.wait(), 10.0)  # at once, not after the hour
        await periodic.stop()
        assert periodic.jobs["poll"].failures == 0
        with pytest.raises(ValueError, match="registered twice"):
            periodic.add("poll", 1.0, poll)

    asyncio.run(main())
