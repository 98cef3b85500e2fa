"""mDNS wire format: a tolerant parser and a small encoder, pure functions over bytes.

Why not dnspython's ``dns.message.from_wire``: mDNS permits compression pointers inside NSEC
rdata (RFC 6762 §18.14) and dnspython rejects them (DecompressionForbidden), which loses
whole real-world packets. Why not zeroconf's parser: it joins labels with "." and so cannot
keep instance names that contain dots. We walk the sections ourselves and let dnspython
parse each rdata with a parser that always allows decompression, so every name keeps its
exact labels and dnspython's pointer-loop and bounds checks still protect us.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.wire

CLASS_MASK = 0x7FFF
TOP_BIT = 0x8000  # cache-flush on records, unicast-response (QU) on questions
FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_TC = 0x0200

SECTION_ANSWER = 1
SECTION_AUTHORITY = 2
SECTION_ADDITIONAL = 3

_EMPTY_TXT = dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, [b""])
_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")
_Q_FIXED = struct.Struct("!HH")


class WireError(Exception):
    """A packet that cannot be parsed; ``reason`` is a short, low-cardinality label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class _Parser(dns.wire.Parser):
    """dnspython's parser, but names may be compressed anywhere (mDNS allows it in NSEC)."""

    def get_name(
        self, origin: dns.name.Name | None = None, decompress: bool = True
    ) -> dns.name.Name:
        name = dns.name.from_wire_parser(self, True)
        if origin:
            name = name.relativize(origin)
        return name


@dataclass(frozen=True, slots=True)
class Question:
    name: dns.name.Name
    rdtype: int
    rdclass: int = dns.rdataclass.IN
    unicast: bool = False  # QU bit


@dataclass(frozen=True, slots=True)
class Record:
    name: dns.name.Name
    rdtype: int
    ttl: int
    rdata: dns.rdata.Rdata
    rdclass: int = dns.rdataclass.IN
    cache_flush: bool = False


@dataclass(slots=True)
class Packet:
    id: int = 0
    flags: int = 0
    questions: list[Question] = field(default_factory=list)
    answers: list[Record] = field(default_factory=list)
    authorities: list[Record] = field(default_factory=list)
    additionals: list[Record] = field(default_factory=list)

    @property
    def is_response(self) -> bool:
        return bool(self.flags & FLAG_QR)

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    def records(self) -> list[Record]:
        return self.answers + self.authorities + self.additionals


def parse(data: bytes) -> Packet:
    """Parse one mDNS message; raises WireError with a reason, never anything else."""
    if len(data) < 12:
        raise WireError("short", f"{len(data)} bytes")
    pid, flags, qd, an, ns, ar = _HEADER.unpack_from(data)
    # Each question takes at least 5 bytes, each record at least 11: reject absurd counts
    # before looping over them (hostile headers claim 65535 of each).
    if 12 + qd * 5 + (an + ns + ar) * 11 > len(data):
        raise WireError("counts", f"qd={qd} an={an} ns={ns} ar={ar} in {len(data)} bytes")
    parser = _Parser(data, 12)
    packet = Packet(pid, flags)
    try:
        for _ in range(qd):
            qname = parser.get_name()
            qtype, qclass = parser.get_struct("!HH")
            packet.questions.append(
                Question(qname, qtype, qclass & CLASS_MASK, bool(qclass & TOP_BIT))
            )
        for section, count in ((packet.answers, an), (packet.authorities, ns),
                               (packet.additionals, ar)):
            for _ in range(count):
                record = _read_record(parser)
                if record is not None:
                    section.append(record)
    except WireError:
        raise
    except (dns.exception.DNSException, ValueError, struct.error, UnicodeError) as exc:
        raise WireError(type(exc).__name__.lower(), str(exc)) from None
    return packet


def _read_record(parser: _Parser) -> Record | None:
    name = parser.get_name()
    rdtype, rdclass, ttl, rdlen = parser.get_struct("!HHIH")
    if rdtype == dns.rdatatype.OPT:
        parser.get_bytes(rdlen)  # EDNS in mDNS (Apple's Owner option): nothing to keep
        return None
    klass = rdclass & CLASS_MASK
    if rdtype == dns.rdatatype.TXT and rdlen == 0:
        # RFC 6763 §6.1 asks for one empty string; python-zeroconf sends none at all, and
        # dnspython refuses that, which would lose the whole packet
        return Record(name, rdtype, ttl, _EMPTY_TXT, klass, bool(rdclass & TOP_BIT))
    with parser.restrict_to(rdlen):
        rdata = dns.rdata.from_wire_parser(klass, rdtype, parser, None)
    return Record(name, rdtype, ttl, rdata, klass, bool(rdclass & TOP_BIT))


# --- encoding ------------------------------------------------------------------------------


def encode(packet: Packet) -> bytes:
    """Render a packet with name compression (what a reflector or a querier sends)."""
    out = io.BytesIO()
    out.write(
        _HEADER.pack(
            packet.id,
            packet.flags,
            len(packet.questions),
            len(packet.answers),
            len(packet.authorities),
            len(packet.additionals),
        )
    )
    compress: dict[dns.name.Name, int] = {}
    for q in packet.questions:
        q.name.to_wire(out, compress)
        out.write(_Q_FIXED.pack(q.rdtype, q.rdclass | (TOP_BIT if q.unicast else 0)))
    for section in (packet.answers, packet.authorities, packet.additionals):
        for rec in section:
            _write_record(out, rec, compress)
    return out.getvalue()


def _write_record(out: io.BytesIO, rec: Record, compress: dict[dns.name.Name, int]) -> None:
    rec.name.to_wire(out, compress)
    klass = rec.rdclass | (TOP_BIT if rec.cache_flush else 0)
    start = out.tell()
    out.write(_RR_FIXED.pack(rec.rdtype, klass, rec.ttl, 0))
    rec.rdata.to_wire(out, compress, None, False)
    end = out.tell()
    out.seek(start + 8)
    out.write(struct.pack("!H", end - start - 10))
    out.seek(end)


def query(questions: list[Question], known_answers: list[Record] | None = None) -> bytes:
    """An mDNS query (ID 0, RFC 6762 §18.1) with optional known answers (§7.1)."""
    return encode(Packet(0, 0, list(questions), list(known_answers or [])))
