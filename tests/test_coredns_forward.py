"""Tests of the CoreDNS-forward emulation (netlab/coredns_forward.py) against a throwaway
UDP/TCP responder on 127.0.0.1 defined here: they test the client, not the gateway."""

from __future__ import annotations

import contextlib
import random
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from netlab.coredns_forward import (
    CacheConfig,
    ForwardClient,
    cache_ttl,
    response_type,
)

pytestmark = pytest.mark.timeout(60)

CLOSE = object()  # handler result marker: close the TCP connection after the replies


@dataclass
class Seen:
    transport: str  # "udp" or "tcp"
    peer: tuple[str, int]
    wire: bytes
    conn: int = 0  # TCP connection number (1-based), 0 for UDP

    @property
    def msg(self) -> dns.message.Message:
        return dns.message.from_wire(self.wire)


Handler = Callable[[Seen], list[object]]


@dataclass
class Responder:
    """UDP and TCP on the same 127.0.0.1 port. ``handler(seen)`` returns what to send back: wire
    bytes (sent in order), ``("other-port", bytes)`` (UDP from another socket), ``("delay", s)``
    or ``CLOSE``."""

    handler: Handler
    seen: list[Seen] = field(default_factory=list)
    accepts: int = 0
    port: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        for _ in range(20):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                udp.close()
                tcp.close()
                continue
            break
        else:
            raise RuntimeError("no free port pair")
        tcp.listen(16)
        udp.settimeout(0.05)
        tcp.settimeout(0.05)
        self.udp, self.tcp, self.port = udp, tcp, port
        self._other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._other.bind(("127.0.0.1", 0))
        self._threads = [
            threading.Thread(target=self._serve_udp, daemon=True),
            threading.Thread(target=self._serve_tcp, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _record(self, seen: Seen) -> list[object]:
        with self._lock:
            self.seen.append(seen)
        return self.handler(seen)

    def _serve_udp(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.udp.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            for action in self._record(Seen("udp", peer, data)):
                if isinstance(action, bytes):
                    self.udp.sendto(action, peer)
                elif isinstance(action, tuple) and action[0] == "other-port":
                    self._other.sendto(action[1], peer)
                elif isinstance(action, tuple) and action[0] == "delay":
                    time.sleep(action[1])

    def _serve_tcp(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.accepts += 1
                number = self.accepts
            threading.Thread(target=self._serve_conn, args=(conn, number), daemon=True).start()

    def _serve_conn(self, conn: socket.socket, number: int) -> None:
        conn.settimeout(0.05)
        peer = conn.getpeername()
        buf = b""
        with conn:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(65535)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
                    n = struct.unpack("!H", buf[:2])[0]
                    wire, buf = buf[2 : 2 + n], buf[2 + n :]
                    for action in self._record(Seen("tcp", peer, wire, number)):
                        if action is CLOSE:
                            return
                        if isinstance(action, bytes):
                            conn.sendall(struct.pack("!H", len(action)) + action)
                        elif isinstance(action, tuple) and action[0] == "delay":
                            time.sleep(action[1])

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2)
        for s in (self.udp, self.tcp, self._other):
            s.close()


@contextlib.contextmanager
def responder(handler: Handler) -> Iterator[Responder]:
    r = Responder(handler)
    try:
        yield r
    finally:
        r.close()


def answer(seen: Seen, *, rcode: dns.rcode.Rcode = dns.rcode.NOERROR, records: int = 1) -> bytes:
    """A reply to the seen query with ``records`` A records (TTL 60)."""
    q = seen.msg
    r = dns.message.make_response(q)
    r.set_rcode(rcode)
    if records and q.question:
        rrset = dns.rrset.from_text_list(
            q.question[0].name,
            60,
            "IN",
            "A",
            [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(records)],
        )
        r.answer.append(rrset)
    return r.to_wire(max_size=65535)


def make_query(
    name: str = "printer.trusted.home.arpa.", rdtype: str = "A", **kw: object
) -> dns.message.Message:
    return dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]


def client(r: Responder, **kw: object) -> ForwardClient:
    return ForwardClient("127.0.0.1", r.port, **kw)  # type: ignore[arg-type]


# -- health checks -----------------------------------------------------------------------------


@pytest.mark.parametrize("rcode", [dns.rcode.REFUSED, dns.rcode.SERVFAIL, dns.rcode.NXDOMAIN])
def test_health_check_healthy_on_any_reply_with_our_id(rcode: dns.rcode.Rcode) -> None:
    with responder(lambda s: [answer(s, rcode=rcode, records=0)]) as r:
        fc = client(r)
        assert all(fc.health_check() for _ in range(5))
    assert len(r.seen) == 5
    for s in r.seen:
        m = s.msg
        assert s.transport == "udp"
        assert m.question[0].name == dns.name.root
        assert m.question[0].rdtype == dns.rdatatype.NS
        assert m.flags & dns.flags.RD
        assert m.edns == -1, "health checks carry no EDNS"
    # fresh socket and random ID per check
    assert len({s.peer[1] for s in r.seen}) > 1
    assert len({s.msg.id for s in r.seen}) > 1


def test_health_check_silence_is_unhealthy_after_one_second() -> None:
    with responder(lambda s: []) as r:
        fc = client(r)
        t0 = time.monotonic()
        assert fc.health_check() is False
        elapsed = time.monotonic() - t0
    assert 0.9 <= elapsed < 2.0
    assert fc.stats.health_failures == 1


def test_health_check_wrong_id_is_unhealthy() -> None:
    def wrong_id(s: Seen) -> list[object]:
        wire = bytearray(answer(s, records=0))
        struct.pack_into("!H", wire, 0, (s.msg.id + 1) % 65536)
        return [bytes(wire)]

    with responder(wrong_id) as r:
        assert client(r, health_timeout=0.3).health_check() is False
        assert len(r.seen) == 1


def test_health_check_tcp_when_forced() -> None:
    with responder(lambda s: [answer(s, rcode=dns.rcode.REFUSED, records=0)]) as r:
        assert client(r).health_check(tcp=True)
    assert [s.transport for s in r.seen] == ["tcp"]


# -- the query as sent -------------------------------------------------------------------------


@pytest.mark.parametrize("tcp", [False, True])
def test_query_forwarded_unchanged_except_a_new_id(tcp: bool) -> None:
    q = make_query(
        "Printer.Trusted.home.arpa.",
        "SRV",
        use_edns=0,
        payload=1232,
        want_dnssec=True,
        options=[
            dns.edns.GenericOption(dns.edns.COOKIE, b"\x01\x02\x03\x04\x05\x06\x07\x08"),
            dns.edns.ECSOption("10.10.0.0", 24),
        ],
    )
    q.flags |= dns.flags.CD | dns.flags.AD
    q.id = 4242
    with responder(lambda s: [answer(s, records=0)]) as r:
        fc = client(r)
        ids = []
        for _ in range(4):
            reply = fc.exchange(q, tcp=tcp)
            assert reply.id == 4242, "the client's ID is restored"
            assert reply.rcode() == dns.rcode.NOERROR
            ids.append(fc.last_upstream_ids[0])
    sent = q.to_wire()
    assert len(r.seen) == 4
    for s, qid in zip(r.seen, ids, strict=True):
        assert s.transport == ("tcp" if tcp else "udp")
        assert s.wire[2:] == sent[2:], "everything but the ID passes through as is"
        assert struct.unpack("!H", s.wire[:2])[0] == qid
    assert len(set(ids)) > 1, "IDs are random"


def test_client_without_edns_reaches_upstream_without_edns() -> None:
    with responder(lambda s: [answer(s)]) as r:
        client(r).exchange(make_query())
    assert r.seen[0].msg.edns == -1


# -- reply validation --------------------------------------------------------------------------


def test_reply_with_wrong_id_is_dropped_and_reading_goes_on() -> None:
    def handler(s: Seen) -> list[object]:
        bad = bytearray(answer(s, records=3))
        struct.pack_into("!H", bad, 0, (s.msg.id + 7) % 65536)
        return [bytes(bad), answer(s, records=1)]

    with responder(handler) as r:
        fc = client(r)
        reply = fc.exchange(make_query())
    assert reply.rcode() == dns.rcode.NOERROR
    assert len(reply.answer[0]) == 1, "the reply with the right ID is used"
    assert fc.stats.wrong_id_dropped == 1
    assert len(r.seen) == 1


def test_silence_gives_two_attempts_with_new_ids_then_servfail() -> None:
    q = make_query(use_edns=0)
    q.id = 777
    with responder(lambda s: []) as r:
        fc = client(r, attempt_timeout=0.3, rng=random.Random(1))
        t0 = time.monotonic()
        reply = fc.exchange(q)
        elapsed = time.monotonic() - t0
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert reply.id == 777
    assert reply.question == q.question
    assert reply.flags & dns.flags.QR
    assert len(r.seen) == 2
    ids = [s.msg.id for s in r.seen]
    assert ids == fc.last_upstream_ids
    assert ids[0] != ids[1], "a retry is a new query with a new ID"
    assert 0.55 <= elapsed < 1.5
    assert fc.stats.timeouts == 2 and fc.stats.servfail == 1


def test_second_attempt_can_succeed() -> None:
    count = {"n": 0}

    def handler(s: Seen) -> list[object]:
        count["n"] += 1
        return [] if count["n"] == 1 else [answer(s)]

    with responder(handler) as r:
        fc = client(r, attempt_timeout=0.3, rng=random.Random(2))
        reply = fc.exchange(make_query())
    assert reply.rcode() == dns.rcode.NOERROR and reply.answer
    assert fc.stats.attempts == 2 and fc.stats.failed_attempts == 1
    assert r.seen[0].msg.id != r.seen[1].msg.id


def test_reply_from_another_port_is_never_accepted() -> None:
    with responder(lambda s: [("other-port", answer(s))]) as r:
        reply = client(r, attempt_timeout=0.3).exchange(make_query())
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert len(r.seen) == 2


def _mutated(mutate: Callable[[dns.message.Message], None]) -> Handler:
    def handler(s: Seen) -> list[object]:
        m = dns.message.from_wire(answer(s))
        mutate(m)
        return [m.to_wire()]

    return handler


def _clear_qr(m: dns.message.Message) -> None:
    m.flags &= ~dns.flags.QR


def _other_name(m: dns.message.Message) -> None:
    m.question = [
        dns.rrset.RRset(dns.name.from_text("other.home.arpa."), dns.rdataclass.IN, dns.rdatatype.A)
    ]


def _no_question(m: dns.message.Message) -> None:
    m.question = []
    m.answer = []


def _two_questions(m: dns.message.Message) -> None:
    m.question.append(
        dns.rrset.RRset(dns.name.from_text("x.home.arpa."), dns.rdataclass.IN, dns.rdatatype.A)
    )


def _other_type(m: dns.message.Message) -> None:
    m.question = [dns.rrset.RRset(m.question[0].name, dns.rdataclass.IN, dns.rdatatype.AAAA)]


def _other_class(m: dns.message.Message) -> None:
    m.question = [dns.rrset.RRset(m.question[0].name, dns.rdataclass.CH, dns.rdatatype.A)]


@pytest.mark.parametrize(
    "mutate", [_clear_qr, _other_name, _no_question, _two_questions, _other_type, _other_class]
)
def test_reply_not_echoing_the_question_becomes_formerr(
    mutate: Callable[[dns.message.Message], None],
) -> None:
    q = make_query()
    q.id = 31337
    with responder(_mutated(mutate)) as r:
        fc = client(r)
        reply = fc.exchange(q)
    assert reply.rcode() == dns.rcode.FORMERR
    assert reply.id == 31337
    assert reply.question == q.question
    assert not reply.answer
    assert fc.stats.formerr == 1
    assert len(r.seen) == 1, "FORMERR is final, not retried"


def test_question_name_compared_case_insensitively() -> None:
    def upper(m: dns.message.Message) -> None:
        m.question = [
            dns.rrset.RRset(
                dns.name.from_text("PRINTER.trusted.HOME.arpa."), dns.rdataclass.IN, dns.rdatatype.A
            )
        ]

    with responder(_mutated(upper)) as r:
        reply = client(r).exchange(make_query())
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.answer


@pytest.mark.parametrize(
    "rcode", [dns.rcode.REFUSED, dns.rcode.NXDOMAIN, dns.rcode.NOTIMP, dns.rcode.FORMERR]
)
def test_error_rcodes_pass_through_when_the_question_is_echoed(rcode: dns.rcode.Rcode) -> None:
    with responder(lambda s: [answer(s, rcode=rcode, records=0)]) as r:
        reply = client(r).exchange(make_query())
    assert reply.rcode() == rcode


# -- sizes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edns", "payload", "records", "truncated"),
    [
        (False, 0, 40, True),  # ~700 bytes > 512 without EDNS
        (False, 0, 20, False),  # ~360 bytes fit
        (True, 1232, 60, False),  # ~1000 bytes fit in 1232
        (True, 1232, 80, True),  # ~1320 bytes do not
        (True, 256, 40, True),  # advertised < 512 counts as 512
    ],
)
def test_udp_reply_bigger_than_the_buffer_becomes_empty_tc(
    edns: bool, payload: int, records: int, truncated: bool
) -> None:
    q = make_query(use_edns=0, payload=payload) if edns else make_query()
    q.id = 99
    with responder(lambda s: [answer(s, records=records)]) as r:
        fc = client(r)
        reply = fc.exchange(q)
    size = len(answer(r.seen[0], records=records))
    limit = max(512, payload if edns else 512)
    assert (size > limit) == truncated, f"test data: {size} vs {limit}"
    assert reply.id == 99
    if truncated:
        assert reply.flags & dns.flags.TC
        assert not reply.answer and not reply.authority and not reply.additional
        assert reply.question == q.question
        assert fc.stats.truncated_to_tc == 1
    else:
        assert not reply.flags & dns.flags.TC
        assert len(reply.answer[0]) == records


def test_tcp_reply_of_any_size_passes() -> None:
    with responder(lambda s: [answer(s, records=300)]) as r:
        reply = client(r).exchange(make_query(), tcp=True)
    assert len(reply.answer[0]) == 300
    assert not reply.flags & dns.flags.TC


# -- connections -------------------------------------------------------------------------------


def test_udp_socket_is_connected_and_reused() -> None:
    with responder(lambda s: [answer(s)]) as r:
        fc = client(r)
        for _ in range(3):
            assert fc.exchange(make_query()).rcode() == dns.rcode.NOERROR
    assert len({s.peer for s in r.seen}) == 1
    assert fc.stats.udp_sockets == 1
    assert fc.pooled(tcp=False) == 1


def test_tcp_connection_reused_until_idle_expiry() -> None:
    now = [1000.0]
    with responder(lambda s: [answer(s)]) as r:
        fc = client(r, clock=lambda: now[0])
        fc.exchange(make_query(), tcp=True)
        now[0] += 9.5
        fc.exchange(make_query(), tcp=True)
        assert r.accepts == 1, "reused within 10 s of idleness"
        now[0] += 10.5
        fc.exchange(make_query(), tcp=True)
        accepts = r.accepts
    assert accepts == 2, "expired after more than 10 s idle"
    assert [s.conn for s in r.seen] == [1, 1, 2]
    assert fc.stats.tcp_connections == 2


def test_tcp_closed_by_server_is_redialled_without_costing_an_attempt() -> None:
    with responder(lambda s: [answer(s), CLOSE]) as r:
        fc = client(r)
        assert fc.exchange(make_query(), tcp=True).rcode() == dns.rcode.NOERROR
        # Wait for the server's FIN on the pooled connection: a query racing the close gets a
        # reset instead, which costs CoreDNS a failed attempt, not a free redial.
        (pooled,) = fc._pool[True]
        readable, _, _ = select.select([pooled.sock], [], [], 5.0)
        assert readable
        assert fc.exchange(make_query(), tcp=True).rcode() == dns.rcode.NOERROR
    assert fc.stats.cached_closed == 1
    assert fc.stats.failed_attempts == 0
    assert r.accepts == 2


def test_one_query_at_a_time_per_connection() -> None:
    with responder(lambda s: [("delay", 0.3), answer(s)]) as r:
        fc = client(r)
        results: list[int] = []

        def worker() -> None:
            results.append(fc.exchange(make_query(), tcp=True).rcode())

        threads = [threading.Thread(target=worker) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert results == [dns.rcode.NOERROR] * 3
    assert r.accepts == 3, "concurrent queries never share a connection"
    assert fc.pooled(tcp=True) == 3


def test_nothing_listening_gives_servfail() -> None:
    with responder(lambda s: []) as r:
        port = r.port
    fc = ForwardClient("127.0.0.1", port, attempt_timeout=0.3)
    assert fc.exchange(make_query()).rcode() == dns.rcode.SERVFAIL
    assert fc.exchange(make_query(), tcp=True).rcode() == dns.rcode.SERVFAIL
    assert fc.health_check() is False


# -- cache TTL ---------------------------------------------------------------------------------


def _reply(
    rcode: dns.rcode.Rcode = dns.rcode.NOERROR,
    answer_ttls: tuple[int, ...] = (),
    soa_ttl: int | None = None,
    soa_minimum: int = 3600,
    additional_ttls: tuple[int, ...] = (),
    edns: bool = True,
) -> dns.message.Message:
    q = make_query("x.trusted.home.arpa.", "A", use_edns=0 if edns else None)
    r = dns.message.make_response(q)
    r.set_rcode(rcode)
    for i, ttl in enumerate(answer_ttls):
        r.answer.append(
            dns.rrset.from_text(f"a{i}.trusted.home.arpa.", ttl, "IN", "A", "10.10.0.9")
        )
    if soa_ttl is not None:
        r.authority.append(
            dns.rrset.from_text(
                "trusted.home.arpa.",
                soa_ttl,
                "IN",
                "SOA",
                f"gw.home.arpa. hostmaster.home.arpa. 1 3600 600 86400 {soa_minimum}",
            )
        )
    for i, ttl in enumerate(additional_ttls):
        r.additional.append(
            dns.rrset.from_text(f"b{i}.trusted.home.arpa.", ttl, "IN", "AAAA", "fd00:10::9")
        )
    return r


@pytest.mark.parametrize(
    ("reply", "config", "expected", "kind"),
    [
        (_reply(answer_ttls=(120, 60), additional_ttls=(30,)), None, 30, "NOERROR"),
        (_reply(answer_ttls=(120,)), None, 120, "NOERROR"),
        (_reply(answer_ttls=(2,)), None, 5, "NOERROR"),
        (_reply(answer_ttls=(2,)), CacheConfig(success_max=30, success_min=0), 2, "NOERROR"),
        (_reply(answer_ttls=(0,)), CacheConfig(success_max=30, success_min=0), None, "NOERROR"),
        (_reply(answer_ttls=(86400,)), None, 3600, "NOERROR"),
        (_reply(answer_ttls=(86400,)), CacheConfig(success_max=30), 30, "NOERROR"),
        # denial: the SOA record's own TTL counts, its MINIMUM field does not
        (_reply(dns.rcode.NXDOMAIN, soa_ttl=60, soa_minimum=5), None, 60, "NXDOMAIN"),
        (_reply(dns.rcode.NXDOMAIN, soa_ttl=86400, soa_minimum=10), None, 1800, "NXDOMAIN"),
        (_reply(soa_ttl=120, soa_minimum=3600), None, 120, "NODATA"),
        (_reply(soa_ttl=120), CacheConfig(denial_max=10, denial_min=0), 10, "NODATA"),
        (_reply(dns.rcode.NXDOMAIN), None, None, "OTHERERROR"),  # no SOA: not cached
        (_reply(), None, 5, "NOERROR"),  # empty NOERROR without SOA: fail-safe 5 s
        (_reply(dns.rcode.REFUSED), None, None, "OTHERERROR"),
        (_reply(dns.rcode.SERVFAIL), None, 5, "SERVERROR"),
        (_reply(answer_ttls=(120,), edns=False), None, 120, "NOERROR"),
    ],
)
def test_cache_ttl(
    reply: dns.message.Message, config: CacheConfig | None, expected: int | None, kind: str
) -> None:
    assert response_type(reply) == kind
    assert cache_ttl(reply, config) == expected


def test_truncated_replies_are_never_cached() -> None:
    r = _reply(answer_ttls=(120,))
    r.flags |= dns.flags.TC
    assert cache_ttl(r) is None


def test_opt_ttl_field_is_ignored() -> None:
    r = _reply(answer_ttls=(300,))
    r.use_edns(0, dns.flags.DO, 1232)  # DO lives in the OPT TTL field (0x8000)
    assert cache_ttl(dns.message.from_wire(r.to_wire())) == 300
