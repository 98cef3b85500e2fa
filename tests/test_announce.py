"""ServiceAnnouncement: the resource and its CRD, the responder's stand-aside on a conflict,
and the publisher (mDNS registrations, DNS answers, withdrawal) on a gateway without sockets."""

# Rdata subclasses carry their fields as attributes dnspython does not type.
# mypy: disable-error-code="attr-defined"

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
from pathlib import Path
from typing import Any

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.IN.A
import jsonschema
import pytest
import yaml

from bridge import const
from bridge.announce.service import Publisher
from bridge.app import Gateway
from bridge.config import from_dict
from bridge.mdns import wire
from bridge.mdns.links import Link
from bridge.mdns.responder import ANNOUNCED, CONFLICT, PROBING, Responder, Spec
from bridge.policy import PolicyError, PolicyWatcher
from bridge.policy.announcement import ServiceAnnouncement
from bridge.policy.loading import Resources, load_resource_dir, parse_resource_text
from tests.support.cli import ROOT

N = dns.name.from_text
IN = dns.rdataclass.IN
A, AAAA, PTR, SRV, TXT = (
    dns.rdatatype.A,
    dns.rdatatype.AAAA,
    dns.rdatatype.PTR,
    dns.rdatatype.SRV,
    dns.rdatatype.TXT,
)
VLANS = ("trusted", "iot", "guest")

# the issue's example, as written there
ISSUE_EXAMPLE = """\
apiVersion: mdnsgateway.io/v1alpha1
kind: ServiceAnnouncement
metadata: {name: office-printer}
spec:
  vlans: [trusted, iot]          # where it is announced by mDNS and answered in DNS
  instance: Office Printer
  type: _ipp._tcp
  subtypes: [_universal]
  host: printer                  # announced as printer.local on those VLANs
  addresses: [10.10.0.50]        # optional when a DHCP lease for the host name gives them
  port: 631
  txt: {rp: printers/office, pdl: application/pdf}
"""


def parse(text: str) -> Resources:
    return parse_resource_text(text, "ann.yaml", VLANS)


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as info:
        parse(text)
    return list(info.value.problems)


# --- the resource ------------------------------------------------------------------------------


def test_the_issue_example_parses() -> None:
    res = parse(ISSUE_EXAMPLE)
    assert res.policies == ()
    (ann,) = res.announcements
    assert ann.name == "office-printer" and ann.source == ("ann.yaml", 1)
    assert ann.vlans == {"trusted", "iot"}
    assert (ann.instance, ann.stype, ann.subtypes) == (
        "Office Printer",
        "_ipp._tcp",
        ("_universal",),
    )
    assert (ann.host, ann.addresses, ann.port) == ("printer", ("10.10.0.50",), 631)
    assert ann.txt_strings() == (b"rp=printers/office", b"pdl=application/pdf")


def test_policies_and_announcements_share_a_file_and_names_are_unique_per_kind() -> None:
    policy = (
        "apiVersion: mdnsgateway.io/v1alpha1\nkind: ServicePolicy\n"
        "metadata: {name: office-printer}\n"
        "spec: {from: [iot], to: [trusted], services: [_ipp._tcp]}\n"
    )
    res = parse(policy + "---\n" + ISSUE_EXAMPLE)
    assert [p.name for p in res.policies] == ["office-printer"]
    assert [a.name for a in res.announcements] == ["office-printer"]
    twice = problems(ISSUE_EXAMPLE + "---\n" + ISSUE_EXAMPLE)
    assert twice == [
        "ann.yaml: document 2 (office-printer): metadata.name: 'office-printer' is already used"
        " by office-printer (ann.yaml, document 1); fix: give every announcement a unique name"
    ]


@pytest.mark.parametrize(
    ("old", "new", "field", "reason"),
    [
        ("vlans: [trusted, iot]", "vlans: [trusted, lab]", "spec.vlans[1]", "unknown VLAN 'lab'"),
        ("host: printer", "host: printer.local", "spec.host", "is not a host label"),
        ("host: printer", "host: -x", "spec.host", "is not a host label"),
        ("port: 631", "port: '631'", "spec.port", "expected a port number"),
        ("port: 631", "port: 70000", "spec.port", "expected a port number"),
        ("type: _ipp._tcp", "type: ipp", "spec.type", "is not a service type"),
        ("addresses: [10.10.0.50]", "addresses: [10.10.0.500]", "spec.addresses[0]", "not an IP"),
        ("addresses: [10.10.0.50]", "addresses: [224.0.0.251]", "spec.addresses[0]", "unicast"),
        ("pdl: application/pdf", "pdl: 1", "spec.txt.pdl", "expected a string"),
        ("rp: printers/office", "'a=b': x", "spec.txt.a=b", "is not a TXT key"),
        ("instance: Office Printer", "instance: " + "x" * 64, "spec.instance", "63 octets"),
        ("subtypes: [_universal]", "subtypes: [_uni.versal]", "spec.subtypes[0]", "subtype"),
        ("port: 631", "port: 631\n  colour: red", "spec.colour", "unknown field"),
    ],
)
def test_errors_name_the_file_document_field_and_fix(
    old: str, new: str, field: str, reason: str
) -> None:
    assert old in ISSUE_EXAMPLE
    (line,) = problems(ISSUE_EXAMPLE.replace(old, new))
    assert line.startswith(f"ann.yaml: document 1 (office-printer): {field}: "), line
    assert reason in line and "; fix: " in line, line


def test_required_fields() -> None:
    text = (
        "apiVersion: mdnsgateway.io/v1alpha1\nkind: ServiceAnnouncement\n"
        "metadata: {name: bare}\nspec: {vlans: [iot]}\n"
    )
    fields = [p.split(": ")[2] for p in problems(text)]
    assert fields == ["spec.instance", "spec.type", "spec.host", "spec.port"]


def test_an_unknown_kind_names_both_kinds() -> None:
    line = problems(ISSUE_EXAMPLE.replace("kind: ServiceAnnouncement", "kind: Service"))[0]
    assert "kind: unsupported kind string 'Service'" in line
    assert "'kind: ServicePolicy' or 'kind: ServiceAnnouncement'" in line


# --- the CRD -----------------------------------------------------------------------------------

CRD = yaml.safe_load((ROOT / "policies" / "crd-announcement.yaml").read_text())
SCHEMA: dict[str, Any] = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """Strict field validation (kubectl's default), made explicit for jsonschema."""
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {k: _strict(v) for k, v in out["properties"].items()}
        out.setdefault("additionalProperties", False)
    if "items" in out:
        out["items"] = _strict(out["items"])
    if out.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    return out


def crd_accepts(doc: dict[str, Any]) -> bool:
    try:
        jsonschema.validate(doc["spec"], _strict(SCHEMA["properties"]["spec"]))
    except jsonschema.ValidationError:
        return False
    return True


def test_the_crd_names_the_kind_and_the_loaders_limits() -> None:
    assert CRD["spec"]["names"]["kind"] == "ServiceAnnouncement"
    assert CRD["spec"]["group"] + "/" + CRD["spec"]["versions"][0]["name"] == (
        "mdnsgateway.io/v1alpha1"
    )
    from bridge.policy import announcement as model

    spec = SCHEMA["properties"]["spec"]["properties"]
    assert spec["host"]["pattern"] == model.HOST_PATTERN
    assert spec["subtypes"]["items"]["pattern"] == model.SUBTYPE_PATTERN
    assert spec["subtypes"]["maxItems"] == model.MAX_SUBTYPES
    assert spec["addresses"]["maxItems"] == model.MAX_ADDRESSES
    assert spec["txt"]["maxProperties"] == model.MAX_TXT_ENTRIES
    assert spec["instance"]["pattern"] == model.INSTANCE_PATTERN


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("", ""),
        ("host: printer", "host: printer.local"),
        ("port: 631", "port: 70000"),
        ("port: 631", "port: '631'"),
        ("type: _ipp._tcp", "type: ipp"),
        ("port: 631", "port: 631\n  colour: red"),
        ("subtypes: [_universal]", "subtypes: [_universal, _universal]"),
        ("pdl: application/pdf", "pdl: 1"),
    ],
)
def test_the_crd_and_the_loader_agree(old: str, new: str) -> None:
    text = ISSUE_EXAMPLE.replace(old, new) if old else ISSUE_EXAMPLE
    doc = yaml.safe_load(text)
    try:
        parse(text)
        loader = True
    except PolicyError:
        loader = False
    assert crd_accepts(doc) == loader == (old == "")


# --- the responder: the device keeps its name -----------------------------------------------------


def _conflicting(name: str, address: str) -> wire.Packet:
    rec = wire.Record(N(name), A, 120, dns.rdtypes.IN.A.A(IN, A, address), IN, True)
    return wire.Packet(0, wire.FLAG_QR | wire.FLAG_AA, [], [rec])


def _run(r: Responder, start: float, end: float) -> list[wire.Packet]:
    out = []
    t = start
    while t <= end:
        out += [wire.parse(o.data) for o in r.tick(t)]
        t = round(t + 0.01, 6)
    return out


def test_a_device_holding_the_name_keeps_it_and_we_retry_once_a_minute() -> None:
    r = Responder(random.Random(2))
    heard: list[str] = []
    r.listeners.append(lambda vlan, key: heard.append(r.state(vlan, key) or ""))
    spec = Spec("printer", ("10.10.0.50",), (), rename=False)
    r.publish("trusted", "k", spec, 0.0)
    _run(r, 0.0, 0.3)
    device = _conflicting("printer.local.", "10.10.0.60")
    r.handle("trusted", device, "10.10.0.60", 5353, socket.AF_INET, True, 0.31)
    assert r.state("trusted", "k") == CONFLICT and heard == [CONFLICT]
    assert r.labels("trusted", "k") == ("printer", [])  # never renamed
    assert r.stand_asides == 1 and r.conflicts == 1
    # nothing goes out, nothing is answered, for a minute
    assert _run(r, 0.31, 60.0) == []
    q = wire.Packet(0, 0, [wire.Question(N("printer.local."), A, IN, False)], [])
    assert r.handle("trusted", q, "10.10.0.2", 5353, socket.AF_INET, True, 30.0) == []
    # then one probe round: the device answers again, we stand aside again
    again = _run(r, 60.0, 61.0)
    assert again and all(not p.is_response for p in again)
    assert r.state("trusted", "k") == PROBING
    r.handle("trusted", device, "10.10.0.60", 5353, socket.AF_INET, True, 61.0)
    assert r.state("trusted", "k") == CONFLICT and r.stand_asides == 2
    # the device has gone: the next round takes the name
    sent = _run(r, 61.0, 125.0)
    assert r.state("trusted", "k") == ANNOUNCED
    assert sum(1 for p in sent if not p.is_response) == const.MDNS_PROBE_COUNT
    assert r.labels("trusted", "k") == ("printer", [])


def test_a_device_claiming_the_name_after_we_announced_gets_it_with_our_goodbyes() -> None:
    r = Responder(random.Random(2))
    spec = Spec("printer", ("10.10.0.50",), (), rename=False)
    r.publish("trusted", "k", spec, 0.0)
    _run(r, 0.0, 5.0)
    assert r.state("trusted", "k") == ANNOUNCED
    device = _conflicting("printer.local.", "10.10.0.60")
    r.handle("trusted", device, "10.10.0.60", 5353, socket.AF_INET, True, 6.0)
    assert r.state("trusted", "k") == PROBING  # §9: probe again to find out
    probes = _run(r, 6.0, 6.3)
    assert probes
    out = r.handle("trusted", device, "10.10.0.60", 5353, socket.AF_INET, True, 6.31)
    assert r.state("trusted", "k") == CONFLICT
    (bye,) = [wire.parse(o.data) for o in out]
    assert {(x.name.to_text(), x.rdtype, x.ttl) for x in bye.answers} == {("printer.local.", A, 0)}


# --- the publisher on a gateway without sockets ---------------------------------------------------


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


def _gateway(tmp_path: Path) -> tuple[Gateway, list[bytes]]:
    gw = Gateway(
        from_dict(
            {
                "vlans": {
                    "trusted": {"interface": "br10"},
                    "iot": {"interface": "br20"},
                    "guest": {"interface": "br30"},
                },
                "policies": str(tmp_path),
            },
            str(tmp_path / "config.yaml"),
        )
    )
    gw.links.by_vlan = {
        "trusted": _link("trusted", 10, 7),
        "iot": _link("iot", 20, 8),
        "guest": _link("guest", 30, 9),
    }
    gw.links.by_index = {link.ifindex: link for link in gw.links.by_vlan.values()}
    gw.resolver.zones = gw._zones()
    sent: list[bytes] = []

    def send(data: bytes, ifindex: int, family: int, dest: object) -> bool:
        sent.append(data)
        return True

    gw.publisher.shell.send = send
    return gw, sent


def _answer(gw: Gateway, view: str, qname: str, qtype: int) -> list[str]:
    ans = gw.resolver.resolve(gw.views(gw.engine)[view], N(qname), qtype, 0.0)
    return sorted(r.to_text() for rrset in ans.answer for r in rrset)


async def _until(pub: Publisher, vlan: str, key: str, state: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while pub.responder.state(vlan, key) != state:
        assert loop.time() < deadline, pub.responder.state(vlan, key)
        await asyncio.sleep(0.05)


def test_announced_on_its_vlans_answered_in_dns_and_withdrawn(tmp_path: Path) -> None:
    (tmp_path / "printer.yaml").write_text(ISSUE_EXAMPLE)

    async def main() -> None:
        gw, sent = _gateway(tmp_path)
        loop = asyncio.get_running_loop()
        await gw._load_policies()
        assert gw.watcher is not None
        pub = gw.publisher
        assert [a.name for a in pub.announcements] == ["office-printer"]
        pub.start(loop)
        key = "announcement:office-printer"
        assert pub.responder.registrations() == [("iot", key), ("trusted", key)]
        assert _answer(gw, "trusted", "_ipp._tcp.trusted.home.arpa.", PTR) == []  # probing
        await _until(pub, "trusted", key, ANNOUNCED)
        await _until(pub, "iot", key, ANNOUNCED)
        for view in ("trusted", "iot"):
            domain = f"{view}.home.arpa."
            inst = f"Office\\032Printer._ipp._tcp.{domain}"
            assert _answer(gw, view, f"_ipp._tcp.{domain}", PTR) == [inst]
            assert _answer(gw, view, f"_universal._sub._ipp._tcp.{domain}", PTR) == [inst]
            assert _answer(gw, view, inst, SRV) == [f"0 0 631 printer.{domain}"]
            assert _answer(gw, view, inst, TXT) == ['"rp=printers/office" "pdl=application/pdf"']
            assert _answer(gw, view, f"printer.{domain}", A) == ["10.10.0.50"]
            assert _answer(gw, view, "printer.local.", A) == ["10.10.0.50"]
        assert _answer(gw, "trusted", "50.0.10.10.in-addr.arpa.", PTR) == [
            "printer.trusted.home.arpa."
        ]
        # guest is not listed, and no policy lets it see the others
        assert _answer(gw, "guest", "_ipp._tcp.guest.home.arpa.", PTR) == []
        assert _answer(gw, "guest", "_ipp._tcp.local.", PTR) == []
        origin = pub.origin("trusted", N("printer.local."))
        assert origin is not None and origin.origin == "announcement"
        assert "office-printer" in origin.source
        # announced by mDNS on both VLANs: SRV, TXT, A, the subtype
        announced = [wire.parse(d) for d in sent]
        recs = {(r.name.to_text(), r.rdtype) for p in announced if p.is_response for r in p.answers}
        assert ("Office\\032Printer._ipp._tcp.local.", SRV) in recs
        assert ("_universal._sub._ipp._tcp.local.", PTR) in recs
        sent.clear()

        # edited: iot no longer listed -> goodbyes there, trusted stays
        (tmp_path / "printer.yaml").write_text(ISSUE_EXAMPLE.replace("[trusted, iot]", "[trusted]"))
        assert await gw.watcher.reload()
        assert pub.responder.registrations() == [("trusted", key)]
        byes = [wire.parse(d) for d in sent]
        assert byes and all(r.ttl == 0 for p in byes for r in p.answers)
        assert _answer(gw, "iot", "_ipp._tcp.iot.home.arpa.", PTR) == []
        assert _answer(gw, "trusted", "printer.trusted.home.arpa.", A) == ["10.10.0.50"]

        # an invalid edit: rejected, the announcement stays in force
        (tmp_path / "printer.yaml").write_text(ISSUE_EXAMPLE.replace("port: 631", "port: x"))
        assert not await gw.watcher.reload()
        assert pub.responder.registrations() == [("trusted", key)]

        # deleted: goodbyes, DNS answers gone
        sent.clear()
        (tmp_path / "printer.yaml").unlink()
        assert await gw.watcher.reload()
        assert pub.responder.registrations() == []
        assert sent and _answer(gw, "trusted", "printer.trusted.home.arpa.", A) == []
        assert _answer(gw, "trusted", "50.0.10.10.in-addr.arpa.", PTR) == []
        pub.stop()

    asyncio.run(main())


def test_a_vlan_going_away_withdraws_and_a_conflict_unpins(tmp_path: Path) -> None:
    (tmp_path / "printer.yaml").write_text(ISSUE_EXAMPLE)

    async def main() -> None:
        gw, _ = _gateway(tmp_path)
        await gw._load_policies()
        pub = gw.publisher
        pub.start(asyncio.get_running_loop())
        key = "announcement:office-printer"
        await _until(pub, "iot", key, ANNOUNCED)
        # iot's interface is gone
        gw.links.by_vlan["iot"] = Link("iot", "br20", 8, False, (), (), False, False)
        pub.sync()
        assert pub.responder.registrations() == [("trusted", key)]
        assert _answer(gw, "iot", "printer.iot.home.arpa.", A) == []
        # a device on trusted claims printer.local: it keeps it, our records are unpinned
        await _until(pub, "trusted", key, ANNOUNCED)
        device = _conflicting("printer.local.", "10.10.0.60")
        now = pub.shell.now()
        pub.shell.on_packet("trusted", device, b"", "10.10.0.60", 5353, socket.AF_INET, now)
        await _until(pub, "trusted", key, PROBING)
        pub.shell.on_packet("trusted", device, b"", "10.10.0.60", 5353, socket.AF_INET, now)
        assert pub.responder.state("trusted", key) == CONFLICT
        assert _answer(gw, "trusted", "_ipp._tcp.trusted.home.arpa.", PTR) == []
        assert pub.states()["conflict"] == 1
        pub.stop()

    asyncio.run(main())


def test_an_announcement_without_addresses_waits(tmp_path: Path) -> None:
    text = ISSUE_EXAMPLE.replace(
        "  addresses: [10.10.0.50]        # optional when a DHCP lease for the host name"
        " gives them\n",
        "",
    )
    res = parse(text)
    assert res.announcements[0].addresses == ()
    (tmp_path / "printer.yaml").write_text(text)

    async def main() -> None:
        gw, _ = _gateway(tmp_path)
        await gw._load_policies()
        pub = gw.publisher
        pub.start(asyncio.get_running_loop())
        assert pub.responder.registrations() == []
        assert sorted(v for v, _ in pub.waiting) == ["iot", "trusted"]
        pub.stop()

    asyncio.run(main())


def test_watcher_hands_over_announcements_only_when_they_change(tmp_path: Path) -> None:
    (tmp_path / "printer.yaml").write_text(ISSUE_EXAMPLE)
    got: list[tuple[ServiceAnnouncement, ...]] = []
    w = PolicyWatcher(tmp_path, VLANS, lambda e: None, lambda m: None, on_announcements=got.append)
    assert w.reload_now()
    assert [a.name for a in got[-1]] == ["office-printer"]
    assert w.reload_now() and len(got) == 1
    assert load_resource_dir(tmp_path, VLANS).announcements == got[0]


def test_the_readme_example_is_the_issues_and_loads() -> None:
    import re

    readme = (ROOT / "README.md").read_text()
    m = re.search(r"## Service announcements\n.*?```yaml\n(.*?)```", readme, re.S)
    assert m is not None
    (ann,) = parse(m.group(1)).announcements
    (want,) = parse(ISSUE_EXAMPLE).announcements
    assert ann == want


def test_records_and_explain_say_where_a_name_came_from(tmp_path: Path) -> None:
    """Issue 19 part 3: the API's records carry their origin; explain names the announcement."""
    from bridge.announce.records import origin_lines

    (tmp_path / "printer.yaml").write_text(ISSUE_EXAMPLE)

    async def main() -> None:
        gw, _ = _gateway(tmp_path)
        await gw._load_policies()
        pub = gw.publisher
        pub.start(asyncio.get_running_loop())
        await _until(pub, "trusted", "announcement:office-printer", ANNOUNCED)
        now = pub.clock()
        gw.store.add("trusted", N("tv.local."), A, dns.rdtypes.IN.A.A(IN, A, "10.10.0.9"), 120, now)
        origins = {
            (c.name.to_text(), c.rdtype): gw.diagnostics.origin(c)
            for c in gw.store.items(now)
            if c.vlan == "trusted"
        }
        assert origins[("printer.local.", A)] == (
            "announcement",
            f"office-printer ({tmp_path / 'printer.yaml'}, document 1)",
        )
        assert origins[("tv.local.", A)] == ("mdns", None)
        lines = origin_lines(pub.announcements, "trusted", "_ipp._tcp", "office printer")
        assert lines == [
            f"origin: announcement office-printer ({tmp_path / 'printer.yaml'}, document 1):"
            " the router announces 'Office Printer' for host printer on VLAN trusted"
        ]
        assert origin_lines(pub.announcements, "guest", "_ipp._tcp", None)[0].startswith(
            "origin: mDNS"
        )
        pub.stop()

    asyncio.run(main())
