"""Network interfaces as the kernel sees them now: index, flags, addresses and prefixes.

Read again every few seconds (const.IFACE_RESCAN_INTERVAL) so VLAN interfaces that flap,
vanish or come back are followed without a restart.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import ifaddr

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


def list_interfaces() -> list[Interface]:
    result = []
    for adapter in ifaddr.get_adapters():
        addrs: list[IPInterface] = []
        for ip in adapter.ips:
            if isinstance(ip.ip, tuple):
                addrs.append(ipaddress.IPv6Interface(f"{ip.ip[0]}/{ip.network_prefix}"))
            else:
                addrs.append(ipaddress.IPv4Interface(f"{ip.ip}/{ip.network_prefix}"))
        index = adapter.index if adapter.index is not None else 0
        result.append(Interface(adapter.name, index, _flags(adapter.name), tuple(addrs)))
    return result


def by_name() -> dict[str, Interface]:
    return {i.name: i for i in list_interfaces()}


def local_addresses() -> set[str]:
    """Every address of every interface in this network namespace, as text."""
    return {str(a.ip) for i in list_interfaces() for a in i.addresses}
