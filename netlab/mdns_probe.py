"""Raw mDNS senders and sniffers inside lab host namespaces, for reflector tests and the bench.

``Sniffer`` joins the mDNS group on a host's eth0 (IPv4 or IPv6) and records every datagram
with its source and IP TTL / hop limit; ``Sender`` multicasts crafted packets from port 5353.
``WireCounter`` counts mDNS frames on the router's bridges (AF_PACKET), whoever sent them.
All sockets are created inside namespaces the lab made; nothing leaves them.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from netlab.lab import Host, Lab, netns_socket, poll_until, run

MDNS_PORT = 5353
GROUP4 = "224.0.0.251"
GROUP6 = "ff02::fb"
IP_MULTICAST_ALL = 49
IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)
IP_TTL = getattr(socket, "IP_TTL", 2)
IPV6_RECVHOPLIMIT = getattr(socket, "IPV6_RECVHOPLIMIT", 51)
IPV6_HOPLIMIT = getattr(socket, "IPV6_HOPLIMIT", 52)
ETH_P_ALL = 0x0003


def ifindex(ns: str, ifname: str) -> int:
    data = json.loads(run(None, "ip", "-n", ns, "-j", "link", "show", ifname).stdout)
    return int(data[0]["ifindex"])


def link_local(ns: str, ifname: str) -> str | None:
    data = json.loads(run(None, "ip", "-n", ns, "-j", "-6", "addr", "show", "dev", ifname).stdout)
    for link in data:
        for a in link.get("addr_info", []):
            if a.get("scope") == "link" and a.get("local"):
                return str(a["local"])
    return None


@dataclass(frozen=True)
class Datagram:
    t: float
    src: str
    hops: int  # IP TTL / hop limit as received
    data: bytes


class Sniffer:
    """Every mDNS datagram a host receives on eth0 (one family), in a background thread."""

    def __init__(self, host: Host, family: int = socket.AF_INET, max_packets: int = 100_000):
        self.host = host
        self.family = family
        self.max_packets = max_packets
        self.packets: list[Datagram] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        index = ifindex(host.ns, host.ifname)
        sock = netns_socket(host.ns, family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        if family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
            sock.bind(("0.0.0.0", MDNS_PORT))
            mreq = socket.inet_aton(GROUP4) + struct.pack("=4si", b"\0\0\0\0", index)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
            sock.bind(("::", MDNS_PORT))
            mreq6 = socket.inet_pton(socket.AF_INET6, GROUP6) + struct.pack("=I", index)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq6)
        sock.setblocking(False)
        self.sock = sock
        self._thread = threading.Thread(target=self._loop, name=f"sniff-{host.name}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if not ready:
                continue
            for _ in range(256):
                try:
                    data, anc, _, addr = self.sock.recvmsg(9216, socket.CMSG_SPACE(16))
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    return
                hops = -1
                for level, kind, value in anc:
                    if (level, kind) in (
                        (socket.IPPROTO_IP, IP_TTL),
                        (socket.IPPROTO_IPV6, IPV6_HOPLIMIT),
                    ):
                        hops = struct.unpack("=i", value[:4])[0]
                src = str(addr[0]).split("%", 1)[0]
                with self._lock:
                    if len(self.packets) < self.max_packets:
                        self.packets.append(Datagram(time.monotonic(), src, hops, data))

    def since(
        self, t0: float = 0.0, src: Iterable[str] | None = None, contains: bytes | None = None
    ) -> list[Datagram]:
        allowed = None if src is None else set(src)
        with self._lock:
            return [
                p
                for p in self.packets
                if p.t >= t0
                and (allowed is None or p.src in allowed)
                and (contains is None or contains in p.data)
            ]

    def wait(
        self,
        predicate: Callable[[Datagram], bool],
        timeout: float,
        t0: float = 0.0,
        what: str = "a datagram",
    ) -> Datagram:
        def found() -> Datagram | None:
            for p in self.since(t0):
                if predicate(p):
                    return p
            return None

        result: Datagram = poll_until(found, timeout, interval=0.02, message=what)
        return result

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self.sock.close()


class Sender:
    """Multicasts raw mDNS packets from a host's port 5353 (IPv4 or IPv6)."""

    def __init__(self, host: Host, family: int = socket.AF_INET) -> None:
        self.host = host
        self.family = family
        index = ifindex(host.ns, host.ifname)
        sock = netns_socket(host.ns, family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        if family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(host.ipv4))
            sock.bind((host.ipv4, MDNS_PORT))
            self.target: tuple[object, ...] = (GROUP4, MDNS_PORT)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
            sock.bind(("::", MDNS_PORT))
            self.target = (GROUP6, MDNS_PORT, 0, index)
        self.sock = sock

    def send(self, data: bytes) -> None:
        while True:
            try:
                self.sock.sendto(data, self.target)
                return
            except BlockingIOError:
                select.select([], [self.sock], [], 0.1)

    def close(self) -> None:
        self.sock.close()


class WireCounter:
    """Counts UDP port-5353 frames seen on interfaces of one namespace (AF_PACKET)."""

    def __init__(self, ns: str, ifnames: Iterable[str]) -> None:
        self.counts: dict[str, int] = {}
        self._stop = threading.Event()
        self.socks: list[tuple[str, socket.socket]] = []
        for name in ifnames:
            s = netns_socket(ns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            s.bind((name, 0))
            s.setblocking(False)
            self.socks.append((name, s))
            self.counts[name] = 0
        self._thread = threading.Thread(target=self._loop, name="wirecount", daemon=True)
        self._thread.start()

    @staticmethod
    def _is_mdns(frame: bytes) -> bool:
        if len(frame) < 14:
            return False
        ethertype = struct.unpack_from("!H", frame, 12)[0]
        if ethertype == 0x0800 and len(frame) >= 14 + 28:
            ihl = (frame[14] & 0x0F) * 4
            return frame[23] == 17 and struct.unpack_from("!H", frame, 14 + ihl + 2)[0] == 5353
        if ethertype == 0x86DD and len(frame) >= 14 + 48:
            return frame[20] == 17 and struct.unpack_from("!H", frame, 14 + 40 + 2)[0] == 5353
        return False

    def _loop(self) -> None:
        socks = [s for _, s in self.socks]
        names = {s.fileno(): n for n, s in self.socks}
        while not self._stop.is_set():
            ready, _, _ = select.select(socks, [], [], 0.05)
            for s in ready:
                for _ in range(512):
                    try:
                        frame = s.recv(65535)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        return
                    # count each frame once: where it enters or leaves the bridge device
                    if self._is_mdns(frame):
                        self.counts[names[s.fileno()]] += 1

    def total(self) -> int:
        return sum(self.counts.values())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        for _, s in self.socks:
            s.close()


def http_get(ns: str, host: str, port: int, path: str, timeout: float = 5.0) -> str:
    """A tiny HTTP/1.0 GET from inside namespace ``ns`` (metrics scrapes)."""
    sock = netns_socket(ns, socket.AF_INET, socket.SOCK_STREAM)
    with contextlib.closing(sock):
        sock.settimeout(timeout)
        sock.connect((host, port))
        sock.sendall(f"GET {urllib.parse.quote(path)} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    body = b"".join(chunks).partition(b"\r\n\r\n")[2]
    return body.decode(errors="replace")


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Samples of one metric family from Prometheus text: [(labels, value)]."""
    out = []
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        rest = line[len(name) :]
        labels: dict[str, str] = {}
        if rest.startswith("{"):
            inner, _, rest = rest[1:].partition("}")
            for part in inner.split('",'):
                if "=" in part:
                    k, _, v = part.partition("=")
                    labels[k.strip(",")] = v.strip('"')
        elif not rest.startswith(" "):
            continue
        out.append((labels, float(rest.split()[0])))
    return out


def router_sources(lab: Lab, vlan: str) -> set[str]:
    """Addresses the router uses on a VLAN's bridge (IPv4, global and link-local IPv6)."""
    v = lab.vlans[vlan]
    out = {v.ipv4, v.ipv6}
    ll = link_local(lab.gw, v.bridge)
    if ll:
        out.add(ll)
    return out
