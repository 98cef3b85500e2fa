"""DHCP lease host names (issue 19) in the namespace lab: real DHCP servers, real clients.

Topology (on top of the conftest lab: VLANs trusted=10, iot=20, guest=30):

* the router namespace runs dnsmasq as the DHCP server of trusted (br10, DHCP only: port=0);
  Kea (kea-dhcp4, memfile, 8 s leases) serves iot from a host of its own there, ``dkea``
  (dnsmasq holds port 67 on the router's wildcard address, which Kea's fallback socket also
  binds: one DHCP server per namespace); the gateway in the router namespace has
  ``dhcp.leases`` on both lease files plus a hand-written dnsmasq-format file holding a
  malformed line and hostile names, and ``publish_mdns: true``;
* DHCP clients are busybox's ``udhcpc`` in fresh host namespaces, each sending a host name
  (option 12), with a script that only adds the leased address to eth0;
* DHCPv6: kea-dhcp6 (memfile, 8 s leases) beside kea-dhcp4 on ``dkea`` serves iot's
  fd00:20::/64, and ISC ``dhclient -6`` in a host namespace asks for an address (IA_NA)
  sending its name in a Client FQDN option (RFC 4704), which Kea keeps in its v6 lease file.

Each of lease, renew, release and expiry changes what ``dig`` answers: a lease puts
``<host>.<VLAN domain>`` A and its reverse PTR in DNS; udhcpc renews its Kea lease at half
its life, so the name outlives the first lease's end; SIGUSR2 (udhcpc's release) removes the
dnsmasq name; a client killed without releasing loses its Kea name when the lease ends.
The hostile names (300 characters, control bytes, a dot, another device's name, ``ns``) never
answer and are counted. With ``publish_mdns`` the lease name answers a real mDNS query.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.rdatatype
import pytest

from netlab.lab import (
    GatewayProcess,
    Host,
    Lab,
    gateway_config,
    netns_socket,
    parse_dig_short,
    poll_until,
    popen,
    run,
    terminate,
)

pytestmark = [pytest.mark.lab, pytest.mark.timeout(240)]

KEA_LIFETIME = 8  # s; udhcpc renews at half of it
CLIENT_SCRIPT = """\
#!/bin/sh
# udhcpc's script: only the leased address on eth0 (no routes, no resolv.conf)
case "$1" in
  bound|renew) ip addr replace "$ip/24" dev "$interface" ;;
esac
exit 0
"""
HOSTILE = (
    "1 garbage\n"
    "0 52:54:00:00:99:01 10.10.0.201 " + "x" * 300 + " *\n"
    "0 52:54:00:00:99:02 10.10.0.202 bad\x07name *\n"
    "0 52:54:00:00:99:03 10.10.0.203 laptop.evil.example *\n"
    "0 52:54:00:00:99:04 10.10.0.204 ns *\n"
    "0 52:54:00:00:99:05 10.10.0.205 static-box *\n"
)


DHCLIENT6_SCRIPT = """\
#!/bin/sh
# dhclient -6's script: only the leased address on the interface (no routes, no resolv.conf);
# each address bound or released is written to the state file (dhclient passes the script no
# environment of its own)
case "$reason" in
  BOUND6|RENEW6|REBIND6|REBOOT6)
    ip -6 addr replace "$new_ip6_address/128" dev "$interface" nodad
    echo "bound6 $new_ip6_address" >> "{state}" ;;
  RELEASE6|EXPIRE6|STOP6)
    echo "released6 $old_ip6_address" >> "{state}" ;;
esac
exit 0
"""


def dig(lab: Lab, host: Host, *args: str) -> list[str]:
    return parse_dig_short(lab.dig(host.ns, f"@{host.router_ipv4}", "-p", "5300", "+short", *args))


def wait_answer(lab: Lab, host: Host, name: str, want: list[str], gw: GatewayProcess) -> None:
    poll_until(
        lambda: dig(lab, host, name, "A") == want,
        10,
        message=lambda: f"{name} A {want}:\n{gw.logs()[-2000:]}",
    )


def metrics(lab: Lab) -> str:
    code = (
        "import urllib.request as u;"
        "print(u.urlopen('http://127.0.0.1:9353/metrics', timeout=5).read().decode())"
    )
    return run(lab.gw, sys.executable, "-c", code).stdout


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    prefix = f"{name}{{{want}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    raise AssertionError(f"{prefix!r} not in the metrics:\n{text[-3000:]}")


class Udhcpc:
    """busybox udhcpc in a host namespace, in the foreground, sending ``hostname``."""

    runs = 0

    def __init__(self, lab: Lab, host: Host, hostname: str, script: Path) -> None:
        self.lab = lab
        self.host = host
        self.hostname = hostname
        Udhcpc.runs += 1  # a log of its own per run: wait_bound reads only this run's lines
        self.log = Path(lab.workdir) / f"udhcpc-{host.name}-{Udhcpc.runs}.log"
        logf = self.log.open("ab")
        try:
            # Not Lab.popen's per-test stop: the fixture's clients live across tests
            self.proc: subprocess.Popen[Any] = popen(
                host.ns,
                "busybox", "udhcpc", "-f", "-i", host.ifname, "-s", str(script),
                "-x", f"hostname:{hostname}", "-t", "20", "-T", "1",
                stdout=logf, stderr=subprocess.STDOUT,
            )  # fmt: skip
        finally:
            logf.close()

    def wait_bound(self, timeout: float = 20.0, server_log: Path | None = None) -> str:
        """The leased address, once udhcpc reports it."""

        def bound() -> str | None:
            for line in self.log.read_text(errors="replace").splitlines():
                if "lease of " in line and " obtained" in line:
                    return line.split("lease of ", 1)[1].split()[0]
            return None

        def why() -> str:
            server = server_log.read_text(errors="replace")[-3000:] if server_log else ""
            return f"{self.log.read_text()[-1000:]}\nserver:\n{server}"

        return str(poll_until(bound, timeout, message=why))

    def release(self) -> None:
        self.proc.send_signal(signal.SIGUSR2)  # udhcpc: release the lease

    def kill(self) -> None:
        self.proc.kill()  # no release: the lease runs out
        self.proc.wait(5)

    def stop(self) -> None:
        terminate(self.proc)


class Dhclient6:
    """ISC dhclient -6 in a host namespace, in the foreground: one IA_NA, sending ``hostname``
    in a Client FQDN option; its script logs each bound and released address."""

    def __init__(self, lab: Lab, host: Host, hostname: str, work: Path) -> None:
        self.host = host
        self.work = work / f"dhclient6-{host.name}"
        self.work.mkdir(exist_ok=True)
        self.state = self.work / "state.log"
        self.script = self.work / "script.sh"
        self.script.write_text(DHCLIENT6_SCRIPT.replace("{state}", str(self.state)))
        self.script.chmod(0o755)
        self.conf = self.work / "dhclient6.conf"
        self.conf.write_text(f'send fqdn.fqdn "{hostname}";\nsend fqdn.server-update on;\n')
        self.log = self.work / "dhclient.log"
        self.proc = self._dhclient("-d")

    def _dhclient(self, *flags: str) -> subprocess.Popen[Any]:
        logf = self.log.open("ab")
        try:
            return popen(
                self.host.ns,
                "dhclient", "-6", "-v", *flags, "-cf", str(self.conf),
                "-lf", str(self.work / "leases"), "-pf", str(self.work / "pid"),
                "-sf", str(self.script), self.host.ifname,
                stdout=logf, stderr=subprocess.STDOUT,
            )  # fmt: skip
        finally:
            logf.close()

    def _states(self) -> list[list[str]]:
        text = self.state.read_text() if self.state.exists() else ""
        return [line.split() for line in text.splitlines()]

    def wait_bound(self, server_log: Path, timeout: float = 20.0) -> str:
        """The leased address, once the script has put it on the interface."""

        def bound() -> str | None:
            return next((s[1] for s in self._states() if s[0] == "bound6"), None)

        def why() -> str:
            return f"{self.log.read_text()[-1500:]}\nserver:\n{server_log.read_text()[-3000:]}"

        return str(poll_until(bound, timeout, message=why))

    def release(self) -> None:
        """``dhclient -6 -r``: a Release to the server, and the running client stopped."""
        self._dhclient("-r").wait(20)
        poll_until(lambda: self.proc.poll() is not None, 10, message="dhclient -6 to stop")

    def stop(self) -> None:
        if self.proc.poll() is None:
            terminate(self.proc)


def mdns_query(host: Host, qname: str) -> list[str]:
    """A one-shot (legacy unicast) mDNS query from the host's link; the A records answered."""
    query = dns.message.make_query(qname, "A", use_edns=False)
    sock = netns_socket(host.ns, socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(host.ipv4))
        sock.bind((host.ipv4, 0))
        sock.sendto(query.to_wire(), ("224.0.0.251", 5353))
        deadline = time.monotonic() + 2.0
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, _ = sock.recvfrom(9000)
            except TimeoutError:
                break
            reply = dns.message.from_wire(data)
            if reply.id == query.id:
                return [r.to_text() for rrset in reply.answer for r in rrset if rrset.rdtype == 1]
    return []


@pytest.fixture(scope="module")
def world(lab: Lab) -> Iterator[dict[str, Any]]:
    work = Path(lab.workdir) / "dhcp"
    work.mkdir()
    script = work / "udhcpc.sh"
    script.write_text(CLIENT_SCRIPT)
    script.chmod(0o755)
    dnsmasq_leases = work / "dnsmasq.leases"
    kea_leases = work / "kea-leases4.csv"
    hostile = work / "hostile.leases"
    hostile.write_text(HOSTILE)
    dnsmasq = popen(
        lab.gw,
        "dnsmasq", "--no-daemon", "--port=0", "--bind-interfaces", "--interface=br10",
        "--except-interface=lo", "--dhcp-range=10.10.0.100,10.10.0.150,2m",
        f"--dhcp-leasefile={dnsmasq_leases}", f"--pid-file={work}/dnsmasq.pid",
        "--dhcp-authoritative", "--log-dhcp", "--conf-file=/dev/null", "--user=root",
        stdout=(work / "dnsmasq.log").open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    kea_host = lab.add_host("iot", name="dkea")
    kea_conf = work / "kea-dhcp4.conf"
    kea_conf.write_text(
        json.dumps(
            {
                "Dhcp4": {
                    "interfaces-config": {"interfaces": [kea_host.ifname]},
                    "lease-database": {
                        "type": "memfile",
                        "persist": True,
                        "name": str(kea_leases),
                        "lfc-interval": 0,
                    },
                    "valid-lifetime": KEA_LIFETIME,
                    "renew-timer": KEA_LIFETIME // 2,
                    "rebind-timer": KEA_LIFETIME * 3 // 4,
                    "subnet4": [
                        {
                            "id": 1,
                            "subnet": "10.20.0.0/24",
                            "pools": [{"pool": "10.20.0.100 - 10.20.0.150"}],
                        }
                    ],
                    "loggers": [
                        {
                            "name": "kea-dhcp4",
                            "output_options": [{"output": "stdout"}],
                            "severity": "INFO",
                        }
                    ],
                }
            }
        )
    )
    env = dict(os.environ, KEA_PIDFILE_DIR=str(work), KEA_LOCKFILE_DIR=str(work))
    kea = popen(
        kea_host.ns,
        "kea-dhcp4", "-c", str(kea_conf),
        stdout=(work / "kea.log").open("ab"), stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    kea6_leases = work / "kea-leases6.csv"
    kea6_conf = work / "kea-dhcp6.conf"
    kea6_conf.write_text(
        json.dumps(
            {
                "Dhcp6": {
                    "interfaces-config": {"interfaces": [kea_host.ifname]},
                    # its DUID from the link address, not kept (the default file is /var/lib/kea)
                    "server-id": {"type": "LLT", "persist": False},
                    "lease-database": {
                        "type": "memfile",
                        "persist": True,
                        "name": str(kea6_leases),
                        "lfc-interval": 0,
                    },
                    "valid-lifetime": KEA_LIFETIME,
                    "preferred-lifetime": KEA_LIFETIME * 3 // 4,
                    "renew-timer": KEA_LIFETIME // 2,
                    "rebind-timer": KEA_LIFETIME * 5 // 8,
                    "subnet6": [
                        {
                            "id": 1,
                            "subnet": "fd00:20::/64",
                            "interface": kea_host.ifname,  # clients ask from link-local
                            "pools": [{"pool": "fd00:20::100 - fd00:20::150"}],
                        }
                    ],
                    "loggers": [
                        {
                            "name": "kea-dhcp6",
                            "output_options": [{"output": "stdout"}],
                            "severity": "INFO",
                        }
                    ],
                }
            }
        )
    )
    lab.wait_ipv6_ready()  # kea-dhcp6 binds dkea's link-local address
    kea6 = popen(
        kea_host.ns,
        "kea-dhcp6", "-c", str(kea6_conf),
        stdout=(work / "kea6.log").open("ab"), stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    cfg = gateway_config(
        lab,
        dhcp={
            "leases": [
                {"format": "dnsmasq", "path": str(dnsmasq_leases)},
                {"format": "kea", "path": str(kea_leases)},
                {"format": "kea", "path": str(kea6_leases)},
                {"format": "dnsmasq", "path": str(hostile)},
            ],
            "publish_mdns": True,
        },
    )
    hosts = {
        name: lab.add_host(vlan, name=name)
        for name, vlan in (("dlaptop", "trusted"), ("dtablet", "iot"), ("dphone", "iot"),
                           ("dcopy", "iot"), ("dtv", "iot"))
    }  # fmt: skip
    gw = GatewayProcess(lab, cfg)
    gw.start()
    gw.wait_ready()
    yield {
        "gw": gw,
        "script": script,
        "hosts": hosts,
        "work": work,
        "kea_leases": kea_leases,
        "kea_leases6": kea6_leases,
    }
    gw.stop()
    terminate(kea6)
    terminate(kea)
    terminate(dnsmasq)


def test_dnsmasq_lease_and_release(lab: Lab, world: dict[str, Any]) -> None:
    trusted1 = lab.hosts["trusted1"]
    client = Udhcpc(lab, world["hosts"]["dlaptop"], "laptop", world["script"])
    try:
        address = client.wait_bound()
        wait_answer(lab, trusted1, "laptop.trusted.home.arpa.", [address], world["gw"])
        assert dig(lab, trusted1, "-x", address) == ["laptop.trusted.home.arpa."]
        # publish_mdns: the router answers laptop.local by mDNS on trusted (after probing)
        poll_until(
            lambda: mdns_query(trusted1, "laptop.local.") == [address],
            10,
            message="laptop.local to answer by mDNS",
        )
        # other views see lease hosts only where a policy allows hosts: none here
        assert dig(lab, lab.hosts["iot1"], "laptop.trusted.home.arpa.", "A") == []
        client.release()
        poll_until(
            lambda: dig(lab, trusted1, "laptop.trusted.home.arpa.", "A") == [],
            10,
            message="the released name to leave DNS",
        )
        assert dig(lab, trusted1, "-x", address) == []
    finally:
        client.stop()


def test_kea_lease_renew_expiry_and_another_devices_name(lab: Lab, world: dict[str, Any]) -> None:
    iot1 = lab.hosts["iot1"]
    hosts = world["hosts"]
    kea_log: Path = world["work"] / "kea.log"
    tablet = Udhcpc(lab, hosts["dtablet"], "tablet", world["script"])
    phone = Udhcpc(lab, hosts["dphone"], "phone", world["script"])
    try:
        tablet_ip = tablet.wait_bound(server_log=kea_log)
        phone_ip = phone.wait_bound(server_log=kea_log)
        first_end = time.time() + KEA_LIFETIME
        wait_answer(lab, iot1, "tablet.iot.home.arpa.", [tablet_ip], world["gw"])
        wait_answer(lab, iot1, "phone.iot.home.arpa.", [phone_ip], world["gw"])
        # a third device asks for the tablet's name: the tablet keeps it
        copycat = Udhcpc(lab, hosts["dcopy"], "tablet", world["script"])
        try:
            copy_ip = copycat.wait_bound(server_log=kea_log)
            poll_until(
                lambda: metric(metrics(lab), "mdns_gateway_dhcp_names_ignored_total",
                               reason="duplicate") >= 1,
                10,
                message="the duplicate name to be counted",
            )  # fmt: skip
            assert dig(lab, iot1, "tablet.iot.home.arpa.", "A") == [tablet_ip]
            assert dig(lab, iot1, "-x", copy_ip) == []
            copycat.release()
            poll_until(
                lambda: "released state" in copycat.log.read_text(errors="replace").lower(),
                10,
                message=lambda: f"the copycat's release:\n{copycat.log.read_text()[-1000:]}",
            )
        finally:
            copycat.stop()
        # the phone stops without releasing: its name goes when its lease ends
        phone.kill()
        # the tablet asks again shortly before its lease ends (the same address, a new end)
        poll_until(lambda: time.time() > first_end - 2, KEA_LIFETIME, message="renewal time")
        tablet.kill()
        again = Udhcpc(lab, hosts["dtablet"], "tablet", world["script"])
        try:
            assert again.wait_bound(server_log=kea_log) == tablet_ip
            poll_until(lambda: time.time() > first_end + 1, KEA_LIFETIME, message="first end")
            # past the first lease's end: only the renewed lease can answer
            wait_answer(lab, iot1, "tablet.iot.home.arpa.", [tablet_ip], world["gw"])
        finally:
            again.stop()
        poll_until(
            lambda: dig(lab, iot1, "phone.iot.home.arpa.", "A") == [],
            KEA_LIFETIME + 10,
            message="the expired phone lease to leave DNS",
        )
        assert dig(lab, iot1, "-x", phone_ip) == []
    finally:
        for client in (tablet, phone):
            if client.proc.poll() is None:
                client.stop()


def test_kea_dhcpv6_lease_names_the_address_until_released(lab: Lab, world: dict[str, Any]) -> None:
    """A DHCPv6 lease (IA_NA, the name from the Client FQDN option) in Kea's v6 lease file:
    ``tv.iot.home.arpa.`` AAAA and its ip6.arpa PTR answer, and both go with the Release."""
    iot1 = lab.hosts["iot1"]
    lab.wait_ipv6_ready()  # dhclient -6 sends from the host's link-local address
    client = Dhclient6(lab, world["hosts"]["dtv"], "tv", world["work"])
    try:
        address = client.wait_bound(world["work"] / "kea6.log")
        assert ipaddress.IPv6Address(address) in ipaddress.IPv6Network("fd00:20::/64")
        poll_until(
            lambda: dig(lab, iot1, "tv.iot.home.arpa.", "AAAA") == [address],
            10,
            message=lambda: f"tv AAAA {address}:\n{world['gw'].logs()[-2000:]}",
        )
        assert dig(lab, iot1, "-x", address) == ["tv.iot.home.arpa."]
        assert dig(lab, iot1, "tv.iot.home.arpa.", "A") == []  # no DHCPv4 lease of that name
        client.release()
        kea6_log: Path = world["work"] / "kea6.log"
        poll_until(  # a Release, not the lease running out (8 s) while the client is gone
            lambda: any(
                "DHCP6_RELEASE_NA" in line and address in line
                for line in kea6_log.read_text(errors="replace").splitlines()
            ),
            5,
            message=lambda: f"Kea to log the Release:\n{kea6_log.read_text()[-2000:]}",
        )
        poll_until(
            lambda: dig(lab, iot1, "tv.iot.home.arpa.", "AAAA") == [],
            10,
            message=lambda: f"the released name to leave DNS:\n{world['kea_leases6'].read_text()}",
        )
        assert dig(lab, iot1, "-x", address) == []
    finally:
        client.stop()


def test_a_malformed_file_and_hostile_names(lab: Lab, world: dict[str, Any]) -> None:
    trusted1 = lab.hosts["trusted1"]
    assert dig(lab, trusted1, "static-box.trusted.home.arpa.", "A") == ["10.10.0.205"]
    for address in ("10.10.0.201", "10.10.0.202", "10.10.0.203", "10.10.0.204"):
        assert dig(lab, trusted1, "-x", address) == []
    assert dig(lab, trusted1, "ns.trusted.home.arpa.", "A") == [trusted1.router_ipv4]
    assert dig(lab, trusted1, "laptop.evil.example.trusted.home.arpa.", "A") == []
    text = metrics(lab)
    for reason in ("too_long", "invalid", "dot", "reserved"):
        assert metric(text, "mdns_gateway_dhcp_names_ignored_total", reason=reason) == 1
    hostile = str(world["work"] / "hostile.leases")
    assert metric(text, "mdns_gateway_dhcp_malformed_lines_total", file=hostile) == 1
    assert world["gw"].running
