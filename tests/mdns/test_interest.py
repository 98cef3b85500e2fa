"""Interest-driven refresh, §7.1 known answers, §7.3 duplicate questions, query gathering:
the browser with a recording sender, an Interest and time passed in (no sockets)."""

from __future__ import annotations

import dns.name
import dns.rdata
import dns.rdatatype

from bridge import const
from bridge.dnssd import SERVICES
from bridge.mdns import wire
from bridge.mdns.browser import Browser
from bridge.mdns.interest import Interest
from bridge.store import Cached, Store
from tests.support.browsing import make, questions

PTR, SRV, TXT, A = dns.rdatatype.PTR, dns.rdatatype.SRV, dns.rdatatype.TXT, dns.rdatatype.A
TV = dns.name.from_text("tv.local.")
LAMP = dns.name.from_text("lamp.local.")


def _a(address: str) -> dns.rdata.Rdata:
    return dns.rdata.from_text("IN", "A", address)


def _with_interest() -> tuple[Store, Browser, list[tuple[wire.Packet, int, int]], Interest]:
    store, browser, sent = make()
    interest = Interest()
    browser.wanted = interest.wanted  # as bridge/app.py wires it
    return store, browser, sent, interest


def test_a_record_nobody_wanted_is_not_refreshed_one_wanted_is() -> None:
    store, browser, sent, interest = _with_interest()
    store.add("iot", TV, A, _a("10.20.0.7"), 100, 0.0)
    store.add("iot", LAMP, A, _a("10.20.0.8"), 100, 0.0)
    interest.note(TV, A, 30.0)  # a DNS client was answered from it
    browser.tick(1.0)
    sent.clear()
    browser.tick(82.01)  # 80 % of the TTL plus up to 2 %
    qs = questions(sent)
    assert ("tv.local.", A, False) in qs
    assert ("lamp.local.", A, False) not in qs
    assert interest.refreshes == 1 and interest.skipped == 1


def test_an_interest_lasts_the_records_ttl_and_at_least_the_window() -> None:
    interest = Interest(window=600.0)
    interest.note(TV, A, 0.0)
    assert interest.wanted("iot", TV, A, 120, 500.0)  # the window
    assert not interest.wanted("iot", TV, A, 120, 700.0)
    assert interest.wanted("iot", TV, A, 4500, 4000.0)  # the TTL
    assert not interest.wanted("iot", LAMP, A, 120, 1.0)


def test_interest_is_bounded_least_recently_wanted_first() -> None:
    interest = Interest(limit=2)
    interest.note(TV, A, 0.0)
    interest.note(LAMP, A, 1.0)
    interest.note(TV, A, 2.0)  # TV is now the most recent
    interest.note(TV, SRV, 3.0)
    assert len(interest) == 2 and interest.evicted == 1
    assert interest.wanted("iot", TV, A, 120, 4.0)
    assert not interest.wanted("iot", LAMP, A, 120, 4.0)


def test_interest_keeps_the_last_half_of_its_limit_and_never_more_than_it() -> None:
    interest = Interest(limit=100)
    names = [dns.name.from_text(f"h{i}.local.") for i in range(1000)]
    for i, name in enumerate(names):
        interest.note(name, A, float(i))
        interest.note(name, A, float(i))  # again: still one interest
        assert len(interest) <= 100
    assert all(interest.wanted("iot", name, A, 120, 1000.0) for name in names[-50:])
    assert not interest.wanted("iot", names[0], A, 120, 1000.0)
    assert interest.evicted == 1000 - len(interest)
    interest.note(names[-1], SRV, 1000.0)  # another type of a name: its own interest
    assert interest.wanted("iot", names[-1], SRV, 120, 1000.0)
    assert not interest.wanted("iot", names[-2], SRV, 120, 1000.0)


def test_keepers_refresh_whoever_asked() -> None:
    interest = Interest()
    interest.keepers.append(lambda vlan, name, rdtype: vlan == "iot")
    assert interest.wanted("iot", LAMP, A, 120, 1.0)
    assert not interest.wanted("trusted", LAMP, A, 120, 1.0)


def test_answers_and_heard_questions_count_as_interest() -> None:
    _, browser, _, interest = _with_interest()
    browser.heard = interest.note  # as bridge/app.py wires it
    interest.note_cached([Cached("iot", TV, A, _a("10.20.0.7"), 50.0, 120)], 5.0)
    query = wire.Packet(questions=[wire.Question(LAMP, A)])
    browser.on_packet("trusted", query, b"", "10.10.0.5", 5353, 2, 6.0)
    assert interest.wanted("iot", TV, A, 120, 7.0)
    assert interest.wanted("iot", LAMP, A, 120, 7.0)  # heard on trusted, held on iot
    response = wire.Packet(flags=0x8400, answers=[wire.Record(TV, SRV, 120, _a("10.0.0.1"))])
    before = len(interest)
    browser.on_packet("iot", response, b"", "10.20.0.7", 5353, 2, 8.0)
    assert len(interest) == before  # answers are not interest


def test_browsed_ptrs_are_refreshed_without_interest() -> None:
    store, browser, sent, _ = _with_interest()
    ipp = dns.name.from_text("_ipp._tcp.local.")
    browser.start_vlan("trusted", 0.0)
    store.add(
        "trusted",
        SERVICES,
        PTR,
        dns.rdata.from_text("IN", "PTR", "_ipp._tcp.local."),
        100,
        0.0,
    )
    store.add("trusted", ipp, PTR, dns.rdata.from_text("IN", "PTR", "P._ipp._tcp.local."), 100, 0.0)
    browser.tick(0.0)
    sent.clear()
    browser.tick(82.01)
    assert ("_ipp._tcp.local.", PTR, False) in questions(sent)


def test_known_answers_for_every_type_not_only_ptr() -> None:
    store, browser, sent = make()
    store.add("iot", TV, A, _a("10.20.0.7"), 100, 0.0)
    browser.ask("iot", TV, A, True)  # urgent: asked though held
    browser.tick(10.0)
    packet = next(p for p, _, _ in sent)
    assert [(r.name, r.rdtype, r.ttl) for r in packet.answers] == [(TV, A, 90)]


def test_a_question_another_querier_just_asked_is_not_repeated() -> None:
    _, browser, sent = make()
    heard = wire.Packet(questions=[wire.Question(TV, A)])
    browser.on_packet("iot", heard, b"", "10.20.0.9", 5353, 2, 9.5)
    browser.ask("iot", TV, A)
    browser.tick(10.0)
    assert sent == [] and browser.duplicates_suppressed == 1
    browser.ask("iot", TV, A)
    browser.tick(10.0 + const.MDNS_DUPLICATE_WINDOW + 0.1)  # heard too long ago
    assert ("tv.local.", A, False) in questions(sent)


def test_a_heard_question_missing_our_known_answer_does_not_suppress_ours() -> None:
    store, browser, sent = make()
    store.add("iot", TV, A, _a("10.20.0.7"), 100, 0.0)
    heard = wire.Packet(questions=[wire.Question(TV, A)])  # lists nothing as known
    browser.on_packet("iot", heard, b"", "10.20.0.9", 5353, 2, 9.5)
    browser.ask("iot", TV, A, True)
    browser.tick(10.0)
    assert ("tv.local.", A, True) in questions(sent)
    sent.clear()
    knows = wire.Packet(
        questions=[wire.Question(TV, A)], answers=[wire.Record(TV, A, 90, _a("10.20.0.7"))]
    )
    browser.on_packet("iot", knows, b"", "10.20.0.9", 5353, 2, 11.5)
    browser.ask("iot", TV, A)
    browser.tick(12.0)
    assert sent == []  # it listed every answer we would: ours would only repeat it


def test_qu_questions_heard_do_not_suppress() -> None:
    _, browser, sent = make()
    heard = wire.Packet(questions=[wire.Question(TV, A, unicast=True)])  # answered to it alone
    browser.on_packet("iot", heard, b"", "10.20.0.9", 5353, 2, 9.5)
    browser.ask("iot", TV, A)
    browser.tick(10.0)
    assert ("tv.local.", A, False) in questions(sent)


def test_one_query_carries_the_refreshes_due_within_the_window() -> None:
    store, browser, sent = make()
    store.add("iot", TV, A, _a("10.20.0.7"), 100, 0.0)
    store.add("iot", LAMP, A, _a("10.20.0.8"), 100, 1.5)  # due 1.5 s later
    browser.tick(1.0)
    sent.clear()
    browser.tick(82.01)
    assert {("tv.local.", A, False), ("lamp.local.", A, False)} <= questions(sent)
    assert len({id(p) for p, _, fam in sent if fam == 2}) == 1  # one IPv4 packet
    sent.clear()
    browser.tick(84.0)
    assert ("lamp.local.", A, False) not in questions(sent)  # not asked again at its own time


def test_an_answer_another_querier_caused_moves_the_refresh() -> None:
    """Passive refresh: the store restarts a record's refresh points when it is received
    again, so the browser does not ask at the old 80 %."""
    store, browser, sent = make()
    store.add("iot", TV, A, _a("10.20.0.7"), 100, 0.0)
    browser.tick(1.0)
    store.add("iot", TV, A, _a("10.20.0.7"), 100, 50.0)  # someone else's query answered
    sent.clear()
    browser.tick(82.01)
    assert ("tv.local.", A, False) not in questions(sent)
    browser.tick(132.01)
    assert ("tv.local.", A, False) in questions(sent)
