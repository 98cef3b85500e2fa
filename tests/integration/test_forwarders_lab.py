"""Issue 13: real forwarders and clients in front of the gateway, as a router would deploy them.

Topology (tests/integration/conftest.py): VLANs trusted=10, iot=20, guest=30. The gateway in
the router namespace listens on port 53 of each VLAN's router address too (a primed resolver
and glibc use port 53). avahi-daemon on trusted1 and on iot1 both call themselves ``speaker``
(RFC 6762 §9: unique per link, not across VLANs); a policy lets trusted see iot's ``_raop``
services and hosts. The forwarders run on trusted2 (10.10.0.3), one port each, and forward to
the router's trusted address, so the gateway answers them with the trusted view:

- Unbound, ``forward-zone`` with ``use-caps-for-id: yes`` (query names in random case);
- Unbound, ``stub-zone`` with ``stub-prime: yes`` (asks the gateway for the zones' NS first,
  then uses the NS addresses it was given: the router's on trusted);
- dnsmasq, ``server=/zone/addr#port``;
- Knot Resolver, ``policy.FORWARD``.

Each is queried by ``dig`` from trusted1 and compared with the gateway's direct answers
(names compared case-insensitively). glibc (``getent ahosts``) asks the gateway on port 53; the
reflector (``reflect: true``) is on, and python-zeroconf on trusted must reach only trusted's
speaker; so must avahi-resolve on trusted and on iot (each over a private D-Bus to an
avahi-daemon of its own host).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from netlab.lab import (
    AvahiPublisher,
    GatewayProcess,
    Host,
    Lab,
    ZeroconfBrowser,
    gateway_config,
    netns_socket,
    parse_dig,
    poll_until,
    run,
)
from netlab.mdns_probe import http_get, metric_samples

pytestmark = [pytest.mark.lab, pytest.mark.timeout(240)]

FWD = "trusted2"  # the forwarders' host
PORTS = {"unbound-forward-caps": 5401, "unbound-stub-prime": 5402, "dnsmasq": 5403, "kresd": 5404}
ZONES = ["trusted.home.arpa.", "home.arpa.", "0.10.10.in-addr.arpa."]

POLICY = """\
apiVersion: mdnsgateway.io/v1alpha1
kind: ServicePolicy
metadata:
  name: iot-speakers-for-trusted
spec:
  from: [iot]
  to: [trusted]
  services: [_raop._tcp]
  hosts: true
  reflect: true
"""

# what a client of the trusted VLAN asks first and most: browse domains (RFC 6763 §11), the
# apex, services, instances, hosts, reverse names, a name that does not exist
QUESTIONS = [
    ("lb._dns-sd._udp.home.arpa.", "PTR"),
    ("b._dns-sd._udp.home.arpa.", "PTR"),
    ("db._dns-sd._udp.0.10.10.in-addr.arpa.", "PTR"),
    ("trusted.home.arpa.", "SOA"),
    ("trusted.home.arpa.", "NS"),
    ("_raop._tcp.trusted.home.arpa.", "PTR"),
    ("Kitchen._raop._tcp.trusted.home.arpa.", "SRV"),
    ("speaker.trusted.home.arpa.", "A"),
    ("speaker.trusted.home.arpa.", "AAAA"),
    ("nothere.trusted.home.arpa.", "A"),
]


def _unbound_conf(workdir: Path, host_ip: str, port: int, router: str, stub: bool) -> str:
    zones = "".join(
        f"stub-zone:\n  name: {z!r}\n  stub-addr: {router}@53\n  stub-prime: yes\n"
        if stub
        else f"forward-zone:\n  name: {z!r}\n  forward-addr: {router}@53\n"
        for z in ZONES
    )
    return (
        "server:\n"
        f"  interface: {host_ip}@{port}\n"
        f'  directory: "{workdir}"\n  chroot: ""\n  username: ""\n'
        f'  pidfile: "{workdir}/unbound-{port}.pid"\n  use-syslog: no\n  do-daemonize: no\n'
        '  module-config: "iterator"\n  access-control: 10.0.0.0/8 allow\n  do-ip6: no\n'
        # RFC 6761 default local zones: served here by the gateway instead
        '  local-zone: "home.arpa." nodefault\n  local-zone: "10.in-addr.arpa." nodefault\n'
        f"  use-caps-for-id: {'no' if stub else 'yes'}\n"
        "remote-control:\n  control-enable: no\n" + zones
    )


def _kresd_conf(workdir: Path, host_ip: str, port: int, router: str) -> str:
    names = ", ".join(f"'{z}'" for z in ZONES)
    return (
        f"net.listen('{host_ip}', {port}, {{ kind = 'dns' }})\n"
        "trust_anchors.remove('.')\n"
        f"cache.open(10 * MB, 'lmdb://{workdir}/kresd-cache')\n"
        f"policy.add(policy.suffix(policy.FORWARD({{'{router}@53'}}),\n"
        f"  policy.todnames({{{names}}})))\n"
    )


def _log(work: Path, name: str) -> dict[str, object]:
    """stdout and stderr of a daemon to ``<work>/<name>.log`` (read it when a test fails)."""
    return {"stdout": (work / f"{name}.log").open("ab"), "stderr": subprocess.STDOUT}


def _start_forwarders(lab: Lab) -> None:
    host = lab.hosts[FWD]
    router = host.router_ipv4
    work = lab.workdir / "forwarders"
    work.mkdir(exist_ok=True)
    for name, stub in (("unbound-forward-caps", False), ("unbound-stub-prime", True)):
        conf = work / f"{name}.conf"
        conf.write_text(_unbound_conf(work, host.ipv4, PORTS[name], router, stub))
        run(None, "unbound-checkconf", str(conf))
        lab.popen(host.ns, "unbound", "-d", "-c", str(conf), name=name, **_log(work, name))
    lab.popen(
        host.ns,
        "dnsmasq", "-k", "-C", "/dev/null", "--no-resolv", "--no-hosts", "-u", "root",
        "--pid-file=", f"--listen-address={host.ipv4}", "--bind-interfaces",
        "-p", str(PORTS["dnsmasq"]), *(f"--server=/{z.rstrip('.')}/{router}#53" for z in ZONES),
        name="dnsmasq", **_log(work, "dnsmasq"),
    )  # fmt: skip
    kconf = work / "kresd.conf"
    kconf.write_text(_kresd_conf(work, host.ipv4, PORTS["kresd"], router))
    rundir = work / "kresd-run"
    rundir.mkdir(exist_ok=True)
    lab.popen(
        host.ns, "kresd", "-n", "-c", str(kconf), str(rundir), name="kresd", **_log(work, "kresd")
    )


@pytest.fixture(scope="module")
def world(lab: Lab) -> Iterator[dict[str, object]]:
    for tool in ("unbound", "dnsmasq", "kresd"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: make deps-test installs the lab's packages")
    kitchen = AvahiPublisher(lab, lab.hosts["trusted1"], host_name="speaker")
    kitchen.add_service("Kitchen", "_raop._tcp", 7000, ["am=AudioAccessory"])
    lounge = AvahiPublisher(lab, lab.hosts["iot1"], host_name="speaker")
    lounge.add_service("Lounge", "_raop._tcp", 7000, ["am=AudioAccessory"])
    kitchen.start()
    lounge.start()
    kitchen.wait_running()
    lounge.wait_running()
    policies = lab.workdir / "policies-forwarders"
    policies.mkdir(exist_ok=True)
    (policies / "speakers.yaml").write_text(POLICY)
    base = gateway_config(lab)
    listen = base["dns"]["listen"] + [
        a for v in lab.vlans.values() for a in (f"{v.ipv4}:53", f"[{v.ipv6}]:53")
    ]
    cfg = gateway_config(
        lab, dns={"listen": listen}, policies=str(policies), reflector={"enabled": True}
    )
    gw = GatewayProcess(lab, cfg)
    gw.start()
    gw.wait_ready()
    _start_forwarders(lab)
    host = lab.hosts[FWD]
    for port in PORTS.values():  # each forwarder answers (anything) before the tests ask
        poll_until(
            lambda p=port: (
                parse_dig(
                    lab.dig(
                        lab.hosts["trusted1"].ns, f"@{host.ipv4}", "-p", str(p), "home.arpa.", "SOA"
                    )
                ).status
                is not None
            ),
            timeout=15,
            message=f"forwarder on port {port}",
        )
    # the gateway has learnt both speakers (the trusted view sees both, its own first)
    poll_until(
        lambda: _records(direct(lab, "speaker.iot.home.arpa.", "A")[1]),
        timeout=15,
        message="iot's speaker in the gateway",
    )
    poll_until(
        lambda: _records(direct(lab, "Kitchen._raop._tcp.trusted.home.arpa.", "SRV")[1]),
        timeout=15,
        message="trusted's speaker service in the gateway",
    )
    yield {"gw": gw}
    gw.stop()
    kitchen.stop()
    lounge.stop()


def _records(section: list) -> set[tuple[str, str, str]]:  # type: ignore[type-arg]
    return {(r.name.lower(), r.rdtype, r.rdata.lower()) for r in section}


def _dig(lab: Lab, server: str, port: int, name: str, qtype: str) -> tuple[str | None, list]:  # type: ignore[type-arg]
    res = parse_dig(lab.dig(lab.hosts["trusted1"].ns, f"@{server}", "-p", str(port), name, qtype))
    return res.status, res.answer


def direct(lab: Lab, name: str, qtype: str) -> tuple[str | None, list]:  # type: ignore[type-arg]
    return _dig(lab, lab.vlans["trusted"].ipv4, 53, name, qtype)


@pytest.mark.parametrize("forwarder", list(PORTS))
def test_forwarder_answers_as_the_gateway_does(
    lab: Lab, world: dict[str, object], forwarder: str
) -> None:
    """Every question, through each forwarder, gets the gateway's direct answer: rcode and
    records (TTLs aside; names case-insensitively). Before issue 13, Unbound's stub-prime
    SERVFAILed everything (no NS), and the 0x20 resolvers got NXDOMAIN for browse domains."""
    host = lab.hosts[FWD]
    for name, qtype in QUESTIONS:
        want_status, want = direct(lab, name, qtype)
        got_status, got = _dig(lab, host.ipv4, PORTS[forwarder], name, qtype)
        assert (got_status, _records(got)) == (want_status, _records(want)), (name, qtype)
        if (name, qtype) != ("nothere.trusted.home.arpa.", "A"):
            assert want_status == "NOERROR", (name, qtype)
    # and in random case, as Knot Resolver and Unbound (use-caps-for-id) ask upstream
    status, answer = _dig(lab, host.ipv4, PORTS[forwarder], "Lb._DNS-sd._UDP.HOME.arpa.", "PTR")
    assert status == "NOERROR" and {r.rdata.lower() for r in answer} == {"trusted.home.arpa."}


def test_apex_ns_names_the_router_on_the_asking_vlan(lab: Lab, world: dict[str, object]) -> None:
    for vlan in ("trusted", "iot"):
        v = lab.vlans[vlan]
        host = lab.hosts[f"{vlan}1"]
        res = parse_dig(lab.dig(host.ns, f"@{v.ipv4}", "-p", "53", f"{vlan}.home.arpa.", "NS"))
        ns = f"ns.{vlan}.home.arpa."
        assert _records(res.answer) == {(f"{vlan}.home.arpa.", "NS", ns)}
        assert _records(res.additional) >= {(ns, "A", v.ipv4), (ns, "AAAA", v.ipv6)}
        soa = parse_dig(lab.dig(host.ns, f"@{v.ipv4}", "-p", "53", f"{vlan}.home.arpa.", "SOA"))
        assert soa.answer[0].rdata.split()[0] == ns


def test_getent_from_a_vlan_gets_only_connectable_addresses(
    lab: Lab, world: dict[str, object]
) -> None:
    """glibc's resolver with the gateway in resolv.conf (port 53): the device's link-local
    fe80:: address (avahi announces it) is not among the answers, and each address returned
    can be connected to (a unicast answer has no interface: fe80:: would fail with EINVAL)."""
    host = lab.hosts["trusted2"]
    etc = Path("/etc/netns") / host.ns
    etc.mkdir(parents=True, exist_ok=True)
    try:
        (etc / "resolv.conf").write_text(f"nameserver {host.router_ipv4}\noptions attempts:2\n")
        out = run(host.ns, "getent", "ahosts", "speaker.trusted.home.arpa").stdout
        addrs = {line.split()[0] for line in out.splitlines() if line.strip()}
        assert addrs == {lab.hosts["trusted1"].ipv4, lab.hosts["trusted1"].ipv6}, out
        for addr in addrs:
            fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
            with netns_socket(host.ns, fam, socket.SOCK_DGRAM) as s:
                s.connect((addr, 9))  # raises for an address without a route or interface
        # the iot speaker of the same name stays reachable under its own VLAN's domain
        out = run(host.ns, "getent", "ahosts", "speaker.iot.home.arpa").stdout
        iot1 = lab.hosts["iot1"]
        assert {line.split()[0] for line in out.splitlines()} == {iot1.ipv4, iot1.ipv6}, out
    finally:
        shutil.rmtree(etc, ignore_errors=True)


def test_same_host_name_on_two_vlans_one_device_per_view(
    lab: Lab, world: dict[str, object]
) -> None:
    """``speaker.local`` on trusted (10.10.0.2) and on iot (10.20.0.2), trusted allowed to see
    iot's hosts: trusted's view answers its own speaker only, never both in one RRset; the
    iot view answers iot's."""
    trusted_v = lab.vlans["trusted"]
    iot_v = lab.vlans["iot"]
    res = poll_until(
        lambda: (
            (
                r := parse_dig(
                    lab.dig(
                        lab.hosts["trusted1"].ns,
                        f"@{trusted_v.ipv4}",
                        "-p",
                        "53",
                        "speaker.local.",
                        "A",
                    )
                )
            ).answer
            and r
        ),
        timeout=5,
        message="speaker.local A from the trusted view",
    )
    assert _records(res.answer) == {("speaker.local.", "A", lab.hosts["trusted1"].ipv4)}
    res = parse_dig(
        lab.dig(lab.hosts["iot2"].ns, f"@{iot_v.ipv4}", "-p", "53", "speaker.local.", "A")
    )
    assert _records(res.answer) == {("speaker.local.", "A", lab.hosts["iot1"].ipv4)}


def _name_conflicts(lab: Lab) -> float:
    text = http_get(lab.gw, "127.0.0.1", 9353, "/metrics")
    return sum(
        value
        for labels, value in metric_samples(text, "mdns_gateway_reflector_records_removed_total")
        if labels.get("reason") == "name_conflict" and labels.get("to_vlan") == "trusted"
    )


def test_reflector_never_passes_a_service_whose_host_name_is_taken(
    lab: Lab, world: dict[str, object]
) -> None:
    """With reflection (reflect: true) python-zeroconf on trusted resolves trusted's Kitchen
    speaker at trusted's address, and never sees iot's Lounge, whose SRV target speaker.local
    is held by a different device on trusted: the gateway counts the conflict instead."""
    browser = ZeroconfBrowser(lab, lab.hosts["trusted2"], ["_raop._tcp.local."])
    browser.wait_started()
    ev = browser.wait_resolved("Kitchen", timeout=20)
    trusted1 = lab.hosts["trusted1"]
    assert set(ev["addresses"]) == {trusted1.ipv4, trusted1.ipv6}, ev  # never iot's
    poll_until(lambda: _name_conflicts(lab) > 0, timeout=20, message="a counted name conflict")
    assert not browser.seen("Lounge"), browser.events
    browser.stop()


# avahi-resolve talks to its host's avahi-daemon over D-Bus: each client host gets a private
# system bus (a dbus-daemon on a socket of its own, everything allowed: root is the only user
# in the lab) and an avahi-daemon with D-Bus on; both programs find the bus through
# DBUS_SYSTEM_BUS_ADDRESS, as they would find /run/dbus/system_bus_socket on a real machine.
_BUS_CONFIG = """\
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={path}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""


def _avahi_client(lab: Lab, host: Host, monkeypatch: pytest.MonkeyPatch) -> str:
    """Start a private system bus and an avahi-daemon using it on ``host``; the bus address."""
    workdir = Path(lab.workdir) / f"dbus-{host.name}"
    workdir.mkdir(exist_ok=True)
    sock = workdir / "system_bus_socket"
    config = workdir / "system.conf"
    config.write_text(_BUS_CONFIG.format(path=sock))
    lab.popen(
        host.ns,
        "dbus-daemon",
        f"--config-file={config}",
        "--nofork",
        "--nopidfile",
        name=f"dbus-daemon@{host.name}",
    )
    poll_until(sock.exists, timeout=10, message=f"the D-Bus socket on {host.name}")
    address = f"unix:path={sock}"
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)  # the avahi-daemon started next
    daemon = AvahiPublisher(
        lab, host, host_name=f"client-{host.name}", extra_config={"server": {"enable-dbus": "yes"}}
    )
    daemon.start()
    daemon.wait_running()
    return address


def test_avahi_resolve_on_each_vlan_reaches_its_own_speaker(
    lab: Lab, world: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """avahi-resolve (avahi's own client, over D-Bus) on trusted and on iot resolves
    ``speaker.local`` to the speaker of its own VLAN only, IPv4 and IPv6, with the reflector on:
    the other VLAN's same-named device never answers into it."""
    for vlan in ("trusted", "iot"):
        client = lab.hosts[f"{vlan}2"]
        speaker = lab.hosts[f"{vlan}1"]
        bus = _avahi_client(lab, client, monkeypatch)
        # avahi answers with whichever address record comes first: for IPv6 the speaker's
        # global or its link-local one (both are that device; the other speaker's are not)
        ipv6 = {speaker.ipv6, speaker.link_local}
        for flag, want in (("-4", {speaker.ipv4}), ("-6", ipv6)):
            res = run(
                client.ns,
                "env",
                f"DBUS_SYSTEM_BUS_ADDRESS={bus}",
                "avahi-resolve",
                "-n",
                flag,
                "speaker.local",
                check=False,
            )
            assert res.returncode == 0, res.stderr
            name, address = res.stdout.split()
            assert name == "speaker.local" and address in want, (vlan, flag, res.stdout)
