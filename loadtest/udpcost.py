"""``python -m loadtest.udpcost``: instructions per cached UDP answer, under callgrind.

The load test's UDP figures move by about 10 % between runs on a shared machine; instruction
counts do not. This runs the real DnsServer (store, resolver, answer caches, UDP listener by
client address) in this process on loopback, and a sender in a child process (not under
valgrind) with four client sockets, as dnsperf ``-c 4``, that sends ``--batch`` cached queries
(the load test's mix of types, EDNS 1232) and then says so on a pipe; only then does this
process run one turn of its event loop (``_run_once``, the step ``run_forever`` repeats): one
readiness callback, one batch, every time. So the figures include the event loop's turn
(epoll, the selector, the handle) and the two pipe calls a turn, not only
``DnsServer._udp_ready``.

Per answer = (Ir of a run of 2N batches - Ir of a run of N) / (N x batch): the start-up is the
same in both and cancels. Run it as::

    python -m loadtest.udpcost --callgrind [--batch 16] [--rounds 200] [--pure | --site DIR]

(the compiled build from build/compiled, as the load test runs the gateway; ``--pure``: the
checkout; ``--site``: another build's directory, e.g. main's, to compare). Without
``--callgrind`` it runs the rounds once, natively, and checks the answers.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLIENTS = 4  # dnsperf -c 4 in the load test: four source ports of one address
NAMES = [
    ("_ipp._tcp.local.", "PTR"),
    ("Office Printer._ipp._tcp.local.", "SRV"),
    ("Office Printer._ipp._tcp.local.", "TXT"),
    ("office.local.", "A"),
    ("office.local.", "AAAA"),
]


def _queries() -> list[bytes]:
    import dns.message

    out = []
    for name, rdtype in NAMES:
        msg = dns.message.make_query(name, rdtype, use_edns=0, payload=1232)
        msg.flags = 0x0100  # RD, as dnsperf sends
        out.append(msg.to_wire())
    return out


RECORDS = [
    ("_services._dns-sd._udp.local.", "PTR", "_ipp._tcp.local.", 4500),
    ("_ipp._tcp.local.", "PTR", "Office\\032Printer._ipp._tcp.local.", 4500),
    ("Office Printer._ipp._tcp.local.", "SRV", "0 0 631 office.local.", 120),
    ("Office Printer._ipp._tcp.local.", "TXT", '"rp=printer" "ty=Office Printer"', 4500),
    ("office.local.", "A", "10.10.0.5", 120),
    ("office.local.", "AAAA", "fd00:10::5", 120),
]


def _start(loop: asyncio.AbstractEventLoop, server: Any, listener: Any) -> int:
    """Start ``server`` on a free loopback port (UDP and TCP): the port."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        try:
            loop.run_until_complete(server.start([listener(("127.0.0.1", port), None)]))
        except OSError:  # its TCP port was taken meanwhile
            loop.run_until_complete(server.close())
            continue
        return port
    raise RuntimeError("no free port on loopback")


def sender(port: int, batch: int, go: int, done: int) -> None:
    """The child: per byte read from ``go``, count the previous replies that answer, send ``batch``
    queries (IDs counting up) round-robin over four sockets, write a byte to ``done``."""
    queries = _queries()
    socks = []
    for _ in range(CLIENTS):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        socks.append(s)
    dest = ("127.0.0.1", port)
    replies = sent = 0
    while True:
        cmd = os.read(go, 1)
        for s in socks:
            while True:
                try:
                    reply = s.recv(65535)
                except BlockingIOError:
                    break
                # NOERROR with an answer: the records are there, not a cached NXDOMAIN
                replies += reply[3] & 0x0F == 0 and reply[6:8] != b"\x00\x00"
        if cmd != b"g":
            os.write(done, f"{sent} {replies}\n".encode())
            return
        for k in range(batch):
            q = queries[sent % len(queries)]
            socks[k % CLIENTS].sendto(bytes((sent >> 8 & 0xFF, sent & 0xFF)) + q[2:], dest)
            sent += 1
        os.write(done, b"d")


def serve(batch: int, rounds: int) -> None:
    """This process: the DNS front end; ``rounds`` batches, one loop turn each."""
    import dns.name
    import dns.rdata

    from bridge.dnsfront.answer import Answers, view_by_address
    from bridge.dnsfront.ondemand import OnDemand
    from bridge.dnsfront.resolver import Resolver, View, Zones
    from bridge.dnsfront.server import DnsServer, Listener
    from bridge.policy import default_engine
    from bridge.store import Store

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    store = Store()
    vlans = ["trusted"]
    subnets = {"trusted": [ipaddress.ip_network("10.10.0.0/24")]}
    domains = {"trusted": dns.name.from_text("trusted.home.arpa.")}
    zones = Zones(domains, dns.name.from_text("home.arpa."), subnets)
    resolver = Resolver(store, zones, max_ttl=10, negative_ttl=7)
    ondemand = OnDemand(lambda v, n, t, urgent: None, timeout=0.6)
    ondemand.changes = store.subscribe(ondemand.on_change, active=False)
    answers = Answers(resolver, ondemand, store)
    server = DnsServer(answers, ondemand.lookup, view_by_address(lambda ip: None, "trusted"))
    engine = default_engine(vlans)
    answers.set_views({v: View(v, v, engine.view(v)) for v in vlans})
    now = loop.time()
    for name, rdtype, text, ttl in RECORDS:  # an avahi-published printer
        rdata = dns.rdata.from_text("IN", rdtype, text)
        store.add("trusted", dns.name.from_text(name), rdata.rdtype, rdata, ttl, now)
    port = _start(loop, server, Listener)
    go_r, go_w = os.pipe()
    done_r, done_w = os.pipe()
    child = subprocess.Popen(
        [sys.executable, "-m", "loadtest.udpcost", "--sender", str(port), str(batch)],
        pass_fds=(go_r, done_w),
        env=dict(os.environ, UDPCOST_FDS=f"{go_r},{done_w}"),
        cwd=REPO,
    )
    os.close(go_r)
    os.close(done_w)

    # one turn of the loop, as run_forever makes them: select (epoll), the reader's callback
    run_once = getattr(loop, "_run_once")  # noqa: B009 (private: asyncio's own loop step)

    def turn() -> None:
        os.write(go_w, b"g")
        os.read(done_r, 1)  # the batch is in the socket's buffer
        run_once()

    warm = len(NAMES)  # every query once through the slow path, cached from then on
    for _ in range(-(-warm // batch) + 1):
        turn()
    hits0 = server.stats.cache_hits
    for _ in range(rounds):
        turn()
    os.write(go_w, b"q")
    sent, replies = map(int, os.read(done_r, 64).split())
    child.wait()
    hits = server.stats.cache_hits - hits0
    loop.run_until_complete(server.close())
    loop.close()
    print(f"udpcost: {rounds} batches of {batch}: {hits} cached answers, {replies}/{sent} replied")
    if hits != rounds * batch or replies != sent:
        raise SystemExit("udpcost: not every query was a cached answer that was sent")


def _callgrind(args: argparse.Namespace, rounds: int, work: Path) -> tuple[int, int]:
    """(Ir of the whole process, Ir inside DnsServer._udp_ready) for a run of ``rounds``."""
    out = work / f"callgrind.{rounds}.out"
    argv = [
        "valgrind",
        "--tool=callgrind",
        "--dump-instr=yes",
        f"--callgrind-out-file={out}",
        *_python(args.pure),
        "--serve",
        str(args.batch),
        str(rounds),
    ]
    env = dict(os.environ, PYTHONHASHSEED="0", **_env(args.pure, args.site))
    subprocess.run(argv, check=True, cwd=REPO, env=env, stderr=subprocess.DEVNULL)
    total = callgrind_total(out)
    inside = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", str(out)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    ready = 0
    for line in inside.splitlines():
        if "_udp_ready" in line and "pw_" in line:  # Cython's Python-visible wrapper
            ready = int(line.split()[0].replace(",", ""))
            break
    return total, ready


def callgrind_total(path: Path) -> int:
    """The total instructions of a callgrind dump (also loadtest.startcost's)."""
    for line in path.read_text(errors="replace").splitlines():
        m = re.match(r"(?:summary|totals): (\d+)", line)
        if m:
            return int(m.group(1))
    raise RuntimeError(f"no totals in {path}")


def _python(pure: bool) -> list[str]:
    return [sys.executable, *([] if pure else ["-P"]), "-m", "loadtest.udpcost"]


def _env(pure: bool, site: Path | None) -> dict[str, str]:
    """The gateway's modules from ``site``, the compiled build, or (``pure``) the checkout;
    this module and tests.support from the checkout, after them."""
    if pure:
        return {}
    from . import compiled

    return {"PYTHONPATH": f"{site or compiled.build()}{os.pathsep}{REPO}"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.udpcost", description=__doc__)
    p.add_argument("--batch", type=int, default=16, help="queries per loop turn")
    p.add_argument("--rounds", type=int, default=200, help="N: runs of N and 2N batches")
    p.add_argument("--pure", action="store_true", help="the checkout, not the compiled build")
    p.add_argument("--site", type=Path, help="a compiled build's directory to measure")
    p.add_argument("--callgrind", action="store_true")
    p.add_argument("--sender", nargs=2, type=int, help=argparse.SUPPRESS)
    p.add_argument("--serve", nargs=2, type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.sender:
        go, done = map(int, os.environ["UDPCOST_FDS"].split(","))
        sender(args.sender[0], args.sender[1], go, done)
        return 0
    if args.serve:
        serve(*args.serve)
        return 0
    if not args.callgrind:
        env = dict(os.environ, **_env(args.pure, args.site))
        cmd = [*_python(args.pure), "--serve", str(args.batch), str(args.rounds)]
        return subprocess.run(cmd, cwd=REPO, env=env, check=False).returncode
    with tempfile.TemporaryDirectory() as tmp:
        n = args.rounds
        t1, r1 = _callgrind(args, n, Path(tmp))
        t2, r2 = _callgrind(args, 2 * n, Path(tmp))
        answers = n * args.batch
        inside = "" if args.pure else f", {(r2 - r1) / answers:,.0f} in DnsServer._udp_ready"
        print(
            f"batches of {args.batch}, {'pure' if args.pure else args.site or 'compiled'}: "
            f"{(t2 - t1) / answers:,.0f} instructions per cached answer in all "
            f"(event loop turn included){inside}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
