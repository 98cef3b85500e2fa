"""Which cached records someone wanted lately: the only ones the browser keeps fresh.

RFC 6762 §5.2 has a querier refresh a record at 80 % of its TTL only while it still has an
interest in it. Refreshing everything cost 320 packets per VLAN per hour with 100 services
(loadtest/results/20261126T155232Z.md), most for SRV and address records (120 s TTLs) no
client had asked for; those are left to expire here and asked on demand (dnsfront/ondemand.py)
when a client does ask. Pure: names, types and times in, a yes or no out.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable

import dns.name

from .. import const
from ..store import Cached

IKey = tuple[dns.name.Name, int]  # (.local name, type): a question, whichever VLAN holds it
Keeper = Callable[[str, dns.name.Name, int], bool]  # (vlan, name, type) -> kept on purpose?


class Interest:
    """The last time each (name, type) was wanted: answered to a DNS client, or asked in a
    question the gateway heard on a link (Browser.on_packet; the reflector carries those to
    the other VLANs, whose answers then stay fresh too). Bounded: the least recently wanted
    go first.

    A record is worth refreshing when it was wanted within its own TTL (so one DNS answer
    carries it through one refresh) or within ``MDNS_INTEREST_MIN_WINDOW``. ``keepers`` are
    the browses kept on purpose (set up by bridge/app.py), refreshed whoever asked."""

    def __init__(
        self,
        limit: int = const.MDNS_INTEREST_MAX,
        window: float = const.MDNS_INTEREST_MIN_WINDOW,
    ) -> None:
        self.limit = limit
        self.window = window
        self._last: OrderedDict[IKey, float] = OrderedDict()
        self.keepers: list[Keeper] = []
        self.evicted = 0  # interests forgotten to stay within the limit
        self.refreshes = 0  # due refreshes let through
        self.skipped = 0  # due refreshes nobody wanted: left to expire

    def __len__(self) -> int:
        return len(self._last)

    def note(self, name: dns.name.Name, rdtype: int, now: float) -> None:
        key = (name, rdtype)
        last = self._last
        if key in last:
            last.move_to_end(key)
        last[key] = now
        while len(last) > self.limit:
            last.popitem(last=False)
            self.evicted += 1

    def note_cached(self, records: Iterable[Cached], now: float) -> None:
        """The records of one DNS answer (answer and additional sections)."""
        for c in records:
            self.note(c.name, c.rdtype, now)

    def wanted(self, vlan: str, name: dns.name.Name, rdtype: int, ttl: float, now: float) -> bool:
        """Should a record due for refresh be asked for again?"""
        at = self._last.get((name, rdtype))
        if (at is not None and now - at <= max(ttl, self.window)) or any(
            keep(vlan, name, rdtype) for keep in self.keepers
        ):
            self.refreshes += 1
            return True
        self.skipped += 1
        return False
