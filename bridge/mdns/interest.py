"""Which cached records someone wanted lately: the only ones the browser keeps fresh.

RFC 6762 §5.2 has a querier refresh a record at 80 % of its TTL only while it still has an
interest in it. Refreshing everything cost 320 packets per VLAN per hour with 100 services
(loadtest/results/20261126T155232Z.md), most for SRV and address records (120 s TTLs) no
client had asked for; those are left to expire here and asked on demand (dnsfront/ondemand.py)
when a client does ask. Pure: names, types and times in, a yes or no out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import dns.name

from .. import const
from ..store import Cached

Keeper = Callable[[str, dns.name.Name, int], bool]  # (vlan, name, type) -> kept on purpose?
_Times = dict[int, dict[dns.name.Name, float]]  # type -> name -> when it was last wanted
_NONE: dict[dns.name.Name, float] = {}  # read-only: a type nobody wanted


class Interest:
    """The last time each (name, type) was wanted: answered to a DNS client, or asked in a
    question the gateway heard on a link (Browser.on_packet; the reflector carries those to
    the other VLANs, whose answers then stay fresh too).

    A record is worth refreshing when it was wanted within its own TTL (so one DNS answer
    carries it through one refresh) or within ``MDNS_INTEREST_MIN_WINDOW``. ``keepers`` are
    the browses kept on purpose (set up by bridge/app.py), refreshed whoever asked.

    Bounded in two generations of ``limit / 2`` each: a full young generation becomes the
    old one and the old one is forgotten whole (counted in ``evicted``); so the ``limit / 2``
    most recently wanted are always remembered, and at most ``limit``. Per type a dict keyed
    by the name itself (the store's or the parser's interned Name): an OrderedDict keyed by
    (name, type) tuples was 3.4 MB for its 20,000 interests (tracemalloc, loadtest.memprofile,
    every name of 10,000 services asked), ~170 B an interest; this is ~45 B."""

    def __init__(
        self,
        limit: int = const.MDNS_INTEREST_MAX,
        window: float = const.MDNS_INTEREST_MIN_WINDOW,
    ) -> None:
        self.limit = limit
        self.window = window
        self._generation = max(1, limit // 2)  # interests per generation
        self._young: _Times = {}
        self._old: _Times = {}
        self._young_size = 0
        self._old_size = 0
        self.keepers: list[Keeper] = []
        self.evicted = 0  # interests forgotten to stay within the limit
        self.refreshes = 0  # due refreshes let through
        self.skipped = 0  # due refreshes nobody wanted: left to expire

    def __len__(self) -> int:
        return self._young_size + self._old_size

    def note(self, name: dns.name.Name, rdtype: int, now: float) -> None:
        young = self._young.get(rdtype)
        if young is not None and name in young:
            young[name] = now
            return
        old = self._old.get(rdtype)
        if old is not None and old.pop(name, None) is not None:
            self._old_size -= 1  # moves to the young generation
        if self._young_size >= self._generation:
            self.evicted += self._old_size
            self._old, self._old_size = self._young, self._young_size
            self._young, self._young_size = {}, 0
            young = None
        if young is None:
            young = self._young[rdtype] = {}
        young[name] = now
        self._young_size += 1

    def note_cached(self, records: Iterable[Cached], now: float) -> None:
        """The records of one DNS answer (answer and additional sections)."""
        for c in records:
            self.note(c.name, c.rdtype, now)

    def wanted(self, vlan: str, name: dns.name.Name, rdtype: int, ttl: float, now: float) -> bool:
        """Should a record due for refresh be asked for again?"""
        at = self._young.get(rdtype, _NONE).get(name)
        if at is None:
            at = self._old.get(rdtype, _NONE).get(name)
        if (at is not None and now - at <= max(ttl, self.window)) or any(
            keep(vlan, name, rdtype) for keep in self.keepers
        ):
            self.refreshes += 1
            return True
        self.skipped += 1
        return False
