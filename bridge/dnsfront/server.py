"""DNS over UDP and TCP: moves bytes between sockets and the resolver, nothing more.

UDP listeners are raw non-blocking sockets drained by ``loop.add_reader`` (up to
DNS_UDP_DRAIN_BATCH datagrams per wake-up): a cached answer costs a dict lookup and a splice.
Misses go to the slow path (dnspython parse, resolver, render), which may wait for mDNS.
Each listener is bound to one exact address, so replies leave from the address queried.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from .. import const
from ..config import Address
from ..logutil import RateLimitedLog
from .fastpath import Entry, QueryKey, ResponseCache, query_key, splice
from .ondemand import OnDemand
from .render import error, formerr_header, render, udp_limit
from .resolver import Answer, Resolver, View

log = logging.getLogger(__name__)
_limited = RateLimitedLog(log)
_NO_VIEW = ""  # the cache slot for clients no view admits (REFUSED)
_LEN = struct.Struct("!H")
_DRAIN = range(const.DNS_UDP_DRAIN_BATCH)
_MAX_UDP = const.DNS_MAX_UDP_PAYLOAD


@dataclass(frozen=True, slots=True)
class Listener:
    address: Address
    view: str | None  # fixed view; None: chosen by the client's source address


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


class DnsServer:
    def __init__(
        self, resolver: Resolver, ondemand: OnDemand, view_of_address: Callable[[str], str | None]
    ) -> None:
        self.resolver = resolver
        self.ondemand = ondemand
        self.view_of_address = view_of_address
        self.views: Mapping[str, View] = {}
        self._changed = resolver.store.changed_vlans  # emptied by _sync
        self.stats = Stats()
        self._caches: dict[tuple[str, bool], ResponseCache] = {}
        self._seeing: dict[str, list[ResponseCache]] = {}  # VLAN -> caches of views seeing it
        self._udp_entries: dict[str, dict[QueryKey, Entry]] = {}  # view -> UDP cache entries
        self._addr_view: dict[str, str] = {}
        self._udp: list[socket.socket] = []
        self._tcp_servers: list[asyncio.base_events.Server] = []
        self._tcp_clients: set[asyncio.Task[Any]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- configuration at run time -----------------------------------------------------

    def set_views(self, views: Mapping[str, View]) -> None:
        """New policy: new views; every pre-rendered answer goes (the old ones may leak)."""
        self.views = dict(views)
        for cache in self._caches.values():
            cache.clear()
        self._index_caches()

    def invalidate_vlan(self, vlan: str) -> None:
        """The store changed on a VLAN: drop answers of the views that can see it."""
        for cache in self._seeing.get(vlan, ()):
            if cache.entries:
                cache.clear()

    def _sync(self) -> None:
        """Apply the store's changes since the last answer (called before every cache read)."""
        changed = self._changed
        if changed:
            for vlan in changed:
                self.invalidate_vlan(vlan)
            changed.clear()

    def _index_caches(self) -> None:
        seeing: dict[str, list[ResponseCache]] = {}
        for (view_name, _), cache in self._caches.items():
            view = self.views.get(view_name)
            if view is not None:
                for vlan in view.policy.vlans:
                    seeing.setdefault(vlan, []).append(cache)
        self._seeing = seeing

    def addresses_changed(self) -> None:
        self._addr_view.clear()

    def _cache(self, view: str, tcp: bool) -> ResponseCache:
        cache = self._caches.get((view, tcp))
        if cache is None:
            cache = self._caches[(view, tcp)] = ResponseCache()
            self._index_caches()
            if not tcp:
                self._udp_entries[view] = cache.entries  # cleared in place, never replaced
        return cache

    def _view_for(self, host: str) -> str:
        view = self._addr_view.get(host)
        if view is None:
            view = self.view_of_address(host) or _NO_VIEW
            if len(self._addr_view) >= const.DNS_VIEW_CACHE_MAX:
                self._addr_view.clear()
            self._addr_view[host] = view
            if view == _NO_VIEW:  # once per client (rate-limited: the cache may be cleared)
                _limited.warning(
                    ("no-view", host),
                    "REFUSED queries from %s: it is in no VLAN subnet and dns.default_view is "
                    "not set; fix: set dns.default_view (e.g. '*') or have it query a view "
                    "listener (dns.view_listeners)",
                    host,
                )
        return view

    # --- sockets -------------------------------------------------------------------------

    async def start(self, listeners: list[Listener]) -> None:
        loop = self._loop = asyncio.get_running_loop()
        for lst in listeners:
            host, port = lst.address
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
            sock.bind((host, port))
            sock.setblocking(False)
            self._udp.append(sock)
            loop.add_reader(sock.fileno(), self._udp_ready, sock, lst.view)
            server = await asyncio.start_server(
                lambda r, w, v=lst.view: self._tcp_client(r, w, v),  # type: ignore[misc]
                host,
                port,
                family=family,
                reuse_address=True,
                backlog=256,
            )
            self._tcp_servers.append(server)
            log.info(
                "DNS listening on %s port %d (UDP, TCP), view %s",
                host,
                port,
                lst.view or "by client address",
            )

    async def close(self) -> None:
        loop = self._loop
        for sock in self._udp:
            if loop is not None:
                loop.remove_reader(sock.fileno())
            sock.close()
        self._udp.clear()
        for server in self._tcp_servers:
            server.close()
        # connections accepted just before the close start their tasks a moment later: repeat
        # until none is left, so nothing is left for a closed loop to collect
        for _ in range(10):
            await asyncio.sleep(0)
            pending = list(self._tcp_clients) + list(self._tasks)
            if not pending:
                break
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for server in self._tcp_servers:
            await server.wait_closed()
        self._tcp_servers.clear()

    # --- UDP -----------------------------------------------------------------------------

    def _udp_ready(self, sock: socket.socket, fixed_view: str | None) -> None:
        """Drain up to DNS_UDP_DRAIN_BATCH datagrams. The loop is the hot path: a query whose
        bytes are a cached key costs one slice, one dict lookup and one sendto."""
        assert self._loop is not None
        now = self._loop.time()
        if self._changed:
            self._sync()
        recvfrom, sendto = sock.recvfrom, sock.sendto
        entries = self._udp_entries.get(fixed_view) if fixed_view is not None else None
        view: str = fixed_view or _NO_VIEW
        addr_view = self._addr_view
        udp_entries = self._udp_entries
        received = hits = 0
        try:
            for _ in _DRAIN:
                try:
                    data, addr = recvfrom(_MAX_UDP)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as exc:
                    log.debug("UDP receive error: %s", exc)
                    return
                received += 1
                if fixed_view is None:
                    host = addr[0]
                    view = addr_view.get(host) or self._view_for(host)
                    entries = udp_entries.get(view)
                elif entries is None:  # the view's first answer may be cached mid-batch
                    entries = udp_entries.get(fixed_view)
                if entries is not None:
                    entry = entries.get(data[2:])
                    if entry is not None and entry[1] > now:
                        hits += 1
                        try:
                            sendto(data[:2] + entry[0], addr)
                        except OSError as exc:
                            self._send_failed(addr, exc)
                        continue
                self._udp_other(sock, data, addr, view, entries, now)
        finally:
            stats = self.stats
            stats.queries["udp"] += received
            stats.cache_hits += hits

    def _udp_other(
        self,
        sock: socket.socket,
        data: bytes,
        addr: tuple[str, int],
        view: str,
        entries: dict[QueryKey, Entry] | None,
        now: float,
    ) -> None:
        """Not a cached key as sent: its canonical key may be cached, else the slow path."""
        parsed = query_key(data)
        if parsed is not None and entries is not None:
            entry = entries.get(parsed[0])
            if entry is not None and entry[1] > now:
                self.stats.cache_hits += 1
                spliced = splice(data, parsed[1], entry)
                self._caches[(view, False)].add_variant(data, spliced, entry[1])
                self._sendto(sock, spliced, addr)
                return
        reply = self._slow(data, view, False, now, parsed)
        if isinstance(reply, bytes):
            self._sendto(sock, reply, addr)
        elif reply is not None:
            task = asyncio.ensure_future(self._finish_udp(sock, addr, reply))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _send_failed(self, addr: tuple[str, int], exc: OSError) -> None:
        self.stats.dropped += 1
        log.debug("UDP send to %s failed: %s", addr[0], exc)

    def _sendto(self, sock: socket.socket, reply: bytes, addr: tuple[str, int]) -> None:
        try:
            sock.sendto(reply, addr)
        except OSError as exc:
            self._send_failed(addr, exc)

    async def _finish_udp(
        self, sock: socket.socket, addr: tuple[str, int], pending: _Pending
    ) -> None:
        reply = await self._wait(pending)
        self._sendto(sock, reply, addr)

    # --- TCP -----------------------------------------------------------------------------

    async def _tcp_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, fixed_view: str | None
    ) -> None:
        task = asyncio.current_task()
        if len(self._tcp_clients) >= const.DNS_TCP_MAX_CONNECTIONS or task is None:
            writer.close()
            self.stats.dropped += 1
            return
        self._tcp_clients.add(task)
        self.stats.tcp_connections += 1
        peer = writer.get_extra_info("peername") or ("", 0)
        view = fixed_view if fixed_view is not None else self._view_for(peer[0])
        assert self._loop is not None
        try:
            while True:
                try:
                    async with asyncio.timeout(const.DNS_TCP_IDLE_TIMEOUT):
                        head = await reader.readexactly(2)
                        data = await reader.readexactly(_LEN.unpack(head)[0])
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                self.stats.queries["tcp"] += 1
                now = self._loop.time()
                reply: bytes | _Pending | None = None
                parsed: tuple[QueryKey, int] | None = None
                if self._changed:
                    self._sync()
                cache = self._caches.get((view, True))
                entry = cache.entries.get(data[2:]) if cache is not None else None
                if entry is not None and entry[1] > now:
                    reply = data[:2] + entry[0]
                else:
                    parsed = query_key(data)
                    if parsed is not None and cache is not None:
                        entry = cache.entries.get(parsed[0])
                        if entry is not None and entry[1] > now:
                            reply = splice(data, parsed[1], entry)
                            cache.add_variant(data, reply, entry[1])
                if reply is not None:
                    self.stats.cache_hits += 1
                else:
                    reply = self._slow(data, view, True, now, parsed)
                if isinstance(reply, _Pending):
                    reply = await self._wait(reply)
                if reply is None:
                    continue
                writer.write(_LEN.pack(len(reply)) + reply)
                await writer.drain()
        except (ConnectionError, OSError):
            return
        finally:
            self._tcp_clients.discard(task)
            writer.close()

    # --- the slow path ---------------------------------------------------------------------

    def _slow(
        self,
        data: bytes,
        view_name: str,
        tcp: bool,
        now: float,
        parsed: tuple[QueryKey, int] | None,
    ) -> bytes | _Pending | None:
        self.stats.slow += 1
        try:
            query = dns.message.from_wire(data, ignore_trailing=False)
        except dns.message.BadEDNS:
            self.stats.malformed["bad_edns"] += 1
            return formerr_header(data)
        except (dns.exception.DNSException, ValueError, IndexError, UnicodeError) as exc:
            reason = type(exc).__name__
            self.stats.malformed[reason] += 1
            _limited.info(("malformed", reason), "malformed DNS query (%s): %s", reason, exc)
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
        if (
            q.rdclass != dns.rdataclass.IN
            or q.rdtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR)
            or view_name == _NO_VIEW
        ):
            if log.isEnabledFor(logging.DEBUG):
                why = (
                    "no view: the client is in no VLAN subnet"
                    if view_name == _NO_VIEW
                    else "not class IN"
                    if q.rdclass != dns.rdataclass.IN
                    else "zone transfers are not served"
                )
                _limited.debug(("refused", why), "REFUSED %s: %s", q, why)
            return self._cacheable(
                error(query, dns.rcode.REFUSED), "REFUSED", view_name, tcp, parsed, now + 3600
            )
        view = self.views.get(view_name)
        if view is None:
            return self._done(error(query, dns.rcode.REFUSED), "REFUSED")
        answer = self.resolver.resolve(view, q.name, q.rdtype, now)
        limit = const.DNS_MAX_TCP_MESSAGE if tcp else udp_limit(query)
        if answer.ondemand and not answer.answer:
            miss = (view_name, q.name, q.rdtype)
            if not self.ondemand.recently_missed(miss, now) and not self.ondemand.saturated:
                return _Pending(query, view, q.name, q.rdtype, answer, limit, tcp, parsed, miss)
        return self._finish(query, view, answer, limit, tcp, parsed, now)

    def _finish(
        self,
        query: dns.message.Message,
        view: View,
        answer: Answer,
        limit: int,
        tcp: bool,
        parsed: tuple[QueryKey, int] | None,
        now: float,
    ) -> bytes:
        wire = render(query, answer, limit)
        if wire[2] & 0x02:
            self.stats.truncated += 1
        if answer.min_remaining == float("inf"):
            valid = now + (const.DNS_MISS_MEMORY if answer.ondemand else 3600.0)
        else:
            valid = now + max(1.0, answer.min_remaining - self.resolver.max_ttl)
        rcode = dns.rcode.to_text(dns.rcode.Rcode.make(answer.rcode))
        if rcode in ("NXDOMAIN", "REFUSED") and log.isEnabledFor(logging.DEBUG):
            why = (
                "not a zone served here (local., the VLAN domains, browse and reverse zones)"
                if rcode == "REFUSED"
                else f"no such name in view {view.name} (never announced, expired, or hidden "
                "by policy)"
            )
            _limited.debug((rcode, view.name), "%s %s: %s", rcode, query.question[0], why)
        return self._cacheable(wire, rcode, view.name, tcp, parsed, valid)

    def _cacheable(
        self,
        wire: bytes,
        rcode: str,
        view: str,
        tcp: bool,
        parsed: tuple[QueryKey, int] | None,
        valid: float,
    ) -> bytes:
        self.stats.rcodes[rcode] += 1
        if parsed is not None:
            key, qend = parsed
            if self._changed:
                self._sync()  # before, not after: this answer already saw those changes
            self._cache(view, tcp).put(key, wire, qend, valid)
        return wire

    def _done(self, wire: bytes, rcode: str) -> bytes:
        self.stats.rcodes[rcode] += 1
        return wire

    async def _wait(self, p: _Pending) -> bytes:
        self.stats.ondemand += 1
        answered = await self.ondemand.lookup(p.answer.ondemand)
        assert self._loop is not None
        now = self._loop.time()
        # the policy may have been reloaded while we waited: answer (and cache) with the view in
        # force now, never with the old one (it would leak, or hide, until the entry expires)
        view = self.views.get(p.view.name, p.view)
        answer = self.resolver.resolve(view, p.qname, p.qtype, now)
        if not answered or not answer.answer:
            self.ondemand.remember_miss(p.miss, now)
        return self._finish(p.query, view, answer, p.limit, p.tcp, p.parsed, now)


@dataclass(slots=True)
class _Pending:
    """A miss waiting for mDNS: everything needed to answer once the wait is over."""

    query: dns.message.Message
    view: View
    qname: dns.name.Name
    qtype: int
    answer: Answer
    limit: int
    tcp: bool
    parsed: tuple[QueryKey, int] | None
    miss: tuple[str, dns.name.Name, int]


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
