"""DNS over UDP and TCP: sockets, TCP framing, timeouts and tasks; the answers come from answer.py.

UDP listeners are raw non-blocking sockets drained by ``loop.add_reader`` (up to
DNS_UDP_DRAIN_BATCH datagrams per wake-up, in one recvmmsg and one sendmmsg when compiled:
udpio): a cached answer costs a dict lookup and a splice.
Misses go to the slow path (``Answers.miss``), which may wait for mDNS; the wait is a task here.
Each listener is bound to one exact address, so replies leave from the address queried.
What a listener's address says about its clients is decided once, at bind time: beyond
loopback, UDP answers are clamped to DNS_UDP_CLAMP bytes and, on listeners chosen by client
address, rate-limited per client prefix (RRL); loopback and the view listeners CoreDNS
forwards to are neither (they are CoreDNS, or the router itself).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import struct
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .. import const
from ..config import Address
from ..logutil import RateLimitedLog
from .answer import NO_VIEW, Answers, Pending
from .fastpath import cached
from .ondemand import Key
from .ratelimit import ResponseRateLimiter
from .udpio import UdpBatch, make_batch

log = logging.getLogger(__name__)
_limited = RateLimitedLog(log)
_LEN = struct.Struct("!H")
_MAX_UDP = const.DNS_MAX_UDP_PAYLOAD


@dataclass(frozen=True, slots=True)
class Listener:
    address: Address
    view: str | None  # fixed view; None: chosen by the client's source address


class DnsServer:
    """The DNS front end's I/O: listening sockets, the client's view, the waits for mDNS.

    It exists apart from ``Answers`` so that the rules can be tested as functions of bytes,
    views and time, and so that the UDP loop below stays the few lines a cached answer costs
    (it is the hot path the load test compares with NSD)."""

    def __init__(
        self,
        answers: Answers,
        lookup: Callable[[Iterable[Key]], Awaitable[bool]],
        view_of_address: Callable[[str], str | None],
        udp_clamp: int = const.DNS_UDP_CLAMP,
        rate_limiter: ResponseRateLimiter | None = None,
    ) -> None:
        self.answers = answers
        self.udp_clamp = udp_clamp  # bytes; UDP ceiling for listeners beyond loopback
        self.rate_limiter = rate_limiter  # RRL for listeners beyond loopback; None: off
        self.lookup = lookup  # OnDemand.lookup: ask mDNS, wait (bounded) for an answer
        self.view_of_address = view_of_address
        self.stats = answers.stats
        self._addr_view: dict[str, str] = {}
        self._udp: list[socket.socket] = []
        self._tcp_servers: list[asyncio.base_events.Server] = []
        self._tcp_clients: set[asyncio.Task[Any]] = set()
        # connections waiting for a query with no answer outstanding, longest idle first: the
        # one closed to admit a new connection when the table is full
        self._tcp_idle: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._tcp_per_host: Counter[str] = Counter()  # client address -> open connections
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._batch: UdpBatch | None = None  # every UDP listener's, made at start

    def addresses_changed(self) -> None:
        self._addr_view.clear()

    def _view_for(self, host: str) -> str:
        view = self._addr_view.get(host)
        if view is None:
            view = self.view_of_address(host) or NO_VIEW
            if len(self._addr_view) >= const.DNS_VIEW_CACHE_MAX:
                self._addr_view.clear()
            self._addr_view[host] = view
            if view == NO_VIEW:  # once per client (rate-limited: the cache may be cleared)
                _limited.warning(
                    ("no-view",),
                    "REFUSED queries from %s: it is in no VLAN subnet and dns.default_view is "
                    "not set; fix: set dns.default_view (e.g. '*') or have it query a view "
                    "listener (dns.view_listeners)",
                    host,
                    source=host,
                )
        return view

    # --- sockets -------------------------------------------------------------------------

    async def start(self, listeners: list[Listener]) -> None:
        """Bind every listener, then serve on all of them: an answer on one means all are up
        (a client that polls one port for readiness never finds another one still closed)."""
        loop = self._loop = asyncio.get_running_loop()
        if self._batch is None:
            self._batch = make_batch(const.DNS_UDP_DRAIN_BATCH, _MAX_UDP)
        bound: list[tuple[socket.socket, str | None, int, ResponseRateLimiter | None]] = []
        for lst in listeners:
            host, port = lst.address
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            self._udp.append(sock)  # first: close() closes it even if the bind fails
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
            sock.bind((host, port))
            sock.setblocking(False)
            loopback = ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
            udp_max = const.DNS_MAX_UDP_PAYLOAD if loopback else self.udp_clamp
            limiter = None if loopback or lst.view is not None else self.rate_limiter
            bound.append((sock, lst.view, udp_max, limiter))
            server = await asyncio.start_server(
                lambda r, w, v=lst.view: self._tcp_client(r, w, v),  # type: ignore[misc]
                host,
                port,
                family=family,
                reuse_address=True,
                backlog=const.DNS_TCP_BACKLOG,
                start_serving=False,
            )
            self._tcp_servers.append(server)
            log.info(
                "DNS listening on %s port %d (UDP, TCP), view %s",
                host,
                port,
                lst.view or "by client address",
            )
        for sock, view, udp_max, limiter in bound:
            loop.add_reader(sock.fileno(), self._udp_ready, sock, view, udp_max, limiter)
        for server in self._tcp_servers:
            await server.start_serving()

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
        for _ in range(const.DNS_CLOSE_ROUNDS):
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

    def _udp_ready(
        self,
        sock: socket.socket,
        fixed_view: str | None,
        udp_max: int,
        limiter: ResponseRateLimiter | None,
    ) -> None:
        """Answer the datagrams waiting, a batch of up to DNS_UDP_DRAIN_BATCH at a time (one
        ``recvmmsg`` and one ``sendmmsg`` each in the compiled build: udpio), reading again
        at once after each batch until the socket has none, up to DNS_UDP_DRAIN_ROUNDS
        batches a wake-up: under load more arrive while a batch is answered, and reading them
        now costs one more ``recvmmsg`` where going back to the loop costs an asyncio turn
        and an ``epoll_wait`` (NSD reads until EAGAIN too). The loop is the hot path: bound
        methods, the time, the view's cache and the counts are hoisted out of it. Without
        RRL, a run of one sender's queries whose bytes are cached keys is answered by one
        call to ``batch.answer`` (in the compiled build a dict lookup per query, in C, and no
        bytes object made for the reply); any other query costs a call to ``cached`` and a
        queued reply. ``udp_max`` picks the caches of the listener's ceiling; ``limiter``:
        RRL, or None."""
        assert self._loop is not None and self._batch is not None
        batch = self._batch
        count = _receive(batch, sock)
        if not count:
            return
        now = self._loop.time()
        caches = self.answers.caches(False, udp_max)  # the store's changes applied, once a wake
        lookup, reply_to, host_of, data_of = cached, batch.reply, batch.host, batch.data
        answer_run = batch.answer if limiter is None else None
        cache = caches.get(fixed_view) if fixed_view is not None else None
        view: str = fixed_view or NO_VIEW
        addr_view = self._addr_view
        # the sender whose view and cache are in hand: the compiled batch hands out the same
        # str object while the sender is the same (mmsg.Batch.host), so a batch from one
        # client looks its view up once, not per datagram (callgrind, batches of 64 cached
        # queries from one client: 4,039 -> 3,293 instructions per cached answer). The pure
        # build's texts are new objects: looked up per datagram, as before
        last_host: str | None = None
        received = hits = 0
        rounds = const.DNS_UDP_DRAIN_ROUNDS
        try:
            while True:
                received += count
                i = 0
                try:
                    while i < count:
                        if fixed_view is None:
                            host = host_of(i)
                            if host is not last_host:
                                last_host = host
                                view = addr_view.get(host) or self._view_for(host)
                                cache = caches.get(view)
                            elif cache is None:  # the view's first answer may be cached since
                                cache = caches.get(view)
                        elif cache is None:  # the view's first answer may be cached since
                            cache = caches.get(fixed_view)
                        if cache is not None:
                            if answer_run is not None:
                                end = answer_run(i, cache.entries, cache.epoch, now)
                                if end > i:
                                    hits += end - i
                                    i = end
                                    continue
                            data = data_of(i)
                            reply = lookup(cache, data, now)
                            if reply is not None:
                                hits += 1
                                if limiter is not None:
                                    reply = limiter.admit(host_of(i), data, reply, now)
                                    if reply is None:
                                        i += 1
                                        continue
                                reply_to(i, reply)
                                i += 1
                                continue
                        else:
                            data = data_of(i)
                        self._udp_miss(sock, data, batch.addr(i), view, now, udp_max, limiter)
                        i += 1
                finally:
                    for i, err in batch.flush(sock):
                        self._send_failed(batch.addr(i), OSError(err, os.strerror(err)))
                rounds -= 1
                if rounds <= 0:
                    return
                count = _receive(batch, sock)
                if not count:
                    return
        finally:
            stats = self.stats
            stats.queries["udp"] += received
            stats.cache_hits += hits

    def _udp_miss(
        self,
        sock: socket.socket,
        data: bytes,
        addr: tuple[str, int],
        view: str,
        now: float,
        udp_max: int,
        limiter: ResponseRateLimiter | None,
    ) -> None:
        reply = self.answers.miss(data, view, False, now, udp_max)
        if isinstance(reply, bytes):
            self._send_limited(sock, data, reply, addr, limiter, now)
        elif reply is not None:
            task = asyncio.ensure_future(self._finish_udp(sock, data, addr, reply, limiter))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _send_failed(self, addr: tuple[str, int], exc: OSError) -> None:
        self.stats.dropped += 1
        log.debug("UDP send to %s failed: %s", addr[0], exc)

    def _send_limited(
        self,
        sock: socket.socket,
        query: bytes,
        reply: bytes,
        addr: tuple[str, int],
        limiter: ResponseRateLimiter | None,
        now: float,
    ) -> None:
        out = reply if limiter is None else limiter.admit(addr[0], query, reply, now)
        if out is not None:
            try:
                sock.sendto(out, addr)
            except OSError as exc:
                self._send_failed(addr, exc)

    async def _finish_udp(
        self,
        sock: socket.socket,
        query: bytes,
        addr: tuple[str, int],
        pending: Pending,
        limiter: ResponseRateLimiter | None,
    ) -> None:
        reply = await self._wait(pending)
        assert self._loop is not None
        self._send_limited(sock, query, reply, addr, limiter, self._loop.time())

    # --- TCP -----------------------------------------------------------------------------

    async def _tcp_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, fixed_view: str | None
    ) -> None:
        """One TCP connection (RFC 7766): pipelined queries answered as they are ready.

        Bounded per client address (DNS_TCP_MAX_PER_CLIENT) and in all (DNS_TCP_MAX_CONNECTIONS;
        when full, the connection idle longest is closed for the new one); a client that does
        not read its answers is cut after DNS_TCP_WRITE_TIMEOUT, one that sends nothing after
        DNS_TCP_IDLE_TIMEOUT. One client once held all 512 connections for as long as it liked.
        """
        task = asyncio.current_task()
        peer = writer.get_extra_info("peername") or ("", 0)
        host = peer[0]
        if task is None or not self._admit(host):
            writer.transport.abort()
            return
        self._tcp_clients.add(task)
        self._tcp_per_host[host] += 1
        self.stats.tcp_connections += 1
        view = fixed_view if fixed_view is not None else self._view_for(host)
        waits: set[asyncio.Task[None]] = set()  # this connection's queries waiting for mDNS
        turn = 0  # queries answered since this connection last let the loop run others
        idle_for = const.DNS_TCP_IDLE_TIMEOUT
        slack = idle_for * const.DNS_TCP_IDLE_SLACK
        clean = False
        assert self._loop is not None
        idle_at = self._loop.time() + idle_for
        try:
            # one idle timer per connection, moved on as queries come (at most once per slack):
            # asyncio.timeout() per query made, pushed and cancelled a TimerHandle every time
            async with asyncio.timeout_at(idle_at) as idle:
                while True:
                    if not waits:
                        self._tcp_idle[task] = writer  # idle from now: the newest idle one
                    try:
                        head = await reader.readexactly(2)
                        data = await reader.readexactly(_LEN.unpack(head)[0])
                    except asyncio.IncompleteReadError as exc:
                        clean = not exc.partial  # EOF between queries: answer what is waiting
                        return
                    finally:
                        self._tcp_idle.pop(task, None)
                    now = self._loop.time()
                    if now + idle_for - idle_at > slack:
                        idle_at = now + idle_for
                        idle.reschedule(idle_at)
                    self.stats.queries["tcp"] += 1
                    reply = self.answers.answer(data, view, True, now)
                    if isinstance(reply, Pending):
                        wait = asyncio.ensure_future(self._finish_tcp(writer, reply))
                        waits.add(wait)
                        self._tasks.add(wait)
                        wait.add_done_callback(waits.discard)
                        wait.add_done_callback(self._tasks.discard)
                        if len(waits) >= const.DNS_TCP_MAX_PIPELINED:
                            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                    elif reply is not None and not await self._send_tcp(writer, reply):
                        return
                    turn += 1
                    if turn >= const.DNS_TCP_QUERIES_PER_TURN:
                        turn = 0
                        await asyncio.sleep(0)  # buffered queries never suspend the reads above
        except TimeoutError:
            return
        except (ConnectionError, OSError):
            return
        except asyncio.CancelledError:  # close(): end normally, or asyncio's stream callback
            return  # (3.11) logs a traceback per pooled connection on SIGTERM
        finally:
            self._tcp_idle.pop(task, None)
            if clean and waits:
                await asyncio.wait(waits)  # bounded: each ends within the on-demand timeout
            for wait in waits:
                wait.cancel()
            self._tcp_clients.discard(task)
            self._tcp_per_host[host] -= 1
            if self._tcp_per_host[host] <= 0:
                del self._tcp_per_host[host]
            if clean and not writer.transport.is_closing():
                writer.close()
            else:
                writer.transport.abort()  # close() keeps the socket until a non-reader reads

    def _admit(self, host: str) -> bool:
        """Whether a new connection from ``host`` may stay (closing the longest idle one when
        the table is full); counted by reason when not."""
        if self._tcp_per_host[host] >= const.DNS_TCP_MAX_PER_CLIENT:
            self.stats.tcp_closed["per_client"] += 1
            return False
        if len(self._tcp_clients) >= const.DNS_TCP_MAX_CONNECTIONS:
            if not self._tcp_idle:
                self.stats.tcp_closed["full"] += 1
                return False
            oldest = next(iter(self._tcp_idle))
            self._tcp_idle.pop(oldest).transport.abort()  # its read ends, its task finishes
            self.stats.tcp_closed["idle"] += 1
        return True

    async def _send_tcp(self, writer: asyncio.StreamWriter, reply: bytes) -> bool:
        """Write one framed answer; False (and counted) when the client does not read it."""
        writer.write(_LEN.pack(len(reply)) + reply)
        transport = writer.transport
        if not transport.get_write_buffer_size() and not transport.is_closing():
            return True  # all of it sent at once: drain() would not wait, so no timer
        try:
            async with asyncio.timeout(const.DNS_TCP_WRITE_TIMEOUT):
                await writer.drain()
        except TimeoutError:
            self.stats.tcp_closed["write_timeout"] += 1
            writer.transport.abort()
            return False
        return True

    async def _finish_tcp(self, writer: asyncio.StreamWriter, pending: Pending) -> None:
        """A pipelined query that waited for mDNS: its answer goes out when ready, in any order
        (RFC 7766 §6.2.1.1); 20 such misses on one connection took 18 s one after another."""
        reply = await self._wait(pending)
        if not writer.transport.is_closing():
            try:
                await self._send_tcp(writer, reply)
            except (ConnectionError, OSError):
                writer.transport.abort()

    # --- waiting for mDNS ------------------------------------------------------------------

    async def _wait(self, pending: Pending) -> bytes:
        answered = await self.lookup(pending.keys)
        assert self._loop is not None
        return self.answers.complete(pending, answered, self._loop.time())


def _receive(batch: UdpBatch, sock: socket.socket) -> int:
    """Datagrams received into ``batch`` (0 when none wait, or after a receive error, which
    is logged: the next wake-up reads again)."""
    try:
        return batch.recv(sock)
    except OSError as exc:
        log.debug("UDP receive error: %s", exc)
        return 0
