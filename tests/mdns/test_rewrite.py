"""The packet rewrite (bridge/mdns/rewrite.py) reads names within the parser's limits: a
compression chain wire.parse refuses is refused by rebuild too, one it takes is rebuilt."""

from __future__ import annotations

import struct

import dns.name
import pytest

from bridge import const
from bridge.mdns import wire
from bridge.mdns.rewrite import Unsupported, layout, rebuild


def chained(pointers: int) -> bytes:
    """A response whose second record's owner ``a.local.`` is reached through ``pointers``
    compression pointers: one in the owner, the rest a chain hidden in the first record's
    TXT string (never read as a name there, so the parser follows every hop)."""
    head = struct.pack("!HHHHHH", 0, wire.FLAG_QR | wire.FLAG_AA, 0, 2, 0, 0)
    owner = b"\x01t\x00"
    fixed = struct.Struct("!HHIH")
    start = len(head) + len(owner) + fixed.size + 1  # where the TXT string's bytes begin
    text = bytearray(b"\x01a\x05local\x00")
    prev = start
    for _ in range(pointers - 1):
        here = start + len(text)
        text += struct.pack("!H", 0xC000 | prev)
        prev = here
    rdata = bytes((len(text),)) + text
    first = owner + fixed.pack(16, 1, 120, len(rdata)) + rdata  # TXT
    second = struct.pack("!H", 0xC000 | prev) + fixed.pack(1, 1, 120, 4) + bytes((10, 0, 0, 1))
    return head + first + second


def test_pointer_chain_at_the_limit_is_parsed_and_rebuilt() -> None:
    raw = chained(const.MDNS_MAX_POINTERS)
    assert wire.parse(raw).answers[1].name == dns.name.from_text("a.local.")
    [out], dropped = rebuild(raw, layout(raw), [], [1], const.MDNS_MAX_PACKET)
    [record] = wire.parse(out).answers
    assert not dropped
    assert record.name == dns.name.from_text("a.local.")
    assert str(record.rdata) == "10.0.0.1"


def test_pointer_chain_over_the_limit_is_refused_by_both() -> None:
    raw = chained(const.MDNS_MAX_POINTERS + 1)
    with pytest.raises(wire.WireError) as exc:
        wire.parse(raw)
    assert exc.value.reason == "bad_pointer"
    with pytest.raises(Unsupported):
        rebuild(raw, layout(raw), [], [1], const.MDNS_MAX_PACKET)
