"""Cache misses become mDNS questions, and the DNS answer waits (bounded) for the reply.

Unique records (A, AAAA, SRV, TXT) answer as soon as one arrives; PTR browses gather for a
short window after the first answer, because several devices answer one browse. A name that
stayed silent is remembered for a few seconds, so repeated misses answer at once instead of
holding every client for the full wait.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable

import dns.name
import dns.rdata
import dns.rdatatype

from .. import const
from ..store import Subscription

Key = tuple[str, dns.name.Name, int]  # (vlan, .local name, type)


class OnDemand:
    """DNS queries the store cannot answer yet, waiting for mDNS answers.

    Apart from the resolver because waiting is state and time (futures, a bounded memory of
    silent names, a cap on concurrent waits), and the resolver is a pure function of the
    store. ``changes`` is its subscription to the store (made by bridge/app.py): active only
    while some lookup waits."""

    def __init__(
        self,
        ask: Callable[[str, dns.name.Name, int, bool], None],
        timeout: float = const.DNS_ONDEMAND_TIMEOUT,
        gather: float = const.DNS_BROWSE_GATHER,
    ) -> None:
        self.ask = ask
        self.timeout = timeout
        self.gather = gather
        self._waiters: dict[Key, list[asyncio.Future[None]]] = {}
        self._misses: OrderedDict[Hashable, float] = OrderedDict()
        self.pending = 0
        self.lookups = 0
        self.answered = 0
        self.timeouts = 0
        # the store calls on_change for every record added or removed, but only while a
        # lookup waits (the usual state is nobody waiting: no call per record then)
        self.changes: Subscription | None = None

    def on_change(
        self, vlan: str, name: dns.name.Name, rdtype: int, rdata: dns.rdata.Rdata, added: bool
    ) -> None:
        """A store change: wake the lookups waiting for that name and type (or ANY)."""
        for key in ((vlan, name, rdtype), (vlan, name, dns.rdatatype.ANY)):
            futures = self._waiters.pop(key, None)
            if futures:
                for fut in futures:
                    if not fut.done():
                        fut.set_result(None)

    def recently_missed(self, key: Hashable, now: float) -> bool:
        at = self._misses.get(key)
        return at is not None and now - at < const.DNS_MISS_MEMORY

    def remember_miss(self, key: Hashable, now: float) -> None:
        self._misses[key] = now
        self._misses.move_to_end(key)
        while len(self._misses) > const.DNS_MISS_MEMORY_MAX:
            self._misses.popitem(last=False)

    @property
    def saturated(self) -> bool:
        return self.pending >= const.DNS_PENDING_MAX

    async def lookup(self, keys: Iterable[Key]) -> bool:
        """Ask every (vlan, name, type) and wait until one is answered; True if any was."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        keys = list(keys)
        changes = self.changes
        assert changes is not None, "OnDemand.changes: subscribe on_change to the store first"
        changes.active = True
        for key in keys:
            self._waiters.setdefault(key, []).append(fut)
            self.ask(*key, True)
        self.pending += 1
        self.lookups += 1
        deadline = loop.time() + self.timeout
        try:
            try:
                await asyncio.wait_for(asyncio.shield(fut), self.timeout)
            except TimeoutError:
                self.timeouts += 1
                return False
            self.answered += 1
            if any(k[2] in (dns.rdatatype.PTR, dns.rdatatype.ANY) for k in keys):
                # several responders answer a browse; give the rest a moment (bounded)
                await asyncio.sleep(max(0.0, min(self.gather, deadline - loop.time())))
            return True
        finally:
            self.pending -= 1
            for key in keys:
                futures = self._waiters.get(key)
                if futures and fut in futures:
                    futures.remove(fut)
                    if not futures:
                        del self._waiters[key]
            if not self._waiters:
                changes.active = False
