"""The hot path: raw query bytes -> a pre-rendered answer, without parsing or rendering.

A query is keyed by what changes its answer, as canonical query bytes (everything after the
ID): the flags we echo (opcode, RD, CD; the rest zeroed), the counts, the question with its
name lower-cased, and for EDNS the bare OPT (UDP size, extended rcode, version, flags; options
dropped). The stored answer is the whole reply after its ID, rendered with that canonical
question. So the common query (flags already as we echo them, a lower-case name, no EDNS
options) is its own key: one slice, one dict lookup, and the reply is its ID plus the stored
bytes. Any other query is keyed by ``query_key`` and gets its own ID and question bytes
spliced in, so the question is always echoed exactly, case included. Entries are dropped when
the store changes what a view can see, and age out when their TTLs would be stale.
"""

from __future__ import annotations

from .. import const

# qdcount=1, ancount=0, nscount=0, arcount=0 or 1: the only shapes the fast path takes
_COUNTS_PLAIN = b"\x00\x01\x00\x00\x00\x00\x00\x00"
_COUNTS_EDNS = b"\x00\x01\x00\x00\x00\x00\x00\x01"
_NO_OPTIONS = b"\x00\x00"

QueryKey = bytes  # canonical query bytes after the ID (see the module docstring)
Entry = tuple[bytes, float]  # (reply after its ID, for the canonical question; valid until)


def query_key(data: bytes) -> tuple[QueryKey, int] | None:
    """(canonical key, end of question) for a plain query; None sends it to the slow path."""
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
        if n < qend + 11 or data[qend] != 0 or data[qend + 1 : qend + 3] != b"\x00\x29":
            return None
        rdlen = (data[qend + 9] << 8) | data[qend + 10]
        if qend + 11 + rdlen != n:
            return None
        opt = data[qend : qend + 9] + _NO_OPTIONS  # options do not change our answer
    else:
        if qend != n:
            return None
        opt = b""
    # only the name is lower-cased: type and class bytes are numbers (0x41 is not 0x61)
    key = (
        bytes((data[2] & 0x79, data[3] & 0x10))
        + counts
        + data[12 : i + 1].lower()
        + data[i + 1 : qend]
        + opt
    )
    return key, qend


class ResponseCache:
    """Pre-rendered answers for one view and transport; bounded, cleared wholesale.

    Besides the canonical keys, a query's exact bytes may be kept as a key of their own (a
    *variant*: the instance name's case as the client got it from a PTR answer, the AD bit
    dig sets), so the next identical query skips ``query_key`` too. Variants are few per name
    in practice; a client randomising case (DNS 0x20) would make each query one, so at most
    DNS_RESPONSE_VARIANTS_MAX are added between clears and later ones are simply spliced.
    """

    __slots__ = ("entries", "variants")

    def __init__(self) -> None:
        self.entries: dict[QueryKey, Entry] = {}
        self.variants = 0

    def put(self, key: QueryKey, wire: bytes, qend: int, valid_until: float) -> None:
        """Keep ``wire`` (the reply to a query with this key) with the canonical question."""
        if len(self.entries) >= const.DNS_RESPONSE_CACHE_MAX:
            self.clear()
        self.entries[key] = (wire[2:12] + key[10 : qend - 2] + wire[qend:], valid_until)

    def add_variant(self, query: bytes, reply: bytes, valid_until: float) -> None:
        """Key ``reply`` (to ``query``, already spliced) by the query's own bytes."""
        if self.variants < const.DNS_RESPONSE_VARIANTS_MAX:
            self.variants += 1
            self.entries[query[2:]] = (reply[2:], valid_until)

    def clear(self) -> None:
        self.entries.clear()
        self.variants = 0


def splice(query: bytes, qend: int, entry: Entry) -> bytes:
    """The stored reply with the client's own ID and question bytes."""
    tail = entry[0]
    return query[:2] + tail[:10] + query[12:qend] + tail[qend - 2 :]
