"""The NTP advertiser in the namespace lab, against real chronyd (issue 5).

Topology (on top of the conftest lab: VLANs trusted=10, iot=20, guest=30, two hosts each):

* ``ntpup`` (a host on guest, 10.30.0.4): chronyd ``local stratum 8``, the router's upstream;
* the router namespace: chronyd ``server 10.30.0.4 iburst minpoll -4 maxpoll -4`` (it syncs in
  about a second and notices a lost upstream in about one), command port on 127.0.0.1:323,
  and the gateway with ``chrony: {servers: [router, router2]}``;
* ``trusted2`` (10.10.0.3): a second router's chronyd (``local stratum 9``), command port
  open to the gateway, advertised on trusted only.

Every chronyd runs with ``-x``: the host clock is never touched. Clients in ``trusted1`` and
``iot1`` browse ``_ntp._udp`` with python-zeroconf, ask the gateway's DNS with ``dig``, and
ask the advertised address for the time with ``chronyd -Q``. Then the upstream is stopped
(withdrawal, goodbyes, DNS answers gone within 10 s, router2 stays) and restarted (return).
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import pytest

from netlab.lab import (
    GatewayProcess,
    Host,
    Lab,
    ZeroconfBrowser,
    ZeroconfPublisher,
    gateway_config,
    netns_socket,
    parse_dig_short,
    poll_until,
    popen,
    run,
    terminate,
)

pytestmark = [pytest.mark.lab, pytest.mark.timeout(240)]

WITHDRAW_BUDGET = 10.0  # s; issue 5: goodbyes and DNS answers gone within 10 s
RETURN_BUDGET = 20.0  # s; chronyd resyncs, then two healthy polls 2 s apart


class Chronyd:
    """A chronyd of the lab's own (``-x -d -u root``), with its own config, pid and drift."""

    def __init__(self, lab: Lab, ns: str, name: str, directives: list[str]) -> None:
        self.lab = lab
        self.ns = ns
        self.dir = Path(lab.workdir) / f"chrony-{name}"
        self.dir.mkdir(mode=0o700)
        self.conf = self.dir / "chrony.conf"
        self.log = self.dir / "chronyd.log"
        self.conf.write_text(
            "\n".join(
                [
                    *directives,
                    f"pidfile {self.dir}/chronyd.pid",
                    f"driftfile {self.dir}/drift",
                    "bindcmdaddress /",  # no unix socket: nothing under /run/chrony of the host
                ]
            )
            + "\n"
        )
        self.name = name
        self.proc: subprocess.Popen[Any] | None = None

    def start(self) -> None:
        # Not Lab.popen: the lab stops what a test started when that test ends, and these
        # daemons are restarted inside tests yet belong to the module. The fixture stops
        # them; Lab.close() kills whatever is left in its namespaces anyway.
        logf = self.log.open("ab")
        try:
            self.proc = popen(
                self.ns,
                "chronyd",
                "-x",
                "-d",
                "-u",
                "root",
                "-f",
                str(self.conf),
                stdout=logf,
                stderr=subprocess.STDOUT,
            )
        finally:
            logf.close()

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
            self.proc = None

    def tracking(self, host: str = "127.0.0.1") -> str:
        return run(self.ns, "chronyc", "-c", "-n", "-h", host, "tracking", check=False).stdout

    def wait_synchronised(self, timeout: float = 20.0) -> None:
        def synced() -> bool:
            line = self.tracking()
            return line.strip().endswith(",Normal")

        poll_until(
            synced,
            timeout,
            interval=0.1,
            message=lambda: (
                f"chronyd {self.name} to "
                f"synchronise:\n{self.report()}\n{self.log.read_text(errors='replace')[-2000:]}"
            ),
        )

    def report(self) -> str:
        return run(
            self.ns,
            "chronyc",
            "-n",
            "-h",
            "127.0.0.1",
            "-m",
            "tracking",
            "sources",
            "ntpdata",
            check=False,
        ).stdout


def dig(lab: Lab, host: Host, *args: str) -> list[str]:
    """``dig +short`` from a VLAN host against the gateway's DNS on its VLAN address."""
    return parse_dig_short(lab.dig(host.ns, f"@{host.router_ipv4}", "-p", "5300", "+short", *args))


def ntp_query(lab: Lab, host: Host, address: str, port: int) -> str:
    """A real NTP exchange: chronyd -Q asks once and prints the offset; never sets the clock."""
    res = run(
        host.ns,
        "chronyd",
        "-Q",
        "-x",
        "-t",
        "5",
        "-f",
        "/dev/null",
        f"server {address} port {port} iburst maxsamples 1",
        check=False,
        timeout=15,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"NTP query to {address}:{port} failed:\n{out}"
    return out


def legacy_mdns_query(lab: Lab, host: Host, qname: str, qtype: str) -> dns.message.Message:
    """A one-shot mDNS query from an ephemeral port to ff02::fb on the host's link; the
    reply comes back by unicast from the responder (so the socket stays unconnected)."""
    ifindex = int(run(host.ns, "cat", f"/sys/class/net/{host.ifname}/ifindex").stdout)
    query = dns.message.make_query(qname, qtype, use_edns=False)
    sock = netns_socket(host.ns, socket.AF_INET6, socket.SOCK_DGRAM)
    with sock:
        sock.bind(("::", 0))
        sock.sendto(query.to_wire(), ("ff02::fb", 5353, 0, ifindex))
        deadline = time.monotonic() + 3.0
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            data, _ = sock.recvfrom(9000)
            reply = dns.message.from_wire(data)
            if reply.id == query.id:
                return reply
    raise TimeoutError(f"no unicast reply to the legacy query {qname} {qtype}")


def metrics(lab: Lab) -> str:
    code = (
        "import urllib.request as u;"
        "print(u.urlopen('http://127.0.0.1:9353/metrics', timeout=5).read().decode())"
    )
    return run(lab.gw, sys.executable, "-c", code).stdout


@pytest.fixture(scope="module")
def world(lab: Lab) -> Iterator[dict[str, Any]]:
    upstream_host = lab.add_host("guest", name="ntpup")
    lab.wait_ipv6_ready()
    upstream = Chronyd(
        lab,
        upstream_host.ns,
        "upstream",
        ["local stratum 8", "allow 10.0.0.0/8", "cmdport 323", "bindcmdaddress 127.0.0.1"],
    )
    router = Chronyd(
        lab,
        lab.gw,
        "router",
        [
            f"server {upstream_host.ipv4} iburst minpoll -4 maxpoll -4",
            "allow 10.0.0.0/8",
            "allow fd00::/8",
            "cmdport 323",
            "bindcmdaddress 127.0.0.1",
        ],
    )
    second = lab.hosts["trusted2"]
    router2 = Chronyd(
        lab,
        second.ns,
        "router2",
        [
            "local stratum 9",
            "allow 10.0.0.0/8",
            "cmdport 323",
            f"bindcmdaddress {second.ipv4}",
            f"cmdallow {second.router_ipv4}",
        ],
    )
    upstream.start()
    router.start()
    router2.start()
    router.wait_synchronised()
    cfg = gateway_config(
        lab,
        chrony={
            "servers": [
                {"name": "router", "control": "127.0.0.1:323"},
                {
                    "name": "router2",
                    "control": f"{second.ipv4}:323",
                    "addresses": {"trusted": second.ipv4},
                },
            ],
            "max_offset_seconds": 0.010,
            "vlans": ["*"],
        },
    )
    gw = GatewayProcess(lab, cfg)
    gw.start()
    gw.wait_ready()
    trusted_browser = ZeroconfBrowser(lab, lab.hosts["trusted1"], ["_ntp._udp"])
    iot_browser = ZeroconfBrowser(lab, lab.hosts["iot1"], ["_ntp._udp"])
    trusted_browser.wait_started()
    iot_browser.wait_started()
    yield {
        "gw": gw,
        "upstream": upstream,
        "router": router,
        "router2": router2,
        "trusted": trusted_browser,
        "iot": iot_browser,
        "second": second,
    }
    trusted_browser.stop()
    iot_browser.stop()
    gw.stop()
    router2.stop()
    router.stop()
    upstream.stop()


def test_clients_find_the_time_service_and_it_serves_time(lab: Lab, world: dict[str, Any]) -> None:
    trusted1, iot1 = lab.hosts["trusted1"], lab.hosts["iot1"]
    second: Host = world["second"]
    # mDNS (python-zeroconf): SRV to the router's host name, port 123, TXT stratum and leap
    found = world["trusted"].wait_resolved("router", timeout=15)
    assert found["server"] == "router.local." and found["port"] == 123
    assert trusted1.router_ipv4 in found["addresses"]
    assert found["txt"]["stratum"] == "9" and found["txt"]["leap"] == "normal"
    other = world["trusted"].wait_resolved("router2", timeout=15)
    assert other["server"] == "router2.local." and other["port"] == 123
    assert second.ipv4 in other["addresses"] and other["txt"]["stratum"] == "9"
    on_iot = world["iot"].wait_resolved("router", timeout=15)
    assert iot1.router_ipv4 in on_iot["addresses"]
    assert not world["iot"].seen("router2")  # router2 has an address on trusted only

    # wide-area DNS: the same service in each VLAN's domain, ntp.<domain>, reverse PTR
    assert sorted(dig(lab, trusted1, "_ntp._udp.trusted.home.arpa.", "PTR")) == [
        "router._ntp._udp.trusted.home.arpa.",
        "router2._ntp._udp.trusted.home.arpa.",
    ]
    srv = dig(lab, trusted1, "router._ntp._udp.trusted.home.arpa.", "SRV")
    assert srv == ["0 0 123 router.trusted.home.arpa."]
    assert dig(lab, trusted1, "router2._ntp._udp.trusted.home.arpa.", "SRV") == [
        "1 0 123 router2.trusted.home.arpa."
    ]
    assert sorted(dig(lab, trusted1, "ntp.trusted.home.arpa.", "A")) == sorted(
        [trusted1.router_ipv4, second.ipv4]
    )
    assert dig(lab, trusted1, "ntp.trusted.home.arpa.", "AAAA") == [trusted1.router_ipv6]
    assert dig(lab, trusted1, "router.trusted.home.arpa.", "A") == [trusted1.router_ipv4]
    assert dig(lab, trusted1, "-x", trusted1.router_ipv4) == ["ntp.trusted.home.arpa."]
    assert dig(lab, trusted1, "-x", second.ipv4) == ["ntp.trusted.home.arpa."]
    assert dig(lab, iot1, "ntp.iot.home.arpa.", "A") == [iot1.router_ipv4]
    assert dig(lab, iot1, "_ntp._udp.iot.home.arpa.", "PTR") == ["router._ntp._udp.iot.home.arpa."]
    assert "_ntp._udp.trusted.home.arpa." in dig(
        lab, trusted1, "_services._dns-sd._udp.trusted.home.arpa.", "PTR"
    )

    # what is advertised serves time: the SRV's target address and port, over IPv4 and IPv6
    target, port = srv[0].split()[3], int(srv[0].split()[2])
    address = dig(lab, trusted1, target, "A")[0]
    assert "System clock wrong by" in ntp_query(lab, trusted1, address, port)
    assert "System clock wrong by" in ntp_query(lab, trusted1, trusted1.router_ipv6, port)
    assert "System clock wrong by" in ntp_query(lab, iot1, on_iot["addresses"][0], 123)
    assert "System clock wrong by" in ntp_query(lab, trusted1, second.ipv4, 123)

    # a one-shot (legacy unicast, RFC 6762 §6.7) mDNS query is answered by unicast, TTL <= 10
    srv_reply = legacy_mdns_query(lab, trusted1, "router._ntp._udp.local.", "SRV")
    assert [r.to_text() for r in srv_reply.answer[0]] == ["0 0 123 router.local."]
    assert srv_reply.answer[0].ttl <= 10
    aaaa = legacy_mdns_query(lab, trusted1, "router.local.", "AAAA")
    assert [r.to_text() for r in aaaa.answer[0]] == [trusted1.router_ipv6]

    text = metrics(lab)
    for line in (
        'mdns_gateway_chrony_advertised{server="router"} 1.0',
        'mdns_gateway_chrony_advertised{server="router2"} 1.0',
        'mdns_gateway_chrony_synchronised{server="router"} 1.0',
        'mdns_gateway_chrony_stratum{server="router"} 9.0',
        'mdns_gateway_chrony_up{server="router2"} 1.0',
    ):
        assert line in text, line
    # the upstream answers (the ratio is chronyd's 8-poll reach register: a poll lost on a busy
    # machine makes it 0.875, which is still reachable)
    reach = re.search(
        r'mdns_gateway_chrony_source_reachability_ratio\{server="router",'
        r'source="10\.30\.0\.\d+"\} ([0-9.]+)',
        text,
    )
    assert reach is not None and float(reach.group(1)) >= 0.5, reach


def test_upstream_lost_withdraws_and_restored_returns(lab: Lab, world: dict[str, Any]) -> None:
    trusted1, iot1 = lab.hosts["trusted1"], lab.hosts["iot1"]
    tb: ZeroconfBrowser = world["trusted"]
    ib: ZeroconfBrowser = world["iot"]
    tb.wait_resolved("router", timeout=15)
    ib.wait_resolved("router", timeout=15)
    mark_t, mark_i = len(tb.events), len(ib.events)

    asked: list[float] = []

    def router_srv_gone() -> bool:
        asked.append(time.monotonic())  # when the query went out (a miss waits for mDNS)
        return (
            dig(lab, trusted1, "router._ntp._udp.trusted.home.arpa.", "SRV") == []
            and dig(lab, iot1, "ntp.iot.home.arpa.", "A") == []
        )

    world["upstream"].stop()
    stopped = time.monotonic()
    poll_until(
        router_srv_gone,
        WITHDRAW_BUDGET,
        interval=0.2,
        message=lambda: "router's records to leave DNS:\n" + world["gw"].logs()[-3000:],
    )
    dns_gone = asked[-1] - stopped
    # goodbye packets: zeroconf drops the service one second after a TTL-0 record
    removed = tb.wait_removed("router", timeout=WITHDRAW_BUDGET + 2, start=mark_t)
    ib.wait_removed("router", timeout=WITHDRAW_BUDGET + 2, start=mark_i)
    print(
        f"upstream stopped: DNS answers gone after {dns_gone:.1f} s, the browser dropped "
        f"the service after {removed['t'] - stopped:.1f} s"
    )
    assert removed["t"] - stopped <= WITHDRAW_BUDGET + 1.5
    assert dns_gone <= WITHDRAW_BUDGET
    # the second server stays advertised, in DNS and on mDNS
    second: Host = world["second"]
    assert dig(lab, trusted1, "_ntp._udp.trusted.home.arpa.", "PTR") == [
        "router2._ntp._udp.trusted.home.arpa."
    ]
    assert dig(lab, trusted1, "ntp.trusted.home.arpa.", "A") == [second.ipv4]
    assert dig(lab, trusted1, "-x", trusted1.router_ipv4) == []
    assert not any(ZeroconfBrowser._match(e, "removed", "router2") for e in tb.events)
    assert 'mdns_gateway_chrony_advertised{server="router"} 0.0' in metrics(lab)

    # the upstream returns: the router resynchronises and is advertised again
    mark_t, mark_i = len(tb.events), len(ib.events)
    world["upstream"].start()
    restarted = time.monotonic()
    tb.wait_added("router", timeout=RETURN_BUDGET, start=mark_t)
    ib.wait_added("router", timeout=RETURN_BUDGET, start=mark_i)
    poll_until(
        lambda: dig(lab, trusted1, "router._ntp._udp.trusted.home.arpa.", "SRV"),
        RETURN_BUDGET,
        interval=0.2,
        message="router's SRV to return",
    )
    print(f"upstream restarted: advertised again after {time.monotonic() - restarted:.1f} s")
    assert time.monotonic() - restarted <= RETURN_BUDGET
    assert sorted(dig(lab, trusted1, "ntp.trusted.home.arpa.", "A")) == sorted(
        [trusted1.router_ipv4, second.ipv4]
    )
    assert not any(ZeroconfBrowser._match(e, "removed", "router2") for e in tb.events)


def test_chronyd_stopped_withdraws_router_only(lab: Lab, world: dict[str, Any]) -> None:
    trusted1 = lab.hosts["trusted1"]
    tb: ZeroconfBrowser = world["trusted"]
    poll_until(
        lambda: dig(lab, trusted1, "router._ntp._udp.trusted.home.arpa.", "SRV"),
        RETURN_BUDGET,
        interval=0.2,
        message="router's SRV",
    )
    mark = len(tb.events)
    world["router"].stop()
    stopped = time.monotonic()
    poll_until(
        lambda: not dig(lab, trusted1, "router._ntp._udp.trusted.home.arpa.", "SRV"),
        WITHDRAW_BUDGET,
        interval=0.2,
        message="router's SRV to leave DNS",
    )
    assert time.monotonic() - stopped <= WITHDRAW_BUDGET
    tb.wait_removed("router", timeout=WITHDRAW_BUDGET + 2, start=mark)
    assert dig(lab, trusted1, "router2._ntp._udp.trusted.home.arpa.", "SRV")
    assert 'mdns_gateway_chrony_up{server="router"} 0.0' in metrics(lab)
    world["router"].start()
    world["router"].wait_synchronised()
    tb.wait_added("router", timeout=RETURN_BUDGET, start=mark)


def test_host_name_conflict_renames_on_that_vlan_only(lab: Lab, world: dict[str, Any]) -> None:
    """A device on trusted announces router.local: the gateway probes again, the device
    defends its name, the gateway renames its host on trusted (router-2) and nowhere else."""
    trusted1, iot1 = lab.hosts["trusted1"], lab.hosts["iot1"]
    tb: ZeroconfBrowser = world["trusted"]
    poll_until(
        lambda: dig(lab, trusted1, "router._ntp._udp.trusted.home.arpa.", "SRV"),
        RETURN_BUDGET,
        interval=0.2,
        message="router's SRV",
    )
    mark = len(tb.events)
    impostor = ZeroconfPublisher(
        lab,
        trusted1,
        [
            {
                "name": "Impostor",
                "type": "_http._tcp",
                "port": 80,
                "server": "router.local.",
                "addresses": [trusted1.ipv4],
            }
        ],
        ip_version="v4",
    )
    impostor.wait_ready()
    poll_until(
        lambda: (
            dig(lab, trusted1, "router._ntp._udp.trusted.home.arpa.", "SRV")
            == ["0 0 123 router-2.trusted.home.arpa."]
        ),
        WITHDRAW_BUDGET,
        interval=0.2,
        message=lambda: "the gateway to rename its host on trusted:\n" + world["gw"].logs()[-3000:],
    )
    assert dig(lab, trusted1, "router-2.trusted.home.arpa.", "A") == [trusted1.router_ipv4]
    assert dig(lab, iot1, "router._ntp._udp.iot.home.arpa.", "SRV") == [
        "0 0 123 router.iot.home.arpa."
    ]
    # browsers follow the new SRV target (cache-flush) and still resolve our address
    updated = tb.wait_event(
        lambda e: (
            e.get("event") == "resolved"
            and str(e.get("name", "")).startswith("router.")
            and e.get("server") == "router-2.local."
        ),
        timeout=WITHDRAW_BUDGET,
        start=mark,
    )
    assert trusted1.router_ipv4 in updated["addresses"]
    assert "System clock wrong by" in ntp_query(
        lab, trusted1, updated["addresses"][0], updated["port"]
    )
    assert "mdns_gateway_chrony_mdns_conflicts_total 1.0" in metrics(lab)
    impostor.stop()


def test_gateway_shutdown_says_goodbye(lab: Lab, world: dict[str, Any]) -> None:
    tb: ZeroconfBrowser = world["trusted"]
    tb.wait_resolved("router2", timeout=15)
    mark = len(tb.events)
    assert world["gw"].stop() == 0
    tb.wait_removed("router2", timeout=5, start=mark)
