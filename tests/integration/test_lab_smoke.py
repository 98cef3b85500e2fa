"""The VLAN lab itself works: topology, multicast inside a VLAN only, real avahi publishers,
python-zeroconf helpers, DNS helpers and the gateway process plumbing (with a stand-in)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import pytest

from netlab.coredns_forward import ForwardClient
from netlab.lab import (
    NETNS_RUN_DIR,
    AvahiPublisher,
    GatewayProcess,
    Lab,
    ZeroconfBrowser,
    ZeroconfPublisher,
    dig,
    gateway_config,
    lab_available,
    netns_socket,
    parse_dig,
    parse_dig_short,
    poll_until,
    query,
    run,
)

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]

SMOKE_TYPE = "_mgsmoke._tcp"
# How long a browser that saw its own VLAN's answers watches for an answer that must not come.
# Answers to one browse query arrive within ~120 ms of each other (RFC 6762 5.2 delays).
ABSENCE_WINDOW = 1.5


def _start_avahi(
    lab: Lab, host: str, *services: tuple[str, int, list[str]], host_name: str | None = None
) -> AvahiPublisher:
    pub = AvahiPublisher(lab, lab.hosts[host], host_name=host_name)
    for name, port, txt in services:
        pub.add_service(name, SMOKE_TYPE, port, txt)
    pub.start()
    pub.wait_running()
    return pub


# -- topology ----------------------------------------------------------------------------------


def test_topology(lab: Lab) -> None:
    assert len(lab.hosts) == 6
    assert all(len(ns) <= 15 for ns in lab.namespaces)
    links = json.loads(run(None, "ip", "-n", lab.gw, "-d", "-j", "link", "show").stdout)
    by_name = {link["ifname"]: link for link in links}
    for vlan in lab.vlans.values():
        br = by_name[vlan.bridge]
        assert br["linkinfo"]["info_data"]["mcast_snooping"] == 0
        assert br["operstate"] == "UP"
        for host in vlan.hosts:
            assert by_name[host.peer_ifname]["master"] == vlan.bridge
    for host in lab.hosts.values():
        assert (NETNS_RUN_DIR / host.ns).exists()
        info = json.loads(run(None, "ip", "-n", host.ns, "-j", "addr", "show", "eth0").stdout)[0]
        addrs = {a["local"]: a for a in info["addr_info"]}
        assert host.ipv4 in addrs and host.ipv6 in addrs
        assert host.link_local is not None and host.link_local.startswith("fe80:")
        assert not any(a.get("tentative") for a in addrs.values())
    assert lab.hosts["trusted1"].ipv4 == "10.10.0.2"
    assert lab.hosts["guest2"].ipv6 == "fd00:30::3"


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_unicast_within_a_vlan_only(lab: Lab, family: int) -> None:
    t1, t2, iot1 = lab.hosts["trusted1"], lab.hosts["trusted2"], lab.hosts["iot1"]
    dst = t2.ipv4 if family == socket.AF_INET else t2.ipv6
    with netns_socket(t2.ns, family) as rx, netns_socket(t1.ns, family) as tx:
        rx.bind((dst, 0))
        port = rx.getsockname()[1]
        rx.settimeout(5)
        tx.sendto(b"hello", (dst, port))
        data, peer = rx.recvfrom(100)
    assert data == b"hello"
    assert peer[0] == (t1.ipv4 if family == socket.AF_INET else t1.ipv6)
    # another VLAN has no route to it (and the router does not forward)
    with netns_socket(iot1.ns, family) as tx, pytest.raises(OSError):
        tx.sendto(b"x", (dst, port))


# -- multicast DNS-SD between hosts ------------------------------------------------------------


@pytest.mark.parametrize("ip_version", ["v4", "v6"])
def test_same_vlan_sees_avahi_service(lab: Lab, ip_version: str) -> None:
    name = "Smoke Printer ü & <co> 1.0"
    pub = _start_avahi(lab, "trusted1", (name, 631, ["rp=ipp/print", "note=a&b<c>"]))
    browser = ZeroconfBrowser(lab, lab.hosts["trusted2"], [SMOKE_TYPE], ip_version=ip_version)
    ev = browser.wait_resolved(name)
    assert ev["port"] == 631
    assert ev["txt"] == {"rp": "ipp/print", "note": "a&b<c>"}
    assert ev["server"] == f"{pub.host_name}.local."
    if ip_version == "v4":
        assert "10.10.0.2" in ev["addresses"]
    else:
        assert "fd00:10::2" in ev["addresses"]
        assert all(":" in a for a in ev["addresses"]), "only IPv6 multicast was used"


def test_other_vlan_does_not_see_it(lab: Lab) -> None:
    _start_avahi(lab, "trusted1", ("Trusted Only", 80, []))
    _start_avahi(lab, "iot2", ("IoT Control", 81, []))
    iot_browser = ZeroconfBrowser(lab, lab.hosts["iot1"], [SMOKE_TYPE], ip_version="all")
    trusted_browser = ZeroconfBrowser(lab, lab.hosts["trusted2"], [SMOKE_TYPE], ip_version="all")
    # Both browsers work and both publishers answer...
    iot_browser.wait_resolved("IoT Control")
    trusted_browser.wait_resolved("Trusted Only")
    # ...yet neither VLAN's answers reach the other.
    with pytest.raises(TimeoutError):
        iot_browser.wait_added("Trusted Only", timeout=ABSENCE_WINDOW)
    assert not trusted_browser.seen("IoT Control")
    assert not iot_browser.seen("Trusted Only")


def test_avahi_stop_sends_goodbye(lab: Lab) -> None:
    pub = _start_avahi(lab, "guest1", ("Leaving Soon", 8080, ["a=1"]))
    browser = ZeroconfBrowser(lab, lab.hosts["guest2"], [SMOKE_TYPE], ip_version="all")
    browser.wait_resolved("Leaving Soon")
    assert "Leaving Soon._mgsmoke._tcp.local." in browser.present()
    assert pub.stop() == 0
    # PTR TTL is 4500 s and SRV 120 s: removal within seconds can only come from a goodbye.
    browser.wait_removed("Leaving Soon", timeout=5)
    assert "Leaving Soon._mgsmoke._tcp.local." not in browser.present()
    assert "Got SIGTERM" in pub.logs()


def test_avahi_reload_adds_and_removes(lab: Lab) -> None:
    pub = _start_avahi(lab, "guest1", ("First", 1, []))
    browser = ZeroconfBrowser(lab, lab.hosts["guest2"], [SMOKE_TYPE], ip_version="v4")
    browser.wait_resolved("First")
    pub.add_service("Second.with.dots", SMOKE_TYPE, 2, ["x=y"], subtypes=["_sub1"])
    pub.reload()
    pub.wait_running()
    ev = browser.wait_resolved("Second.with.dots")
    assert ev["port"] == 2
    pub.remove_service("First")
    pub.reload()
    browser.wait_removed("First", timeout=5)
    assert browser.present() == {"Second.with.dots._mgsmoke._tcp.local."}


def test_avahi_conflicts_are_renamed_and_reported(lab: Lab) -> None:
    first = _start_avahi(lab, "iot1", ("Same Name", 10, []), host_name="lamp")
    second = _start_avahi(lab, "iot2", ("Same Name", 11, []), host_name="lamp")
    assert first.host_name == "lamp"
    assert first.service_name("Same Name") == "Same Name"
    assert second.host_name == "lamp-2"
    assert second.service_name("Same Name") == "Same Name #2"
    assert second.renames() == [("Same Name", "Same Name #2")]
    browser = ZeroconfBrowser(lab, lab.hosts["guest1"], [SMOKE_TYPE])
    browser2 = ZeroconfBrowser(lab, lab.hosts["iot1"], [SMOKE_TYPE])
    assert browser2.wait_resolved("Same Name #2")["port"] == 11
    assert browser2.wait_resolved("Same Name")["port"] == 10
    assert not browser.seen("Same Name")


def test_zeroconf_publisher_register_update_unregister(lab: Lab) -> None:
    pub = ZeroconfPublisher(
        lab,
        lab.hosts["iot1"],
        [{"name": "ZC Lamp", "type": SMOKE_TYPE, "port": 5000, "txt": {"on": "1"}}],
        host_name="zclamp",
    )
    assert pub.wait_ready() == ["ZC Lamp._mgsmoke._tcp.local."]
    browser = ZeroconfBrowser(lab, lab.hosts["iot2"], [SMOKE_TYPE], ip_version="all")
    ev = browser.wait_resolved("ZC Lamp")
    assert ev["server"] == "zclamp.local."
    assert set(ev["addresses"]) >= {"10.20.0.2", "fd00:20::2"}
    assert ev["txt"] == {"on": "1"}
    mark = len(browser.events)
    pub.update({"name": "ZC Lamp", "type": SMOKE_TYPE, "port": 5000, "txt": {"on": "0"}})
    ev = browser.wait_event(
        lambda e: e.get("event") == "resolved" and e.get("txt") == {"on": "0"}, 10, mark
    )
    pub.unregister("ZC Lamp")
    browser.wait_removed("ZC Lamp", timeout=5)
    assert pub.stop() == 0


# -- DNS helpers -------------------------------------------------------------------------------


def test_dns_helpers_against_avahi_unicast(lab: Lab) -> None:
    """avahi answers legacy unicast queries on port 5353; query and dig run in guest2."""
    _start_avahi(lab, "guest1", ("Unicast", 9, []), host_name="guestbox")
    ns = lab.hosts["guest2"].ns
    reply = query(ns, "10.30.0.2", 5353, "guestbox.local.", "A")
    assert reply.rcode() == dns.rcode.NOERROR
    assert [rd.address for rrset in reply.answer for rd in rrset] == ["10.30.0.2"]
    reply6 = query(ns, "fd00:30::2", 5353, "guestbox.local.", "AAAA")
    assert "fd00:30::2" in [rd.address for rrset in reply6.answer for rd in rrset]
    assert parse_dig_short(
        dig(ns, "-p", "5353", "@10.30.0.2", "guestbox.local", "A", "+short")
    ) == ["10.30.0.2"]
    full = parse_dig(dig(ns, "-p", "5353", "@10.30.0.2", "guestbox.local", "A"))
    assert full.status == "NOERROR"
    assert [(r.name, r.rdtype, r.rdata) for r in full.answer] == [
        ("guestbox.local.", "A", "10.30.0.2")
    ]
    # nothing listens on the router yet: dig reports a timeout or refusal, no answer
    silent = parse_dig(dig(ns, "-p", "5300", "@10.30.0.1", "x.home.arpa", "A", time_s=1, tries=1))
    assert silent.status is None


# -- gateway process plumbing ------------------------------------------------------------------

STAND_IN = r'''
"""Stand-in for the gateway: answers every query on each configured listener with REFUSED."""
import signal, socket, sys, threading
import dns.message, dns.rcode, yaml

cfg = yaml.safe_load(open(sys.argv[1]))
addrs = list(cfg["dns"]["listen"])
for listeners in cfg["dns"]["view_listeners"].values():
    addrs += listeners
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: stop.set())

def serve(text):
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    for attempt in range(100):  # a previous test's process may still be letting go of it
        try:
            s.bind((host, int(port)))
            break
        except OSError as exc:
            if attempt == 99:
                print("stand-in cannot bind", text, exc, file=sys.stderr, flush=True)
                raise
            stop.wait(0.05)
    s.settimeout(0.1)
    print("stand-in listening", text, file=sys.stderr, flush=True)
    while not stop.is_set():
        try:
            data, peer = s.recvfrom(65535)
        except socket.timeout:
            continue
        q = dns.message.from_wire(data)
        r = dns.message.make_response(q)
        r.set_rcode(dns.rcode.REFUSED)
        s.sendto(r.to_wire(), peer)

threads = [threading.Thread(target=serve, args=(a,)) for a in addrs]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("stand-in stopped", file=sys.stderr, flush=True)
'''


def test_gateway_config_shape(lab: Lab) -> None:
    cfg = gateway_config(lab, dns={"browse_domain": "lab.arpa."}, extra={"k": 1})
    assert cfg["vlans"]["iot"] == {"interface": "br20", "domain": "iot.home.arpa."}
    assert cfg["dns"]["view_listeners"] == {
        "trusted": ["127.0.0.1:5310"],
        "iot": ["127.0.0.1:5320"],
        "guest": ["127.0.0.1:5330"],
    }
    assert cfg["dns"]["listen"][:3] == ["127.0.0.1:5300", "10.10.0.1:5300", "[fd00:10::1]:5300"]
    assert len(cfg["dns"]["listen"]) == 7
    assert cfg["dns"]["browse_domain"] == "lab.arpa."
    assert cfg["extra"] == {"k": 1}


def test_gateway_process_plumbing_with_a_stand_in(lab: Lab, tmp_path: Path) -> None:
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    gw = GatewayProcess(lab, gateway_config(lab), command=[sys.executable, str(script), "{config}"])
    gw.start()
    gw.wait_ready("127.0.0.1", 5300, timeout=15, http=False)  # the stand-in has no HTTP
    for addr in ("10.20.0.1", "fd00:20::1"):
        gw.wait_ready(addr, 5300, timeout=5, http=False)
    gw.wait_for_log(r"stand-in listening 127\.0\.0\.1:5330")
    # a host queries its router address, over IPv4 and IPv6
    iot1 = lab.hosts["iot1"].ns
    for server in ("10.20.0.1", "fd00:20::1"):
        reply = query(iot1, server, 5300, "lamp.iot.home.arpa.", "A")
        assert reply.rcode() == dns.rcode.REFUSED
        assert str(reply.question[0].name) == "lamp.iot.home.arpa."
    # the CoreDNS emulation reaches a per-view port inside the router namespace
    fc = ForwardClient("127.0.0.1", 5320, socket_factory=lab.socket_factory(lab.gw))
    assert fc.health_check()
    reply = fc.exchange(dns.message.make_query("lamp.iot.home.arpa.", "AAAA"))
    assert reply.rcode() == dns.rcode.REFUSED and reply.flags & dns.flags.QR
    fc.close()
    assert gw.stop() == 0
    assert "stand-in stopped" in gw.logs()


def test_wait_ready_fails_fast_when_the_process_dies(lab: Lab) -> None:
    gw = GatewayProcess(
        lab,
        gateway_config(lab),
        command=[sys.executable, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"],
    )
    gw.start()
    with pytest.raises(RuntimeError, match="boom"):
        gw.wait_ready(timeout=15)
    assert gw.stop() == 3


def test_close_removes_namespaces_and_processes() -> None:
    ok, reason = lab_available()
    if not ok:
        pytest.skip(reason)
    with Lab({"spare": 40}) as spare:
        host = spare.add_host("spare")
        proc = spare.popen(host.ns, "sleep", "60")
        stray = subprocess.Popen(
            ["ip", "netns", "exec", host.ns, "sleep", "60"], start_new_session=True
        )
        # until `ip netns exec` has entered the namespace, `ip netns pids` cannot list it and
        # the lab could not find it to kill (under load that window lasted past close())
        poll_until(
            lambda: str(stray.pid) in run(None, "ip", "netns", "pids", host.ns).stdout.split(),
            10,
            message="the stray process to enter its namespace",
        )
        namespaces = spare.namespaces
        assert all((NETNS_RUN_DIR / ns).exists() for ns in namespaces)
    assert proc.poll() is not None
    assert stray.wait(5) != 0, "processes left inside the namespaces are killed"
    assert not any((NETNS_RUN_DIR / ns).exists() for ns in namespaces)
