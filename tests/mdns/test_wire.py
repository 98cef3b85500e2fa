"""The tolerant mDNS parser on real captures, malformed packets and random bytes."""

from __future__ import annotations

import contextlib
from pathlib import Path

import dns.name
import dns.rdata
import dns.rdatatype
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.mdns import wire
from tests.support.captures import (
    copyleft_malformed_pcaps,
    copyleft_mdns_pcaps,
    esp_idf_packets,
    malformed_pcaps,
    mdns_pcaps,
    udp_payloads,
)


def _parse_counts(pcaps: list[Path]) -> tuple[int, int, int]:
    """(parsed, rejected, packets carrying NSEC) over the mDNS payloads of the captures."""
    parsed = rejected = nsec_packets = 0
    for pcap in pcaps:
        for data in udp_payloads(pcap):
            try:
                packet = wire.parse(data)
            except wire.WireError:
                rejected += 1
                continue
            parsed += 1
            if any(r.rdtype == dns.rdatatype.NSEC for r in packet.records()):
                nsec_packets += 1
    return parsed, rejected, nsec_packets


def test_every_real_mdns_capture_parses_or_is_rejected_cleanly() -> None:
    parsed, rejected, nsec_packets = _parse_counts(mdns_pcaps())
    # zeek, PcapPlusPlus: 44 mDNS datagrams; iPhone probes and announcements carry NSEC
    assert parsed >= 42
    assert nsec_packets >= 14
    assert rejected <= 2  # the IPv6 fragments dpkt does not reassemble


def test_copyleft_mdns_captures_parse() -> None:
    """nDPI, nfstream, pypacker (../shared/testdata): real home LANs, many compressed NSEC."""
    parsed, rejected, nsec_packets = _parse_counts(copyleft_mdns_pcaps())
    # INVENTORY.md: 195 of these packets carry NSEC with compressed names, which dnspython rejects
    assert parsed >= 760
    assert nsec_packets >= 190
    assert rejected == 0


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


def _only_wire_errors(path: Path) -> int:
    """Parses every DNS/mDNS payload of the capture; returns how many were rejected."""
    rejected = 0
    for data in udp_payloads(path, ports=(53, 5353)):
        try:
            wire.parse(data)
        except wire.WireError as exc:
            assert exc.reason
            rejected += 1
    return rejected


@pytest.mark.parametrize("path", malformed_pcaps(), ids=lambda p: p.name)
def test_malformed_captures_raise_only_wire_error(path: Path) -> None:
    _only_wire_errors(path)


def test_copyleft_malformed_captures_raise_only_wire_error() -> None:
    """nDPI's DNSCrypt on UDP 5353 (../shared/testdata): 6 datagrams that are not DNS."""
    assert sum(_only_wire_errors(p) for p in copyleft_malformed_pcaps()) == 6


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


def _digests_checked(datas: list[bytes]) -> int:
    checked = 0
    for data in datas:
        try:
            packet = wire.parse(data)
        except wire.WireError:
            continue
        for rec in packet.records():
            if rec.digest is not None:
                assert rec.digest == rec.rdata.to_digestable(), rec
                checked += 1
    return checked


def test_parser_digests_equal_dnspython_canonical_form() -> None:
    """The store keys records by digest: it must be exactly what dnspython compares."""
    datas = [d for p in mdns_pcaps() for d in udp_payloads(p)]
    datas += [p.read_bytes() for p in esp_idf_packets()]
    assert _digests_checked(datas) > 150


def test_parser_digests_on_copyleft_captures() -> None:
    datas = [d for p in copyleft_mdns_pcaps() for d in udp_payloads(p)]
    assert _digests_checked(datas) > 2800


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


def test_txt_and_addresses_are_kept_as_their_wire_bytes_and_behave_as_dnspython_s() -> None:
    """A parsed TXT is its wire bytes (the very digest object), an address its octets; each
    equals, hashes, renders, prints, pickles and replaces like the rdata dnspython parses."""
    import copy
    import pickle

    import dns.message
    import dns.rdata
    import dns.rrset

    texts = {
        "TXT": '"model=MacBookPro18,3" "" "osxvers=23"',
        "A": "10.30.0.104",
        "AAAA": "fd00:30::67:1",
    }
    msg = dns.message.make_response(dns.message.make_query("x.local.", "A"))
    for rtype, text in texts.items():
        msg.answer.append(dns.rrset.from_text("dev.local.", 120, "IN", rtype, text))
    for rec in wire.parse(msg.to_wire()).answers:
        ref = dns.rdata.from_text("IN", rec.rdtype, texts[dns.rdatatype.to_text(rec.rdtype)])
        got = rec.rdata
        assert type(got) is not type(ref)  # the wire-backed class
        assert got == ref and hash(got) == hash(ref) and str(got) == str(ref)
        assert got.to_wire() == ref.to_wire() == rec.digest
        assert pickle.loads(pickle.dumps(got)) == ref and copy.copy(got) == ref
        if rec.rdtype == dns.rdatatype.TXT:
            assert got.wire is rec.digest  # type: ignore[attr-defined]  # one bytes object
            assert got.strings == ref.strings  # type: ignore[attr-defined]
            assert got.replace(strings=(b"a",)).to_wire() == b"\x01a"
        else:
            assert got.packed is rec.digest  # type: ignore[attr-defined]
            assert got.address == ref.address  # type: ignore[attr-defined]
            assert got.replace(address=ref.address) == ref  # type: ignore[attr-defined]


def test_new_names_share_their_parents_labels() -> None:
    """Two new names read from different packets hold one object per parent label (their
    first labels stay their own), and are the names they were read as."""

    def packet(instance: bytes) -> bytes:
        return wire.encode(
            wire.Packet(
                0,
                wire.FLAG_QR,
                answers=[
                    wire.Record(
                        dns.name.from_text("_memo-test._tcp.local."),
                        dns.rdatatype.PTR,
                        120,
                        dns.rdata.from_text(
                            "IN", "PTR", instance.decode() + "._memo-test._tcp.local."
                        ),
                    )
                ],
            )
        )

    first = wire.parse(packet(b"alpha")).answers[0].rdata.target  # type: ignore[attr-defined]
    second = wire.parse(packet(b"beta")).answers[0].rdata.target  # type: ignore[attr-defined]
    assert first == dns.name.from_text("alpha._memo-test._tcp.local.")
    assert second == dns.name.from_text("beta._memo-test._tcp.local.")
    assert all(a is b for a, b in zip(first.labels[1:], second.labels[1:], strict=True))
    assert first.labels[0] == b"alpha" and second.labels[0] == b"beta"
