"""mdns_gateway_dhcp_*: the lease files and the host names they give, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from ..metrics import counter, gauge
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
        files = [(str(f.path), f) for f in w.files]
        yield gauge(
            f"{NS}_leases",
            "Active leases in each lease file",
            ((path, sum(1 for lease in f.leases if lease.active(now))) for path, f in files),
            ["file"],
        )
        yield counter(
            f"{NS}_malformed_lines",
            "Lease file lines that could not be read",
            ((path, f.malformed) for path, f in files),
            ["file"],
        )
        yield counter(
            f"{NS}_read_errors",
            "Reads of a lease file that failed (missing, unreadable, too large)",
            ((path, w.read_errors.get(path, 0)) for path, _ in files),
            ["file"],
        )
        yield gauge(f"{NS}_hosts", "Lease host names published now", len(w.hosts))
        yield counter(
            f"{NS}_names_ignored",
            "Lease host names not published: invalid, too_long, dot, reserved, duplicate"
            " (another client's name), no_vlan, too_many",
            ((reason, w.ignored.get(reason, 0)) for reason in (*REASONS, "too_many")),
            ["reason"],
        )
        yield counter(f"{NS}_reads", "Lease files read", w.reads)
