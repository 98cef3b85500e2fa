"""A client that treats its upstream exactly as CoreDNS's ``forward`` plugin treats us.

See shared/notes/coredns-forward.md (CoreDNS plugin/forward, plugin/pkg/proxy, plugin/cache).
CoreDNS itself cannot be installed here, so tests of the gateway's DNS side talk to it through
``ForwardClient``, which reproduces what CoreDNS does on the wire and what it makes of replies:

* ``health_check()``: ``. IN NS``, RD=1, no EDNS, fresh UDP socket, random ID, 1 s; healthy
  when any reply with our ID arrives (REFUSED, SERVFAIL, NXDOMAIN all count).
* ``exchange(msg, tcp)``: the client's message unchanged except a new random ID, over a pooled,
  connected UDP socket or a pooled TCP connection (one query at a time per connection, idle
  ones expire after 10 s); 2 s per attempt, 2 attempts (new ID each), then SERVFAIL.
  Replies with another ID are dropped (reading on until the deadline); a reply that is not a
  response or does not echo exactly the one question (name case-insensitively, type, class)
  becomes FORMERR; a UDP reply bigger than max(512, client's EDNS size) becomes an empty TC
  reply. A pooled TCP connection that the server closed is redialled without costing an attempt.
  What ``exchange`` returns is what CoreDNS would hand its client (client's ID restored).
* ``cache_ttl(reply)``: the TTL CoreDNS's cache would store the reply with (None: not cached).

Stricter than CoreDNS in one point: it also requires the question class to match.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype

SocketFactory = Callable[..., socket.socket]

HEALTH_TIMEOUT = 1.0  # s, proxy health check read timeout
ATTEMPT_TIMEOUT = 2.0  # s, per attempt (proxy readTimeout)
ATTEMPTS = 2  # attempts with one upstream before SERVFAIL
EXPIRE = 10.0  # s, idle pooled connections are closed after this
DIAL_TIMEOUT = 1.0  # s, TCP connect timeout (CoreDNS starts at its minDialTimeout)
MIN_UDP_SIZE = 512  # bytes
MAX_CACHED_CLOSED_RETRIES = 8  # bound on free redials after a closed pooled TCP connection


class ForwardError(Exception):
    """An attempt failed (timeout, I/O error, unparsable reply)."""


class _CachedClosed(ForwardError):
    """A pooled TCP connection turned out to be closed by the server."""


@dataclass
class ForwardStats:
    attempts: int = 0  # queries written to the upstream (health checks excluded)
    failed_attempts: int = 0  # timeouts, I/O errors, unparsable replies
    timeouts: int = 0
    wrong_id_dropped: int = 0  # replies dropped for a mismatched ID
    cached_closed: int = 0  # pooled TCP connections found closed (redialled for free)
    truncated_to_tc: int = 0  # oversized UDP replies turned into empty TC replies
    formerr: int = 0  # replies rejected by the question / QR check
    servfail: int = 0  # exchanges that ran out of attempts
    udp_sockets: int = 0  # new UDP sockets created for queries
    tcp_connections: int = 0  # new TCP connections opened for queries
    health_checks: int = 0
    health_failures: int = 0


class _Conn:
    __slots__ = ("created", "sock", "tcp", "used")

    def __init__(self, sock: socket.socket, tcp: bool, now: float) -> None:
        self.sock = sock
        self.tcp = tcp
        self.created = now
        self.used = now

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


@dataclass(frozen=True)
class CacheConfig:
    """CoreDNS ``cache`` settings; the defaults are a bare ``cache`` directive.

    ``cache { success 4096 30 0  denial 1024 10 0 }`` is
    ``CacheConfig(success_max=30, success_min=0, denial_max=10, denial_min=0)``.
    """

    success_max: int = 3600
    success_min: int = 5
    denial_max: int = 1800
    denial_min: int = 5
    servfail: int = 5


def response_type(reply: dns.message.Message) -> str:
    """CoreDNS ``response.Typify``: NOERROR, NXDOMAIN, NODATA, DELEGATION, SERVERROR,
    OTHERERROR or META (notify/update/xfr)."""
    if reply.opcode() in (dns.opcode.UPDATE, dns.opcode.NOTIFY):
        return "META"
    if reply.question and reply.question[0].rdtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
        return "META"
    rcode = reply.rcode()
    if reply.answer and rcode == dns.rcode.NOERROR:
        return "NOERROR"
    soa = any(rrset.rdtype == dns.rdatatype.SOA for rrset in reply.authority)
    ns = any(rrset.rdtype == dns.rdatatype.NS for rrset in reply.authority)
    if soa and rcode == dns.rcode.NOERROR:
        return "NODATA"
    if soa and rcode == dns.rcode.NXDOMAIN:
        return "NXDOMAIN"
    if rcode == dns.rcode.SERVFAIL:
        return "SERVERROR"
    if ns and rcode == dns.rcode.NOERROR:
        return "DELEGATION"
    if rcode == dns.rcode.NOERROR:
        return "NOERROR"
    return "OTHERERROR"


def minimal_ttl(reply: dns.message.Message, rtype: str | None = None) -> int:
    """CoreDNS ``dnsutil.MinimalTTL``: smallest TTL over answer, authority and additional
    (OPT excluded; the SOA MINIMUM field is not read), at most 3600; 5 for empty replies and
    types other than NOERROR/NXDOMAIN/NODATA."""
    rtype = rtype or response_type(reply)
    if rtype not in ("NOERROR", "NXDOMAIN", "NODATA"):
        return 5
    # dnspython keeps OPT out of reply.additional, as CoreDNS skips it.
    rrsets = [*reply.answer, *reply.authority, *reply.additional]
    if not rrsets:
        return 5
    return min([3600, *(rrset.ttl for rrset in rrsets)])


def cache_ttl(reply: dns.message.Message, config: CacheConfig | None = None) -> int | None:
    """Seconds CoreDNS's cache keeps ``reply`` (every record is rewritten to this TTL), or
    None when it does not cache it (TC, REFUSED/FORMERR/NOTIMP, NXDOMAIN without SOA, ...)."""
    config = config or CacheConfig()
    if reply.flags & dns.flags.TC:
        return None
    rtype = response_type(reply)
    if rtype in ("OTHERERROR", "META"):
        return None
    if rtype == "SERVERROR":
        return config.servfail or None
    ttl = minimal_ttl(reply, rtype)
    if rtype in ("NXDOMAIN", "NODATA"):
        lo, hi = config.denial_min, config.denial_max
    else:
        lo, hi = config.success_min, config.success_max
    ttl = max(lo, min(hi, ttl))
    return ttl if ttl > 0 else None


def reply_matches(request: dns.message.Message, reply: dns.message.Message) -> bool:
    """CoreDNS ``request.Match`` plus the class: QR=1 and exactly the request's question."""
    if not reply.flags & dns.flags.QR or len(reply.question) != 1 or not request.question:
        return False
    q, r = request.question[0], reply.question[0]
    # dns.name.Name equality is case-insensitive, as CoreDNS's strings.ToLower comparison.
    return bool(r.name == q.name and r.rdtype == q.rdtype and r.rdclass == q.rdclass)


def error_reply(request: dns.message.Message, rcode: dns.rcode.Rcode) -> dns.message.Message:
    """What CoreDNS writes for ``SetRcode(req, rcode)``: ID, opcode, RD, CD and question of the
    request (plus an OPT when the request had one, as its server does for errors)."""
    reply = dns.message.make_response(request)
    reply.set_rcode(rcode)
    return reply


class ForwardClient:
    """CoreDNS ``forward . host:port`` with one upstream (not thread-hostile: each exchange
    takes its own pooled connection, so concurrent exchanges from threads are fine)."""

    def __init__(
        self,
        host: str,
        port: int = 53,
        *,
        attempt_timeout: float = ATTEMPT_TIMEOUT,
        attempts: int = ATTEMPTS,
        health_timeout: float = HEALTH_TIMEOUT,
        expire: float = EXPIRE,
        dial_timeout: float = DIAL_TIMEOUT,
        socket_factory: SocketFactory | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.host = host
        self.port = port
        ip = ipaddress.ip_address(host)
        self.family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
        self.addr: tuple[str, int] = (host, port)
        self.attempt_timeout = attempt_timeout
        self.attempts = attempts
        self.health_timeout = health_timeout
        self.expire = expire
        self.dial_timeout = dial_timeout
        self._socket = socket_factory or socket.socket
        self._clock = clock  # for connection expiry only; attempts use real time
        self._rng = rng or random.SystemRandom()
        self._pool: dict[bool, deque[_Conn]] = {False: deque(), True: deque()}
        self._lock = threading.Lock()
        self.stats = ForwardStats()
        self.last_upstream_ids: list[int] = []  # IDs sent in the last exchange, in order

    # -- health ------------------------------------------------------------------------------

    def health_check(self, *, tcp: bool = False) -> bool:
        """One CoreDNS health check (``tcp``: as with ``force_tcp``)."""
        self.stats.health_checks += 1
        qid = self._rng.randrange(65536)
        ping = dns.message.make_query(".", "NS", id=qid)  # RD=1, no EDNS
        deadline = time.monotonic() + self.health_timeout
        try:
            sock = self._socket(self.family, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
            with sock:
                sock.settimeout(self.health_timeout)
                sock.connect(self.addr)
                conn = _Conn(sock, tcp, self._clock())
                self._write(conn, ping.to_wire())
                while True:
                    data, _ = self._read(conn, deadline, 65535)
                    # miekg's client only needs a header with our ID ("something sane").
                    if len(data) >= 12 and struct.unpack("!H", data[:2])[0] == qid:
                        return True
        except (OSError, ForwardError):
            pass
        self.stats.health_failures += 1
        return False

    # -- queries -----------------------------------------------------------------------------

    def exchange(self, msg: dns.message.Message, tcp: bool = False) -> dns.message.Message:
        """Forward the client's ``msg`` as CoreDNS would; return what its client would get."""
        self.last_upstream_ids = []
        if tcp:
            bufsize = 65535
        else:
            bufsize = max(msg.payload if msg.edns >= 0 else MIN_UDP_SIZE, MIN_UDP_SIZE)
        for _ in range(self.attempts):
            reply: dns.message.Message | None = None
            for _redial in range(MAX_CACHED_CLOSED_RETRIES):
                try:
                    reply = self._attempt(msg, tcp, bufsize)
                except _CachedClosed:
                    self.stats.cached_closed += 1
                    continue
                except ForwardError:
                    self.stats.failed_attempts += 1
                break
            if reply is None:
                continue
            reply.id = msg.id
            if not reply_matches(msg, reply):
                self.stats.formerr += 1
                return error_reply(msg, dns.rcode.FORMERR)
            return reply
        self.stats.servfail += 1
        return error_reply(msg, dns.rcode.SERVFAIL)

    def _attempt(self, msg: dns.message.Message, tcp: bool, bufsize: int) -> dns.message.Message:
        conn, cached = self._dial(tcp)
        qid = self._rng.randrange(65536)
        self.last_upstream_ids.append(qid)
        wire = bytearray(msg.to_wire())
        struct.pack_into("!H", wire, 0, qid)
        self.stats.attempts += 1
        deadline = time.monotonic() + self.attempt_timeout
        try:
            try:
                self._write(conn, bytes(wire))
            except OSError as exc:
                if cached and tcp:
                    raise _CachedClosed(str(exc)) from exc
                raise ForwardError(f"write failed: {exc}") from exc
            while True:
                try:
                    data, truncated = self._read(conn, deadline, bufsize)
                except EOFError as exc:
                    if cached:
                        raise _CachedClosed(str(exc)) from exc
                    raise ForwardError(str(exc)) from exc
                except TimeoutError as exc:
                    self.stats.timeouts += 1
                    raise ForwardError("timeout") from exc
                except OSError as exc:
                    raise ForwardError(f"read failed: {exc}") from exc
                if len(data) < 12:
                    raise ForwardError("short reply")
                rid = struct.unpack("!H", data[:2])[0]
                if truncated:
                    if rid != qid:
                        raise ForwardError("oversized reply with a wrong ID")
                    self.stats.truncated_to_tc += 1
                    reply = _truncated_reply(data)
                    break
                try:
                    reply = dns.message.from_wire(data)
                except dns.exception.DNSException as exc:
                    raise ForwardError(f"unparsable reply: {exc!r}") from exc
                if reply.id == qid:
                    break
                self.stats.wrong_id_dropped += 1
        except BaseException:
            conn.close()
            raise
        self._yield(conn)
        return reply

    # -- connections -------------------------------------------------------------------------

    def _dial(self, tcp: bool) -> tuple[_Conn, bool]:
        now = self._clock()
        with self._lock:
            pool = self._pool[tcp]
            while pool:
                conn = pool.popleft()  # FIFO: the oldest idle connection first
                if now - conn.used > self.expire:
                    conn.close()
                    continue
                return conn, True
        sock = self._socket(self.family, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
        try:
            sock.settimeout(self.dial_timeout)
            sock.connect(self.addr)
        except OSError as exc:
            sock.close()
            raise ForwardError(f"dial failed: {exc}") from exc
        if tcp:
            self.stats.tcp_connections += 1
        else:
            self.stats.udp_sockets += 1
        return _Conn(sock, tcp, now), False

    def _yield(self, conn: _Conn) -> None:
        conn.used = self._clock()
        with self._lock:
            self._pool[conn.tcp].append(conn)

    def pooled(self, tcp: bool) -> int:
        """Idle pooled connections of the transport."""
        with self._lock:
            return len(self._pool[tcp])

    def close(self) -> None:
        with self._lock:
            for pool in self._pool.values():
                while pool:
                    pool.popleft().close()

    def __enter__(self) -> ForwardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- wire I/O ----------------------------------------------------------------------------

    @staticmethod
    def _write(conn: _Conn, wire: bytes) -> None:
        conn.sock.settimeout(ATTEMPT_TIMEOUT)  # CoreDNS: write deadline maxTimeout (2 s)
        if conn.tcp:
            conn.sock.sendall(struct.pack("!H", len(wire)) + wire)
        else:
            conn.sock.send(wire)

    @staticmethod
    def _read(conn: _Conn, deadline: float, bufsize: int) -> tuple[bytes, bool]:
        """One message: (data, truncated). Raises TimeoutError, EOFError (TCP closed)."""
        if conn.tcp:
            (length,) = struct.unpack("!H", _recv_exact(conn.sock, 2, deadline))
            return _recv_exact(conn.sock, length, deadline), False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        conn.sock.settimeout(remaining)
        data, _, flags, _ = conn.sock.recvmsg(bufsize)
        return data, bool(flags & socket.MSG_TRUNC)


def _recv_exact(sock: socket.socket, n: int, deadline: float) -> bytes:
    buf = b""
    while len(buf) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed by peer")
        buf += chunk
    return buf


def _truncated_reply(data: bytes) -> dns.message.Message:
    """CoreDNS ``truncateResponse``: the header and question of an oversized reply, no
    records, TC set."""
    try:
        reply = dns.message.from_wire(data, question_only=True)
    except dns.exception.DNSException:
        reply = dns.message.Message(id=struct.unpack("!H", data[:2])[0])
        reply.flags = struct.unpack("!H", data[2:4])[0]
    reply.flags |= dns.flags.TC
    return reply
