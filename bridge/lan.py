"""Which interfaces the embedded default (no --config) takes as VLANs, and why it skips others.

A router has more multicast interfaces than LAN segments: the WAN, container and VPN links,
the member ports of its bridges. Browsing on those would send mDNS queries where they do not
belong (onto the WAN) or twice onto one segment (a bridge and its ports). :func:`choose` is the
pure rule, :func:`read_links` the facts the kernel gives (sysfs, /proc/net routes) in this
network namespace.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .interfaces import Interface

# interfaces made by container runtimes, hypervisors and CNI plugins, and VPN tunnels
VIRTUAL_PREFIXES = ("docker", "veth", "virbr", "cni", "flannel", "cali", "tun", "tap", "wg")
ARPHRD_ETHER = 1  # /sys/class/net/X/type of Ethernet-like links (Ethernet, Wi-Fi, bridges)


@dataclass(frozen=True, slots=True)
class Link:
    """What :func:`choose` needs to know about one interface."""

    name: str
    usable: bool  # up, multicast, not loopback
    arp_type: int = ARPHRD_ETHER
    devtype: str = ""  # uevent DEVTYPE: bridge, vlan, wlan, wireguard, bond... ('' Ethernet)
    tun: bool = False  # a tun/tap device
    master: str = ""  # the bridge or bond it is a port of
    default_route: bool = False  # an IPv4 or IPv6 default route leaves through it


@dataclass(frozen=True, slots=True)
class Choice:
    vlans: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]  # (interface, why)
    wan_kept: bool = False  # the VLANs are default-route interfaces: there was nothing else

    def describe(self) -> str:
        """The one start-up log line: what became a VLAN, what was skipped and why."""
        chosen = ", ".join(self.vlans) or "none"
        if self.wan_kept:
            chosen += " (default-route interface, kept: no other candidate)"
        why = "; ".join(f"{n}: {r}" for n, r in self.skipped) or "none"
        return f"embedded default: VLANs on {chosen}; skipped {why}"


def _not_a_segment(link: Link) -> str:
    """Why the link is not a LAN segment, or '' when it is one."""
    if not link.usable:
        return ""  # not a candidate at all (down, loopback, no multicast): not worth a word
    if link.tun or link.devtype == "wireguard":
        return "a tunnel (tun/tap/WireGuard)"
    if link.name.startswith(VIRTUAL_PREFIXES):
        return "a container or virtual interface"
    if link.master:
        return f"a port of {link.master} (the bridge is used)"
    if link.arp_type != ARPHRD_ETHER:
        return f"not an Ethernet-like link (type {link.arp_type})"
    return ""


def choose(links: Sequence[Link]) -> Choice:
    """LAN segments among the links; the default-route one only when it is the only one."""
    why = {link.name: _not_a_segment(link) for link in links if link.usable}
    segments = [link for link in links if link.usable and not why[link.name]]
    wan_kept = bool(segments) and all(link.default_route for link in segments)
    if not wan_kept:
        for link in segments:
            if link.default_route:
                why[link.name] = "the default-route interface (the WAN)"
    return Choice(
        tuple(name for name, reason in why.items() if not reason),
        tuple((name, reason) for name, reason in why.items() if reason),
        wan_kept,
    )


# --- the kernel's facts ----------------------------------------------------------------------

SYS_NET = Path("/sys/class/net")


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def default_route_interfaces() -> set[str]:
    """Interfaces an IPv4 or IPv6 default route leaves through (/proc/net/route, ipv6_route)."""
    names: set[str] = set()
    for line in _read(Path("/proc/net/route")).splitlines()[1:]:
        f = line.split()
        if len(f) > 7 and f[1] == "00000000" and f[7] == "00000000":
            names.add(f[0])
    for line in _read(Path("/proc/net/ipv6_route")).splitlines():
        f = line.split()
        if len(f) == 10 and f[0] == "0" * 32 and f[1] == "00" and f[9] != "lo":
            names.add(f[9])
    return names


def read_links(interfaces: Sequence[Interface]) -> list[Link]:
    """The facts about each interface, read from sysfs and the routing table."""
    defaults = default_route_interfaces()
    links = []
    for iface in interfaces:
        d = SYS_NET / iface.name
        uevent = dict(
            line.partition("=")[::2] for line in _read(d / "uevent").splitlines() if "=" in line
        )
        master = ""
        if (d / "brport").exists() or (d / "bonding_slave").exists():
            master = Path(_read_link(d / "master")).name or "a bridge"
        arp = _read(d / "type")
        links.append(
            Link(
                name=iface.name,
                usable=iface.usable,
                arp_type=int(arp) if arp.isdigit() else ARPHRD_ETHER,
                devtype=uevent.get("DEVTYPE", ""),
                tun=(d / "tun_flags").exists(),
                master=master,
                default_route=iface.name in defaults,
            )
        )
    return links


def _read_link(path: Path) -> str:
    try:
        return str(path.readlink())
    except OSError:
        return ""
