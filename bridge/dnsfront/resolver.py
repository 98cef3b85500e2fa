"""The pure resolver: (view, qname, qtype, now) + the store -> an answer. No sockets here.

Zones served:
- ``local.``: the mDNS namespace, merged over every VLAN the view may see;
- each VLAN's wide-area domain (RFC 8766): ``<x>.<vlan domain>`` is ``<x>.local.`` on that
  VLAN, names inside rdata rewritten between the two in both directions;
- the browse domain and each VLAN subnet's reverse zone: b/db/lb._dns-sd._udp pointers
  (RFC 6763 §11) to the VLAN domains the view may see.
Anything else is REFUSED: never an open resolver, never recursion.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.SOA
import dns.rrset

from ..config import ALL_VIEW, IPNetwork
from ..dnssd import (
    LOCAL,
    browse_query,
    is_dnssd_meta,
    is_link_local_text,
    is_services,
    service_parts,
)
from ..store import Cached, Store

_ARPA = dns.name.from_text("arpa.")
IN = dns.rdataclass.IN
A, AAAA, PTR, SRV, TXT, SOA, ANY = (
    dns.rdatatype.A,
    dns.rdatatype.AAAA,
    dns.rdatatype.PTR,
    dns.rdatatype.SRV,
    dns.rdatatype.TXT,
    dns.rdatatype.SOA,
    dns.rdatatype.ANY,
)
ONDEMAND_TYPES = frozenset({A, AAAA, PTR, SRV, TXT, ANY})
_MAX_ADDITIONAL = 64  # records; the renderer drops additionals first when space is short


class ViewPolicyLike(Protocol):
    """What the resolver needs from the policy engine's per-view object (bridge.policy)."""

    name: str
    vlans: frozenset[str]

    def service_visible(
        self, vlan: str, service_type: str, instance: str | None = None
    ) -> bool: ...

    def hosts_visible(self, vlan: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class View:
    name: str  # a VLAN name, or "*" for the router itself (sees every VLAN)
    vlan: str | None  # the view's own VLAN (link-local addresses are shown only there)
    policy: ViewPolicyLike


@dataclass(slots=True)
class Answer:
    rcode: int = dns.rcode.NOERROR
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    authority: list[dns.rrset.RRset] = field(default_factory=list)
    additional: list[dns.rrset.RRset] = field(default_factory=list)
    # (vlan, .local name, type) worth an mDNS query because the answer came up empty
    ondemand: list[tuple[str, dns.name.Name, int]] = field(default_factory=list)
    min_remaining: float = float("inf")  # smallest remaining mDNS TTL among the records used
    authoritative: bool = True


@dataclass(frozen=True, slots=True)
class _Zone:
    apex: dns.name.Name
    kind: str  # "local" | "vlan" | "browse" | "reverse"
    vlan: str | None = None


class Zones:
    """The served zones, longest match first; rebuilt when VLAN subnets change."""

    def __init__(
        self,
        domains: Mapping[str, dns.name.Name],
        browse: dns.name.Name,
        subnets: Mapping[str, Iterable[IPNetwork]],
    ) -> None:
        zones = [_Zone(LOCAL, "local"), _Zone(browse, "browse")]
        zones += [_Zone(d, "vlan", v) for v, d in domains.items()]
        for vlan, nets in subnets.items():
            for net in nets:
                zones.append(_Zone(reverse_zone(net), "reverse", vlan))
        self._by_apex: dict[dns.name.Name, _Zone] = {}
        for z in zones:
            self._by_apex.setdefault(z.apex, z)
        self.domains = dict(domains)

    def find(self, qname: dns.name.Name) -> _Zone | None:
        name = qname
        while True:
            zone = self._by_apex.get(name)
            if zone is not None:
                return zone
            if len(name) <= 1:
                return None
            name = name.parent()

    @property
    def apexes(self) -> list[dns.name.Name]:
        return list(self._by_apex)


def reverse_zone(net: IPNetwork) -> dns.name.Name:
    """The reverse zone holding a subnet, cut at an octet (IPv4) or nibble (IPv6) boundary."""
    if net.version == 4:
        octets = str(net.network_address).split(".")[: max(1, net.prefixlen // 8)]
        return dns.name.from_text(".".join(reversed(octets)) + ".in-addr.arpa.")
    nibbles = net.network_address.exploded.replace(":", "")[: max(1, net.prefixlen // 4)]
    return dns.name.from_text(".".join(reversed(nibbles)) + ".ip6.arpa.")


class Resolver:
    def __init__(self, store: Store, zones: Zones, max_ttl: int, negative_ttl: int) -> None:
        self.store = store
        self.zones = zones
        self.max_ttl = max_ttl
        self.negative_ttl = negative_ttl

    # --- entry point -----------------------------------------------------------------

    def resolve(self, view: View, qname: dns.name.Name, qtype: int, now: float) -> Answer:
        zone = self.zones.find(qname)
        if zone is None:
            return Answer(dns.rcode.REFUSED, authoritative=False)
        if zone.kind in ("browse", "reverse"):
            return self._browse_zone(view, zone, qname, qtype, now)
        if zone.kind == "local":
            vlans = sorted(view.policy.vlans)
            local_name, domain = qname, None
        else:
            assert zone.vlan is not None
            vlans = [zone.vlan] if zone.vlan in view.policy.vlans else []
            local_name = qname.relativize(zone.apex).derelativize(LOCAL)
            domain = zone.apex
        if qname == zone.apex:
            return self._apex(zone, qtype)
        ans = Answer()
        types = None if qtype == ANY else (qtype,)
        found = self._collect(view, vlans, local_name, types, now, ans)
        if found:
            for c in found:
                ans.min_remaining = min(ans.min_remaining, c.remaining)
            ans.answer = self._rrsets(qname, found, domain)
            self._additional(view, found, domain, now, ans)
            return ans
        # a service type or instance the view may not see on a VLAN does not exist there for it:
        # no NOERROR from the names below it, and no mDNS question asked there (no query leak)
        vlans = [v for v in vlans if _may_see(view, v, local_name)]
        exists = any(self._collect(view, [v], local_name, None, now, None) for v in vlans) or any(
            self.store.has_below(v, local_name) for v in vlans
        )
        ans.rcode = dns.rcode.NOERROR if exists else dns.rcode.NXDOMAIN
        ans.authority = [self._soa(zone)]
        if qtype in ONDEMAND_TYPES and _plausible(local_name, qtype):
            ans.ondemand = [(v, local_name, qtype) for v in vlans]
        return ans

    # --- pieces ----------------------------------------------------------------------

    def _collect(
        self,
        view: View,
        vlans: Iterable[str],
        name: dns.name.Name,
        types: Iterable[int] | None,
        now: float,
        _: Answer | None,
    ) -> list[Cached]:
        out: list[Cached] = []
        for vlan in vlans:
            for rdtype in types if types is not None else self.store.types_at(vlan, name):
                for c in self.store.get(vlan, name, rdtype, now):
                    if self._visible(view, c):
                        out.append(c)
        return out

    def _visible(self, view: View, c: Cached) -> bool:
        policy = view.policy
        vlan = c.vlan
        if (
            c.rdtype in (A, AAAA) and vlan != view.vlan and is_link_local_text(c.rdata.address)  # type: ignore[attr-defined]
        ):
            return False
        name = c.name
        if is_services(name):
            parts = service_parts(c.rdata.target) if c.rdtype == PTR else None  # type: ignore
            return parts is not None and policy.service_visible(vlan, parts[0])
        parts = service_parts(name)
        if parts is not None:
            stype, instance = parts
            if instance is None and c.rdtype == PTR:
                inst = service_parts(c.rdata.target)  # type: ignore[attr-defined]
                instance = inst[1] if inst else None
            return policy.service_visible(vlan, stype, instance)
        if c.rdtype == PTR and name.is_subdomain(_ARPA):
            return self._host_visible(policy, vlan, c.rdata.target)  # type: ignore[attr-defined]
        return self._host_visible(policy, vlan, name)

    def _host_visible(self, policy: ViewPolicyLike, vlan: str, host: dns.name.Name) -> bool:
        """A host name is visible with hosts: true, or as the target of a visible SRV."""
        if policy.hosts_visible(vlan):
            return True
        for owner in self.store.srv_owners_of(vlan, host):
            p = service_parts(owner)
            if p is not None and policy.service_visible(vlan, p[0], p[1]):
                return True
        return False

    def _rrsets(
        self, owner: dns.name.Name | None, found: list[Cached], domain: dns.name.Name | None
    ) -> list[dns.rrset.RRset]:
        sets: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
        for c in found:
            name = owner if owner is not None else _rewrite(c.name, domain)
            key = (name, c.rdtype)
            rrset = sets.get(key)
            if rrset is None:
                rrset = sets[key] = dns.rrset.RRset(
                    name, IN, dns.rdatatype.RdataType.make(c.rdtype)
                )
            rdata = _rewrite_rdata(c.rdata, domain) if domain is not None else c.rdata
            ttl = max(0, min(int(min(c.remaining, c.ttl)), self.max_ttl))  # pinned: inf
            rrset.add(rdata, ttl)
        return list(sets.values())

    def _additional(
        self, view: View, found: list[Cached], domain: dns.name.Name | None, now: float, ans: Answer
    ) -> None:
        """RFC 6763 §12: SRV+TXT for PTR answers, addresses for SRV targets."""
        extra: list[Cached] = []
        instances: list[tuple[str, dns.name.Name]] = []
        targets: list[tuple[str, dns.name.Name]] = []
        for c in found:
            if c.rdtype == PTR and not is_services(c.name):
                instances.append((c.vlan, c.rdata.target))  # type: ignore[attr-defined]
            elif c.rdtype == SRV:
                targets.append((c.vlan, c.rdata.target))  # type: ignore[attr-defined]
        for vlan, inst in instances:
            for c in self._collect(view, [vlan], inst, (SRV, TXT), now, None):
                extra.append(c)
                if c.rdtype == SRV:
                    targets.append((vlan, c.rdata.target))  # type: ignore[attr-defined]
        seen: set[tuple[str, dns.name.Name]] = set()
        for vlan, target in targets:
            if (vlan, target) in seen:
                continue
            seen.add((vlan, target))
            extra.extend(self._collect(view, [vlan], target, (A, AAAA), now, None))
        if extra:
            extra = extra[:_MAX_ADDITIONAL]
            for c in extra:
                ans.min_remaining = min(ans.min_remaining, c.remaining)
            ans.additional = self._rrsets(None, extra, domain)

    def _apex(self, zone: _Zone, qtype: int) -> Answer:
        ans = Answer()
        soa = self._soa(zone)
        if qtype in (SOA, ANY):
            ans.answer = [soa]
        else:
            ans.authority = [soa]
        return ans

    def _soa(self, zone: _Zone) -> dns.rrset.RRset:
        rrset = dns.rrset.RRset(zone.apex, IN, SOA)
        rdata = dns.rdtypes.ANY.SOA.SOA(
            IN,
            SOA,
            zone.apex,
            dns.name.Name((b"hostmaster", *zone.apex.labels)),
            1,
            3600,
            600,
            86400,
            self.negative_ttl,
        )
        rrset.add(rdata, self.negative_ttl)
        return rrset

    def _browse_zone(
        self, view: View, zone: _Zone, qname: dns.name.Name, qtype: int, now: float
    ) -> Answer:
        if qname == zone.apex:
            return self._apex(zone, qtype)
        rel = qname.relativize(zone.apex).labels
        ans = Answer()
        which = browse_query(rel)
        if which is not None:
            if qtype in (PTR, ANY):
                domains = self._browse_domains(view, which)
                if domains:
                    rrset = dns.rrset.RRset(qname, IN, PTR)
                    for d in domains:
                        rrset.add(dns.rdtypes.ANY.PTR.PTR(IN, PTR, d), self.max_ttl)
                    ans.answer = [rrset]
                    return ans
            ans.authority = [self._soa(zone)]
            return ans
        if is_dnssd_meta(rel):
            ans.authority = [self._soa(zone)]  # empty non-terminals and r/dr: NODATA
            return ans
        if zone.kind == "reverse" and zone.vlan in view.policy.vlans:
            # address -> host name, as the hosts themselves announce it over mDNS
            domain = self.zones.domains.get(zone.vlan)
            types = None if qtype == ANY else (qtype,)
            found = self._collect(view, [zone.vlan], qname, types, now, None)
            if found:
                ans.answer = self._rrsets(qname, found, domain)
                ans.min_remaining = min(c.remaining for c in found)
                return ans
            if qtype in (PTR, ANY):
                ans.ondemand = [(zone.vlan, qname, PTR)]
            if self._collect(view, [zone.vlan], qname, None, now, None) or self.store.has_below(
                zone.vlan, qname
            ):
                ans.authority = [self._soa(zone)]
                return ans
        ans.rcode = dns.rcode.NXDOMAIN
        ans.authority = [self._soa(zone)]
        return ans

    def _browse_domains(self, view: View, which: str) -> list[dns.name.Name]:
        domains = self.zones.domains
        if which == "default" and view.vlan is not None and view.name != ALL_VIEW:
            return [domains[view.vlan]] if view.vlan in domains else []
        own = [view.vlan] if view.vlan in view.policy.vlans else []
        others = sorted(v for v in view.policy.vlans if v != view.vlan)
        return [domains[v] for v in own + others if v in domains]


def _may_see(view: View, vlan: str, name: dns.name.Name) -> bool:
    """False when ``name`` is a service type or instance that ``view`` may not see on ``vlan``."""
    if is_services(name):
        return True
    parts = service_parts(name)
    return parts is None or view.policy.service_visible(vlan, *parts)


def _plausible(name: dns.name.Name, qtype: int) -> bool:
    """Worth asking the link: host names, service types, instances; not random names."""
    parts = service_parts(name)
    if qtype == PTR:
        return is_services(name) or (parts is not None and parts[1] is None)
    if qtype in (SRV, TXT):
        return parts is not None and parts[1] is not None
    if qtype in (A, AAAA):
        return len(name) == 3 and not name.labels[0].startswith(b"_")  # host.local.
    return parts is not None or len(name) == 3


def _rewrite(name: dns.name.Name, domain: dns.name.Name | None) -> dns.name.Name:
    if domain is not None and name.is_subdomain(LOCAL):
        return name.relativize(LOCAL).derelativize(domain)
    return name


def _rewrite_rdata(rdata: dns.rdata.Rdata, domain: dns.name.Name) -> dns.rdata.Rdata:
    target = getattr(rdata, "target", None)
    if isinstance(target, dns.name.Name) and target.is_subdomain(LOCAL):
        return rdata.replace(target=_rewrite(target, domain))
    return rdata
