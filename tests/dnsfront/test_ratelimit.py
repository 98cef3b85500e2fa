"""Response rate limiting (RRL) as functions of a client address, the time and the reply."""

from __future__ import annotations

import dns.flags
import dns.message

from bridge import const
from bridge.dnsfront.ratelimit import ResponseRateLimiter, client_prefix, truncated

QUERY = dns.message.make_query("office.local.", "A", use_edns=0, payload=4096).to_wire()
REPLY = b"reply"


def send(rrl: ResponseRateLimiter, host: str, n: int, now: float) -> list[bytes | None]:
    return [rrl.admit(host, QUERY, REPLY, now) for _ in range(n)]


def test_a_prefix_gets_its_rate_then_every_second_limited_answer_slips_as_tc() -> None:
    rrl = ResponseRateLimiter(rate=10, window=5, slip=2)
    out = send(rrl, "10.20.0.7", 30, 100.0)
    assert out[:10] == [REPLY] * 10  # a second's worth saved up
    limited = out[10:]
    slips = [r for r in limited if r is not None]
    assert len(slips) == 10 and rrl.slipped == 10 and rrl.dropped == 10
    tc = dns.message.from_wire(slips[0])
    assert tc.flags & dns.flags.TC and tc.flags & dns.flags.QR and not tc.answer
    assert tc.question == dns.message.from_wire(QUERY).question


def test_the_whole_prefix_is_counted_together_and_other_prefixes_are_served() -> None:
    rrl = ResponseRateLimiter(rate=5, window=5, slip=0)
    assert send(rrl, "10.20.0.7", 5, 100.0) == [REPLY] * 5
    assert send(rrl, "10.20.0.200", 3, 100.0) == [None] * 3  # same /24
    assert send(rrl, "10.20.1.7", 5, 100.0) == [REPLY] * 5  # another /24
    assert send(rrl, "fd00:10:0:ab::1", 5, 100.0) == [REPLY] * 5
    assert send(rrl, "fd00:10:0:cd::2", 1, 100.0) == [None]  # same /56
    assert send(rrl, "fd00:10:0:1ab::1", 1, 100.0) == [REPLY]  # another /56
    assert rrl.slipped == 0 and rrl.dropped == 4


def test_credit_comes_back_at_the_rate_and_a_flood_is_limited_at_most_window_seconds() -> None:
    rrl = ResponseRateLimiter(rate=10, window=2, slip=0)
    send(rrl, "10.20.0.7", 10, 100.0)
    assert send(rrl, "10.20.0.7", 1, 100.0) == [None]
    assert send(rrl, "10.20.0.7", 1, 100.15) == [None]  # 1.5 back, 1 owed before
    assert send(rrl, "10.20.0.7", 4, 100.5) == [REPLY, REPLY, REPLY, None]  # 3.5 more
    send(rrl, "10.20.0.7", 100_000, 101.0)  # a long flood: the debt stops at rate x window
    assert send(rrl, "10.20.0.7", 1, 102.9) == [None]
    assert send(rrl, "10.20.0.7", 1, 103.2) == [REPLY]  # window (2 s) and a bit later


def test_the_table_is_bounded_and_drops_the_prefix_tracked_longest() -> None:
    rrl = ResponseRateLimiter(rate=1, window=5, slip=0, max_prefixes=100)
    for i in range(1000):
        rrl.admit(f"10.{i // 256}.{i % 256}.1", QUERY, REPLY, 100.0)
    assert len(rrl._accounts) <= 100 and len(rrl._prefixes) <= 100
    assert rrl.admit("10.3.231.1", QUERY, REPLY, 100.0) is None  # the newest is still held


def test_prefixes_and_the_slip_reply() -> None:
    assert client_prefix("10.20.0.7") == client_prefix("10.20.0.99") == bytes([10, 20, 0, 0])
    assert const.DNS_RRL_IPV6_PREFIX == 56
    assert client_prefix("fd00:10::1%eth0") == client_prefix("fd00:10:0:ff::9")
    assert client_prefix("not an address") == "not an address"
    m = dns.message.make_query("Office.local.", "SRV")
    m.id = 4321
    tc = dns.message.from_wire(truncated(m.to_wire()) or b"")
    assert tc.id == 4321 and tc.flags & dns.flags.TC and tc.flags & dns.flags.RD
    assert str(tc.question[0].name) == "Office.local." and tc.edns < 0
    assert truncated(b"\x00\x01garbage") is None
