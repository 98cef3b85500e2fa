"""The pure resolver: views, RFC 8766 rewriting, browse domains, negatives, link-local."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdatatype
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.dnsfront import fastpath
from bridge.dnsfront.cache import ResponseCache
from bridge.dnsfront.render import render
from bridge.dnsfront.resolver import Answer, Resolver, View, Zones, reverse_zone
from bridge.policy import PolicyEngine, default_engine, parse_policy_text
from bridge.store import Store
from tests.support.zones import DOMAINS, SUBNETS, VLANS, publish

ROOT = Path(__file__).resolve().parents[2]
PTR, SRV, TXT, A, AAAA, SOA = (
    dns.rdatatype.PTR,
    dns.rdatatype.SRV,
    dns.rdatatype.TXT,
    dns.rdatatype.A,
    dns.rdatatype.AAAA,
    dns.rdatatype.SOA,
)


def n(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


@pytest.fixture
def store() -> Store:
    s = Store()
    publish(
        s,
        "trusted",
        b"Office Printer",
        "_ipp._tcp",
        "office",
        ["10.10.0.5", "fd00:10::5", "fe80::5"],
    )
    publish(s, "iot", b"Living Room TV", "_googlecast._tcp", "tv", ["10.20.0.7", "169.254.3.3"])
    publish(s, "iot", b"Guest Printer", "_ipp._tcp", "gprinter", ["10.20.0.9"])
    publish(s, "iot", b"Back Office", "_ipp._tcp", "bprinter", ["10.20.0.10"])
    return s


def home_basic() -> PolicyEngine:
    text = (ROOT / "policies" / "examples" / "home-basic.yaml").read_text()
    return PolicyEngine(parse_policy_text(text, "home-basic.yaml", VLANS), VLANS)


def make(store: Store, engine: PolicyEngine) -> tuple[Resolver, dict[str, View]]:
    import ipaddress

    zones = Zones(
        DOMAINS,
        n("home.arpa."),
        {v: [ipaddress.ip_network(x) for x in nets] for v, nets in SUBNETS.items()},
    )
    views = {v: View(v, v, engine.view(v)) for v in VLANS}
    views["*"] = View("*", None, engine.view("*"))
    return Resolver(store, zones, max_ttl=10, negative_ttl=7), views


def texts(answer_sets: list) -> set[str]:  # type: ignore[type-arg]
    return {f"{r.name} {dns.rdatatype.to_text(r.rdtype)} {rd}" for r in answer_sets for rd in r}


def test_local_names_only_from_own_vlan_by_default(store: Store) -> None:
    r, views = make(store, default_engine(VLANS))
    ans = r.resolve(views["trusted"], n("_ipp._tcp.local."), PTR, 1.0)
    assert texts(ans.answer) == {"_ipp._tcp.local. PTR Office\\032Printer._ipp._tcp.local."}
    ans = r.resolve(views["iot"], n("_ipp._tcp.local."), PTR, 1.0)
    assert len(list(ans.answer[0])) == 2
    assert r.resolve(views["guest"], n("_ipp._tcp.local."), PTR, 1.0).answer == []


def test_wide_area_rewrites_names_both_ways_with_additionals(store: Store) -> None:
    r, views = make(store, default_engine(VLANS))
    ans = r.resolve(views["trusted"], n("_ipp._tcp.trusted.home.arpa."), PTR, 1.0)
    assert texts(ans.answer) == {
        "_ipp._tcp.trusted.home.arpa. PTR Office\\032Printer._ipp._tcp.trusted.home.arpa."
    }
    extra = texts(ans.additional)
    assert (
        "Office\\032Printer._ipp._tcp.trusted.home.arpa. SRV 0 0 631 office.trusted.home.arpa."
        in extra
    )
    assert "office.trusted.home.arpa. A 10.10.0.5" in extra
    assert "office.trusted.home.arpa. AAAA fd00:10::5" in extra
    assert ans.aa if hasattr(ans, "aa") else ans.authoritative
    # and the instance name comes back the other way
    inst = dns.name.Name((b"Office Printer", b"_ipp", b"_tcp", *DOMAINS["trusted"].labels))
    srv = r.resolve(views["trusted"], inst, SRV, 1.0)
    assert texts(srv.answer) == {
        "Office\\032Printer._ipp._tcp.trusted.home.arpa. SRV 0 0 631 office.trusted.home.arpa."
    }


def test_utf8_and_dotted_instance_names_round_trip() -> None:
    s = Store()
    label = "Hristo’s Mac.mini".encode()
    publish(s, "trusted", label, "_smb._tcp", "mini", ["10.10.0.8"])
    r, views = make(s, default_engine(VLANS))
    ptr = r.resolve(views["trusted"], n("_smb._tcp.trusted.home.arpa."), PTR, 1.0)
    target = next(iter(ptr.answer[0])).target
    assert target.labels[0] == label and len(target) == len(DOMAINS["trusted"]) + 3
    srv = r.resolve(views["trusted"], target, SRV, 1.0)
    assert srv.answer and srv.rcode == dns.rcode.NOERROR


def test_link_local_addresses_stay_in_their_vlan(store: Store) -> None:
    """RFC 8766 §5.5.2: IPv4 link-local only to its own VLAN, IPv6 link-local to nobody
    (a unicast answer carries no interface: connect() to fe80::5 fails with EINVAL)."""
    engine = home_basic()
    r, views = make(store, engine)
    own = texts(r.resolve(views["trusted"], n("office.local."), AAAA, 1.0).answer)
    assert own == {"office.local. AAAA fd00:10::5"}  # fe80::5 withheld even on its VLAN
    other = texts(r.resolve(views["trusted"], n("tv.local."), A, 1.0).answer)
    assert other == {"tv.local. A 10.20.0.7"}  # 169.254.3.3 withheld from another VLAN
    same = texts(r.resolve(views["iot"], n("tv.local."), A, 1.0).answer)
    assert same == {"tv.local. A 10.20.0.7", "tv.local. A 169.254.3.3"}


def test_policies_directional_and_instance_globs(store: Store) -> None:
    engine = home_basic()
    r, views = make(store, engine)
    trusted = r.resolve(views["trusted"], n("_ipp._tcp.local."), PTR, 1.0)
    assert len(list(trusted.answer[0])) == 3  # own printer and both IoT printers
    guest = r.resolve(views["guest"], n("_ipp._tcp.iot.home.arpa."), PTR, 1.0)
    assert texts(guest.answer) == {
        "_ipp._tcp.iot.home.arpa. PTR Guest\\032Printer._ipp._tcp.iot.home.arpa."
    }
    # iot may not see anything from trusted, neither names nor the domain
    iot = r.resolve(views["iot"], n("_ipp._tcp.trusted.home.arpa."), PTR, 1.0)
    assert iot.answer == [] and iot.rcode == dns.rcode.NXDOMAIN
    assert r.resolve(views["iot"], n("office.local."), A, 1.0).answer == []


def test_host_visible_only_as_visible_srv_target(store: Store) -> None:
    engine = home_basic()
    r, views = make(store, engine)
    assert r.resolve(views["guest"], n("gprinter.iot.home.arpa."), A, 1.0).answer
    assert r.resolve(views["guest"], n("bprinter.iot.home.arpa."), A, 1.0).answer == []


def test_hidden_types_do_not_exist_and_are_not_asked_for(store: Store) -> None:
    """A type the view may not see on a VLAN answers like one that is not there (NXDOMAIN, not
    NODATA from the instance names below it) and sends no mDNS question to that VLAN."""
    engine = home_basic()
    r, views = make(store, engine)
    hidden = r.resolve(views["guest"], n("_googlecast._tcp.iot.home.arpa."), PTR, 1.0)
    absent = r.resolve(views["guest"], n("_nothing._tcp.iot.home.arpa."), PTR, 1.0)
    assert hidden.answer == [] and hidden.rcode == absent.rcode == dns.rcode.NXDOMAIN
    assert hidden.ondemand == []
    local = r.resolve(views["guest"], n("_airplay._tcp.local."), PTR, 1.0)
    assert local.ondemand == [("guest", n("_airplay._tcp.local."), PTR)]  # not iot
    denied = r.resolve(views["guest"], n("Back Office._ipp._tcp.iot.home.arpa."), SRV, 1.0)
    assert denied.ondemand == [] and denied.rcode == dns.rcode.NXDOMAIN
    allowed = r.resolve(views["guest"], n("Guest Printer 2._ipp._tcp.iot.home.arpa."), SRV, 1.0)
    assert allowed.ondemand == [("iot", n("Guest Printer 2._ipp._tcp.local."), SRV)]
    both = r.resolve(views["trusted"], n("_airplay._tcp.local."), PTR, 1.0)
    assert {v for v, *_ in both.ondemand} == {"trusted", "iot"}


def test_service_enumeration_lists_only_visible_types(store: Store) -> None:
    engine = home_basic()
    r, views = make(store, engine)
    got = texts(r.resolve(views["guest"], n("_services._dns-sd._udp.local."), PTR, 1.0).answer)
    assert got == {"_services._dns-sd._udp.local. PTR _ipp._tcp.local."}


def test_browse_domains(store: Store) -> None:
    engine = home_basic()
    r, views = make(store, engine)
    b = texts(r.resolve(views["trusted"], n("b._dns-sd._udp.home.arpa."), PTR, 1.0).answer)
    assert b == {
        "b._dns-sd._udp.home.arpa. PTR trusted.home.arpa.",
        "b._dns-sd._udp.home.arpa. PTR iot.home.arpa.",
    }
    iot = texts(r.resolve(views["iot"], n("b._dns-sd._udp.home.arpa."), PTR, 1.0).answer)
    assert iot == {"b._dns-sd._udp.home.arpa. PTR iot.home.arpa."}
    rev = r.resolve(views["trusted"], n("lb._dns-sd._udp.0.10.10.in-addr.arpa."), PTR, 1.0)
    assert texts(rev.answer) == {"lb._dns-sd._udp.0.10.10.in-addr.arpa. PTR trusted.home.arpa."}


def test_negative_answers_carry_soa_with_negative_ttl(store: Store) -> None:
    r, views = make(store, default_engine(VLANS))
    nx = r.resolve(views["trusted"], n("nothere.trusted.home.arpa."), A, 1.0)
    assert nx.rcode == dns.rcode.NXDOMAIN
    assert nx.authority[0].rdtype == SOA and nx.authority[0].ttl == 7
    assert nx.authority[0].name == DOMAINS["trusted"]
    nodata = r.resolve(views["trusted"], n("office.local."), TXT, 1.0)
    assert nodata.rcode == dns.rcode.NOERROR and nodata.answer == []
    assert nodata.authority[0].name == n("local.")
    ent = r.resolve(views["trusted"], n("_tcp.local."), PTR, 1.0)
    assert ent.rcode == dns.rcode.NOERROR  # an empty non-terminal is not NXDOMAIN


def test_outside_served_zones_is_refused(store: Store) -> None:
    r, views = make(store, default_engine(VLANS))
    for name in ("example.com.", ".", "arpa."):
        assert r.resolve(views["trusted"], n(name), A, 1.0).rcode == dns.rcode.REFUSED


def test_ttl_is_remaining_ttl_clamped(store: Store) -> None:
    r, views = make(store, default_engine(VLANS))
    assert r.resolve(views["trusted"], n("office.local."), A, 1.0).answer[0].ttl == 10
    assert r.resolve(views["trusted"], n("office.local."), A, 115.5).answer[0].ttl == 4


def test_ondemand_only_for_plausible_names(store: Store) -> None:
    r, views = make(store, default_engine(VLANS))
    miss = r.resolve(views["trusted"], n("printer9.local."), A, 1.0)
    assert miss.ondemand == [("trusted", n("printer9.local."), A)]
    loop_probe = r.resolve(views["trusted"], n("abc.def.local."), dns.rdatatype.HINFO, 1.0)
    assert loop_probe.ondemand == []  # CoreDNS's loop plugin probe answers at once
    wide = r.resolve(views["trusted"], n("x._ipp._tcp.trusted.home.arpa."), SRV, 1.0)
    assert wide.ondemand == [("trusted", n("x._ipp._tcp.local."), SRV)]


def test_reverse_zone_names() -> None:
    import ipaddress

    assert reverse_zone(ipaddress.ip_network("10.10.0.0/24")) == n("0.10.10.in-addr.arpa.")
    assert reverse_zone(ipaddress.ip_network("10.10.0.0/16")) == n("10.10.in-addr.arpa.")
    assert reverse_zone(ipaddress.ip_network("fd00:10::/64")) == n(
        "0.0.0.0.0.0.0.0.0.1.0.0.0.0.d.f.ip6.arpa."
    )


NS = dns.rdatatype.NS
ROUTER = {"trusted": ("10.10.0.1", "fd00:10::1", "fe80::1"), "iot": ("10.20.0.1",), "*": ()}


def make_with_ns(store: Store, engine: PolicyEngine) -> tuple[Resolver, dict[str, View]]:
    r, views = make(store, engine)
    old = r.zones
    r.zones = Zones(
        old.domains,
        n("home.arpa."),
        {v: [ipaddress.ip_network(x) for x in nets] for v, nets in SUBNETS.items()},
        addresses=ROUTER,
    )
    return r, views


APEXES = ["local.", "trusted.home.arpa.", "iot.home.arpa.", "home.arpa.", "0.10.10.in-addr.arpa."]


@pytest.mark.parametrize("apex", APEXES)
def test_every_apex_has_ns_and_soa_naming_the_gateway(store: Store, apex: str) -> None:
    """RFC 8766 §6.1/§6.2: NS and SOA MNAME name the gateway in the zone, with the router's
    addresses on the asking client's VLAN (no fe80::), so stub-zone priming succeeds."""
    r, views = make_with_ns(store, default_engine(VLANS))
    ns_name = f"ns.{apex}"
    ns = r.resolve(views["trusted"], n(apex.upper()), NS, 1.0)
    assert ns.rcode == dns.rcode.NOERROR and texts(ns.answer) == {f"{apex} NS {ns_name}"}
    assert texts(ns.additional) == {f"{ns_name} A 10.10.0.1", f"{ns_name} AAAA fd00:10::1"}
    soa = r.resolve(views["trusted"], n(apex), SOA, 1.0)
    assert next(iter(soa.answer[0])).mname == n(ns_name)
    both = r.resolve(views["trusted"], n(apex), dns.rdatatype.ANY, 1.0)
    assert {x.rdtype for x in both.answer} == {SOA, NS}
    a = r.resolve(views["iot"], n(ns_name.upper()), A, 1.0)
    assert texts(a.answer) == {f"{ns_name} A 10.20.0.1"}
    none = r.resolve(views["iot"], n(ns_name), AAAA, 1.0)  # no IPv6 on iot: NODATA
    assert none.rcode == dns.rcode.NOERROR and none.answer == [] and none.authority
    assert r.resolve(views["trusted"], n(ns_name), TXT, 1.0).answer == []


def test_host_with_only_link_local_v6_answers_nodata(store: Store) -> None:
    publish(store, "trusted", b"Cam", "_rtsp._tcp", "cam", ["fe80::9"])
    r, views = make(store, default_engine(VLANS))
    six = r.resolve(views["trusted"], n("cam.trusted.home.arpa."), AAAA, 1.0)
    assert six.rcode == dns.rcode.NOERROR and six.answer == []  # NODATA, not NXDOMAIN
    # and its service is not offered: its only address is one no unicast client can use
    before = r.unusable_services
    ptr = r.resolve(views["trusted"], n("_rtsp._tcp.local."), PTR, 1.0)
    assert ptr.answer == [] and r.unusable_services > before
    srv = r.resolve(views["trusted"], n("Cam._rtsp._tcp.local."), SRV, 1.0)
    assert srv.answer == []


def test_one_device_per_name_per_view() -> None:
    """RFC 6762 §9: a host name is unique on its link, not across VLANs: the view's own VLAN
    wins in local., the other device stays reachable under its VLAN's domain, never merged."""
    s = Store()
    publish(s, "trusted", b"Kitchen", "_raop._tcp", "speaker", ["10.10.0.5"])
    publish(s, "iot", b"Lounge", "_raop._tcp", "speaker", ["10.20.0.5"])
    text = (
        "apiVersion: mdnsgateway.io/v1alpha1\nkind: ServicePolicy\nmetadata: {name: all}\n"
        "spec:\n  from: [iot]\n  to: [trusted, guest]\n  services: ['*']\n  hosts: true\n"
    )
    engine = PolicyEngine(parse_policy_text(text, "all.yaml", VLANS), VLANS)
    r, views = make(s, engine)
    own = texts(r.resolve(views["trusted"], n("SPEAKER.local."), A, 1.0).answer)
    assert own == {"SPEAKER.local. A 10.10.0.5"}
    assert texts(r.resolve(views["guest"], n("speaker.local."), A, 1.0).answer) == {
        "speaker.local. A 10.20.0.5"
    }
    wide = texts(r.resolve(views["trusted"], n("speaker.iot.home.arpa."), A, 1.0).answer)
    assert wide == {"speaker.iot.home.arpa. A 10.20.0.5"}
    # a service-type name still lists both VLANs' instances
    ptr = r.resolve(views["trusted"], n("_raop._tcp.local."), PTR, 1.0)
    assert len(list(ptr.answer[0])) == 2


# --- case: every query the resolver answers, in any case, gets the same answer -----------


def _queries() -> list[tuple[str, str]]:
    """(view, name) over every zone: apexes, nameserver names, DNS-SD meta names, types,
    instances, hosts, reverse names, names that do not exist."""
    names = [*APEXES, *(f"ns.{a}" for a in APEXES)]
    for d in ("local.", "trusted.home.arpa.", "iot.home.arpa."):
        names += [
            f"_services._dns-sd._udp.{d}",
            f"_ipp._tcp.{d}",
            f"_tcp.{d}",
            f"Office\\032Printer._ipp._tcp.{d}",
            f"Guest\\032Printer._ipp._tcp.{d}",
            f"office.{d}",
            f"tv.{d}",
            f"nothere.{d}",
            f"_nothing._tcp.{d}",
        ]
    for d in ("home.arpa.", "0.10.10.in-addr.arpa.", "0.20.10.in-addr.arpa."):
        names += [f"{x}._dns-sd._udp.{d}" for x in ("b", "db", "lb", "r", "dr", "x")] + [
            f"_dns-sd._udp.{d}",
            f"_udp.{d}",
            f"nothere.{d}",
        ]
    names += ["5.0.10.10.in-addr.arpa.", "example.com."]
    return [(v, x) for v in ("trusted", "iot", "guest", "*") for x in names]


QTYPES = [A, AAAA, PTR, SRV, TXT, SOA, NS, dns.rdatatype.ANY]


def _lines(sets: list) -> list[str]:  # type: ignore[type-arg]
    """An answer section as sorted, lower-cased record lines (RRset order does not matter)."""
    return sorted(x.lower() for rr in sets for x in rr.to_text().splitlines())


def _folded(ans: Answer) -> tuple[int, list[str], list[str], list[str]]:
    return ans.rcode, _lines(ans.answer), _lines(ans.authority), _lines(ans.additional)


def _variant(text: str, flips: list[bool]) -> str:
    return "".join(
        c.swapcase() if f else c for c, f in zip(text, flips + [False] * len(text), strict=False)
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(_queries()),
    st.sampled_from(QTYPES),
    st.lists(st.booleans(), min_size=60, max_size=60),
    st.lists(st.booleans(), min_size=60, max_size=60),
)
def test_any_case_variant_gets_the_same_answer(
    q: tuple[str, str], qtype: int, flips1: list[bool], flips2: list[bool]
) -> None:
    """RFC 4343: the resolver answers a case variant as it does the lower-case name, and a
    pre-rendered reply is reused only for queries with the same answer: rendered for one
    variant and spliced for another, it equals a fresh reply to that other variant, with the
    question echoed in that client's case, whichever variant came first."""
    view_name, text = q
    r, views = _CASE_RESOLVER
    view = views[view_name]
    base = _folded(r.resolve(view, n(text), qtype, 1.0))
    queries = [dns.message.make_query(_variant(text, f), qtype) for f in (flips1, flips2)]
    for query in queries:
        assert _folded(r.resolve(view, query.question[0].name, qtype, 1.0)) == base
    first, second = queries
    wire1, wire2 = first.to_wire(), second.to_wire()
    key1, key2 = fastpath.query_key(wire1), fastpath.query_key(wire2)
    assert key1 is not None and key2 is not None and key1 == key2  # one cache slot
    cache = ResponseCache()
    reply1 = render(first, r.resolve(view, first.question[0].name, qtype, 1.0), 65535)
    cache.put(key1[0], reply1, key1[1], 10.0)
    spliced = fastpath.splice(wire2, key2[1], cache.entries[key2[0]])
    fresh = render(second, r.resolve(view, second.question[0].name, qtype, 1.0), 65535)
    assert spliced[12 : key2[1]] == wire2[12 : key2[1]]  # the client's own question bytes
    got, want = dns.message.from_wire(spliced), dns.message.from_wire(fresh)
    assert got.id == second.id and got.rcode() == want.rcode()
    for section in ("answer", "authority", "additional"):
        assert _lines(getattr(got, section)) == _lines(getattr(want, section))


def _case_resolver() -> tuple[Resolver, dict[str, View]]:
    s = Store()
    publish(s, "trusted", b"Office Printer", "_ipp._tcp", "office", ["10.10.0.5", "fe80::5"])
    publish(s, "iot", b"Living Room TV", "_googlecast._tcp", "tv", ["10.20.0.7", "169.254.3.3"])
    publish(s, "iot", b"Guest Printer", "_ipp._tcp", "gprinter", ["10.20.0.9"])
    s.add(
        "trusted",
        n("5.0.10.10.in-addr.arpa."),
        PTR,
        dns.rdata.from_text("IN", "PTR", "office.local."),
        120,
        0.0,
    )
    return make_with_ns(s, home_basic())


_CASE_RESOLVER = _case_resolver()
