"""Raw mDNS peers for the benchmark; run inside a lab host namespace (IPv4, one interface).

``python -m loadtest.mdns_peer '<json>'`` (or ``@file`` holding it) with ``{"mode": ...,
"address": "10.N.0.K", "records": [[owner, type, rdata text, ttl], ...]}``:

* ``announce``: multicast every record in response packets of at most ``packet_bytes`` bytes,
  ``rate`` packets/s, ordered addresses, then SRV/TXT, then PTR (so a listener that follows up
  on a PTR finds the rest already there), prints ``{"event": "done", "packets": N}`` and exits.
  This is how 10,000 services reach the gateway quickly: python-zeroconf would probe each one.
* ``respond``: a device that never announces and answers questions for its records only, the
  way RFC 6762 §6 says: unique records (A, AAAA, SRV, TXT) at once, shared ones (PTR) after a
  random 20-120 ms; QU questions by unicast to the asker's port 5353, others by multicast.
  A cache that lacks these records must ask, so every lookup of them is a cache miss.
  Prints ``{"event": "ready"}``, then ``{"event": "answered", ...}`` lines; SIGTERM ends it.
"""

from __future__ import annotations

import json
import random
import select
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from bridge.mdns import wire

GROUP = "224.0.0.251"
PORT = 5353
_ORDER: dict[int, int] = {
    dns.rdatatype.A: 0,
    dns.rdatatype.AAAA: 0,
    dns.rdatatype.SRV: 1,
    dns.rdatatype.TXT: 1,
    dns.rdatatype.PTR: 2,
}
_SHARED = {dns.rdatatype.PTR}


def _records(raw: list[list[Any]]) -> list[wire.Record]:
    out = []
    for owner, rtype, text, ttl in raw:
        rdtype = dns.rdatatype.from_text(rtype)
        rdata = dns.rdata.from_text(dns.rdataclass.IN, rdtype, text)
        out.append(
            wire.Record(
                dns.name.from_text(owner),
                rdtype,
                int(ttl),
                rdata,
                cache_flush=rdtype not in _SHARED,
            )
        )
    return out


def _socket(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(address))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 21)
    sock.bind(("0.0.0.0", PORT))
    sock.setsockopt(
        socket.IPPROTO_IP,
        socket.IP_ADD_MEMBERSHIP,
        socket.inet_aton(GROUP) + socket.inet_aton(address),
    )
    return sock


def _packets(records: list[wire.Record], limit: int) -> list[bytes]:
    """Records in packets of at most ``limit`` bytes (sized uncompressed: an upper bound)."""
    out: list[bytes] = []
    chunk: list[wire.Record] = []
    size = 12
    for rec in sorted(records, key=lambda r: _ORDER.get(r.rdtype, 1)):
        cost = len(rec.name.to_wire() or b"") + 10 + len(rec.rdata.to_wire() or b"")
        if chunk and size + cost > limit:
            out.append(wire.encode(wire.Packet(0, 0x8400, [], chunk)))
            chunk, size = [], 12
        chunk.append(rec)
        size += cost
    if chunk:
        out.append(wire.encode(wire.Packet(0, 0x8400, [], chunk)))
    return out


def announce(cfg: dict[str, Any]) -> int:
    sock = _socket(cfg["address"])
    packets = _packets(_records(cfg["records"]), int(cfg.get("packet_bytes", 1400)))
    gap = 1.0 / float(cfg.get("rate", 2000))
    start = time.monotonic()
    for i, data in enumerate(packets):
        delay = start + i * gap - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sock.sendto(data, (GROUP, PORT))
    print(
        json.dumps(
            {
                "event": "done",
                "packets": len(packets),
                "seconds": round(time.monotonic() - start, 3),
            }
        ),
        flush=True,
    )
    return 0


def respond(cfg: dict[str, Any]) -> int:
    sock = _socket(cfg["address"])
    by_q: dict[tuple[dns.name.Name, int], list[wire.Record]] = {}
    for rec in _records(cfg["records"]):
        by_q.setdefault((rec.name, rec.rdtype), []).append(rec)
    stop = False

    def on_term(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    rng = random.Random(0)
    due: list[tuple[float, bytes, tuple[str, int]]] = []  # delayed shared answers
    print(json.dumps({"event": "ready"}), flush=True)
    while not stop:
        now = time.monotonic()
        for item in [d for d in due if d[0] <= now]:
            due.remove(item)
            sock.sendto(item[1], item[2])
        timeout = max(0.0, min((d[0] for d in due), default=now + 0.2) - now)
        try:
            ready, _, _ = select.select([sock], [], [], timeout)
        except InterruptedError:
            continue
        if not ready:
            continue
        data, (src, sport) = sock.recvfrom(9000)
        try:
            packet = wire.parse(data)
        except wire.WireError:
            continue
        if packet.is_response:
            continue
        for q in packet.questions:
            answers = by_q.get((q.name, q.rdtype))
            if not answers:
                continue
            reply = wire.encode(wire.Packet(0, 0x8400, [], answers))
            dest = (src, sport) if q.unicast or sport != PORT else (GROUP, PORT)
            if q.rdtype in _SHARED:
                due.append((time.monotonic() + rng.uniform(0.020, 0.120), reply, dest))
            else:
                sock.sendto(reply, dest)
            print(
                json.dumps({"event": "answered", "name": q.name.to_text(), "type": q.rdtype}),
                flush=True,
            )
    return 0


def main() -> int:
    arg = sys.argv[1]  # the JSON, or @file holding it
    cfg = json.loads(Path(arg[1:]).read_text() if arg.startswith("@") else arg)
    return announce(cfg) if cfg["mode"] == "announce" else respond(cfg)


if __name__ == "__main__":
    sys.exit(main())
