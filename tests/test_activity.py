"""The event log and the queried-name counts (bridge/activity.py), the page's JSON
(bridge/web/views.py) and the CLI's lines (bridge/web/client.py), over a real store: no sockets."""

from __future__ import annotations

from collections import Counter
from typing import Any

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from bridge import activity
from bridge.activity import OTHER, EventLog, QueryNames
from bridge.app import Gateway
from bridge.config import from_dict
from bridge.mdns import wire
from bridge.web import views
from bridge.web.client import browse_lines, explain_lines

PTR, SRV, TXT, A = (dns.rdatatype.PTR, dns.rdatatype.SRV, dns.rdatatype.TXT, dns.rdatatype.A)


def rd(rdtype: int, text: str) -> dns.rdata.Rdata:
    return dns.rdata.from_text(dns.rdataclass.IN, rdtype, text)


def n(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def gateway() -> Gateway:
    vlans = {"iot": {"interface": "br20"}, "guest": {"interface": "br30"}}
    return Gateway(from_dict({"vlans": vlans}, "test"))


def announce(gw: Gateway, vlan: str, now: float, instance: str = "Lab Printer") -> None:
    full = f"{instance.replace(' ', chr(92) + '032')}._ipp._tcp.local."
    store = gw.store
    store.add(vlan, n("_ipp._tcp.local."), PTR, rd(PTR, full), 120, now, source="10.20.0.2")
    store.add(
        vlan, n(full), SRV, rd(SRV, "0 0 631 labprinter.local."), 120, now, source="10.20.0.2"
    )
    store.add(vlan, n(full), TXT, rd(TXT, '"rp=ipp/print" "ty=Lab"'), 120, now, source="10.20.0.2")
    store.add(vlan, n("labprinter.local."), A, rd(A, "10.20.0.2"), 120, now, source="10.20.0.2")


def test_service_event_text_made_when_read_not_per_announcement(monkeypatch: Any) -> None:
    """An announcement's event text (two dnspython to_text calls and an f-string) was made
    as the store took the record: 66k of the 947k instructions ingest spent per new service
    (callgrind, pure build). It is made when the page reads the events, for those it shows."""
    made: list[str] = []
    real = activity._service_text

    def counting(*args: Any) -> str:
        made.append(real(*args))
        return made[-1]

    monkeypatch.setattr(activity, "_service_text", counting)
    gw = gateway()
    log = EventLog(lambda: 1000.0, lambda: gw.store.removing, {})
    gw.store.subscribe(log.on_record)
    for i in range(50):
        announce(gw, "iot", 0.0, f"Printer {i}")
    assert made == [] and len(log.events) == 50
    shown = log.recent(limit=3)
    assert (
        [e.text for e in shown]
        == made
        == [f"Printer {i} (_ipp._tcp) announced" for i in (49, 48, 47)]
    )


def test_services_come_and_go_as_events_with_first_seen_and_reason() -> None:
    wall = [1000.0]
    gw = gateway()
    log = EventLog(lambda: wall[0], lambda: gw.store.removing, {})
    gw.store.subscribe(log.on_record)
    announce(gw, "iot", 0.0)
    assert [e.kind for e in log.recent()] == ["announced"]
    assert "Lab Printer (_ipp._tcp) announced" in log.recent()[0].text
    key = ("iot", n("Lab\\032Printer._ipp._tcp.local."))
    assert log.first_seen(*key) == 1000.0
    wall[0] = 1010.0
    announce(gw, "iot", 10.0)  # a refresh: no event, first seen kept
    assert len(log.recent()) == 1 and log.first_seen(*key) == 1000.0
    # a goodbye (TTL 0) removes it a second later: the event says goodbye
    ptr = rd(PTR, "Lab\\032Printer._ipp._tcp.local.")
    gw.store.add("iot", n("_ipp._tcp.local."), PTR, ptr, 0, 11.0, source="10.20.0.2")
    gw.store.sweep(13.0)
    assert log.recent()[0].kind == "goodbye" and log.first_seen(*key) is None
    # one that is never refreshed expires
    announce(gw, "guest", 20.0, "Other")
    gw.store.sweep(20.0 + 121)
    assert log.recent()[0].kind == "expired" and log.recent()[0].vlan == "guest"
    assert gw.store.removing == "withdrawn"  # only while the listeners are told


def test_instances_first_seen_within_a_second_share_one_time_object() -> None:
    """A burst of new services costs one float per second, not one per instance; a later
    second gets its own time, and each VLAN keeps its own instances."""
    wall = [1000.25]
    gw = gateway()
    log = EventLog(lambda: wall[0], lambda: gw.store.removing, {})
    gw.store.subscribe(log.on_record)
    announce(gw, "iot", 0.0, "One")
    wall[0] = 1000.75
    announce(gw, "iot", 0.5, "Two")
    wall[0] = 1001.5
    announce(gw, "guest", 1.5, "Three")
    one = log.first_seen("iot", n("One._ipp._tcp.local."))
    two = log.first_seen("iot", n("Two._ipp._tcp.local."))
    assert one == 1000.25 and one is two
    assert log.first_seen("guest", n("Three._ipp._tcp.local.")) == 1001.5
    assert log.first_seen("guest", n("One._ipp._tcp.local.")) is None


def test_counter_rises_become_events_and_the_ring_is_bounded() -> None:
    dropped: Counter[tuple[str, str]] = Counter()
    log = EventLog(lambda: 5.0, lambda: "withdrawn", {"dropped": lambda: dropped}, size=3)
    log.poll()
    assert log.recent() == []
    dropped[("iot", "off_subnet")] += 4
    log.poll()
    log.poll()  # no rise: no event
    assert [e.text for e in log.recent()] == ["4 mDNS packet(s) dropped (off_subnet)"]
    for _ in range(10):
        dropped[("iot", "malformed")] += 1
        log.poll()
    assert len(log.recent()) == 3 and log.seq == 11


def test_queried_names_are_bounded_per_vlan() -> None:
    names = QueryNames(limit=3)
    for i in range(10):
        q = wire.Packet(questions=[wire.Question(n(f"h{i}.local."), A)])
        for _ in range(i + 1):
            names.on_packet("iot", q, b"", "10.20.0.9", 5353, 2, 0.0)
    response = wire.Packet(flags=wire.FLAG_QR, questions=[wire.Question(n("x.local."), A)])
    names.on_packet("iot", response, b"", "10.20.0.9", 5353, 2, 0.0)  # responses: not counted
    top = dict(names.top("iot"))
    assert len(names.counts["iot"]) == 4  # three names and the "other" bucket
    assert top == {OTHER: sum(range(4, 11)), "h2.local.": 3, "h1.local.": 2, "h0.local.": 1}


def test_services_json_and_the_cli_lines() -> None:
    gw = gateway()
    announce(gw, "iot", 0.0)  # the gateway's event log follows the store (app.py)
    diag = gw.diagnostics
    object.__setattr__(diag, "clock", lambda: 20.0)  # the store's time, without a loop
    out = views.services(diag)
    (svc,) = out["iot"]["services"]
    assert svc["instance"] == "Lab Printer" and svc["host"] == "labprinter.local."
    assert svc["port"] == 631 and svc["addresses"] == ["10.20.0.2"]
    assert svc["txt"] == ["rp=ipp/print", "ty=Lab"] and svc["ttl_left"] == 100.0
    assert svc["first_seen"] is not None
    assert out["guest"]["services"] == [] and out["iot"]["hosts"][0]["host"] == "labprinter.local."
    # guest's view sees nothing of iot without a policy; iot's own view does
    assert views.services(diag, view="guest")["iot"]["services"] == []
    assert views.services(diag, view="iot", stype="_IPP._tcp.local.")["iot"]["total"] == 1
    lines = list(browse_lines(views.services(diag, vlan="iot"), resolve=True))
    assert lines[0].split() == ["=", "iot", "_ipp._tcp", "Lab", "Printer"]
    assert "   port = [631]" in lines and '   txt = ["rp=ipp/print" "ty=Lab"]' in lines
    cells = {(c["view"], c["vlan"]): c for c in views.matrix(diag)["cells"]}
    assert cells[("guest", "iot")]["decided_by"] == "no allow policy (default)"
    assert cells[("iot", "iot")]["visible"] and cells[("*", "iot")]["visible"]
    live = views.explain_live(diag, "guest", None, "_ipp._tcp")
    assert live["exists"] and [w["vlan"] for w in live["vlans"] if w["held"]] == ["iot"]
    text = "\n".join(explain_lines(live))
    assert "VLAN iot: holds Lab Printer (last announced 20 s ago, TTL left 100 s)" in text
    assert "view guest sees it: no (decided by no allow policy (default))" in text
    assert len(views.state(diag)["events"]) == 1
