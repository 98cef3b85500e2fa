"""``python -m loadtest.profile``: the gateway's hot path under dnsperf load, sampled by py-spy.

Builds the same lab and service set as the benchmark, loads the gateway over UDP (or TCP)
with the benchmark's query file and records it with ``py-spy record --native``-less sampling
(``pip install py-spy``, in the test extra). Writes collapsed stacks and an SVG flame graph
to ``loadtest/results/profile-<transport>.{txt,svg}`` and prints the functions with the most
samples on top of the stack (self time) and anywhere in it (total time).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from netlab.lab import Lab

from . import workload
from .dnsperf import dnsperf
from .runner import VLANS, Options, World, _expected_records, _wait_records
from .servers import Gateway


def summarize(collapsed: str, top: int = 25) -> str:
    self_time: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = stack.split(";")
        self_time[frames[-1]] += n
        for f in set(frames):
            total[f] += n
    out = [f"{samples} samples", "", "self:"]
    out += [f"  {n / samples:6.1%}  {f}" for f, n in self_time.most_common(top)]
    out += ["", "total:"]
    out += [f"  {n / samples:6.1%}  {f}" for f, n in total.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.profile", description=__doc__)
    p.add_argument("--transport", choices=["udp", "tcp"], default="udp")
    p.add_argument(
        "--reflector",
        choices=["response", "query"],
        default=None,
        help="profile the reflector instead: this workload of "
        "loadtest.reflector_bench, offered at --rate packets/s",
    )
    p.add_argument("--rate", type=float, default=2000.0)
    p.add_argument(
        "--pure",
        action="store_true",
        help="profile the pure-Python gateway (default: compiled, as the benchmark runs it)",
    )
    p.add_argument(
        "--native",
        action="store_true",
        help="py-spy --native: show C frames (what the compiled modules spend)",
    )
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--services", type=int, default=200)
    p.add_argument("--out", type=Path, default=Options().out)
    args = p.parse_args(argv)
    if shutil.which("py-spy") is None:
        print("py-spy is not installed: pip install py-spy (or the test extra)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    from . import compiled

    compiled.use(None if args.pure else compiled.build())  # as the benchmark runs it
    if args.reflector:
        return profile_reflector(args.reflector, args.rate, args.seconds, args.out, args.native)
    opts = Options(services=args.services)
    raw = args.out / f"profile-{args.transport}.txt"
    with Lab(VLANS) as lab:
        w = World(lab, opts)
        devs = workload.devices(VLANS, opts.services)
        data = w.work / "queries.bin"
        data.write_bytes(workload.dnsperf_binary(workload.query_list(devs, w.domains, 10_000)))
        w.start_publishers(devs)
        gw = Gateway(lab, core=opts.server_core)
        try:
            gw.start()
            _wait_records(gw, _expected_records(devs), 90.0)
            dnsperf(
                lab.gw,
                server="gateway",
                pid=gw.pid,
                addr=gw.addr,
                port=gw.port,
                data=data,
                transport=args.transport,
                seconds=2,
                core=opts.client_core,
            )  # warm
            spy = _spy(gw.pid, args.seconds, raw, args.native)
            r = dnsperf(
                lab.gw,
                server="gateway",
                pid=gw.pid,
                addr=gw.addr,
                port=gw.port,
                data=data,
                transport=args.transport,
                seconds=args.seconds,
                core=opts.client_core,
            )
            spy.wait(args.seconds + 30)
        finally:
            gw.stop()
            w.stop_publishers()
    return _report(
        f"{args.transport}: {r.qps:.0f} q/s under py-spy, "
        f"{r.cpu_us_per_query or 0:.1f} us CPU/query",
        raw,
    )


def _spy(pid: int, seconds: float, raw: Path, native: bool = False) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` into ``raw``; blocking sampling (non-blocking lost most samples
    on this 2-core machine while the load ran on the other core)."""
    return subprocess.Popen(
        [
            "py-spy",
            "record",
            "--pid",
            str(pid),
            "--rate",
            "500",
            "--format",
            "raw",
            "--duration",
            str(int(seconds)),
            "--output",
            str(raw),
            *(["--native"] if native else []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _report(headline: str, raw: Path) -> int:
    print(headline)
    print(summarize(raw.read_text()))
    print(f"collapsed stacks: {raw}", file=sys.stderr)
    return 0


def profile_reflector(
    kind: str, rate: float, seconds: float, out: Path, native: bool = False
) -> int:
    """The reflector benchmark's lab and packets at one rate, sampled by py-spy."""
    from netlab.lab import lab_context
    from netlab.mdns_probe import Sniffer, router_sources

    from .reflector_bench import run_step, start_gateway

    raw = out / f"profile-reflector-{kind}.txt"
    with lab_context({"a": 10, "b": 20}, hosts_per_vlan=1) as lab:
        gw = start_gateway(lab)
        sniffer = Sniffer(lab.hosts_in("b")[0], max_packets=2_000_000)
        try:
            pid = gw.proc.pid
            sender = lab.hosts_in("a")[0]
            routers = router_sources(lab, "b")
            run_step(lab, sender, sniffer, routers, pid, kind, rate, 1.0, 0)  # warm
            spy = _spy(pid, seconds, raw, native)
            step = run_step(lab, sender, sniffer, routers, pid, kind, rate, seconds, 10**7)
            spy.wait(seconds + 30)
        finally:
            sniffer.close()
            gw.stop()
    return _report(
        f"reflector {kind} at {rate:.0f}/s under py-spy: delivered "
        f"{step['delivered']}/{step['sent']}, {step['cpu_us_per_packet']} us "
        "CPU/packet",
        raw,
    )


if __name__ == "__main__":
    sys.exit(main())
