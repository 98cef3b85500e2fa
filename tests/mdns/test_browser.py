"""Browsing and cache maintenance decisions, with a recording sender and time passed in."""

from __future__ import annotations

import socket

import dns.name
import dns.rdata
import dns.rdatatype

from bridge.mdns.browser import SERVICES
from tests.support.browsing import make, questions

PTR, SRV, TXT, A = dns.rdatatype.PTR, dns.rdatatype.SRV, dns.rdatatype.TXT, dns.rdatatype.A


def n(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def test_enumerates_then_browses_discovered_types_on_both_families() -> None:
    store, browser, sent = make()
    browser.start_vlan("trusted", 0.0)
    browser.tick(0.0)
    assert questions(sent) == {("_services._dns-sd._udp.local.", PTR, False)}
    assert questions(sent, socket.AF_INET6) == questions(sent)
    assert {ifindex for _, ifindex, _ in sent} == {7}  # trusted's interface only
    sent.clear()
    store.add(
        "trusted", SERVICES, PTR, dns.rdata.from_text("IN", "PTR", "_ipp._tcp.local."), 4500, 0.1
    )
    browser.tick(0.2)
    assert ("_ipp._tcp.local.", PTR, False) in questions(sent)
    assert ("_services._dns-sd._udp.local.", PTR, False) not in questions(sent)  # < 1 s


def test_follow_ups_only_for_what_the_packet_did_not_carry() -> None:
    store, browser, sent = make()
    ptr = dns.rdata.from_text("IN", "PTR", "A._ipp._tcp.local.")
    srv = dns.rdata.from_text("IN", "SRV", "0 0 631 hosta.local.")
    store.add("trusted", n("_ipp._tcp.local."), PTR, ptr, 4500, 0.0)
    store.add("trusted", n("A._ipp._tcp.local."), SRV, srv, 120, 0.0)
    browser.tick(0.1)
    qs = questions(sent)
    assert ("A._ipp._tcp.local.", SRV, False) not in qs
    assert ("A._ipp._tcp.local.", TXT, False) in qs
    assert ("hosta.local.", A, False) in qs


def test_on_demand_questions_are_qu_and_respect_the_one_second_rule() -> None:
    _, browser, sent = make()
    browser.ask("iot", n("tv.local."), A, True)
    browser.tick(5.0)
    assert questions(sent) == {("tv.local.", A, True)}
    assert {ifindex for _, ifindex, _ in sent} == {9}
    sent.clear()
    browser.ask("iot", n("tv.local."), A, True)
    browser.tick(5.5)
    assert sent == []
    browser.ask("iot", n("tv.local."), A, True)
    browser.tick(6.1)
    assert questions(sent) == {("tv.local.", A, True)}


def test_known_answers_listed_while_more_than_half_ttl_remains() -> None:
    store, browser, sent = make()
    for i in range(3):
        store.add(
            "trusted",
            n("_ipp._tcp.local."),
            PTR,
            dns.rdata.from_text("IN", "PTR", f"P{i}._ipp._tcp.local."),
            100,
            0.0,
        )
    browser.ask("trusted", n("_ipp._tcp.local."), PTR)
    browser.tick(10.0)
    packet = next(p for p, _, fam in sent if fam == socket.AF_INET)
    assert len(packet.answers) == 3 and all(r.ttl == 90 for r in packet.answers)
    sent.clear()
    browser.ask("trusted", n("_ipp._tcp.local."), PTR)
    browser.tick(60.0)
    packet = next(p for p, _, fam in sent if fam == socket.AF_INET)
    assert packet.answers == []  # 40 s left of 100: no longer a known answer


def test_records_are_refreshed_before_they_expire() -> None:
    store, browser, sent = make()
    store.add("iot", n("tv.local."), A, dns.rdata.from_text("IN", "A", "10.20.0.7"), 100, 0.0)
    browser.tick(1.0)
    sent.clear()
    browser.tick(82.01)  # 80 % of the TTL plus up to 2 % (RFC 6762 §5.2)
    assert ("tv.local.", A, False) in questions(sent)


def test_a_large_rrset_costs_no_more_per_new_record() -> None:
    store, browser, _ = make()
    asked: list[object] = []
    browser.ask = lambda *a, **k: asked.append(a)  # type: ignore[method-assign]
    for i in range(2000):
        store.add(
            "trusted",
            n("_ipp._tcp.local."),
            PTR,
            dns.rdata.from_text("IN", "PTR", f"P{i}._ipp._tcp.local."),
            4500,
            0.0,
        )
    assert asked == []  # checked at the next tick, when the rest of their packets is in
    browser.tick(0.0)
    assert len(asked) == 2 * 2000  # SRV and TXT for each new instance, once
