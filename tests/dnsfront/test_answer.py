"""The DNS query pipeline without sockets: bytes, a view and the time in, the reply out."""

from __future__ import annotations

import asyncio
import ipaddress

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdatatype
import pytest

from bridge import const
from bridge.dnsfront.answer import NO_VIEW, Pending, view_by_address
from bridge.dnsfront.fastpath import cached
from bridge.dnsfront.resolver import View
from tests.support.pipeline import MAX_TTL, T0, A, Pipeline
from tests.support.zones import SUBNETS, VLANS, cast_to_trusted, publish


@pytest.fixture
def p() -> Pipeline:
    return Pipeline()


def query(name: str, rdtype: str = "A", qid: int = 7, **kw: object) -> dns.message.Message:
    m = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    m.id = qid
    return m


def wire(name: str, rdtype: str = "A", qid: int = 7, **kw: object) -> bytes:
    return query(name, rdtype, qid, **kw).to_wire()


# --- header checks -----------------------------------------------------------------------


def test_a_response_is_never_answered(p: Pipeline) -> None:
    m = query("office.local.")
    m.flags |= dns.flags.QR
    assert p.ask(m.to_wire()) is None
    assert p.answers.stats.malformed["response"] == 1


def test_other_opcode_gets_notimp(p: Pipeline) -> None:
    m = query("office.local.")
    m.set_opcode(dns.opcode.NOTIFY)
    assert p.reply(m.to_wire()).rcode() == dns.rcode.NOTIMP


def test_two_questions_get_formerr(p: Pipeline) -> None:
    m = query("office.local.")
    m.question.append(query("office.local.", "AAAA").question[0])
    assert p.reply(m.to_wire()).rcode() == dns.rcode.FORMERR


def test_edns_version_1_gets_badvers(p: Pipeline) -> None:
    r = p.reply(wire("office.local.", use_edns=1))
    assert r.rcode() == dns.rcode.BADVERS


@pytest.mark.parametrize(
    "build",
    [
        lambda: dns.message.make_query("office.local.", "A", rdclass="CH"),
        lambda: dns.message.make_query("trusted.home.arpa.", "AXFR"),
        lambda: dns.message.make_query("trusted.home.arpa.", "IXFR"),
    ],
    ids=["class CH", "AXFR", "IXFR"],
)
def test_other_classes_and_zone_transfers_refused_and_not_kept(p: Pipeline, build: object) -> None:
    """Not pre-rendered: a REFUSED entry per name let one client grow the cache at will."""
    data = build().to_wire()  # type: ignore[operator]
    assert p.reply(data).rcode() == dns.rcode.REFUSED
    assert p.reply(data, now=T0 + 1).rcode() == dns.rcode.REFUSED
    assert p.answers.stats.slow == 2 and not any(
        c.entries for c in p.answers.caches(False).values()
    )


def test_names_outside_every_zone_are_refused_and_not_kept_per_name(p: Pipeline) -> None:
    """100,000 unique REFUSED names once added 69 MB to one pre-rendered-answer cache."""
    for i in range(200):
        assert p.reply(wire(f"n{i}.example.com.")).rcode() == dns.rcode.REFUSED
        assert p.reply(wire(f"n{i}.local."), view=NO_VIEW).rcode() == dns.rcode.REFUSED
    assert not any(c.entries for c in p.answers.caches(False).values())
    p.reply(wire("office.local."))  # an answer of a zone is still pre-rendered
    assert sum(len(c.entries) for c in p.answers.caches(False).values()) == 1


def _header(data: bytes, flags: int | None = None, counts: bytes | None = None) -> bytes:
    flags_bytes = data[2:4] if flags is None else flags.to_bytes(2, "big")
    return data[:2] + flags_bytes + (data[4:12] if counts is None else counts) + data[12:]


@pytest.mark.parametrize(
    "change,rcode,reason",
    [
        ({"flags": 0x8100}, None, "response"),
        ({"flags": 0x2100}, dns.rcode.NOTIMP, None),  # opcode 4: NOTIFY
        ({"flags": 0x2900}, dns.rcode.NOTIMP, None),  # opcode 5: UPDATE
        ({"counts": b"\x00\x02\x00\x00\x00\x00\x00\x00"}, dns.rcode.FORMERR, "question_count"),
        ({"counts": b"\x00\x01\x00\x01\x00\x00\x00\x00"}, dns.rcode.FORMERR, "answer_records"),
        ({"counts": b"\x00\x01\x00\x00\x00\x01\x00\x00"}, dns.rcode.FORMERR, "answer_records"),
        ({"counts": b"\x00\x01\x00\x00\x00\x00\x13\x88"}, dns.rcode.FORMERR, "additional_records"),
    ],
)
def test_queries_of_impossible_shape_are_answered_from_the_header(
    p: Pipeline, change: dict[str, object], rcode: int | None, reason: str | None
) -> None:
    """Before dnspython parses a record: 20 TCP queries with 5,000 additional records each once
    grew the process by 97 MB on their way to REFUSED."""
    data = _header(wire("office.local."), **change)  # type: ignore[arg-type]
    data += b"\xff" * 100_000  # records that would be parsed, and would not parse
    out = p.ask(data)
    if rcode is None:
        assert out is None
    else:
        assert isinstance(out, bytes) and len(out) == 12 and out[:2] == data[:2]
        assert out[2] & 0x80 and out[3] & 0x0F == rcode
    if reason is not None:
        assert p.answers.stats.malformed[reason] == 1


def test_no_view_refused_echoing_the_question(p: Pipeline) -> None:
    r = p.reply(wire("office.local."), view=NO_VIEW)
    assert r.rcode() == dns.rcode.REFUSED
    assert [q.to_text() for q in r.question] == ["office.local. IN A"]
    assert p.asked == []


def test_unknown_view_refused_and_not_cached(p: Pipeline) -> None:
    data = wire("office.local.")
    for _ in range(2):
        assert p.reply(data, view="gone").rcode() == dns.rcode.REFUSED
    assert p.answers.stats.slow == 2


def test_unparseable_query_gets_a_formerr_header_and_a_count(p: Pipeline) -> None:
    data = wire("office.local.")[:20]
    out = p.ask(data)
    assert isinstance(out, bytes) and out[:2] == data[:2] and out[3] & 0x0F == dns.rcode.FORMERR
    assert sum(p.answers.stats.malformed.values()) == 1
    assert p.ask(b"\x00\x01") is None  # too short to answer at all


# --- the fast path -----------------------------------------------------------------------


def test_second_query_is_pre_rendered_with_its_own_id(p: Pipeline) -> None:
    first = p.reply(wire("office.local.", qid=1))
    assert [r.to_text() for r in first.answer] == ["office.local. 10 IN A 10.10.0.5"]
    out = p.ask(wire("office.local.", qid=2))
    assert isinstance(out, bytes) and out[:2] == b"\x00\x02"
    assert p.answers.stats.slow == 1 and p.answers.stats.cache_hits == 1
    assert dns.message.from_wire(out).answer == first.answer


def test_other_case_is_spliced_then_its_own_key(p: Pipeline) -> None:
    p.reply(wire("office.local."))
    other = wire("OFFICE.Local.", qid=9)
    cache = p.answers.caches(False)["trusted"]
    assert other[2:] not in cache.entries
    out = cached(cache, other, T0)
    assert out is not None and out[:2] == other[:2]
    assert out[12 : len(other)] == other[12:]  # the question echoed as sent, case included
    assert other[2:] in cache.entries and cache.variants == 1
    assert cached(cache, other, T0) == out


def test_pre_rendered_answer_valid_until_its_records_would_be_stale(p: Pipeline) -> None:
    data = wire("office.local.")
    p.reply(data)
    cache = p.answers.caches(False)["trusted"]
    valid_until = T0 + 120 - MAX_TTL  # the A record's TTL less the TTL we hand out
    assert cached(cache, data, valid_until - 0.5) is not None
    assert cached(cache, data, valid_until) is None


def test_tcp_and_udp_have_their_own_answers(p: Pipeline) -> None:
    data = wire("office.local.")
    p.ask(data, tcp=True)
    assert "trusted" in p.answers.caches(True)
    assert "trusted" not in p.answers.caches(False)


def test_udp_clamp_cuts_big_answers_and_each_ceiling_keeps_its_own(p: Pipeline) -> None:
    """A remote client (the 1232-byte ceiling) asking with EDNS 4096 gets TC=1 where a loopback
    client gets the whole answer, on the slow path and from the pre-rendered answers alike,
    in either order: neither's answer is ever served to the other."""
    txt = " ".join(f'"{chr(97 + i) * 200}"' for i in range(8))  # 1,608 bytes of rdata
    rdata = dns.rdata.from_text("IN", "TXT", txt)
    p.store.add("trusted", dns.name.from_text("big.local."), dns.rdatatype.TXT, rdata, 120, T0)
    data = wire("big.local.", "TXT", use_edns=0, payload=4096)
    for _ in range(2):  # slow path, then pre-rendered
        clamped = p.answers.answer(data, "trusted", False, T0, const.DNS_UDP_CLAMP)
        full = p.answers.answer(data, "trusted", False, T0)
        assert isinstance(clamped, bytes) and isinstance(full, bytes)
        assert len(clamped) <= const.DNS_UDP_CLAMP < len(full)
        assert dns.message.from_wire(clamped).flags & dns.flags.TC
        assert dns.message.from_wire(full).answer[0][0] == rdata
    assert p.answers.stats.cache_hits == 2
    assert p.answers.caches(False, const.DNS_UDP_CLAMP)["trusted"].entries
    small = wire("office.local.", use_edns=0, payload=4096, qid=9)  # fits: answered in full
    reply = p.answers.answer(small, "trusted", False, T0, const.DNS_UDP_CLAMP)
    assert isinstance(reply, bytes) and not dns.message.from_wire(reply).flags & dns.flags.TC


# --- validity: store and policy changes --------------------------------------------------


def test_store_change_on_a_visible_vlan_drops_the_answers(p: Pipeline) -> None:
    data = wire("office.local.")
    p.reply(data)
    p.reply(wire("iot.home.arpa.", "SOA"), view="iot")  # iot does not see trusted
    p.add_a("office.local.", "10.10.0.6", T0 + 1)
    assert p.answers.caches(False)["trusted"].entries == {}
    assert p.answers.caches(False)["iot"].entries != {}
    r = p.reply(data, now=T0 + 1)
    assert sorted(r.answer[0].to_text().split("\n")) == [
        "office.local. 10 IN A 10.10.0.5",
        "office.local. 10 IN A 10.10.0.6",
    ]


def test_new_views_drop_every_answer(p: Pipeline) -> None:
    p.reply(wire("office.local."))
    p.answers.set_views({v: View(v, v, p.engine.view(v)) for v in VLANS})
    assert p.answers.caches(False)["trusted"].entries == {}


# --- on-demand ---------------------------------------------------------------------------


def test_miss_waits_for_mdns_then_answers_with_what_came(p: Pipeline) -> None:
    pending = p.ask(wire("tv.local."))
    assert isinstance(pending, Pending)
    assert pending.keys == [("trusted", dns.name.from_text("tv.local."), A)]
    p.add_a("tv.local.", "10.10.0.9", T0 + 0.1)
    r = dns.message.from_wire(p.answers.complete(pending, True, T0 + 0.1))
    assert [x.to_text() for x in r.answer] == ["tv.local. 10 IN A 10.10.0.9"]
    assert p.answers.stats.ondemand == 1


def test_silent_name_answers_at_once_while_remembered(p: Pipeline) -> None:
    pending = p.ask(wire("tv.local."))
    assert isinstance(pending, Pending)
    r = dns.message.from_wire(p.answers.complete(pending, False, T0 + 1))
    assert r.rcode() == dns.rcode.NXDOMAIN
    again = p.ask(wire("TV.local."), now=T0 + 2)  # another key, same miss
    assert isinstance(again, bytes)
    later = p.ask(wire("tV.local."), now=T0 + 1 + const.DNS_MISS_MEMORY + 0.1)
    assert isinstance(later, Pending)


def test_saturated_ondemand_answers_from_the_cache_as_is(p: Pipeline) -> None:
    p.ondemand.pending = const.DNS_PENDING_MAX
    out = p.ask(wire("tv.local."))
    assert isinstance(out, bytes)
    assert dns.message.from_wire(out).rcode() == dns.rcode.NXDOMAIN


def test_wait_completes_and_caches_with_the_views_in_force_now(p: Pipeline) -> None:
    publish(p.store, "iot", b"TV", "_googlecast._tcp", "tv", ["10.20.0.7"], now=T0)
    data = wire("_googlecast._tcp.local.", "PTR")
    pending = p.ask(data)  # trusted does not see iot yet: a miss, asked on trusted
    assert isinstance(pending, Pending)
    engine = cast_to_trusted()
    p.answers.set_views({v: View(v, v, engine.view(v)) for v in VLANS})
    out = p.answers.complete(pending, False, T0 + 0.5)
    expected = ["TV._googlecast._tcp.local."]
    assert [r.to_text() for r in dns.message.from_wire(out).answer[0]] == expected
    assert cached(p.answers.caches(False)["trusted"], data, T0 + 1) is not None


def test_ondemand_listens_to_the_store_only_while_a_lookup_waits(p: Pipeline) -> None:
    key = ("trusted", dns.name.from_text("tv.local."), A)
    changes = p.ondemand.changes
    assert changes is not None and not changes.active

    async def wait_then_announce() -> bool:
        lookup = asyncio.ensure_future(p.ondemand.lookup([key]))
        await asyncio.sleep(0)  # one loop turn: the lookup asks and waits
        assert changes.active and p.asked == [key]
        p.add_a("tv.local.", "10.10.0.9", T0)
        return await lookup

    assert asyncio.run(wait_then_announce()) is True
    assert not changes.active


# --- client address -> view --------------------------------------------------------------


def test_view_by_address_subnet_then_default() -> None:
    nets = {v: [ipaddress.ip_network(x) for x in n] for v, n in SUBNETS.items()}

    def vlan_of(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
        return next((v for v, ns in nets.items() for net in ns if ip in net), None)

    pick = view_by_address(vlan_of, "guest")
    assert pick("10.20.0.7") == "iot"
    assert pick("::ffff:10.10.0.3") == "trusted"  # v4-mapped
    assert pick("fd00:10::5%eth0") == "trusted"
    assert pick("192.0.2.1") == "guest"
    assert pick("not an address") == "guest"
