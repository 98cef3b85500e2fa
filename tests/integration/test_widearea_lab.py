"""Wide-area publishing against real authoritative servers in the namespace lab.

Real peers: ``knotd`` (Debian's knot) and ``named`` (Debian's bind9) in the router namespace on
its loopback, each configured from the README's example blocks as written (only the placeholders
replaced: paths, the address and the secret, see tests/support/widearea.py), so the key is
confined to the gateway's subdomains and the browse names, with a key as each server's own tool
makes it (``keymgr``, ``tsig-keygen``); python-zeroconf publishes in the IoT VLAN; ``kdig``
reads the zone (TSIG AXFR) and the server's own tool (``knsupdate``, ``nsupdate``) edits it by
hand. Topology: tests/integration/conftest.py (trusted, iot, guest).

Every test runs against each server (the ``world`` fixture's parameter): in order on one world
per server (the server, a publisher, a gateway); those that stop the gateway or the server come
last and start what they need themselves.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bridge import const
from netlab.lab import (
    GatewayProcess,
    Lab,
    ZeroconfPublisher,
    gateway_config,
    poll_until,
    popen,
    terminate,
)
from netlab.mdns_probe import http_get
from netlab.widearea import ZONE, bind_config, knot_config

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]

HTTP_PORT = 9353
PRINTER = "Living Room Printer"
SCANNER = "Hall Scanner"
WEB = "Printer Web"
WIDE_POLICY = """apiVersion: mdnsgateway.io/v1alpha1
kind: ServicePolicy
metadata: {name: printers-wide-area}
spec: {from: [iot], to: [trusted], services: [_ipp._tcp], wideArea: %s}
---
apiVersion: mdnsgateway.io/v1alpha1
kind: ServicePolicy
metadata: {name: web-visible-only}
spec: {from: [iot], to: [trusted], services: [_http._tcp]}
"""

# knotd, kdig, knsupdate and keymgr come with Debian's knot and knot-dnsutils, named and
# tsig-keygen with bind9, nsupdate with dnsutils, which make test installs (Makefile DEBS): a
# missing one fails these tests instead of skipping them


@dataclass(frozen=True)
class Flavour:
    """What differs between the servers for these tests."""

    name: str
    port: int
    keygen: list[str]  # prints the key in the server's own form
    secret: str  # regex of the secret in that text
    checker: list[str]  # checks the configuration ("{}": its path)
    update_tool: str  # nsupdate-like: edits by hand
    lower_cases: bool  # owner names and rdata names stored lower-cased

    def configure(self, directory: Path, secret: str) -> list[str]:
        """The README's block for this server in ``directory``, checked; the server's argv."""
        if self.name == "knot":
            config = knot_config(directory, secret, self.port)
            argv = ["knotd", "-c", str(config)]
        else:
            config = bind_config(directory, secret, self.port)
            argv = ["named", "-g", "-c", str(config)]  # -g: foreground, logs to stderr
        check = [arg.format(config) for arg in self.checker]
        subprocess.run(check, check=True, capture_output=True, timeout=30)
        return argv


FLAVOURS = {
    "knot": Flavour(
        "knot",
        5392,
        ["keymgr", "-t", "mdns-gateway", "hmac-sha256"],
        r"secret: (\S+)",
        ["knotc", "-c", "{}", "conf-check"],
        "knsupdate",
        lower_cases=True,
    ),
    "bind": Flavour(
        "bind",
        5393,
        ["tsig-keygen", "-a", "hmac-sha256", "mdns-gateway"],
        r'secret "(\S+)";',
        ["named-checkconf", "-z", "{}"],
        "nsupdate",
        lower_cases=False,
    ),
}


def make_key(flavour: Flavour) -> tuple[str, str]:
    """(the key text as the server's tool makes it, its secret)."""
    out = subprocess.run(
        flavour.keygen, capture_output=True, text=True, check=True, timeout=30
    ).stdout
    secret = re.search(flavour.secret, out)
    assert secret is not None, out
    return out, secret.group(1)


@dataclass
class Server:
    """An authoritative server we start and stop ourselves (untracked by the lab: some tests
    restart it and later tests use it); the module fixture ends it."""

    lab: Lab
    argv: list[str]
    port: int
    log: Path
    proc: subprocess.Popen[Any] | None = None

    def start(self) -> None:
        logf = self.log.open("ab")
        try:
            self.proc = popen(self.lab.gw, *self.argv, stdout=logf, stderr=subprocess.STDOUT)
        finally:
            logf.close()
        poll_until(
            lambda: "NOERROR" in self.dig(f"{ZONE}.", "SOA", check=False),
            timeout=20,
            interval=0.1,
            message=lambda: f"{self.argv[0]} to serve {ZONE}:\n{self.log.read_text()[-2000:]}",
        )

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, 10.0)
            self.proc = None

    def dig(self, *args: str, check: bool = True) -> str:
        res = self.lab.run(
            self.lab.gw, "kdig", "@127.0.0.1", "-p", str(self.port), *args, check=check
        )
        return res.stdout


@dataclass
class World:
    lab: Lab
    flavour: Flavour
    server: Server
    secret: str
    key_file: Path
    policies: Path
    publisher: ZeroconfPublisher
    gw: GatewayProcess
    servers: list[Server] = field(default_factory=list)

    def zone(
        self, server: Server | None = None, secret: str | None = None
    ) -> list[tuple[str, str, str]]:
        """The zone's records (owner, type, rdata) by TSIG AXFR, less SOA/NS/TSIG."""
        server = server or self.server
        out = server.dig(
            "-y",
            f"hmac-sha256:mdns-gateway:{secret or self.secret}",
            f"{ZONE}.",
            "AXFR",
            "+nocomments",
        )
        records = []
        for line in out.splitlines():
            if not line.strip() or line.startswith(";"):
                continue
            owner, _ttl, _cls, rdtype, rdata = line.split(None, 4)
            if rdtype not in ("SOA", "NS", "TSIG") and owner.lower() != f"ns.{ZONE}.":
                records.append((owner, rdtype, rdata.strip()))
        return records

    def wait_zone(
        self, check: Any, what: str, timeout: float = 10.0, **kw: Any
    ) -> list[tuple[str, str, str]]:
        records: list[tuple[str, str, str]] = []

        def done() -> bool:
            nonlocal records
            records = self.zone(**kw)
            return bool(check(records))

        poll_until(done, timeout, interval=0.2, message=lambda: f"{what}; the zone holds {records}")
        return records

    def metric(self, name: str, port: int = HTTP_PORT) -> float:
        text = http_get(self.lab.gw, "127.0.0.1", port, "/metrics")
        m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        return float(m.group(1)) if m else 0.0


def instance(label: str, rdtype: str, records: list[tuple[str, str, str]]) -> list[str]:
    """The rdatas of type ``rdtype`` at the IoT printer instance ``label`` (names compared as
    DNS does, case-insensitively)."""
    owner = label.lower().replace(" ", "\\032") + f"._ipp._tcp.iot.{ZONE}."
    return [r for o, t, r in records if o.lower() == owner and t == rdtype]


def ptrs(records: list[tuple[str, str, str]], owner: str = f"_ipp._tcp.iot.{ZONE}.") -> list[str]:
    return sorted(r for o, t, r in records if o.lower() == owner and t == "PTR")


def gateway(lab: Lab, key_file: Path, policies: Path, *, server_port: int) -> GatewayProcess:
    cfg = gateway_config(
        lab,
        policies=str(policies),
        http={"listen": f"127.0.0.1:{HTTP_PORT}"},
        wide_area={
            "server": f"127.0.0.1:{server_port}",
            "zone": f"{ZONE}.",
            "tsig": {
                "name": "mdns-gateway.",
                "algorithm": "hmac-sha256",
                "secret_file": str(key_file),
            },
            "ttl": 120,
        },
    )
    gw = GatewayProcess(lab, cfg)
    gw.start()
    gw.wait_ready()
    return gw


@pytest.fixture(scope="module", params=sorted(FLAVOURS))
def world(lab: Lab, request: pytest.FixtureRequest) -> Iterator[World]:
    flavour = FLAVOURS[request.param]
    base = lab.workdir / f"widearea-{flavour.name}"
    key_text, secret = make_key(flavour)
    argv = flavour.configure(base / flavour.name, secret)
    server = Server(lab, argv, flavour.port, base / f"{flavour.name}.log")
    server.start()
    key_file = base / "tsig.key"
    key_file.write_text(key_text)  # the server's own form
    key_file.chmod(0o600)
    policies = base / "policies"
    policies.mkdir()
    (policies / "wide.yaml").write_text(WIDE_POLICY % "true")
    iot1 = lab.hosts["iot1"]
    assert iot1.link_local is not None
    publisher = ZeroconfPublisher(
        lab,
        iot1,
        [
            {
                "name": PRINTER,
                "type": "_ipp._tcp",
                "port": 631,
                "txt": ["rp=ipp/print", "Ty=Laser"],
                "server": "printer",
                "addresses": [iot1.ipv4, iot1.ipv6, iot1.link_local],
            },
            {"name": WEB, "type": "_http._tcp", "port": 80, "server": "printer"},
        ],
        host_name="printer",
    )
    publisher.wait_ready()
    gw = gateway(lab, key_file, policies, server_port=flavour.port)
    w = World(lab, flavour, server, secret, key_file, policies, publisher, gw, [server])
    yield w
    gw.stop()
    publisher.stop()  # the next server's world publishes the same names
    for each in w.servers:
        each.stop()


def start_gateway(world: World, key_file: Path) -> GatewayProcess:
    return gateway(world.lab, key_file, world.policies, server_port=world.flavour.port)


def test_publish_with_its_content(world: World) -> None:
    iot1 = world.lab.hosts["iot1"]
    records = world.wait_zone(lambda r: instance(PRINTER, "SRV", r), "the printer's SRV")
    label = PRINTER.replace(" ", "\\032")
    name = f"{label.lower() if world.flavour.lower_cases else label}._ipp._tcp.iot.{ZONE}."
    assert ptrs(records) == [name]  # Knot lower-cases, BIND keeps the case
    assert [o for o, t, _ in records if t == "SRV"] == [name]
    assert instance(PRINTER, "SRV", records) == [f"0 0 631 printer.iot.{ZONE}."]
    assert instance(PRINTER, "TXT", records) == ['"rp=ipp/print" "Ty=Laser"']  # verbatim
    host = f"printer.iot.{ZONE}."
    assert sorted(r for o, t, r in records if o == host) == sorted(
        [iot1.ipv4, iot1.ipv6]
    )  # no fe80
    assert ptrs(records, f"_services._dns-sd._udp.iot.{ZONE}.") == [f"_ipp._tcp.iot.{ZONE}."]
    for label in ("b", "db", "lb"):
        assert ptrs(records, f"{label}._dns-sd._udp.{ZONE}.") == [f"iot.{ZONE}."]
    assert len(records) == len(set(records))  # nothing twice
    poll_until(lambda: world.metric("mdns_gateway_widearea_records") == len(records), 10)
    assert world.metric('mdns_gateway_widearea_updates_total{result="ok"}') >= 1
    assert world.metric("mdns_gateway_widearea_last_success_timestamp_seconds") > time.time() - 300


def test_a_service_of_a_non_wide_area_policy_is_never_published(world: World) -> None:
    records = world.zone()
    assert not [o for o, _, _ in records if "_http._tcp" in o]
    assert not [r for _, _, r in records if "_http._tcp" in r]


def test_a_port_change_replaces_the_srv_in_one_update(world: World) -> None:
    iot1 = world.lab.hosts["iot1"]
    # RFC 6762 §10.2: a cache-flush record flushes only rdatas received over a second ago (the
    # gateway's first queries were answered just now); wait that out, else both ports are live
    holds_for(lambda: True, const.MDNS_CACHE_FLUSH_GRACE + 0.5)
    before = world.metric('mdns_gateway_widearea_updates_total{result="ok"}')
    world.publisher.update(
        {
            "name": PRINTER,
            "type": "_ipp._tcp",
            "port": 632,
            "txt": ["rp=ipp/print", "Ty=Laser"],
            "server": "printer",
            "addresses": [iot1.ipv4, iot1.ipv6, iot1.link_local],
        }
    )
    records = world.wait_zone(
        lambda r: instance(PRINTER, "SRV", r) == [f"0 0 632 printer.iot.{ZONE}."], "port 632 alone"
    )
    assert len(ptrs(records)) == 1
    assert world.metric('mdns_gateway_widearea_updates_total{result="ok"}') == before + 1
    # the flushed SRV leaves the store a second later (RFC 6762 §10.2): nothing more is sent
    expired = world.metric("mdns_gateway_store_expired_records_total")
    poll_until(lambda: world.metric("mdns_gateway_store_expired_records_total") > expired, 10)
    holds_for(
        lambda: world.metric('mdns_gateway_widearea_updates_total{result="ok"}') == before + 1, 1.0
    )
    assert instance(PRINTER, "SRV", world.zone()) == [f"0 0 632 printer.iot.{ZONE}."]


def holds_for(predicate: Any, seconds: float) -> None:
    """``predicate`` stays true for ``seconds`` (what must not happen, over a window)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert predicate()
        time.sleep(0.1)


def test_a_policy_change_removes_and_restores(world: World) -> None:
    (world.policies / "wide.yaml").write_text(WIDE_POLICY % "false")
    world.wait_zone(lambda r: not r, "everything withdrawn", timeout=10)
    (world.policies / "wide.yaml").write_text(WIDE_POLICY % "true")
    world.wait_zone(lambda r: instance(PRINTER, "SRV", r), "the printer again", timeout=10)


def test_a_goodbye_removes_the_service(world: World) -> None:
    iot1 = world.lab.hosts["iot1"]
    world.publisher.register(
        {
            "name": SCANNER,
            "type": "_ipp._tcp",
            "port": 8631,
            "server": "printer",
            "addresses": [iot1.ipv4],
        }
    )
    world.wait_zone(lambda r: len(ptrs(r)) == 2, "two printers")
    world.publisher.unregister(SCANNER)  # goodbye packets
    records = world.wait_zone(lambda r: len(ptrs(r)) == 1, "the scanner gone", timeout=5)
    assert not instance(SCANNER, "SRV", records) and instance(PRINTER, "SRV", records)


def test_server_down_then_up_catches_up(world: World) -> None:
    world.server.stop()
    iot1 = world.lab.hosts["iot1"]
    world.publisher.register(
        {
            "name": SCANNER,
            "type": "_ipp._tcp",
            "port": 8631,
            "server": "printer",
            "addresses": [iot1.ipv4],
        }
    )
    world.gw.wait_for_log(
        rf"wide-area: UPDATE of \S+ to 127\.0\.0\.1:{world.flavour.port} "
        r".* failed: (network|timeout)",
        timeout=15,
    )
    assert world.gw.running
    world.server.start()
    world.wait_zone(
        lambda r: instance(SCANNER, "SRV", r), "the scanner after the server's return", timeout=30
    )
    world.publisher.unregister(SCANNER)
    world.wait_zone(lambda r: len(ptrs(r)) == 1, "the scanner gone", timeout=10)


def test_a_wrong_key_is_a_clear_error_and_the_gateway_keeps_serving(world: World) -> None:
    world.gw.stop()
    wrong = world.key_file.parent / "wrong.key"
    wrong.write_text(world.key_file.read_text().replace(world.secret, "A" * 43 + "="))
    wrong.chmod(0o600)
    gw = start_gateway(world, wrong)
    line = gw.wait_for_log(
        rf"wide-area: .* to 127\.0\.0\.1:{world.flavour.port} for zone dnssd\.example\.com\. "
        r"with key mdns-gateway\.: BADSIG.*likely fix: the secret",
        timeout=20,
    )
    assert "Traceback" not in gw.logs(), gw.logs()[-3000:]
    assert world.metric('mdns_gateway_widearea_updates_total{result="badsig"}') >= 1
    poll_until(
        lambda: world.metric('mdns_gateway_widearea_transfers_total{result="badsig"}') >= 1, 15
    )
    assert gw.running
    out = world.lab.dig(
        world.lab.gw, "@127.0.0.1", "-p", "5320", "+short", "_ipp._tcp.iot.home.arpa", "PTR"
    )
    assert "Printer" in out, (line.group(0), out)  # the DNS side answers meanwhile
    gw.stop()


def test_sigkill_an_orphan_by_hand_and_a_restart(world: World) -> None:
    gw = start_gateway(world, world.key_file)
    world.wait_zone(lambda r: instance(PRINTER, "SRV", r), "the printer")
    gw.signal(9)
    gw.proc.wait(10)  # type: ignore[union-attr]
    edits = (
        f"server 127.0.0.1 {world.flavour.port}\nzone {ZONE}.\n"
        f'add orphan._ipp._tcp.iot.{ZONE}. 120 TXT "left by hand"\n'
        f"add _ipp._tcp.iot.{ZONE}. 120 PTR orphan._ipp._tcp.iot.{ZONE}.\n"
        f"del printer.iot.{ZONE}. A\n"
        "send\n"
    )
    world.lab.run(
        world.lab.gw,
        world.flavour.update_tool,
        "-y",
        f"hmac-sha256:mdns-gateway:{world.secret}",
        input=edits,
    )
    assert len(ptrs(world.zone())) == 2
    gw = start_gateway(world, world.key_file)
    iot1 = world.lab.hosts["iot1"]
    records = world.wait_zone(
        lambda r: (
            len(ptrs(r)) == 1
            and any(t == "A" for _, t, _ in r)
            and not instance("orphan", "TXT", r)
        ),
        "the orphan gone and the address back",
        timeout=20,
    )
    assert sorted(r for o, _, r in records if o == f"printer.iot.{ZONE}.") == sorted(
        [iot1.ipv4, iot1.ipv6]
    )
    assert len(records) == len(set(records))
    assert world.metric('mdns_gateway_widearea_reconciled_records_total{action="deleted"}') >= 2
    gw.stop()
