"""Network interfaces as the kernel sees them now: index, flags, addresses and prefixes.

Read again every few seconds (const.IFACE_RESCAN_INTERVAL) so VLAN interfaces that flap,
vanish or come back are followed without a restart. The addresses come from the kernel's
address dump over rtnetlink (``RTM_GETADDR``, what glibc's ``getifaddrs`` reads), parsed here:
ifaddr, which did this through ``ctypes``, cost ~13 ms of wall time at import (``ctypes``,
``platform`` and an ``ldconfig -p`` child process to find libc) on the way to the first DNS
answer (docs/performance.md, "Start-up").
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from . import const

IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_MULTICAST = 0x1000

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Interface:
    name: str
    index: int
    flags: int
    addresses: tuple[IPInterface, ...]

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def usable(self) -> bool:
        """Up, multicast-capable and not loopback: worth browsing on."""
        return self.up and bool(self.flags & IFF_MULTICAST) and not self.flags & IFF_LOOPBACK

    @property
    def ipv4(self) -> list[ipaddress.IPv4Interface]:
        return [a for a in self.addresses if isinstance(a, ipaddress.IPv4Interface)]

    @property
    def ipv6(self) -> list[ipaddress.IPv6Interface]:
        return [a for a in self.addresses if isinstance(a, ipaddress.IPv6Interface)]


def own_prefixes(addresses: Iterable[IPInterface]) -> tuple[IPNetwork, ...]:
    """The subnets an interface's addresses put it on; fe80::/10 is on every link, so it is
    none (169.254/16 is a subnet like any other)."""
    return tuple(a.network for a in addresses if not (a.version == 6 and a.ip.is_link_local))


def _flags(name: str) -> int:
    try:
        return int(Path(f"/sys/class/net/{name}/flags").read_text().strip(), 16)
    except (OSError, ValueError):
        return 0


# rtnetlink (linux/netlink.h, linux/rtnetlink.h, linux/if_addr.h)
_NLMSG = struct.Struct("=IHHII")  # length, type, flags, sequence, port
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, interface index
_RTA = struct.Struct("=HH")  # length, type
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_RTM_NEWADDR, _RTM_GETADDR = 20, 22
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_IFA_ADDRESS, _IFA_LOCAL, _IFA_LABEL = 1, 2, 3


def _align(n: int) -> int:
    return (n + 3) & ~3


def parse_addresses(dump: bytes) -> list[tuple[int, str | None, IPInterface]]:
    """(interface index, IPv4 label, address/prefix) of each ``RTM_NEWADDR`` in a dump, in its
    order. The address as ``getifaddrs`` gives it: ``IFA_LOCAL`` when present (on a
    point-to-point link ``IFA_ADDRESS`` is the peer's), else ``IFA_ADDRESS``; other families
    are skipped. Raises OSError for the kernel's error message, ValueError for a dump that
    does not parse."""
    out: list[tuple[int, str | None, IPInterface]] = []
    pos = 0
    while pos + _NLMSG.size <= len(dump):
        length, kind, _, _, _ = _NLMSG.unpack_from(dump, pos)
        if length < _NLMSG.size or pos + length > len(dump):
            raise ValueError(f"netlink message of {length} bytes at {pos} of {len(dump)}")
        body = pos + _NLMSG.size
        if kind == _NLMSG_ERROR:
            err = -struct.unpack_from("=i", dump, body)[0]
            if err:
                raise OSError(err, f"RTM_GETADDR: {os.strerror(err)}")
        elif kind == _RTM_NEWADDR and length >= _NLMSG.size + _IFADDRMSG.size:
            family, prefix, _, _, index = _IFADDRMSG.unpack_from(dump, body)
            attrs: dict[int, bytes] = {}
            at = body + _IFADDRMSG.size
            end = pos + length
            while at + _RTA.size <= end:
                alen, atype = _RTA.unpack_from(dump, at)
                if alen < _RTA.size or at + alen > end:
                    break
                attrs.setdefault(atype, dump[at + _RTA.size : at + alen])
                at += _align(alen)
            raw = attrs.get(_IFA_LOCAL) or attrs.get(_IFA_ADDRESS)
            if family == socket.AF_INET and raw is not None and len(raw) == 4:
                label = attrs.get(_IFA_LABEL)
                name = label.split(b"\0", 1)[0].decode(errors="replace") if label else None
                out.append((index, name, ipaddress.IPv4Interface((raw, prefix))))
            elif family == socket.AF_INET6 and raw is not None and len(raw) == 16:
                out.append((index, None, ipaddress.IPv6Interface((raw, prefix))))
        pos += _align(length)
    return out


def _address_dump() -> bytes:
    """The kernel's dump of every address in this network namespace (one request, read to
    its ``NLMSG_DONE``)."""
    request = _NLMSG.pack(
        _NLMSG.size + _IFADDRMSG.size, _RTM_GETADDR, _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0
    ) + _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    chunks: list[bytes] = []
    size = 0
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.sendto(request, (0, 0))
        while True:
            chunk = sock.recv(const.NETLINK_RECV_BYTES)
            chunks.append(chunk)
            size += len(chunk)
            if size > const.NETLINK_DUMP_MAX:
                raise OSError(f"RTM_GETADDR dump larger than {const.NETLINK_DUMP_MAX} bytes")
            if _last_is_done(chunk):
                return b"".join(chunks)


def _last_is_done(chunk: bytes) -> bool:
    """Whether a read ends the dump: it holds ``NLMSG_DONE`` or an error (or nothing)."""
    pos = 0
    while pos + _NLMSG.size <= len(chunk):
        length, kind, _, _, _ = _NLMSG.unpack_from(chunk, pos)
        if kind in (_NLMSG_DONE, _NLMSG_ERROR) or length < _NLMSG.size:
            return True
        pos += _align(length)
    return not chunk


def list_interfaces() -> list[Interface]:
    """Every interface with an address, in the order of its first address in the dump (as
    ``getifaddrs`` lists them); an IPv4 address with a label (``eth0:1``) names an interface
    of that name, as with ``getifaddrs``."""
    names = dict(socket.if_nameindex())
    found: dict[str, tuple[int, list[IPInterface]]] = {}
    for index, label, address in parse_addresses(_address_dump()):
        name = label or names.get(index)
        if name is None:  # gone between the two reads
            continue
        found.setdefault(name, (index, []))[1].append(address)
    return [
        Interface(name, index, _flags(name), tuple(addrs)) for name, (index, addrs) in found.items()
    ]


def by_name() -> dict[str, Interface]:
    return {i.name: i for i in list_interfaces()}


def local_addresses() -> set[str]:
    """Every address of every interface in this network namespace, as text."""
    return {str(a.ip) for i in list_interfaces() for a in i.addresses}
