"""Which interface is which VLAN right now, and what lies on each VLAN's subnets.

Rescanned every IFACE_RESCAN_INTERVAL seconds: an interface that goes down and up, or is
deleted and re-created with a new index, is rejoined without a restart (avahi#417).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .. import const
from ..config import IPNetwork, VlanConfig
from ..dnssd import is_link_local
from ..interfaces import Interface, list_interfaces, own_prefixes

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Link:
    """A VLAN bound to its interface as last seen."""

    vlan: str
    interface: str
    ifindex: int
    up: bool
    subnets: tuple[IPNetwork, ...]
    addresses: tuple[str, ...]  # our own addresses on it (for loop/own-packet checks)
    has_v4: bool
    has_v6: bool
    trust_any_address: bool = False  # VlanConfig.trust_any_address: no address check
    # sources already checked: ingest and the reflector both ask for every response, and an
    # address parse per packet is a measurable share of it; a new Link (after every interface
    # rescan) starts empty, so a changed subnet is never answered from here
    _checked: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)
    # A/AAAA rdatas already checked (their raw 4 or 16 octets), for the same reason
    _held: dict[bytes, bool] = field(default_factory=dict, compare=False, repr=False)

    def on_link(self, src: str) -> bool:
        """RFC 6762 §11: accept only sources on this link (IPv6 link-local always is)."""
        ok = self._checked.get(src)
        if ok is None:
            if len(self._checked) >= const.LINK_SOURCES_MAX:
                self._checked.clear()
            ok = self._checked[src] = self._check(src)
        return ok

    def holds_address(self, raw: bytes) -> bool:
        """Whether an A/AAAA rdata (its 4 or 16 octets) can name a device on this link: a
        host address of one of its subnets, or link-local (169.254/16, fe80::/10); not a
        subnet's network or broadcast address, nor loopback, multicast or another VLAN's.
        Always true with ``trust_any_address``."""
        ok = self._held.get(raw)
        if ok is None:
            if len(self._held) >= const.LINK_SOURCES_MAX:
                self._held.clear()
            ok = self._held[raw] = self.trust_any_address or self._holds(raw)
        return ok

    def _holds(self, raw: bytes) -> bool:
        if is_link_local(raw):
            return True
        ip = ipaddress.ip_address(raw)
        for net in self.subnets:
            if ip.version == net.version and ip in net:
                # a v4 subnet's own network and broadcast addresses are no device's (/31 and
                # /32 have none, RFC 3021)
                return (
                    net.version == 6
                    or net.prefixlen >= 31
                    or (ip != net.network_address and ip != net.broadcast_address)
                )
        return False

    def _check(self, src: str) -> bool:
        try:
            ip = ipaddress.ip_address(src)
        except ValueError:
            return False
        if ip.version == 6 and is_link_local(ip.packed):
            return True
        return any(ip.version == n.version and ip in n for n in self.subnets)


class Links:
    """Which interface is which VLAN right now, looked up by VLAN name and by ifindex.

    ``refresh`` re-reads the kernel's interfaces (every ``IFACE_RESCAN_INTERVAL``) and says
    which links need joining and which went away, so a link flap or a re-created interface
    (a new ifindex) is followed; the packet path only does dict look-ups.
    """

    def __init__(
        self, vlans: Mapping[str, VlanConfig], scan: Callable[[], list[Interface]] = list_interfaces
    ) -> None:
        self.vlans = vlans
        self._scan = scan
        self.by_vlan: dict[str, Link] = {}
        self.by_index: dict[int, Link] = {}
        self.own_addresses: frozenset[str] = frozenset()

    def refresh(self) -> tuple[list[Link], list[Link]]:
        """Re-read interfaces; returns (links that need joining, links that went away)."""
        current = {i.name: i for i in self._scan()}
        new_by_vlan: dict[str, Link] = {}
        for vlan in self.vlans.values():
            iface = current.get(vlan.interface)
            if iface is None:
                continue
            prefixes = own_prefixes(iface.addresses)  # fe80::/10: see ``_check``
            new_by_vlan[vlan.name] = Link(
                vlan=vlan.name,
                interface=iface.name,
                ifindex=iface.index,
                up=iface.up,
                subnets=vlan.subnets or prefixes,
                addresses=tuple(str(a.ip) for a in iface.addresses),
                has_v4=bool(iface.ipv4),
                has_v6=bool(iface.ipv6),
                trust_any_address=vlan.trust_any_address,
            )
        joins: list[Link] = []
        gone: list[Link] = []
        for name, link in new_by_vlan.items():
            old = self.by_vlan.get(name)
            if (
                old is None
                or old.ifindex != link.ifindex
                or (link.up and not old.up)
                or (link.has_v4, link.has_v6) != (old.has_v4, old.has_v6)
            ):
                if old is not None and old.ifindex != link.ifindex:
                    gone.append(old)
                joins.append(link)
                log.info(
                    "VLAN %s on %s (ifindex %d, %s)",
                    name,
                    link.interface,
                    link.ifindex,
                    "up" if link.up else "down",
                )
        for name, old in self.by_vlan.items():
            if name not in new_by_vlan:
                gone.append(old)
                log.warning(
                    "VLAN %s: interface %s is gone; waiting for it to return", name, old.interface
                )
        for vlan in self.vlans.values():
            if (
                vlan.name not in new_by_vlan
                and vlan.name not in self.by_vlan
                and not getattr(self, "_warned_" + vlan.name, False)
            ):
                log.warning(
                    "VLAN %s: interface %s not found; waiting for it", vlan.name, vlan.interface
                )
                setattr(self, "_warned_" + vlan.name, True)
        self.by_vlan = new_by_vlan
        self.by_index = {link.ifindex: link for link in new_by_vlan.values()}
        self.own_addresses = frozenset(
            a for i in current.values() for a in (str(x.ip) for x in i.addresses)
        )
        return joins, gone

    def vlan_of_address(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
        for link in self.by_vlan.values():
            for net in link.subnets:
                if ip.version == net.version and ip in net:
                    return link.vlan
        return None
