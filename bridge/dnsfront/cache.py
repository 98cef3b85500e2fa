"""Pre-rendered answers: one ``ResponseCache`` per view and transport, all of them in one byte
budget (``const.DNS_ANSWER_CACHE_BYTES``), least recently used first out.

What a query's key is and how a stored reply gets the client's ID and question: fastpath.py.
Here: what is kept and for how long. The budget covers every cache of one ``Answers`` (every
view, every transport and UDP ceiling): the gateway's memory for pre-rendered answers is one
number whatever clients ask, and a client asking every name once (62,000 names with 10,000
services: ~28 MB at ~450 B an answer) costs the budget, not the router's memory. Entries are
dropped when the store changes what their view sees (``clear``) and never served past their
validity.

LRU by epochs, so that a cache hit costs one integer comparison more, not a dict update: each
entry carries the cache's epoch of its last storing or use; a hit on an entry of an older epoch
moves it to the end (the dict's order is the eviction order) with the current epoch. The epoch
moves on every eighth of the budget stored, so an entry used at all within the last eighth's
worth of stores is kept over one that was not. Measured per hit (timeit, 20,000 entries): a
dict move on every hit +30-50 ns on ~80 ns; the epoch test +5-10 ns.
"""

from __future__ import annotations

from .. import const

QueryKey = bytes  # canonical query bytes after the ID (fastpath.query_key)
# (reply after its ID, for the canonical question; valid until; epoch of its last use)
Entry = tuple[bytes, float, int]

# bytes of memory an entry costs beyond its key's and reply's lengths: the two bytes objects'
# headers (33 each, rounded up to pymalloc's 16), the 3-tuple (64), the float (24) and the
# dict's slot and index (~32, times its growth slack); tests/dnsfront/test_cache.py checks the
# estimate against tracemalloc within 25 %
ENTRY_OVERHEAD = 250


class Budget:
    """The bytes (estimated) of every cache sharing it, and its limit."""

    __slots__ = ("bytes", "caches", "evicted", "limit")

    def __init__(self, limit: int = const.DNS_ANSWER_CACHE_BYTES) -> None:
        self.limit = limit
        self.bytes = 0
        self.caches: list[ResponseCache] = []
        self.evicted = 0  # entries dropped for room (counted, exported)

    def make_room(self) -> None:
        """Over the limit: drop least recently used entries of the largest caches until an
        eighth of the budget is free (one eviction pass per eighth stored, not one per store)."""
        target = self.limit * 7 // 8
        while self.bytes > target:
            largest = max(self.caches, key=_size)
            if not largest.entries:
                break
            largest.evict(self.bytes - target)


def _size(cache: ResponseCache) -> int:
    return cache.bytes


class ResponseCache:
    """Pre-rendered answers for one view and transport (their byte count is in ``budget``).

    Besides the canonical keys, a query's exact bytes may be kept as a key of their own (a
    *variant*: the instance name's case as the client got it from a PTR answer, the AD bit
    dig sets), so the next identical query skips ``query_key`` too. Variants are few per name
    in practice; a client randomising case (DNS 0x20) would make each query one, so at most
    DNS_RESPONSE_VARIANTS_MAX are kept and later ones are simply spliced.
    """

    __slots__ = ("_epoch_left", "budget", "bytes", "entries", "epoch", "variants")

    def __init__(self, budget: Budget | None = None) -> None:
        self.budget = budget if budget is not None else Budget()
        self.budget.caches.append(self)
        self.entries: dict[QueryKey, Entry] = {}
        self.variants = 0
        self.bytes = 0  # estimated memory of the entries (ENTRY_OVERHEAD each, and their bytes)
        self.epoch = 0  # see the module docstring
        self._epoch_left = self.budget.limit // 8  # bytes stored before the epoch moves on

    def put(self, key: QueryKey, wire: bytes, qend: int, valid_until: float) -> None:
        """Keep ``wire`` (the reply to a query with this key) with the canonical question."""
        self._store(key, wire[2:12] + key[10 : qend - 2] + wire[qend:], valid_until)

    def add_variant(self, query: bytes, reply: bytes, valid_until: float) -> None:
        """Key ``reply`` (to ``query``, already spliced) by the query's own bytes."""
        if self.variants < const.DNS_RESPONSE_VARIANTS_MAX:
            self.variants += 1
            self._store(query[2:], reply[2:], valid_until)

    def touch(self, key: QueryKey, entry: Entry) -> None:
        """A hit on an entry of an older epoch: it becomes the most recently used."""
        entries = self.entries
        del entries[key]
        entries[key] = (entry[0], entry[1], self.epoch)

    def _store(self, key: QueryKey, tail: bytes, valid_until: float) -> None:
        entries = self.entries
        size = len(key) + len(tail) + ENTRY_OVERHEAD
        old = entries.pop(key, None)  # a replaced entry moves to the end (used last)
        if old is not None:
            size -= len(key) + len(old[0]) + ENTRY_OVERHEAD
        entries[key] = (tail, valid_until, self.epoch)
        self.bytes += size
        budget = self.budget
        budget.bytes += size
        self._epoch_left -= size
        if self._epoch_left <= 0:
            self.epoch += 1
            self._epoch_left = budget.limit // 8
        if budget.bytes > budget.limit:
            budget.make_room()

    def evict(self, want: int) -> None:
        """Drop least recently used entries until ``want`` bytes are freed (or none is left)."""
        entries = self.entries
        freed = 0
        victims = []
        for key, entry in entries.items():
            if freed >= want:
                break
            freed += len(key) + len(entry[0]) + ENTRY_OVERHEAD
            victims.append(key)
        for key in victims:
            del entries[key]
        self.bytes -= freed
        self.budget.bytes -= freed
        self.budget.evicted += len(victims)
        self.variants = min(self.variants, len(entries))

    def clear(self) -> None:
        """The store or the policy changed what the view sees: every answer goes."""
        self.entries.clear()
        self.budget.bytes -= self.bytes
        self.bytes = 0
        self.variants = 0
