"""Policies (issue 3) in the namespace lab: real avahi publishers, real dig, hot reload.

Topology (tests/integration/conftest.py): VLANs trusted=10, iot=20, guest=30, plus a third IoT
host. Every host but guest2 runs avahi-daemon with a few services. The gateway runs in the
router namespace with a copy of policies/examples/home-basic.yaml and deny-examples.yaml and a
lab-only broad allow (``_smb._tcp`` from every VLAN to every VLAN), so that the denies have allows
to beat.

The expected visibility is computed by ``Model`` below from ``RULES``, a table that restates the
policies in plain Python (``test_rules_table_restates_the_yaml`` keeps the table and the YAML
together) and evaluates them with fnmatch: the engine under test is never asked.
"""

from __future__ import annotations

import http.client
import ipaddress
import itertools
import json
import os
import re
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest
import yaml

from netlab.coredns_forward import ForwardClient
from netlab.lab import (
    AvahiPublisher,
    DigResponse,
    GatewayProcess,
    Lab,
    gateway_config,
    netns_socket,
    parse_dig,
    poll_until,
    query,
)
from netlab.mdns_probe import Sniffer

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "policies" / "examples"
VLANS = ("trusted", "iot", "guest")
VIEW_PORT = {"trusted": 5310, "iot": 5320, "guest": 5330}
ROUTER_PORT = 5390  # the router's own view "*": sees every VLAN, used to know the cache is warm
HTTP_PORT = 9353
TYPES = ("_ipp._tcp", "_googlecast._tcp", "_airplay._tcp", "_raop._tcp", "_hap._tcp", "_smb._tcp")
DIG_WORKERS = 8  # dig processes at once; negative answers may wait ~1 s for an mDNS lookup

# The lab-only policy: a broad allow that the example denies must beat.
SMB_EVERYWHERE = """\
apiVersion: mdnsgateway.io/v1alpha1
kind: ServicePolicy
metadata:
  name: lab-smb-everywhere
spec:
  from: ["*"]
  to: ["*"]
  services: [_smb._tcp]
"""


# --------------------------------------------------------------------------------------------
# what is published: lab host -> (avahi host name, services)


@dataclass(frozen=True)
class Svc:
    instance: str
    type: str
    port: int
    subtypes: tuple[str, ...] = ()


PUBLISHED: dict[str, tuple[str, tuple[Svc, ...]]] = {
    "trusted1": (
        "laptop",
        (
            Svc("Laptop Share", "_smb._tcp", 445),
            Svc("Laptop", "_airplay._tcp", 7000),
            Svc("A1B2C3D4E5F6@Laptop", "_raop._tcp", 7000),
        ),
    ),
    "trusted2": (
        "office",
        (
            Svc("Office Printer", "_ipp._tcp", 631, ("_universal",)),
            Svc("Study Speaker", "_googlecast._tcp", 8009),
            Svc("Thermostat", "_hap._tcp", 8080),
        ),
    ),
    "iot1": (
        "tv",
        (
            Svc("Living Room TV", "_googlecast._tcp", 8009),
            Svc("Living Room Apple TV", "_airplay._tcp", 7000),  # one name per publisher
            Svc("0A1B2C3D4E5F@Living Room Apple TV", "_raop._tcp", 7000),
            Svc("IoT Printer", "_ipp._tcp", 631, ("_universal",)),
        ),
    ),
    "iot2": (
        "guestbox",
        (
            Svc("Guest Printer", "_ipp._tcp", 631, ("_universal",)),
            Svc("guest-tv", "_googlecast._tcp", 8009),  # matches "*Guest*" (globs ignore case)
            Svc("Media Share", "_smb._tcp", 445),
        ),
    ),
    "iot3": (
        "hub",
        (
            Svc("Hue Bridge", "_hap._tcp", 8080),  # no type of this host crosses by default
        ),
    ),
    "guest1": (
        "visitor",
        (
            Svc("Visitor Phone", "_airplay._tcp", 7000),
            Svc("Visitor Tablet", "_googlecast._tcp", 8009),
            Svc("Visitor Share", "_smb._tcp", 445),
        ),
    ),
}


@dataclass(frozen=True)
class Published:
    vlan: str
    host: str  # avahi host name (the SRV target's first label)
    svc: Svc


# --------------------------------------------------------------------------------------------
# the policies, restated as a table, and an independent evaluation


@dataclass(frozen=True)
class Rule:
    name: str
    action: str  # allow | deny
    frm: tuple[str, ...]
    to: tuple[str, ...]
    services: tuple[str, ...]
    allow: tuple[str, ...] = ("*",)  # instances.allow
    deny: tuple[str, ...] = ()  # instances.deny
    hosts: bool = False


HOME_BASIC = (
    Rule(
        "home-media-and-printers-for-trusted",
        "allow",
        ("iot",),
        ("trusted",),
        ("_googlecast._tcp", "_airplay._tcp", "_raop._tcp", "_ipp._tcp", "_ipps._tcp"),
    ),
    Rule(
        "home-guest-printer-for-guests",
        "allow",
        ("iot",),
        ("guest",),
        ("_ipp._tcp", "_ipps._tcp"),
        allow=("Guest Printer*",),
    ),
    Rule("home-iot-never-sees-trusted", "deny", ("trusted",), ("iot",), ("*",), hosts=True),
)
DENY_EXAMPLES = (
    Rule("guest-never-sees-trusted", "deny", ("trusted",), ("guest",), ("*",), hosts=True),
    Rule(
        "hide-guest-devices-from-trusted",
        "deny",
        ("iot",),
        ("trusted",),
        ("*",),
        allow=("*Guest*",),
        deny=("*Guest Printer*",),
    ),
)
LAB_EXTRA = (Rule("lab-smb-everywhere", "allow", ("*",), ("*",), ("_smb._tcp",)),)
AIRPLAY_CHROMECAST = (
    Rule("airplay-into-trusted", "allow", ("iot",), ("trusted",), ("_airplay._tcp", "_raop._tcp")),
    Rule(
        "chromecast-into-trusted",
        "allow",
        ("iot",),
        ("trusted",),
        ("_googlecast._tcp", "_googlezone._tcp"),
        hosts=True,
    ),
)
RULES = HOME_BASIC + DENY_EXAMPLES + LAB_EXTRA


def _names(names: Sequence[str], value: str) -> bool:
    return "*" in names or value in names


def _globs(globs: Sequence[str], instance: str) -> bool:
    return any(fnmatchcase(instance.casefold(), g.casefold()) for g in globs)


class Model:
    """What each view may see, from the rules' text (README: policies/README.md, "rules")."""

    def __init__(self, rules: Sequence[Rule], published: Iterable[Published]) -> None:
        self.rules = tuple(rules)
        self.published = tuple(published)

    def _rules(self, view: str, vlan: str, stype: str | None) -> list[Rule]:
        return [
            r
            for r in self.rules
            if _names(r.frm, vlan)
            and _names(r.to, view)
            and (stype is None or _names(r.services, stype))
        ]

    def sees(self, view: str, p: Published) -> bool:
        """Rules 1-4: own VLAN or an allow selects the instance, and no deny selects it."""
        rules = self._rules(view, p.vlan, p.svc.type)

        def selects(r: Rule) -> bool:
            return _globs(r.allow, p.svc.instance) and not _globs(r.deny, p.svc.instance)

        if any(r.action == "deny" and selects(r) for r in rules):
            return False
        return p.vlan == view or any(r.action == "allow" and selects(r) for r in rules)

    def instances(self, view: str, stype: str, vlan: str | None = None) -> set[str]:
        return {
            p.svc.instance
            for p in self.published
            if p.svc.type == stype and (vlan is None or p.vlan == vlan) and self.sees(view, p)
        }

    def types(self, view: str, vlan: str | None = None) -> set[str]:
        """Enumeration lists a type when the view sees an instance of it."""
        return {
            p.svc.type
            for p in self.published
            if (vlan is None or p.vlan == vlan) and self.sees(view, p)
        }

    def host_visible(self, view: str, vlan: str, host: str) -> bool:
        """Rule 6: the target of a visible SRV, or own VLAN / hosts: true, unless denied."""
        if any(self.sees(view, p) for p in self.published if p.vlan == vlan and p.host == host):
            return True
        rules = self._rules(view, vlan, None)
        if any(r.action == "deny" and r.hosts for r in rules):
            return False
        return vlan == view or any(r.action == "allow" and r.hosts for r in rules)

    def vlans_seen(self, view: str) -> list[str]:
        """Browse domain ``b``: the own VLAN first, then the others it sees anything of."""
        hosts = {(p.vlan, p.host) for p in self.published}
        others = sorted(
            v
            for v in VLANS
            if v != view
            and (
                self.types(view, v)
                or any(self.host_visible(view, v, h) for vv, h in hosts if vv == v)
            )
        )
        return [view, *others]


def published() -> list[Published]:
    return [Published(vlan_of(h), hn, s) for h, (hn, svcs) in PUBLISHED.items() for s in svcs]


def vlan_of(lab_host: str) -> str:
    return lab_host.rstrip("0123456789")


def hosts_published() -> list[tuple[str, str, str]]:
    """(lab host, VLAN, avahi host name) of every publisher."""
    return [(h, vlan_of(h), hn) for h, (hn, _) in PUBLISHED.items()]


# --------------------------------------------------------------------------------------------
# DNS helpers: real dig, every reply checked to be a reply


def dig(lab: Lab, ns: str, server: str, port: int, name: str, rtype: str) -> DigResponse:
    """One dig; fails the test on a timeout or any rcode but NOERROR / NXDOMAIN."""
    out = lab.dig(ns, f"@{server}", "-p", str(port), name, rtype, time_s=4, tries=1)
    res = parse_dig(out)
    assert res.status in ("NOERROR", "NXDOMAIN"), f"dig @{server}:{port} {name} {rtype}:\n{out}"
    return res


def dig_view(lab: Lab, view: str, name: str, rtype: str) -> DigResponse:
    return dig(lab, lab.gw, "127.0.0.1", VIEW_PORT[view], name, rtype)


def dig_client(lab: Lab, lab_host: str, name: str, rtype: str, v6: bool = False) -> DigResponse:
    """Asked by a host through its router address: the view is chosen by the source address."""
    h = lab.hosts[lab_host]
    return dig(lab, h.ns, h.router_ipv6 if v6 else h.router_ipv4, 5300, name, rtype)


def rdatas(res: DigResponse, rtype: str) -> list[str]:
    return [r.rdata for r in res.answer if r.rdtype == rtype]


def ptr_instances(res: DigResponse, suffix: str) -> set[str]:
    """Instance labels of the PTR answers; every target must end in ``suffix``."""
    out = set()
    for target in rdatas(res, "PTR"):
        name = dns.name.from_text(target)
        assert name.parent() == dns.name.from_text(suffix), (target, suffix)
        out.add(name.labels[0].decode())
    return out


def ptr_names(res: DigResponse) -> list[str]:
    return [dns.name.from_text(t).to_text() for t in rdatas(res, "PTR")]


def run_parallel(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    with ThreadPoolExecutor(DIG_WORKERS) as pool:
        return list(pool.map(fn, items))


def http_get(lab: Lab, path: str, port: int = HTTP_PORT) -> tuple[int, str]:
    """GET http://127.0.0.1:<port><path> inside the router namespace."""
    sock = netns_socket(lab.gw, socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.sock = sock
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def metric(lab: Lab, name: str) -> float:
    status, text = http_get(lab, "/metrics")
    assert status == 200
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"metric {name} not exported")


# --------------------------------------------------------------------------------------------
# the world: publishers, the policies directory, the gateway


@dataclass
class World:
    gw: GatewayProcess
    policies: Path
    model: Model
    originals: dict[str, bytes]  # policy file name -> content at start


def _missing_in_router_view(lab: Lab) -> list[str]:
    """What the router view (it sees every VLAN) does not answer yet: [] once the cache is
    complete (every PTR, SRV and host address published in the lab)."""
    missing = []
    for vlan in VLANS:
        for stype in TYPES:
            want = {p.svc.instance for p in published() if p.vlan == vlan and p.svc.type == stype}
            r = query(lab.gw, "127.0.0.1", ROUTER_PORT, f"{stype}.{vlan}.home.arpa.", "PTR")
            got = {rr.target.labels[0].decode() for rrset in r.answer for rr in rrset}
            missing += [f"PTR {stype} {i}@{vlan}" for i in sorted(want - got)]
        subs = {p.svc.instance for p in published() if p.vlan == vlan and p.svc.subtypes}
        if subs:
            r = query(
                lab.gw,
                "127.0.0.1",
                ROUTER_PORT,
                f"_universal._sub._ipp._tcp.{vlan}.home.arpa.",
                "PTR",
            )
            got = {rr.target.labels[0].decode() for rrset in r.answer for rr in rrset}
            missing += [f"subtype PTR {i}@{vlan}" for i in sorted(subs - got)]
    names = [
        (f"{_label(p.svc.instance)}.{p.svc.type}.{p.vlan}.home.arpa.", t)
        for p in published()
        for t in ("SRV", "TXT")
    ]
    for lab_host, vlan, hn in hosts_published():
        names += [
            (f"{hn}.{vlan}.home.arpa.", "A"),
            (f"{hn}.{vlan}.home.arpa.", "AAAA"),
            (reverse_v4(lab.hosts[lab_host].ipv4), "PTR"),
        ]
    for name, rtype in names:
        if not query(lab.gw, "127.0.0.1", ROUTER_PORT, name, rtype).answer:
            missing.append(f"{rtype} {name}")
    return missing


def reverse_v4(address: str) -> str:
    return ".".join(reversed(address.split("."))) + ".in-addr.arpa."


def _label(instance: str) -> str:
    return dns.name.Name([instance.encode()]).to_text()


def write_policies(directory: Path) -> dict[str, bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLES / "home-basic.yaml", directory / "home-basic.yaml")
    shutil.copy(EXAMPLES / "deny-examples.yaml", directory / "deny-examples.yaml")
    (directory / "lab-smb-everywhere.yaml").write_text(SMB_EVERYWHERE)
    old = time.time() - 3600  # well outside the watcher's "racy" window (see the SIGHUP test)
    for f in directory.iterdir():
        os.utime(f, (old, old))
    return {f.name: f.read_bytes() for f in directory.iterdir()}


@pytest.fixture(scope="module")
def world(lab: Lab) -> Iterator[World]:
    lab.add_host("iot")  # iot3
    lab.wait_ipv6_ready()
    pubs = []
    for lab_host, (host_name, svcs) in PUBLISHED.items():
        pub = AvahiPublisher(lab, lab.hosts[lab_host], host_name=host_name)
        for s in svcs:
            pub.add_service(
                s.instance, s.type, s.port, [f"name={s.instance}"], subtypes=list(s.subtypes)
            )
        pub.start()
        pubs.append(pub)
    for pub in pubs:
        pub.wait_running()
        assert pub.requested_host_name in pub.logs(), pub.logs()[-2000:]  # no rename
    policies = lab.workdir / "policies"
    originals = write_policies(policies)
    cfg = gateway_config(
        lab,
        policies=str(policies),
        dns={"view_listeners": {"*": [f"127.0.0.1:{ROUTER_PORT}"]}},
        http={"listen": f"127.0.0.1:{HTTP_PORT}"},
    )
    gw = GatewayProcess(lab, cfg)
    gw.start()
    gw.wait_ready()
    missing: list[str] = []

    def complete() -> bool:
        missing[:] = _missing_in_router_view(lab)
        return not missing

    poll_until(
        complete,
        timeout=20,
        interval=0.2,
        message=lambda: f"the router view to see every published record: {missing}",
    )
    yield World(gw, policies, Model(RULES, published()), originals)
    gw.stop()
    for pub in pubs:
        pub.stop()


@pytest.fixture
def restore(lab: Lab, world: World) -> Iterator[World]:
    """A test that edits the policies directory; the original set is back afterwards."""
    yield world
    for f in world.policies.iterdir():
        if f.name not in world.originals:
            f.unlink()
    for name, content in world.originals.items():
        (world.policies / name).write_bytes(content)
    world.gw.signal(signal.SIGHUP)
    # the baseline is back: guests see only the guest printer, policy valid
    poll_until(
        lambda: (
            ptr_instances(dig_view(lab, "guest", "_ipp._tcp.local", "PTR"), "_ipp._tcp.local")
            == {"Guest Printer"}
            and metric(lab, "mdns_gateway_policy_valid") == 1.0
        ),
        timeout=5,
        message="the original policies to be back in force",
    )


# --------------------------------------------------------------------------------------------
# the table is the YAML


def _yaml_rules(path: Path) -> list[Rule]:
    out = []
    for doc in yaml.safe_load_all(path.read_text()):
        spec = doc["spec"]
        inst = spec.get("instances") or {}
        out.append(
            Rule(
                doc["metadata"]["name"],
                spec.get("action", "allow"),
                tuple(spec["from"]),
                tuple(spec["to"]),
                tuple(spec["services"]),
                tuple(inst.get("allow", ["*"])),
                tuple(inst.get("deny", [])),
                bool(spec.get("hosts", False)),
            )
        )
    return out


def test_rules_table_restates_the_yaml() -> None:
    assert _yaml_rules(EXAMPLES / "home-basic.yaml") == list(HOME_BASIC)
    assert _yaml_rules(EXAMPLES / "deny-examples.yaml") == list(DENY_EXAMPLES)
    assert _yaml_rules(EXAMPLES / "airplay-chromecast-into-trusted.yaml") == list(
        AIRPLAY_CHROMECAST
    )
    assert yaml.safe_load(SMB_EVERYWHERE)["metadata"]["name"] == LAB_EXTRA[0].name


def test_model_agrees_with_the_issue() -> None:
    """The independent model says what issue 3 says in words (a check on the checker)."""
    m = Model(RULES, published())
    # trusted sees the IoT VLAN's Chromecasts, AirPlay and printers ...
    assert m.instances("trusted", "_googlecast._tcp", "iot") == {"Living Room TV"}
    assert m.instances("trusted", "_ipp._tcp", "iot") == {"IoT Printer", "Guest Printer"}
    assert m.instances("trusted", "_hap._tcp", "iot") == set()
    # ... the IoT VLAN sees nothing of trusted, guests see only the guest printer (and shares)
    assert m.types("iot", "trusted") == set()
    assert m.instances("guest", "_ipp._tcp") == {"Guest Printer"}
    assert m.types("guest", "trusted") == set()
    # a deny beats an allow: the broad smb allow does not reach iot or guest from trusted
    assert m.instances("iot", "_smb._tcp") == {"Media Share", "Visitor Share"}
    assert m.host_visible("trusted", "iot", "tv") and not m.host_visible("trusted", "iot", "hub")
    assert m.vlans_seen("trusted") == ["trusted", "guest", "iot"]
    assert m.vlans_seen("iot") == ["iot", "guest"]
    assert m.vlans_seen("guest") == ["guest", "iot"]


# --------------------------------------------------------------------------------------------
# what each view sees


PAIRS = list(itertools.product(VLANS, VLANS))  # (view, VLAN the services live on)


def test_local_answers_every_view_and_type(lab: Lab, world: World) -> None:
    """``_type._tcp.local PTR`` asked from a host of each VLAN (view by source address)."""
    client = {"trusted": "trusted2", "iot": "iot2", "guest": "guest2"}
    cases = [(view, stype) for view in VLANS for stype in TYPES]

    def one(case: tuple[str, str]) -> tuple[str, str, set[str], set[str]]:
        view, stype = case
        got = ptr_instances(
            dig_client(lab, client[view], f"{stype}.local", "PTR"), f"{stype}.local"
        )
        return view, stype, got, world.model.instances(view, stype)

    results = run_parallel(one, cases)
    wrong = [(v, t, got, want) for v, t, got, want in results if got != want]
    assert not wrong, wrong
    assert sum(len(w) for *_, w in results) >= 20  # most instances are visible somewhere


def test_local_answers_over_ipv6_client_address(lab: Lab, world: World) -> None:
    for view, client in (("trusted", "trusted1"), ("guest", "guest1")):
        for stype in ("_googlecast._tcp", "_ipp._tcp"):
            got = ptr_instances(
                dig_client(lab, client, f"{stype}.local", "PTR", v6=True), f"{stype}.local"
            )
            assert got == world.model.instances(view, stype), (view, stype)


def test_wide_area_answers_every_pair_and_type(lab: Lab, world: World) -> None:
    """``_type._tcp.<vlan>.home.arpa PTR`` for every ordered (view, VLAN) pair, through the
    view listeners. A type the view sees no instance of does not exist for it: NXDOMAIN, as for
    a type nobody publishes (NOERROR would tell that it is there)."""
    cases = [(view, vlan, stype) for view, vlan in PAIRS for stype in TYPES]

    def one(case: tuple[str, str, str]) -> tuple[tuple[str, str, str], Any, Any]:
        view, vlan, stype = case
        suffix = f"{stype}.{vlan}.home.arpa"
        res = dig_view(lab, view, suffix, "PTR")
        want = world.model.instances(view, stype, vlan)
        return (
            case,
            (ptr_instances(res, suffix), res.status),
            (want, "NOERROR" if want else "NXDOMAIN"),
        )

    wrong = [r for r in run_parallel(one, cases) if r[1] != r[2]]
    assert not wrong, wrong


def test_srv_txt_of_every_instance_in_every_view(lab: Lab, world: World) -> None:
    """An instance's SRV and TXT answer only where the instance is visible; the SRV target is
    rewritten into the instance's VLAN domain."""
    cases = [(view, p) for view in VLANS for p in world.model.published]

    def one(case: tuple[str, Published]) -> tuple[str, str, Any, Any]:
        view, p = case
        name = f"{_label(p.svc.instance)}.{p.svc.type}.{p.vlan}.home.arpa"
        srv = rdatas(dig_view(lab, view, name, "SRV"), "SRV")
        txt = rdatas(dig_view(lab, view, name, "TXT"), "TXT")
        want_srv = [f"0 0 {p.svc.port} {p.host}.{p.vlan}.home.arpa."]
        if world.model.sees(view, p):
            return view, name, (srv, txt), (want_srv, [f'"name={p.svc.instance}"'])
        return view, name, (srv, txt), ([], [])

    wrong = [r for r in run_parallel(one, cases) if r[2] != r[3]]
    assert not wrong, wrong


def test_subtypes_follow_their_parent_type(lab: Lab, world: World) -> None:
    for view, vlan in PAIRS:
        suffix = f"_universal._sub._ipp._tcp.{vlan}.home.arpa"
        res = dig_view(lab, view, suffix, "PTR")
        got = {dns.name.from_text(t).labels[0].decode() for t in rdatas(res, "PTR")}
        want = {
            p.svc.instance
            for p in world.model.published
            if p.vlan == vlan and p.svc.subtypes and world.model.sees(view, p)
        }
        assert got == want, (view, vlan)
    # the glob decides per instance: guests get the guest printer, not the IoT printer
    res = dig_view(lab, "guest", "_universal._sub._ipp._tcp.local", "PTR")
    assert {dns.name.from_text(t).labels[0].decode() for t in rdatas(res, "PTR")} == {
        "Guest Printer"
    }


def test_service_enumeration_every_pair(lab: Lab, world: World) -> None:
    for view in VLANS:
        res = dig_view(lab, view, "_services._dns-sd._udp.local", "PTR")
        got = {
            dns.name.from_text(t).relativize(dns.name.from_text("local.")).to_text()
            for t in rdatas(res, "PTR")
        }
        assert got == world.model.types(view), view
        for vlan in VLANS:
            domain = f"{vlan}.home.arpa"
            res = dig_view(lab, view, f"_services._dns-sd._udp.{domain}", "PTR")
            got = {
                dns.name.from_text(t).relativize(dns.name.from_text(domain)).to_text()
                for t in rdatas(res, "PTR")
            }
            assert got == world.model.types(view, vlan), (view, vlan)


def test_browse_domains_every_view(lab: Lab, world: World) -> None:
    """b lists every VLAN domain the view sees something of (its own first); db/lb only its own.
    Asked in the browse domain and in the reverse zones of the client's subnets (RFC 6763 §11)."""
    client = {"trusted": "trusted2", "iot": "iot2", "guest": "guest2"}
    vid = {"trusted": 10, "iot": 20, "guest": 30}
    for view in VLANS:
        seen = sorted(f"{v}.home.arpa." for v in world.model.vlans_seen(view))
        own = [f"{view}.home.arpa."]
        n = vid[view]
        nibbles = ipaddress.ip_address(f"fd00:{n}::").exploded.replace(":", "")[:16]
        v6_zone = ".".join(reversed(nibbles)) + ".ip6.arpa"
        for zone in ("home.arpa", f"0.{n}.10.in-addr.arpa", v6_zone):
            for label, want in (("b", seen), ("db", own), ("lb", own)):
                name = f"{label}._dns-sd._udp.{zone}"
                # an RRset has no order (dnspython shuffles it on the wire): compare sorted
                assert sorted(ptr_names(dig_client(lab, client[view], name, "PTR"))) == want, name
                assert sorted(ptr_names(dig_view(lab, view, name, "PTR"))) == want, name


def test_host_names_only_as_srv_target_or_with_hosts(lab: Lab, world: World) -> None:
    """A/AAAA and reverse PTR of every publishing host, in every view, .local and wide-area."""
    cases = [(view, h) for view in VLANS for h in hosts_published()]

    def one(case: tuple[str, tuple[str, str, str]]) -> tuple[str, str, Any, Any]:
        view, (lab_host, vlan, hn) = case
        host = lab.hosts[lab_host]
        a_local = rdatas(dig_view(lab, view, f"{hn}.local", "A"), "A")
        a_wide = rdatas(dig_view(lab, view, f"{hn}.{vlan}.home.arpa", "A"), "A")
        aaaa = rdatas(dig_view(lab, view, f"{hn}.{vlan}.home.arpa", "AAAA"), "AAAA")
        rev = rdatas(dig_view(lab, view, reverse_v4(host.ipv4), "PTR"), "PTR")
        got = (a_local, a_wide, host.ipv6 in aaaa, rev)
        if world.model.host_visible(view, vlan, hn):
            want: Any = ([host.ipv4], [host.ipv4], True, [f"{hn}.{vlan}.home.arpa."])
        else:
            want = ([], [], False, [])
        return view, hn, got, want

    results = run_parallel(one, cases)
    wrong = [r for r in results if r[2] != r[3]]
    assert not wrong, wrong
    # the cases that make this test worth having are in the table
    assert any(r[1] == "hub" and r[0] == "trusted" and r[3][0] == [] for r in results)
    assert any(r[1] == "tv" and r[0] == "trusted" and r[3][0] for r in results)


def test_deny_beats_allow_and_instance_globs(lab: Lab, world: World) -> None:
    """The broad smb allow loses to both trusted denies; "*Guest*" (any case) hides guest-tv
    from trusted although home-basic allows _googlecast._tcp, "*Guest Printer*" excepts the
    printer; the guest printer glob lets exactly one IoT printer through to guests."""
    smb = {
        view: ptr_instances(dig_view(lab, view, "_smb._tcp.local", "PTR"), "_smb._tcp.local")
        for view in VLANS
    }
    assert smb == {
        "trusted": {"Laptop Share", "Media Share", "Visitor Share"},
        "iot": {"Media Share", "Visitor Share"},
        "guest": {"Media Share", "Visitor Share"},
    }
    cast = ptr_instances(
        dig_view(lab, "trusted", "_googlecast._tcp.iot.home.arpa", "PTR"),
        "_googlecast._tcp.iot.home.arpa",
    )
    assert cast == {"Living Room TV"}
    iot_cast = ptr_instances(
        dig_view(lab, "iot", "_googlecast._tcp.iot.home.arpa", "PTR"),
        "_googlecast._tcp.iot.home.arpa",
    )
    assert iot_cast == {"Living Room TV", "guest-tv"}  # the deny is for trusted only
    ipp = ptr_instances(
        dig_view(lab, "trusted", "_ipp._tcp.iot.home.arpa", "PTR"), "_ipp._tcp.iot.home.arpa"
    )
    assert ipp == {"IoT Printer", "Guest Printer"}
    assert ptr_instances(dig_view(lab, "guest", "_ipp._tcp.local", "PTR"), "_ipp._tcp.local") == {
        "Guest Printer"
    }


def test_questions_are_not_asked_where_the_view_may_not_see_the_answer(
    lab: Lab, world: World
) -> None:
    """A cache miss becomes an mDNS question only on VLANs where the asking view may see the
    answer: a guest's question for a type or instance it may not see never reaches the IoT
    VLAN (the query leak of avahi's filters, avahi#764)."""
    gw_addr = lab.vlans["iot"].ipv4
    sniffer = Sniffer(lab.hosts["iot2"])
    try:
        t0 = time.monotonic()
        hidden = [
            ("guest", "_ssh._tcp.local", "PTR"),  # no policy lets guests see IoT ssh
            ("guest", "Secret Printer._ipp._tcp.iot.home.arpa", "SRV"),
        ]  # glob says no
        shown = [
            ("trusted", "_ipps._tcp.local", "PTR"),  # home-basic: iot -> trusted
            ("guest", "Guest Printer 2._ipp._tcp.iot.home.arpa", "SRV"),
        ]  # glob says yes
        for view, name, rtype in hidden + shown:
            assert rdatas(dig_view(lab, view, name, rtype), rtype) == []
        for label in (b"_ipps", b"Guest Printer 2"):
            sniffer.wait(
                lambda d, label=label: d.src == gw_addr and label in d.data,
                timeout=3,
                t0=t0,
                what=f"the gateway's question for {label!r} on iot",
            )
        for label in (b"_ssh", b"Secret Printer"):
            assert sniffer.since(t0, src=[gw_addr], contains=label) == [], label
    finally:
        sniffer.close()


def test_additional_records_stay_inside_the_view(lab: Lab, world: World) -> None:
    """A PTR answer's additional section carries only visible SRV/TXT/addresses (RFC 6763 §12)."""
    res = dig_view(lab, "guest", "_ipp._tcp.iot.home.arpa", "PTR")
    names = {r.name for r in res.additional}
    assert "Guest\\032Printer._ipp._tcp.iot.home.arpa." in names
    assert "guestbox.iot.home.arpa." in names
    assert not any("IoT" in n or n.startswith("tv.") for n in names), names


def test_explain_over_http_names_the_deciding_policy(lab: Lab, world: World) -> None:
    status, body = http_get(
        lab, "/api/explain?view=trusted&vlan=iot&service=guest-tv._googlecast._tcp"
    )
    assert status == 200, body
    data = json.loads(body)
    assert data["visible"] is False
    assert "denied by policy hide-guest-devices-from-trusted" in data["text"]
    assert "would be allowed by policy home-media-and-printers-for-trusted" in data["text"]
    status, body = http_get(lab, "/api/policies")
    data = json.loads(body)
    assert data["valid"] is True
    assert {p["name"] for p in data["policies"]} == {r.name for r in RULES}
    status, body = http_get(lab, "/api/explain?view=trusted&vlan=nowhere&service=_ipp._tcp")
    assert status == 400 and "nowhere" in body


# --------------------------------------------------------------------------------------------
# hot reload, invalid files, SIGHUP


GUEST_PRINTER_GLOB = 'allow: ["Guest Printer*"]'


class QueryLoad:
    """A thread asking through CoreDNS-like clients, a bounded number of times, checking every
    reply: ``stable`` queries (UDP) must always get exactly their answer, ``moving`` ones (UDP and
    a pooled TCP connection in turn) one of two."""

    def __init__(
        self,
        lab: Lab,
        stable: tuple[str, str, set[str]],
        moving: tuple[str, str, set[str], set[str]],
        max_queries: int = 4000,
        max_seconds: float = 60.0,
    ) -> None:
        self.stable = stable
        self.moving = moving
        self.max_queries = max_queries
        self.max_seconds = max_seconds
        self.factory = lab.socket_factory(lab.gw)
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.counts = {"stable": 0, "old": 0, "new": 0}
        self.first_new: float | None = None
        self.thread = threading.Thread(target=self._run, name="query-load", daemon=True)

    def _check(
        self, fc: ForwardClient, view: str, qname: str, tcp: bool = False
    ) -> set[str] | None:
        reply = fc.exchange(dns.message.make_query(qname, "PTR"), tcp=tcp)
        if reply.rcode() != dns.rcode.NOERROR:
            self.errors.append(f"{view} {qname}: {dns.rcode.to_text(reply.rcode())}")
            return None
        return {rr.target.labels[0].decode() for rrset in reply.answer for rr in rrset}

    def _run(self) -> None:
        view_s, qname_s, want_s = self.stable
        view_m, qname_m, old, new = self.moving
        clients = {
            v: ForwardClient("127.0.0.1", VIEW_PORT[v], socket_factory=self.factory)
            for v in {view_s, view_m}
        }
        end = time.monotonic() + self.max_seconds
        try:
            for i in range(self.max_queries // 2):
                if self.stop.is_set() or time.monotonic() > end:
                    break
                got = self._check(clients[view_s], view_s, qname_s)
                if got is not None:
                    self.counts["stable"] += 1
                    if got != want_s:
                        self.errors.append(f"{view_s} {qname_s}: {sorted(got)}")
                got = self._check(clients[view_m], view_m, qname_m, tcp=i % 2 == 1)
                if got == old:
                    self.counts["old"] += 1
                elif got == new:
                    self.counts["new"] += 1
                    if self.first_new is None:
                        self.first_new = time.monotonic()
                elif got is not None:
                    self.errors.append(f"{view_m} {qname_m}: {sorted(got)}")
        except Exception as exc:  # reported by the test
            self.errors.append(f"load thread: {exc!r}")
        finally:
            for fc in clients.values():
                fc.close()
            self.servfail = sum(fc.stats.servfail for fc in clients.values())
            self.formerr = sum(fc.stats.formerr for fc in clients.values())
            self.failed_attempts = sum(fc.stats.failed_attempts for fc in clients.values())

    def __enter__(self) -> QueryLoad:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(self.max_seconds + 10)
        assert not self.thread.is_alive()


def _guest_ipp(lab: Lab) -> set[str]:
    return ptr_instances(dig_view(lab, "guest", "_ipp._tcp.local", "PTR"), "_ipp._tcp.local")


def test_hot_reload_under_query_load_loses_no_answers(lab: Lab, restore: World) -> None:
    world = restore
    home = world.policies / "home-basic.yaml"
    text = home.read_text()
    assert text.count(GUEST_PRINTER_GLOB) == 1
    smb_trusted = world.model.instances("trusted", "_smb._tcp")
    stable = ("trusted", "_smb._tcp.local.", smb_trusted)
    moving = ("guest", "_ipp._tcp.local.", {"Guest Printer"}, {"Guest Printer", "IoT Printer"})
    with QueryLoad(lab, stable, moving) as load:
        poll_until(lambda: load.counts["old"] >= 20, timeout=10, message="load to run")
        # rewrite in place, in two writes, as an editor without atomic saves does
        new = text.replace(GUEST_PRINTER_GLOB, 'allow: ["*Printer*"]')
        with home.open("w") as f:
            f.write(new[: len(new) // 2])
            f.flush()
            f.write(new[len(new) // 2 :])
        written = time.monotonic()
        poll_until(
            lambda: _guest_ipp(lab) == {"Guest Printer", "IoT Printer"},
            timeout=2.0,
            interval=0.05,
            message="the new policy to show within 2 s",
        )
        poll_until(lambda: load.counts["new"] >= 20, timeout=10, message="load after reload")
    assert not load.errors, load.errors[:20]
    assert load.servfail == 0 and load.formerr == 0 and load.failed_attempts == 0
    assert load.first_new is not None and load.first_new - written < 2.0
    assert load.counts["stable"] >= 40
    assert world.gw.running and "Traceback" not in world.gw.logs()
    # and the other views did not move: trusted still sees both IoT printers, iot none of trusted
    assert ptr_instances(
        dig_view(lab, "trusted", "_ipp._tcp.iot.home.arpa", "PTR"), "_ipp._tcp.iot.home.arpa"
    ) == {"IoT Printer", "Guest Printer"}
    assert ptr_instances(dig_view(lab, "iot", "_ipp._tcp.local", "PTR"), "_ipp._tcp.local") == {
        "IoT Printer",
        "Guest Printer",
    }


def test_hot_reload_new_file_hosts_true(lab: Lab, restore: World) -> None:
    """Adding airplay-chromecast-into-trusted.yaml (hosts: true) shows the IoT hub's host name
    to trusted within 2 s; deleting it hides it again."""
    world = restore
    assert rdatas(dig_view(lab, "trusted", "hub.iot.home.arpa", "A"), "A") == []
    shutil.copy(EXAMPLES / "airplay-chromecast-into-trusted.yaml", world.policies)
    hub = lab.hosts["iot3"].ipv4
    poll_until(
        lambda: rdatas(dig_view(lab, "trusted", "hub.iot.home.arpa", "A"), "A") == [hub],
        timeout=2.0,
        message="hosts: true to show the hub within 2 s",
    )
    model = Model(RULES + AIRPLAY_CHROMECAST, published())
    assert model.host_visible("trusted", "iot", "hub")
    assert not model.host_visible("guest", "iot", "hub")
    assert rdatas(dig_view(lab, "guest", "hub.iot.home.arpa", "A"), "A") == []
    # hosts: true shows host names, not services: the hub's HomeKit service stays hidden
    assert rdatas(dig_view(lab, "trusted", "_hap._tcp.iot.home.arpa", "PTR"), "PTR") == []
    (world.policies / "airplay-chromecast-into-trusted.yaml").unlink()
    poll_until(
        lambda: rdatas(dig_view(lab, "trusted", "hub.iot.home.arpa", "A"), "A") == [],
        timeout=2.0,
        message="the hub to be hidden again within 2 s",
    )


def test_deny_beats_own_vlan_default_after_reload(lab: Lab, restore: World) -> None:
    world = restore
    assert "Visitor Share" in _smb(lab, "guest")
    (world.policies / "zz-guest-shares.yaml").write_text(
        "apiVersion: mdnsgateway.io/v1alpha1\nkind: ServicePolicy\n"
        "metadata: {name: no-shares-for-guests}\n"
        "spec: {from: [guest], to: [guest], services: [_smb._tcp], action: deny}\n"
    )
    poll_until(
        lambda: _smb(lab, "guest") == {"Media Share"},
        timeout=2.0,
        message="the deny to hide the guests' own share within 2 s",
    )
    assert "Visitor Share" in _smb(lab, "trusted")  # other views unaffected


def _smb(lab: Lab, view: str) -> set[str]:
    return ptr_instances(dig_view(lab, view, "_smb._tcp.local", "PTR"), "_smb._tcp.local")


BROKEN = """\
apiVersion: mdnsgateway.io/v1alpha1
kind: ServicePolicy
metadata: {name: fine}
spec: {from: [iot], to: [guest], services: [_hap._tcp]}
---
apiVersion: mdnsgateway.io/v1alpha1
kind: ServicePolicy
metadata: {name: typo}
spec: {from: [iot], to: [gust], services: [_googlecast._tcp]}
"""


def _rejections(gw: GatewayProcess) -> int:
    return len(re.findall(r"policies rejected, the previous set stays in force", gw.logs()))


def test_invalid_file_leaves_the_old_policy_working(lab: Lab, restore: World) -> None:
    world = restore
    gw = world.gw
    before = _rejections(gw)
    assert metric(lab, "mdns_gateway_policy_valid") == 1.0
    # a valid edit and an invalid new file together: the whole new set is rejected
    home = world.policies / "home-basic.yaml"
    home.write_text(home.read_text().replace(GUEST_PRINTER_GLOB, 'allow: ["*Printer*"]'))
    (world.policies / "zz-broken.yaml").write_text(BROKEN)
    poll_until(lambda: _rejections(gw) > before, timeout=3.0, message="the rejection log")
    logs = gw.logs()
    assert re.search(
        r"zz-broken\.yaml: document 2 \(typo\): spec\.to\[0\]: unknown VLAN "
        r"'gust'; fix: .*did you mean 'guest'",
        logs,
    ), logs[-3000:]
    assert metric(lab, "mdns_gateway_policy_valid") == 0.0
    assert metric(lab, "mdns_gateway_policy_resources") == len(RULES)
    data = json.loads(http_get(lab, "/api/policies")[1])
    assert data["valid"] is False and "zz-broken.yaml" in data["error"]
    # the old policy is in force and answers: nothing of the new set applied
    assert _guest_ipp(lab) == {"Guest Printer"}
    assert rdatas(dig_view(lab, "guest", "_hap._tcp.iot.home.arpa", "PTR"), "PTR") == []
    assert world.gw.running
    # fixing the file applies the whole set
    (world.policies / "zz-broken.yaml").write_text(BROKEN.replace("[gust]", "[guest]"))
    poll_until(
        lambda: _guest_ipp(lab) == {"Guest Printer", "IoT Printer"},
        timeout=2.0,
        message="the fixed set to apply within 2 s",
    )
    assert ptr_instances(
        dig_view(lab, "guest", "_hap._tcp.iot.home.arpa", "PTR"), "_hap._tcp.iot.home.arpa"
    ) == {"Hue Bridge"}
    assert metric(lab, "mdns_gateway_policy_valid") == 1.0


def test_removing_the_invalid_file_makes_the_set_valid_again(lab: Lab, restore: World) -> None:
    """Back to exactly the set in force: the gateway must say the policies are valid again."""
    world = restore
    before = _rejections(world.gw)
    (world.policies / "zz-broken.yaml").write_text(BROKEN)
    poll_until(lambda: _rejections(world.gw) > before, timeout=3.0, message="the rejection")
    assert metric(lab, "mdns_gateway_policy_valid") == 0.0
    (world.policies / "zz-broken.yaml").unlink()
    poll_until(
        lambda: metric(lab, "mdns_gateway_policy_valid") == 1.0,
        timeout=2.0,
        message="policy_valid 1 once the bad file is gone",
    )
    assert json.loads(http_get(lab, "/api/policies")[1])["error"] is None
    assert _guest_ipp(lab) == {"Guest Printer"}


SIGHUP_A = """\
# {pad}
apiVersion: mdnsgateway.io/v1alpha1
kind: ServicePolicy
metadata: {{name: lab-hub}}
spec: {{from: [iot], to: [{to}], services: [_hap._tcp]}}
"""


def _hap_iot(lab: Lab, view: str) -> set[str]:
    return ptr_instances(
        dig_view(lab, view, "_hap._tcp.iot.home.arpa", "PTR"), "_hap._tcp.iot.home.arpa"
    )


def test_sighup_reloads_at_once(lab: Lab, restore: World) -> None:
    """SIGHUP reloads even what polling cannot see (a same-size rewrite that keeps the old
    mtime and inode, as ``cp -p`` over the file does), and reports a standing error again."""
    world = restore
    gw = world.gw
    extra = world.policies / "zz-sighup.yaml"
    extra.write_text(SIGHUP_A.format(pad="-" * 8, to="guest"))
    old = time.time() - 3600  # outside the poller's 2 s "racy" window: it trusts stat
    os.utime(extra, (old, old))
    st = extra.stat()
    poll_until(
        lambda: _hap_iot(lab, "guest") == {"Hue Bridge"},
        timeout=2.0,
        message=lambda: f"the new file to apply by polling {gw.logs()[-3000:]}",
    )
    b = SIGHUP_A.format(pad="-" * (8 - len("trusted") + len("guest")), to="trusted")
    assert len(b) == st.st_size
    with extra.open("r+") as f:
        f.write(b)
    os.utime(extra, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (extra.stat().st_ino, extra.stat().st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    # polling (every 0.5 s; a change it sees applies within ~1 s) keeps the old set; this
    # bounded look proves the reload below is SIGHUP's
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        assert _hap_iot(lab, "guest") == {"Hue Bridge"}, (
            "polling saw a same-size rewrite with the old mtime: rewrite this test's premise"
        )
    gw.signal(signal.SIGHUP)
    poll_until(
        lambda: _hap_iot(lab, "trusted") == {"Hue Bridge"},
        timeout=1.0,
        message="SIGHUP to apply the rewrite at once",
    )
    assert _hap_iot(lab, "guest") == set()
    # a standing error is reported once by polling, and again on every SIGHUP
    before = _rejections(gw)
    (world.policies / "zz-broken.yaml").write_text(BROKEN)
    poll_until(lambda: _rejections(gw) == before + 1, timeout=3.0, message="the rejection")
    gw.signal(signal.SIGHUP)
    poll_until(lambda: _rejections(gw) == before + 2, timeout=2.0, message="SIGHUP's rejection")
    assert _hap_iot(lab, "trusted") == {"Hue Bridge"}  # the last good set stays
    assert metric(lab, "mdns_gateway_policy_valid") == 0.0
    assert gw.running
