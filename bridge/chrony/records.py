"""The records a healthy chronyd governs: its mDNS registration and the DNS names (pure)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.PTR
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.reversename

from .. import const
from ..configsections import ChronyServer
from ..dnssd import is_link_local
from ..mdns.responder import ServiceSpec, Spec, build_records
from .health import LEAP_TXT, Tracking

NTP_TYPE = "_ntp._udp"
NTS_TYPE = "_ntske._tcp"
NTP_ALIAS = dns.name.from_text("ntp.local.")  # ntp.<VLAN domain> in DNS
IN = dns.rdataclass.IN


def txt_for(tracking: Tracking | None) -> tuple[bytes, ...]:
    if tracking is None:
        return (b"txtvers=1",)
    leap = LEAP_TXT.get(tracking.leap, tracking.leap.lower().replace(" ", "-"))
    return (b"txtvers=1", f"stratum={tracking.stratum}".encode(), f"leap={leap}".encode())


def ntp_spec(server: ChronyServer, tracking: Tracking | None, addresses: Sequence[str]) -> Spec:
    """The responder registration of one server on one VLAN."""
    services = [
        ServiceSpec(
            server.name, NTP_TYPE, const.NTP_PORT, txt_for(tracking), server.priority, server.weight
        )
    ]
    if server.nts:
        services.append(
            ServiceSpec(
                server.name,
                NTS_TYPE,
                const.NTS_KE_PORT,
                (b"txtvers=1",),
                server.priority,
                server.weight,
            )
        )
    return Spec(server.host or server.name, tuple(addresses), tuple(services), const.OWN_RECORD_TTL)


StoreRecord = tuple[dns.name.Name, int, dns.rdata.Rdata]


def store_records(spec: Spec, host_label: str, instance_labels: list[str]) -> list[StoreRecord]:
    """What DNS answers for a registration: its mDNS records, ``ntp.local`` A/AAAA and PTRs.

    The resolver shows ``.local`` names in the VLAN's domain, so ``ntp.local`` answers as
    ``ntp.<VLAN domain>`` and the reverse PTRs point there.
    """
    out: list[StoreRecord] = [
        (r.name, r.rdtype, r.rdata) for r in build_records(spec, host_label, instance_labels)
    ]
    for addr in spec.addresses:
        if ":" in addr:
            out.append(
                (
                    NTP_ALIAS,
                    dns.rdatatype.AAAA,
                    dns.rdtypes.IN.AAAA.AAAA(IN, dns.rdatatype.AAAA, addr),
                )
            )
        else:
            out.append((NTP_ALIAS, dns.rdatatype.A, dns.rdtypes.IN.A.A(IN, dns.rdatatype.A, addr)))
        out.append(
            (
                dns.reversename.from_address(addr),
                dns.rdatatype.PTR,
                dns.rdtypes.ANY.PTR.PTR(IN, dns.rdatatype.PTR, NTP_ALIAS),
            )
        )
    return out


def advertised_addresses(addresses: Sequence[str]) -> tuple[str, ...]:
    """The addresses worth advertising: no link-local ones (they mean nothing off-link)."""
    out = []
    for a in addresses:
        ip = ipaddress.ip_address(a.split("%", 1)[0])
        if is_link_local(ip.packed) or ip.is_loopback:
            continue
        out.append(str(ip))
    return tuple(out)


def server_addresses(
    server: ChronyServer, vlan: str, own: Callable[[str], Sequence[str]]
) -> tuple[str, ...]:
    """Where ``server`` is reached on ``vlan``: its configured addresses, or ours."""
    if server.addresses:
        return tuple(server.addresses.get(vlan, ()))
    return advertised_addresses(own(vlan))
