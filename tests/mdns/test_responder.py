"""The RFC 6762 responder core: probing, announcing, answering, conflicts, goodbyes.

Pure: packets in, packets out, time passed in; no sockets, no sleeping.
"""

# Rdata subclasses (SRV, PTR, TXT) carry their fields as attributes dnspython does not type.
# mypy: disable-error-code="attr-defined"

from __future__ import annotations

import random
import socket

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.IN.A
import dns.rdtypes.IN.SRV

from bridge import const
from bridge.mdns import wire
from bridge.mdns.responder import (
    ANNOUNCED,
    ANNOUNCING,
    PROBING,
    Outgoing,
    Responder,
    ServiceSpec,
    Spec,
    next_host_label,
    next_instance_label,
)

N = dns.name.from_text
IN = dns.rdataclass.IN
A, AAAA, PTR, SRV, TXT, NSEC, ANY = (
    dns.rdatatype.A,
    dns.rdatatype.AAAA,
    dns.rdatatype.PTR,
    dns.rdatatype.SRV,
    dns.rdatatype.TXT,
    dns.rdatatype.NSEC,
    dns.rdatatype.ANY,
)

NTP = ServiceSpec("router", "_ntp._udp", 123, (b"txtvers=1", b"stratum=3", b"leap=normal"))
SPEC = Spec("router", ("10.10.0.1", "fd00:10::1"), (NTP,))
SRC = "10.10.0.2"


def parsed(out: list[Outgoing]) -> list[wire.Packet]:
    return [wire.parse(o.data) for o in out]


def names(records: list[wire.Record]) -> set[tuple[str, int]]:
    return {(r.name.to_text(), r.rdtype) for r in records}


def run_until(
    r: Responder, start: float, end: float, step: float = 0.01
) -> list[tuple[float, wire.Packet]]:
    """Advance the clock in small steps, collecting what goes out (and when)."""
    sent: list[tuple[float, wire.Packet]] = []
    t = start
    while t <= end + 1e-9:
        for p in parsed(r.tick(t)):
            sent.append((t, p))
        t = round(t + step, 6)
    return sent


def established(
    now: float = 0.0,
    spec: Spec = SPEC,
    vlan: str = "trusted",
    key: str = "ntp:router",
    r: Responder | None = None,
) -> Responder:
    r = r or Responder(random.Random(1))
    r.publish(vlan, key, spec, now)
    run_until(r, now, now + 4.0)
    assert r.state(vlan, key) == ANNOUNCED
    return r


def query(
    *questions: tuple[str, int],
    unicast: bool = False,
    known: list[wire.Record] | None = None,
    pid: int = 0,
) -> wire.Packet:
    return wire.Packet(
        pid, 0, [wire.Question(N(n), t, IN, unicast) for n, t in questions], list(known or [])
    )


def srv(target: str, port: int = 123) -> dns.rdtypes.IN.SRV.SRV:
    return dns.rdtypes.IN.SRV.SRV(IN, SRV, 0, 0, port, N(target))


# --- probing and announcing ----------------------------------------------------------------


def test_three_probes_250ms_apart_then_announcements() -> None:
    r = Responder(random.Random(7))
    assert r.publish("trusted", "ntp:router", SPEC, 100.0) == []
    assert r.state("trusted", "ntp:router") == PROBING
    sent = run_until(r, 100.0, 105.0)
    probes = [(t, p) for t, p in sent if not p.is_response]
    announcements = [(t, p) for t, p in sent if p.is_response]
    assert len(probes) == const.MDNS_PROBE_COUNT == 3
    first = probes[0][0]
    assert 100.0 <= first <= 100.25
    assert [round(t - first, 2) for t, _ in probes] == [0.0, 0.25, 0.5]
    # the probe: QU questions of type ANY for our unique names, proposed records in authority
    p = probes[0][1]
    assert {(q.name.to_text(), q.rdtype, q.unicast) for q in p.questions} == {
        ("router._ntp._udp.local.", ANY, True),
        ("router.local.", ANY, True),
    }
    assert names(p.authorities) == {
        ("router._ntp._udp.local.", SRV),
        ("router._ntp._udp.local.", TXT),
        ("router.local.", A),
        ("router.local.", AAAA),
    }
    # announcements: first 250 ms after the last probe, then 1 s, then 2 s more
    assert len(announcements) == const.MDNS_ANNOUNCE_COUNT >= 2
    a0 = announcements[0][0]
    assert round(a0 - probes[-1][0], 2) == 0.25
    assert [round(t - a0, 2) for t, _ in announcements] == [0.0, 1.0, 3.0]
    ann = announcements[0][1]
    assert ann.flags & wire.FLAG_AA
    by = {(rec.name.to_text(), rec.rdtype): rec for rec in ann.answers}
    assert by[("router._ntp._udp.local.", SRV)].cache_flush
    assert by[("router._ntp._udp.local.", SRV)].rdata.target == N("router.local.")
    assert by[("router._ntp._udp.local.", SRV)].rdata.port == 123
    assert by[("router.local.", A)].cache_flush and by[("router.local.", AAAA)].cache_flush
    assert not by[("_ntp._udp.local.", PTR)].cache_flush  # shared
    assert not by[("_services._dns-sd._udp.local.", PTR)].cache_flush
    assert by[("_services._dns-sd._udp.local.", PTR)].rdata.target == N("_ntp._udp.local.")
    assert set(by[("router._ntp._udp.local.", TXT)].rdata.strings) == {
        b"txtvers=1",
        b"stratum=3",
        b"leap=normal",
    }
    assert r.state("trusted", "ntp:router") == ANNOUNCED
    assert r.next_deadline() is None


def test_publish_is_idempotent_and_listener_hears_establishment() -> None:
    r = Responder(random.Random(1))
    heard: list[tuple[str, str]] = []
    r.listeners.append(lambda vlan, key: heard.append((vlan, key)))
    r.publish("trusted", "k", SPEC, 0.0)
    assert r.publish("trusted", "k", SPEC, 0.1) == []
    run_until(r, 0.0, 4.0)
    assert heard == [("trusted", "k")]


# --- conflicts -----------------------------------------------------------------------------


def test_conflicting_response_while_probing_renames_instance() -> None:
    r = Responder(random.Random(3))
    heard: list[str] = []
    r.listeners.append(lambda vlan, key: heard.append(key))
    r.publish("trusted", "k", SPEC, 0.0)
    run_until(r, 0.0, 0.3)  # a probe or two went out
    other = wire.Record(N("router._ntp._udp.local."), SRV, 120, srv("printer.local."), IN, True)
    assert (
        r.handle(
            "trusted",
            wire.Packet(0, wire.FLAG_QR | wire.FLAG_AA, [], [other]),
            SRC,
            5353,
            socket.AF_INET,
            True,
            0.31,
        )
        == []
    )
    assert r.labels("trusted", "k") == ("router", ["router (2)"])
    assert heard == ["k"]
    assert r.conflicts == 1
    sent = run_until(r, 0.31, 5.0)
    probes = [p for _, p in sent if not p.is_response]
    assert len(probes) == 3  # probing starts over with the new name
    assert N("router (2)._ntp._udp.local.") in {q.name for q in probes[0].questions}
    ann = next(p for _, p in sent if p.is_response)
    assert (N("router (2)._ntp._udp.local.").to_text(), SRV) in names(ann.answers)
    ptr = next(
        rec for rec in ann.answers if rec.rdtype == PTR and rec.name == N("_ntp._udp.local.")
    )
    assert ptr.rdata.target.labels[0] == b"router (2)"


def test_host_name_conflict_renames_host_and_srv_target() -> None:
    r = Responder(random.Random(3))
    r.publish("trusted", "k", SPEC, 0.0)
    run_until(r, 0.0, 0.3)
    other = wire.Record(
        N("router.local."), A, 120, dns.rdtypes.IN.A.A(IN, A, "10.10.0.9"), IN, True
    )
    r.handle(
        "trusted",
        wire.Packet(0, wire.FLAG_QR, [], [], [], [other]),
        SRC,
        5353,
        socket.AF_INET,
        True,
        0.31,
    )
    assert r.labels("trusted", "k") == ("router-2", ["router"])
    run_until(r, 0.31, 5.0)
    srv_rec = next(x for x in r.records("trusted", "k") if x.rdtype == SRV)
    assert srv_rec.rdata.target == N("router-2.local.")


def test_identical_records_from_elsewhere_are_no_conflict() -> None:
    r = Responder(random.Random(3))
    r.publish("trusted", "k", SPEC, 0.0)
    run_until(r, 0.0, 0.3)
    same = [x for x in r.records("trusted", "k") if x.rdtype == A]
    r.handle(
        "trusted", wire.Packet(0, wire.FLAG_QR, [], same), SRC, 5353, socket.AF_INET, True, 0.31
    )
    assert r.labels("trusted", "k") == ("router", ["router"])


def test_rename_labels() -> None:
    assert next_instance_label("router") == "router (2)"
    assert next_instance_label("router (2)") == "router (3)"
    assert next_host_label("router") == "router-2"
    assert next_host_label("router-9") == "router-10"


def test_fifteen_conflicts_in_ten_seconds_slow_probing_down() -> None:
    r = Responder(random.Random(5))
    r.publish("trusted", "k", SPEC, 0.0)
    t = 0.0
    for _ in range(const.MDNS_CONFLICT_LIMIT):
        t += 0.1
        labels = r.labels("trusted", "k")
        assert labels is not None
        name = N(f"{labels[0]}.local.")
        other = wire.Record(name, A, 120, dns.rdtypes.IN.A.A(IN, A, "10.10.0.9"), IN, True)
        r.handle(
            "trusted", wire.Packet(0, wire.FLAG_QR, [], [other]), SRC, 5353, socket.AF_INET, True, t
        )
    deadline = r.next_deadline()
    assert deadline is not None and deadline >= t + const.MDNS_CONFLICT_BACKOFF - 1e-9


def test_simultaneous_probe_tie_break() -> None:
    r = Responder(random.Random(3))
    r.publish("trusted", "k", SPEC, 0.0)
    run_until(r, 0.0, 0.3)
    # their proposed A record for router.local is lexicographically later (10.10.0.200 > .1)
    later = wire.Record(N("router.local."), A, 120, dns.rdtypes.IN.A.A(IN, A, "10.10.0.200"))
    probe = wire.Packet(0, 0, [wire.Question(N("router.local."), ANY, IN, True)], [], [later])
    r.handle("trusted", probe, SRC, 5353, socket.AF_INET, True, 0.31)
    deadline = r.next_deadline()
    assert deadline is not None and deadline >= 0.31 + const.MDNS_PROBE_DEFER - 1e-9
    assert r.labels("trusted", "k") == ("router", ["router"])  # deferred, not renamed
    # an earlier one loses to us: nothing changes
    r2 = Responder(random.Random(3))
    r2.publish("trusted", "k", Spec("router", ("10.10.0.9",)), 0.0)
    run_until(r2, 0.0, 0.3)
    earlier = wire.Record(N("router.local."), A, 120, dns.rdtypes.IN.A.A(IN, A, "10.10.0.1"))
    probe = wire.Packet(0, 0, [wire.Question(N("router.local."), ANY, IN, True)], [], [earlier])
    before = r2.next_deadline()
    r2.handle("trusted", probe, SRC, 5353, socket.AF_INET, True, 0.31)
    assert r2.next_deadline() == before


def test_conflicting_announcement_after_establishment_reprobes() -> None:
    r = established()
    other = wire.Record(
        N("router.local."), A, 120, dns.rdtypes.IN.A.A(IN, A, "10.10.0.9"), IN, True
    )
    r.handle(
        "trusted", wire.Packet(0, wire.FLAG_QR, [], [other]), SRC, 5353, socket.AF_INET, True, 10.0
    )
    assert r.state("trusted", "ntp:router") == PROBING
    # the other host defends the name while we probe: now we rename, and what we had
    # announced under the old name says goodbye (our data only)
    run_until(r, 10.0, 10.3)
    out = r.handle(
        "trusted", wire.Packet(0, wire.FLAG_QR, [], [other]), SRC, 5353, socket.AF_INET, True, 10.31
    )
    assert r.labels("trusted", "ntp:router") == ("router-2", ["router"])
    bye = [x for p in parsed(out) for x in p.answers]
    assert {(x.name.to_text(), x.rdtype, x.ttl) for x in bye} == {
        ("router.local.", A, 0),
        ("router.local.", AAAA, 0),
        ("router._ntp._udp.local.", SRV, 0),
    }  # the SRV pointed at the old host name
    assert "10.10.0.9" not in {x.rdata.to_text() for x in bye}


def test_probe_defence_answers_at_once() -> None:
    r = established()
    theirs = wire.Record(N("router.local."), A, 120, dns.rdtypes.IN.A.A(IN, A, "10.10.0.9"))
    probe = wire.Packet(0, 0, [wire.Question(N("router.local."), ANY, IN, True)], [], [theirs])
    out = r.handle("trusted", probe, SRC, 5353, socket.AF_INET, True, 10.0)
    assert len(out) == 1
    reply = wire.parse(out[0].data)
    assert names(reply.answers) == {("router.local.", A), ("router.local.", AAAA)}


# --- answering -------------------------------------------------------------------------------


def test_probing_registration_does_not_answer() -> None:
    r = Responder(random.Random(1))
    r.publish("trusted", "k", SPEC, 0.0)
    assert (
        r.handle("trusted", query(("router.local.", A)), SRC, 5353, socket.AF_INET, True, 0.1) == []
    )


def test_unique_answer_is_immediate_with_additional_and_nsec() -> None:
    r = established()
    out = r.handle(
        "trusted", query(("router._ntp._udp.local.", SRV)), SRC, 5353, socket.AF_INET, True, 20.0
    )
    assert len(out) == 1 and out[0].dest is None
    reply = wire.parse(out[0].data)
    assert names(reply.answers) == {("router._ntp._udp.local.", SRV)}
    assert {("router.local.", A), ("router.local.", AAAA)} <= names(reply.additionals)
    nsec = [x for x in reply.additionals if x.rdtype == NSEC]
    assert nsec and {x.name for x in nsec} == {N("router.local.")}


def test_shared_answer_is_delayed_20_to_120ms() -> None:
    r = established()
    assert (
        r.handle("trusted", query(("_ntp._udp.local.", PTR)), SRC, 5353, socket.AF_INET, True, 20.0)
        == []
    )
    deadline = r.next_deadline()
    assert deadline is not None and 20.02 <= deadline <= 20.12
    sent = run_until(r, 20.0, 20.2)
    assert len(sent) == 1
    reply = sent[0][1]
    assert names(reply.answers) == {("_ntp._udp.local.", PTR)}
    assert {
        ("router._ntp._udp.local.", SRV),
        ("router._ntp._udp.local.", TXT),
        ("router.local.", A),
        ("router.local.", AAAA),
    } <= names(reply.additionals)


def test_services_enumeration_is_answered() -> None:
    r = established()
    r.handle(
        "trusted",
        query(("_services._dns-sd._udp.local.", PTR)),
        SRC,
        5353,
        socket.AF_INET,
        True,
        20.0,
    )
    sent = run_until(r, 20.0, 20.2)
    assert [x.rdata.target for x in sent[0][1].answers] == [N("_ntp._udp.local.")]


def test_known_answer_suppression() -> None:
    r = established()
    ptr = next(
        x
        for x in r.records("trusted", "ntp:router")
        if x.rdtype == PTR and x.name == N("_ntp._udp.local.")
    )
    fresh = wire.Record(ptr.name, PTR, ptr.ttl, ptr.rdata)
    r.handle(
        "trusted",
        query(("_ntp._udp.local.", PTR), known=[fresh]),
        SRC,
        5353,
        socket.AF_INET,
        True,
        20.0,
    )
    assert run_until(r, 20.0, 20.5) == []
    stale = wire.Record(ptr.name, PTR, ptr.ttl // 2 - 1, ptr.rdata)
    r.handle(
        "trusted",
        query(("_ntp._udp.local.", PTR), known=[stale]),
        SRC,
        5353,
        socket.AF_INET,
        True,
        21.0,
    )
    assert len(run_until(r, 21.0, 21.5)) == 1


def test_multicast_at_most_once_a_second() -> None:
    r = established()
    q = query(("router.local.", A))
    assert len(r.handle("trusted", q, SRC, 5353, socket.AF_INET, True, 20.0)) == 1
    assert r.handle("trusted", q, SRC, 5353, socket.AF_INET, True, 20.5) == []
    assert len(r.handle("trusted", q, SRC, 5353, socket.AF_INET, True, 21.1)) == 1


def test_qu_question_gets_unicast_when_recently_multicast() -> None:
    r = established()  # announced at about t = 0.5..3.5: within a quarter of the TTL
    out = r.handle(
        "trusted", query(("router.local.", A), unicast=True), SRC, 5353, socket.AF_INET, True, 10.0
    )
    assert len(out) == 1 and out[0].dest == (SRC, 5353) and out[0].family == socket.AF_INET
    # long after the last multicast, a QU question is answered by multicast (§5.4)
    later = 10.0 + const.OWN_RECORD_TTL / 4 + 1
    out = r.handle(
        "trusted", query(("router.local.", A), unicast=True), SRC, 5353, socket.AF_INET, True, later
    )
    assert len(out) == 1 and out[0].dest is None


def test_legacy_unicast_query() -> None:
    r = established()
    out = r.handle(
        "trusted",
        query(("router._ntp._udp.local.", SRV), pid=4242),
        SRC,
        40000,
        socket.AF_INET,
        True,
        20.0,
    )
    assert len(out) == 1 and out[0].dest == (SRC, 40000)
    reply = wire.parse(out[0].data)
    assert reply.id == 4242
    assert [q.name for q in reply.questions] == [N("router._ntp._udp.local.")]
    assert all(
        x.ttl <= const.MDNS_LEGACY_TTL and not x.cache_flush
        for x in reply.answers + reply.additionals
    )


def test_unicast_to_off_link_source_is_dropped() -> None:
    r = established()
    assert (
        r.handle(
            "trusted",
            query(("router.local.", A), pid=7),
            "192.0.2.1",
            40000,
            socket.AF_INET,
            False,
            20.0,
        )
        == []
    )


def test_missing_type_gets_nsec() -> None:
    r = established(spec=Spec("router", ("10.10.0.1",), (NTP,)))
    out = r.handle("trusted", query(("router.local.", AAAA)), SRC, 5353, socket.AF_INET, True, 20.0)
    assert len(out) == 1
    reply = wire.parse(out[0].data)
    assert not reply.answers
    nsec = next(x for x in reply.additionals if x.rdtype == NSEC)
    assert nsec.name == N("router.local.")
    assert "AAAA" not in nsec.rdata.to_text() and " A" in nsec.rdata.to_text()


def test_other_vlan_is_not_answered() -> None:
    r = established()
    assert (
        r.handle("iot", query(("router.local.", A)), "10.20.0.2", 5353, socket.AF_INET, True, 20.0)
        == []
    )


# --- updates, withdrawal, goodbyes -----------------------------------------------------------


def test_txt_update_reannounces_without_probing() -> None:
    r = established()
    new = Spec(
        "router",
        SPEC.addresses,
        (ServiceSpec("router", "_ntp._udp", 123, (b"txtvers=1", b"stratum=4", b"leap=normal")),),
    )
    out = r.publish("trusted", "ntp:router", new, 20.0)
    packets = parsed(out)
    goodbye = [x for p in packets for x in p.answers if x.ttl == 0]
    assert names(goodbye) == {("router._ntp._udp.local.", TXT)}
    announce = [p for p in packets if any(x.ttl > 0 for x in p.answers)]
    assert announce, "the new TXT goes out at once"
    assert r.state("trusted", "ntp:router") == ANNOUNCING
    assert not [p for _, p in run_until(r, 20.0, 25.0) if not p.is_response]


def test_withdraw_sends_goodbyes_with_ttl_zero() -> None:
    r = established()
    out = r.withdraw("trusted", "ntp:router", 20.0)
    assert len(out) == 1 and out[0].dest is None
    bye = wire.parse(out[0].data)
    assert bye.is_response and all(x.ttl == 0 for x in bye.answers)
    assert ("_ntp._udp.local.", PTR) in names(bye.answers)
    assert ("router.local.", A) in names(bye.answers)
    assert r.state("trusted", "ntp:router") is None
    assert (
        r.handle("trusted", query(("router.local.", A)), SRC, 5353, socket.AF_INET, True, 21.0)
        == []
    )


def test_withdraw_keeps_records_another_registration_still_publishes() -> None:
    r = established()
    two = Spec("router2", ("10.10.0.254",), (ServiceSpec("router2", "_ntp._udp", 123),))
    established(spec=two, key="ntp:router2", r=r)
    bye = wire.parse(r.withdraw("trusted", "ntp:router", 20.0)[0].data)
    gone = names(bye.answers)
    assert ("_services._dns-sd._udp.local.", PTR) not in gone  # router2 still needs it
    ptrs = [x for x in bye.answers if x.name == N("_ntp._udp.local.")]
    assert [x.rdata.target for x in ptrs] == [N("router._ntp._udp.local.")]
    assert r.state("trusted", "ntp:router2") == ANNOUNCED


def test_withdraw_while_probing_sends_nothing() -> None:
    r = Responder(random.Random(1))
    r.publish("trusted", "k", SPEC, 0.0)
    run_until(r, 0.0, 0.3)
    assert r.withdraw("trusted", "k", 0.31) == []


def test_withdraw_all_on_shutdown() -> None:
    r = established()
    established(vlan="iot", spec=Spec("router", ("10.20.0.1",), (NTP,)), r=r)
    out = r.withdraw_all(30.0)
    assert sorted(o.vlan for o in out) == ["iot", "trusted"]
    assert r.registrations() == []


def test_pending_answer_dropped_after_withdrawal() -> None:
    r = established()
    r.handle("trusted", query(("_ntp._udp.local.", PTR)), SRC, 5353, socket.AF_INET, True, 20.0)
    r.withdraw("trusted", "ntp:router", 20.001)
    assert run_until(r, 20.0, 20.3) == []
