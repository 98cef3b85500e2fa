"""Reflector benchmark: reflected packets/s at zero loss and CPU per packet, ours vs avahi-daemon.

A benchmark, not a test. Run as root (it builds a namespace lab; all traffic stays inside it):

    python -m loadtest.reflector_bench [--duration 2] [--out reflector_bench.json] [--pure]

Lab: router namespace with VLANs a (10) and b (20), one sender host on a and one receiver host
on b. For each reflector in turn (our gateway with ``reflector: {enabled: true}``, its hot-path
modules compiled as build_ext.py builds them unless ``--pure``, and a policy reflecting
everything from a to b; then avahi-daemon with ``[reflector] enable-reflector=yes``, its rate
limit lifted so that we measure its capacity) and each workload (``query``: one QM question;
``response``: an avahi-like announcement of a new service, 6 records with a link-local AAAA,
so ours rebuilds every packet, spread over 512 service types), the sender (a separate process
in the sender's namespace) offers a rising rate for ``--duration`` seconds per step; the
receiver counts which of the offered packets (each carries a unique label) arrived on b.
Every step starts a fresh reflector (the records of earlier steps would otherwise come due
for refresh and expiry during later ones), pinned to core 1, with the sender and the receiver
on core 0. The highest offered rate with every packet delivered is "zero-loss packets/s"; CPU
per packet is the reflector process's CPU time (user + system, /proc) over the step divided by
the packets it delivered. Prints a table and the ratios ours/avahi, and writes everything as
JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.name
import dns.rdata
import dns.rdatatype

from bridge.mdns import wire

from . import compiled

MARK = re.compile(rb"bz(\d{8})")
RATES = [250, 500, 1000, 2000, 3000, 4000, 5000, 6000, 8000, 10000, 12000, 16000, 24000, 32000]
POLICY = """\
apiVersion: mdnsgateway.io/v1alpha1
kind: ServicePolicy
metadata: {name: everything-both-ways}
spec:
  from: [a, b]
  to: [a, b]
  services: ["*"]
  reflect: true
"""


# --- packets -------------------------------------------------------------------------------------


def packet(kind: str, seq: int) -> bytes:
    """One unique packet: ``bz<seq>`` labels it (and keeps every record new)."""
    tag = f"bz{seq:08d}"
    if kind == "query":
        return wire.query(
            [wire.Question(dns.name.from_text(f"{tag}._bench._tcp.local."), dns.rdatatype.SRV)]
        )
    # 512 service types: a type's instance list stays small, as on a real network (one type
    # with tens of thousands of instances is a different test: the browser's, not ours)
    stype = f"_b{seq % 512:03d}._tcp.local."
    inst = dns.name.from_text(f"{tag}.{stype}")
    host = dns.name.from_text(f"{tag}-h.local.")

    def rd(t: str, text: str) -> dns.rdata.Rdata:
        return dns.rdata.from_text("IN", t, text)

    answers = [
        wire.Record(dns.name.from_text(stype), dns.rdatatype.PTR, 4500, rd("PTR", inst.to_text()))
    ]
    extra = [
        wire.Record(inst, dns.rdatatype.SRV, 120, rd("SRV", f"0 0 8080 {host}"), 1, True),
        wire.Record(inst, dns.rdatatype.TXT, 4500, rd("TXT", '"path=/" "v=1"'), 1, True),
        wire.Record(host, dns.rdatatype.A, 120, rd("A", "10.10.0.2"), 1, True),
        wire.Record(host, dns.rdatatype.AAAA, 120, rd("AAAA", "fd00:10::2"), 1, True),
        wire.Record(host, dns.rdatatype.AAAA, 120, rd("AAAA", "fe80::2"), 1, True),
    ]
    return wire.encode(wire.Packet(0, wire.FLAG_QR | wire.FLAG_AA, [], answers, [], extra))


def send_main(argv: list[str]) -> int:
    """Sender process (inside the sender's namespace): ``--send KIND RATE SECONDS FIRST SRC``.
    Prints the number of packets sent. Paced in 5 ms ticks; bounded by count and time."""
    kind, rate, seconds, first, src = argv[0], float(argv[1]), float(argv[2]), int(argv[3]), argv[4]
    total = int(rate * seconds)
    packets = [packet(kind, first + i) for i in range(total)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(src))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.bind((src, 5353))
    start = time.monotonic()
    sent = 0
    while sent < total and time.monotonic() - start < seconds * 3:
        due = min(total, int((time.monotonic() - start) * rate) + 1)
        while sent < due:
            sock.sendto(packets[sent], ("224.0.0.251", 5353))
            sent += 1
        time.sleep(0.005)
    print(sent, f"{time.monotonic() - start:.3f}")
    return 0


# --- the run --------------------------------------------------------------------------------------


def run_step(
    lab: Any,
    sender_host: Any,
    sniffer: Any,
    routers: set[str],
    pid: int,
    kind: str,
    rate: float,
    seconds: float,
    first: int,
) -> dict[str, Any]:
    from loadtest.procstat import cpu_seconds
    from netlab.lab import poll_until

    t0 = time.monotonic()
    with sniffer._lock:
        sniffer.packets.clear()  # earlier steps are counted already
    cpu0 = cpu_seconds(pid)
    proc = lab.popen(
        sender_host.ns,
        sys.executable,
        "-m",
        "loadtest.reflector_bench",
        "--send",
        kind,
        str(rate),
        str(seconds),
        str(first),
        sender_host.ipv4,
        stdout=subprocess.PIPE,
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    out, _ = proc.communicate(timeout=seconds * 3 + 30)
    sent = int(out.split()[0])
    wanted = range(first, first + sent)
    seen: set[int] = set()
    pos = [0]

    def delivered() -> set[int]:
        new = sniffer.packets[pos[0] :]  # appended by the sniffer thread; read incrementally
        pos[0] += len(new)
        for p in new:
            if p.t >= t0 and p.src in routers:
                for m in MARK.findall(p.data):
                    seq_no = int(m)
                    if seq_no in wanted:
                        seen.add(seq_no)
        return seen

    # settle: wait until everything arrived, or nothing more has arrived for half a second
    last = [-1, time.monotonic()]

    def settled() -> bool:
        n = len(delivered())
        if n == sent:
            return True
        if n != last[0]:
            last[0], last[1] = n, time.monotonic()
            return False
        return time.monotonic() - last[1] > 0.5

    poll_until(settled, 30, interval=0.1, message="the receiver to settle")
    got = len(delivered())
    cpu = cpu_seconds(pid) - cpu0
    return {
        "kind": kind,
        "offered_pps": rate,
        "sent": sent,
        "delivered": got,
        "loss": 0.0 if sent == 0 else 1 - got / sent,
        "cpu_seconds": round(cpu, 4),
        "cpu_us_per_packet": round(cpu / got * 1e6, 1) if got else None,
    }


CLIENT_CORE = 0  # this process (the receiver's sniffer thread) and the sender
SERVER_CORE = 1  # the reflector under test, ours or avahi's


def pin(pid: int, core: int) -> None:
    """Put every thread of ``pid`` on ``core`` (as the DNS benchmark pins dnsperf and the
    servers: each side gets a core of its own, so neither measures the other's load)."""
    if len(os.sched_getaffinity(0)) < 2:
        return  # a one-core machine: nothing to separate
    for task in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(task), {core})


def measure(
    lab: Any,
    name: str,
    start: Callable[[], int],
    stop: Callable[[], None],
    seconds: float,
    seq: list[int],
) -> dict[str, Any]:
    """Both ladders; every step on a freshly started reflector (``start`` returns its pid),
    so that a step's figure does not depend on the steps before it: the records of earlier
    steps would otherwise come due for refresh and expiry during later ones."""
    from netlab.mdns_probe import Sniffer, router_sources

    sender_host = lab.hosts_in("a")[0]
    sniffer = Sniffer(lab.hosts_in("b")[0], max_packets=2_000_000)
    routers = router_sources(lab, "b")
    result: dict[str, Any] = {"reflector": name, "workloads": {}}
    try:
        for kind in ("query", "response"):
            steps = []
            best = 0.0
            for rate in RATES:
                pid = start()
                pin(pid, SERVER_CORE)
                try:
                    step = run_step(
                        lab, sender_host, sniffer, routers, pid, kind, rate, seconds, seq[0]
                    )
                finally:
                    stop()
                seq[0] += step["sent"] + 1
                steps.append(step)
                print(
                    f"  {name:8s} {kind:8s} offered {rate:6.0f}/s: delivered "
                    f"{step['delivered']}/{step['sent']}, CPU "
                    f"{step['cpu_us_per_packet']} us/packet",
                    flush=True,
                )
                if step["loss"] > 0:
                    break
                best = rate
            ok = [s for s in steps if s["loss"] == 0 and s["cpu_us_per_packet"]]
            cpu_at_best = ok[-1]["cpu_us_per_packet"] if ok else None
            result["workloads"][kind] = {
                "zero_loss_pps": best,
                "cpu_us_per_packet": cpu_at_best,
                "steps": steps,
            }
    finally:
        sniffer.close()
    return result


def start_gateway(lab: Any) -> Any:
    """Our gateway in the lab's router, reflecting everything between a and b, rate limits
    lifted so that we measure its capacity."""
    from netlab.lab import GatewayProcess

    policies = Path(lab.workdir) / "bench-policies"
    policies.mkdir(exist_ok=True)
    (policies / "all.yaml").write_text(POLICY)
    cfg = {
        "vlans": {
            v.name: {"interface": v.bridge, "domain": f"{v.name}.home.arpa."}
            for v in lab.vlans.values()
        },
        "dns": {"listen": ["127.0.0.1:5300"]},
        "policies": str(policies),
        "reflector": {"enabled": True, "rate": 1_000_000, "burst": 1_000_000},
    }
    argv, env = compiled.launch("warning")
    gw = GatewayProcess(lab, cfg, command=argv, env=env)
    gw.start()
    gw.wait_ready()
    return gw


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    if args_list[:1] == ["--send"]:
        return send_main(args_list[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per rate step")
    parser.add_argument("--out", default="reflector_bench.json", help="JSON results file")
    parser.add_argument(
        "--pure",
        action="store_true",
        help="run our gateway as pure Python from the checkout (default: its "
        "hot-path modules compiled, as build_ext.py builds them)",
    )
    args = parser.parse_args(args_list)
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    pin(os.getpid(), CLIENT_CORE)  # children (sender processes) inherit it

    from loadtest.procstat import cpu_model
    from netlab.lab import AvahiPublisher, Host, lab_context

    compiled.use(None if args.pure else compiled.build())
    results: dict[str, Any] = {
        "cpu": cpu_model(),
        "duration_per_step": args.duration,
        "rates": RATES,
        "build": compiled.describe(),
    }
    seq = [0]
    with lab_context({"a": 10, "b": 20}, hosts_per_vlan=1) as lab:
        gateways: list[Any] = []

        def start_ours() -> int:
            gateways.append(start_gateway(lab))
            return int(gateways[-1].proc.pid)

        print(f"ours (mdns-gateway reflector, {compiled.describe()}):", flush=True)
        results["ours"] = measure(
            lab, "ours", start_ours, lambda: gateways.pop().stop(), args.duration, seq
        )

        router = Host(
            name="router",
            ns=lab.gw,
            vlan="a",
            vlan_id=10,
            index=1,
            ipv4=lab.vlans["a"].ipv4,
            ipv6=lab.vlans["a"].ipv6,
            ifname="br10",
        )
        avahi = AvahiPublisher(
            lab,
            router,
            host_name="benchrouter",
            extra_config={
                "server": {
                    "allow-interfaces": "br10,br20",
                    "use-ipv6": "no",
                    "ratelimit-interval-usec": "1000000",
                    "ratelimit-burst": "100000000",
                },
                "reflector": {"enable-reflector": "yes"},
            },
        )

        def start_avahi() -> int:
            avahi.start()
            avahi.wait_running()
            assert avahi.proc is not None
            return int(avahi.proc.pid)

        def stop_avahi() -> None:
            avahi.stop()

        print("avahi-daemon reflector:", flush=True)
        results["avahi"] = measure(lab, "avahi", start_avahi, stop_avahi, args.duration, seq)

    print("\nresult                    ours        avahi      ratio")
    ratios: dict[str, Any] = {}
    for kind in ("response", "query"):
        o = results["ours"]["workloads"][kind]
        a = results["avahi"]["workloads"][kind]
        pps = o["zero_loss_pps"] / a["zero_loss_pps"] if a["zero_loss_pps"] else None
        cpu = (
            a["cpu_us_per_packet"] / o["cpu_us_per_packet"]
            if a["cpu_us_per_packet"] and o["cpu_us_per_packet"]
            else None
        )
        ratios[kind] = {"zero_loss_pps_ours_over_avahi": pps, "cpu_per_packet_avahi_over_ours": cpu}
        print(
            f"{kind:9s} zero-loss pps {o['zero_loss_pps']:9.0f} {a['zero_loss_pps']:11.0f}"
            f"  {pps or 0:8.1f}x"
        )
        print(
            f"{kind:9s} CPU us/packet {o['cpu_us_per_packet'] or 0:9.1f} "
            f"{a['cpu_us_per_packet'] or 0:11.1f}  {cpu or 0:8.1f}x less"
        )
    results["ratios"] = ratios
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
