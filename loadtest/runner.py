"""The benchmark run: builds the lab, populates it, measures every phase, writes the results.

Phases (all by default; ``--only`` picks some): ``startup``, ``memory``, ``udp``, ``tcp``,
``cold``, ``idle``, ``reflector``, ``widearea``. Each phase stops what it started; the lab is
closed at the end whatever happens. Every load goes to loopback or to the lab's own namespaces, and
every loop is bounded in count and time.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib
import json
import os
import platform
import random
import socket
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype

from netlab.lab import (
    REPO_ROOT,
    Host,
    Lab,
    LabError,
    lab_available,
    netns_socket,
    poll_until,
    run,
)
from netlab.mdns_probe import Sender

from . import compiled, procstat, report, workload
from .dnsperf import PerfResult, dnsperf
from .mdns_peer import _packets, _records
from .servers import Gateway, Knot, Nsd
from .traffic import AvahiBrowser, Capture

VLANS = {"trusted": 10, "iot": 20, "guest": 30}
PHASES = ("startup", "memory", "udp", "tcp", "cold", "idle", "reflector", "widearea")
PUBLISHERS_PER_VLAN = 2  # host namespaces running python-zeroconf responders per VLAN
MB = 1024 * 1024


@dataclass
class Options:
    out: Path = REPO_ROOT / "loadtest" / "results"
    phases: Sequence[str] = PHASES
    services: int = 200  # realistic set for throughput and cold lookups
    seconds: float = 10.0  # per dnsperf run
    repeats: int = 3  # runs per server and kind (alternating): best q/s, median p99
    memory_steps: Sequence[int] = (100, 1_000, 10_000)
    idle_services: int = 100
    idle_warmup: float = 120.0  # s after start not counted (the first browse doublings)
    idle_window: float = 240.0  # s counted, then extrapolated to an hour
    cold_samples: int = 40  # per kind (A, SRV); PTR browses: half as many
    startup_runs: int = 5
    widearea_services: int = 1_000  # learned at once by a gateway that publishes them all
    client_core: int = 0
    server_core: int = 1
    quick: bool = False  # the smoke test's size: seconds, not minutes
    pure: bool = False  # run the gateway as pure Python (default: compiled, build_ext.py)
    plot: bool = True
    log: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr, flush=True))

    @classmethod
    def smoke(cls, out: Path) -> Options:
        return cls(
            out=out,
            phases=("startup", "memory", "udp", "tcp", "cold", "idle", "widearea"),
            services=24,
            seconds=1.0,
            repeats=1,
            memory_steps=(20,),
            idle_services=12,
            idle_warmup=1.0,
            idle_window=2.0,
            cold_samples=2,
            startup_runs=1,
            widearea_services=24,
            quick=True,
            plot=False,
        )


# --- the lab and its population ------------------------------------------------------------


class World:
    """The lab, its publisher namespaces and the generated service set."""

    def __init__(self, lab: Lab, opts: Options) -> None:
        self.lab = lab
        self.opts = opts
        self.domains = {name: f"{name}.home.arpa." for name in VLANS}
        self.publisher_hosts: dict[str, list[Host]] = {}
        self.peer_hosts: dict[str, Host] = {}
        for vlan in VLANS:
            self.publisher_hosts[vlan] = [lab.add_host(vlan) for _ in range(PUBLISHERS_PER_VLAN)]
            self.peer_hosts[vlan] = lab.add_host(vlan)
        lab.wait_ipv6_ready()
        self.work = lab.workdir
        self.publishers: list[Any] = []

    # python-zeroconf responders holding the devices' services
    def start_publishers(self, devs: Sequence[workload.Device], timeout: float = 60.0) -> None:
        groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for i, d in enumerate([d for d in devs]):
            hosts = self.publisher_hosts[d.vlan]
            key = (d.vlan, i % len(hosts))
            for s in d.services:
                groups.setdefault(key, []).append(
                    {
                        "name": s.instance,
                        "type": s.type,
                        "port": s.port,
                        "txt": list(s.txt),
                        "server": f"{d.host}.local.",
                        "addresses": [d.ipv4, d.ipv6],
                    }
                )
        procs = []
        for (vlan, idx), services in groups.items():
            host = self.publisher_hosts[vlan][idx]
            procs.append(
                self._python(
                    host,
                    "loadtest.zc_devices",
                    {"interfaces": [host.ipv4], "services": services},
                    f"zc-{host.name}",
                )
            )
        for proc, log in procs:
            _wait_line(proc, log, '"ready"', timeout)
        self.publishers += [p for p, _ in procs]

    def stop_publishers(self) -> None:
        for proc in self.publishers:
            with contextlib.suppress(Exception):
                proc.terminate()
        for proc in self.publishers:
            with contextlib.suppress(Exception):
                proc.wait(10.0)
        self.publishers.clear()

    def _python(self, host: Host, module: str, cfg: dict[str, Any], name: str) -> tuple[Any, Path]:
        log = self.work / f"{name}.log"
        cfg_path = self.work / f"{name}.json"
        cfg_path.write_text(json.dumps(cfg))
        with log.open("wb") as out:  # a restarted peer must not find its old "ready" line
            proc = self.lab.popen(
                host.ns,
                sys.executable,
                "-u",
                "-m",
                module,
                f"@{cfg_path}",
                name=name,
                stdout=out,
                stderr=out,
                cwd=str(REPO_ROOT),
                env=_env(),
            )
        return proc, log

    def peer(self, vlan: str, cfg: dict[str, Any], name: str) -> tuple[Any, Path]:
        host = self.peer_hosts[vlan]
        return self._python(host, "loadtest.mdns_peer", {"address": host.ipv4, **cfg}, name)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def _wait_line(proc: Any, log: Path, needle: str, timeout: float) -> None:
    def seen() -> bool:
        text = log.read_text(errors="replace")
        if needle in text:
            return True
        if proc.poll() is not None:
            raise LabError(f"{log.name}: exited {proc.returncode}:\n{text[-2000:]}")
        return False

    poll_until(seen, timeout, interval=0.1, message=f"{needle} in {log.name}")


def _query(
    ns: str, addr: str, port: int, name: str, rdtype: str, timeout: float = 3.0
) -> tuple[float | None, dns.message.Message | None]:
    """(seconds to the reply, reply) for one UDP query from namespace ``ns``."""
    q = dns.message.make_query(name, rdtype, use_edns=0, payload=1232)
    sock = netns_socket(ns, socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        sock.connect((addr, port))
        sock.settimeout(timeout)
        t0 = time.monotonic()
        sock.send(q.to_wire())
        try:
            while True:
                data = sock.recv(65535)
                reply = dns.message.from_wire(data)
                if reply.id == q.id:
                    return time.monotonic() - t0, reply
        except TimeoutError:
            return None, None


def _wait_records(gw: Gateway, expected: int, timeout: float, stall: float = 15.0) -> int:
    """Poll the gateway's store size until it holds ``expected`` records, or time runs out, or
    it stops growing for ``stall`` seconds."""
    start = time.monotonic()
    held, last, last_change = 0, -1, start
    while time.monotonic() - start < timeout:
        held = gw.store_records()
        if held >= expected:
            break
        now = time.monotonic()
        if held != last:
            last, last_change = held, now
        elif now - last_change > stall:
            break
        time.sleep(0.5)
    return held


def _expected_records(devs: Sequence[workload.Device]) -> int:
    total = 0
    for vlan in VLANS:
        total += len(set(workload.records([d for d in devs if d.vlan == vlan])))
    return total


# --- phases ---------------------------------------------------------------------------------


def phase_startup(w: World, opts: Options, res: dict[str, Any]) -> None:
    """Time from exec to the first answer, with an empty network (median of several starts)."""
    gw_times, nsd_times = [], []
    first_rss, rest_rss = [], []
    zones = workload.zones(workload.devices(VLANS, opts.services), w.domains)
    for _ in range(opts.startup_runs):
        gw = Gateway(w.lab, core=opts.server_core)
        try:
            gw.start()
            assert gw.started_in is not None
            gw_times.append(gw.started_in)
            first_rss.append(gw.rss())
            rest_rss.append(gw.rss_at_rest())  # after the timing: it is exec to first answer
        finally:
            gw.stop()
        nsd = Nsd(w.lab, zones, core=opts.server_core)
        try:
            nsd.start()
            assert nsd.started_in is not None
            nsd_times.append(nsd.started_in)
        finally:
            nsd.stop()
    res["startup"] = {
        "gateway_s": [round(t, 3) for t in gw_times],
        "gateway_median_s": round(statistics.median(gw_times), 3),
        "gateway_first_answer_rss_mb": round(statistics.median(first_rss) / MB, 1),
        "gateway_idle_rss_mb": round(statistics.median(rest_rss) / MB, 1),
        "nsd_s": [round(t, 3) for t in nsd_times],
        "nsd_median_s": round(statistics.median(nsd_times), 3),
        "what": "exec of the server process to its first DNS answer (UDP), empty network; "
        "the gateway's VmRSS (medians) at that answer (gateway_first_answer_rss_mb: before "
        "the late imports of aiohttp and prometheus_client) and at rest (gateway_idle_rss_mb: "
        "HTTP up, /metrics read once, settled)",
    }


AVAHI_CACHE_ENTRIES = 200_000  # avahi-daemon.conf cache-entries-max (per interface and family)
AVAHI_REANNOUNCE = 3  # rounds of the same announcements again while avahi holds fewer records


def phase_memory(w: World, opts: Options, res: dict[str, Any]) -> None:
    """RSS with 100 / 1,000 / 10,000 services announced over real mDNS (cumulative), of the
    gateway (its HTTP surface on, as by default: aiohttp loaded) and of avahi-daemon hearing
    the same announcements on the same bridges (no browsing, its cache raised to hold them)."""
    top = max(opts.memory_steps)
    devs = workload.spread_types(
        workload.devices(VLANS, top, seed=workload.SEED + 1, balanced=True)
    )
    gw = Gateway(w.lab, core=None)
    avahi = AvahiBrowser(w.lab, browse=False, cache_entries_max=AVAHI_CACHE_ENTRIES)
    rows: list[dict[str, Any]] = []
    done = 0  # devices announced so far
    avahi_base = 0
    try:
        avahi.start()
        avahi_base = avahi.rss()
        gw.start()
        base = gw.rss_at_rest()  # fully up (aiohttp loaded), as it is for every step
        for step in sorted(opts.memory_steps):
            upto, count = done, 0
            while upto < len(devs) and count < step:
                count = workload.service_count(devs[: upto + 1])
                upto += 1
            batch = devs[done:upto]
            done = upto
            t0 = time.monotonic()
            _announce(w, batch, 300, f"{step}")
            expected = _expected_records(devs[:done])
            held = _wait_records(gw, expected, 60.0)
            settle = time.monotonic() - t0
            rss_store = gw.rss()
            avahi_held = _wait_avahi(avahi, expected, 20.0)
            for again in range(AVAHI_REANNOUNCE):
                if avahi_held >= expected:
                    break
                # avahi missed some of the burst (the gateway did not): the same records
                # again, slower; the gateway only refreshes what it holds
                _announce(w, batch, 100, f"{step}-again{again}")
                avahi_held = _wait_avahi(avahi, expected, 20.0)
            avahi_rss = avahi.rss()
            # every name's answer pre-rendered too (what a busy network's clients cause)
            pool = workload.question_pool(devs[:done], w.domains)
            questions = [(n, t) for t, names in pool.items() for n in names]
            data = w.work / f"memory-{step}.bin"
            data.write_bytes(workload.dnsperf_binary(questions))
            warm = _perf(w, gw, data, 120, opts.client_core, clients=1, outstanding=20, runs=1)
            rows.append(
                {
                    "services": workload.service_count(devs[:done]),
                    "records_expected": expected,
                    "records_held": held,
                    "rss_mb": round(rss_store / MB, 1),
                    "rss_warm_mb": round(gw.rss() / MB, 1),
                    "answers_prerendered": warm.completed,
                    "populate_s": round(settle, 1),
                    "avahi_records": avahi_held,
                    "avahi_rss_mb": round(avahi_rss / MB, 1),
                }
            )
            opts.log(f"memory: {rows[-1]}")
    finally:
        gw.stop()
        avahi.stop()
    res["memory"] = {
        "baseline_rss_mb": round(base / MB, 1),
        "avahi_baseline_rss_mb": round(avahi_base / MB, 1),
        "steps": rows,
        "per_1000_services": per_thousand(rows),
        "what": "gateway VmRSS at rest with no services (baseline_rss_mb: HTTP up, aiohttp "
        "and prometheus_client loaded, /metrics read once, settled), after the services were "
        "announced over mDNS (rss_mb), and after every name was queried once so each answer "
        "is pre-rendered (rss_warm_mb); avahi-daemon's (no browsing, cache-entries-max "
        f"{AVAHI_CACHE_ENTRIES}) holding the same announcements (avahi_rss_mb, avahi_records "
        "from its cache dump); per_1000_services: RSS growth between the two largest steps",
    }


def _announce(w: World, batch: Sequence[workload.Device], rate: int, name: str) -> None:
    """The devices' records announced by the bulk announcer on their VLANs, ``rate`` packets/s."""
    peers = []
    for vlan in VLANS:
        recs = [
            [o, t, r, 4500] for o, t, r in workload.records([d for d in batch if d.vlan == vlan])
        ]
        if recs:
            peers.append(
                w.peer(
                    vlan,
                    {"mode": "announce", "records": recs, "rate": rate},
                    f"announce-{vlan}-{name}",
                )
            )
    for proc, log in peers:
        _wait_line(proc, log, '"done"', 300.0)


def per_thousand(rows: Sequence[dict[str, Any]]) -> dict[str, float] | None:
    """MB of RSS per extra 1,000 services, between the two largest steps."""
    if len(rows) < 2:
        return None
    a, b = rows[-2], rows[-1]
    thousands = (b["services"] - a["services"]) / 1000
    if thousands <= 0:
        return None
    return {
        key: round((b[key] - a[key]) / thousands, 2)
        for key in ("rss_mb", "rss_warm_mb", "avahi_rss_mb")
    }


def _wait_avahi(avahi: AvahiBrowser, expected: int, timeout: float) -> int:
    """avahi's cached records once it holds ``expected`` (or what it holds at ``timeout``)."""
    deadline = time.monotonic() + timeout
    held = avahi.cached_records()
    while held < expected and time.monotonic() < deadline:
        time.sleep(1.0)  # a cache dump logs every record: not more often than this
        held = avahi.cached_records()
    return held


def _throughput(
    w: World,
    opts: Options,
    res: dict[str, Any],
    transport: str,
    servers: dict[str, Any],
    data: Path,
) -> None:
    out: dict[str, Any] = {}
    best: dict[str, PerfResult] = {}
    clients = 4 if transport == "udp" else 8

    def run(name: str, srv: Any, log: str, **kw: Any) -> PerfResult:
        """One dnsperf run of this transport against one server."""
        return dnsperf(
            w.lab.gw,
            server=name,
            pid=srv.pid,
            addr=srv.addr,
            port=srv.port,
            data=data,
            transport=transport,
            seconds=opts.seconds,
            clients=clients,
            core=opts.client_core,
            log=w.work / f"{transport}-{name}-{log}.txt",
            **kw,
        )

    for i in range(opts.repeats):
        for name, srv in servers.items():
            r = run(name, srv, f"max{i}")
            opts.log(
                f"{transport} {name} max: {r.qps:.0f} q/s, "
                f"{r.cpu_us_per_query or 0:.1f} us CPU/query"
            )
            if name not in best or r.qps > best[name].qps:
                best[name] = r
    gw_max = best["gateway"].qps
    half = max(100.0, gw_max / 2)
    # latency: verbose runs (a line per query), alternating servers, each repeated; the run
    # with the median p99 is reported (tails on a shared 2-core machine move with whatever
    # else runs, for both servers alike), every run's p99 is kept
    runs: dict[str, dict[str, list[PerfResult]]] = {n: {"max": [], "half": []} for n in servers}
    for i in range(opts.repeats):
        for mode, rate in (("max", None), ("half", half)):
            for name, srv in servers.items():
                r = run(name, srv, f"{mode}-lat{i}", qps=rate, verbose=True)
                runs[name][mode].append(r)
    for name in servers:
        entry: dict[str, Any] = {"max": best[name].as_dict()}
        for mode, label in (("max", "max_latency"), ("half", "half_load")):
            ordered = sorted(runs[name][mode], key=lambda r: r.p99_ms or 0.0)
            entry[label] = ordered[len(ordered) // 2].as_dict()  # of two: the higher
            entry[label]["p99_ms_all_runs"] = [r.p99_ms for r in runs[name][mode]]
        opts.log(
            f"{transport} {name}: p99 at max {entry['max_latency']['p99_ms_all_runs']} "
            f"ms, at {half:.0f} q/s {entry['half_load']['p99_ms_all_runs']} ms"
        )
        out[name] = entry
    g, n = best["gateway"], best["nsd"]
    out["ratios"] = {
        "qps_gateway_over_nsd": _ratio(g.qps, n.qps),
        "cpu_per_query_gateway_over_nsd": _ratio(g.cpu_us_per_query, n.cpu_us_per_query),
    }
    out["half_load_qps"] = round(half)
    res[transport] = out


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def phase_throughput(
    w: World, opts: Options, res: dict[str, Any], transports: Sequence[str]
) -> None:
    devs = workload.devices(VLANS, opts.services)
    zones = workload.zones(devs, w.domains)
    questions = workload.query_list(devs, w.domains, 10_000)
    data = w.work / "queries.bin"
    data.write_bytes(workload.dnsperf_binary(questions))
    pool = workload.question_pool(devs, w.domains)
    every = w.work / "every-name.bin"
    every.write_bytes(workload.dnsperf_binary([(n, t) for t, ns in pool.items() for n in ns]))
    w.start_publishers(devs)
    gw = Gateway(w.lab, core=opts.server_core)
    nsd = Nsd(w.lab, zones, core=opts.server_core)
    try:
        gw.start()
        nsd.start()
        expected = _expected_records(devs)
        held = _wait_records(gw, expected, 90.0)
        # one pass over every name: checks both serve the same names, and pre-renders answers
        checks = {}
        for name, srv in (("gateway", gw), ("nsd", nsd)):
            chk = dnsperf(
                w.lab.gw,
                server=name,
                pid=srv.pid,
                addr=srv.addr,
                port=srv.port,
                data=every,
                seconds=60,
                clients=1,
                outstanding=10,
                core=opts.client_core,
                runs=1,
            )
            checks[name] = chk.rcodes
        bad = {k: v for k, v in checks.items() if set(v) != {"NOERROR"}}
        if bad:
            raise LabError(f"not every name answered NOERROR: {bad}; see {w.work}")
        mismatches = _compare(w, gw, nsd, pool)
        if mismatches:
            raise LabError("the gateway and NSD answer differently:\n" + "\n".join(mismatches))
        res["workload"] = {
            "services": workload.service_count(devs),
            "devices": len(devs),
            "kinds": _kinds(devs),
            "records_expected": expected,
            "records_held": held,
            "questions_in_file": len(questions),
            "mix": dict(workload.MIX),
            "names": sum(len(v) for v in pool.values()),
            "every_name_rcodes": checks,
        }
        opts.log(f"workload: {res['workload']}")
        for transport in transports:
            _throughput(w, opts, res, transport, {"gateway": gw, "nsd": nsd}, data)
        res.setdefault("gateway_counters", {}).update(
            {k: v for k, v in gw.metrics().items() if k.startswith("mdns_gateway_dns_")}
        )
        if "cold" in opts.phases:
            phase_cold(w, opts, res, gw)
    finally:
        nsd.stop()
        gw.stop()
        w.stop_publishers()


def _compare(
    w: World, gw: Gateway, nsd: Nsd, pool: dict[str, list[str]], per_type: int = 10
) -> list[str]:
    """Both servers give the same answer RRsets for a sample of names (TTL aside; NSD
    lower-cases names inside rdata, so the comparison ignores case)."""
    rng = random.Random(workload.SEED)
    out = []
    for rtype, names in pool.items():
        for name in rng.sample(names, min(per_type, len(names))):
            answers = []
            for srv in (gw, nsd):
                _, reply = _query(w.lab.gw, srv.addr, srv.port, name, rtype)
                answers.append(
                    sorted(
                        rd.to_text().lower() for rr in (reply.answer if reply else []) for rd in rr
                    )
                )
            if answers[0] != answers[1]:
                out.append(f"{name} {rtype}: gateway {answers[0]} nsd {answers[1]}")
    return out


def _kinds(devs: Sequence[workload.Device]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in devs:
        out[d.kind] = out.get(d.kind, 0) + len(d.services)
    return out


def phase_cold(w: World, opts: Options, res: dict[str, Any], gw: Gateway) -> None:
    """Cache-miss lookups of records only a quiet device (answers, never announces) holds."""
    n = opts.cold_samples
    names: dict[str, list[tuple[str, str]]] = {"A": [], "SRV": [], "PTR": []}
    peers = []
    for vlan, vid in VLANS.items():
        recs: list[list[Any]] = []
        for i in range(n):
            host = f"cold-{vid}-{i}.local."
            recs += [
                [host, "A", f"10.{vid}.200.{i % 250 + 1}", 120],
                [host, "AAAA", f"fd00:{vid}::c01d:{i:x}", 120],
            ]
            inst = f"Cold Printer {vid}-{i}._ipp._tcp.local."
            srv_host = f"coldsrv-{vid}-{i}.local."
            recs += [
                [inst.replace(" ", "\\032"), "SRV", f"0 0 631 {srv_host}", 120],
                [inst.replace(" ", "\\032"), "TXT", '"rp=ipp/print"', 4500],
                [srv_host, "A", f"10.{vid}.201.{i % 250 + 1}", 120],
            ]
            stype = f"_cold{vid}x{i}._tcp.local."
            for k in range(2):
                recs.append([stype, "PTR", f"Cold\\032Device\\032{k}.{stype}", 4500])
            names["A"].append((vlan, host))
            names["SRV"].append((vlan, inst))
            names["PTR"].append((vlan, stype))
        peers.append(w.peer(vlan, {"mode": "respond", "records": recs}, f"respond-{vlan}"))
    for proc, log in peers:
        _wait_line(proc, log, '"ready"', 30.0)
    out: dict[str, Any] = {}
    rng = random.Random(workload.SEED)
    try:
        for kind, count in (("A", n), ("SRV", n), ("PTR", max(1, n // 2))):
            pool = names[kind]
            rng.shuffle(pool)
            times, failures = [], 0
            for j, (vlan, name) in enumerate(pool[:count]):
                # alternate .local (the * view asks every VLAN) and the VLAN's wide-area domain
                qname = name if j % 2 == 0 else name.replace(".local.", "." + w.domains[vlan])
                took, reply = _query(w.lab.gw, gw.addr, gw.port, qname, kind)
                if (
                    took is None
                    or reply is None
                    or reply.rcode() != dns.rcode.NOERROR
                    or not reply.answer
                ):
                    failures += 1
                    continue
                times.append(took * 1000)
            times.sort()
            out[kind] = {
                "lookups": count,
                "answered": len(times),
                "failed": failures,
                "p50_ms": _pct(times, 0.50),
                "p95_ms": _pct(times, 0.95),
                "max_ms": round(times[-1], 1) if times else None,
            }
            opts.log(f"cold {kind}: {out[kind]}")
    finally:
        for proc, _ in peers:
            with contextlib.suppress(Exception):
                proc.terminate()
                proc.wait(5.0)
    out["what"] = (
        "first query for a name only a quiet device holds (it answers mDNS queries "
        "as RFC 6762 says but never announces): query sent -> DNS answer received"
    )
    res["cold"] = out


def _pct(values: list[float], q: float) -> float | None:
    from .dnsperf import percentile

    v = percentile(values, q)
    return round(v, 1) if v is not None else None


def phase_idle(w: World, opts: Options, res: dict[str, Any]) -> None:
    """mDNS packets the router-side process sends on a quiet network, per VLAN per hour."""
    devs = workload.devices(VLANS, opts.idle_services)
    w.start_publishers(devs)
    out: dict[str, Any] = {
        "services": workload.service_count(devs),
        "warmup_s": opts.idle_warmup,
        "window_s": opts.idle_window,
    }
    try:
        time.sleep(2.0)  # publishers' own announcements are over
        for name in ("gateway", "avahi"):
            srv: Any = Gateway(w.lab, core=None) if name == "gateway" else AvahiBrowser(w.lab)
            cap = Capture(w.lab, name)
            try:
                srv.start()
                time.sleep(opts.idle_warmup)
                cap.start()
                time.sleep(opts.idle_window)
                counts = cap.stop()
                extra: dict[str, Any] = {}
                if name == "gateway":
                    extra["records_held"] = srv.store_records()
                    extra["comings_and_goings"] = _comings_and_goings(
                        w, srv, 2 if opts.quick else IDLE_ARRIVALS
                    )
                else:
                    extra["services_resolved"] = srv.resolved()
            finally:
                srv.stop()
            per_hour = {v: round(c["packets"] * 3600 / opts.idle_window) for v, c in counts.items()}
            by_kind = cap.kinds()
            steady = {v: _steady_state(k, opts.idle_window) for v, k in by_kind.items()}
            out[name] = {
                "per_vlan": counts,
                "packets_per_vlan_hour": per_hour,
                "mean_packets_per_vlan_hour": round(statistics.mean(per_hour.values())),
                "kinds_per_vlan": by_kind,
                "steady_state_per_vlan_hour": steady,
                "mean_steady_state_per_vlan_hour": round(statistics.mean(steady.values())),
                **extra,
            }
            opts.log(f"idle {name}: {out[name]}")
    finally:
        w.stop_publishers()
    out["ratio_gateway_over_avahi"] = _ratio(
        out["gateway"]["mean_packets_per_vlan_hour"], out["avahi"]["mean_packets_per_vlan_hour"]
    )
    out["ratio_steady_state"] = _ratio(
        out["gateway"]["mean_steady_state_per_vlan_hour"],
        out["avahi"]["mean_steady_state_per_vlan_hour"],
    )
    out["what"] = (
        "packets sent by the process itself (tcpdump -Q out on each VLAN bridge: the "
        "responders' own packets are not counted, nor forwarded ones) "
        f"from {opts.idle_warmup:g} s to {opts.idle_warmup + opts.idle_window:g} s "
        "after its start, x 3600 / window; avahi: avahi-daemon 0.8 publishing "
        "nothing, with avahi-browse --all --resolve over a private D-Bus. Steady state "
        "(computed, not counted): both double their browse intervals up to 60 min (RFC 6762 "
        "§5.2; avahi's querier.c likewise), so in the window they are still doubling; an hour "
        "of steady state is one browse round (the window's browse-only queries divided by "
        "the times the service-type enumeration was asked over IPv4 in it) plus the other "
        "queries and responses at the window's rate. Comings and goings: a device on the "
        "trusted VLAN multicasts a new service (PTR, SRV, TXT, A, cache-flush) and later its "
        "goodbye (TTL 0); the time from each send to the first DNS answer (SRV over UDP to "
        "the gateway, polled every 10 ms) that has it, or no longer has it"
    )
    res["idle"] = out


IDLE_ARRIVALS = 5  # services that come and go after the idle window (each timed both ways)


def _steady_state(kinds: dict[str, Any], window: float) -> int:
    """Packets per hour once the browses have doubled to an hour (see phase_idle's "what")."""
    rest = (kinds["other_query"] + kinds["response"]) * 3600 / window
    rounds = kinds["rounds"]
    browses = kinds["browse"] / rounds if rounds else kinds["browse"] * 3600 / window
    return round(browses + rest)


def _comings_and_goings(w: World, gw: Gateway, count: int) -> dict[str, Any]:
    """A new service multicast by a device (raw, so the send time is exact), then its goodbye:
    seconds from each send to the gateway's DNS answer having it / no longer having it."""
    host = w.peer_hosts["trusted"]
    sender = Sender(host)
    arrive: list[float] = []
    gone: list[float] = []
    try:
        for i in range(count):
            inst = f"arrival-{i}._arrival._tcp.local."
            raw = [
                ["_arrival._tcp.local.", "PTR", inst, 4500],
                [inst, "SRV", f"0 0 {9000 + i} arrival{i}.local.", 120],
                [inst, "TXT", f'"n={i}"', 4500],
                [f"arrival{i}.local.", "A", host.ipv4, 120],
            ]
            (hello,) = _packets(_records(raw), 1400)
            (bye,) = _packets(_records([[*r[:3], 0] for r in raw]), 1400)
            for data, present, times in ((hello, True, arrive), (bye, False, gone)):
                t0 = time.monotonic()
                sender.send(data)
                took = _poll_answer(w, gw, inst, present, t0)
                if took is not None:
                    times.append(took)
    finally:
        sender.close()
    return {
        "count": count,
        "new_service_to_answer_ms": _spread(arrive),
        "goodbye_to_gone_ms": _spread(gone),
    }


def _poll_answer(w: World, gw: Gateway, name: str, present: bool, t0: float) -> float | None:
    """Seconds from ``t0`` until the gateway's answer has an SRV for ``name`` (``present``:
    when that answer arrived) or lacks it (when the first query that found it gone was sent:
    a miss waits for mDNS, ``dns.ondemand_timeout``, before it is answered); None if that did
    not happen within 10 s."""
    while time.monotonic() - t0 < 10.0:
        sent = time.monotonic()
        _, reply = _query(w.lab.gw, gw.addr, gw.port, name, "SRV")
        has = reply is not None and any(rr.rdtype == dns.rdatatype.SRV for rr in reply.answer)
        if reply is not None and has == present:
            return (time.monotonic() if present else sent) - t0
        time.sleep(0.01)
    return None


def _spread(seconds: list[float]) -> dict[str, Any]:
    ms = sorted(s * 1000 for s in seconds)
    return {
        "measured": len(ms),
        "p50": _pct(ms, 0.50),
        "max": round(ms[-1], 1) if ms else None,
    }


WIDE_POLICY = """apiVersion: mdnsgateway.io/v1alpha1
kind: ServicePolicy
metadata: {name: everything-wide-area}
spec: {from: [trusted, iot], to: [trusted], services: ["*"], wideArea: true}
"""
# the VLANs whose subdomains the README's knot.conf grants the key (its update-owner-name)
WIDE_VLANS = ("trusted", "iot")
WIDEAREA_RECONCILE = 10.0  # s, wide_area.reconcile_interval in the benchmark: its least, so
#   zone transfers (every published record) run during the throughput runs too


def phase_widearea(w: World, opts: Options, res: dict[str, Any]) -> None:
    """Wide-area publishing into knotd: a gateway starting beside ``widearea_services``
    services learns them all at once (browsing) and publishes them (time until the zone holds
    every SRV, by TSIG AXFR polling); and cached-answer UDP throughput (dnsperf) of a gateway
    publishing (transfers every 10 s) and of one that does not, alternating, each repeated."""
    devs = workload.devices({v: VLANS[v] for v in WIDE_VLANS}, opts.widearea_services)
    services = workload.service_count(devs)
    expected = _expected_records(devs)
    data = w.work / "widearea-queries.bin"
    data.write_bytes(workload.dnsperf_binary(workload.query_list(devs, w.domains, 10_000)))
    policies = w.work / "widearea-policies"
    policies.mkdir(exist_ok=True)
    (policies / "wide.yaml").write_text(WIDE_POLICY)
    knot = Knot(w.lab)
    qps: dict[str, list[float]] = {"without": [], "with": []}
    published: list[dict[str, Any]] = []
    counters: dict[str, float] = {}
    w.start_publishers(devs)
    try:
        for i in range(opts.repeats):
            for kind in ("without", "with"):
                overrides: dict[str, Any] = {"policies": str(policies)}
                if kind == "with":
                    knot.stop()
                    knot.start()  # an empty zone: every service published anew
                    overrides["wide_area"] = knot.wide_area_config(WIDEAREA_RECONCILE)
                gw = Gateway(w.lab, core=opts.server_core, overrides=overrides)
                try:
                    gw.start()
                    t0 = time.monotonic()
                    held = _wait_records(gw, expected, 120.0)
                    learned = time.monotonic() - t0
                    if kind == "with":
                        srv = 0

                        def all_published() -> bool:
                            nonlocal srv
                            srv = knot.counts().get("SRV", 0)
                            return srv >= services

                        with contextlib.suppress(TimeoutError):
                            poll_until(all_published, 60.0, interval=0.2)
                        done = time.monotonic() - t0
                        published.append(
                            {
                                "services": services,
                                "services_published": srv,
                                "records_in_zone": sum(knot.counts().values()),
                                "learned_s": round(learned, 2),
                                "published_s": round(done, 2) if srv >= services else None,
                                "after_learned_s": round(done - learned, 2)
                                if srv >= services
                                else None,
                                "records_held": held,
                            }
                        )
                        opts.log(f"widearea publish: {published[-1]}")
                    # warm first: every asked answer pre-rendered, as in the udp phase
                    _perf(w, gw, data, min(opts.seconds, 3.0), opts.client_core, runs=1)
                    log = w.work / f"widearea-{kind}-{i}.txt"
                    r = _perf(w, gw, data, opts.seconds, opts.client_core, log=log)
                    qps[kind].append(round(r.qps))
                    opts.log(f"widearea udp {kind} publishing: {r.qps:.0f} q/s")
                    if kind == "with":
                        counters = {k: v for k, v in gw.metrics().items() if "_widearea_" in k}
                finally:
                    gw.stop()
    finally:
        knot.stop()
        w.stop_publishers()
    res["widearea"] = {
        "publish": published,
        "udp_qps": qps,
        **_noise(qps["without"], qps["with"]),
        "gateway_counters": counters,
        "what": f"{services} services on python-zeroconf publishers, learned at once by a "
        "starting gateway (browsing) and published into knotd (README knot.conf, TSIG) on "
        "loopback; published_s: gateway start to every SRV in the zone (kdig AXFR polled "
        "every 0.2 s), after_learned_s: from the store holding every record (polled every "
        "0.5 s); udp_qps: dnsperf cached answers (4 clients), gateways with and without "
        f"wide_area alternating, each {opts.seconds:g} s, transfers every "
        f"{WIDEAREA_RECONCILE:g} s while publishing",
    }


def _perf(w: World, gw: Gateway, data: Path, seconds: float, core: int, **kw: Any) -> PerfResult:
    """One dnsperf run of ``data`` against the gateway (UDP, 4 clients unless ``kw`` says)."""
    return dnsperf(
        w.lab.gw,
        server="gateway",
        pid=gw.pid,
        addr=gw.addr,
        port=gw.port,
        data=data,
        seconds=seconds,
        core=core,
        **kw,
    )


def _noise(without: list[float], with_: list[float]) -> dict[str, Any]:
    """Medians, their ratio, each side's run-to-run spread ((max - min) / median) and whether
    the medians differ by no more than the larger spread."""
    if not without or not with_:
        return {}
    a, b = statistics.median(without), statistics.median(with_)
    spread = [
        round((max(v) - min(v)) / statistics.median(v), 3) if len(v) > 1 else None
        for v in (without, with_)
    ]
    known = [x for x in spread if x is not None]
    noise = max(known) if known else None
    return {
        "udp_qps_median_without": round(a),
        "udp_qps_median_with": round(b),
        "ratio_with_over_without": _ratio(b, a),
        "spread_without": spread[0],
        "spread_with": spread[1],
        "within_noise": None if noise is None else abs(b - a) / a <= noise,
    }


# The reflector has its own benchmark, loadtest/reflector_bench.py (owned with
# bridge/reflector/: its own two-VLAN lab, rising offered rates, ours vs avahi-daemon).
# This hook runs it through its command line and files a summary of its JSON.
REFLECTOR_BENCH = "loadtest.reflector_bench"


def phase_reflector(opts: Options, res: dict[str, Any], out_dir: Path) -> None:
    try:
        mod = importlib.import_module(REFLECTOR_BENCH)
    except ModuleNotFoundError as exc:
        if exc.name != REFLECTOR_BENCH:
            raise
        res["reflector"] = {"status": f"not run: {REFLECTOR_BENCH} is missing"}
        return
    out = out_dir / "reflector_bench.json"
    duration = 0.5 if opts.quick else 2.0
    code = mod.main(
        ["--duration", str(duration), "--out", str(out), *(["--pure"] if opts.pure else [])]
    )
    if code != 0 or not out.exists():
        res["reflector"] = {"status": f"{REFLECTOR_BENCH} exited {code}"}
        return
    data = json.loads(out.read_text())
    summary: dict[str, Any] = {"duration_per_step_s": duration, "details": str(out)}
    for kind in ("response", "query"):
        ours = _get(data, "ours", "workloads", kind) or {}
        avahi = _get(data, "avahi", "workloads", kind) or {}
        summary[kind] = {
            "zero_loss_pps": ours.get("zero_loss_pps"),
            "avahi_zero_loss_pps": avahi.get("zero_loss_pps"),
            "cpu_us_per_packet": ours.get("cpu_us_per_packet"),
            "avahi_cpu_us_per_packet": avahi.get("cpu_us_per_packet"),
            "pps_ratio": _ratio(ours.get("zero_loss_pps"), avahi.get("zero_loss_pps")),
        }
    res["reflector"] = summary


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


# --- the run ----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    mem = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    versions: dict[str, str] = {}
    for tool, argv in (
        ("nsd", ["nsd", "-v"]),
        ("dnsperf", ["dnsperf", "-h"]),
        ("avahi", ["avahi-daemon", "--version"]),
    ):
        with contextlib.suppress(Exception):
            p = run(None, *argv, check=False, timeout=10)
            text = p.stdout + p.stderr
            versions[tool] = next(
                (ln.strip() for ln in text.splitlines() if "ersion" in ln or "avahi" in ln), "?"
            )
    with contextlib.suppress(Exception):
        import zeroconf

        versions["zeroconf"] = zeroconf.__version__
    commit = run(
        None, "git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD", check=False
    ).stdout.strip()
    dirty = run(
        None, "git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "bridge", check=False
    ).stdout.strip()
    return {
        "cpu": procstat.cpu_model(),
        "cores": os.cpu_count(),
        "memory_mb": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "commit": commit + ("+uncommitted bridge/" if dirty else ""),
    }


def run_all(opts: Options) -> tuple[dict[str, Any], Path]:
    ok, why = lab_available()
    if not ok:
        raise LabError(f"the benchmark needs the namespace lab: {why}")
    started = time.monotonic()
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    res: dict[str, Any] = {
        "timestamp": stamp,
        "machine": machine(),
        "options": {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in vars(opts).items()
            if k not in ("log", "out")
        },
    }
    opts.out.mkdir(parents=True, exist_ok=True)
    path = opts.out / f"{stamp}.json"

    def save() -> None:  # after every phase: a late failure keeps what was measured
        res["targets"] = report.targets(res)
        res["elapsed_s"] = round(time.monotonic() - started, 1)
        path.write_text(json.dumps(res, indent=2, default=str) + "\n")
        path.with_suffix(".md").write_text(report.markdown(res))

    compiled.use(None if opts.pure or opts.quick else compiled.build())
    res["build"] = compiled.describe()
    with Lab(VLANS) as lab:
        w = World(lab, opts)
        opts.log(f"lab {lab.prefix}: {len(lab.namespaces)} namespaces")
        if "startup" in opts.phases:
            phase_startup(w, opts, res)
            save()
        if "memory" in opts.phases:
            phase_memory(w, opts, res)
            save()
        transports = [t for t in ("udp", "tcp") if t in opts.phases]
        if transports or "cold" in opts.phases:
            phase_throughput(w, opts, res, transports)
            save()
        if "idle" in opts.phases:
            phase_idle(w, opts, res)
            save()
        if "widearea" in opts.phases:
            phase_widearea(w, opts, res)
            save()
    if "reflector" in opts.phases:
        phase_reflector(opts, res, opts.out)
    save()
    if opts.plot:
        with contextlib.suppress(ImportError):
            report.plot(res, path.with_suffix(".png"))
    return res, path
