"""Which address families a refresh question goes out on (issue 18: one family where one does).

A dual-stack device announces each record over IPv4 and over IPv6 and answers a question on
the family it was asked on; the store is one per VLAN whatever the family, so one family's
answer refreshes the record for every reader. A refresh is asked on one family when every
record it would refresh was heard from both families (the store's owner and co-owner of each,
see ``Store.sources``): the other family's query would only make the same device answer again.

- The family: IPv4, or IPv6 on a link without IPv4. One family for every such question of a
  tick, so they share the same packets instead of splitting into one IPv4 and one IPv6 query.
- Unsure means both: a record of an IPv4-only or IPv6-only device (no co-owner), one of ours,
  a question nothing is held for (an on-demand miss: a DNS client waits, and no record says
  who answers), a browse (it is there to find devices not yet known, of either family).
- Fallback: when the answer does not come, ``overdue`` names the questions to ask again on
  the other family, after ``MDNS_FAMILY_FALLBACK`` (longer than a responder's §6 delays,
  20-120 ms for shared records, 400-500 ms with TC); "answered" is read from the store: every
  record of the RRset has more than half its TTL left again.

Goodbyes, cache-flush and expiry are untouched: they are the device's packets and the
store's clock, not questions. Pure: sources, times and links in, families out; bounded.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

import dns.name

from .. import const
from ..store import Cached

Sources = Iterable[tuple[str | None, str | None]]  # (owner, co-owner) of each record held
FKey = tuple[str, dns.name.Name, int]  # (vlan, name, type)
V4: int = socket.AF_INET
V6: int = socket.AF_INET6


def dual_stack(sources: Sources) -> bool:
    """True when there is a record and every one was heard from an address of each family."""
    seen = False
    for owner, co_owner in sources:
        if owner is None or co_owner is None:  # one family only, or ours
            return False
        seen = True
    return seen


def answered(held: Iterable[Cached]) -> bool:
    """The store says the question was answered: every record is fresh again (> half TTL)."""
    held = list(held)
    return bool(held) and all(c.remaining > c.ttl / 2 for c in held)


class Families:
    """Questions sent over one family lately, until their answer comes or they fall back.

    Bounded by ``MDNS_FAMILY_PENDING_MAX``: beyond it a question goes out on both families
    (today's behaviour), so the memory never grows with the network."""

    def __init__(
        self,
        delay: float = const.MDNS_FAMILY_FALLBACK,
        limit: int = const.MDNS_FAMILY_PENDING_MAX,
    ) -> None:
        self.delay = delay
        self.limit = limit
        self._pending: dict[FKey, tuple[float, int]] = {}  # -> (sent at, the family it used)
        self.single = 0  # questions sent over one family
        self.fallbacks = 0  # of those, asked again over the other: the answer did not come

    def __len__(self) -> int:
        return len(self._pending)

    def choose(
        self, key: FKey, sources: Sources, has_v4: bool, has_v6: bool, now: float
    ) -> int | None:
        """The one family to ask ``key`` on, or None for every family the link has."""
        if not (has_v4 and has_v6) or len(self._pending) >= self.limit:
            return None
        if not dual_stack(sources):
            return None
        family = V4
        self._pending[key] = (now, family)
        self.single += 1
        return family

    def overdue(self, now: float, held: dict[FKey, list[Cached]]) -> list[tuple[FKey, int]]:
        """Questions whose answer should have come by ``now`` and did not, with the family
        not yet asked; ``held`` maps each pending key to the store's records for it (read by
        the caller through ``pending_due``). Answered ones are forgotten either way."""
        out: list[tuple[FKey, int]] = []
        for key, records in held.items():
            sent = self._pending.pop(key, None)
            if sent is None:
                continue
            if not answered(records):
                out.append((key, V6 if sent[1] == V4 else V4))
                self.fallbacks += 1
        return out

    def pending_due(self, now: float) -> list[FKey]:
        """The questions sent over one family at least ``delay`` ago."""
        return [k for k, (at, _) in self._pending.items() if now - at >= self.delay]
