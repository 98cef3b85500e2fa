"""The tolerant mDNS parser on real captures, malformed packets and random bytes."""

from __future__ import annotations

import contextlib

import dns.name
import dns.rdatatype
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.mdns import wire
from tests.captures import esp_idf_packets, malformed_pcaps, mdns_pcaps, udp_payloads


def test_every_real_mdns_capture_parses_or_is_rejected_cleanly() -> None:
    parsed = rejected = 0
    nsec_packets = 0
    for pcap in mdns_pcaps():
        for data in udp_payloads(pcap):
            try:
                packet = wire.parse(data)
            except wire.WireError:
                rejected += 1
                continue
            parsed += 1
            if any(r.rdtype == dns.rdatatype.NSEC for r in packet.records()):
                nsec_packets += 1
    # INVENTORY.md: 216 packets carry NSEC with compressed names, which dnspython rejects.
    assert parsed >= 790
    assert nsec_packets >= 200
    assert rejected <= 8  # only the DNSCrypt garbage on 5353 and fragment leftovers


@pytest.mark.parametrize("path", esp_idf_packets(), ids=lambda p: p.name)
def test_esp_idf_packets_parse_and_round_trip(path) -> None:  # type: ignore[no-untyped-def]
    packet = wire.parse(path.read_bytes())
    again = wire.parse(wire.encode(packet))
    assert again.questions == packet.questions
    assert again.records() == packet.records()


def test_instance_names_keep_dots_spaces_and_utf8() -> None:
    name = dns.name.Name([b"Hristo\xe2\x80\x99s Mac.mini", b"_smb", b"_tcp", b"local", b""])
    rdata = dns.rdata.from_text("IN", "PTR", "x.local.")
    data = wire.encode(
        wire.Packet(0, wire.FLAG_QR, [], [wire.Record(name, dns.rdatatype.PTR, 120, rdata)])
    )
    back = wire.parse(data).answers[0].name
    assert back.labels[0] == b"Hristo\xe2\x80\x99s Mac.mini"
    assert len(back) == 5


def test_cache_flush_and_qu_bits() -> None:
    packet = wire.parse((esp_idf_packets()[0].parent / "test-15.bin").read_bytes())
    assert any(r.cache_flush for r in packet.records())
    q = wire.parse((esp_idf_packets()[0].parent / "test-28.bin").read_bytes()).questions[0]
    assert q.unicast and q.rdclass == 1


@pytest.mark.parametrize("path", malformed_pcaps(), ids=lambda p: p.name)
def test_malformed_captures_raise_only_wire_error(path) -> None:  # type: ignore[no-untyped-def]
    for data in udp_payloads(path, ports=(53, 5353)):
        try:
            wire.parse(data)
        except wire.WireError as exc:
            assert exc.reason


def test_compression_loop_is_rejected() -> None:
    data = b"\x00\x00\x84\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"\xc0\x0c\x00\x01\x00\x01"
    with pytest.raises(wire.WireError):
        wire.parse(data)


def test_absurd_counts_rejected_before_looping() -> None:
    data = b"\x00\x00\x84\x00\xff\xff\xff\xff\xff\xff\xff\xff" + b"\x00" * 20
    with pytest.raises(wire.WireError) as err:
        wire.parse(data)
    assert err.value.reason == "counts"


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise_anything_but_wire_error(data: bytes) -> None:
    with contextlib.suppress(wire.WireError):
        wire.parse(data)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_real_packets_never_crash(data: st.DataObject) -> None:
    packets = [p.read_bytes() for p in esp_idf_packets()]
    raw = bytearray(data.draw(st.sampled_from(packets)))
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    with contextlib.suppress(wire.WireError):
        wire.parse(bytes(raw))


def test_zero_length_txt_is_one_empty_string() -> None:
    """python-zeroconf sends services without TXT as a zero-length TXT rdata; keep the packet."""
    import struct

    name = b"\x03foo\x05local\x00"
    pkt = (
        struct.pack("!HHHHHH", 0, 0x8400, 0, 1, 0, 0)
        + name
        + struct.pack("!HHIH", dns.rdatatype.TXT, 0x8001, 120, 0)
    )
    (rec,) = wire.parse(pkt).answers
    assert rec.rdtype == dns.rdatatype.TXT and rec.rdata.strings == (b"",)  # type: ignore[attr-defined]
    assert rec.cache_flush and rec.ttl == 120


def test_parser_digests_equal_dnspython_canonical_form() -> None:
    """The store keys records by digest: it must be exactly what dnspython compares."""
    checked = 0
    datas = [d for p in mdns_pcaps() for d in udp_payloads(p)]
    datas += [p.read_bytes() for p in esp_idf_packets()]
    for data in datas:
        try:
            packet = wire.parse(data)
        except wire.WireError:
            continue
        for rec in packet.records():
            if rec.digest is not None:
                assert rec.digest == rec.rdata.to_digestable(), rec
                checked += 1
    assert checked > 3000


_label = st.binary(min_size=1, max_size=63)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(_label, min_size=1, max_size=4).filter(lambda ls: sum(len(x) + 1 for x in ls) < 255)
)
def test_interned_names_hash_and_compare_like_dnspython(labels: list[bytes]) -> None:
    """Parsed (interned) names and dnspython's names are keys of the same dicts."""
    ours = wire.intern(tuple(labels))
    theirs = dns.name.Name((*labels, b""))
    upper = wire.intern(tuple(x.upper() for x in labels))
    assert hash(ours) == hash(theirs) == hash(upper)
    assert ours == theirs and theirs == ours and ours == upper
    assert {theirs: 1}.get(ours) == 1 and {ours: 1}.get(theirs) == 1
    assert ours.canonical == theirs.canonicalize().to_wire()  # type: ignore[attr-defined]
