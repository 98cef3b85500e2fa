"""Rebuild a received mDNS packet from its own bytes: a subset of its questions and records,
QU bits and TC cleared, split to fit an MTU, without re-encoding through dnspython.

Records are copied as received and their names re-pointed (compression pointers into what the
new packet holds), so a copy costs slices, not an encode. Used by the reflector on packets
``wire.parse`` accepted; what cannot be rebuilt here raises :class:`Unsupported` (the caller
falls back to ``wire.encode``).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import dns.rdatatype

from .. import const
from ..errors import GatewayError
from . import wire
from .wire import skip_name

_PTR = dns.rdatatype.PTR
_SRV = dns.rdatatype.SRV
_NSEC = dns.rdatatype.NSEC


# rdata layouts with names: 0 the whole rdata is a name, else the bytes before the name;
# NSEC: a name then a bitmap (written uncompressed). Other types with names: dnspython fallback.
_NAME_RDATA: dict[int, int] = {
    _PTR: 0,
    dns.rdatatype.CNAME: 0,
    dns.rdatatype.NS: 0,
    dns.rdatatype.DNAME: 0,
    _SRV: 6,
    dns.rdatatype.MX: 2,
    _NSEC: -1,
}
_OTHER_NAME_TYPES = frozenset(
    {
        dns.rdatatype.SOA,
        dns.rdatatype.MINFO,
        dns.rdatatype.RP,
        dns.rdatatype.AFSDB,
        dns.rdatatype.RT,
        dns.rdatatype.NAPTR,
        dns.rdatatype.KX,
        dns.rdatatype.PX,
        dns.rdatatype.MB,
        dns.rdatatype.MG,
        dns.rdatatype.MR,
        dns.rdatatype.MD,
        dns.rdatatype.MF,
        dns.rdatatype.SIG,
        dns.rdatatype.RRSIG,
        dns.rdatatype.NXT,
        dns.rdatatype.TKEY,
        dns.rdatatype.TSIG,
        dns.rdatatype.HIP,
        dns.rdatatype.SVCB,
        dns.rdatatype.HTTPS,
    }
)
_COUNTS = struct.Struct("!HHHH")
_MAX_POINTERS = const.MDNS_MAX_POINTERS
_HEADER = struct.Struct("!HHHHHH")


class Unsupported(GatewayError):
    """The received bytes cannot be rebuilt here (fall back to dnspython's encoder)."""


# A question: (start, end of name). A record: (start, end of owner name, rdtype, end, section,
# end of the rdata's name for NSEC else 0).
_QSpan = tuple[int, int]
_RSpan = tuple[int, int, int, int, int, int]


def _layout(raw: bytes) -> tuple[list[_QSpan], list[_RSpan]]:
    qd, an, ns, ar = _COUNTS.unpack_from(raw, 4)
    pos = 12
    qs: list[_QSpan] = []
    for _ in range(qd):
        end = skip_name(raw, pos)
        qs.append((pos, end))
        pos = end + 4
    rs: list[_RSpan] = []
    for section, count in ((1, an), (2, ns), (3, ar)):
        for _ in range(count):
            end = skip_name(raw, pos)
            rdtype, rdlen = struct.unpack_from("!H6xH", raw, end)
            if rdtype in _OTHER_NAME_TYPES:
                raise Unsupported(str(rdtype))
            rend = end + 10 + rdlen
            extra = skip_name(raw, end + 10) if rdtype == _NSEC else 0
            rs.append((pos, end, rdtype, rend, section, extra))
            pos = rend
    if pos > len(raw):
        raise Unsupported("short")
    return qs, rs


def _emit_name(
    raw: bytes, pos: int, out: bytearray, moved: dict[int, int], compress: bool = True, cut: int = 0
) -> None:
    """Copy the name at ``pos`` of ``raw``; point at what this packet already holds: what it
    copied verbatim (``raw[:cut]``) or emitted before (``moved``: old offset -> new)."""
    hops = 0
    while True:
        if compress:
            tgt = pos if pos < cut else moved.get(pos)
            if tgt is not None:
                out.append(0xC0 | tgt >> 8)
                out.append(tgt & 0xFF)
                return
        length = raw[pos]
        if length >= 0xC0:
            pos = (length & 0x3F) << 8 | raw[pos + 1]
            hops += 1
            # parse() has the same bound, but stops at a name it read before, so a packet it
            # took can chain more hops: such a name is re-encoded instead (never in practice)
            if hops > _MAX_POINTERS:
                raise Unsupported("pointer hops")
            continue
        if length == 0:
            out.append(0)
            return
        here = len(out)
        if here < 0x3FFF and pos not in moved:
            moved[pos] = here
        out += raw[pos : pos + length + 1]
        pos += length + 1


def _emit_question(
    raw: bytes, q: _QSpan, out: bytearray, moved: dict[int, int], cut: int = 0
) -> None:
    _emit_name(raw, q[0], out, moved, True, cut)
    out += raw[q[1] : q[1] + 2]
    out.append(raw[q[1] + 2] & 0x7F)  # QU bit cleared: answers come back by multicast
    out.append(raw[q[1] + 3])


def _emit_record(
    raw: bytes, r: _RSpan, out: bytearray, moved: dict[int, int], cut: int = 0
) -> None:
    start, name_end, rdtype, end, _, nsec_end = r
    _emit_name(raw, start, out, moved, True, cut)
    before = _NAME_RDATA.get(rdtype)
    if before is None:
        out += raw[name_end:end]
        return
    out += raw[name_end : name_end + 8]
    at = len(out)
    out += b"\0\0"
    rd = name_end + 10
    if before == -1:  # NSEC: next name uncompressed, then the type bitmap
        _emit_name(raw, rd, out, moved, False, cut)
        out += raw[nsec_end:end]
    else:
        out += raw[rd : rd + before]
        _emit_name(raw, rd + before, out, moved, True, cut)
    rdlen = len(out) - at - 2
    out[at] = rdlen >> 8
    out[at + 1] = rdlen & 0xFF


Layout = tuple[list[_QSpan], list[_RSpan]]


def layout(raw: bytes) -> Layout:
    """Where each question and record (OPT included) of ``raw`` lies."""
    try:
        return _layout(raw)
    except (IndexError, struct.error) as exc:
        raise Unsupported("layout") from exc


def rebuild(
    raw: bytes, where: Layout, questions: Sequence[int], records: Sequence[int], limit: int
) -> tuple[list[bytes], int]:
    """Packets holding the chosen questions and records (indices into ``where``, the layout of
    ``raw``) with QU bits and TC cleared, each at most ``limit`` bytes. Returns (packets, items
    dropped because they alone exceed ``limit``). A query split over several packets sets TC on
    all but the last (RFC 6762 §7.2). Raises Unsupported when the bytes cannot be rebuilt."""
    qspans, rspans = where
    pid, flags = struct.unpack_from("!HH", raw, 0)
    flags &= ~wire.FLAG_TC
    try:
        # The items that open the packet unchanged are copied as they are: their compression
        # pointers point backwards, into bytes that stay where they were (a link-local address
        # dropped at the end of an announcement costs one slice, not a re-encode).
        nq, nr = len(questions), len(records)
        kq = kr = 0
        while kq < nq and questions[kq] == kq:
            kq += 1
        if kq == len(qspans):
            while kr < nr and records[kr] == kr:
                kr += 1
        cut = rspans[kr - 1][3] if kr else qspans[kq - 1][1] + 4 if kq else 12
        out = bytearray(raw[:cut])
        counts = [kq, 0, 0, 0]
        for i in range(kq):
            out[qspans[i][1] + 2] &= 0x7F  # QU cleared: answers come back by multicast
        for i in range(kr):
            counts[rspans[i][4]] += 1
        moved: dict[int, int] = {}
        for i in questions[kq:]:  # the rest: names re-pointed
            _emit_question(raw, qspans[i], out, moved, cut)
            counts[0] += 1
        for i in records[kr:]:
            _emit_record(raw, rspans[i], out, moved, cut)
            counts[rspans[i][4]] += 1
        if len(out) <= limit:
            _HEADER.pack_into(out, 0, pid, flags, *counts)
            return [bytes(out)], 0
        items: list[tuple[int, int]] = [(0, i) for i in questions] + [
            (rspans[i][4], i) for i in records
        ]
        return _split(raw, qspans, rspans, items, pid, flags, limit)
    except IndexError as exc:
        raise Unsupported("bounds") from exc


def _split(
    raw: bytes,
    qspans: list[_QSpan],
    rspans: list[_RSpan],
    items: list[tuple[int, int]],
    pid: int,
    flags: int,
    limit: int,
) -> tuple[list[bytes], int]:
    packets: list[bytes] = []
    dropped = 0
    out = bytearray(12)
    moved: dict[int, int] = {}
    counts = [0, 0, 0, 0]
    k = 0
    while k < len(items):
        section, i = items[k]
        mark = len(out)
        trial = dict(moved)
        if section == 0:
            _emit_question(raw, qspans[i], out, trial)
        else:
            _emit_record(raw, rspans[i], out, trial)
        if len(out) <= limit:
            moved = trial
            counts[section] += 1
            k += 1
            continue
        del out[mark:]
        if not any(counts):  # alone and still too big
            dropped += 1
            k += 1
            continue
        _HEADER.pack_into(out, 0, pid, flags, *counts)
        packets.append(bytes(out))
        out = bytearray(12)
        moved = {}
        counts = [0, 0, 0, 0]
    if any(counts):
        _HEADER.pack_into(out, 0, pid, flags, *counts)
        packets.append(bytes(out))
    if not flags & wire.FLAG_QR:
        for j in range(len(packets) - 1):
            b = bytearray(packets[j])
            b[2] |= wire.FLAG_TC >> 8
            packets[j] = bytes(b)
    return packets, dropped


def clear_qu(raw: bytes) -> bytes:
    """``raw`` with every question's QU bit cleared (nothing else touched)."""
    qd = struct.unpack_from("!H", raw, 4)[0]
    out = bytearray(raw)
    pos = 12
    for _ in range(qd):
        pos = skip_name(raw, pos)
        out[pos + 2] &= 0x7F
        pos += 4
    return bytes(out)
