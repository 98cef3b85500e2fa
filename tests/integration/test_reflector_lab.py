"""The reflector in the namespace lab: real avahi publishers, python-zeroconf browsers, raw
senders and sniffers, a second gateway on the same segments, link flaps and a re-created VLAN.

Topology (conftest.py): VLANs trusted=10, iot=20, guest=30 with two hosts each; this module adds
a probe host per VLAN (raw senders/sniffers only). Policies: iot's printers and cast devices are
reflected into trusted (not back); ``_loop._tcp`` is reflected everywhere (for the storm test).
Destructive tests (link flap, VLAN re-created) run last.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.name
import dns.rdata
import dns.rdatatype
import pytest

from bridge.mdns import wire
from netlab.lab import (
    AvahiPublisher,
    GatewayProcess,
    Host,
    Lab,
    ZeroconfBrowser,
    gateway_config,
    poll_until,
    run,
)
from netlab.mdns_probe import (
    Datagram,
    Sender,
    Sniffer,
    WireCounter,
    http_get,
    link_local,
    metric_samples,
    router_sources,
)

pytestmark = [pytest.mark.lab, pytest.mark.timeout(240)]

RATE = 100.0  # packets/s per VLAN and direction in this module's gateway
BURST = 50
POLICIES = """\
apiVersion: mdnsgateway.io/v1alpha1
kind: ServicePolicy
metadata: {name: iot-into-trusted}
spec:
  from: [iot]
  to: [trusted]
  services: [_ipp._tcp, _googlecast._tcp]
  reflect: true
---
apiVersion: mdnsgateway.io/v1alpha1
kind: ServicePolicy
metadata: {name: loop-everywhere}
spec:
  from: ["*"]
  to: ["*"]
  services: [_loop._tcp]
  reflect: true
"""
LAB_PRINTER = "Lab Printer"
SECRET_CAM = "Secret Cam"
TRUSTED_PRINTER = "Trusted Printer"


def reflector_config(lab: Lab, **over: Any) -> dict[str, Any]:
    policies = Path(lab.workdir) / "reflector-policies"
    policies.mkdir(exist_ok=True)
    (policies / "reflect.yaml").write_text(POLICIES)
    return gateway_config(
        lab,
        policies=str(policies),
        reflector={"enabled": True, "rate": RATE, "burst": BURST},
        **over,
    )


@pytest.fixture(scope="module")
def world(lab: Lab) -> Iterator[dict[str, Any]]:
    probes = {vlan: lab.add_host(vlan) for vlan in lab.vlans}  # raw senders / sniffers
    lab.wait_ipv6_ready()
    iot = AvahiPublisher(lab, lab.hosts["iot1"], host_name="labprinter")
    iot.add_service(LAB_PRINTER, "_ipp._tcp", 631, ["rp=ipp/print"])
    iot.add_service(SECRET_CAM, "_rtsp._tcp", 554, ["path=/live"])
    iot.start()
    trusted = AvahiPublisher(lab, lab.hosts["trusted1"], host_name="trustedbox")
    trusted.add_service(TRUSTED_PRINTER, "_ipp._tcp", 631, ["rp=ipp/t"])
    trusted.start()
    iot.wait_running()
    trusted.wait_running()
    gw = GatewayProcess(lab, reflector_config(lab))
    gw.start()
    gw.wait_ready()
    gw.wait_for_log(r"reflector enabled")
    yield {"gw": gw, "iot": iot, "trusted": trusted, "probes": probes}
    gw.stop()
    iot.stop()
    trusted.stop()


def metrics(ns: str) -> str:
    return http_get(ns, "127.0.0.1", 9353, "/metrics")


def counter(ns: str, name: str, **labels: str) -> float:
    total = 0.0
    for got, value in metric_samples(metrics(ns), f"mdns_gateway_{name}_total"):
        if all(got.get(k) == v for k, v in labels.items()):
            total += value
    return total


def vlan_up(lab: Lab, vlan: str) -> float | None:
    for labels, value in metric_samples(metrics(lab.gw), "mdns_gateway_vlan_up"):
        if labels.get("vlan") == vlan:
            return value
    return None


def name(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def srv_query(instance: str, stype: str = "_ipp._tcp", unicast: bool = False) -> bytes:
    return wire.query(
        [wire.Question(name(f"{instance}.{stype}.local."), dns.rdatatype.SRV, 1, unicast)]
    )


def announce(
    instance: str, host: str, addresses: list[str], stype: str = "_ipp._tcp", ttl: int = 120
) -> bytes:
    full = name(f"{instance}.{stype}.local.")
    records = [
        wire.Record(
            name(f"{stype}.local."),
            dns.rdatatype.PTR,
            ttl,
            dns.rdata.from_text("IN", "PTR", full.to_text()),
        )
    ]
    extra = [
        wire.Record(
            full,
            dns.rdatatype.SRV,
            ttl,
            dns.rdata.from_text("IN", "SRV", f"0 0 631 {host}.local."),
            1,
            True,
        )
    ]
    for a in addresses:
        rdtype = "AAAA" if ":" in a else "A"
        extra.append(
            wire.Record(
                name(f"{host}.local."),
                dns.rdatatype.from_text(rdtype),
                ttl,
                dns.rdata.from_text("IN", rdtype, a),
                1,
                True,
            )
        )
    return wire.encode(wire.Packet(0, wire.FLAG_QR | wire.FLAG_AA, [], records, [], extra))


def host_sources(host: Host) -> set[str]:
    return {host.ipv4, host.ipv6} | ({host.link_local} if host.link_local else set())


# --- what crosses, per direction, IPv4 and IPv6 -------------------------------------------------


@pytest.mark.parametrize("ip_version", ["v4", "v6"])
def test_browser_sees_reflected_service_only_where_policy_allows(
    lab: Lab, world: dict[str, Any], ip_version: str
) -> None:
    trusted_browser = ZeroconfBrowser(
        lab, lab.hosts["trusted2"], ["_ipp._tcp", "_rtsp._tcp"], ip_version=ip_version
    )
    iot_browser = ZeroconfBrowser(lab, lab.hosts["iot2"], ["_ipp._tcp"], ip_version=ip_version)
    trusted_browser.wait_started()
    iot_browser.wait_started()
    ev = trusted_browser.wait_resolved(LAB_PRINTER, timeout=20)
    addresses = ev["addresses"]
    iot1 = lab.hosts["iot1"]
    wanted = iot1.ipv4 if ip_version == "v4" else iot1.ipv6
    assert wanted in addresses, ev
    assert not any(a.lower().startswith("fe80") for a in addresses), ev
    assert ev["port"] == 631 and ev["txt"].get("rp") == "ipp/print"
    # iot sees its own printer natively, never trusted's; trusted never sees iot's camera
    iot_browser.wait_resolved(LAB_PRINTER, timeout=20)
    trusted_browser.wait_resolved(TRUSTED_PRINTER, timeout=20)  # its own VLAN
    poll_until(
        lambda: (
            counter(
                lab.gw,
                "reflector_records_removed",
                from_vlan="iot",
                to_vlan="trusted",
                reason="filtered",
            )
            > 0
        ),
        10,
        message="the camera's records to be filtered",
    )
    assert not trusted_browser.seen(SECRET_CAM)
    assert not iot_browser.seen(TRUSTED_PRINTER)
    trusted_browser.stop()
    iot_browser.stop()


def test_goodbye_crosses_and_the_service_disappears(lab: Lab, world: dict[str, Any]) -> None:
    publisher = AvahiPublisher(lab, lab.hosts["iot2"], host_name="tempbox")
    publisher.add_service("Temp Cast", "_googlecast._tcp", 8009, ["fn=Temp"])
    publisher.start()
    publisher.wait_running()
    browser = ZeroconfBrowser(lab, lab.hosts["trusted2"], ["_googlecast._tcp"])
    browser.wait_started()
    browser.wait_resolved("Temp Cast", timeout=20)
    start = len(browser.events)
    publisher.stop()  # SIGTERM: avahi sends goodbyes (TTL 0)
    browser.wait_removed("Temp Cast", timeout=5, start=start)
    browser.stop()


# --- header and address rules on the wire ------------------------------------------------------


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_qu_cleared_ttl_255_never_back_into_source(
    lab: Lab, world: dict[str, Any], family: int
) -> None:
    probes: dict[str, Host] = world["probes"]
    sender = Sender(lab.hosts["trusted2"], family)
    into_iot = Sniffer(probes["iot"], family)
    back_home = Sniffer(probes["trusted"], family)
    into_guest = Sniffer(probes["guest"], family)
    try:
        marker = f"QU probe {family} {time.monotonic_ns()}"
        routers = router_sources(lab, "iot")
        t0 = time.monotonic()

        def reflected() -> Datagram | None:
            sender.send(srv_query(marker, unicast=True))
            got = into_iot.since(t0, src=routers, contains=marker.split()[0].encode())
            return got[0] if got else None

        got = poll_until(reflected, 10, interval=0.3, message="the query reflected into iot")
        packet = wire.parse(got.data)
        assert [q.unicast for q in packet.questions] == [False]
        assert str(packet.questions[0].name).startswith("QU\\032probe")
        assert got.hops == 255
        # never back into trusted (from the router), never into guest (no policy)
        home = back_home.since(t0, src=router_sources(lab, "trusted"), contains=b"QU probe")
        assert home == []
        assert into_guest.since(t0, contains=b"QU probe") == []
    finally:
        for x in (sender, into_iot, back_home, into_guest):
            x.close()


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_link_local_addresses_stay_home(lab: Lab, world: dict[str, Any], family: int) -> None:
    probes: dict[str, Host] = world["probes"]
    iot_probe = probes["iot"]
    sender = Sender(iot_probe, family)
    sniffer = Sniffer(probes["trusted"], family)
    try:
        host = f"llbox{family}"
        addresses = [
            iot_probe.ipv4,
            iot_probe.ipv6,
            "169.254.3.4",
            iot_probe.link_local or "fe80::1",
        ]
        routers = router_sources(lab, "trusted")
        t0 = time.monotonic()

        def reflected() -> Datagram | None:
            sender.send(announce(f"LL {family}", host, addresses))
            got = sniffer.since(t0, src=routers, contains=host.encode())
            return got[0] if got else None

        got = poll_until(reflected, 10, interval=0.5, message="the announcement in trusted")
        addrs = {
            str(r.rdata.address)
            for r in wire.parse(got.data).records()  # type: ignore[attr-defined]
            if r.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
        }
        assert addrs == {iot_probe.ipv4, iot_probe.ipv6}
        assert got.hops == 255
    finally:
        sender.close()
        sniffer.close()


def test_refused_and_unreachable_records_stay_home(lab: Lab, world: dict[str, Any]) -> None:
    """Reflection agrees with the record guard (issue 12): another host's goodbye for the
    printer's service is refused by the gateway and not carried into trusted. And a service
    whose host has only link-local addresses is not reflected (issue 19): trusted's clients
    could never reach it. A control announcement sent after both shows the path is open."""
    probes: dict[str, Host] = world["probes"]
    attacker = probes["iot"]
    sender = Sender(attacker)
    sniffer = Sniffer(probes["trusted"])
    try:
        routers = router_sources(lab, "trusted")
        refused0 = counter(lab.gw, "reflector_records_removed", reason="refused")
        t0 = time.monotonic()
        spoof = announce(LAB_PRINTER, "labprinter", [], ttl=0)  # PTR and SRV goodbyes
        unreachable = announce("LL Only", "llonly", ["169.254.9.9"])
        control = announce("Control Box", "controlbox", [attacker.ipv4])

        def control_arrived() -> bool:
            for data in (spoof, unreachable, control):
                sender.send(data)
            return bool(sniffer.since(t0, src=routers, contains=b"controlbox"))

        poll_until(control_arrived, 10, interval=0.5, message="the control in trusted")
        for got in sniffer.since(t0, src=routers, contains=b"Lab Printer"):
            assert all(r.ttl for r in wire.parse(got.data).records()), "a spoofed goodbye crossed"
        assert sniffer.since(t0, src=routers, contains=b"llonly") == []
        assert counter(lab.gw, "reflector_records_removed", reason="refused") >= refused0 + 2
        assert counter(lab.gw, "reflector_records_removed", reason="no_address") >= 2
    finally:
        sender.close()
        sniffer.close()


# --- one-shot (legacy unicast) queries across VLANs (issue 13, part 5) ---------------------------
#
# The one-shot querier is drill (ldnsutils): it sends to the group from an ephemeral port and
# takes the unicast reply from whichever address answers, as RFC 6762 §6.7 expects of a
# one-shot querier. dig 9.18 and kdig 3.2 cannot be used: they discard every reply whose source
# is not the address they asked, and for a question to 224.0.0.251 every reply is (checked
# against a real avahi-daemon on the same link: dig times out, kdig reports "unexpected reply
# source", drill and a plain socket get the answer).


def drill(host: Host, *args: str, ip_version: str = "v4", wait: int = 4) -> str:
    """``drill`` from ``host`` to the mDNS group; its output ("" when nothing answered within
    ``wait`` seconds: drill itself would retry for much longer)."""
    if ip_version == "v4":
        # a host with a default route has this one; the lab's hosts have no default route
        run(host.ns, "ip", "route", "replace", "224.0.0.0/4", "dev", host.ifname)
        group = ["-4", "@224.0.0.251"]
    else:
        group = ["-6", "@ff02::fb"]
    res = run(host.ns, "timeout", str(wait), "drill", *group, "-p", "5353", *args, check=False)
    return res.stdout if res.returncode == 0 else ""


def answers(out: str) -> list[list[str]]:
    """The ANSWER section of drill's output, each record split into its fields."""
    section = out.split(";; ANSWER SECTION:", 1)[-1].split(";; AUTHORITY SECTION:", 1)[0]
    return [line.split() for line in section.splitlines() if line and not line.startswith(";")]


@pytest.mark.parametrize("ip_version", ["v4", "v6"])
def test_oneshot_query_from_another_vlan_is_answered_where_policy_allows(
    lab: Lab, world: dict[str, Any], ip_version: str
) -> None:
    """drill on trusted asks the group for iot's printer: the gateway answers by unicast
    (from its store: avahi announced it), TTL at most 10 s, IPv4 to 224.0.0.251 and IPv6 to
    ff02::fb; the camera trusted may not see,
    and anything of iot asked from guest, get no answer."""
    probes: dict[str, Host] = world["probes"]
    iot1 = lab.hosts["iot1"]
    address = iot1.ipv4 if ip_version == "v4" else iot1.ipv6
    rdtype = "A" if ip_version == "v4" else "AAAA"
    asker = probes["trusted"]

    def answered() -> list[list[str]]:
        return answers(drill(asker, "labprinter.local", rdtype, ip_version=ip_version))

    got = poll_until(answered, 30, interval=0.5, message="drill's answer through the gateway")
    assert [r[3:] for r in got] == [[rdtype, address]], got  # never a link-local address
    assert all(r[0].lower() == "labprinter.local." and 0 < int(r[1]) <= 10 for r in got), got
    # (not a PTR question: trusted's own printer answers that on its link, first)
    srv = answers(drill(asker, "Lab\\032Printer._ipp._tcp.local", "SRV", ip_version=ip_version))
    assert [r[3:] for r in srv] == [["SRV", "0", "0", "631", "labprinter.local."]], srv
    # with EDNS (drill -b, as dig always asks): the reply carries an OPT within the clamp
    out = drill(asker, "-b", "4096", "labprinter.local", rdtype, ip_version=ip_version)
    assert [r[3:] for r in answers(out)] == [[rdtype, address]], out
    assert "EDNS: version 0; flags: ; udp: 1232" in out, out
    assert answers(drill(asker, "_rtsp._tcp.local", "PTR", ip_version=ip_version)) == []
    guest = probes["guest"]
    assert answers(drill(guest, "labprinter.local", rdtype, ip_version=ip_version)) == []
    assert counter(lab.gw, "reflector_packets", from_vlan="trusted", outcome="oneshot_answered")


def test_oneshot_question_the_store_cannot_answer_is_asked_and_relayed(
    lab: Lab, world: dict[str, Any]
) -> None:
    """An ANY question: the store answers by type, so the gateway asks iot and relays what
    avahi answers, by unicast, to drill on trusted (RFC 6762 §6.7)."""
    asker = world["probes"]["trusted"]
    asked = counter(lab.gw, "reflector_packets", from_vlan="trusted", outcome="oneshot_asked")

    def relayed() -> list[list[str]]:
        return answers(drill(asker, "Lab\\032Printer._ipp._tcp.local", "ANY"))

    got = poll_until(relayed, 30, interval=0.5, message="avahi's answer relayed to drill")
    types = {r[3] for r in got}
    assert "SRV" in types and types <= {"SRV", "TXT"}, got
    assert all(int(r[1]) <= 10 for r in got), got
    assert (
        counter(lab.gw, "reflector_packets", from_vlan="trusted", outcome="oneshot_asked") > asked
    )
    assert counter(lab.gw, "reflector_packets", to_vlan="trusted", outcome="oneshot_relayed") >= 1


# --- two reflectors on the same segments --------------------------------------------------------


def second_router(lab: Lab) -> tuple[Host, dict[str, str]]:
    """A namespace plugged into every VLAN bridge (like a second router), with addresses .250."""
    r2 = lab.add_host("trusted", name="r2")
    ifaces = {"trusted": "eth0"}
    for vlan in ("iot", "guest"):
        v = lab.vlans[vlan]
        peer, inner = f"r2v{v.id}", f"eth{v.id}"
        run(
            None,
            "ip",
            "-n",
            lab.gw,
            "link",
            "add",
            peer,
            "type",
            "veth",
            "peer",
            "name",
            inner,
            "netns",
            r2.ns,
        )
        run(None, "ip", "-n", lab.gw, "link", "set", peer, "master", v.bridge)
        run(None, "ip", "-n", lab.gw, "link", "set", peer, "up")
        run(None, "ip", "-n", r2.ns, "addr", "add", f"10.{v.id}.0.250/24", "dev", inner)
        run(None, "ip", "-n", r2.ns, "addr", "add", f"fd00:{v.id}::250/64", "dev", inner, "nodad")
        run(None, "ip", "-n", r2.ns, "link", "set", inner, "up")
        ifaces[vlan] = inner
    lab.wait_ipv6_ready()
    return r2, ifaces


def count_traffic(lab: Lab, seconds: float, senders: dict[str, Sender]) -> int:
    """mDNS frames on all three bridges while each sender repeats a fixed script."""
    counter = WireCounter(lab.gw, [v.bridge for v in lab.vlans.values()])
    try:
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline:  # bounded: one round a second
            round_start = time.monotonic()
            senders["iot"].send(
                announce("Loop Box", "loopbox", [lab.hosts["iot2"].ipv4], stype="_loop._tcp")
            )
            senders["trusted"].send(
                wire.query([wire.Question(name("_loop._tcp.local."), dns.rdatatype.PTR)])
            )
            senders["guest"].send(srv_query(f"Guest Loop {i}", "_loop._tcp"))
            i += 1
            poll_until(
                lambda: time.monotonic() - round_start >= 1.0,  # noqa: B023
                2.0,
                interval=0.05,
                message="the next round",
            )
        return counter.total()
    finally:
        counter.close()


def test_two_gateways_do_not_storm(lab: Lab, world: dict[str, Any]) -> None:
    seconds = 30.0
    senders = {v: Sender(lab.hosts[f"{v}2"]) for v in ("iot", "trusted", "guest")}
    try:
        base = counter(lab.gw, "reflector_packets", outcome="reflected")
        one = count_traffic(lab, seconds, senders)
        first_alone = counter(lab.gw, "reflector_packets", outcome="reflected") - base
        r2, ifaces = second_router(lab)
        cfg = reflector_config(lab)
        cfg["vlans"] = {v: {"interface": ifaces[v], "domain": f"{v}.home.arpa."} for v in lab.vlans}
        cfg["dns"] = {"listen": ["127.0.0.1:5300"], "browse_domain": "home.arpa."}
        second = GatewayProcess(lab, cfg, ns=r2.ns)
        second.start()
        second.wait_ready()  # its interfaces are joined before it answers
        base = counter(lab.gw, "reflector_packets", outcome="reflected")
        two = count_traffic(lab, seconds, senders)
        first_paired = counter(lab.gw, "reflector_packets", outcome="reflected") - base
        loops = counter(lab.gw, "reflector_loops_detected") + counter(
            r2.ns, "reflector_loops_detected"
        )
        print(
            f"\nmDNS frames on the bridges in {seconds:.0f} s: one gateway {one}, "
            f"two gateways {two} ({two / max(one, 1):.2f}x); the first gateway reflected "
            f"{first_alone:.0f} packets alone, {first_paired:.0f} beside the second; "
            f"loops detected {loops:.0f}"
        )
        # Each reflector copies each original once: twice the copies, never a storm (a storm
        # grows without bound). The first gateway's extra work is the second one's own browse
        # queries, which it reflects like any host's, not copies of copies.
        assert one <= two <= 3 * one, (one, two)
        assert first_paired <= 2 * first_alone + 20, (first_alone, first_paired)
        assert loops > 0  # and each notices the other
        assert "another mDNS reflector seems active" in world["gw"].logs() + second.logs()
        second.stop()
    finally:
        for s in senders.values():
            s.close()


# --- a flood stays within the rate limit ------------------------------------------------------


def test_flood_stays_within_the_rate_limit(lab: Lab, world: dict[str, Any]) -> None:
    probes: dict[str, Host] = world["probes"]
    sender = Sender(probes["trusted"])
    sniffer = Sniffer(probes["iot"])
    try:
        before = counter(lab.gw, "reflector_packets", from_vlan="trusted")
        routers = router_sources(lab, "iot")
        count = 2000
        t0 = time.monotonic()
        for i in range(count):  # bounded in count, and paced at ~5000/s (50x the rate limit)
            sender.send(srv_query(f"Flood {i}"))
            if i % 50 == 49:
                time.sleep(0.01)
        elapsed = time.monotonic() - t0
        poll_until(
            lambda: (
                counter(lab.gw, "reflector_packets", from_vlan="trusted") >= before + count * 0.9
            ),
            15,
            interval=0.2,
            message="the gateway to account for the flood",
        )
        reflected = counter(
            lab.gw, "reflector_packets", from_vlan="trusted", to_vlan="iot", outcome="reflected"
        )
        limited = counter(lab.gw, "reflector_packets", from_vlan="trusted", outcome="rate_limited")
        bound = BURST + RATE * (time.monotonic() - t0) + 5
        poll_until(
            lambda: len(sniffer.since(t0, src=routers, contains=b"Flood")) >= 1,
            5,
            message="some of the flood in iot",
        )
        seen = len(sniffer.since(t0, src=routers, contains=b"Flood"))
        print(
            f"\nflood: {count} queries in {elapsed:.2f} s; {seen} reached iot "
            f"(bound {bound:.0f}); {limited:.0f} rate-limited"
        )
        assert seen <= bound
        assert limited >= count - bound - 100
        assert reflected >= BURST
        # and normal service resumes once the bucket refills
        t1 = time.monotonic()

        def resumed() -> bool:
            sender.send(srv_query(f"After {time.monotonic_ns()}"))
            return bool(sniffer.since(t1, src=routers, contains=b"After"))

        poll_until(resumed, 5, interval=0.2, message="a query reflected after the flood")
    finally:
        sender.close()
        sniffer.close()


# --- interfaces coming and going (destructive: last) ---------------------------------------------


def reflects_within(
    lab: Lab,
    probes: dict[str, Host],
    frm: str,
    to: str,
    timeout: float,
    family: int = socket.AF_INET,
) -> float:
    """Seconds until a fresh query from ``frm`` shows up in ``to``, sent every 100 ms."""
    sender = Sender(lab.hosts[f"{frm}2"], family)
    sniffer = Sniffer(probes[to], family)
    try:
        t0 = time.monotonic()
        marker = f"Link {time.monotonic_ns()}"

        def arrived() -> bool:
            sender.send(srv_query(f"{marker} {time.monotonic_ns()}"))
            return bool(sniffer.since(t0, src=router_sources(lab, to), contains=marker.encode()))

        poll_until(arrived, timeout, interval=0.1, message=f"a query from {frm} in {to}")
        return time.monotonic() - t0
    finally:
        sender.close()
        sniffer.close()


def test_link_flap_rejoins_within_5s(lab: Lab, world: dict[str, Any]) -> None:
    probes: dict[str, Host] = world["probes"]
    for bridge_vlan in ("iot", "trusted"):  # the sending and the receiving side
        v = lab.vlans[bridge_vlan]
        run(None, "ip", "-n", lab.gw, "link", "set", v.bridge, "down")
        poll_until(
            lambda: vlan_up(lab, bridge_vlan) == 0.0,  # noqa: B023
            5,
            message="the gateway to see the link down",
        )
        run(None, "ip", "-n", lab.gw, "link", "set", v.bridge, "up")
        # IPv6 addresses of a downed link are gone (keep_addr_on_down=0): put ours back
        run(None, "ip", "-n", lab.gw, "addr", "replace", f"{v.ipv6}/64", "dev", v.bridge, "nodad")
        took = reflects_within(lab, probes, "trusted", "iot", 5.0)
        print(f"\n{v.bridge} flapped: reflecting again after {took:.2f} s")
    assert world["gw"].running  # send errors while down are counted, never fatal


def test_vlan_interface_deleted_and_readded(lab: Lab, world: dict[str, Any]) -> None:
    probes: dict[str, Host] = world["probes"]
    v = lab.vlans["iot"]
    gw = lab.gw
    run(None, "ip", "-n", gw, "link", "del", v.bridge)
    world["gw"].wait_for_log(rf"VLAN iot: interface {v.bridge} is gone", timeout=5)
    run(None, "ip", "-n", gw, "link", "add", v.bridge, "type", "bridge")
    run(None, "ip", "-n", gw, "link", "set", v.bridge, "type", "bridge", "mcast_snooping", "0")
    run(gw, "sysctl", "-q", "-w", f"net.ipv6.conf.{v.bridge}.accept_dad=0")
    run(None, "ip", "-n", gw, "addr", "add", f"{v.ipv4}/24", "dev", v.bridge)
    run(None, "ip", "-n", gw, "addr", "add", f"{v.ipv6}/64", "dev", v.bridge, "nodad")
    for host in lab.hosts.values():
        if host.vlan == "iot" and host.peer_ifname:
            run(None, "ip", "-n", gw, "link", "set", host.peer_ifname, "master", v.bridge)
    run(None, "ip", "-n", gw, "link", "set", v.bridge, "up")
    poll_until(lambda: link_local(gw, v.bridge), 5, message="the new bridge's link-local")
    into = reflects_within(lab, probes, "trusted", "iot", 5.0)
    six = reflects_within(lab, probes, "trusted", "iot", 5.0, socket.AF_INET6)
    print(
        f"\n{v.bridge} re-created: reflecting into it after {into:.2f} s (IPv4), "
        f"then {six:.2f} s more for IPv6"
    )
    # and out of it: an iot announcement reaches trusted again (the group is joined anew)
    sender = Sender(probes["iot"])
    sniffer = Sniffer(probes["trusted"])
    try:
        t0 = time.monotonic()

        def announced() -> bool:
            sender.send(announce(f"Readd {time.monotonic_ns()}", "readdbox", [probes["iot"].ipv4]))
            return bool(sniffer.since(t0, src=router_sources(lab, "trusted"), contains=b"readdbox"))

        poll_until(announced, 5, interval=0.2, message="an iot announcement in trusted")
    finally:
        sender.close()
        sniffer.close()
