"""What the wide-area zone should hold: the records of each published service instance.

Pure: functions of the store's records, the policy's answer and the zone's names. A service
instance ``<label>.<type>.local.`` learned on VLAN ``v`` is published under ``<v>.<zone>`` as

- its type PTR and subtype PTRs (``<type>.<v>.<zone> PTR <label>.<type>.<v>.<zone>``),
- its SRV with the target ``<host>.local.`` rewritten to ``<host>.<v>.<zone>``, its TXT verbatim,
- the target's usable A and AAAA records (never link-local, loopback, unspecified, multicast:
  a global DNS answer carries no interface), and nothing at all if none is usable,
- ``_services._dns-sd._udp.<v>.<zone> PTR <type>.<v>.<zone>`` (RFC 6763 §9) and, at the apex,
  ``b``/``db``/``lb._dns-sd._udp.<zone> PTR <v>.<zone>`` (RFC 6763 §11).

Records shared by instances (a host's addresses, the enumeration PTRs, the browse PTRs) are
each instance's contribution; the publisher counts them, so one goes when its last instance
does. Instance labels keep their case and bytes (spaces, dots, UTF-8): they are label bytes,
never text. A record is identified by its canonical wire form (``Rec.key``): owner and rdata
names lower-cased as DNS compares them, so a server that lower-cases (Knot) holds the same
records as one that keeps case (BIND).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.PTR
import dns.rdtypes.IN.SRV

from .. import const, dnssd
from ..store import Cached, Store

PTR = dns.rdatatype.PTR
SRV = dns.rdatatype.SRV
TXT = dns.rdatatype.TXT
A = dns.rdatatype.A
AAAA = dns.rdatatype.AAAA
PUBLISHED_TYPES = frozenset({PTR, SRV, TXT, A, AAAA})
APEX = ""  # the group of the browse-domain records at the zone apex (others: a VLAN's name)
BROWSE_LABELS = (b"b", b"db", b"lb")
_SERVICES = dnssd.SERVICES_LABELS
_IN = dns.rdataclass.IN

# may (vlan, service type, instance label) be published? (the policy engine's router view)
Allowed = Callable[[str, str, str], bool]


class Rec:
    """One published record: owner, type, rdata, the group (VLAN or APEX) whose UPDATE
    carries it, ``key``, its canonical wire form (hashed once, compared as bytes), and
    ``rrset``, that of its owner and type (the RRset it belongs to, compared the same way)."""

    __slots__ = ("group", "key", "owner", "rdata", "rdtype", "rrset")

    def __init__(self, group: str, owner: dns.name.Name, rdtype: int, rdata: dns.rdata.Rdata):
        self.group = group
        self.owner = owner
        self.rdtype = rdtype
        self.rdata = rdata
        self.rrset = owner.to_digestable() + struct.pack("!H", rdtype)
        self.key = self.rrset + rdata.to_digestable()

    def __repr__(self) -> str:
        return f"Rec({self.owner} {dns.rdatatype.to_text(self.rdtype)} {self.rdata})"  # type: ignore[arg-type]


def subdomain(vlan: str, zone: dns.name.Name) -> dns.name.Name:
    """``<vlan>.<zone>``: where a VLAN's services are published."""
    return dns.name.Name((vlan.encode(), *zone.labels))


def browse_names(zone: dns.name.Name) -> tuple[dns.name.Name, ...]:
    """``b``, ``db`` and ``lb._dns-sd._udp.<zone>``: the names the gateway shares at the apex."""
    return tuple(dns.name.Name((label, *dnssd.DNSSD_UDP, *zone.labels)) for label in BROWSE_LABELS)


def wide(name: dns.name.Name, sub: dns.name.Name) -> dns.name.Name | None:
    """``x.local.`` -> ``x.<sub>``, labels kept byte for byte; None outside ``local.`` or
    when the result would be too long for DNS (255 octets)."""
    if not dnssd.is_local(name):
        return None
    try:
        return dns.name.Name((*name.labels[:-2], *sub.labels))
    except dns.name.NameTooLong:
        return None


def usable(rdata: dns.rdata.Rdata) -> bool:
    """An address a host elsewhere can reach: not link-local, loopback, unspecified or
    multicast (raw octets, no ``ipaddress``)."""
    raw = dnssd.address_octets(rdata.address)  # type: ignore[attr-defined]
    if dnssd.is_link_local(raw):
        return False
    if len(raw) == 4:
        return raw[0] not in (0, 127) and raw[0] < 224
    return raw != bytes(15) + b"\x01" and raw != bytes(16) and raw[0] != 0xFF


def current(records: list[Cached]) -> list[Cached]:
    """The RRset as it stands: rdatas flushed by a newer cache-flush record (RFC 6762 §10.2:
    they linger one second) are left out, so a new port or address replaces the old one in
    one UPDATE rather than two a second apart."""
    if len(records) < 2:
        return records
    grace = const.MDNS_CACHE_FLUSH_GRACE
    lasting = [r for r in records if r.remaining > grace]
    return lasting or records


def instance_records(
    store: Store,
    vlan: str,
    instance: dns.name.Name,
    ptr_owners: Iterable[dns.name.Name],
    zone: dns.name.Name,
    allowed: Allowed,
    now: float,
) -> list[Rec]:
    """The records that publish ``instance`` (learned on ``vlan``; ``ptr_owners``: the type
    and subtype names whose PTRs point at it), or [] when it is not published: not allowed,
    no SRV yet, or no usable address."""
    parts = dnssd.service_parts(instance)
    if parts is None or parts[1] is None or not allowed(vlan, parts[0], parts[1]):
        return []
    sub = subdomain(vlan, zone)
    owner = wide(instance, sub)
    if owner is None:
        return []
    srvs = current(store.get(vlan, instance, SRV, now))
    out: list[Rec] = []
    for srv in srvs:
        target = srv.rdata.target  # type: ignore[attr-defined]
        host = wide(target, sub)
        if host is None:
            continue
        addresses = [
            Rec(vlan, host, c.rdtype, c.rdata)
            for rdtype in (A, AAAA)
            for c in current(store.get(vlan, target, rdtype, now))
            if usable(c.rdata)
        ]
        if not addresses:
            continue
        r = srv.rdata
        out.append(
            Rec(
                vlan,
                owner,
                SRV,
                dns.rdtypes.IN.SRV.SRV(_IN, SRV, r.priority, r.weight, r.port, host),  # type: ignore[attr-defined]
            )
        )
        out.extend(addresses)
    if not out:
        return []
    for txt in current(store.get(vlan, instance, TXT, now)):
        out.append(Rec(vlan, owner, TXT, txt.rdata))
    type_owner = owner.parent()
    for ptr_owner in ptr_owners:
        wide_owner = wide(ptr_owner, sub)
        if wide_owner is not None:
            out.append(Rec(vlan, wide_owner, PTR, _ptr(owner)))
    out.append(Rec(vlan, dns.name.Name((*_SERVICES, *sub.labels)), PTR, _ptr(type_owner)))
    for name in browse_names(zone):
        out.append(Rec(APEX, name, PTR, _ptr(sub)))
    return out


def _ptr(target: dns.name.Name) -> dns.rdata.Rdata:
    return dns.rdtypes.ANY.PTR.PTR(_IN, PTR, target)


class Ownership:
    """Which records found in the zone the gateway owns: every published type under
    ``<vlan>.<zone>`` (it owns those subdomains whole), and at the browse names only the PTRs
    that point at one of them (anything else there is somebody else's)."""

    __slots__ = ("browse", "subs")

    def __init__(self, zone: dns.name.Name, vlans: Iterable[str]) -> None:
        self.subs = {subdomain(v, zone): v for v in vlans}
        self.browse = frozenset(browse_names(zone))

    def group(self, owner: dns.name.Name, rdtype: int, rdata: dns.rdata.Rdata) -> str | None:
        """The group (VLAN or APEX) of an owned record, else None."""
        if rdtype not in PUBLISHED_TYPES:
            return None
        for sub, vlan in self.subs.items():
            if owner.is_subdomain(sub):
                return vlan
        target = getattr(rdata, "target", None)
        if rdtype == PTR and owner in self.browse and target in self.subs:
            return APEX
        return None


class Followed:
    """The service instances the store holds, per VLAN, with the PTR owner names (type and
    subtypes) pointing at each: followed from the store's change channel, so the publisher
    never walks the whole store. Bounded by ``limit`` instances (then new ones are counted)."""

    __slots__ = ("_by_vlan", "dropped", "limit", "size")

    def __init__(self, limit: int = const.WIDEAREA_MAX_INSTANCES) -> None:
        self._by_vlan: dict[str, dict[dns.name.Name, set[dns.name.Name]]] = {}
        self.limit = limit
        self.size = 0
        self.dropped = 0

    def ptr(self, vlan: str, owner: dns.name.Name, target: dns.name.Name, added: bool) -> bool:
        """A PTR appeared or went; True when it concerns an instance (the caller re-computes)."""
        instances = self._by_vlan.get(vlan)
        if added:
            if instances is None:
                instances = self._by_vlan[vlan] = {}
            owners = instances.get(target)
            if owners is None:
                if self.size >= self.limit:
                    self.dropped += 1
                    return False
                owners = instances[target] = set()
                self.size += 1
            owners.add(owner)
            return True
        if instances is None:
            return False
        owners = instances.get(target)
        if owners is None:
            return False
        owners.discard(owner)
        if not owners:
            del instances[target]
            self.size -= 1
        return True

    def owners(self, vlan: str, instance: dns.name.Name) -> set[dns.name.Name]:
        return self._by_vlan.get(vlan, {}).get(instance, set())

    def holds(self, vlan: str, instance: dns.name.Name) -> bool:
        return instance in self._by_vlan.get(vlan, {})

    def all(self) -> list[tuple[str, dns.name.Name]]:
        return [(v, i) for v, instances in self._by_vlan.items() for i in instances]
