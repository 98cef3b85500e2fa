"""DHCP lease host names: the parsers (dnsmasq, Kea v4 and v6), host labels, who gets a name,
the watcher on real files (rewritten in place, renamed over, appended, expired, malformed) and
the names in DNS on a gateway without sockets."""

from __future__ import annotations

import asyncio
import ipaddress
import os
from pathlib import Path

import dns.name
import dns.rdatatype
import pytest

from bridge.announce.records import LeaseHost
from bridge.app import Gateway
from bridge.config import ConfigError, from_dict
from bridge.configsections import LeaseFile
from bridge.dhcp.hostnames import host_label, lease_hosts
from bridge.dhcp.leases import Lease, parse_dnsmasq, parse_kea
from bridge.dhcp.watch import LeaseWatcher
from bridge.mdns.links import Link

N = dns.name.from_text
A, AAAA, PTR = dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.PTR
DOMAIN = N("trusted.home.arpa.")

# as dnsmasq 2.89 writes it (an IPv4 lease, then the server DUID and an IPv6 lease)
DNSMASQ = """\
1764650000 52:54:00:aa:bb:01 10.10.0.100 laptop 01:52:54:00:aa:bb:01
1764650100 52:54:00:aa:bb:02 10.10.0.101 * *
0 52:54:00:aa:bb:03 10.10.0.102 printer *
duid 00:01:00:01:2e:aa:bb:cc:52:54:00:00:00:01
1764650000 305419896 fd00:10::100 laptop 00:04:aa:bb:cc:dd
"""

# as Kea 2.2 (memfile) writes it: a lease, its renewal, a release (lifetime 0), a declined one
KEA4 = """\
address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context
10.10.0.150,52:54:00:aa:bb:10,01:52:54:00:aa:bb:10,3600,1764650000,1,0,0,tablet,0,
10.10.0.151,52:54:00:aa:bb:11,,3600,1764650000,1,0,0,phone,0,
10.10.0.150,52:54:00:aa:bb:10,01:52:54:00:aa:bb:10,3600,1764653600,1,0,0,tablet,0,
10.10.0.151,52:54:00:aa:bb:11,,0,1764650100,1,0,0,phone,0,
10.10.0.152,52:54:00:aa:bb:12,,3600,1764650000,1,0,0,declined,1,
10.10.0.153,52:54:00:aa:bb:13,,4294967295,0,1,0,0,forever,0,
10.10.0.154,52:54:00:aa:bb:14,,3600,1764650000,1,0,0,a&#x2cb,0,
10.10.0.155,52:54:00:aa:bb:15,,36
"""

KEA6 = """\
address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,prefix_len,fqdn_fwd,fqdn_rev,hostname,hwaddr,state,user_context,hwtype,hwaddr_source
fd00:10::150,00:03:00:01:52:54:00:aa:bb:10,3600,1764650000,1,1800,0,1,128,0,0,tablet,,0,,,
fd00:10:0:100::,00:03:00:01:52:54:00:aa:bb:10,3600,1764650000,1,1800,2,2,56,0,0,tablet,,0,,,
"""


def test_dnsmasq_leases() -> None:
    parsed = parse_dnsmasq(DNSMASQ)
    assert parsed.malformed == 0
    by = {lease.address: lease for lease in parsed.leases}
    assert by["10.10.0.100"] == Lease("10.10.0.100", "laptop", "52:54:00:aa:bb:01", 1764650000.0)
    assert by["10.10.0.101"].hostname == ""
    assert by["10.10.0.102"].expires is None  # 0: infinite
    assert by["fd00:10::100"] == Lease("fd00:10::100", "laptop", "00:04:aa:bb:cc:dd", 1764650000.0)


def test_dnsmasq_bad_lines_are_counted_and_skipped() -> None:
    text = "garbage\n1 2\nx 52:54:00:aa:bb:01 10.10.0.1 a *\n1 m 10.10.0.999 b *\n" + DNSMASQ
    parsed = parse_dnsmasq(text + "1764650000 52:54:00:aa:bb:09 10.10.0.109 half")
    assert parsed.malformed == 4
    assert len(parsed.leases) == 5


def test_kea_v4_last_row_wins_releases_and_declines_drop() -> None:
    parsed = parse_kea(KEA4)
    by = {lease.address: lease for lease in parsed.leases}
    assert sorted(by) == ["10.10.0.150", "10.10.0.153", "10.10.0.154"]
    assert by["10.10.0.150"].expires == 1764653600.0 and by["10.10.0.150"].hostname == "tablet"
    assert by["10.10.0.153"].expires is None  # 0xffffffff: infinite
    assert by["10.10.0.154"].hostname == "a,b"  # Kea's escaped comma
    assert parsed.malformed == 1  # the half-written last row


def test_kea_v6_addresses_and_no_prefixes() -> None:
    parsed = parse_kea(KEA6)
    assert [(x.address, x.hostname, x.client) for x in parsed.leases] == [
        ("fd00:10::150", "tablet", "00:03:00:01:52:54:00:aa:bb:10")
    ]


def test_kea_without_a_header_reads_nothing() -> None:
    parsed = parse_kea(KEA4.split("\n", 1)[1])
    assert parsed.leases == () and parsed.malformed == 8


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("laptop", ("laptop", None)),
        ("Laptop", ("laptop", None)),
        ("my_pc", ("my-pc", None)),
        ("Living Room", ("living-room", None)),
        ("laptop.trusted.home.arpa.", ("laptop", None)),
        ("laptop.local", ("laptop", None)),
        ("laptop.evil.example", (None, "dot")),
        ("x" * 63, ("x" * 63, None)),
        ("x" * 64, (None, "too_long")),
        ("x" * 300, (None, "too_long")),
        ("bad\x00name", (None, "invalid")),
        ("bell\x07", (None, "invalid")),
        ("-dash", (None, "invalid")),
        ("café", (None, "invalid")),
        ("ns", (None, "reserved")),
        ("", (None, None)),
    ],
)
def test_host_labels(raw: str, want: tuple[str | None, str | None]) -> None:
    assert host_label(raw, DOMAIN, ("ns",)) == want


def _vlan_of(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if ip in ipaddress.ip_network("10.10.0.0/24") or ip in ipaddress.ip_network("fd00:10::/64"):
        return "trusted"
    if ip in ipaddress.ip_network("10.20.0.0/24"):
        return "iot"
    return None


DOMAINS = {"trusted": DOMAIN, "iot": N("iot.home.arpa.")}


def test_one_name_per_client_the_holder_keeps_it() -> None:
    leases = {
        "a": [
            Lease("10.10.0.100", "laptop", "mac-1", None),
            Lease("fd00:10::100", "laptop", "duid-1", None),
            Lease("10.10.0.101", "laptop", "mac-2", None),  # another device's name
            Lease("10.20.0.5", "laptop", "mac-3", None),  # another VLAN: a name of its own
            Lease("10.99.0.1", "stray", "mac-4", None),
            Lease("10.10.0.102", "old", "mac-5", 50.0),  # expired
        ]
    }
    hosts, ignored, owners = lease_hosts(leases, _vlan_of, DOMAINS, 100.0, {})
    assert hosts == [
        LeaseHost("iot", "laptop", ("10.20.0.5",), "a"),
        LeaseHost("trusted", "laptop", ("10.10.0.100", "fd00:10::100"), "a"),
    ]
    assert sorted((i.address, i.reason) for i in ignored) == [
        ("10.10.0.101", "duplicate"),
        ("10.99.0.1", "no_vlan"),
    ]
    # the first device's lease goes; the second now holds the name...
    leases["a"] = leases["a"][2:]
    hosts, _, owners = lease_hosts(leases, _vlan_of, DOMAINS, 100.0, owners)
    assert LeaseHost("trusted", "laptop", ("10.10.0.101",), "a") in hosts
    # ... and keeps it when the first comes back
    leases["a"].insert(0, Lease("10.10.0.100", "laptop", "mac-1", None))
    hosts, ignored, _ = lease_hosts(leases, _vlan_of, DOMAINS, 100.0, owners)
    assert LeaseHost("trusted", "laptop", ("10.10.0.101",), "a") in hosts
    assert ("10.10.0.100", "duplicate") in {(i.address, i.reason) for i in ignored}


# --- the watcher on real files ---------------------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _watcher(files: list[LeaseFile], clock: Clock) -> tuple[LeaseWatcher, list[list[LeaseHost]]]:
    got: list[list[LeaseHost]] = []
    w = LeaseWatcher(files, _vlan_of, DOMAINS, got.append, reserved=("ns",), wall_clock=clock)
    return w, got


def _names(hosts: list[LeaseHost]) -> dict[str, tuple[str, ...]]:
    return {h.host: h.addresses for h in hosts}


def test_watcher_follows_rewrites_renames_appends_and_expiry(tmp_path: Path) -> None:
    dnsmasq, kea = tmp_path / "dnsmasq.leases", tmp_path / "kea-leases4.csv"
    header = KEA4.split("\n", 1)[0] + "\n"
    dnsmasq.write_text("1000 52:54:00:00:00:01 10.10.0.100 laptop *\n")
    kea.write_text(header)
    clock = Clock(500.0)
    w, got = _watcher([LeaseFile("dnsmasq", dnsmasq), LeaseFile("kea", kea)], clock)

    async def main() -> None:
        await w.poll()
        assert _names(got[-1]) == {"laptop": ("10.10.0.100",)}
        # dnsmasq rewrites its file in place (same inode), adding a lease
        with dnsmasq.open("r+") as f:
            f.truncate(0)
            f.write(
                "1000 52:54:00:00:00:01 10.10.0.100 laptop *\n"
                "2000 52:54:00:00:00:02 10.10.0.101 desk *\n"
            )
        os.utime(dnsmasq, ns=(1, 2_000_000_000))  # whatever the clock's tick, the stat moves
        await w.poll()
        assert _names(got[-1]) == {"laptop": ("10.10.0.100",), "desk": ("10.10.0.101",)}
        # Kea appends a lease, then its cleanup renames a compacted file over the old
        with kea.open("a") as f:
            f.write("10.10.0.150,52:54:00:aa:bb:10,,3600,3000,1,0,0,tablet,0,\n")
        await w.poll()
        assert "tablet" in _names(got[-1])
        fresh = tmp_path / "kea-leases4.csv.completed"
        fresh.write_text(header + "10.10.0.151,52:54:00:aa:bb:11,,3600,3000,1,0,0,phone,0,\n")
        fresh.rename(kea)
        await w.poll()
        assert set(_names(got[-1])) == {"laptop", "desk", "phone"}
        # the laptop's lease expires: gone without a change of the file
        clock.now = 1500.0
        await w.poll()
        assert set(_names(got[-1])) == {"desk", "phone"}
        # the file vanishes: its last leases stay; a malformed rewrite is counted
        dnsmasq.unlink()
        await w.poll()
        assert "desk" in _names(got[-1]) and w.read_errors[str(dnsmasq)] == 1
        dnsmasq.write_text("1\x00\x00garbage\n2000 52:54:00:00:00:02 10.10.0.101 desk *\n")
        await w.poll()
        assert w.files[0].malformed == 1 and "desk" in _names(got[-1])

    asyncio.run(main())
    assert w.reads >= 6


def test_watcher_counts_hostile_names_once(tmp_path: Path) -> None:
    dnsmasq = tmp_path / "dnsmasq.leases"
    lines = [
        "2000 52:54:00:00:00:01 10.10.0.100 laptop *",
        "2000 52:54:00:00:00:02 10.10.0.101 " + "x" * 300 + " *",
        "2000 52:54:00:00:00:03 10.10.0.102 evil.example.com *",
        "2000 52:54:00:00:00:04 10.10.0.103 laptop *",
        "2000 52:54:00:00:00:05 10.10.0.104 ns *",
    ]
    dnsmasq.write_bytes(
        ("\n".join(lines) + "\n").encode() + b"2000 52:54:00:00:00:06 10.10.0.105 a\x01b *\n"
    )
    w, got = _watcher([LeaseFile("dnsmasq", dnsmasq)], Clock(100.0))

    async def main() -> None:
        await w.poll()
        await w.poll()

    asyncio.run(main())
    assert _names(got[-1]) == {"laptop": ("10.10.0.100",)}
    assert dict(w.ignored) == {"too_long": 1, "dot": 1, "duplicate": 1, "reserved": 1, "invalid": 1}


# --- config ---------------------------------------------------------------------------------------


def test_config_as_in_the_issue(tmp_path: Path) -> None:
    cfg = from_dict(
        {
            "vlans": {"trusted": {"interface": "br10"}},
            "dhcp": {
                "leases": [
                    {"format": "dnsmasq", "path": "/var/lib/misc/dnsmasq.leases"},
                    {"format": "kea", "path": "/var/lib/kea/kea-leases4.csv"},
                    {"format": "kea", "path": "/var/lib/kea/kea-leases6.csv"},
                ],
                "publish_mdns": False,
            },
        },
        "c.yaml",
    )
    assert cfg.dhcp is not None and not cfg.dhcp.publish_mdns
    assert [(f.format, str(f.path)) for f in cfg.dhcp.leases] == [
        ("dnsmasq", "/var/lib/misc/dnsmasq.leases"),
        ("kea", "/var/lib/kea/kea-leases4.csv"),
        ("kea", "/var/lib/kea/kea-leases6.csv"),
    ]


@pytest.mark.parametrize(
    ("dhcp", "key"),
    [
        ({"leases": []}, "dhcp.leases"),
        ({"leases": [{"format": "isc", "path": "/x"}]}, "dhcp.leases[0].format"),
        ({"leases": [{"format": "kea"}]}, "dhcp.leases[0].path"),
        ({"leases": [{"format": "kea", "path": "/x", "size": 1}]}, "dhcp.leases[0].size"),
        ({"leases": [{"format": "kea", "path": "/x"}], "publish_mdns": "yes"}, "dhcp.publish_mdns"),
        (
            {"leases": [{"format": "kea", "path": "/x"}, {"format": "kea", "path": "/x"}]},
            "dhcp.leases[1].path",
        ),
    ],
)
def test_config_errors_name_the_key(dhcp: object, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_dict({"vlans": {"trusted": {"interface": "br10"}}, "dhcp": dhcp}, "c.yaml")
    assert any(p.startswith(f"c.yaml: {key}: ") and "; fix: " in p for p in info.value.problems), (
        info.value.problems
    )


# --- the names in DNS ------------------------------------------------------------------------


def _link(vlan: str, n: int, index: int) -> Link:
    return Link(
        vlan,
        f"br{n}",
        index,
        True,
        (ipaddress.ip_network(f"10.{n}.0.0/24"), ipaddress.ip_network(f"fd00:{n}::/64")),
        (f"10.{n}.0.1", f"fd00:{n}::1"),
        True,
        True,
    )


def _gateway(tmp_path: Path, publish_mdns: bool = False) -> Gateway:
    gw = Gateway(
        from_dict(
            {
                "vlans": {"trusted": {"interface": "br10"}, "iot": {"interface": "br20"}},
                "dhcp": {
                    "leases": [{"format": "dnsmasq", "path": str(tmp_path / "leases")}],
                    "publish_mdns": publish_mdns,
                },
            },
            str(tmp_path / "config.yaml"),
        )
    )
    gw.links.by_vlan = {"trusted": _link("trusted", 10, 7), "iot": _link("iot", 20, 8)}
    gw.links.by_index = {link.ifindex: link for link in gw.links.by_vlan.values()}
    gw.resolver.zones = gw._zones()
    gw.publisher.shell.send = lambda data, ifindex, family, dest: True
    return gw


def _answer(gw: Gateway, view: str, qname: str, qtype: int) -> list[str]:
    ans = gw.resolver.resolve(gw.views(gw.engine)[view], N(qname), qtype, 0.0)
    return sorted(r.to_text() for rrset in ans.answer for r in rrset)


def test_lease_names_in_dns_and_a_device_name_wins(tmp_path: Path) -> None:
    (tmp_path / "leases").write_text(
        "0 52:54:00:00:00:01 10.10.0.100 laptop *\n"
        "duid 00:01\n"
        "0 1 fd00:10::100 laptop 00:04:01\n"
        "0 52:54:00:00:00:02 10.20.0.7 speaker *\n"
    )

    async def main() -> None:
        gw = _gateway(tmp_path)
        assert gw.leases is not None
        gw.publisher.start(asyncio.get_running_loop())
        await gw.leases.poll()
        assert _answer(gw, "trusted", "laptop.trusted.home.arpa.", A) == ["10.10.0.100"]
        assert _answer(gw, "trusted", "laptop.trusted.home.arpa.", AAAA) == ["fd00:10::100"]
        assert _answer(gw, "trusted", "100.0.10.10.in-addr.arpa.", PTR) == [
            "laptop.trusted.home.arpa."
        ]
        assert _answer(gw, "iot", "speaker.iot.home.arpa.", A) == ["10.20.0.7"]
        # other views see lease hosts only where a policy allows hosts (none here)
        assert _answer(gw, "iot", "laptop.trusted.home.arpa.", A) == []
        assert gw.publisher.responder.registrations() == []  # publish_mdns: false
        origin = gw.publisher.origin("trusted", N("laptop.local."))
        assert origin is not None and origin.origin == "lease"
        # the speaker announces its own name over mDNS: its name wins
        now = asyncio.get_running_loop().time()
        gw.store.add(
            "iot", N("speaker.local."), A, _a("10.20.0.8"), 120, now, True, source="10.20.0.8"
        )
        await gw.leases.poll()
        assert _answer(gw, "iot", "speaker.iot.home.arpa.", A) == ["10.20.0.8"]
        assert gw.publisher.yielded == 1
        gw.publisher.stop()
        assert _answer(gw, "trusted", "laptop.trusted.home.arpa.", A) == []

    asyncio.run(main())


def _a(address: str) -> dns.rdata.Rdata:
    import dns.rdtypes.IN.A

    return dns.rdtypes.IN.A.A(dns.rdataclass.IN, A, address)


def test_publish_mdns_registers_and_an_announcement_takes_the_lease_address(tmp_path: Path) -> None:
    (tmp_path / "leases").write_text("0 52:54:00:00:00:01 10.10.0.100 laptop *\n")

    async def main() -> None:
        gw = _gateway(tmp_path, publish_mdns=True)
        assert gw.leases is not None
        pub = gw.publisher
        pub.start(asyncio.get_running_loop())
        await gw.leases.poll()
        assert pub.responder.registrations() == [("trusted", "lease:laptop")]
        from bridge.policy.loading import parse_resource_text

        ann = parse_resource_text(
            "apiVersion: mdnsgateway.io/v1alpha1\nkind: ServiceAnnouncement\n"
            "metadata: {name: share}\nspec: {vlans: [trusted], instance: Laptop Share,"
            " type: _smb._tcp, host: laptop, port: 445}\n",
            "a.yaml",
            ("trusted", "iot"),
        ).announcements
        pub.set_announcements(ann)
        # the announcement publishes the host with the lease's address, the lease not twice
        assert pub.responder.registrations() == [("trusted", "announcement:share")]
        spec = pub.wants[("trusted", "announcement:share")].spec
        assert spec.addresses == ("10.10.0.100",)
        pub.stop()

    asyncio.run(main())


def test_the_readme_example_is_the_issues_and_loads() -> None:
    import re

    from tests.support.cli import ROOT

    readme = (ROOT / "README.md").read_text()
    m = re.search(r"## DHCP lease host names\n.*?```yaml\n(.*?)```", readme, re.S)
    assert m is not None
    import yaml

    raw = yaml.safe_load(m.group(1))
    cfg = from_dict({"vlans": {"trusted": {"interface": "br10"}}, **raw}, "c.yaml")
    assert cfg.dhcp is not None and len(cfg.dhcp.leases) == 3 and not cfg.dhcp.publish_mdns
