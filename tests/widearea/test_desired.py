"""The desired set: which records publish a service instance, with time passed in."""

from __future__ import annotations

import dns.name
import dns.rdata
import dns.rdatatype
import dns.rdtypes.ANY.PTR

from bridge.store import Store
from bridge.widearea.desired import (
    APEX,
    Followed,
    Ownership,
    Rec,
    current,
    instance_records,
    subdomain,
    usable,
    wide,
)
from tests.support.zones import AAAA, PTR, SRV, TXT, A

ZONE = dns.name.from_text("dnssd.example.test.")
LABEL = "Living Room.2nd ✓"  # a space, a dot and UTF-8 inside one label
INSTANCE = dns.name.Name((LABEL.encode(), b"_ipp", b"_tcp", b"local", b""))
TYPE = dns.name.from_text("_ipp._tcp.local.")
SUBTYPE = dns.name.from_text("_color._sub._ipp._tcp.local.")
HOST = dns.name.from_text("tv.local.")


def rd(rdtype: dns.rdatatype.RdataType, text: str) -> dns.rdata.Rdata:
    return dns.rdata.from_text("IN", rdtype, text)


def everything(vlan: str, stype: str, instance: str) -> bool:
    return True


def learned(
    store: Store, now: float = 0.0, addresses: tuple[str, ...] = ("10.20.0.5", "fe80::1")
) -> None:
    store.add("iot", TYPE, PTR, dns.rdtypes.ANY.PTR.PTR("IN", PTR, INSTANCE), 4500, now)
    store.add("iot", INSTANCE, SRV, rd(SRV, "0 0 631 tv.local."), 120, now, cache_flush=True)
    store.add(
        "iot", INSTANCE, TXT, rd(TXT, '"rp=ipp/print" "Ty=Laser"'), 4500, now, cache_flush=True
    )
    for address in addresses:
        rdtype = AAAA if ":" in address else A
        store.add("iot", HOST, rdtype, rd(rdtype, address), 120, now, cache_flush=True)


def as_text(recs: list[Rec]) -> set[tuple[str, str, str, str]]:
    return {
        (r.group, r.owner.to_text(), dns.rdatatype.to_text(r.rdtype), r.rdata.to_text())  # type: ignore[arg-type]
        for r in recs
    }


def test_an_instance_publishes_ptr_srv_txt_usable_addresses_and_enumeration() -> None:
    store = Store()
    learned(store)
    recs = instance_records(store, "iot", INSTANCE, [TYPE], ZONE, everything, 1.0)
    inst = "Living\\032Room\\.2nd\\032\\226\\156\\147._ipp._tcp.iot.dnssd.example.test."
    assert as_text(recs) == {
        ("iot", "_ipp._tcp.iot.dnssd.example.test.", "PTR", inst),
        ("iot", inst, "SRV", "0 0 631 tv.iot.dnssd.example.test."),
        ("iot", inst, "TXT", '"rp=ipp/print" "Ty=Laser"'),
        ("iot", "tv.iot.dnssd.example.test.", "A", "10.20.0.5"),
        (
            "iot",
            "_services._dns-sd._udp.iot.dnssd.example.test.",
            "PTR",
            "_ipp._tcp.iot.dnssd.example.test.",
        ),
        (APEX, "b._dns-sd._udp.dnssd.example.test.", "PTR", "iot.dnssd.example.test."),
        (APEX, "db._dns-sd._udp.dnssd.example.test.", "PTR", "iot.dnssd.example.test."),
        (APEX, "lb._dns-sd._udp.dnssd.example.test.", "PTR", "iot.dnssd.example.test."),
    }  # the link-local AAAA is left out


def test_the_instance_label_keeps_its_case_and_bytes() -> None:
    store = Store()
    learned(store)
    srv = next(
        r
        for r in instance_records(store, "iot", INSTANCE, [TYPE], ZONE, everything, 1.0)
        if r.rdtype == SRV
    )
    assert srv.owner.labels[0] == LABEL.encode()
    assert srv.owner.labels[1:] == (b"_ipp", b"_tcp", b"iot", *ZONE.labels)


def test_subtype_ptrs_are_published_too() -> None:
    store = Store()
    learned(store)
    recs = instance_records(store, "iot", INSTANCE, [TYPE, SUBTYPE], ZONE, everything, 1.0)
    owners = {r.owner.to_text() for r in recs if r.rdtype == PTR}
    assert "_color._sub._ipp._tcp.iot.dnssd.example.test." in owners


def test_nothing_without_a_usable_address() -> None:
    store = Store()
    learned(store, addresses=("fe80::1", "169.254.3.4"))
    assert instance_records(store, "iot", INSTANCE, [TYPE], ZONE, everything, 1.0) == []


def test_nothing_when_the_policy_does_not_publish_it() -> None:
    store = Store()
    learned(store)
    asked: list[tuple[str, str, str]] = []

    def no(vlan: str, stype: str, instance: str) -> bool:
        asked.append((vlan, stype, instance))
        return False

    assert instance_records(store, "iot", INSTANCE, [TYPE], ZONE, no, 1.0) == []
    assert asked == [("iot", "_ipp._tcp", LABEL)]


def test_nothing_before_the_srv_is_known() -> None:
    store = Store()
    store.add("iot", TYPE, PTR, dns.rdtypes.ANY.PTR.PTR("IN", PTR, INSTANCE), 4500, 0.0)
    assert instance_records(store, "iot", INSTANCE, [TYPE], ZONE, everything, 1.0) == []


def test_a_new_port_replaces_the_flushed_one_at_once() -> None:
    """RFC 6762 §10.2: the old SRV lingers a second after a cache-flush SRV; the desired set
    holds only the new one, so the UPDATE is one delete and one add."""
    store = Store()
    learned(store)
    store.add("iot", INSTANCE, SRV, rd(SRV, "0 0 632 tv.local."), 120, 5.0, cache_flush=True)
    assert len(store.get("iot", INSTANCE, SRV, 5.1)) == 2
    recs = instance_records(store, "iot", INSTANCE, [TYPE], ZONE, everything, 5.1)
    assert [r.rdata.port for r in recs if r.rdtype == SRV] == [632]  # type: ignore[attr-defined]
    assert len(current(store.get("iot", INSTANCE, SRV, 5.1))) == 1


def test_usable_addresses() -> None:
    ok = ["10.20.0.5", "192.0.2.1", "2001:db8::1", "fd00:20::5"]
    bad = ["169.254.1.1", "127.0.0.1", "0.0.0.0", "224.0.0.251", "fe80::1", "::1", "::", "ff02::fb"]
    for text in ok:
        assert usable(rd(AAAA if ":" in text else A, text)), text
    for text in bad:
        assert not usable(rd(AAAA if ":" in text else A, text)), text


def test_names_outside_local_are_not_rewritten() -> None:
    sub = subdomain("iot", ZONE)
    assert wide(dns.name.from_text("tv.local."), sub) == dns.name.from_text(
        "tv.iot.dnssd.example.test."
    )
    assert wide(dns.name.from_text("tv.example.com."), sub) is None
    assert (
        wide(dns.name.Name((b"x" * 63,) * 3 + (b"y" * 40, b"local", b"")), sub) is None
    )  # too long


def test_records_are_keyed_case_insensitively_like_the_servers_compare() -> None:
    """Knot stores ``living\\032room``; the gateway's ``Living\\032Room`` is the same record."""
    upper = Rec(
        "iot",
        dns.name.from_text("_ipp._tcp.iot.dnssd.example.test."),
        PTR,
        rd(PTR, "Living\\032Room._ipp._tcp.iot.dnssd.example.test."),
    )
    lower = Rec(
        "iot",
        dns.name.from_text("_IPP._tcp.iot.dnssd.example.test."),
        PTR,
        rd(PTR, "living\\032room._ipp._tcp.iot.dnssd.example.test."),
    )
    assert upper.key == lower.key
    txt = Rec("iot", INSTANCE, TXT, rd(TXT, '"A=b"'))
    assert txt.key != Rec("iot", INSTANCE, TXT, rd(TXT, '"a=b"')).key  # TXT is data: case counts


def test_ownership_of_what_the_zone_holds() -> None:
    own = Ownership(ZONE, ["iot", "trusted"])
    n = dns.name.from_text
    assert own.group(n("x._ipp._tcp.iot.dnssd.example.test."), SRV, rd(SRV, "0 0 1 a.")) == "iot"
    assert own.group(n("iot.dnssd.example.test."), A, rd(A, "10.0.0.1")) == "iot"
    assert own.group(n("guest.dnssd.example.test."), A, rd(A, "10.0.0.1")) is None
    assert own.group(n("ns.dnssd.example.test."), A, rd(A, "10.0.0.1")) is None
    assert (
        own.group(n("iot.dnssd.example.test."), dns.rdatatype.NS, rd(dns.rdatatype.NS, "ns."))
        is None
    )
    browse = n("b._dns-sd._udp.dnssd.example.test.")
    assert own.group(browse, PTR, rd(PTR, "trusted.dnssd.example.test.")) == APEX
    assert own.group(browse, PTR, rd(PTR, "other.dnssd.example.test.")) is None  # not ours


def test_followed_instances() -> None:
    f = Followed(limit=1)
    assert f.ptr("iot", TYPE, INSTANCE, True)
    assert f.ptr("iot", SUBTYPE, INSTANCE, True)
    assert f.owners("iot", INSTANCE) == {TYPE, SUBTYPE}
    other = dns.name.from_text("Other._ipp._tcp.local.")
    assert not f.ptr("iot", TYPE, other, True) and f.dropped == 1  # over the limit: counted
    assert f.ptr("iot", TYPE, INSTANCE, False)
    assert f.holds("iot", INSTANCE)
    assert f.ptr("iot", SUBTYPE, INSTANCE, False)
    assert not f.holds("iot", INSTANCE) and f.size == 0
    assert not f.ptr("iot", TYPE, INSTANCE, False)
