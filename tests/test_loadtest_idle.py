"""The idle phase's counting (loadtest/traffic.py, loadtest/runner.py): which captured mDNS
packets are browses, how many browse rounds a window holds, the steady-state estimate."""

from __future__ import annotations

import struct
from pathlib import Path

import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype

from loadtest.runner import _steady_state
from loadtest.traffic import BROWSE, OTHER, RESPONSE, classify, kinds


def _query(*questions: tuple[str, str]) -> bytes:
    msg = dns.message.Message(id=0)
    for name, rdtype in questions:
        msg.find_rrset(
            msg.question,
            dns.name.from_text(name),
            dns.rdataclass.IN,
            dns.rdatatype.from_text(rdtype),
            create=True,
        )
    return msg.to_wire()


def _frame(payload: bytes, v6: bool = False) -> bytes:
    udp = struct.pack("!HHHH", 5353, 5353, 8 + len(payload), 0) + payload
    if v6:
        ip = struct.pack("!IHBB", 6 << 28, len(udp), 17, 255) + bytes(32)
        return bytes(12) + b"\x86\xdd" + ip + udp
    ip = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(udp), 0, 0, 255, 17, 0) + bytes(8)
    return bytes(12) + b"\x08\x00" + ip + udp


def _pcap(path: Path, frames: list[tuple[float, bytes]]) -> Path:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 1500, 1)]
    for ts, f in frames:
        out.append(struct.pack("<IIII", int(ts), int((ts % 1) * 1e6), len(f), len(f)) + f)
    path.write_bytes(b"".join(out))
    return path


ENUM = ("_services._dns-sd._udp.local.", "PTR")
IPP = ("_ipp._tcp.local.", "PTR")


def test_browses_refreshes_and_responses_are_told_apart() -> None:
    assert classify(_query(ENUM, IPP)) == (BROWSE, True)
    assert classify(_query(IPP)) == (BROWSE, False)
    assert classify(_query(IPP, ("printer.local.", "A"))) == (OTHER, False)
    assert classify(_query(("Office._ipp._tcp.local.", "PTR"))) == (OTHER, False)
    response = dns.message.make_response(dns.message.from_wire(_query(IPP))).to_wire()
    assert classify(response)[0] == RESPONSE
    assert classify(b"\x00\x01") == (OTHER, False)  # cut short: counted, kind unknown


def test_a_round_is_counted_once_over_both_families(tmp_path: Path) -> None:
    enum = _query(ENUM, IPP)
    path = _pcap(
        tmp_path / "br10.pcap",
        [
            (100.0, _frame(enum)),
            (100.0, _frame(enum, v6=True)),
            (101.0, _frame(_query(("tv.local.", "A")))),
            (200.0, _frame(enum)),
            (900.0, _frame(enum)),  # outside the window
        ],
    )
    k = kinds(path, 50.0, 500.0)
    assert k == {BROWSE: 3, OTHER: 1, RESPONSE: 0, "rounds": 2}
    # one round an hour at steady state, the rest at the window's rate
    assert _steady_state(k, 240.0) == round(3 / 2 + 1 * 3600 / 240)
