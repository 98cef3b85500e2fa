"""The core gateway in the namespace lab: real avahi publishers, real dig, CoreDNS-like clients.

Topology (tests/integration/conftest.py): VLANs trusted=10, iot=20, guest=30, two hosts each,
the gateway in the router namespace with no policies (every VLAN sees only itself).
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from netlab.coredns_forward import ForwardClient
from netlab.lab import (
    AvahiPublisher,
    GatewayProcess,
    Lab,
    gateway_config,
    netns_socket,
    parse_dig,
    parse_dig_short,
    poll_until,
    query,
    run,
)
from tests.support.captures import esp_idf_packets, malformed_pcaps, udp_payloads

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180)]

PRINTER = "Office Printer.2nd floor"  # a dot and spaces inside an instance label
TV = "Living Room TV ✓"  # UTF-8
IOT_PRINTER = "IoT Printer"


# avahi announces a new host name a few times in its first seconds and, per RFC 6762 §6, will
# not multicast a record again within a second (avahi: 500 ms) of doing so. A gateway started
# inside that window missed the announcement and gets no answer to its first query. Real
# devices sit on the network for longer; the cold-lookup test waits until this is over.
ANNOUNCE_SETTLE = 4.0


@pytest.fixture(scope="module")
def world(lab: Lab) -> Iterator[dict[str, object]]:
    quiet = AvahiPublisher(lab, lab.hosts["guest2"], host_name="quietbox")  # no services
    quiet.start()
    quiet_started = time.monotonic()
    trusted = AvahiPublisher(lab, lab.hosts["trusted1"], host_name="office")
    trusted.add_service(
        PRINTER, "_ipp._tcp", 631, ["rp=printers/office", "ty=Laser"], subtypes=["_universal"]
    )
    trusted.start()
    iot = AvahiPublisher(lab, lab.hosts["iot1"], host_name="tv")
    iot.add_service(TV, "_googlecast._tcp", 8009, ["fn=Living Room"])
    iot.add_service(IOT_PRINTER, "_ipp._tcp", 631, ["rp=ipp/print"])
    iot.start()
    trusted.wait_running()
    iot.wait_running()
    # loopback (the router itself, or CoreDNS on it) gets the router's view of every VLAN
    gw = GatewayProcess(lab, gateway_config(lab, dns={"default_view": "*"}))
    gw.start()
    gw.wait_ready()
    quiet.wait_running()
    yield {"gw": gw, "trusted": trusted, "iot": iot, "quiet_started": quiet_started}
    gw.stop()
    quiet.stop()
    trusted.stop()
    iot.stop()


def dig_view(lab: Lab, port: int, *args: str) -> list[str]:
    return parse_dig_short(lab.dig(lab.gw, "@127.0.0.1", "-p", str(port), "+short", *args))


def wait_answer(
    lab: Lab, port: int, *args: str, present: bool = True, timeout: float = 10.0
) -> list[str]:
    result: list[str] = []

    def check() -> bool:
        nonlocal result
        result = dig_view(lab, port, *args)
        return bool(result) == present

    poll_until(check, timeout=timeout, interval=0.1, message=f"dig {args} present={present}")
    return result


def test_wide_area_ptr_srv_txt_a_aaaa_from_avahi(lab: Lab, world: dict[str, object]) -> None:
    ptr = wait_answer(lab, 5310, "_ipp._tcp.trusted.home.arpa", "PTR")
    assert ptr == ["Office\\032Printer\\.2nd\\032floor._ipp._tcp.trusted.home.arpa."]
    inst = ptr[0]
    assert dig_view(lab, 5310, inst, "SRV") == ["0 0 631 office.trusted.home.arpa."]
    assert sorted(dig_view(lab, 5310, inst, "TXT")) == ['"rp=printers/office" "ty=Laser"']
    assert dig_view(lab, 5310, "office.trusted.home.arpa", "A") == ["10.10.0.2"]
    assert "fd00:10::2" in dig_view(lab, 5310, "office.trusted.home.arpa", "AAAA")
    full = parse_dig(
        lab.dig(lab.gw, "@127.0.0.1", "-p", "5310", "_ipp._tcp.trusted.home.arpa", "PTR")
    )
    assert full.status == "NOERROR" and "aa" in full.flags
    extra = {(r.name, r.rdtype) for r in full.additional}
    assert (inst, "SRV") in extra and ("office.trusted.home.arpa.", "A") in extra


def test_subtype_and_service_enumeration(lab: Lab, world: dict[str, object]) -> None:
    wait_answer(lab, 5310, "_ipp._tcp.local", "PTR")
    sub = wait_answer(lab, 5310, "_universal._sub._ipp._tcp.trusted.home.arpa", "PTR")
    assert sub == ["Office\\032Printer\\.2nd\\032floor._ipp._tcp.trusted.home.arpa."]
    types = wait_answer(lab, 5320, "_services._dns-sd._udp.iot.home.arpa", "PTR")
    assert set(types) == {"_googlecast._tcp.iot.home.arpa.", "_ipp._tcp.iot.home.arpa."}


def test_no_leak_across_vlans(lab: Lab, world: dict[str, object]) -> None:
    wait_answer(lab, 5320, "_ipp._tcp.local", "PTR")
    wait_answer(lab, 5310, "_ipp._tcp.local", "PTR")
    assert dig_view(lab, 5310, "_ipp._tcp.local", "PTR") == [
        "Office\\032Printer\\.2nd\\032floor._ipp._tcp.local."
    ]
    assert dig_view(lab, 5320, "_ipp._tcp.local", "PTR") == ["IoT\\032Printer._ipp._tcp.local."]
    assert dig_view(lab, 5310, "_googlecast._tcp.local", "PTR") == []
    assert dig_view(lab, 5310, "tv.local", "A") == []
    assert dig_view(lab, 5330, "_services._dns-sd._udp.local", "PTR") == []
    nx = parse_dig(
        lab.dig(lab.gw, "@127.0.0.1", "-p", "5320", "_ipp._tcp.trusted.home.arpa", "PTR")
    )
    assert nx.status == "NXDOMAIN" and not nx.answer
    assert nx.authority[0].rdtype == "SOA"


def test_view_by_client_address_ipv4_and_ipv6(lab: Lab, world: dict[str, object]) -> None:
    wait_answer(lab, 5310, "_ipp._tcp.local", "PTR")
    t = lab.hosts["trusted2"]
    i = lab.hosts["iot2"]
    for server in (t.router_ipv4, t.router_ipv6):
        out = parse_dig_short(
            lab.dig(
                t.ns, f"@{server}", "-p", "5300", "+short", "_ipp._tcp.trusted.home.arpa", "PTR"
            )
        )
        assert out == ["Office\\032Printer\\.2nd\\032floor._ipp._tcp.trusted.home.arpa."]
    for server in (i.router_ipv4, i.router_ipv6):
        out = parse_dig_short(
            lab.dig(i.ns, f"@{server}", "-p", "5300", "+short", "_ipp._tcp.local", "PTR")
        )
        assert out == ["IoT\\032Printer._ipp._tcp.local."]
    # a client in no VLAN subnet and no default view: REFUSED, question echoed (the cold-lookup
    # gateway below runs without default_view; its 127.0.0.1:5400 is such a listener)


def test_the_issue_done_when_dig(lab: Lab, world: dict[str, object]) -> None:
    """`dig @127.0.0.1 -p 5300 _ipp._tcp.trusted.home.arpa PTR` (and the SRV, TXT, A, AAAA
    behind it) answers with what avahi publishes, on the router's default view."""
    ptr = wait_answer(lab, 5300, "_ipp._tcp.trusted.home.arpa", "PTR")
    assert ptr == ["Office\\032Printer\\.2nd\\032floor._ipp._tcp.trusted.home.arpa."]
    assert dig_view(lab, 5300, ptr[0], "SRV") == ["0 0 631 office.trusted.home.arpa."]
    assert dig_view(lab, 5300, ptr[0], "TXT") == ['"rp=printers/office" "ty=Laser"']
    assert dig_view(lab, 5300, "office.trusted.home.arpa", "A") == ["10.10.0.2"]
    assert "fd00:10::2" in dig_view(lab, 5300, "office.trusted.home.arpa", "AAAA")
    # the router's view sees every VLAN, but never another VLAN's link-local addresses
    assert all(
        not a.startswith("fe80") for a in dig_view(lab, 5300, "office.trusted.home.arpa", "AAAA")
    )


def test_browse_domains_for_the_asking_vlan(lab: Lab, world: dict[str, object]) -> None:
    t = lab.hosts["trusted2"]
    for name in (
        "b._dns-sd._udp.home.arpa",
        "lb._dns-sd._udp.0.10.10.in-addr.arpa",
        "db._dns-sd._udp.home.arpa",
    ):
        out = parse_dig_short(
            lab.dig(t.ns, f"@{t.router_ipv4}", "-p", "5300", "+short", name, "PTR")
        )
        assert out == ["trusted.home.arpa."], name


def test_reverse_lookup_of_an_announced_host(lab: Lab, world: dict[str, object]) -> None:
    t = lab.hosts["trusted2"]
    out = parse_dig_short(
        lab.dig(t.ns, f"@{t.router_ipv4}", "-p", "5300", "+short", "-x", lab.hosts["trusted1"].ipv4)
    )
    assert out == ["office.trusted.home.arpa."]


def test_coredns_forward_client(lab: Lab, world: dict[str, object]) -> None:
    wait_answer(lab, 5310, "_ipp._tcp.local", "PTR")
    fc = ForwardClient("127.0.0.1", 5310, socket_factory=lab.socket_factory(lab.gw))
    assert fc.health_check()
    for tcp in (False, True, True, False):
        msg = dns.message.make_query("_ipp._tcp.trusted.home.arpa.", "PTR")
        reply = fc.exchange(msg, tcp=tcp)
        assert reply.rcode() == dns.rcode.NOERROR and reply.answer
    loop_probe = fc.exchange(dns.message.make_query("abc123.def456.local.", "HINFO"))
    assert loop_probe.rcode() == dns.rcode.NXDOMAIN
    assert fc.stats.formerr == 0 and fc.stats.servfail == 0
    assert fc.stats.tcp_connections == 1  # the TCP connection was reused


def test_goodbye_then_return(lab: Lab, world: dict[str, object]) -> None:
    iot = world["iot"]
    assert isinstance(iot, AvahiPublisher)
    wait_answer(lab, 5320, "_googlecast._tcp.iot.home.arpa", "PTR")
    iot.stop()
    start = time.monotonic()
    wait_answer(lab, 5320, "_googlecast._tcp.iot.home.arpa", "PTR", present=False, timeout=2.5)
    assert time.monotonic() - start < 2.5
    iot.start()
    iot.wait_running()
    wait_answer(lab, 5320, "_googlecast._tcp.iot.home.arpa", "PTR", timeout=10)


def test_cold_lookup_answers_within_a_second(lab: Lab, world: dict[str, object]) -> None:
    # a host with no services, announced before this gateway started: only a query finds it
    started = world["quiet_started"]
    assert isinstance(started, float)
    time.sleep(max(0.0, started + ANNOUNCE_SETTLE - time.monotonic()))  # protocol timer
    cfg = gateway_config(
        lab,
        dns={
            "listen": ["127.0.0.1:5400"],
            "view_listeners": {
                "guest": ["127.0.0.1:5430"],
                "trusted": ["127.0.0.1:5410"],
                "iot": ["127.0.0.1:5420"],
            },
        },
        http={"listen": None},
    )
    gw = GatewayProcess(lab, cfg)
    gw.start()
    gw.wait_ready(port=5400)
    try:
        refused = query(lab.gw, "127.0.0.1", 5400, "_ipp._tcp.local", "PTR")
        assert refused.rcode() == dns.rcode.REFUSED and refused.question
        start = time.monotonic()
        r = query(lab.gw, "127.0.0.1", 5430, "quietbox.guest.home.arpa", "A", timeout=2.5)
        assert time.monotonic() - start < 1.0
        assert [rd.to_text() for rd in r.answer[0]] == [lab.hosts["guest2"].ipv4]
    finally:
        gw.stop()


def _metrics(lab: Lab) -> str:
    code = (
        "import urllib.request;"
        "print(urllib.request.urlopen('http://127.0.0.1:9353/metrics').read().decode())"
    )
    return str(run(lab.gw, sys.executable, "-c", code).stdout)


def _metric(text: str, prefix: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


def test_bad_mdns_input_is_counted_never_fatal(lab: Lab, world: dict[str, object]) -> None:
    gw = world["gw"]
    assert isinstance(gw, GatewayProcess)
    wait_answer(lab, 5310, "_ipp._tcp.local", "PTR")
    before = _metrics(lab)
    h = lab.hosts["trusted2"]
    junk = [b"\x00", b"\xff" * 40, b"\x00\x00\x84\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c"]
    for pcap in malformed_pcaps():
        junk.extend(list(udp_payloads(pcap, ports=(53, 5353)))[:20])
    with netns_socket(h.ns, socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((h.ipv4, 5353))
        for data in junk:
            s.sendto(data[:9000], ("224.0.0.251", 5353))
            s.sendto(data[:9000], (h.router_ipv4, 5353))
    # a well-formed response from a port other than 5353 must be ignored (RFC 6762 §6)
    spoof = next(p for p in esp_idf_packets() if p.name == "test-56.bin").read_bytes()
    with netns_socket(h.ns, socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((h.ipv4, 0))
        s.sendto(spoof, ("224.0.0.251", 5353))

    def counted() -> bool:
        after = _metrics(lab)
        return _metric(
            after, 'mdns_gateway_mdns_packets_dropped_total{reason="malformed"'
        ) > _metric(
            before, 'mdns_gateway_mdns_packets_dropped_total{reason="malformed"'
        ) and _metric(
            after, 'mdns_gateway_mdns_packets_dropped_total{reason="bad_source'
        ) > _metric(before, 'mdns_gateway_mdns_packets_dropped_total{reason="bad_source')

    poll_until(counted, timeout=5, interval=0.1, message="drop counters")
    assert dig_view(lab, 5310, "_smb._tcp.local", "PTR") == []  # the spoofed record never landed
    assert dig_view(lab, 5310, "_ipp._tcp.local", "PTR")  # and it still answers
    assert gw.running and "Traceback" not in gw.logs()


def test_bad_dns_input_is_counted_never_fatal(lab: Lab, world: dict[str, object]) -> None:
    gw = world["gw"]
    assert isinstance(gw, GatewayProcess)
    h = lab.hosts["trusted2"]
    junk = [b"", b"\x01", b"\x12\x34" + b"\xff" * 30]
    for pcap in malformed_pcaps():
        junk.extend(udp_payloads(pcap, ports=(53, 5353)))
    with netns_socket(h.ns, socket.AF_INET, socket.SOCK_DGRAM) as s:
        for data in junk:
            s.sendto(data[:9000], (h.router_ipv4, 5300))
    r = query(h.ns, h.router_ipv4, 5300, "_ipp._tcp.trusted.home.arpa", "PTR")
    assert r.answer
    assert gw.running and "Traceback" not in gw.logs()
    assert _metric(_metrics(lab), "mdns_gateway_dns_malformed_total") >= 3


def test_knot_kdig_tcp_keepopen_and_edns_options(lab: Lab, world: dict[str, object]) -> None:
    """A second real client (Knot's kdig): several queries on one kept-open TCP connection,
    and EDNS options (NSID, COOKIE, padding, an unknown one) that must not be echoed."""
    wait_answer(lab, 5310, "_ipp._tcp.local", "PTR")
    out = run(
        lab.gw,
        "kdig",
        "@127.0.0.1",
        "-p",
        "5310",
        "+tcp",
        "+keepopen",
        "+time=2",
        "office.trusted.home.arpa",
        "A",
        "_ipp._tcp.trusted.home.arpa",
        "PTR",
        "nothere.trusted.home.arpa",
        "A",
    ).stdout
    assert out.count("status: NOERROR") == 2 and out.count("status: NXDOMAIN") == 1
    assert "TCP" in out
    out = run(
        lab.gw,
        "kdig",
        "@127.0.0.1",
        "-p",
        "5310",
        "+time=2",
        "+nsid",
        "+cookie",
        "+padding=128",
        "+ednsopt=65001:abcd",
        "+bufsize=1232",
        "+dnssec",
        "office.trusted.home.arpa",
        "A",
    ).stdout
    assert "status: NOERROR" in out and "10.10.0.2" in out
    edns = out[out.index("EDNS PSEUDOSECTION") : out.index("QUESTION SECTION")]
    assert "1232 B" in edns and "flags: do" in edns
    for option in ("NSID", "COOKIE", "PADDING", "65001"):
        assert option not in edns, edns


def test_python_zeroconf_publisher_ipv6_only(lab: Lab, world: dict[str, object]) -> None:
    """A python-zeroconf publisher speaking only IPv6 (as Matter devices do) is found too."""
    from netlab.lab import ZeroconfPublisher

    h = lab.hosts["guest1"]
    # (python-zeroconf cannot publish a dot inside an instance label; avahi's test does that)
    pub = ZeroconfPublisher(
        lab,
        h,
        [
            {
                "name": "Lamp ✓ kitchen",
                "type": "_hap._tcp",
                "port": 8080,
                "txt": {"md": "Lamp", "ci": "5"},
                "addresses": [h.ipv6],
            }
        ],
        ip_version="v6",
        host_name="lamp",
    )
    pub.wait_ready()
    try:
        ptr = wait_answer(lab, 5330, "_hap._tcp.guest.home.arpa", "PTR")
        assert ptr == ["Lamp\\032\\226\\156\\147\\032kitchen._hap._tcp.guest.home.arpa."]
        srv = dig_view(lab, 5330, ptr[0], "SRV")
        assert srv == ["0 0 8080 lamp.guest.home.arpa."]
        assert dig_view(lab, 5330, "lamp.guest.home.arpa", "AAAA") == [h.ipv6]
        txt = " ".join(dig_view(lab, 5330, ptr[0], "TXT"))
        assert '"md=Lamp"' in txt and '"ci=5"' in txt
        assert dig_view(lab, 5310, "_hap._tcp.local", "PTR") == []  # not in trusted's view
    finally:
        pub.stop()
    wait_answer(lab, 5330, "_hap._tcp.guest.home.arpa", "PTR", present=False, timeout=3)
