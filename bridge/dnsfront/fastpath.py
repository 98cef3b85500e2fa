"""The hot path: raw query bytes -> a pre-rendered answer, without parsing or rendering.

A query is keyed by what changes its answer: the flags we echo (opcode, RD, CD), the
lower-cased question (name, type, class) and the EDNS shape (UDP size, version, DO). The
answer is stored without its ID and question; the client's own ID and question bytes are
spliced back in, so the question is echoed exactly, case included. Entries are dropped
when the store changes what a view can see, and age out when their TTLs would be stale.
"""

from __future__ import annotations

from .. import const

# qdcount=1, ancount=0, nscount=0, arcount=0 or 1: the only shapes the fast path takes
_COUNTS_PLAIN = b"\x00\x01\x00\x00\x00\x00\x00\x00"
_COUNTS_EDNS = b"\x00\x01\x00\x00\x00\x00\x00\x01"

QueryKey = tuple[int, bytes, bytes]  # (echoed flag bits, question lower-cased, EDNS shape)
# (header bytes 2..12, everything after the question, valid until)
Entry = tuple[bytes, bytes, float]


def query_key(data: bytes) -> tuple[QueryKey, int] | None:
    """(key, end of question) for a plain query; None sends it to the slow path."""
    n = len(data)
    if n < 17 or data[2] & 0x80:  # too short, or QR set
        return None
    counts = data[4:12]
    if counts == _COUNTS_PLAIN:
        edns = False
    elif counts == _COUNTS_EDNS:
        edns = True
    else:
        return None
    i = 12
    length = data[i]
    while length:
        if length > 63:
            return None
        i += length + 1
        if i >= n:
            return None
        length = data[i]
    qend = i + 5
    if qend > n:
        return None
    if edns:
        # a bare OPT: root name, type 41, class = UDP size, TTL = ext-rcode/version/flags
        if n < qend + 11 or data[qend] != 0 or data[qend + 1:qend + 3] != b"\x00\x29":
            return None
        rdlen = (data[qend + 9] << 8) | data[qend + 10]
        if qend + 11 + rdlen != n:
            return None
        shape = data[qend + 3:qend + 8]  # UDP size, ext-rcode, version, DO and the flag byte
    else:
        if qend != n:
            return None
        shape = b""
    flags = ((data[2] & 0x79) << 8) | (data[3] & 0x10)
    return (flags, data[12:qend].lower(), shape), qend


class ResponseCache:
    """Pre-rendered answers for one view and transport; bounded, cleared wholesale."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: dict[QueryKey, Entry] = {}

    def put(self, key: QueryKey, wire: bytes, qend: int, valid_until: float) -> None:
        if len(self.entries) >= const.DNS_RESPONSE_CACHE_MAX:
            self.entries.clear()
        self.entries[key] = (wire[2:12], wire[qend:], valid_until)

    def clear(self) -> None:
        self.entries.clear()


def splice(query: bytes, qend: int, entry: Entry) -> bytes:
    return query[:2] + entry[0] + query[12:qend] + entry[1]
