"""The fast path's keys and splices, without sockets (bridge/dnsfront/fastpath.py)."""

from __future__ import annotations

import struct

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.rdatatype
import dns.rrset
import pytest

from bridge import const
from bridge.dnsfront.cache import ResponseCache
from bridge.dnsfront.fastpath import query_key, splice


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


def _with_options(query: bytes, options: bytes) -> bytes:
    """``query`` (EDNS, no options) with these raw option bytes in its OPT."""
    return query[:-2] + struct.pack("!H", len(options)) + options


@pytest.mark.parametrize(
    "options,good",
    [
        (struct.pack("!HH", 10, 8) + b"c" * 8, True),  # client cookie
        (struct.pack("!HH", 10, 24) + b"c" * 24, True),  # client and server cookie
        (struct.pack("!HH", 3, 0), True),  # NSID request
        (struct.pack("!HH", 10, 5) + b"c" * 5, False),  # cookie lengths RFC 7873 forbids
        (struct.pack("!HH", 10, 12) + b"c" * 12, False),
        (struct.pack("!HH", 10, 41) + b"c" * 41, False),
        (struct.pack("!HH", 3, 10) + b"x" * 4, False),  # longer than the OPT
        (b"\x00\x03\x00", False),  # a cut option header
    ],
)
def test_malformed_edns_options_never_take_the_fast_path(options: bytes, good: bool) -> None:
    """Cached answers ignore options, so a malformed one got NOERROR from the cache and FORMERR
    from the slow path; now it always goes to the slow path, which dnspython refuses."""
    plain = wire("office.local.", use_edns=0, payload=1232)
    query = _with_options(plain, options)
    assert (query_key(query) is not None) is good
    cache = cached(plain)
    assert (fastpath_cached(cache, query) is not None) is good
    if not good:
        with pytest.raises(dns.exception.FormError):
            dns.message.from_wire(query)


def fastpath_cached(cache: ResponseCache, query: bytes) -> bytes | None:
    entry = cache.entries.get(query[2:])
    if entry is not None:
        return query[:2] + entry[0]
    parsed = query_key(query)
    entry = cache.entries.get(parsed[0]) if parsed is not None else None
    return splice(query, parsed[1], entry) if parsed is not None and entry is not None else None
