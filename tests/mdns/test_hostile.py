"""The mDNS path (ingest, store, reflector) against a hostile device on a VLAN (issue 12).

Each attack is sent as the bytes a device would send, through the real parser, ingest, store
and reflector; each test asserts the figure it must stay under. The fuzzing at the end runs a
fixed budget here (``make test``); ``make fuzz`` runs it longer (MDNS_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import os
import random
import socket
import struct
import time

import dns.name
import dns.rdata
import dns.rdatatype
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.config import ReflectorConfig, VlanConfig
from bridge.interfaces import IFF_MULTICAST, IFF_UP, Interface
from bridge.mdns import wire
from bridge.mdns.ingest import ADDRESS, META, NOT_IN, Ingest
from bridge.mdns.links import Links
from bridge.policy import PolicyEngine, ServicePolicy
from bridge.reflector import ERROR, Reflector
from bridge.store import Store

V4 = socket.AF_INET
IOT = 9  # ifindex of br20, VLAN iot
SRC = "10.20.0.5"
A = dns.rdatatype.A
AAAA = dns.rdatatype.AAAA
FLUSH = 0x8000
FUZZ_EXAMPLES = int(os.environ.get("MDNS_FUZZ_EXAMPLES", "150"))


def gateway(*, trust_any: bool = False) -> tuple[Store, Ingest, Reflector, list[int]]:
    """Store, ingest and reflector wired as bridge/app.py wires them; the list counts the
    datagrams the reflector produced."""
    vlans = {
        "trusted": VlanConfig("trusted", "br10", dns.name.from_text("trusted.home.arpa.")),
        "iot": VlanConfig(
            "iot", "br20", dns.name.from_text("iot.home.arpa."), (), trust_any_address=trust_any
        ),
    }
    up = IFF_UP | IFF_MULTICAST
    table = [
        Interface("br10", 7, up, (ipaddress.ip_interface("10.10.0.1/24"),)),
        Interface(
            "br20",
            IOT,
            up,
            (ipaddress.ip_interface("10.20.0.1/24"), ipaddress.ip_interface("fd00:20::1/64")),
        ),
    ]
    links = Links(vlans, scan=lambda: table)
    links.refresh()
    store = Store()
    ingest = Ingest(store, links)
    everything = ServicePolicy(
        "all",
        ("t.yaml", 1),
        frozenset({"iot"}),
        frozenset({"trusted"}),
        frozenset({"*"}),
        reflect=True,
    )
    reflector = Reflector(
        list(vlans), ReflectorConfig(True, 1e9, 10**9), PolicyEngine([everything], list(vlans))
    )
    reflector.set_links(links.by_vlan)
    sent = [0]

    def reflect(
        vlan: str, packet: wire.Packet, raw: bytes, src: str, port: int, fam: int, now: float
    ) -> None:
        sent[0] += len(reflector.handle(vlan, packet, raw, src, port, fam, now))

    ingest.listeners.append(reflect)
    return store, ingest, reflector, sent


clock = [0.0]  # the reflector's now, moved with ingest's


def feed(ingest: Ingest, data: bytes, now: float, src: str = SRC) -> wire.Packet | None:
    clock[0] = now
    return ingest.handle(data, src, 5353, IOT, V4, now)


def wname(text: str) -> bytes:
    return b"".join(bytes([len(x)]) + x for x in text.encode().split(b".") if x) + b"\0"


def rr(name: str, rdtype: int, rdclass: int, ttl: int, rdata: bytes) -> bytes:
    return wname(name) + struct.pack("!HHIH", rdtype, rdclass, ttl, len(rdata)) + rdata


def response(*records: bytes) -> bytes:
    return struct.pack("!HHHHHH", 0, 0x8400, 0, len(records), 0, 0) + b"".join(records)


def a(addr: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr)


# --- 12.1 hash flooding ----------------------------------------------------------------------

# two-octet blocks that add the same to dnspython's h = 9h + c (9 * 97 + 122 = 9 * 98 + 113 ...)
BLOCKS = [b"az", b"bq", b"ch", b"d_", b"h;", b"i2", b"j)"]


def dnspython_hash(labels: tuple[bytes, ...]) -> int:
    """dnspython's own (unseeded) name hash, as it was before bridge/mdns/wire.py replaced it."""
    h = 0
    for label in labels:
        for c in label.lower():
            h += (h << 3) + c
    return h


def colliding_labels(count: int) -> list[bytes]:
    return [b"".join(p) for p in itertools.islice(itertools.product(BLOCKS, repeat=5), count)]


def test_colliding_names_hash_apart_and_equal_names_hash_alike() -> None:
    labels = colliding_labels(6000)
    assert len({dnspython_hash((x, b"local", b"")) for x in labels}) == 1  # the attack is real
    names = [wire.intern((x, b"local")) for x in labels]
    assert len({hash(n) for n in names}) >= 5990  # ours: seeded, practically collision-free
    # a parsed name and a dnspython name (a DNS query's, any case) are one key
    made = dns.name.Name((labels[7].upper(), b"LOCAL", b""))
    assert hash(made) == hash(names[7]) and made == names[7]
    assert {names[7]: 1}[made] == 1
    assert hash(dns.name.from_text("a.bc.local.")) != hash(dns.name.from_text("ab.c.local."))


def announce_hosts(labels: list[bytes]) -> float:
    """CPU seconds to ingest (store, reflector) 30 packets of 200 host addresses each."""
    _, ingest, reflector, _ = gateway()
    packets = []
    for p in range(0, len(labels), 200):
        packets.append(
            response(
                *(
                    rr(x.decode() + ".local", A, 1 | FLUSH, 120, a(f"10.20.0.{2 + i % 250}"))
                    for i, x in enumerate(labels[p : p + 200])
                )
            )
        )
    start = time.process_time()
    for i, data in enumerate(packets):
        assert feed(ingest, data, float(i)) is not None
    spent = time.process_time() - start
    assert ingest.records["iot"] == len(labels)
    assert not reflector.packets[("iot", "", ERROR)]
    return spent


def test_a_flood_of_colliding_names_costs_what_random_names_cost() -> None:
    """Issue 12: 30 packets of 6,000 colliding names took 24 s of CPU (random names 0.2 s)."""
    rng = random.Random(12)
    randoms = [
        bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(10)) for _ in range(6000)
    ]
    wire._NAMES.clear()
    t_random = announce_hosts(randoms)
    wire._NAMES.clear()
    t_colliding = announce_hosts(colliding_labels(6000))
    assert t_colliding < 4 * t_random + 0.5, (t_colliding, t_random)


# --- 12.2 / 12.7: classes, meta types, unknown types, TTLs -------------------------------------


def test_odd_classes_and_unknown_types_never_grow_dnspython_state() -> None:
    """Issue 12: 300 packets of unusual (class, type) pairs grew RSS by 78 MB, one entry in
    dnspython's module-global rdata-class cache per pair."""
    store, ingest, _, _ = gateway()
    feed(ingest, response(rr("warm.local", 99, 1, 120, b"\x03abc")), 0.0)  # SPF: known type
    cache = dns.rdata._rdata_classes  # type: ignore[attr-defined]
    before = len(cache)
    for p in range(300):
        records = [rr(f"odd{p}.local", 300 + p, 2 + i, 120, b"\x01" * 4) for i in range(10)]
        records += [rr(f"new{p}.local", 0x3000 + p * 10 + i, 1, 120, b"x" * i) for i in range(10)]
        feed(ingest, response(*records), float(p))
    assert len(cache) == before
    assert ingest.refused[("iot", NOT_IN)] == 3000
    assert not [c for c in store.items(400.0) if c.name.labels[0].startswith(b"odd")]
    # unknown IN types are kept, as opaque bytes (served as RFC 3597 \# rdata)
    kept = store.get("iot", dns.name.from_text("new7.local."), 0x3000 + 73, 8.0)
    assert [c.rdata.to_text() for c in kept] == ["\\# 3 787878"]


def test_meta_types_are_dropped_and_a_ttl_with_the_top_bit_is_zero() -> None:
    store, ingest, _, _ = gateway()
    host = dns.name.from_text("cam.local.")
    feed(ingest, response(rr("cam.local", A, 1 | FLUSH, 120, a("10.20.0.9"))), 0.0)
    metas = [rr("cam.local", t, 1, 120, b"\x00" * 4) for t in (0, 251, 252, 253, 255, 249, 250)]
    feed(ingest, response(*metas), 1.0)
    assert ingest.refused[("iot", META)] == 7
    assert store.types_at("iot", host) == {A}
    # RFC 2181 §8: 2^32-1 is no 4-hour TTL but zero, a goodbye (the record goes in a second)
    top = response(rr("cam.local", A, 1 | FLUSH, 0xFFFFFFFF, a("10.20.0.9")))
    assert wire.parse(top).answers[0].ttl == 0
    feed(ingest, top, 2.0)
    store.sweep(3.5)
    assert store.get("iot", host, A, 3.5) == []


def test_records_of_other_classes_never_reach_the_reflector() -> None:
    """Issue 12: an A record of a non-IN class made the reflector raise and drop the packet."""
    _, ingest, reflector, sent = gateway()
    inst = "Cam._http._tcp.local"
    srv = struct.pack("!HHH", 0, 0, 80) + wname("cam.local")
    data = response(
        rr("_http._tcp.local", dns.rdatatype.PTR, 1, 4500, wname(inst)),
        rr(inst, dns.rdatatype.SRV, 1 | FLUSH, 120, srv),
        rr("cam.local", A, 3 | FLUSH, 120, b"\x00\x05" + wname("x")),  # Chaos A
        rr("cam.local", A, 5, 120, b"\x01\x02"),  # class 5, a 2-byte "address"
        rr("cam.local", A, 1 | FLUSH, 120, a("10.20.0.9")),
    )
    outputs = []
    clock[0] = 1.0
    packet = wire.parse(data)
    assert packet.not_in == 2 and len(packet.records()) == 3
    outputs = reflector.handle("iot", packet, data, SRC, 5353, V4, 1.0)
    assert not reflector.packets[("iot", "", ERROR)]
    assert [o.vlan for o in outputs] == ["trusted"]
    out = wire.parse(outputs[0].data)
    assert out.not_in == 0
    assert [r.rdtype for r in out.records()] == [dns.rdatatype.PTR, dns.rdatatype.SRV, A]
    assert sent == [0]  # nothing through ingest yet; and through it, the same
    feed(ingest, data, 5.0)
    assert ingest.refused[("iot", NOT_IN)] == 2 and sent[0] == 1


# --- 12.4 plausibility -------------------------------------------------------------------------

REFUSED = [
    "8.8.8.8",
    "127.0.0.1",
    "255.255.255.255",
    "0.0.0.0",
    "224.0.0.251",
    "10.10.0.5",
    "10.20.0.0",
    "10.20.0.255",
    "::1",
    "2001:db8::1",
    "ff02::fb",
    "::ffff:10.20.0.7",
]
ACCEPTED = ["10.20.0.7", "169.254.3.4", "fd00:20::7", "fe80::1234"]


def address_records(addrs: list[str]) -> bytes:
    return response(
        *(
            rr(f"h{i}.local", AAAA if ":" in x else A, 1 | FLUSH, 120, a(x))
            for i, x in enumerate(addrs)
        )
    )


def test_addresses_that_cannot_be_on_the_vlan_are_refused_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 12: 8.8.8.8, 127.0.0.1, 255.255.255.255 and another VLAN's subnet were cached and
    served as a device's address."""
    store, ingest, _, _ = gateway()
    with caplog.at_level(logging.WARNING, "bridge.mdns.ingest"):
        feed(ingest, address_records(REFUSED + ACCEPTED), 0.0)
        feed(ingest, address_records(REFUSED), 1.0, src="10.20.0.6")
    held = {c.rdata.address for c in store.items(2.0)}  # type: ignore[attr-defined]
    assert held == set(ACCEPTED)
    assert ingest.refused[("iot", ADDRESS)] == 2 * len(REFUSED)
    lines = [r.getMessage() for r in caplog.records if ADDRESS in r.getMessage()]
    assert len(lines) == 1 and "VLAN iot" in lines[0] and SRC in lines[0]


def test_trust_any_address_accepts_any_address_on_that_vlan() -> None:
    store, ingest, _, _ = gateway(trust_any=True)
    feed(ingest, address_records(["8.8.8.8", "10.10.0.5"]), 0.0)
    assert len(store) == 2 and not ingest.refused


# --- 12.4 ownership and the per-source share ---------------------------------------------------

ATTACKER = "10.20.0.66"
CAM = "Cam._http._tcp.local"
PTR, SRV = dns.rdatatype.PTR, dns.rdatatype.SRV


def srv(port: int, target: str) -> bytes:
    return struct.pack("!HHH", 0, 0, port) + wname(target)


def test_another_address_cannot_say_goodbye_for_replace_or_redirect_a_device() -> None:
    """Issue 12: any host could send a goodbye for another's record (gone 1.6 s later), replace
    its address by cache-flush, or redirect its SRV."""
    store, ingest, _, _ = gateway()
    cam = dns.name.from_text("cam.local.")
    feed(
        ingest,
        response(
            rr("_http._tcp.local", PTR, 1, 4500, wname(CAM)),
            rr(CAM, SRV, 1 | FLUSH, 120, srv(80, "cam.local")),
            rr("cam.local", A, 1 | FLUSH, 120, a("10.20.0.9")),
        ),
        0.0,
    )
    attacks = [
        rr("cam.local", A, 1 | FLUSH, 0, a("10.20.0.9")),  # goodbye
        rr("_http._tcp.local", PTR, 1, 0, wname(CAM)),  # goodbye of a shared record
        rr("cam.local", A, 1 | FLUSH, 120, a("10.20.0.66")),  # flush and replace
        rr("cam.local", A, 1, 120, a("10.20.0.67")),  # an address added beside
        rr(CAM, SRV, 1 | FLUSH, 120, srv(8080, "evil.local")),  # redirect
    ]
    for i, attack in enumerate(attacks):
        feed(ingest, response(attack), 10.0 + i, src=ATTACKER)
    # the owner's own records, copied (the same device over IPv6, say): ignored, not counted
    feed(ingest, response(rr("cam.local", A, 1 | FLUSH, 120, a("10.20.0.9"))), 20.0, ATTACKER)
    store.sweep(30.0)
    assert [c.rdata.address for c in store.get("iot", cam, A, 30.0)] == ["10.20.0.9"]  # type: ignore[attr-defined]
    (target,) = store.get("iot", dns.name.from_text(CAM + "."), SRV, 30.0)
    assert target.rdata.port == 80 and target.remaining == 90.0  # type: ignore[attr-defined]
    assert len(store.get("iot", dns.name.from_text("_http._tcp.local."), PTR, 30.0)) == 1
    assert store.refused_records == {("iot", "not_owner"): len(attacks)}
    # the owner's goodbye works; once its record expired, another address may take the name
    feed(ingest, response(rr(CAM, SRV, 1 | FLUSH, 0, srv(80, "cam.local"))), 31.0)
    store.sweep(32.5)
    assert store.get("iot", dns.name.from_text(CAM + "."), SRV, 32.5) == []
    store.sweep(121.0)
    feed(ingest, response(rr("cam.local", A, 1 | FLUSH, 120, a("10.20.0.10"))), 121.0, ATTACKER)
    assert [c.rdata.address for c in store.get("iot", cam, A, 122.0)] == ["10.20.0.10"]  # type: ignore[attr-defined]


def test_one_host_filling_its_vlans_share_cannot_hide_a_new_device() -> None:
    """Issue 12: one host could fill its VLAN's store share and hide every new device of that
    VLAN for as long as it kept flooding."""
    _, ingest, _, _ = gateway()
    store = ingest.store = Store(max_records=100)
    store.add(
        "trusted",
        dns.name.from_text("nas.local."),
        A,
        dns.rdata.from_text("IN", "A", "10.10.0.4"),
        120,
        0.0,
        True,
        source="10.10.0.4",
    )
    for p in range(12):  # 240 new names from one host, 99 fit
        feed(
            ingest,
            response(
                *(rr(f"f{p}x{i}.local", A, 1 | FLUSH, 120, a("10.20.0.66")) for i in range(20))
            ),
            p / 10,
            ATTACKER,
        )
    assert len(store) == 100 and store.refused["iot"] == 240 - 99
    new = [rr(f"new{i}.local", A, 1 | FLUSH, 120, a("10.20.0.7")) for i in range(3)]
    feed(ingest, response(*new), 2.0, src="10.20.0.7")
    for i in range(3):
        assert store.get("iot", dns.name.from_text(f"new{i}.local."), A, 2.0)
    assert store.get("trusted", dns.name.from_text("nas.local."), A, 2.0)
    assert not store.get("iot", dns.name.from_text("f0x0.local."), A, 2.0)  # its oldest went
    feed(ingest, response(rr("more.local", A, 1 | FLUSH, 120, a("10.20.0.66"))), 3.0, ATTACKER)
    assert store.refused["iot"] == 240 - 99 + 1  # the flooder is still refused


# --- 12.8 fuzzing the mDNS path --------------------------------------------------------------

LABELS = st.sampled_from([b"a", b"Cam", b"_http", b"_tcp", b"local", b"az" * 3, b"bq" * 3, b"x.y"])
TYPES = st.sampled_from([1, 2, 5, 12, 13, 16, 28, 33, 41, 47, 0, 99, 251, 252, 255, 0x3003, 65535])
CLASSES = st.sampled_from([1, 1 | FLUSH, 3, 4, 254, 255, 0x7FFF, 0xFFFF])
TTLS = st.sampled_from([0, 1, 120, 4500, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF])


@st.composite
def records(draw: st.DrawFn) -> bytes:
    name = ".".join(x.decode() for x in draw(st.lists(LABELS, min_size=1, max_size=4)))
    rdtype = draw(TYPES)
    if rdtype == A:
        rdata = draw(
            st.sampled_from([a(x) for x in ACCEPTED[:2] + REFUSED[:3]]) | st.binary(max_size=6)
        )
    elif rdtype == AAAA:
        rdata = draw(
            st.sampled_from([a(x) for x in ACCEPTED[2:] + REFUSED[8:]]) | st.binary(max_size=18)
        )
    elif rdtype in (12, 5, 2):
        rdata = wname(name) if draw(st.booleans()) else draw(st.binary(max_size=12))
    else:
        rdata = draw(st.binary(max_size=24))
    return rr(name, rdtype, draw(CLASSES), draw(TTLS), rdata)


@st.composite
def packets(draw: st.DrawFn) -> bytes:
    rrs = draw(st.lists(records(), min_size=1, max_size=8))
    flags = draw(st.sampled_from([0x8400, 0x8000, 0x0000, 0x8401, 0x7800]))
    split = draw(st.integers(0, len(rrs)))  # answers, then additionals
    head = struct.pack("!HHHHHH", 0, flags, 0, split, 0, len(rrs) - split)
    data = bytearray(head + b"".join(rrs))
    for pos, value in draw(
        st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)), max_size=3)
    ):
        data[pos] = value  # a few corrupted octets: counts, lengths, pointers
    return bytes(data)


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(packets(), min_size=1, max_size=6))
def test_fuzzed_packets_through_ingest_store_and_reflector(datas: list[bytes]) -> None:
    store, ingest, reflector, _ = gateway()
    for i, data in enumerate(datas):
        packet = feed(ingest, data, float(i))  # raises nothing (ingest counts what it drops)
        assert packet is None or all(r.rdclass == 1 for r in packet.records())
    assert not reflector.packets[("iot", "", ERROR)]
    cached = list(store.items(float(len(datas))))
    assert len(cached) <= len(store)
    for c in cached:
        assert c.rdtype not in (0, 41, 251, 252, 255) and c.remaining <= 4 * 3600
        if c.rdtype in (A, AAAA):
            assert str(c.rdata.address) in ACCEPTED  # type: ignore[attr-defined]
    store.sweep(1e9)
    assert len(store) == 0


def test_a_dual_stack_device_says_goodbye_over_either_family() -> None:
    """A device announces over IPv4 and IPv6 and says goodbye over both: the goodbye from the
    family that arrived second is its own too (else a client of that family on another VLAN
    kept the departed service until its TTL ran out). A second IPv4 sender of the same record
    stays a stranger."""
    store, ingest, _, _ = gateway()
    v6 = "fe80::9"
    records = (
        rr("_http._tcp.local", PTR, 1, 4500, wname(CAM)),
        rr("cam.local", A, 1 | FLUSH, 120, a("10.20.0.9")),
    )
    feed(ingest, response(*records), 0.0, src=v6)  # IPv6 first: it owns them
    feed(ingest, response(*records), 0.1)  # the same device over IPv4 (SRC)
    feed(ingest, response(*records), 0.2, src=ATTACKER)  # a stranger copies them over IPv4
    feed(ingest, response(*records), 0.3, src="fe80::66")  # ... and over IPv6
    for src in (ATTACKER, "fe80::66"):
        feed(ingest, response(rr("cam.local", A, 1 | FLUSH, 0, a("10.20.0.9"))), 5.0, src)
    assert store.refused_records == {("iot", "not_owner"): 2}
    goodbyes = (
        rr("_http._tcp.local", PTR, 1, 0, wname(CAM)),
        rr("cam.local", A, 1 | FLUSH, 0, a("10.20.0.9")),
    )
    feed(ingest, response(*goodbyes), 10.0)  # over IPv4 first
    store.sweep(11.5)
    assert store.get("iot", dns.name.from_text("cam.local."), A, 11.5) == []
    assert store.get("iot", dns.name.from_text("_http._tcp.local."), PTR, 11.5) == []
    assert store.refused_records == {("iot", "not_owner"): 2}
