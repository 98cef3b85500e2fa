"""mdns_gateway_dhcp_*: the lease files and the host names they give, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .hostnames import REASONS
from .watch import LeaseWatcher

NS = "mdns_gateway_dhcp"


class DhcpCollector:
    """Reads a :class:`LeaseWatcher` at scrape time."""

    def __init__(self, watcher: LeaseWatcher) -> None:
        self.watcher = watcher

    def collect(self) -> Iterator[Metric]:
        w = self.watcher
        now = w.wall_clock()
        leases = GaugeMetricFamily(
            f"{NS}_leases", "Active leases in each lease file", labels=["file"]
        )
        malformed = CounterMetricFamily(
            f"{NS}_malformed_lines", "Lease file lines that could not be read", labels=["file"]
        )
        errors = CounterMetricFamily(
            f"{NS}_read_errors",
            "Reads of a lease file that failed (missing, unreadable, too large)",
            labels=["file"],
        )
        for f in w.files:
            path = str(f.path)
            leases.add_metric([path], sum(1 for lease in f.leases if lease.active(now)))
            malformed.add_metric([path], f.malformed)
            errors.add_metric([path], w.read_errors.get(path, 0))
        yield leases
        yield malformed
        yield errors
        yield GaugeMetricFamily(f"{NS}_hosts", "Lease host names published now", value=len(w.hosts))
        ignored = CounterMetricFamily(
            f"{NS}_names_ignored",
            "Lease host names not published: invalid, too_long, dot, reserved, duplicate"
            " (another client's name), no_vlan, too_many",
            labels=["reason"],
        )
        for reason in (*REASONS, "too_many"):
            ignored.add_metric([reason], w.ignored.get(reason, 0))
        yield ignored
        yield CounterMetricFamily(f"{NS}_reads", "Lease files read", value=w.reads)
