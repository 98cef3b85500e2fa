"""The pure resolver: (view, qname, qtype, now) + the store -> an answer. No sockets here.

Zones served:
- ``local.``: the mDNS namespace, merged over every VLAN the view may see;
- each VLAN's wide-area domain (RFC 8766): ``<x>.<vlan domain>`` is ``<x>.local.`` on that
  VLAN, names inside rdata rewritten between the two in both directions;
- the browse domain and each VLAN subnet's reverse zone: b/db/lb._dns-sd._udp pointers
  (RFC 6763 §11) to the VLAN domains the view may see.
Anything else is REFUSED: never an open resolver, never recursion.

Every apex has an SOA and an NS naming the gateway in that zone (``ns.<apex>`` by default),
whose A/AAAA are the router's own addresses on the asking client's VLAN (RFC 8766 §6.1, §6.2):
resolvers that prime a stub zone find a consistent delegation. Unicast answers carry no
address a unicast client cannot use (RFC 8766 §5.5.2): never an IPv6 link-local address (no
interface to send it on), and an IPv4 link-local one only to the host's own VLAN. In ``local.``
a name that is not a shared service-type name is answered from one VLAN only, the view's own
first: two devices with one host name on two VLANs are never merged into one RRset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.NS
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.SOA
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rrset

from .. import const
from ..config import ALL_VIEW, IPNetwork
from ..dnssd import (
    LOCAL,
    address_octets,
    browse_query,
    is_browse_target,
    is_dnssd_meta,
    is_link_local,
    is_services,
    service_parts,
)
from ..store import Cached, Store

_ARPA = dns.name.from_text("arpa.")
IN = dns.rdataclass.IN
A, AAAA, PTR, SRV, TXT, SOA, NS, ANY = (
    dns.rdatatype.A,
    dns.rdatatype.AAAA,
    dns.rdatatype.PTR,
    dns.rdatatype.SRV,
    dns.rdatatype.TXT,
    dns.rdatatype.SOA,
    dns.rdatatype.NS,
    dns.rdatatype.ANY,
)
ONDEMAND_TYPES = frozenset({A, AAAA, PTR, SRV, TXT, ANY})


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
    ns: dns.name.Name = dns.name.root  # the gateway's own name in this zone (NS, SOA MNAME)


class Zones:
    """The served zones, longest match first; rebuilt when VLAN subnets change."""

    def __init__(
        self,
        domains: Mapping[str, dns.name.Name],
        browse: dns.name.Name,
        subnets: Mapping[str, Iterable[IPNetwork]],
        nameserver: str = const.DNS_NAMESERVER_LABEL,
        addresses: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        label = nameserver.encode()
        zones = [_Zone(LOCAL, "local"), _Zone(browse, "browse")]
        zones += [_Zone(d, "vlan", v) for v, d in domains.items()]
        for vlan, nets in subnets.items():
            for net in nets:
                zones.append(_Zone(reverse_zone(net), "reverse", vlan))
        self._by_apex: dict[dns.name.Name, _Zone] = {}
        self._by_ns: dict[dns.name.Name, _Zone] = {}
        for z in zones:
            if z.apex not in self._by_apex:
                z = _Zone(z.apex, z.kind, z.vlan, dns.name.Name((label, *z.apex.labels)))
                self._by_apex[z.apex] = z
                self._by_ns[z.ns] = z
        self.domains = dict(domains)
        # view name -> the router's addresses a client of that view can reach (no fe80::/10)
        self.addresses: dict[str, tuple[str, ...]] = {
            view: tuple(a for a in addrs if not _v6_link_local(a))
            for view, addrs in (addresses or {}).items()
        }

    def ns_zone(self, qname: dns.name.Name) -> _Zone | None:
        """The zone whose nameserver name ``qname`` is, if it is one."""
        return self._by_ns.get(qname)

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
    """Answers a view's question from the store: pure, no sockets, time passed in.

    Pure because every DNS rule of RFC 6762/6763/8766 that decides an answer (which VLANs a
    view sees, names rewritten between ``local.`` and the VLAN domains, what a unicast client
    may be given) is tested here as a function, and because its answers are pre-rendered and
    reused (answer.py) for as long as the store and the policy do not change: an answer that
    depended on anything else could not be."""

    def __init__(self, store: Store, zones: Zones, max_ttl: int, negative_ttl: int) -> None:
        self.store = store
        self.zones = zones
        self.max_ttl = max_ttl
        self.negative_ttl = negative_ttl
        # services not offered to a view because their target has no address it can use
        self.unusable_services = 0
        # told of the records each answer was built from (Interest.note_cached, set by
        # bridge/app.py): what a client wanted is what the browser keeps fresh
        self.used: Callable[[list[Cached], float], None] = _ignore

    # --- entry point -----------------------------------------------------------------

    def resolve(self, view: View, qname: dns.name.Name, qtype: int, now: float) -> Answer:
        zone = self.zones.find(qname)
        if zone is None:
            return Answer(dns.rcode.REFUSED, authoritative=False)
        if qname == zone.apex:
            return self._apex(view, zone, qtype)
        ns_zone = self.zones.ns_zone(qname)
        if ns_zone is not None:
            return self._nameserver(view, ns_zone, qtype)
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
        if len(vlans) > 1 and not (is_services(local_name) or is_browse_target(local_name)):
            vlans = self._holder(view, vlans, local_name, now)
        ans = Answer()
        types = None if qtype == ANY else (qtype,)
        found = self._collect(view, vlans, local_name, types, now, ans)
        if found:
            for c in found:
                ans.min_remaining = min(ans.min_remaining, c.remaining)
            ans.answer = self._rrsets(qname, found, domain)
            self.used(found, now)
            self._additional(view, found, domain, now, ans)
            return ans
        # a service type or instance the view may not see on a VLAN does not exist there for it:
        # no NOERROR from the names below it, and no mDNS question asked there (no query leak)
        vlans = [v for v in vlans if _may_see(view, v, local_name)]
        exists = any(self._exists(view, v, local_name, now) for v in vlans)
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
                    if self._usable(view, c, now) and self._visible(view, c):
                        out.append(c)
        return out

    def _exists(self, view: View, vlan: str, name: dns.name.Name, now: float) -> bool:
        """The name exists for the view on ``vlan`` (NODATA, not NXDOMAIN), even when every
        record it has there is one the view cannot use (a host with only fe80:: addresses)."""
        return self._holds(view, vlan, name, now) or self.store.has_below(vlan, name)

    def _holds(self, view: View, vlan: str, name: dns.name.Name, now: float) -> bool:
        """``vlan`` has a record at ``name`` that the view's policy lets it see."""
        for rdtype in self.store.types_at(vlan, name):
            if any(self._visible(view, c) for c in self.store.get(vlan, name, rdtype, now)):
                return True
        return False

    def _holder(self, view: View, vlans: list[str], name: dns.name.Name, now: float) -> list[str]:
        """The one VLAN that answers for a host or instance name: the view's own if it holds
        the name, else the first in order; all of them when none does (negative answers)."""
        order = [view.vlan] if view.vlan in vlans else []
        order += [v for v in vlans if v != view.vlan]
        for v in order:
            if self._holds(view, v, name, now):
                return [v]
        return vlans

    def _usable(self, view: View, c: Cached, now: float) -> bool:
        """RFC 8766 §5.5.2: nothing a unicast client cannot use. An IPv6 link-local address
        is never usable (unicast DNS carries no interface); an IPv4 link-local one only on
        its own VLAN. A service whose target has addresses, none usable, is not offered."""
        rdtype = c.rdtype
        if rdtype in (A, AAAA):
            raw = address_octets(c.rdata.address)  # type: ignore[attr-defined]
            return not is_link_local(raw) or (rdtype == A and c.vlan == view.vlan)
        if rdtype == SRV:
            if not self._target_usable(view, c.vlan, c.rdata.target, now):  # type: ignore
                self.unusable_services += 1
                return False
        elif rdtype == PTR and not is_services(c.name):
            target = c.rdata.target  # type: ignore[attr-defined]
            srvs = self.store.get(c.vlan, target, SRV, now) if service_parts(target) else ()
            if srvs and not any(
                self._target_usable(view, c.vlan, s.rdata.target, now)  # type: ignore
                for s in srvs
            ):
                self.unusable_services += 1
                return False
        return True

    def _target_usable(self, view: View, vlan: str, target: dns.name.Name, now: float) -> bool:
        """True unless the target's addresses are known and none is usable by the view (with
        none known yet the browser is asking for them: the service stays offered)."""
        known = False
        for rdtype in (A, AAAA):
            for a in self.store.get(vlan, target, rdtype, now):
                known = True
                raw = address_octets(a.rdata.address)  # type: ignore[attr-defined]
                if not is_link_local(raw) or (rdtype == A and vlan == view.vlan):
                    return True
        return not known

    def _visible(self, view: View, c: Cached) -> bool:
        """Policy: may the view see this record (addresses are ``_usable``'s concern)?"""
        policy = view.policy
        vlan = c.vlan
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
            extra = extra[: const.DNS_MAX_ADDITIONAL]
            self.used(extra, now)
            for c in extra:
                ans.min_remaining = min(ans.min_remaining, c.remaining)
            ans.additional = self._rrsets(None, extra, domain)

    def _apex(self, view: View, zone: _Zone, qtype: int) -> Answer:
        """SOA and NS at the apex; the nameserver's addresses go with an NS answer."""
        ans = Answer()
        if qtype in (SOA, ANY):
            ans.answer.append(self._soa(zone))
        if qtype in (NS, ANY):
            rrset = dns.rrset.RRset(zone.apex, IN, NS)
            rrset.add(dns.rdtypes.ANY.NS.NS(IN, NS, zone.ns), self.negative_ttl)
            ans.answer.append(rrset)
            ans.additional = self._ns_addresses(view, zone, (A, AAAA))
        if not ans.answer:
            ans.authority = [self._soa(zone)]
        return ans

    def _nameserver(self, view: View, zone: _Zone, qtype: int) -> Answer:
        """``ns.<zone>``: the router's addresses on the asking client's VLAN, nothing else
        (in ``local.`` and the VLAN domains it shadows a device of that name)."""
        ans = Answer()
        types = (A, AAAA) if qtype == ANY else (qtype,) if qtype in (A, AAAA) else ()
        ans.answer = self._ns_addresses(view, zone, types)
        if not ans.answer:
            ans.authority = [self._soa(zone)]
        return ans

    def _ns_addresses(self, view: View, zone: _Zone, types: Iterable[int]) -> list[dns.rrset.RRset]:
        addrs = self.zones.addresses.get(view.name, ())
        out = []
        for rdtype in types:
            rrset = dns.rrset.RRset(zone.ns, IN, dns.rdatatype.RdataType.make(rdtype))
            for a in addrs:
                if (":" in a) == (rdtype == AAAA):
                    cls = dns.rdtypes.IN.AAAA.AAAA if rdtype == AAAA else dns.rdtypes.IN.A.A
                    rrset.add(cls(IN, rdtype, a), self.negative_ttl)
            if rrset:
                out.append(rrset)
        return out

    def _soa(self, zone: _Zone) -> dns.rrset.RRset:
        rrset = dns.rrset.RRset(zone.apex, IN, SOA)
        rdata = dns.rdtypes.ANY.SOA.SOA(
            IN,
            SOA,
            zone.ns,
            dns.name.Name((b"hostmaster", *zone.apex.labels)),
            1,
            const.DNS_SOA_REFRESH,
            const.DNS_SOA_RETRY,
            const.DNS_SOA_EXPIRE,
            self.negative_ttl,
        )
        rrset.add(rdata, self.negative_ttl)
        return rrset

    def _browse_zone(
        self, view: View, zone: _Zone, qname: dns.name.Name, qtype: int, now: float
    ) -> Answer:
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
            if self._exists(view, zone.vlan, qname, now):
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


def _ignore(records: list[Cached], now: float) -> None:
    """The default ``Resolver.used``: nobody is told."""


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


def _v6_link_local(text: str) -> bool:
    return ":" in text and is_link_local(address_octets(text.split("%", 1)[0]))


def _rewrite(name: dns.name.Name, domain: dns.name.Name | None) -> dns.name.Name:
    if domain is not None and name.is_subdomain(LOCAL):
        return name.relativize(LOCAL).derelativize(domain)
    return name


def _rewrite_rdata(rdata: dns.rdata.Rdata, domain: dns.name.Name) -> dns.rdata.Rdata:
    target = getattr(rdata, "target", None)
    if isinstance(target, dns.name.Name) and target.is_subdomain(LOCAL):
        return rdata.replace(target=_rewrite(target, domain))
    return rdata
