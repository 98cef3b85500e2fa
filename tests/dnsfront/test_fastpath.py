"""The fast path's keys and splices, without sockets (bridge/dnsfront/fastpath.py)."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.rdatatype
import dns.rrset

from bridge.dnsfront.fastpath import ResponseCache, query_key, splice


def wire(
    name: str, rdtype: str | int = "A", flags: int = dns.flags.RD, qid: int = 7, **kw: object
) -> bytes:
    q = dns.message.make_query(name, rdtype, id=qid, **kw)  # type: ignore[arg-type]
    q.flags = flags
    return q.to_wire()


def reply_to(query: bytes) -> bytes:
    msg = dns.message.from_wire(query)
    r = dns.message.make_response(msg)
    r.answer.append(dns.rrset.from_text(msg.question[0].name, 10, "IN", "A", "10.0.0.1"))
    return r.to_wire()


def cached(query: bytes) -> ResponseCache:
    parsed = query_key(query)
    assert parsed is not None
    cache = ResponseCache()
    cache.put(parsed[0], reply_to(query), parsed[1], 100.0)
    return cache


def test_common_query_is_its_own_key() -> None:
    q = wire("office.local.", use_edns=0, payload=1232)
    parsed = query_key(q)
    assert parsed is not None and parsed[0] == q[2:]
    cache = cached(q)
    other_id = wire("office.local.", qid=4242, use_edns=0, payload=1232)
    entry = cache.entries[other_id[2:]]
    assert other_id[:2] + entry[0] == reply_to(other_id)


def test_case_and_echoed_flags_share_an_entry_and_echo_the_question() -> None:
    cache = cached(wire("office.local."))
    q = wire("OFFice.LOCAL.", flags=dns.flags.RD | dns.flags.AD, qid=99)
    assert q[2:] not in cache.entries  # not the canonical bytes: spliced instead
    parsed = query_key(q)
    assert parsed is not None
    out = splice(q, parsed[1], cache.entries[parsed[0]])
    msg = dns.message.from_wire(out)
    assert msg.id == 99 and out[12 : parsed[1]] == q[12 : parsed[1]]  # exact case echoed
    assert [rr.to_text() for rr in msg.answer] == ["OFFice.LOCAL. 10 IN A 10.0.0.1"]


def test_what_changes_the_answer_changes_the_key() -> None:
    base = query_key(wire("x.local.", use_edns=0, payload=1232))
    assert base is not None
    for other in (
        wire("x.local.", "AAAA", use_edns=0, payload=1232),
        wire("x.local.", use_edns=0, payload=512),
        wire("x.local.", use_edns=0, payload=1232, want_dnssec=True),
        wire("x.local.", flags=dns.flags.RD | dns.flags.CD, use_edns=0, payload=1232),
        wire("x.local."),
    ):
        parsed = query_key(other)
        assert parsed is not None and parsed[0] != base[0]


def test_type_bytes_are_not_lowercased() -> None:
    https = query_key(wire("x.local.", 65))  # 0x0041: 'A' as a byte
    type97 = query_key(wire("x.local.", 97))  # 0x0061: 'a'
    assert https is not None and type97 is not None and https[0] != type97[0]


def test_edns_options_are_not_part_of_the_key() -> None:
    plain = query_key(wire("x.local.", use_edns=0, payload=1232))
    cookie = dns.edns.GenericOption(dns.edns.COOKIE, b"\x01" * 8)
    with_opt = wire("x.local.", use_edns=0, payload=1232, options=[cookie])
    parsed = query_key(with_opt)
    assert plain is not None and parsed is not None and parsed[0] == plain[0]


def test_shapes_the_fast_path_refuses() -> None:
    response = bytearray(wire("x.local."))
    response[2] |= 0x80
    assert query_key(bytes(response)) is None
    assert query_key(wire("x.local.")[:-1]) is None
    assert query_key(wire("x.local.") + b"\x00") is None


def test_variants_are_keyed_by_their_own_bytes_and_bounded() -> None:
    import bridge.const as const

    cache = cached(wire("office.local."))
    q = wire("Office.Local.", qid=5)
    parsed = query_key(q)
    assert parsed is not None
    reply = splice(q, parsed[1], cache.entries[parsed[0]])
    cache.add_variant(q, reply, 100.0)
    again = wire("Office.Local.", qid=6)
    assert again[:2] + cache.entries[again[2:]][0] == again[:2] + reply[2:]
    for i in range(const.DNS_RESPONSE_VARIANTS_MAX + 5):
        cache.add_variant(i.to_bytes(4, "big") + q[4:], reply, 100.0)
    assert cache.variants == const.DNS_RESPONSE_VARIANTS_MAX
    cache.clear()
    assert cache.variants == 0 and not cache.entries
