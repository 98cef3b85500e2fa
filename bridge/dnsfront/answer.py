"""The DNS query pipeline without sockets: query bytes, a view and the time in, what to send out.

Everything the front end decides about a query is here, as functions of the bytes, the view
and the time: the pre-rendered answer that fits (``fastpath.cached``, compiled), which queries
get no answer or an error (a response never; NOTIMP, FORMERR, BADVERS; REFUSED for other
classes, zone transfers and clients no view admits), the slow path (dnspython parse,
resolver, render), how long an answer stays valid, and whether a miss waits for mDNS. A miss
that waits comes back as a ``Pending``: the server awaits the mDNS lookup (I/O) and hands it
back to ``Answers.complete``.
``server.py`` moves the bytes.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from .. import const
from ..logutil import RateLimitedLog
from ..store import Store
from .cache import Budget, QueryKey, ResponseCache
from .fastpath import cached, query_key
from .ondemand import Key, OnDemand
from .render import error, formerr_header, render, udp_limit
from .resolver import Answer, Resolver, View

log = logging.getLogger(__name__)
_limited = RateLimitedLog(log)

NO_VIEW = ""  # the view of clients no view admits: every query REFUSED (and cached so)
_ZONE_TRANSFERS = (dns.rdatatype.AXFR, dns.rdatatype.IXFR)


def _bad_shape(data: bytes) -> str | None:
    """Why a query's header says it cannot be one we answer, or None.

    Checked before dnspython parses anything: 20 TCP queries carrying 5,000 additional
    records each once grew the process by 97 MB, parsed in full only to be REFUSED.
    """
    if len(data) < 12:
        return "short"
    if data[2] & 0x80:
        return "response"  # never answered: that is how loops start
    if data[2] & 0x78:
        return "opcode"  # NOTIMP: only QUERY (0) is served
    if data[4:6] != b"\x00\x01":
        return "question_count"
    if data[6:10] != b"\x00\x00\x00\x00":
        return "answer_records"  # a query carries no answer or authority records
    if data[10] or data[11] > 1:
        return "additional_records"  # at most the OPT record
    return None


class Stats:
    """Plain integers on the hot path; exported at scrape time (bridge.metrics)."""

    __slots__ = (
        "cache_hits",
        "dropped",
        "malformed",
        "ondemand",
        "queries",
        "rcodes",
        "slow",
        "tcp_closed",
        "tcp_connections",
        "truncated",
    )

    def __init__(self) -> None:
        self.queries: Counter[str] = Counter()  # transport -> queries
        self.cache_hits = 0
        self.slow = 0
        self.ondemand = 0
        self.malformed: Counter[str] = Counter()  # reason -> queries
        self.rcodes: Counter[str] = Counter()  # rcode name -> slow-path replies
        self.truncated = 0
        self.dropped = 0
        self.tcp_connections = 0
        # TCP connections we closed, by reason: per_client, full, idle (for a new one),
        # write_timeout (the client did not read)
        self.tcp_closed: Counter[str] = Counter()


@dataclass(slots=True)
class Pending:
    """A miss waiting for mDNS: everything needed to answer once the wait is over."""

    query: dns.message.Message
    view: View
    qname: dns.name.Name
    qtype: int
    answer: Answer
    limit: int  # bytes this reply may take
    ceiling: int  # the transport's (TCP's, or the UDP listener's): which cache keeps it
    parsed: tuple[QueryKey, int] | None
    miss: tuple[str, dns.name.Name, int]

    @property
    def keys(self) -> list[Key]:
        """The (VLAN, name, type) questions whose answer ends the wait."""
        return self.answer.ondemand


class Answers:
    """The DNS answers per view and transport, pre-rendered where they can be.

    One object owns the rules and the pre-rendered answers together because their validity is
    one decision: an answer is cached for as long as the records it was built from stay fresh
    (less the TTL ceiling we hand out), and dropped as soon as the store changes what its view
    can see or the policy changes the views. The server holds none of it, so every rule is
    tested here without a socket.
    """

    def __init__(self, resolver: Resolver, ondemand: OnDemand, store: Store) -> None:
        self.resolver = resolver
        self.ondemand = ondemand
        self.views: Mapping[str, View] = {}
        self.stats = Stats()
        # the store's change counts as last applied (see caches): one int compared per batch
        self._store = store
        self._generation = store.generation
        self._generations = dict(store.generations)
        # message ceiling (TCP's, or a UDP listener's) -> view -> pre-rendered answers: the
        # answers of one ceiling never reach a client of another (a loopback client's 4,000
        # bytes never go to a remote client clamped to 1,232). A UDP listener picks its mapping
        # once per batch, so the clamp costs the hot path nothing
        self._by_ceiling: dict[int, dict[str, ResponseCache]] = {}
        self._seeing: dict[str, list[ResponseCache]] = {}  # VLAN -> caches of views seeing it
        # every cache's bytes in one budget (const.DNS_ANSWER_CACHE_BYTES), LRU out
        self.budget = Budget()

    # --- validity ----------------------------------------------------------------------

    def set_views(self, views: Mapping[str, View]) -> None:
        """New policy: new views; every pre-rendered answer goes (the old ones may leak)."""
        self.views = dict(views)
        for caches in self._by_ceiling.values():
            for cache in caches.values():
                cache.clear()
        self._index_caches()

    def invalidate_vlan(self, vlan: str) -> None:
        """The store changed on a VLAN: drop answers of the views that can see it."""
        for cache in self._seeing.get(vlan, ()):
            if cache.entries:
                cache.clear()

    def caches(
        self, tcp: bool, udp_max: int = const.DNS_MAX_UDP_PAYLOAD
    ) -> Mapping[str, ResponseCache]:
        """The pre-rendered answers by view for a transport (and a UDP listener's ceiling),
        the store's changes applied: read them only through this, once per batch of queries
        (the caches are cleared in place and never replaced: the mapping stays good)."""
        if self._store.generation != self._generation:
            self._sync()
        ceiling = const.DNS_MAX_TCP_MESSAGE if tcp else udp_max
        caches = self._by_ceiling.get(ceiling)
        if caches is None:
            caches = self._by_ceiling[ceiling] = {}
        return caches

    def _sync(self) -> None:
        """Apply the store's changes since the last answer: drop the answers of every VLAN
        whose change count moved."""
        store, seen = self._store, self._generations
        self._generation = store.generation
        for vlan, generation in store.generations.items():
            if seen.get(vlan) != generation:
                seen[vlan] = generation
                self.invalidate_vlan(vlan)

    def _index_caches(self) -> None:
        seeing: dict[str, list[ResponseCache]] = {}
        for caches in self._by_ceiling.values():
            for view_name, cache in caches.items():
                view = self.views.get(view_name)
                if view is not None:
                    for vlan in view.policy.vlans:
                        seeing.setdefault(vlan, []).append(cache)
        self._seeing = seeing

    def _cache(self, view: str, ceiling: int) -> ResponseCache:
        caches = self._by_ceiling.setdefault(ceiling, {})
        cache = caches.get(view)
        if cache is None:
            cache = caches[view] = ResponseCache(self.budget)
            self._index_caches()
        return cache

    # --- answering ---------------------------------------------------------------------

    def answer(
        self,
        data: bytes,
        view: str,
        tcp: bool,
        now: float,
        udp_max: int = const.DNS_MAX_UDP_PAYLOAD,
    ) -> bytes | Pending | None:
        """The reply to one query: pre-rendered if it can be, else from the slow path; None:
        send nothing."""
        cache = self.caches(tcp, udp_max).get(view)
        if cache is not None:
            reply = cached(cache, data, now)
            if reply is not None:
                self.stats.cache_hits += 1
                return reply
        return self.miss(data, view, tcp, now, udp_max)

    def miss(
        self,
        data: bytes,
        view_name: str,
        tcp: bool,
        now: float,
        udp_max: int = const.DNS_MAX_UDP_PAYLOAD,
    ) -> bytes | Pending | None:
        """The slow path, for a query ``cached`` had no answer for. ``udp_max``: the UDP
        listener's ceiling (DNS_UDP_CLAMP beyond loopback), whatever EDNS size the client asks."""
        self.stats.slow += 1
        parsed = query_key(data)
        if parsed is None:
            shape = _bad_shape(data)
            if shape is not None:  # answered (or dropped) from the header: never parsed
                if shape == "opcode":
                    self.stats.rcodes["NOTIMP"] += 1
                    return formerr_header(data, dns.rcode.NOTIMP)
                self.stats.malformed[shape] += 1
                _limited.info(
                    ("malformed", shape), "DNS query of invalid shape (%s)", shape, now=now
                )
                return formerr_header(data) if shape != "response" else None
        try:
            query = dns.message.from_wire(data, ignore_trailing=False)
        except dns.message.BadEDNS:
            self.stats.malformed["bad_edns"] += 1
            return formerr_header(data)
        except (dns.exception.DNSException, ValueError, IndexError, UnicodeError) as exc:
            reason = type(exc).__name__
            self.stats.malformed[reason] += 1
            _limited.info(
                ("malformed", reason), "malformed DNS query (%s): %s", reason, exc, now=now
            )
            return formerr_header(data)
        if query.flags & dns.flags.QR:
            self.stats.malformed["response"] += 1
            return None  # never answer a response: that is how loops start
        if query.opcode() != dns.opcode.QUERY:
            return self._done(error(query, dns.rcode.NOTIMP), "NOTIMP")
        if len(query.question) != 1:
            return self._done(error(query, dns.rcode.FORMERR), "FORMERR")
        if query.edns > 0:
            return self._done(error(query, dns.rcode.BADVERS), "BADVERS")
        q = query.question[0]
        if q.rdclass != dns.rdataclass.IN or q.rdtype in _ZONE_TRANSFERS or view_name == NO_VIEW:
            if log.isEnabledFor(logging.DEBUG):
                why = (
                    "no view: the client is in no VLAN subnet"
                    if view_name == NO_VIEW
                    else "not class IN"
                    if q.rdclass != dns.rdataclass.IN
                    else "zone transfers are not served"
                )
                _limited.debug(("refused", why), "REFUSED %s: %s", q, why, now=now)
            # not pre-rendered: one entry per name would let a client grow the cache at will
            return self._done(error(query, dns.rcode.REFUSED), "REFUSED")
        view = self.views.get(view_name)
        if view is None:
            return self._done(error(query, dns.rcode.REFUSED), "REFUSED")
        answer = self.resolver.resolve(view, q.name, q.rdtype, now)
        ceiling = const.DNS_MAX_TCP_MESSAGE if tcp else udp_max
        limit = ceiling if tcp else min(udp_limit(query), ceiling)
        if answer.ondemand and not answer.answer:
            miss = (view_name, q.name, q.rdtype)
            if not self.ondemand.recently_missed(miss, now) and not self.ondemand.saturated:
                self.stats.ondemand += 1
                return Pending(query, view, q.name, q.rdtype, answer, limit, ceiling, parsed, miss)
        return self._finish(query, view, answer, limit, ceiling, parsed, now)

    def complete(self, p: Pending, answered: bool, now: float) -> bytes:
        """The reply to a query that waited for mDNS (``answered``: some record came)."""
        # the policy may have been reloaded while we waited: answer (and cache) with the view in
        # force now, never with the old one (it would leak, or hide, until the entry expires)
        view = self.views.get(p.view.name, p.view)
        answer = self.resolver.resolve(view, p.qname, p.qtype, now)
        if not answered or not answer.answer:
            self.ondemand.remember_miss(p.miss, now)
        return self._finish(p.query, view, answer, p.limit, p.ceiling, p.parsed, now)

    def _finish(
        self,
        query: dns.message.Message,
        view: View,
        answer: Answer,
        limit: int,
        ceiling: int,
        parsed: tuple[QueryKey, int] | None,
        now: float,
    ) -> bytes:
        wire = render(query, answer, limit)
        if wire[2] & 0x02:
            self.stats.truncated += 1
        if answer.min_remaining == float("inf"):
            valid = now + (
                const.DNS_MISS_MEMORY if answer.ondemand else const.DNS_STATIC_ANSWER_VALID
            )
        else:
            valid = now + max(
                const.DNS_ANSWER_MIN_VALID, answer.min_remaining - self.resolver.max_ttl
            )
        rcode = dns.rcode.to_text(dns.rcode.Rcode.make(answer.rcode))
        if rcode in ("NXDOMAIN", "REFUSED") and log.isEnabledFor(logging.DEBUG):
            why = (
                "not a zone served here (local., the VLAN domains, browse and reverse zones)"
                if rcode == "REFUSED"
                else f"no such name in view {view.name} (never announced, expired, or hidden "
                "by policy)"
            )
            _limited.debug((rcode, view.name), "%s %s: %s", rcode, query.question[0], why, now=now)
        if rcode == "REFUSED":  # a name outside every zone: not kept per name (100,000 such
            return self._done(wire, rcode)  # names once added 69 MB to one cache)
        return self._cacheable(wire, rcode, view.name, ceiling, parsed, valid)

    def _cacheable(
        self,
        wire: bytes,
        rcode: str,
        view: str,
        ceiling: int,
        parsed: tuple[QueryKey, int] | None,
        valid: float,
    ) -> bytes:
        self.stats.rcodes[rcode] += 1
        if parsed is not None:
            key, qend = parsed
            if self._store.generation != self._generation:
                self._sync()  # before, not after: this answer already saw those changes
            self._cache(view, ceiling).put(key, wire, qend, valid)
        return wire

    def _done(self, wire: bytes, rcode: str) -> bytes:
        self.stats.rcodes[rcode] += 1
        return wire


def view_by_address(
    subnet_view: Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], str | None],
    default_view: str | None,
) -> Callable[[str], str | None]:
    """Client address -> view: the VLAN whose subnet holds it, else the default view."""

    def pick(host: str) -> str | None:
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return default_view
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return subnet_view(ip) or default_view

    return pick
