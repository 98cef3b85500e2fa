"""What a test watches on a gateway under attack: its answers to others, its memory, its CPU.

``DnsProber`` runs ``dns_prober.py`` in a host namespace (its own process: the flood a test
sends cannot delay it) and reports the longest time without an answer. ``Vitals`` samples the
gateway process's resident memory while an attack runs (the peak, not only the end) and reads
its CPU time from /proc. ``Vitals.measure()`` wraps an attack in both.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .lab import Host, Lab, _JsonLinesProcess

_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICK = os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` (/proc/PID/statm)."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


class DnsProber(_JsonLinesProcess):
    """A client in ``host`` asking ``qname A`` of ``server:port`` every ``interval`` s."""

    def __init__(
        self, lab: Lab, host: Host, server: str, port: int, qname: str, interval: float = 0.05
    ) -> None:
        config = {"server": server, "port": port, "qname": qname, "interval": interval}
        super().__init__(lab, host, "dns_prober.py", config, "dns-prober")
        self.wait_event(lambda ev: ev.get("event") == "started", timeout=15.0)

    def result(self, timeout: float = 10.0) -> dict[str, Any]:
        """Close its stdin (it stops probing) and return its figures: sent, answered, max_gap."""
        stdin = self.proc.stdin
        assert stdin is not None
        stdin.close()
        return self.wait_event(lambda ev: ev.get("event") == "result", timeout=timeout)


@dataclass
class Measurement:
    """One attack's figures, filled in by ``Vitals.measure``."""

    rss_before: int = 0
    rss_peak: int = 0
    cpu_seconds: float = 0.0
    seconds: float = 0.0
    probe: dict[str, Any] = field(default_factory=dict)

    @property
    def rss_growth_mb(self) -> float:
        return round((self.rss_peak - self.rss_before) / 1e6, 1)

    @property
    def max_gap(self) -> float:
        return float(self.probe.get("max_gap", float("inf")))

    def figures(self) -> dict[str, Any]:
        return {
            "max_probe_gap_s": self.max_gap,
            "probes_sent": self.probe.get("sent"),
            "probes_answered": self.probe.get("answered"),
            "rss_growth_mb": self.rss_growth_mb,
            "gateway_cpu_s": round(self.cpu_seconds, 2),
            "attack_s": round(self.seconds, 2),
        }


class Vitals:
    """Watches gateway process ``pid`` with a prober in ``host`` asking ``qname``."""

    def __init__(self, lab: Lab, pid: int, host: Host, server: str, port: int, qname: str):
        self.lab, self.pid, self.host = lab, pid, host
        self.server, self.port, self.qname = server, port, qname

    @contextlib.contextmanager
    def measure(self, sample_interval: float = 0.05) -> Iterator[Measurement]:
        """Probe and sample RSS (every ``sample_interval`` s) while the body runs."""
        m = Measurement(rss_before=rss_bytes(self.pid))
        m.rss_peak = m.rss_before
        cpu0 = cpu_seconds(self.pid)
        prober = DnsProber(self.lab, self.host, self.server, self.port, self.qname)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(sample_interval):
                m.rss_peak = max(m.rss_peak, rss_bytes(self.pid))

        sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
        sampler.start()
        t0 = time.monotonic()
        try:
            yield m
        finally:
            m.seconds = time.monotonic() - t0
            done.set()
            sampler.join(5.0)
            m.rss_peak = max(m.rss_peak, rss_bytes(self.pid))
            m.cpu_seconds = cpu_seconds(self.pid) - cpu0
            m.probe = prober.result()
            prober.stop()
