"""What an operator reads: --log-format json, the --log-level debug story (drops, REFUSED and
NXDOMAIN reasons, records learned, refreshed, expired, evicted) and the process/build metrics."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import dns.name
import dns.rdata
import pytest
from prometheus_client import generate_latest

from bridge import __version__, logutil
from bridge.app import Gateway
from bridge.config import Config
from bridge.logutil import RateLimitedLog
from bridge.store import Store


def test_json_log_lines_are_one_object_each() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logutil.JsonFormatter())
    logger = logging.getLogger("bridge.test-json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning('VLAN %s: dropped "%s"', "iot", "x\ny")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["level"] == "warning" and first["logger"] == "bridge.test-json"
    assert first["message"] == 'VLAN iot: dropped "x\ny"'
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert second["message"] == "failed" and "ValueError: boom" in second["exception"]


@pytest.fixture
def store_debug(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG, logger="bridge.store")
    yield caplog


def _a(text: str) -> dns.rdata.Rdata:
    return dns.rdata.from_text("IN", "A", text)


def test_debug_tells_records_learned_refreshed_expired_evicted(
    store_debug: pytest.LogCaptureFixture,
) -> None:
    store = Store(max_records=100)
    name = dns.name.from_text("printer.local.")
    store.add("iot", name, 1, _a("10.20.0.5"), 120, now=1000.0)
    store.add("iot", name, 1, _a("10.20.0.5"), 120, now=1001.0)
    store.add("guest", dns.name.from_text("tv.local."), 1, _a("10.30.0.9"), 1, now=1000.0)
    assert store.sweep(1002.0) == 1
    for i in range(99):  # fill the store from trusted
        store.add("trusted", dns.name.from_text(f"h{i}.local."), 1, _a("10.10.0.1"), 120, 1003.0)
    # guest holds less than its share: its new record evicts the fullest VLAN's oldest
    store.add("guest", dns.name.from_text("tv.local."), 1, _a("10.30.0.9"), 120, now=1004.0)
    messages = [r.getMessage() for r in store_debug.records]
    assert "VLAN iot: learned printer.local. 120 A 10.20.0.5" in messages
    assert "VLAN iot: refreshed printer.local. 120 A 10.20.0.5" in messages
    assert "expired 1 record(s), e.g. tv.local. 1 A 10.30.0.9" in messages
    assert any(
        m.startswith("store full: evicted h0.local. 120 A 10.10.0.1 for VLAN ") for m in messages
    ), messages
    # rate-limited: 99 records learned on trusted, one line (the rest counted on the next)
    assert sum(m.startswith("VLAN trusted: learned") for m in messages) == 1


def test_no_debug_lines_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bridge.store")
    store = Store()
    store.add("iot", dns.name.from_text("printer.local."), 1, _a("10.20.0.5"), 120, now=1.0)
    assert [r for r in caplog.records if r.name == "bridge.store"] == []


def test_process_and_build_metrics_are_exported() -> None:
    text = generate_latest(Gateway(Config(vlans={})).registry).decode()
    m = re.search(r"^mdns_gateway_build_info\{([^}]*)\} 1\.0$", text, re.M)
    assert m is not None, text[:500]
    assert f'version="{__version__}"' in m.group(1) and 'compiled="' in m.group(1)
    for metric in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ):
        assert re.search(rf"^{metric} [0-9.e+]+$", text, re.M), metric


def test_rate_limited_log_keys_by_reason_and_names_the_last_source(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Keyed by source address, rotating sources once wrote one line per packet."""
    clock = [100.0]
    log = RateLimitedLog(logging.getLogger("test.ratelimit"), interval=10.0, clock=lambda: clock[0])
    with caplog.at_level(logging.INFO, logger="test.ratelimit"):
        for i in range(100):
            log.warning(
                ("malformed", "iot"),
                "VLAN iot: malformed from %s",
                f"10.0.0.{i}",
                source=f"10.0.0.{i}",
            )
        assert [r.getMessage() for r in caplog.records] == ["VLAN iot: malformed from 10.0.0.0"]
        clock[0] += 9.9
        log.warning(("malformed", "iot"), "quiet", source="10.0.0.99")
        assert len(caplog.records) == 1
        clock[0] += 0.1  # the interval has passed
        log.warning(
            ("malformed", "iot"), "VLAN iot: malformed from %s", "10.0.0.200", source="10.0.0.200"
        )
    assert caplog.records[-1].getMessage() == (
        "VLAN iot: malformed from 10.0.0.200 (and 100 more like it, the last from 10.0.0.99)"
    )


def test_rate_limited_log_takes_the_callers_now(caplog: pytest.LogCaptureFixture) -> None:
    """A caller's ``now`` (the event loop's time in ingest and the DNS answers) paces it, not
    the clock."""
    log = RateLimitedLog(logging.getLogger("test.ratelimit.now"), interval=10.0, clock=lambda: 0.0)
    with caplog.at_level(logging.INFO, logger="test.ratelimit.now"):
        log.info("k", "first", now=1000.0)
        log.info("k", "quiet", now=1005.0)
        log.info("k", "again", now=1010.5)
    assert [r.getMessage() for r in caplog.records] == ["first", "again (and 1 more like it)"]
