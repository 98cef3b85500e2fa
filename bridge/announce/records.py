"""Announcements and lease host names -> responder registrations and DNS records (pure).

One registration per (VLAN, announcement) and, with ``publish_mdns``, per (VLAN, lease host);
never renamed on a conflict (``rename=False``: the device that holds the name keeps it). The
DNS side answers from the store: a registration's mDNS records plus the reverse PTR of each
address (``.local`` names show in the VLAN's domain, so ``printer.local`` answers as
``printer.<VLAN domain>`` and its PTR points there, as chrony's ``ntp.local`` does).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.PTR
import dns.reversename

from .. import const
from ..dnssd import host_name
from ..mdns.responder import ServiceSpec, Spec, build_records
from ..policy.announcement import ServiceAnnouncement

IN = dns.rdataclass.IN
StoreRecord = tuple[dns.name.Name, int, dns.rdata.Rdata]
RegKey = tuple[str, str]  # (VLAN, registration key)

ANNOUNCEMENT, LEASE = "announcement", "lease"


@dataclass(frozen=True, slots=True)
class LeaseHost:
    """A DHCP lease's host name on a VLAN and the addresses its leases give it now."""

    vlan: str
    host: str  # a valid, lower-case host label
    addresses: tuple[str, ...]
    source: str  # the lease file, for diagnostics


@dataclass(frozen=True, slots=True)
class Wanted:
    """One thing to publish on a VLAN: its registration, where it came from, by mDNS or not."""

    spec: Spec
    origin: str  # ANNOUNCEMENT or LEASE
    source: str  # the announcement's name and file, or the lease file
    mdns: bool  # announced by the responder (else only pinned for DNS)


def registration_key(origin: str, name: str) -> str:
    return f"{origin}:{name}"


def announcement_spec(ann: ServiceAnnouncement, addresses: tuple[str, ...]) -> Spec:
    service = ServiceSpec(ann.instance, ann.stype, ann.port, ann.txt_strings(), 0, 0, ann.subtypes)
    return Spec(ann.host, addresses, (service,), const.OWN_RECORD_TTL, rename=False)


def wanted(
    announcements: Iterable[ServiceAnnouncement],
    leases: Iterable[LeaseHost],
    vlans: Collection[str],
    publish_leases: bool,
) -> tuple[dict[RegKey, Wanted], list[tuple[str, ServiceAnnouncement]]]:
    """What to publish on the VLANs that are up; and the announcements with no address yet
    (no ``addresses`` and no lease of their host on that VLAN: nothing to point the SRV at).

    A lease host an announcement on its VLAN names is published by that announcement (its
    addresses are the lease's), not a second time on its own.
    """
    by_host: dict[tuple[str, str], LeaseHost] = {(h.vlan, h.host): h for h in leases}
    out: dict[RegKey, Wanted] = {}
    waiting: list[tuple[str, ServiceAnnouncement]] = []
    taken: set[tuple[str, str]] = set()
    for ann in announcements:
        for vlan in sorted(vlans):
            if not ann.on(vlan):
                continue
            lease = by_host.get((vlan, ann.host))
            addresses = ann.addresses or (lease.addresses if lease is not None else ())
            if not addresses:
                waiting.append((vlan, ann))
                continue
            taken.add((vlan, ann.host))
            out[(vlan, registration_key(ANNOUNCEMENT, ann.name))] = Wanted(
                announcement_spec(ann, addresses), ANNOUNCEMENT, ann.where, True
            )
    for lease in by_host.values():
        if lease.vlan not in vlans or (lease.vlan, lease.host) in taken:
            continue
        spec = Spec(lease.host, lease.addresses, (), const.OWN_RECORD_TTL, rename=False)
        out[(lease.vlan, registration_key(LEASE, lease.host))] = Wanted(
            spec, LEASE, lease.source, publish_leases
        )
    return out, waiting


def dns_records(spec: Spec, host_label: str, instance_labels: list[str]) -> list[StoreRecord]:
    """What DNS answers for a registration: its mDNS records and a reverse PTR per address."""
    out: list[StoreRecord] = [
        (r.name, r.rdtype, r.rdata) for r in build_records(spec, host_label, instance_labels)
    ]
    host = host_name(host_label)
    for addr in spec.addresses:
        out.append(
            (
                dns.reversename.from_address(addr),
                dns.rdatatype.PTR,
                dns.rdtypes.ANY.PTR.PTR(IN, dns.rdatatype.PTR, host),
            )
        )
    return out


def host_names(wants: Mapping[RegKey, Wanted]) -> dict[tuple[str, dns.name.Name], Wanted]:
    """(VLAN, ``<host>.local``) -> what publishes it, for "where did this name come from"."""
    return {(vlan, host_name(w.spec.host)): w for (vlan, _), w in wants.items()}


def origin_lines(
    announcements: Iterable[ServiceAnnouncement], vlan: str, stype: str, instance: str | None
) -> list[str]:
    """Where a service of ``vlan`` comes from, for ``explain``: the announcements that publish
    it (the router announces them for a device), or its devices' own mDNS."""
    found = [
        a
        for a in announcements
        if a.on(vlan)
        and a.stype == stype
        and (instance is None or a.instance.casefold() == instance.casefold())
    ]
    if not found:
        return [f"origin: mDNS (devices on VLAN {vlan} announce it; no ServiceAnnouncement does)"]
    return [
        f"origin: announcement {a.where}: the router announces {a.instance!r} for host"
        f" {a.host} on VLAN {vlan}"
        for a in found
    ]
