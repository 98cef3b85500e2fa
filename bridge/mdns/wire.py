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
import socket
import struct
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.NSEC
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.SRV
import dns.wire

from .. import const
from ..errors import GatewayError

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
_OPT_FIXED = struct.Struct("!HH")  # an OPT's type and class (its UDP payload size)
_Q_FIXED = struct.Struct("!HH")


class WireError(GatewayError):
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


class Record:
    """One resource record as received or to send; treated as immutable.

    Written out rather than a frozen dataclass: the parser makes one per record received,
    and a frozen dataclass sets each field through object.__setattr__ (~1 us a record)."""

    __slots__ = ("cache_flush", "digest", "name", "rdata", "rdclass", "rdtype", "ttl")

    def __init__(
        self,
        name: dns.name.Name,
        rdtype: int,
        ttl: int,
        rdata: dns.rdata.Rdata,
        rdclass: int = dns.rdataclass.IN,
        cache_flush: bool = False,
        digest: bytes | None = None,
    ) -> None:
        self.name = name
        self.rdtype = rdtype
        self.ttl = ttl
        self.rdata = rdata
        self.rdclass = rdclass
        self.cache_flush = cache_flush
        # the rdata's canonical wire form (what dnspython hashes), when the parser had it
        # for free; not part of equality
        self.digest = digest

    def _key(self) -> tuple[object, ...]:
        return (self.name, self.rdtype, self.ttl, self.rdata, self.rdclass, self.cache_flush)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"Record(name={self.name!r}, rdtype={self.rdtype!r}, ttl={self.ttl!r}, "
            f"rdata={self.rdata!r}, rdclass={self.rdclass!r}, "
            f"cache_flush={self.cache_flush!r})"
        )


@dataclass(slots=True)
class Packet:
    id: int = 0
    flags: int = 0
    questions: list[Question] = field(default_factory=list)
    answers: list[Record] = field(default_factory=list)
    authorities: list[Record] = field(default_factory=list)
    additionals: list[Record] = field(default_factory=list)
    # records the parser dropped (not in the sections above): of a class other than IN, and of
    # a meta type (OPT, EDNS plumbing, is dropped without being counted)
    not_in: int = 0
    meta: int = 0
    # records the record guard refused at ingest, a bitmask over ``records()``: nothing else
    # acts on them (the reflector does not pass them on)
    refused: int = 0
    # the UDP payload size an OPT record (EDNS, RFC 6891 §6.2.3) offers, at least 512; 0: no
    # OPT. A one-shot querier's says how large its unicast reply may be; ``encode`` writes an
    # OPT with it when set
    edns_payload: int = 0

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
    packet = Packet(pid, flags)
    names: _Seen = {}  # offset -> (labels, their wire length, Name), for compression pointers
    try:
        pos = 12
        for _ in range(qd):
            qname, pos = _read_name(data, pos, names)
            qtype, qclass = _Q_FIXED.unpack_from(data, pos)
            pos += 4
            packet.questions.append(
                Question(qname, qtype, qclass & CLASS_MASK, bool(qclass & TOP_BIT))
            )
        for section, count in (
            (packet.answers, an),
            (packet.authorities, ns),
            (packet.additionals, ar),
        ):
            for _ in range(count):
                start = pos
                record, pos = _read_record(data, pos, names)
                if type(record) is Record:
                    section.append(record)
                elif record == NOT_IN:
                    packet.not_in += 1
                elif record == META:
                    packet.meta += 1
                elif data[start] == 0:  # an OPT owned by the root, as RFC 6891 §6.1.2 says
                    packet.edns_payload = max(_OPT_FIXED.unpack_from(data, start + 1)[1], 512)
    except WireError:
        raise
    except (dns.exception.DNSException, ValueError, struct.error, UnicodeError, IndexError) as exc:
        raise WireError(type(exc).__name__.lower(), str(exc)) from None
    return packet


_new = object.__new__
_set = object.__setattr__
# the Name is that of the whole name at the offset, once some name was exactly that pointer
_Seen = dict[int, tuple[tuple[bytes, ...], int, dns.name.Name | None]]
_MAX_POINTERS = const.MDNS_MAX_POINTERS
_NAMES: dict[tuple[bytes, ...], dns.name.Name] = {}  # interned Names: most names recur
_NAMES_MAX = const.MDNS_NAME_MEMO_MAX
# the labels below a name's first, shared (service types, _tcp, local, domains): each new name
# read from a packet held its own copies of them, parsed there. 10,000 services, 15,559 names
# (loadtest.memprofile, tracemalloc): 29,068 label objects, 1.44 MB, of which 0.55 MB were
# copies of 98 such labels
_LABELS: dict[bytes, bytes] = {}
_LABELS_MAX = const.MDNS_LABEL_MEMO_MAX


class _Name(dns.name.Name):
    """A Name that hashes once. dnspython lower-cases every label on every hash, and the
    store, the browser and the reflector key dicts by names many times per packet."""

    __slots__ = ("_canonical", "_hash")
    _hash: int
    _canonical: bytes | None

    def __init__(self, labels: tuple[bytes, ...]) -> None:
        super().__init__(labels)
        object.__setattr__(self, "_hash", _seeded_hash(self))
        object.__setattr__(self, "_canonical", None)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        # dict lookups fall back to __eq__ whenever two equal names are different objects
        # (after the intern memo was cleared); dnspython's fullcompare is ~2 µs each
        if self is other:
            return True
        if type(other) is _Name:
            return self._hash == other._hash and self.canonical == other.canonical
        return super().__eq__(other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    @property
    def canonical(self) -> bytes:
        """Lower-cased, uncompressed wire form (part of an rdata's digest); made on first use:
        most names are owners, and only PTR/SRV targets need it."""
        wire = self._canonical
        if wire is None:
            parts = []
            for label in self.labels:
                parts.append(_LENGTH_OCTETS[len(label)])
                parts.append(label)
            # lower-cased whole: a length octet (0-63) is never an ASCII capital (65-90)
            wire = b"".join(parts).lower()
            object.__setattr__(self, "_canonical", wire)
        return wire


_LENGTH_OCTETS = [bytes((n,)) for n in range(64)]
_lower = bytes.lower


def _seeded_hash(name: dns.name.Name) -> int:
    """A name's hash as a key: its lower-cased labels hashed by Python's seeded (SipHash) bytes
    hash, so nobody off the network can build names that collide (issue 12: dnspython's own
    ``h = 9h + c`` made 6,000 colliding names cost 24 s of dict work). Equal names (ASCII case
    ignored) hash equal; a tuple keeps the label boundaries (``a.bc`` is not ``ab.c``)."""
    return hash(tuple(map(_lower, name.labels)))


# Names made by dnspython (DNS queries, configuration, derelativized zone names) meet the
# parser's names as keys of the same dicts, so both must hash alike; dnspython's hash is the
# unseeded one, and a Python loop per octet (~8 us a name). Set once, when this module is
# imported (bridge/__init__.py imports it first, before any dict keyed by names is built).
dns.name.Name.__hash__ = _seeded_hash  # type: ignore[method-assign,assignment]


def _rehash_dnspython_tables() -> None:
    """dnspython's own dicts keyed by Names, built at its import with the old hash, rebuilt in
    place: dns.tsig's ``mac_sizes`` and ``HMACTSig._hashes`` were unreachable (every TSIG
    signature raised KeyError: the wide-area publisher's UPDATEs and zone transfers)."""
    for module in [m for n, m in sys.modules.items() if n == "dns" or n.startswith("dns.")]:
        spaces: list[Mapping[str, object]] = [vars(module)]
        spaces += [vars(v) for v in vars(module).values() if isinstance(v, type)]
        for space in spaces:
            for value in list(space.values()):
                if (
                    isinstance(value, dict)
                    and value
                    and all(isinstance(k, dns.name.Name) for k in value)
                ):
                    items = list(value.items())
                    value.clear()
                    value.update(items)


_rehash_dnspython_tables()


def intern(labels: tuple[bytes, ...]) -> dns.name.Name:
    """The shared Name for these labels (without the root label; each 1-63 octets, 255 in
    all, as the parser and dnspython both guarantee)."""
    key = (*labels, b"")
    name = _NAMES.get(key)
    if name is None:
        if len(key) > 2:  # a new name (rare: most recur): its parents' labels shared
            if len(_LABELS) >= _LABELS_MAX:
                _LABELS.clear()
            share = _LABELS.setdefault
            key = (key[0], *[share(label, label) for label in key[1:]])
        # built like dnspython's unpickling does: its validating, immutable __init__ was a
        # fifth of the cost of reading a name
        name = _new(_Name)
        _set(name, "labels", key)
        _set(name, "_hash", hash(tuple(map(_lower, key))))
        _set(name, "_canonical", None)
        if len(_NAMES) >= _NAMES_MAX:
            _NAMES.clear()
        _NAMES[key] = name
    return name


def _read_name(data: bytes, pos: int, names: _Seen) -> tuple[dns.name.Name, int]:
    """Read a possibly compressed name at ``pos``: (Name, offset after it in the record).

    Pointers must point strictly backwards and a name is at most 255 octets, so hostile
    packets (pointer loops, endless label chains) end in a WireError, never a hang.
    """
    labels: list[bytes] = []
    starts: list[int] = []
    end = -1
    hops = 0
    limit = pos  # a pointer must point before the name that uses it
    total = 1
    while True:
        length = data[pos]
        if length == 0:
            pos += 1
            break
        if length >= 0xC0:
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if end < 0:
                end = pos + 2
            cached = names.get(target)
            if cached is not None:
                if not labels:  # the whole name is a pointer (most owners in a response are)
                    name = cached[2]
                    if name is None:
                        name = intern(cached[0])
                        names[target] = (cached[0], cached[1], name)
                    return name, end
                labels.extend(cached[0])
                total += cached[1]
                pos = -1
                break
            if target >= limit or hops >= _MAX_POINTERS:
                raise WireError("bad_pointer", f"pointer to {target} at {pos}")
            hops += 1
            limit = target
            pos = target
            continue
        if length > 63:
            raise WireError("bad_label_type", f"label type {length:#x} at {pos}")
        starts.append(pos)
        label = data[pos + 1 : pos + 1 + length]
        if len(label) != length:
            raise WireError("truncated", f"label at {pos}")
        labels.append(label)
        total += length + 1
        pos += length + 1
    if total > 255:
        raise WireError("name_too_long", f"{total} octets")
    size = total - 1
    whole = tuple(labels)
    name = intern(whole)
    for i, start in enumerate(starts):
        names[start] = (whole[i:], size, name if i == 0 else None)
        size -= len(labels[i]) + 1
    return name, (end if end >= 0 else pos)


def skip_name(data: bytes, pos: int) -> int:
    """The offset after the name at ``pos`` of a packet :func:`parse` accepted (its names
    are valid there: no checks again, nothing built)."""
    while True:
        length = data[pos]
        if length >= 0xC0:
            return pos + 2
        if length == 0:
            return pos + 1
        pos += length + 1


_A = dns.rdatatype.A
_AAAA = dns.rdatatype.AAAA
_IN = dns.rdataclass.IN


def _rdata(
    cls: type[dns.rdata.Rdata], rdtype: dns.rdatatype.RdataType, field: str, value: object
) -> dns.rdata.Rdata:
    """An IN-class rdata of the common types, built the way dnspython's own ``__setstate__``
    (unpickling) builds one: dnspython's immutable ``__init__`` costs 4-8 µs per rdata (a
    context variable set and reset, enum and value re-validation) and was half of parsing a
    typical announcement. Only for values this parser has already checked (lengths, names).
    One field here (the SRV's other three are set by the caller): no keyword dict per record."""
    rdata = _new(cls)
    _set(rdata, "rdclass", _IN)
    _set(rdata, "rdtype", rdtype)
    _set(rdata, "rdcomment", None)
    _set(rdata, field, value)
    return rdata


class WireTXT(dns.rdtypes.ANY.TXT.TXT):
    """A TXT rdata kept as its wire bytes, ``strings`` made from them when read (rendering a
    DNS answer, the web page). The bytes are the record's digest too, so a cached TXT is one
    bytes object: its strings as a tuple of bytes beside the digest were ~420 B a record more
    (tracemalloc, 10,000 services: 4.8 MB of 41,090 records' 50)."""

    __slots__ = ("wire",)
    wire: bytes

    @property  # type: ignore[override]
    def strings(self) -> tuple[bytes, ...]:
        data, out, i = self.wire, [], 0
        while i < len(data):
            n = data[i]
            out.append(data[i + 1 : i + 1 + n])
            i += 1 + n
        return tuple(out)

    @strings.setter
    def strings(self, value: tuple[bytes, ...]) -> None:  # dnspython's __init__, unpickling
        _set(self, "wire", b"".join(bytes((len(s),)) + s for s in value))

    def _to_wire(self, file: object, compress: object = None, origin: object = None,
                 canonicalize: bool = False) -> None:  # fmt: skip
        file.write(self.wire)  # type: ignore[attr-defined]


class _WireAddress:
    """An A or AAAA rdata kept as its 4 or 16 octets (the record's digest too), its text
    ``address`` made when read: the text beside the octets was ~64 B a record (tracemalloc)."""

    __slots__ = ()
    _family = socket.AF_INET
    packed: bytes

    @property
    def address(self) -> str:
        return socket.inet_ntop(self._family, self.packed)

    @address.setter
    def address(self, value: str) -> None:  # dnspython's __init__, unpickling
        _set(self, "packed", socket.inet_pton(self._family, value))

    def _to_wire(self, file: object, compress: object = None, origin: object = None,
                 canonicalize: bool = False) -> None:  # fmt: skip
        file.write(self.packed)  # type: ignore[attr-defined]


class WireA(_WireAddress, dns.rdtypes.IN.A.A):
    __slots__ = ("packed",)


class WireAAAA(_WireAddress, dns.rdtypes.IN.AAAA.AAAA):
    __slots__ = ("packed",)
    _family = socket.AF_INET6


_PTR = dns.rdatatype.PTR
_SRV = dns.rdatatype.SRV
_TXT = dns.rdatatype.TXT
_OPT = dns.rdatatype.OPT
_NSEC = dns.rdatatype.NSEC
_SRV_FIXED = struct.Struct("!HHH")
_A_CLS = WireA
_AAAA_CLS = WireAAAA
_PTR_CLS = dns.rdtypes.ANY.PTR.PTR
_SRV_CLS = dns.rdtypes.IN.SRV.SRV
_TXT_CLS = WireTXT


# Record types that are not data (RFC 6895 §3.1: TYPE0, and 128-255 for questions and meta
# records: ANY, AXFR, IXFR, MAILA/B, TSIG, TKEY): never cached nor served, dropped at ingest
_META_LOW, _META_HIGH = 128, 255
# rdata types dnspython implements (each one's class cached once, a bounded set); any other IN
# type is kept as opaque bytes without asking dnspython, whose class cache grows by one entry
# for every (class, type) pair it is asked about (issue 12: 78 MB from a flood of odd pairs)
_KNOWN_TYPES = frozenset(
    int(t) for t in dns.rdatatype.RdataType if not (t == 0 or _META_LOW <= t <= _META_HIGH)
)
_TTL_TOP_BIT = 0x80000000
# what the parser does with a record, by its type and class: keep it, or drop it for a reason
KEPT = 0
NOT_IN = 1  # a class other than IN (mDNS is IN only): dropped before its rdata is read
META = 2  # a meta or question-only type
OPT = 3  # EDNS in mDNS (Apple's Owner option): plumbing, dropped without being counted


def _verdict(rdtype: int, rdclass: int) -> int:
    if rdtype == _OPT:
        return OPT
    if rdclass & CLASS_MASK != 1:
        return NOT_IN
    if rdtype == 0 or _META_LOW <= rdtype <= _META_HIGH:
        return META
    return KEPT


def keeps(raw: bytes, pos: int) -> bool:
    """Whether the parser keeps the record whose type field is at ``pos`` of ``raw`` (the
    reflector rebuilds packets from the received bytes and must drop what ``parse`` did)."""
    rdtype, rdclass = _Q_FIXED.unpack_from(raw, pos)
    return _verdict(rdtype, rdclass) == KEPT


def _read_record(data: bytes, pos: int, names: _Seen) -> tuple[Record | int, int]:
    """The record at ``pos`` and the offset after it; a verdict instead of a dropped one."""
    name, pos = _read_name(data, pos, names)
    rdtype, rdclass, ttl, rdlen = _RR_FIXED.unpack_from(data, pos)
    pos += 10
    end = pos + rdlen
    if end > len(data):
        raise WireError("truncated", f"rdata of {name} runs past the packet")
    verdict = _verdict(rdtype, rdclass)
    if verdict:
        return verdict, end
    if ttl & _TTL_TOP_BIT:
        ttl = 0  # RFC 2181 §8: a TTL with the top bit set is treated as zero
    flush = bool(rdclass & TOP_BIT)
    rdata: dns.rdata.Rdata
    digest: bytes | None = None
    if rdtype == _A and rdlen == 4:
        digest = data[pos:end]
        rdata = _rdata(_A_CLS, _A, "packed", digest)
    elif rdtype == _AAAA and rdlen == 16:
        digest = data[pos:end]
        rdata = _rdata(_AAAA_CLS, _AAAA, "packed", digest)
    elif rdtype == _PTR:
        target, after = _read_name(data, pos, names)
        if after != end:
            raise WireError("bad_rdata", f"PTR of {name}")
        rdata = _rdata(_PTR_CLS, _PTR, "target", target)
        digest = target.canonical  # type: ignore[attr-defined]
    elif rdtype == _SRV and rdlen >= 7:
        priority, weight, port = _SRV_FIXED.unpack_from(data, pos)
        target, after = _read_name(data, pos + 6, names)
        if after != end:
            raise WireError("bad_rdata", f"SRV of {name}")
        rdata = _rdata(_SRV_CLS, _SRV, "target", target)
        _set(rdata, "priority", priority)
        _set(rdata, "weight", weight)
        _set(rdata, "port", port)
        digest = data[pos : pos + 6] + target.canonical  # type: ignore[attr-defined]
    elif rdtype == _TXT:
        if rdlen == 0:
            # RFC 6763 §6.1 asks for one empty string; python-zeroconf sends none at all, and
            # dnspython refuses that, which would lose the whole packet
            rdata = _EMPTY_TXT
        else:
            i = pos
            while i < end:  # the strings' lengths fill the rdata exactly
                i += 1 + data[i]
            if i != end:
                raise WireError("bad_rdata", f"TXT of {name}")
            digest = data[pos:end]
            rdata = _rdata(_TXT_CLS, _TXT, "wire", digest)
    elif rdtype == _NSEC:
        # mDNS compresses the next-domain name (RFC 6762 §18.14): read it ourselves
        nxt, i = _read_name(data, pos, names)
        windows = []
        while i < end:
            if i + 2 > end or not 1 <= data[i + 1] <= 32 or i + 2 + data[i + 1] > end:
                raise WireError("bad_rdata", f"NSEC of {name}")
            windows.append((data[i], data[i + 2 : i + 2 + data[i + 1]]))
            i += 2 + data[i + 1]
        rdata = dns.rdtypes.ANY.NSEC.NSEC(_IN, rdtype, nxt, windows)
    elif rdtype in _KNOWN_TYPES:
        parser = _Parser(data, pos)
        with parser.restrict_to(rdlen):
            rdata = dns.rdata.from_wire_parser(_IN, rdtype, parser, None)
    else:
        digest = data[pos:end]
        rdata = dns.rdata.GenericRdata(_IN, rdtype, digest)
    return Record(name, rdtype, ttl, rdata, _IN, flush, digest), end


# --- encoding ------------------------------------------------------------------------------


def legacy_unicast(records: list[Record]) -> list[Record]:
    """RFC 6762 §6.7: records in a reply to a one-shot (legacy unicast) querier, a plain DNS
    client: no cache-flush bits, TTLs of at most ten seconds (the responder's replies and the
    reflector's relayed ones)."""
    cap = const.MDNS_LEGACY_TTL
    return [Record(r.name, r.rdtype, min(r.ttl, cap), r.rdata, r.rdclass) for r in records]


def encode(packet: Packet) -> bytes:
    """Render a packet with name compression (what a reflector or a querier sends), and an
    OPT record last when ``edns_payload`` is set."""
    out = io.BytesIO()
    opt = 1 if packet.edns_payload else 0
    out.write(
        _HEADER.pack(
            packet.id,
            packet.flags,
            len(packet.questions),
            len(packet.answers),
            len(packet.authorities),
            len(packet.additionals) + opt,
        )
    )
    compress: dict[dns.name.Name, int] = {}
    for q in packet.questions:
        q.name.to_wire(out, compress)
        out.write(_Q_FIXED.pack(q.rdtype, q.rdclass | (TOP_BIT if q.unicast else 0)))
    for section in (packet.answers, packet.authorities, packet.additionals):
        for rec in section:
            _write_record(out, rec, compress)
    if opt:  # root owner, no extended rcode or flags, no options
        out.write(b"\x00" + _RR_FIXED.pack(_OPT, packet.edns_payload, 0, 0))
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
