"""Issue 12's attacks, repeated against the running gateway in the namespace lab.

The gateway runs as its own process in the router namespace, the attacker is ``iot1`` (a host
on the iot VLAN), a real avahi-daemon on ``iot2`` publishes the device the attacker goes after
(``victim.local``, "Victim Printer"), another on ``trusted1`` the name a prober in ``trusted2``
asks the gateway for every 50 ms (``netlab/dns_prober.py``, a process of its own). Each attack
must leave DNS answering (no probe unanswered for 1 s or more), the gateway's resident memory
within 20 MB of where it started, other clients served, the victim's records as avahi
published them, and no traceback in the gateway's log.

Counts are the issue's where they cost little (6,000 colliding names, 300 packets of odd
classes and types, 20 TCP queries of 5,000 additional records, 1,105 HTTP connections) and
scaled where they would take minutes (50,000 REFUSED names, not 100,000: the old cache grew
35 MB for as many; the store-share flood lasts until the new device is answered). Each prints
its figures (longest probe gap, RSS growth, the gateway's CPU time, what the attack achieved)
and appends them as a JSON line to tests/integration/artifacts/attacks_lab.jsonl.
"""

from __future__ import annotations

import contextlib
import json
import random
import resource
import select
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest
from prometheus_client.parser import text_string_to_metric_families

from netlab.lab import (
    AvahiPublisher,
    GatewayProcess,
    Host,
    Lab,
    gateway_config,
    netns_socket,
    poll_until,
    query,
)
from netlab.vitals import Measurement, Vitals

pytestmark = [pytest.mark.lab, pytest.mark.timeout(240)]

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
FIGURES = ARTIFACTS / "attacks_lab.jsonl"
MAX_GAP = 1.0  # s without an answer to the prober (the "no probe lost for > 1 s")
MAX_GROWTH_MB = 20.0  # RSS growth per flood
IOT_VIEW = 5320  # the iot VLAN's view listener (loopback, as CoreDNS uses it)
HTTP_PORT = 9353
HTTP_TOKEN = "attacks-lab-token-0123456789abcdef"  # http.token_file: the scrape has it, iot1 not
VICTIM = "Victim Printer"
BIG_TXT = 2000  # bytes of TXT rdata: over the 1232-byte clamp
MID_TXT = 1000  # bytes of TXT rdata: fits the clamp, ~20x a query


# --- raw mDNS packets (no dnspython: odd classes must not touch the test's own caches) -------


def wire_name(name: str) -> bytes:
    return b"".join(bytes([len(x)]) + x for x in name.rstrip(".").encode().split(b".")) + b"\0"


def rr(
    name: str, rtype: int, rdata: bytes, ttl: int = 120, rclass: int = 1, flush: bool = True
) -> bytes:
    cls = rclass | (0x8000 if flush else 0)
    return wire_name(name) + struct.pack("!HHIH", rtype, cls, ttl, len(rdata)) + rdata


def response(records: list[bytes]) -> bytes:
    return struct.pack("!HHHHHH", 0, 0x8400, 0, len(records), 0, 0) + b"".join(records)


def a(addr: str) -> bytes:
    return socket.inet_aton(addr)


def txt(size: int, fill: str) -> bytes:
    out = b""
    while len(out) < size:
        chunk = min(255, size - len(out) - 1)
        out += bytes([chunk]) + fill.encode() * chunk
    return out


Sock = socket.socket  # Attacker.socket() shadows the module inside the class body


class Attacker:
    """iot1: mDNS from its own address and port 5353, unicast to the router (not to avahi)."""

    def __init__(self, lab: Lab, host: Host) -> None:
        self.lab, self.host = lab, host
        self.router = host.router_ipv4
        self.mdns = netns_socket(host.ns)
        self.mdns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.mdns.bind((host.ipv4, 5353))

    def announce(self, packets: list[bytes], pace: float = 0.002) -> None:
        for p in packets:
            self.mdns.sendto(p, (self.router, 5353))
            time.sleep(pace)  # pacing, not synchronisation: the router's receive buffer

    def socket(self, type: int = socket.SOCK_DGRAM) -> Sock:
        return netns_socket(self.host.ns, socket.AF_INET, type)

    def connect_many(self, server: str, port: int, count: int) -> list[Sock]:
        """``count`` TCP connections to ``server:port``, connecting (non-blocking)."""
        socks = []
        for _ in range(count):
            s = self.socket(socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex((server, port))
            socks.append(s)
        return socks

    def close(self) -> None:
        self.mdns.close()


# --- the gateway and its observers --------------------------------------------------------


class World:
    def __init__(self, lab: Lab, gw: GatewayProcess, victim: AvahiPublisher) -> None:
        self.lab, self.gw, self.victim = lab, gw, victim
        self.attacker = Attacker(lab, lab.hosts["iot1"])
        assert gw.proc is not None
        self.vitals = Vitals(
            lab, gw.proc.pid, lab.hosts["trusted2"], lab.vlans["trusted"].ipv4, 5300, "office.local"
        )
        self.iot = lab.vlans["iot"]

    def metrics(self) -> dict[str, float]:
        """/metrics, scraped from the router namespace: ``name{labels}`` -> value."""
        sock = netns_socket(self.lab.gw, socket.AF_INET, socket.SOCK_STREAM)
        with sock:
            sock.settimeout(10.0)
            sock.connect((self.iot.ipv4, HTTP_PORT))
            sock.sendall(
                b"GET /metrics HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
                b"Authorization: Bearer " + HTTP_TOKEN.encode() + b"\r\n\r\n"
            )
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == b"200", head[:200]
        out: dict[str, float] = {}
        for fam in text_string_to_metric_families(body.decode()):
            for s in fam.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}"] = s.value
        return out

    def metric(self, name: str, **labels: str) -> float:
        key = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        scraped = self.metrics()
        counter = scraped.get(f"mdns_gateway_{name}_total{{{key}}}")
        return counter if counter is not None else scraped.get(f"mdns_gateway_{name}{{{key}}}", 0.0)

    def wait_metric(
        self, name: str, at_least: float, timeout: float = 15.0, **labels: str
    ) -> float:
        return float(
            poll_until(
                lambda: (v := self.metric(name, **labels)) >= at_least and v,
                timeout,
                interval=0.1,
                message=f"{name}{labels} >= {at_least}",
            )
        )

    def ask_iot(self, qname: str, qtype: str = "A", **kw: Any) -> dns.message.Message:
        """The iot view, as CoreDNS asks it (loopback view listener: no clamp, no RRL)."""
        return query(self.lab.gw, "127.0.0.1", IOT_VIEW, qname, qtype, timeout=3.0, **kw)

    def victim_intact(self) -> None:
        """The victim's address and service are as its avahi-daemon published them."""
        addrs = self.ask_iot("victim.local", "A")
        assert [r.to_text() for rs in addrs.answer for r in rs] == [self.lab.hosts["iot2"].ipv4]
        srv = self.ask_iot(f"{VICTIM}._ipp._tcp.local", "SRV")
        assert [r.to_text() for rs in srv.answer for r in rs] == ["0 0 631 victim.local."]
        ptr = self.ask_iot("_ipp._tcp.local", "PTR")
        assert dns.name.from_text(f"{VICTIM}._ipp._tcp.local.") in [
            r.target for rs in ptr.answer for r in rs
        ]

    def check(self, attack: str, m: Measurement, **figures: Any) -> None:
        """The issue's "done when", and the figures recorded."""
        line = {"attack": attack, **m.figures(), **figures}
        print(f"\n{attack}: {json.dumps(line)}")
        ARTIFACTS.mkdir(exist_ok=True)
        with FIGURES.open("a") as f:
            f.write(json.dumps(line) + "\n")
        assert self.gw.running, self.gw.logs()[-3000:]
        assert m.probe["answered"] > 0, m.probe
        assert m.max_gap < MAX_GAP, line
        assert m.rss_growth_mb < MAX_GROWTH_MB, line
        self.victim_intact()
        assert "Traceback" not in self.gw.logs(), self.gw.logs()[-3000:]


@pytest.fixture(scope="module")
def world(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with contextlib.suppress(FileNotFoundError):
        FIGURES.unlink()
    office = AvahiPublisher(lab, lab.hosts["trusted1"], host_name="office")
    office.start()
    victim = AvahiPublisher(lab, lab.hosts["iot2"], host_name="victim")
    victim.add_service(VICTIM, "_ipp._tcp", 631, ["rp=ipp/print"])
    victim.start()
    office.wait_running()
    victim.wait_running()
    token = tmp_path_factory.mktemp("attacks") / "http-token"
    token.write_text(HTTP_TOKEN + "\n")
    cfg = gateway_config(
        lab,
        dns={"default_view": "*"},
        # reachable by the attacker; off loopback /metrics needs the bearer token (README "Web
        # page"), which the scrape below brings and the attacker does not
        http={"listen": f"{lab.vlans['iot'].ipv4}:{HTTP_PORT}", "token_file": str(token)},
        cache={"max_records": 3000},  # three VLANs: a share of 1,000 each
    )
    gw = GatewayProcess(lab, cfg, log_level="info")
    gw.start()
    gw.wait_ready()
    w = World(lab, gw, victim)
    ready = _ok(w.victim_intact)
    poll_until(ready, 15.0, interval=0.2, message=lambda: f"the victim's records ({ready})")
    poll_until(
        lambda: (
            query(lab.hosts["trusted2"].ns, lab.vlans["trusted"].ipv4, 5300, "office.local").answer
        ),
        15.0,
        interval=0.2,
        message="office.local from trusted2",
    )
    yield w
    w.attacker.close()
    gw.stop()
    victim.stop()
    office.stop()


class _ok:
    """``fn`` as a poll_until predicate: True once it passes; the last failure for the message."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.last = "not called"

    def __call__(self) -> bool:
        try:
            self.fn()
        except (AssertionError, TimeoutError, OSError, IndexError) as exc:
            self.last = f"{type(exc).__name__}: {exc}"
            return False
        return True

    def __str__(self) -> str:
        return self.last


# --- DNS amplification (first: the floods after it fill iot1's share of the store) -----


def test_large_edns_udp_amplification(world: World) -> None:
    """EDNS 4096 queries for large answers, as a reflection attack would send them (the issue:
    answers 89x the query, no rate limit): at most 1232 bytes to a remote client, rate-limited
    per /24 (RRL, every 2nd limited answer an empty TC=1); loopback still gets 4096."""
    src = world.attacker.host.ipv4
    world.attacker.announce(
        [response([rr("big.local", 16, txt(BIG_TXT, "b")), rr("mid.local", 16, txt(MID_TXT, "m"))])]
    )
    announced = _ok(lambda: world.ask_iot("mid.local", "TXT", use_edns=0, payload=4096).answer[0])
    poll_until(announced, 10.0, interval=0.1, message=lambda: f"mid.local TXT ({announced})")
    full = query(world.lab.gw, "127.0.0.1", 5300, "big.local", "TXT", use_edns=0, payload=4096)
    assert len(full.to_wire()) > 1232 and not full.flags & dns.flags.TC  # loopback: in full
    queries = [
        dns.message.make_query(n, "TXT", use_edns=0, payload=4096, id=i).to_wire()
        for i, n in enumerate(["big.local", "mid.local"] * 2500)
    ]
    limited = world.metric("dns_rate_limited", action="dropped") + world.metric(
        "dns_rate_limited", action="slipped"
    )
    sizes: list[int] = []
    tc = 0
    sock = world.attacker.socket()
    with sock, world.vitals.measure() as m:
        sock.connect((world.iot.ipv4, 5300))
        t0 = time.monotonic()
        for i, q in enumerate(queries):  # 5,000 in about a second
            sock.send(q)
            if i % 100 == 99:
                time.sleep(max(0.0, t0 + (i + 1) / 5000 - time.monotonic()))
        sock.settimeout(1.0)
        with contextlib.suppress(TimeoutError):
            while True:
                reply = sock.recv(65535)
                sizes.append(len(reply))
                tc += bool(reply[2] & 0x02)
    limited = (
        world.metric("dns_rate_limited", action="dropped")
        + world.metric("dns_rate_limited", action="slipped")
        - limited
    )
    sent_bytes = sum(len(q) for q in queries)
    assert sizes and max(sizes) <= 1232
    assert limited > 0 and len(sizes) < len(queries)
    # iot2 shares iot1's /24, so its UDP answers are limited too: over TCP (never limited),
    # as a real client does after a slipped TC=1 answer, it is served
    assert tcp_query(world.lab.hosts["iot2"].ns, world.iot.ipv4, "victim.local").answer
    world.check(
        "edns_amplification",
        m,
        src=src,
        queries=len(queries),
        query_bytes=sent_bytes,
        replies=len(sizes),
        reply_bytes=sum(sizes),
        max_reply=max(sizes),
        max_ratio=round(max(sizes) / min(len(q) for q in queries), 1),
        overall_ratio=round(sum(sizes) / sent_bytes, 2),
        truncated=tc,
        rate_limited=limited,
    )


# --- mDNS floods --------------------------------------------------------------------------

# two-byte blocks with one value of dnspython's unseeded name hash (h = 9h + c): any string of
# them collides with any other of the same length
COLLIDING = ["az", "bq", "ch", "d_", "h;", "i2", "j)"]


def test_hash_collision_name_flood(world: World) -> None:
    """30 packets of 200 colliding names each (the issue: 6,000 names, 24 s without DNS)."""
    rnd = random.Random(12)
    src = world.attacker.host.ipv4
    packets = []
    names = 0
    for _ in range(30):
        labels = {"".join(rnd.choices(COLLIDING, k=10)) for _ in range(200)}
        packets.append(response([rr(f"{n}.local", 1, a(src)) for n in labels]))
        names += len(labels)
    before = world.metric("mdns_packets_received", vlan="iot", kind="response")
    with world.vitals.measure() as m:
        world.attacker.announce(packets)
        world.wait_metric("mdns_packets_received", before + 30, vlan="iot", kind="response")
    world.check("hash_collision_names", m, packets=30, names=names, bytes=sum(map(len, packets)))


def test_unusual_class_and_type_flood(world: World) -> None:
    """300 packets of records of (class, type) pairs nobody uses (the issue: +78 MB, 6 s)."""
    rnd = random.Random(13)
    packets = []
    for i in range(300):
        recs = []
        for j in range(30):
            rclass = rnd.choice([1, rnd.randrange(2, 0xFEFF)])
            rtype = rnd.randrange(300, 0x8000)  # none assigned: kept opaque when IN
            recs.append(rr(f"odd{i}-{j}.local", rtype, b"\x00" * 8, rclass=rclass))
        packets.append(response(recs))
    before = world.metric("mdns_packets_received", vlan="iot", kind="response")
    refused = world.metric("mdns_records_refused", vlan="iot", reason="class_not_in")
    with world.vitals.measure() as m:
        world.attacker.announce(packets, pace=0.001)
        world.wait_metric("mdns_packets_received", before + 300, vlan="iot", kind="response")
    not_in = world.metric("mdns_records_refused", vlan="iot", reason="class_not_in") - refused
    assert not_in > 3000  # about half of the 9,000 records: dropped before their rdata
    world.check("unusual_class_type", m, packets=300, records=9000, refused_not_in=not_in)


# --- DNS over TCP -------------------------------------------------------------------------


def _tcp_exchange(sock: socket.socket, wire: bytes, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    sock.sendall(struct.pack("!H", len(wire)) + wire)
    head = b""
    while len(head) < 2:
        chunk = sock.recv(2 - len(head))
        assert chunk, "connection closed"
        head += chunk
    (n,) = struct.unpack("!H", head)
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "connection closed"
        data += chunk
    return data


def tcp_query(ns: str, server: str, qname: str, qtype: str = "A") -> dns.message.Message:
    sock = netns_socket(ns, socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(5.0)
        sock.connect((server, 5300))
        return dns.message.from_wire(
            _tcp_exchange(sock, dns.message.make_query(qname, qtype).to_wire())
        )


def test_tcp_queries_carrying_5000_additional_records(world: World) -> None:
    """20 TCP queries with 5,000 additional records each (the issue: +97 MB, all parsed to be
    REFUSED): answered FORMERR from the header."""
    q = dns.message.make_query("victim.local", "A").to_wire()
    extra = b"\xc0\x0c" + struct.pack("!HHIH", 10, 1, 60, 0)  # NULL, empty: 12 bytes
    wire = q[:10] + struct.pack("!H", 5000) + q[12:] + extra * 5000
    rcodes = []
    with world.vitals.measure() as m:
        for _ in range(20):
            sock = world.attacker.socket(socket.SOCK_STREAM)
            with sock:
                sock.connect((world.iot.ipv4, 5300))
                reply = _tcp_exchange(sock, wire)
                rcodes.append(reply[3] & 0x0F)
    assert rcodes == [dns.rcode.FORMERR] * 20
    world.check("tcp_5000_additionals", m, queries=20, query_bytes=len(wire))


def test_tcp_connection_hogging_by_one_client(world: World) -> None:
    """One client opens 300 connections (the issue: it held all 512 and a second client was
    refused): it keeps at most 64, and clients on its VLAN and another are served."""
    hogs: list[socket.socket] = []
    try:
        with world.vitals.measure() as m:
            hogs += world.attacker.connect_many(world.iot.ipv4, 5300, 300)
            poll_until(
                lambda: world.metric("dns_tcp_connections_closed", reason="per_client") >= 236,
                15.0,
                interval=0.1,
                message="connections over the per-client cap closed",
            )
            iot = tcp_query(world.lab.hosts["iot2"].ns, world.iot.ipv4, "victim.local")
            trusted = tcp_query(
                world.lab.hosts["trusted2"].ns, world.lab.vlans["trusted"].ipv4, "office.local"
            )
        assert iot.answer and trusted.answer
        held = _still_open(hogs)
        assert held <= 64
    finally:
        for s in hogs:
            s.close()
    world.check("tcp_connection_hogging", m, opened=300, held=held)


def _still_open(socks: list[socket.socket]) -> int:
    """Connections the server has not closed (an EOF or a reset is readable at once)."""
    poller = select.poll()
    by_fd = {s.fileno(): s for s in socks}
    for s in socks:
        poller.register(s, select.POLLIN)
    closed = 0
    for fd, _ in poller.poll(500):
        s = by_fd[fd]
        try:
            closed += not s.recv(1, socket.MSG_PEEK)
        except OSError:
            closed += 1
    return len(socks) - closed


def test_pipelining_client_that_never_reads(world: World) -> None:
    """A client pipelines 20,000 queries and reads nothing (the issue: still open after 65 s,
    2.8 MB queued): the gateway cuts it once its answers wait 10 s unread."""
    q = dns.message.make_query("victim.local", "A").to_wire()
    framed = struct.pack("!H", len(q)) + q
    sock = world.attacker.socket(socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    cut = world.metric("dns_tcp_connections_closed", reason="write_timeout")
    with sock, world.vitals.measure() as m:
        sock.connect((world.iot.ipv4, 5300))
        sock.setblocking(False)
        t0 = time.monotonic()
        sent = 0
        data = framed * 20_000
        while sent < len(data) and time.monotonic() - t0 < 5.0:
            try:
                sent += sock.send(data[sent : sent + 65536])
            except BlockingIOError:
                select.select([], [sock], [], 0.1)
        world.wait_metric(
            "dns_tcp_connections_closed", cut + 1, timeout=30.0, reason="write_timeout"
        )
        cut_after = time.monotonic() - t0
        other = tcp_query(world.lab.hosts["iot2"].ns, world.iot.ipv4, "victim.local")
        assert other.answer
    world.check(
        "tcp_pipelining_non_reader",
        m,
        queries_sent=sent // len(framed),
        cut_after_s=round(cut_after, 1),
    )


def test_unique_refused_names(world: World) -> None:
    """50,000 queries for unique names outside every zone (the issue: 100,000 added 69 MB to
    one cache, then the whole cache was cleared): REFUSED answers are not kept per name. Over
    TCP, pipelined, so every query reaches the slow path (UDP at this rate mostly fills the
    router's receive buffer; flow control paces TCP at what the gateway answers)."""
    count = 50_000
    data = b"".join(
        struct.pack("!H", 16 + len(name))
        + struct.pack("!HHHHHH", i & 0xFFFF, 0x0100, 1, 0, 0, 0)
        + name
        + b"\x00\x01\x00\x01"
        for i in range(count)
        if (name := wire_name(f"n{i}-{i * 7919 % 100003}.example"))
    )
    refused = world.metric("dns_responses", rcode="REFUSED")
    rcodes: Counter[int] = Counter()
    sock = world.attacker.socket(socket.SOCK_STREAM)
    with sock, world.vitals.measure() as m:
        sock.settimeout(30.0)
        sock.connect((world.iot.ipv4, 5300))
        writer = threading.Thread(target=sock.sendall, args=(data,), name="refused-writer")
        writer.start()
        buf = b""
        deadline = time.monotonic() + 90.0
        while sum(rcodes.values()) < count and time.monotonic() < deadline:
            chunk = sock.recv(1 << 16)
            assert chunk, f"closed after {sum(rcodes.values())} answers"
            buf += chunk
            while len(buf) >= 2 and len(buf) >= 2 + (n := struct.unpack("!H", buf[:2])[0]):
                rcodes[buf[5] & 0x0F] += 1
                buf = buf[2 + n :]
        writer.join(30.0)
    assert rcodes == {dns.rcode.REFUSED: count}
    seen = world.metric("dns_responses", rcode="REFUSED") - refused
    world.check("refused_unique_names", m, queries=count, refused_by_gateway=seen)


# --- record spoofing ----------------------------------------------------------------------


def test_goodbye_and_cache_flush_spoofing_of_another_hosts_records(world: World) -> None:
    """iot1 sends a goodbye for victim.local, a cache-flush replacing its address with iot1's,
    an SRV redirect and a goodbye of its PTR (the issue: gone 1.6 s later, or replaced):
    refused as not the owner's; the victim's records stay through the goodbye delay."""
    me = world.attacker.host.ipv4
    inst = f"{VICTIM}._ipp._tcp.local"
    srv = struct.pack("!HHH", 0, 0, 631) + wire_name("attacker.local")
    spoof = response(
        [
            rr("victim.local", 1, a(world.lab.hosts["iot2"].ipv4), ttl=0),
            rr("victim.local", 1, a(me)),
            rr(inst, 33, srv),
            rr("_ipp._tcp.local", 12, wire_name(inst), ttl=0, flush=False),
        ]
    )
    before = world.metric("mdns_records_refused", vlan="iot", reason="not_owner")
    with world.vitals.measure() as m:
        world.attacker.announce([spoof])
        refused = world.wait_metric(
            "mdns_records_refused", before + 4, vlan="iot", reason="not_owner"
        )
        # a goodbye takes effect after 1 s, a flush after 1 s: watch for 2.5 s that neither did
        end = time.monotonic() + 2.5
        while time.monotonic() < end:
            world.victim_intact()
    world.check("goodbye_flush_spoofing", m, refused_not_owner=refused - before)


def test_off_subnet_addresses(world: World) -> None:
    """A/AAAA records naming addresses that cannot be on the iot VLAN (the issue: cached and
    served): refused, never answered."""
    bad = {
        "evil-dns.local": (1, a("8.8.8.8")),
        "evil-lo.local": (1, a("127.0.0.1")),
        "evil-bcast.local": (1, a("255.255.255.255")),
        "evil-trusted.local": (1, a(world.lab.hosts["trusted1"].ipv4)),
        "evil-v6.local": (28, socket.inet_pton(socket.AF_INET6, "2001:db8::1")),
    }
    before = world.metric("mdns_records_refused", vlan="iot", reason="address_not_on_vlan")
    answers: dict[str, list[str]] = {}
    with world.vitals.measure() as m:
        world.attacker.announce([response([rr(n, t, d) for n, (t, d) in bad.items()])])
        world.wait_metric(
            "mdns_records_refused", before + 5, vlan="iot", reason="address_not_on_vlan"
        )

        def ask(name: str, rtype: int) -> None:
            reply = world.ask_iot(name, "A" if rtype == 1 else "AAAA")
            answers[name] = [r.to_text() for rs in reply.answer for r in rs]

        threads = [threading.Thread(target=ask, args=(n, t)) for n, (t, _) in bad.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10.0)
    assert answers == {n: [] for n in bad}
    world.check("off_subnet_addresses", m, refused=len(bad))


# --- HTTP and the store -------------------------------------------------------------------


def test_http_connection_flood(world: World) -> None:
    """1,105 idle connections to the HTTP port (the issue: descriptors exhausted, TCP DNS
    stopped accepting, 20,573 traceback lines): /metrics and TCP DNS still served."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    conns: list[socket.socket] = []
    try:
        with world.vitals.measure() as m:
            conns += world.attacker.connect_many(world.iot.ipv4, HTTP_PORT, 1105)
            poller = select.poll()
            for s in conns[-100:]:
                poller.register(s, select.POLLOUT)
            poller.poll(3000)
            scrape = world.metrics()  # served in the flood
            dns_tcp = tcp_query(world.lab.hosts["iot2"].ns, world.iot.ipv4, "victim.local")
        assert dns_tcp.answer and scrape
        fds = scrape.get("process_open_fds{}", 0.0)
    finally:
        for s in conns:
            s.close()
    world.check("http_connection_flood", m, connections=1105, gateway_open_fds=fds)


def test_store_share_flood_by_one_host(world: World) -> None:
    """iot1 keeps announcing new names (5,000, past the store's 3,000) while a new device
    appears on its VLAN (the issue: hidden for as long as the flood lasts): it is answered."""
    src = world.attacker.host.ipv4
    stop = threading.Event()
    sent = [0]

    def flood() -> None:
        i = 0
        while not stop.is_set() and i < 5000:
            recs = [rr(f"flood{i + k}.local", 1, a(src)) for k in range(100)]
            world.attacker.announce([response(recs)], pace=0.05)
            i += 100
            sent[0] = i

    thread = threading.Thread(target=flood, name="share-flood")
    try:
        with world.vitals.measure() as m:
            thread.start()
            poll_until(lambda: sent[0] >= 1500, 30.0, interval=0.05, message="the flood under way")
            world.victim.add_service("New Camera", "_http._tcp", 80, ["path=/"])
            world.victim.reload()
            world.victim.wait_running()
            poll_until(
                _ok(lambda: world.ask_iot("New Camera._http._tcp.local", "SRV").answer[0]),
                15.0,
                interval=0.2,
                message="the new device answered during the flood",
            )
            during = sent[0]
    finally:
        stop.set()
        thread.join(30.0)
    refused = world.metric("store_refused_records", vlan="iot")
    world.check(
        "store_share_flood",
        m,
        names_sent=sent[0],
        new_device_seen_after=during,
        store_refused=refused,
    )
