"""Leases -> the host names they give, per VLAN (pure): what is a host label, who gets a name.

A DHCP client sends any bytes as its host name (option 12, or the FQDN option 81); the server
writes them down. Only a valid host label (RFC 1123: letters, digits, '-', at most 63, not
starting or ending with '-') becomes ``<label>.<VLAN domain>``; the label is lower-cased and
'_' or ' ' become '-'. A name qualified with the VLAN's own domain (or ``.local``) is cut to its
first label; any other dot is refused (a client must not name itself into another zone). A
name the DNS side reserves (the nameserver label, ``ns``) is refused. Each ignored name has a
low-cardinality reason, counted by the watcher.

One name per VLAN and address family belongs to one client (MAC, client id or DUID): the one
that had it already, else the first in file order; another client asking for the same name
(another device's name) is ignored and counted (``duplicate``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import dns.name

from ..announce.records import LeaseHost
from .leases import Lease

_LABEL: Final = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
MAX_LABEL: Final = 63

# reasons a lease's host name is not published
INVALID, TOO_LONG, DOT, RESERVED, DUPLICATE, NO_VLAN = (
    "invalid", "too_long", "dot", "reserved", "duplicate", "no_vlan",
)  # fmt: skip
REASONS: Final = (INVALID, TOO_LONG, DOT, RESERVED, DUPLICATE, NO_VLAN)


def host_label(
    hostname: str, domain: dns.name.Name, reserved: Collection[str] = ()
) -> tuple[str | None, str | None]:
    """``(label, None)`` for a usable name, ``(None, reason)`` for one refused, ``(None, None)``
    for no name at all."""
    if not hostname:
        return None, None
    if _CONTROL.search(hostname):
        return None, INVALID
    name = hostname.lower().rstrip(".")
    if "." in name:
        first, rest = name.split(".", 1)
        if rest + "." not in (domain.to_text().lower(), "local."):
            return None, DOT
        name = first
    name = name.replace("_", "-").replace(" ", "-")
    if len(name) > MAX_LABEL:
        return None, TOO_LONG
    if not _LABEL.fullmatch(name):
        return None, INVALID
    if name in reserved:
        return None, RESERVED
    return name, None


@dataclass(frozen=True, slots=True)
class Ignored:
    """A lease whose host name is not published, and why."""

    source: str
    address: str
    hostname: str
    reason: str


VlanOf = Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], str | None]
Owners = dict[tuple[str, str, int], str]  # (VLAN, label, IP version) -> the client holding it


def lease_hosts(
    leases: Mapping[str, Iterable[Lease]],
    vlan_of: VlanOf,
    domains: Mapping[str, dns.name.Name],
    now: float,
    owners: Owners,
    reserved: Collection[str] = (),
) -> tuple[list[LeaseHost], list[Ignored], Owners]:
    """The host names the active leases of every file give (by file path), the leases ignored,
    and who holds each name now (pass it back next time: the holder keeps its name)."""
    claims: dict[tuple[str, str, int], list[tuple[str, Lease]]] = {}
    ignored: list[Ignored] = []
    for source, file_leases in leases.items():
        for lease in file_leases:
            if not lease.active(now) or not lease.hostname:
                continue
            ip = ipaddress.ip_address(lease.address)
            vlan = vlan_of(ip)
            if vlan is None:
                ignored.append(Ignored(source, lease.address, lease.hostname, NO_VLAN))
                continue
            label, reason = host_label(lease.hostname, domains[vlan], reserved)
            if label is None:
                if reason is not None:
                    ignored.append(Ignored(source, lease.address, lease.hostname, reason))
                continue
            claims.setdefault((vlan, label, ip.version), []).append((source, lease))
    new_owners: Owners = {}
    hosts: dict[tuple[str, str], tuple[list[str], str]] = {}
    for key, held in claims.items():
        vlan, label, _ = key
        clients = [lease.client for _, lease in held]
        owner = owners.get(key)
        if owner not in clients:
            owner = clients[0]
        new_owners[key] = owner
        for source, lease in held:
            if lease.client != owner:
                ignored.append(Ignored(source, lease.address, lease.hostname, DUPLICATE))
                continue
            addresses, _ = hosts.setdefault((vlan, label), ([], source))
            addresses.append(lease.address)
    out = [
        LeaseHost(vlan, label, tuple(sorted(addresses)), source)
        for (vlan, label), (addresses, source) in sorted(hosts.items())
    ]
    return out, ignored, new_owners
