"""mDNS sockets: one per address family, joined on every VLAN interface, with arrival interface.

Linux hands a joined group's packets to every socket bound to 5353 (IP_MULTICAST_ALL), so
several per-interface sockets cannot tell VLANs apart. We use one socket per family and read
the arrival interface index from IP_PKTINFO / IPV6_PKTINFO on every datagram; sends pick the
outgoing interface per packet the same way. Thin I/O only: decisions live in ingest/browser.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
from collections.abc import Callable

from .. import const

log = logging.getLogger(__name__)

IP_MULTICAST_ALL = 49  # linux/in.h; not exported by the socket module
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)

# (payload, source ip, source port, arrival ifindex, family)
PacketHandler = Callable[[bytes, str, int, int, int], None]

_GROUP4 = socket.inet_aton(const.MDNS_GROUP_V4)
_GROUP6 = socket.inet_pton(socket.AF_INET6, const.MDNS_GROUP_V6)
_GROUP4_DEST = (const.MDNS_GROUP_V4, const.MDNS_PORT)
_ANCILLARY = socket.CMSG_SPACE(64)
_MSG_TRUNC = int(socket.MSG_TRUNC)  # a plain int: IntFlag's & runs Python code per packet


def _open(family: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, const.MDNS_HOP_LIMIT)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        sock.bind(("0.0.0.0", const.MDNS_PORT))
    else:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, const.MDNS_HOP_LIMIT)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, const.MDNS_HOP_LIMIT)
        sock.bind(("::", const.MDNS_PORT))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.setblocking(False)
    return sock


class MdnsTransport:
    """Owns the two mDNS sockets; joins/leaves per interface; sends per interface."""

    def __init__(self, on_packet: PacketHandler) -> None:
        self.on_packet = on_packet
        self.socks: dict[int, socket.socket] = {}
        self.joined: set[tuple[int, int]] = set()  # (family, ifindex)
        self.send_errors = 0
        self.truncated = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pktinfo: dict[int, list[tuple[int, int, bytes]]] = {}  # ifindex -> ancillary

    def start(self, loop: asyncio.AbstractEventLoop, ipv6: bool = True) -> None:
        self._loop = loop
        families = [socket.AF_INET] + ([socket.AF_INET6] if ipv6 and socket.has_ipv6 else [])
        for family in families:
            try:
                sock = _open(family)
            except OSError as exc:
                if family == socket.AF_INET6:
                    log.warning("IPv6 mDNS socket unavailable (%s); continuing with IPv4", exc)
                    continue
                raise
            self.socks[family] = sock
            loop.add_reader(sock.fileno(), self._drain, sock, family)

    def close(self) -> None:
        for sock in self.socks.values():
            if self._loop is not None:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self.socks.clear()
        self.joined.clear()

    def join(self, ifindex: int, has_v4: bool, has_v6: bool) -> None:
        """Join the mDNS groups on an interface (idempotent; safe after a link flap)."""
        wanted = []
        if has_v4 and socket.AF_INET in self.socks:
            wanted.append(socket.AF_INET)
        if has_v6 and socket.AF_INET6 in self.socks:
            wanted.append(socket.AF_INET6)
        for family in wanted:
            if (family, ifindex) in self.joined:
                continue
            sock = self.socks[family]
            try:
                if family == socket.AF_INET:
                    mreq = _GROUP4 + struct.pack("=4si", b"\0\0\0\0", ifindex)
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
                else:
                    mreq6 = _GROUP6 + struct.pack("=I", ifindex)
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq6)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    log.warning(
                        "cannot join mDNS group on ifindex %d (%s): %s",
                        ifindex,
                        "IPv4" if family == socket.AF_INET else "IPv6",
                        exc,
                    )
                    continue
            self.joined.add((family, ifindex))
            log.info(
                "joined mDNS %s group on ifindex %d",
                "IPv4" if family == socket.AF_INET else "IPv6",
                ifindex,
            )

    def forget(self, ifindex: int) -> None:
        """The interface went away: its memberships went with it."""
        for family in (socket.AF_INET, socket.AF_INET6):
            if (family, ifindex) in self.joined:
                self.joined.discard((family, ifindex))
                sock = self.socks.get(family)
                if sock is None:
                    continue
                try:  # harmless if the device is gone already
                    if family == socket.AF_INET:
                        mreq = _GROUP4 + struct.pack("=4si", b"\0\0\0\0", ifindex)
                        sock.setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, mreq)
                    else:
                        mreq6 = _GROUP6 + struct.pack("=I", ifindex)
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_LEAVE_GROUP, mreq6)
                except OSError:
                    pass  # the device went with its memberships (ENODEV, EADDRNOTAVAIL): none left

    def send(
        self, data: bytes, ifindex: int, family: int, dest: tuple[str, int] | None = None
    ) -> bool:
        """Send on one interface; a failure is counted and logged, never raised."""
        sock = self.socks.get(family)
        if sock is None:
            return False
        try:
            if family == socket.AF_INET:
                anc = self._pktinfo.get(ifindex)
                if anc is None:
                    anc = self._pktinfo[ifindex] = [
                        (
                            socket.IPPROTO_IP,
                            IP_PKTINFO,
                            struct.pack("=i4s4s", ifindex, b"\0\0\0\0", b"\0\0\0\0"),
                        )
                    ]
                sock.sendmsg([data], anc, 0, dest or _GROUP4_DEST)
            else:
                host, port = dest or (const.MDNS_GROUP_V6, const.MDNS_PORT)
                sock.sendto(data, (host, port, 0, ifindex))
            return True
        except OSError as exc:
            self.send_errors += 1
            log.debug("mDNS send on ifindex %d failed: %s", ifindex, exc)
            return False

    def _drain(self, sock: socket.socket, family: int) -> None:
        for _ in range(const.DNS_UDP_DRAIN_BATCH):
            try:
                data, ancdata, flags, addr = sock.recvmsg(const.MDNS_RECV_BUFFER, _ANCILLARY)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("mDNS receive error: %s", exc)
                return
            if flags & _MSG_TRUNC:
                self.truncated += 1
                continue
            ifindex = 0
            for level, kind, value in ancdata:
                if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                    ifindex = struct.unpack_from("=i", value)[0]
                elif level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO:
                    ifindex = struct.unpack_from("=I", value, 16)[0]
            src = addr[0]
            if family == socket.AF_INET6 and "%" in src:
                src = src.split("%", 1)[0]
            try:
                self.on_packet(data, src, addr[1], ifindex, family)
            except Exception:  # one bad packet must never stop the reader
                log.exception("mDNS packet handler failed")
