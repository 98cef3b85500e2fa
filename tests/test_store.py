"""The record store with time passed in: TTLs, goodbyes, cache-flush, bounds, refresh points."""

from __future__ import annotations

import tracemalloc

import dns.name
import dns.rdata
import dns.rdatatype
import pytest

from bridge import const
from bridge.store import Entry, Store, _members

A = dns.rdatatype.A
SRV = dns.rdatatype.SRV


def n(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def a(addr: str) -> dns.rdata.Rdata:
    return dns.rdata.from_text("IN", "A", addr)


def _entries(s: Store) -> list[Entry]:
    return [entry for rrset in s._rrsets.values() for entry in _members(rrset)]


def test_ttl_expiry_within_a_sweep() -> None:
    s = Store()
    s.add("t", n("h.local."), A, a("10.0.0.2"), 120, now=0.0)
    assert s.get("t", n("H.LOCAL."), A, 119.0)  # names are case-insensitive
    s.sweep(120.0)
    assert s.get("t", n("h.local."), A, 120.0) == []
    assert len(s) == 0


def test_goodbye_removes_one_second_later() -> None:
    s = Store()
    s.add("t", n("h.local."), A, a("10.0.0.2"), 120, now=0.0)
    s.add("t", n("h.local."), A, a("10.0.0.2"), 0, now=10.0)
    assert s.get("t", n("h.local."), A, 10.5)
    s.sweep(11.0)
    assert s.get("t", n("h.local."), A, 11.0) == []


def test_cache_flush_expires_older_rdatas() -> None:
    s = Store()
    s.add("t", n("h.local."), A, a("10.0.0.2"), 120, now=0.0)
    s.add("t", n("h.local."), A, a("10.0.0.3"), 120, now=5.0, cache_flush=True)
    s.sweep(6.1)
    assert [c.rdata.to_text() for c in s.get("t", n("h.local."), A, 6.1)] == ["10.0.0.3"]


def test_records_are_kept_per_vlan() -> None:
    s = Store()
    s.add("iot", n("p.local."), A, a("10.20.0.2"), 120, now=0.0)
    assert s.get("trusted", n("p.local."), A, 1.0) == []
    assert s.get("iot", n("p.local."), A, 1.0)[0].vlan == "iot"


def test_a_full_store_refuses_new_records_of_a_vlan_at_its_share() -> None:
    """A flood of new names cannot flush what the store holds: at the cap, the flooding VLAN's
    new records are refused (counted); what it holds is still refreshed."""
    s = Store(max_records=100)
    for i in range(250):
        s.add("t", n(f"h{i}.local."), A, a("10.0.0.2"), 120, now=float(i) / 100)
    assert len(s) == 100 and s.evicted == 0 and s.refused == {"t": 150}
    assert s.get("t", n("h0.local."), A, 3.0)
    assert s.get("t", n("h100.local."), A, 3.0) == []
    s.add("t", n("h0.local."), A, a("10.0.0.2"), 120, now=100.0)  # a refresh is no newcomer
    assert s.get("t", n("h0.local."), A, 121.0)[0].remaining == pytest.approx(99.0)
    s.sweep(121.0)  # all but h0 expired: room again
    s.add("t", n("h100.local."), A, a("10.0.0.2"), 120, now=121.0)
    assert s.get("t", n("h100.local."), A, 121.0) and len(s) == 2


def test_at_its_share_a_device_still_updates_its_own_records() -> None:
    """A cache-flush record for an RRset held already (a new address) is not refused: the
    VLAN's own oldest record makes room, and the old address is flushed as RFC 6762 says."""
    s = Store(max_records=100)
    for i in range(100):
        s.add("t", n(f"h{i}.local."), A, a("10.0.0.2"), 120, now=float(i) / 100)
    s.add("t", n("h50.local."), A, a("10.0.0.9"), 120, now=5.0, cache_flush=True)
    assert s.evicted == 1 and s.refused == {}
    assert s.get("t", n("h0.local."), A, 5.0) == []  # the VLAN's oldest made room
    assert [c.rdata.to_text() for c in s.get("t", n("h50.local."), A, 6.5)] == ["10.0.0.9"]
    s.add("t", n("new.local."), A, a("10.0.0.3"), 120, now=7.0, cache_flush=True)
    assert s.refused == {"t": 1}  # a new name is still refused
    s.add("t", n("h51.local."), A, a("10.0.0.8"), 120, now=7.0)  # no cache-flush: shared
    assert s.refused == {"t": 2}


def test_a_vlan_below_its_share_evicts_the_oldest_records_of_the_largest() -> None:
    s = Store(max_records=100)
    for i in range(100):  # iot fills the store
        s.add("iot", n(f"h{i}.local."), A, a("10.20.0.2"), 120, now=float(i) / 100)
    for i in range(60):  # trusted gets in, up to its share (100 over 2 VLANs)
        s.add("trusted", n(f"t{i}.local."), A, a("10.10.0.2"), 120, now=1.0 + i / 100)
    assert s.evicted == 50 and s.refused == {"trusted": 10}
    assert len(s) == 100
    assert s.get("iot", n("h49.local."), A, 2.0) == []  # iot's oldest went first
    assert s.get("iot", n("h50.local."), A, 2.0)
    assert s.get("trusted", n("t49.local."), A, 2.0)
    assert s.get("trusted", n("t50.local."), A, 2.0) == []
    s.add("iot", n("new.local."), A, a("10.20.0.2"), 120, now=3.0)  # iot at its share too
    assert s.refused == {"trusted": 10, "iot": 1} and len(s) == 100


def test_a_refreshed_record_is_the_youngest_of_its_vlan_in_the_eviction_order() -> None:
    """The age order (a ring through the entries, store._Ages): a refresh moves a record to
    the end, removals from either end or the middle leave the ring whole."""
    s = Store(max_records=4)
    for i in range(4):
        s.add("iot", n(f"h{i}.local."), A, a("10.20.0.2"), 120, now=float(i))
    s.add("iot", n("h0.local."), A, a("10.20.0.2"), 120, now=5.0)  # refreshed: youngest
    s.add("iot", n("h2.local."), A, a("10.20.0.2"), 120, now=6.0)
    s.add("iot", n("h2.local."), A, a("10.20.0.2"), 120, now=6.5)  # youngest already
    order = [e.key[1].to_text() for e in s._ages["iot"]]
    assert order == ["h1.local.", "h3.local.", "h0.local.", "h2.local."]
    for i in range(2):  # trusted gets its share (4 over 2 VLANs): iot's two oldest go
        s.add("trusted", n(f"t{i}.local."), A, a("10.10.0.2"), 120, now=7.0)
    assert s.evicted == 2
    assert [e.key[1].to_text() for e in s._ages["iot"]] == ["h0.local.", "h2.local."]
    assert s.get("iot", n("h1.local."), A, 7.0) == s.get("iot", n("h3.local."), A, 7.0) == []
    s.remove("iot", n("h2.local."), A, a("10.20.0.2"))  # the newest
    s.remove("iot", n("h0.local."), A, a("10.20.0.2"))  # the last: the VLAN's order goes
    assert "iot" not in s._ages and len(s) == 2
    assert [e.key[1].to_text() for e in reversed(list(s._ages["trusted"]))] == [
        "t1.local.",
        "t0.local.",
    ]


def test_an_rrset_keeps_its_records_in_order_through_removals_and_repins() -> None:
    """An RRset is a chain of entries (Entry.sibling): records read back in the order they
    came whichever of them goes, and a re-pinned record keeps its place."""
    s = Store()
    h = n("h.local.")

    def addresses() -> list[str]:
        return [c.rdata.to_text() for c in s.get("t", h, A, 1.0)]

    for i in range(4):
        s.add("t", h, A, a(f"10.0.0.{i}"), 120, now=0.0)
    s.remove("t", h, A, a("10.0.0.2"))  # the middle
    assert addresses() == ["10.0.0.0", "10.0.0.1", "10.0.0.3"]
    s.remove("t", h, A, a("10.0.0.0"))  # the first
    assert addresses() == ["10.0.0.1", "10.0.0.3"]
    s.add("t", h, A, a("10.0.0.3"), 0, now=0.0)  # a goodbye for the last
    s.sweep(1.0)
    assert addresses() == ["10.0.0.1"] and len(s) == 1
    s.add("t", h, A, a("10.0.0.1"), 0, now=1.0)
    s.sweep(2.0)
    assert addresses() == [] and s._rrsets == {} and not s.has_name("t", h)
    for i in range(3):
        s.add("t", h, A, a(f"10.0.0.{i}"), 120, now=0.0, pinned=True)
    s.add("t", h, A, a("10.0.0.1"), 60, now=0.0, pinned=True)  # again, in its place
    s.add("t", h, A, a("10.0.0.0"), 60, now=0.0, pinned=True)
    assert addresses() == ["10.0.0.0", "10.0.0.1", "10.0.0.2"]
    assert [c.ttl for c in s.get("t", h, A, 1.0)] == [60, 60, 120]


def test_records_share_one_int_object_per_ttl_value() -> None:
    """Store._times: whatever int object the parser made, a TTL value is held as one object
    (ints past 256 are objects of their own), on insertion and on refresh alike."""
    s = Store()
    ttls = [int("4500") for _ in range(3)]  # three objects of one value
    assert ttls[0] is not ttls[1]
    s.add("t", n("a.local."), A, a("10.0.0.2"), ttls[0], now=0.0)
    s.add("t", n("b.local."), A, a("10.0.0.3"), ttls[1], now=1.0)
    s.add("t", n("a.local."), A, a("10.0.0.2"), ttls[2], now=2.0)  # a refresh
    first, second = _entries(s)
    assert first.ttl == 4500 and first.ttl is second.ttl
    assert s.get("t", n("a.local."), A, 2.0)[0].remaining == 4500.0


def test_rrset_is_capped() -> None:
    s = Store()
    for i in range(const.STORE_MAX_RRSET + 20):
        s.add("t", n("h.local."), A, a(f"10.0.{i // 250}.{i % 250}"), 120, now=float(i))
    assert len(s.get("t", n("h.local."), A, 100.0)) == const.STORE_MAX_RRSET


def test_hostile_ttl_is_clamped() -> None:
    s = Store()
    s.add("t", n("h.local."), A, a("10.0.0.2"), 2**31, now=0.0)
    s.sweep(const.STORE_MAX_TTL + 1.0)
    assert len(s) == 0


def test_refresh_points_at_80_85_90_95_percent() -> None:
    s = Store()
    s.add("t", n("h.local."), A, a("10.0.0.2"), 100, now=0.0)
    # each point plus up to 2 % of the TTL at random (RFC 6762 §5.2)
    assert s.due_refresh(79.9) == set()
    assert s.due_refresh(82.01) == {("t", n("h.local."), A)}
    assert s.due_refresh(84.9) == set()
    assert s.due_refresh(87.01) == {("t", n("h.local."), A)}
    s.add("t", n("h.local."), A, a("10.0.0.2"), 100, now=88.0)  # answered: schedule restarts
    assert s.due_refresh(167.9) == set()
    assert s.due_refresh(170.01) == {("t", n("h.local."), A)}


def test_refresh_variation_is_shared_within_a_second_and_drawn_anew_each_second() -> None:
    """RFC 6762 §5.2's random 2 %: records that arrived together are asked for together (one
    query), other seconds' records spread out."""
    s = Store()
    for i in range(50):
        s.add("t", n(f"h{i}.local."), A, a("10.0.0.2"), 100, now=0.3)
    points = {entry.refresh_at for entry in _entries(s)}
    assert len(points) == 1 and 80.3 <= points.pop() <= 82.3
    s = Store()
    for second in range(200):
        s.add("t", n(f"h{second}.local."), A, a("10.0.0.2"), 100, now=float(second))
    offsets = {round(entry.refresh_at - entry.received - 80.0, 9) for entry in _entries(s)}
    assert len(offsets) > 100 and all(0.0 <= x <= 2.0 for x in offsets)


def test_due_refresh_and_sweep_do_bounded_work_per_call() -> None:
    s = Store()
    for i in range(300):
        s.add("t", n(f"h{i}.local."), A, a("10.0.0.2"), 100, now=0.0)
    assert len(s.due_refresh(83.0, limit=100)) == 100
    assert len(s.due_refresh(83.0, limit=1000)) == 200  # the rest, still due
    assert s.sweep(101.0, limit=120) == 120 and len(s) == 180
    assert s.sweep(101.0, limit=1000) == 180 and len(s) == 0


def test_empty_non_terminals_and_srv_targets() -> None:
    s = Store()
    srv = dns.rdata.from_text("IN", "SRV", "0 0 631 host.local.")
    s.add("t", n("P._ipp._tcp.local."), SRV, srv, 120, now=0.0)
    assert s.has_below("t", n("_ipp._tcp.local."))
    assert s.has_below("t", n("_tcp.local."))
    assert s.srv_owners_of("t", n("host.local.")) == {n("p._ipp._tcp.local.")}
    s.sweep(121.0)
    assert not s.has_below("t", n("_tcp.local."))
    assert s.srv_owners_of("t", n("host.local.")) == set()


def test_srv_owners_of_a_target_from_one_to_many_and_back() -> None:
    """One owner, a few, more than a tuple holds (a set), then gone one by one."""
    s = Store()
    srv = dns.rdata.from_text("IN", "SRV", "0 0 631 host.local.")
    host = n("host.local.")
    owners = [n(f"p{i}._ipp._tcp.local.") for i in range(12)]
    for i, owner in enumerate(owners):
        s.add("t", owner, SRV, srv, 120 + i, now=0.0)
        assert s.srv_owners_of("t", host) == set(owners[: i + 1])
    s.add("t", owners[0], SRV, srv, 200, now=1.0)  # refreshed: still one owner
    assert s.srv_owners_of("t", host) == set(owners)
    for i in range(1, len(owners)):  # owner i expires at 120 + i; the first was refreshed
        s.sweep(120.0 + i + 0.5)
        assert s.srv_owners_of("t", host) == {owners[0], *owners[i + 1 :]}
    s.sweep(201.5)
    assert s.srv_owners_of("t", host) == set()
    assert s._srv_targets == {"t": {}}


def test_pinned_records_never_expire_and_are_not_flushed() -> None:
    s = Store(max_records=100)
    s.add("t", n("ntp.local."), A, a("10.0.0.1"), 120, now=0.0, pinned=True)
    s.add("t", n("ntp.local."), A, a("10.0.0.9"), 120, now=5.0, cache_flush=True)
    s.add("t", n("ntp.local."), A, a("10.0.0.1"), 0, now=6.0)  # a forged goodbye
    for i in range(300):
        s.add("t", n(f"h{i}.local."), A, a("10.0.0.2"), 120, now=10.0)
    s.sweep(10_000.0)
    assert [c.rdata.to_text() for c in s.get("t", n("ntp.local."), A, 10_000.0)] == ["10.0.0.1"]
    s.remove("t", n("ntp.local."), A, a("10.0.0.1"))
    assert s.get("t", n("ntp.local."), A, 10_000.0) == []


def test_listeners_hear_content_changes_not_refreshes() -> None:
    s = Store()
    heard: list[tuple[str, dns.name.Name, int]] = []
    s.subscribe(lambda v, name, t, rdata, added: heard.append((v, name, t)))
    s.add("t", n("h.local."), A, a("10.0.0.2"), 120, now=0.0)
    s.add("t", n("h.local."), A, a("10.0.0.2"), 120, now=1.0)
    assert len(heard) == 1
    s.sweep(200.0)
    assert len(heard) == 2


def test_generations_count_content_changes_per_vlan_not_refreshes() -> None:
    s = Store()
    s.add("t", n("h.local."), A, a("10.0.0.2"), 120, now=0.0)
    s.add("t", n("h.local."), A, a("10.0.0.2"), 120, now=1.0)  # a refresh: no change
    s.add("u", n("h.local."), A, a("10.0.0.3"), 120, now=1.0)
    assert (s.generation, s.generations) == (2, {"t": 1, "u": 1})
    s.remove("t", n("h.local."), A, a("10.0.0.2"))
    assert (s.generation, s.generations) == (3, {"t": 2, "u": 1})


def test_a_paused_subscription_hears_nothing_until_resumed() -> None:
    s = Store()
    heard: list[tuple[str, bool]] = []
    sub = s.subscribe(lambda v, name, t, rdata, added: heard.append((v, added)), active=False)
    s.add("t", n("h.local."), A, a("10.0.0.2"), 120, now=0.0)
    assert heard == [] and not sub.active
    sub.active = True
    s.remove("t", n("h.local."), A, a("10.0.0.2"))
    assert heard == [("t", False)]
    sub.active = False
    s.add("t", n("h.local."), A, a("10.0.0.2"), 120, now=1.0)
    assert heard == [("t", False)]


def test_a_failing_listener_neither_stops_the_others_nor_the_store(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = Store()
    heard: list[str] = []

    def broken(v: str, name: dns.name.Name, t: int, rdata: dns.rdata.Rdata, added: bool) -> None:
        raise RuntimeError("listener bug")

    s.subscribe(broken)
    s.subscribe(lambda v, name, t, rdata, added: heard.append(v))
    s.add("t", n("h.local."), A, a("10.0.0.2"), 120, now=0.0)
    assert heard == ["t"] and len(s) == 1
    assert "store listener failed" in caplog.text


def test_schedules_hold_exactly_the_live_records() -> None:
    """Refreshed, flushed, goodbye'd and evicted records leave nothing behind in the
    schedules: a flood of new records at the cap must not keep evicted ones alive."""
    s = Store(max_records=1000)
    for i in range(10_000):
        s.add("a", n("h.local."), A, a("10.0.0.2"), 120, now=float(i) / 100)
    assert len(s._expiries) == len(s._refresh) == len(s) == 1
    for i in range(2000):  # fills the store; the last 1,001 refused
        s.add("a", n(f"h{i}.local."), A, a("10.0.0.2"), 120, now=100.0 + i / 1000)
    for i in range(400):  # b is below its share: 400 of a's records evicted
        s.add("b", n(f"h{i}.local."), A, a("10.0.0.2"), 120, now=102.0 + i / 1000)
    s.add("b", n("h399.local."), A, a("10.0.0.3"), 120, now=106.0, cache_flush=True)
    s.add("b", n("h398.local."), A, a("10.0.0.2"), 0, now=106.0)
    assert s.refused == {"a": 1001}
    assert s.evicted == 401  # the flushing record took one more place
    assert len(s._expiries) == len(s._refresh) == len(s) == 1000
    # 999 names; the goodbye and the flushed rdata expired, h399 still has its new one
    assert len(s.due_refresh(205.0, limit=100_000)) == 998
    assert len(s._refresh) == 998 and len(s._expiries) == 1000  # next points; 2 expired
    assert s.sweep(300.0) == 1000 and len(s._expiries) == len(s._refresh) == 0


def test_sweep_within_the_current_second_takes_only_what_is_due() -> None:
    s = Store()
    s.add("t", n("a.local."), A, a("10.0.0.2"), 10, now=0.2)
    s.add("t", n("b.local."), A, a("10.0.0.2"), 10, now=0.7)
    assert s.sweep(10.5) == 1 and s.get("t", n("b.local."), A, 10.5)
    assert s.sweep(10.69) == 0
    assert s.sweep(10.7) == 1 and len(s) == 0


def test_browse_lists_hold_hundreds_of_instances_but_stay_bounded() -> None:
    s = Store(max_records=10_000)
    ptr = dns.rdatatype.PTR
    for i in range(const.STORE_MAX_PTR_RRSET + 10):
        s.add(
            "t",
            n("_airplay._tcp.local."),
            ptr,
            dns.rdata.from_text("IN", "PTR", f"Speaker\\ {i}._airplay._tcp.local."),
            4500,
            now=float(i) / 1000,
        )
    held = s.get("t", n("_airplay._tcp.local."), ptr, 10.0)
    assert len(held) == const.STORE_MAX_PTR_RRSET
    texts = {c.rdata.to_text() for c in held}
    assert "Speaker\\0320._airplay._tcp.local." not in texts  # the oldest went first
    assert f"Speaker\\032{const.STORE_MAX_PTR_RRSET + 9}._airplay._tcp.local." in texts


def test_refreshing_records_together_frees_their_old_schedule_buckets() -> None:
    """Records refreshed together (a device announcing again) move to new buckets of both
    schedules; the old ones, empty, must not keep their tables until their second comes."""
    names = [n(f"h{i}.local.") for i in range(2000)]
    addr = a("10.0.0.2")
    tracemalloc.start()
    try:
        s = Store()
        for name in names:
            s.add("t", name, A, addr, 120, now=0.0)
        held, _ = tracemalloc.get_traced_memory()
        for name in names:  # all of them again, 10 s later: the same records refreshed
            s.add("t", name, A, addr, 120, now=10.0)
        refreshed, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(s) == 2000 and len(s._expiries) == len(s._refresh) == 2000
    # the old buckets' tables are ~2 x 100 KB: kept, they would be most of the growth
    assert refreshed - held < 20_000, (held, refreshed)


def test_a_record_back_in_its_old_second_is_swept_and_refreshed_once() -> None:
    """A goodbye moves a record's expiry to another second and a new announcement brings it
    back to the old one: its bucket then lists it twice (a stale copy and the live one), and
    it still expires once, is due for refresh once, and counts once."""
    s = Store()
    gone: list[bool] = []
    s.subscribe(lambda v, name, t, rdata, added: gone.append(added) if not added else None)
    s.add("t", n("h.local."), A, a("10.0.0.2"), 120, now=0.2)  # expires at 120.2
    s.add("t", n("h.local."), A, a("10.0.0.2"), 0, now=1.0)  # goodbye: at 2.0
    s.add("t", n("h.local."), A, a("10.0.0.2"), 119, now=1.5)  # back: 120.5
    s.add("t", n("h.local."), A, a("10.0.0.2"), 0, now=1.6)  # goodbye again: 2.6
    s.add("t", n("h.local."), A, a("10.0.0.2"), 119, now=1.7)  # back: 120.7
    assert len(s._expiries) == len(s._refresh) == len(s) == 1
    assert s.sweep(3.0) == 0 and len(s) == 1
    assert s.due_refresh(100.0) == {("t", n("h.local."), A)}
    assert s.due_refresh(100.0) == set()
    assert s.sweep(121.0) == 1 and s.sweep(122.0) == 0
    assert gone == [False] and s.expired == 1 and len(s._expiries) == 0


def test_schedule_buckets_keep_few_stale_copies() -> None:
    """A bucket's list keeps the copies of entries that moved away or were dropped only up to
    about as many as its live entries: evicted and refreshed records are not held there."""
    s = Store(max_records=1000)
    for i in range(1000):
        s.add("a", n(f"h{i}.local."), A, a("10.0.0.2"), 120, now=0.5)
    for i in range(900):  # 900 of them announced again, 10 s later: other buckets
        s.add("a", n(f"h{i}.local."), A, a("10.0.0.2"), 120, now=10.5)
    for i in range(50):  # b below its share: 50 of a's evicted (the oldest: the 100 left)
        s.add("b", n(f"h{i}.local."), A, a("10.0.0.2"), 120, now=11.5)
    assert len(s._expiries) == len(s._refresh) == len(s) == 1000
    for schedule in (s._expiries, s._refresh):
        buckets = list(schedule._buckets.values())
        assert sum(b.live for b in buckets) == 1000
        for bucket in buckets:
            # looked at on every 8th move away (Schedule.move)
            limit = const.STORE_SCHEDULE_STALE * (bucket.live + 8) + const.STORE_SCHEDULE_SLACK
            assert len(bucket) <= limit
        # the first second's bucket: 50 live of the 1,000 it listed
        stale = const.STORE_SCHEDULE_STALE
        assert min(len(b) for b in buckets) <= stale * 58 + const.STORE_SCHEDULE_SLACK
