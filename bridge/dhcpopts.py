"""DHCP options that hand clients the router's time service and their VLAN's browse domain.

``mdns-gateway dhcp-options --config FILE [--format dnsmasq|kea]`` prints, per VLAN:
DHCPv4 option 42 (NTP servers, RFC 2132 §8.3) and 119 (domain search, RFC 3397), DHCPv6
option 56 (NTP server, RFC 5908: one address sub-option per server) and 24 (domain search
list, RFC 3646). The NTP servers of a VLAN are the chrony servers advertised there, in
preference order (SRV priority): a server's configured addresses, or the gateway's own
addresses on that VLAN's interface. The search domain is the VLAN's wide-area domain, where
DNS-SD browsing (``b._dns-sd._udp``) and ``ntp.<domain>`` answer.

Pure: :func:`plan` takes the Config and the interfaces' addresses; the renderers return text.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .config import Config

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
FORMATS = ("dnsmasq", "kea")


@dataclass(frozen=True, slots=True)
class VlanOptions:
    vlan: str
    interface: str
    domain: str  # without the trailing dot
    ntp4: tuple[str, ...]
    ntp6: tuple[str, ...]
    subnets4: tuple[str, ...]
    subnets6: tuple[str, ...]
    missing_interface: bool = False  # the interface was not found: own addresses unknown


def _usable(addr: IPInterface) -> bool:
    return not (addr.ip.is_link_local or addr.ip.is_loopback)


def plan(cfg: Config, interfaces: Mapping[str, Sequence[IPInterface]]) -> list[VlanOptions]:
    """Options per VLAN; ``interfaces`` maps interface name -> its addresses with prefixes."""
    out: list[VlanOptions] = []
    chrony = cfg.chrony
    servers = sorted(chrony.servers, key=lambda s: s.priority) if chrony else []
    for vlan in cfg.vlans.values():
        own = [a for a in interfaces.get(vlan.interface, ()) if _usable(a)]
        ntp: list[str] = []
        if chrony is not None and vlan.name in chrony.vlans:
            for server in servers:
                addrs = (
                    server.addresses.get(vlan.name, ())
                    if server.addresses
                    else tuple(str(a.ip) for a in own)
                )
                ntp += [a for a in addrs if a not in ntp]
        ips = [ipaddress.ip_address(a) for a in ntp]
        nets = list(vlan.subnets) or [a.network for a in own]
        out.append(
            VlanOptions(
                vlan=vlan.name,
                interface=vlan.interface,
                domain=vlan.domain.to_text(omit_final_dot=True),
                ntp4=tuple(str(i) for i in ips if i.version == 4),
                ntp6=tuple(str(i) for i in ips if i.version == 6),
                subnets4=tuple(dict.fromkeys(str(n) for n in nets if n.version == 4)),
                subnets6=tuple(dict.fromkeys(str(n) for n in nets if n.version == 6)),
                missing_interface=vlan.interface not in interfaces,
            )
        )
    return out


def ntp_server_suboptions(addresses: Sequence[str]) -> str:
    """DHCPv6 option 56 contents (RFC 5908 §4): NTP_SUBOPTION_SRV_ADDR per address, hex."""
    out = b""
    for a in addresses:
        out += (1).to_bytes(2, "big") + (16).to_bytes(2, "big") + ipaddress.IPv6Address(a).packed
    return out.hex().upper()


def render_dnsmasq(options: Sequence[VlanOptions], source: str) -> str:
    """dnsmasq tags every DHCP request with the name of the interface it arrived on."""
    lines = [
        f"# DHCP options from mdns-gateway ({source}) for dnsmasq.",
        "# Each request is tagged with its arrival interface's name (tag:<interface>).",
    ]
    for o in options:
        lines.append("")
        lines.append(f"# VLAN {o.vlan}: interface {o.interface}, domain {o.domain}")
        if o.missing_interface:
            lines.append(
                f"# (interface {o.interface} not found here: only configured addresses are listed)"
            )
        tag = f"tag:{o.interface}"
        if o.ntp4:
            lines.append(f"dhcp-option={tag},option:ntp-server,{','.join(o.ntp4)}")
        lines.append(f"dhcp-option={tag},option:domain-search,{o.domain}")
        if o.ntp6:
            lines.append(
                f"dhcp-option={tag},option6:ntp-server," + ",".join(f"[{a}]" for a in o.ntp6)
            )
        lines.append(f"dhcp-option={tag},option6:domain-search,{o.domain}")
    return "\n".join(lines) + "\n"


def render_kea(options: Sequence[VlanOptions], source: str) -> str:
    """Kea: one subnet entry per VLAN prefix with its option-data (merge into your config)."""
    subnet4: list[dict[str, object]] = []
    subnet6: list[dict[str, object]] = []
    for o in options:
        data4: list[dict[str, object]] = []
        if o.ntp4:
            data4.append({"name": "ntp-servers", "code": 42, "data": ", ".join(o.ntp4)})
        data4.append({"name": "domain-search", "code": 119, "data": o.domain})
        data6: list[dict[str, object]] = []
        if o.ntp6:
            # option 56 is a list of sub-options; older Kea has no definition for it, so
            # the option goes in as bytes: sub-option 1 (server address), length 16, address
            data6.append(
                {
                    "code": 56,
                    "space": "dhcp6",
                    "csv-format": False,
                    "data": ntp_server_suboptions(o.ntp6),
                }
            )
        data6.append({"name": "domain-search", "code": 24, "data": o.domain})
        for net in o.subnets4:
            subnet4.append(
                {
                    "subnet": net,
                    "interface": o.interface,
                    "user-context": {"vlan": o.vlan},
                    "option-data": data4,
                }
            )
        for net in o.subnets6:
            subnet6.append(
                {
                    "subnet": net,
                    "interface": o.interface,
                    "user-context": {"vlan": o.vlan},
                    "option-data": data6,
                }
            )
    doc = {
        "comment": f"DHCP options from mdns-gateway ({source}): merge each subnet's "
        "option-data into your Kea configuration",
        "Dhcp4": {"subnet4": subnet4},
        "Dhcp6": {"subnet6": subnet6},
    }
    return json.dumps(doc, indent=2) + "\n"


def render(options: Sequence[VlanOptions], fmt: str, source: str) -> str:
    if fmt == "kea":
        return render_kea(options, source)
    return render_dnsmasq(options, source)
