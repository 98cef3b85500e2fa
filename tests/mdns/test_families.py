"""One address family per refresh question where a dual-stack device answers on both
(bridge/mdns/families.py): the browser with a recording sender, time passed in, no sockets."""

from __future__ import annotations

import socket

import dns.name
import dns.rdata
import dns.rdatatype

from bridge.dnssd import SERVICES
from bridge.mdns.families import Families, dual_stack
from bridge.store import Cached, Store
from tests.support.browsing import make, questions

A, PTR = dns.rdatatype.A, dns.rdatatype.PTR
V4, V6 = socket.AF_INET, socket.AF_INET6
TV = dns.name.from_text("tv.local.")
LAMP = dns.name.from_text("lamp.local.")
TV_Q = ("tv.local.", A, False)
LAMP_Q = ("lamp.local.", A, False)


def _a(address: str) -> dns.rdata.Rdata:
    return dns.rdata.from_text("IN", "A", address)


def _dual(
    store: Store, name: dns.name.Name = TV, address: str = "10.10.0.7", now: float = 0.0
) -> None:
    """The same record heard from a device's IPv4 and IPv6 addresses (trusted has both)."""
    store.add("trusted", name, A, _a(address), 100, now, source="10.10.0.7")
    store.add("trusted", name, A, _a(address), 100, now, source="fd00:10::7")


def test_a_dual_stack_devices_record_is_refreshed_over_ipv4_only() -> None:
    store, browser, sent = make()
    _dual(store)
    store.add("trusted", LAMP, A, _a("10.10.0.8"), 100, 0.0, source="10.10.0.8")  # IPv4 only
    browser.tick(1.0)
    sent.clear()
    browser.tick(82.01)  # 80 % of the TTL plus up to 2 %
    assert TV_Q in questions(sent, V4) and TV_Q not in questions(sent, V6)
    assert LAMP_Q in questions(sent, V4) and LAMP_Q in questions(sent, V6)
    assert browser.families.single == 1
    # one packet per family: the IPv4 one carries both questions
    assert [len(p.questions) for p, _, fam in sent if fam == V4] == [2]


def test_no_answer_within_a_second_asks_over_the_other_family() -> None:
    store, browser, sent = make()
    _dual(store)
    browser.tick(82.01)
    sent.clear()
    browser.tick(82.51)  # too soon: responders may take up to 500 ms
    assert not sent
    browser.tick(83.01)
    assert TV_Q in questions(sent, V6) and TV_Q not in questions(sent, V4)
    assert browser.families.fallbacks == 1 and len(browser.families) == 0


def test_an_answer_over_the_one_family_ends_it_there() -> None:
    store, browser, sent = make()
    _dual(store)
    browser.tick(82.01)
    store.add("trusted", TV, A, _a("10.10.0.7"), 100, 82.05, source="10.10.0.7")  # the answer
    sent.clear()
    browser.tick(83.01)
    browser.tick(84.01)
    assert not sent
    assert browser.families.fallbacks == 0 and len(browser.families) == 0
    assert store.get("trusted", TV, A, 84.01)[0].remaining > 90


def test_goodbye_and_expiry_are_unchanged() -> None:
    store, browser, sent = make()
    _dual(store)
    _dual(store, LAMP, "10.10.0.8")
    browser.tick(82.01)
    store.add("trusted", TV, A, _a("10.10.0.7"), 100, 82.05, source="10.10.0.7")
    # the device leaves; its goodbye over IPv6 is still its own (the co-owner)
    assert store.add("trusted", TV, A, _a("10.10.0.7"), 0, 90.0, source="fd00:10::7")
    store.sweep(91.01)
    assert store.get("trusted", TV, A, 91.01) == []
    # LAMP never answered either family: it leaves at its TTL, as before
    sent.clear()
    for i in range(34):  # every half second to 99.5 s: the 85/90/95 % points and fallbacks
        browser.tick(82.5 + i / 2)
    lamp = ("lamp.local.", A, False)
    asked = [fam for p, _, fam in sent if lamp in questions([(p, 0, fam)], fam)]
    assert asked == [V6] + [V4, V6] * 3  # each point over IPv4, then IPv6 a second later
    store.sweep(99.99)
    assert store.get("trusted", LAMP, A, 99.99)
    store.sweep(100.01)
    assert store.get("trusted", LAMP, A, 100.01) == []


def test_browses_and_a_waiting_clients_questions_go_over_both() -> None:
    store, browser, sent = make()
    _dual(store)
    browser.start_vlan("trusted", 0.0)
    browser.ask("trusted", TV, A, urgent=True)
    browser.tick(0.0)
    services = (SERVICES.to_text(), PTR, False)
    for fam in (V4, V6):
        assert services in questions(sent, fam) and ("tv.local.", A, True) in questions(sent, fam)
    assert browser.families.single == 0


def test_a_link_with_one_family_and_our_own_records_are_left_alone() -> None:
    families = Families()
    key = ("iot", TV, A)
    both = [("10.20.0.7", "fd00:20::7")]
    assert families.choose(key, both, True, False, 0.0) is None  # IPv4-only link: as before
    assert families.choose(key, both, True, True, 0.0) == V4
    assert not dual_stack([(None, None)])  # ours (pinned)
    assert not dual_stack([("10.20.0.7", "fd00:20::7"), ("10.20.0.9", None)])  # one is v4 only
    assert not dual_stack([])  # nothing held: unsure


def test_pending_questions_are_bounded() -> None:
    families = Families(limit=2)
    both = [("10.10.0.7", "fd00:10::7")]
    chosen = [families.choose(("trusted", TV, t), both, True, True, 0.0) for t in (1, 2, 3)]
    assert chosen == [V4, V4, None] and len(families) == 2
    held = {("trusted", TV, 1): [Cached("trusted", TV, 1, _a("10.10.0.7"), 99.0, 100)]}
    assert families.overdue(1.0, held) == [] and len(families) == 1  # answered: forgotten
