"""dnsperf runs (pinned to a core, inside a namespace) and their parsed statistics."""

from __future__ import annotations

import re
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from netlab.lab import run

from . import procstat

_FLOAT = r"([0-9.]+)"


@dataclass
class PerfResult:
    server: str
    transport: str
    mode: str  # "max" (as fast as it answers) or "rate" (-Q offered load)
    offered_qps: float | None
    sent: int = 0
    completed: int = 0
    lost: int = 0
    qps: float = 0.0
    seconds: float = 0.0
    avg_latency_ms: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    server_cpu_s: float = 0.0
    cpu_us_per_query: float | None = None
    response_bytes: float = 0.0
    rcodes: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 1))))
    return sorted_values[rank - 1]


def parse(text: str, res: PerfResult) -> None:
    def grab(pattern: str) -> str | None:
        m = re.search(pattern, text)
        return m.group(1) if m else None

    res.sent = int(grab(r"Queries sent:\s+(\d+)") or 0)
    res.completed = int(grab(r"Queries completed:\s+(\d+)") or 0)
    res.lost = int(grab(r"Queries lost:\s+(\d+)") or 0)
    res.qps = float(grab(r"Queries per second:\s+" + _FLOAT) or 0.0)
    res.seconds = float(grab(r"Run time \(s\):\s+" + _FLOAT) or 0.0)
    res.avg_latency_ms = float(grab(r"Average Latency \(s\):\s+" + _FLOAT) or 0.0) * 1000
    res.response_bytes = float(grab(r"response\s+(\d+)") or 0.0)
    codes = grab(r"Response codes:\s+(.*)")
    if codes:
        for name, n in re.findall(r"([A-Z]+) (\d+)", codes):
            res.rcodes[name] = int(n)
    lat = sorted(float(x) * 1000 for x in re.findall(r"^> \S+ .* ([0-9.]+)$", text, re.M))
    if lat:
        res.p50_ms = percentile(lat, 0.50)
        res.p99_ms = percentile(lat, 0.99)


def dnsperf(
    ns: str,
    *,
    server: str,
    pid: int,
    addr: str,
    port: int,
    data: Path,
    transport: str = "udp",
    seconds: float = 10.0,
    qps: float | None = None,
    clients: int = 4,
    outstanding: int = 100,
    core: int = 0,
    verbose: bool = False,
    runs: int | None = None,
    log: Path | None = None,
) -> PerfResult:
    """One dnsperf run against ``addr:port``; the server's CPU is read from ``pid``'s tree.

    ``verbose`` makes dnsperf print every query's latency (p50/p99 come from those lines); it
    costs the client some speed, so throughput and CPU per query come from quiet runs.
    """
    argv = [
        "taskset",
        "-c",
        str(core),
        "dnsperf",
        "-s",
        addr,
        "-p",
        str(port),
        "-d",
        str(data),
        "-B",
        "-l",
        f"{seconds:g}",
        "-c",
        str(clients),
        "-q",
        str(outstanding),
        "-T",
        "1",
        "-m",
        transport,
        "-t",
        "2",
    ]
    if qps is not None:
        argv += ["-Q", str(int(qps))]
    if runs is not None:
        argv += ["-n", str(runs)]
    if verbose:
        argv.append("-v")
    res = PerfResult(server, transport, "rate" if qps is not None else "max", qps)
    cpu0 = procstat.cpu_seconds(pid)
    proc = run(ns, *argv, timeout=seconds + 60, check=False)
    res.server_cpu_s = procstat.cpu_seconds(pid) - cpu0
    text = proc.stdout + proc.stderr
    if log is not None:  # the summary, without verbose mode's line per query
        log.write_text("".join(ln for ln in text.splitlines(True) if not ln.startswith("> ")))
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, argv, text[-2000:])
    parse(text, res)
    if res.completed:
        res.cpu_us_per_query = res.server_cpu_s / res.completed * 1e6
    return res
